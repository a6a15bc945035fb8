/**
 * Finding 3 (high): unfinished bodies had no overall bound. 128 streams
 * holding 4 MiB each took the gateway to 635-1,073 MB (over the pods' 512
 * Mi), and profiles to 924 MB; the memory was not returned after the
 * attacker left. Spec: MAX_BUFFERED_REQUEST_BYTES (64 MiB per process) and
 * MAX_BUFFERED_REQUEST_BYTES_PER_CLIENT (16 MiB per client address); calls
 * past them get ResourceExhausted before their bodies are read.
 * Both run at their defaults here.
 */
import { it } from "node:test";
import { scrape } from "../metrics-scrape.ts";
import type { ServiceProcess } from "../processes.ts";
import { envelope } from "../raw-h2.ts";
import {
  bigRequest,
  connectH2Headers,
  grpcRequestHeaders,
  MAX_MESSAGE_BYTES,
  PATH,
  unfinishedBodies,
} from "./attacks.ts";
import {
  assertHeld,
  attackerAddress,
  type HostileChain,
  MiB,
  observe,
  refusalCounted,
  violations,
  withHostileChain,
} from "./harness.ts";

/** How long the attacker holds its streams open. */
const ATTACK_MS = 15_000;

/** Each stream's body: a 4 MiB message (just under MAX_MESSAGE_BYTES), sent but for its last KiB. */
const MESSAGE = bigRequest(MAX_MESSAGE_BYTES - 64);
const SEND_BYTES = MESSAGE.length - 1024;
/**
 * Peak RSS of the attacked service: a ~120 MB idle process plus what the
 * bounds let it hold (16 MiB for one client at the gateway, 64 MiB in all
 * at profiles) and the work of refusing the rest, with room.
 */
const RSS_BOUND = 256 * MiB;

/** A line when the buffered-bytes gauge is absent, or not back to 0 once the attacker left. */
async function gaugeBackToZero(p: ServiceProcess): Promise<string[]> {
  const name = "rpc_kit_server_buffered_request_bytes";
  try {
    const samples = await scrape(p, "127.0.0.1");
    const series = [...samples].filter(([k]) => k === name || k.startsWith(`${name}{`));
    if (series.length === 0) return [`${p.name} has no ${name} gauge on /metrics`];
    const held = series.reduce((sum, [, v]) => sum + v, 0);
    return held === 0 ? [] : [`${p.name} still holds ${held} request bytes (${name}) after the attacker left`];
  } catch (err) {
    return [`${p.name} /metrics unreadable: ${(err as Error).message}`];
  }
}

async function attackWithUnfinishedBodies(
  chain: HostileChain,
  target: ServiceProcess,
  streams: number,
  shapes: readonly ("grpc" | "connect")[],
  addresses = 1,
) {
  const enveloped = envelope(MESSAGE);
  return observe(
    chain,
    (ctx) =>
      unfinishedBodies(ctx, {
        port: target.port,
        localAddresses: Array.from({ length: addresses }, (_, i) => attackerAddress(i)),
        connections: 8,
        streams,
        headers: (i) => {
          const path = target.name === "gateway" ? PATH.gatewayGetProfile : PATH.profilesGetProfile;
          return shapes[i % shapes.length] === "grpc" ? grpcRequestHeaders(path) : connectH2Headers(path);
        },
        body: (i) => (shapes[i % shapes.length] === "grpc" ? enveloped : MESSAGE),
        sendBytes: SEND_BYTES,
      }),
    { attackMs: ATTACK_MS, tailMs: 3_000 },
  );
}

it("the gateway holds at most its per-client bound of unfinished bodies from one client (128 streams × 4 MiB)", {
  timeout: 60_000,
}, async (t) => {
  await withHostileChain({}, async (chain) => {
    const o = await attackWithUnfinishedBodies(chain, chain.gateway, 128, ["grpc", "connect"]);
    const r = o.result;
    t.diagnostic(
      `${r.streams} streams, ${(r.bodyBytesSent / MiB).toFixed(0)} MiB taken by the gateway, ${r.refused} refused; ${r.seen}`,
    );
    const problems = violations(o, { rss: { gateway: RSS_BOUND } });
    if (!chain.deaths.has("gateway")) {
      problems.push(...(await refusalCounted(chain.gateway, "buffered_bytes_per_client", "buffered_bytes")));
      problems.push(...(await gaugeBackToZero(chain.gateway)));
    }
    assertHeld(t, o, problems, "128 unfinished 4 MiB bodies at the gateway");
  });
});

it("profiles holds at most its process bound of unfinished bodies (200 streams × 4 MiB from 8 addresses) and gives it back when the client leaves", {
  timeout: 60_000,
}, async (t) => {
  await withHostileChain({}, async (chain) => {
    // From 8 addresses: each one's share (16 MiB) is less than the process bound (64 MiB), which binds.
    const o = await attackWithUnfinishedBodies(chain, chain.profiles, 200, ["grpc"], 8);
    const r = o.result;
    t.diagnostic(
      `${r.streams} streams, ${(r.bodyBytesSent / MiB).toFixed(0)} MiB taken by profiles, ${r.refused} refused; ${r.seen}`,
    );
    // Past the process bound profiles refuses every caller's body, the gateway's too: those calls
    // may fail ResourceExhausted while the attack lasts, and none after it.
    const problems = violations(o, { rss: { profiles: RSS_BOUND }, legitFailuresAllowed: ["ResourceExhausted"] });
    if (!chain.deaths.has("profiles")) {
      problems.push(...(await refusalCounted(chain.profiles, "buffered_bytes")));
      problems.push(...(await gaugeBackToZero(chain.profiles)));
    }
    assertHeld(t, o, problems, "200 unfinished 4 MiB bodies at profiles");
  });
});
