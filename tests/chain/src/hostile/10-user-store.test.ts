/**
 * Finding 10 (medium): with auth off (the `npm start` and compose default)
 * anyone could grow the user store without bound: after 35k created users,
 * ListProfiles failed with DeadlineExceeded for every caller. Spec:
 * MAX_USERS in users (default 10000; 200 here), CreateUser past it fails
 * ResourceExhausted ("the user store is full"), passed on by profiles and
 * the gateway (HTTP 429 over Connect).
 */
import { it } from "node:test";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { GatewayService } from "@demo/proto/demo/gateway/v1/gateway_pb";
import { h1Request, RawH1 } from "../raw-h1.ts";
import { PATH } from "./attacks.ts";
import {
  assertHeld,
  attackerAddress,
  LEGIT_ADDRESS,
  LEGIT_MAX_MS,
  observe,
  violations,
  withHostileChain,
} from "./harness.ts";

/** The store's bound for the test (the default is 10000). */
const MAX_USERS = 200;
/** The users every fresh process starts with (SEED_USERS in apps/users). */
const SEEDED = 3;
/** The attacker tries this many: 30 past the bound, one after the other on one keep-alive connection. */
const ATTEMPTS = MAX_USERS - SEEDED + 30;
const ATTACK_MS = 30_000;

it(`CreateUser past MAX_USERS=${MAX_USERS} gets ResourceExhausted (HTTP 429), and ListProfiles still works for everyone`, {
  timeout: 60_000,
}, async (t) => {
  await withHostileChain({ users: { MAX_USERS: String(MAX_USERS) } }, async (chain) => {
    const o = await observe(
      chain,
      async (ctx) => {
        let c = await RawH1.connect({ port: chain.gateway.port, localAddress: attackerAddress() });
        ctx.onEnd(() => c.destroy());
        const outcomes: { status: number; code?: string }[] = [];
        for (let i = 0; i < ATTEMPTS && !ctx.stop(); i++) {
          if (c.isClosed) {
            c = await RawH1.connect({ port: chain.gateway.port, localAddress: attackerAddress() });
            ctx.onEnd(() => c.destroy());
          }
          const before = c.statuses.length;
          c.writeNow(
            h1Request(
              "POST",
              PATH.gatewayCreateUser,
              { "Content-Type": "application/json" },
              JSON.stringify({ name: `Mallory ${i}`, email: `mallory${i}@example.com` }),
            ),
          );
          await c.waitFor(() => c.statuses.length > before || c.isClosed, performance.now() + 5_000);
          const res = c.responses[before];
          if (res === undefined) {
            outcomes.push({ status: 0 });
            continue;
          }
          let code: string | undefined;
          try {
            code = (JSON.parse(res.body.toString()) as { code?: string }).code;
          } catch {
            // not JSON
          }
          outcomes.push({ status: res.status, ...(code !== undefined && { code }) });
        }
        return outcomes;
      },
      { attackMs: ATTACK_MS },
    );
    const outcomes = o.result;
    const byStatus = new Map<string, number>();
    for (const r of outcomes) {
      const k = `${r.status}${r.code ? ` ${r.code}` : ""}`;
      byStatus.set(k, (byStatus.get(k) ?? 0) + 1);
    }
    const created = outcomes.filter((r) => r.status === 200).length;
    t.diagnostic(`${outcomes.length} CreateUser calls: ${[...byStatus].map(([k, n]) => `${k} ×${n}`).join(", ")}`);
    const problems = violations(o);
    if (created + SEEDED > MAX_USERS) {
      problems.push(
        `${created} users created on top of ${SEEDED} seeded: the store holds ${created + SEEDED}, over MAX_USERS=${MAX_USERS}`,
      );
    }
    const last = outcomes.slice(-(ATTEMPTS - (MAX_USERS - SEEDED)));
    const refusedRight = last.filter((r) => r.status === 429 && r.code === "resource_exhausted").length;
    if (refusedRight < last.length) {
      problems.push(
        `${last.length - refusedRight} of the last ${last.length} CreateUser calls (past MAX_USERS) were not refused with HTTP 429 resource_exhausted`,
      );
    }
    // ListProfiles, for every caller: the legitimate address over gRPC, and the attacker's over Connect/HTTP/1.1.
    for (const [who, transport] of [
      [`${LEGIT_ADDRESS} (gRPC)`, createGrpcTransport({ baseUrl: `http://127.0.0.1:${chain.gateway.port}` })],
      [
        `${attackerAddress()} (Connect over HTTP/1.1)`,
        createConnectTransport({
          baseUrl: `http://127.0.0.1:${chain.gateway.port}`,
          httpVersion: "1.1",
          nodeOptions: { localAddress: attackerAddress() },
        }),
      ],
    ] as const) {
      const client = createClient(GatewayService, transport);
      const t0 = performance.now();
      try {
        let n = 0;
        for await (const _ of client.listProfiles({}, { timeoutMs: 5_000 })) n++;
        const ms = performance.now() - t0;
        t.diagnostic(`ListProfiles from ${who}: ${n} profiles in ${ms.toFixed(0)} ms`);
        if (n !== created + SEEDED)
          problems.push(`ListProfiles from ${who} returned ${n} profiles, not ${created + SEEDED}`);
        if (ms > LEGIT_MAX_MS) problems.push(`ListProfiles from ${who} took ${ms.toFixed(0)} ms > ${LEGIT_MAX_MS} ms`);
      } catch (err) {
        problems.push(
          `ListProfiles from ${who} failed after ${(performance.now() - t0).toFixed(0)} ms: ${(err as Error).message}`,
        );
      }
    }
    assertHeld(t, o, problems, `${ATTEMPTS} CreateUser calls with MAX_USERS=${MAX_USERS}`);
  });
});
