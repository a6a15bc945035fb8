/**
 * Finding 8 (medium): grpc.health.v1 Watch streams need no token, never end
 * and had no cap: 25k streams took the gateway to 532 MB, users to 361 MB
 * at 10k. Spec: MAX_HEALTH_WATCHES open at once per process (default 1000;
 * 100 here to keep the test small), past it ResourceExhausted; all Watch
 * streams end at shutdown.
 */
import { it } from "node:test";
import type { ServiceProcess } from "../processes.ts";
import { envelope, grpcRequestHeaders, RawH2 } from "../raw-h2.ts";
import { describeConnections, PATH } from "./attacks.ts";
import { assertHeld, attackerAddress, observe, refusalCounted, violations, withHostileChain } from "./harness.ts";

/** The cap set for the test (the default is 1000). */
const MAX_HEALTH_WATCHES = 100;
/** Watch streams the attacker opens on each target: 20× the cap, over 4 connections (MAX_CONCURRENT_STREAMS is 1000). */
const WATCHES = 2_000;
const CONNECTIONS = 4;
/** The attack: open them all, then hold them this long. */
const ATTACK_MS = 8_000;
/** After SIGTERM the process must have ended its Watch streams and exited within this (SHUTDOWN_TIMEOUT_MS=3000 here). */
const EXIT_MS = 5_000;

interface Watches {
  readonly conns: RawH2[];
  readonly streams: [RawH2, number][];
}

async function openWatches(target: ServiceProcess, onEnd: (close: () => void) => void): Promise<Watches> {
  const conns = await Promise.all(
    Array.from({ length: CONNECTIONS }, () => RawH2.connect({ port: target.port, localAddress: attackerAddress() })),
  );
  const headers = grpcRequestHeaders(PATH.healthWatch);
  const request = envelope(new Uint8Array(0)); // HealthCheckRequest{service: ""}: the whole server
  const streams: [RawH2, number][] = [];
  for (let i = 0; i < WATCHES; i++) {
    const c = conns[i % CONNECTIONS] as RawH2;
    const id = c.openStream(headers);
    void c.sendData(id, request, { endStream: true });
    streams.push([c, id]);
  }
  for (const c of conns) onEnd(() => c.destroy());
  return { conns, streams };
}

const stillOpen = (w: Watches) =>
  w.streams.filter(([c, id]) => {
    const s = c.streams.get(id);
    return !c.isClosed && !s?.remoteEnded && s?.rstCode === undefined;
  });

it(`Watch streams are capped at MAX_HEALTH_WATCHES on the gateway and on users, and end at shutdown`, {
  timeout: 60_000,
}, async (t) => {
  const env = { MAX_HEALTH_WATCHES: String(MAX_HEALTH_WATCHES), SHUTDOWN_TIMEOUT_MS: "3000" };
  await withHostileChain({ gateway: env, users: env }, async (chain) => {
    let gateway: Watches | undefined;
    let users: Watches | undefined;
    const o = await observe(
      chain,
      async (ctx) => {
        // Closed by the shutdown check below, or by withHostileChain's stop.
        [gateway, users] = await Promise.all([
          openWatches(chain.gateway, () => {}),
          openWatches(chain.users, () => {}),
        ]);
        while (!ctx.stop()) await new Promise((r) => setTimeout(r, 100));
        return { gateway: stillOpen(gateway).length, users: stillOpen(users).length };
      },
      { attackMs: ATTACK_MS },
    );
    t.diagnostic(
      `Watch streams still open after ${ATTACK_MS / 1000} s: gateway ${o.result.gateway} of ${WATCHES}, users ${o.result.users} of ${WATCHES}`,
    );
    const problems = violations(o);
    for (const [p, open] of [
      [chain.gateway, o.result.gateway],
      [chain.users, o.result.users],
    ] as const) {
      if (open > MAX_HEALTH_WATCHES) {
        problems.push(`${p.name} kept ${open} Watch streams open, over MAX_HEALTH_WATCHES=${MAX_HEALTH_WATCHES}`);
      }
      if (!chain.deaths.has(p.name)) problems.push(...(await refusalCounted(p, "health_watches")));
    }
    // Shutdown: every Watch stream still open is ended by the server, and the process exits.
    for (const [p, w] of [
      [chain.gateway, gateway],
      [chain.users, users],
    ] as const) {
      if (w === undefined || chain.deaths.has(p.name)) continue;
      const open = stillOpen(w);
      const t0 = performance.now();
      const exited = await Promise.race([
        p.stop("SIGTERM").then(() => true),
        new Promise<boolean>((r) => setTimeout(() => r(false), EXIT_MS)),
      ]);
      const ended = open.filter(([c, id]) => {
        const s = c.streams.get(id);
        return s?.remoteEnded || s?.rstCode !== undefined;
      }).length;
      t.diagnostic(
        `${p.name} after SIGTERM: ${exited ? `exited in ${(performance.now() - t0).toFixed(0)} ms` : "still running"}, ` +
          `ended ${ended} of the ${open.length} Watch streams open; ${describeConnections(w.conns)}`,
      );
      if (!exited) problems.push(`${p.name} did not exit within ${EXIT_MS} ms of SIGTERM with Watch streams open`);
      if (ended < open.length) {
        problems.push(
          `${p.name} exited without ending ${open.length - ended} of its ${open.length} open Watch streams`,
        );
      }
      for (const c of w.conns) c.destroy();
    }
    assertHeld(t, o, problems, `${WATCHES} health Watch streams at the gateway and at users`);
  });
});
