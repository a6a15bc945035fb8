/**
 * Finding 4 (high): cancellations broke the shared internal connection.
 * Clients cancelling ~100-150 calls/s made the gateway relay as many
 * cancellations to profiles, whose HTTP/2 server applied Node's default
 * stream-reset limit and answered GOAWAY(INTERNAL_ERROR) on the one pooled
 * connection, failing every call in flight on it as Internal.
 *
 * Legitimate cancellation, at 300/s for 20 s from 127.0.0.2, in both shapes
 * seen: HTTP/1.1 clients that close 3 ms after sending a request, and h2
 * streams reset with RST_STREAM(CANCEL) a few ms after they were sent. The
 * calls are held 100 ms in users (FAULT_INJECTION, x-fault-delay-ms), so
 * every cancellation is relayed over both internal hops. Spec: internal
 * servers never GOAWAY because of resets; 300/s from one address is within
 * the edge's MAX_RESET_STREAMS_PER_SECOND (1000, default here).
 */
import { it } from "node:test";
import { RawH1 } from "../raw-h1.ts";
import { envelope, field1String, grpcRequestHeaders, H2_ERROR, RawH2, utf8 } from "../raw-h2.ts";
import { describeConnections, PATH, paced } from "./attacks.ts";
import {
  assertHeld,
  attackerAddress,
  type HostileChain,
  observe,
  violations,
  warningsMatching,
  withHostileChain,
} from "./harness.ts";

/** The finding's case: 300 cancellations a second for 20 s. */
const RATE_PER_SECOND = 300;
const ATTACK_MS = 20_000;
/** Half of them each way. */
const PER_SHAPE = (RATE_PER_SECOND * ATTACK_MS) / 1000 / 2;
/** The attack must really run at (nearly) that rate for the test to mean anything: at least 80% of it. */
const MIN_SENT_FRACTION = 0.8;
/** When the clients give up on their calls. */
const CANCEL_AFTER_MS = 3;
/** How long users holds each attacking call: long enough that every cancellation is relayed down the chain. */
const FAULT_HEADERS = { "x-fault-delay-ms": "100", "x-fault-target": "users" };
/**
 * Log lines (warn and above) that mean a call failed because an internal
 * connection was sent away: a call ending Internal or Unavailable at the
 * gateway or profiles (a cancelled call ends Canceled, logged at info), or
 * any mention of a GOAWAY.
 */
const GOAWAY_LOG = /^(GetProfile|GetUser) (internal|unavailable)\b|goaway|enhance_your_calm|NGHTTP2_/i;

async function cancelOverHttp1(ctx: Parameters<Parameters<typeof observe>[1]>[0], port: number) {
  const body = JSON.stringify({ userId: "u-1" });
  const head = [
    `POST ${PATH.gatewayGetProfile} HTTP/1.1`,
    "Host: localhost",
    "Content-Type: application/json",
    ...Object.entries(FAULT_HEADERS).map(([k, v]) => `${k}: ${v}`),
    `Content-Length: ${body.length}`,
  ].join("\r\n");
  const request = `${head}\r\n\r\n${body}`;
  let failedToConnect = 0;
  let answeredBeforeCancel = 0;
  const inFlight = new Set<Promise<void>>();
  const sent = await paced(ctx, RATE_PER_SECOND / 2, PER_SHAPE, () => {
    const p = (async () => {
      try {
        const c = await RawH1.connect({ port, localAddress: attackerAddress(), connectTimeoutMs: 2_000 });
        c.writeNow(request);
        await new Promise((r) => setTimeout(r, CANCEL_AFTER_MS));
        if (c.statuses.length > 0) answeredBeforeCancel++;
        c.destroy();
      } catch {
        failedToConnect++;
      }
    })();
    inFlight.add(p);
    void p.then(() => inFlight.delete(p));
  });
  await Promise.all(inFlight);
  return { sent, failedToConnect, answeredBeforeCancel };
}

async function cancelOverH2(ctx: Parameters<Parameters<typeof observe>[1]>[0], port: number) {
  const headers = grpcRequestHeaders(PATH.gatewayGetProfile, Object.entries(FAULT_HEADERS));
  const data = envelope(field1String(utf8("u-1")));
  const conns: RawH2[] = [];
  let current: RawH2 | undefined;
  let connecting: Promise<RawH2> | undefined;
  // Two streams in flight per cancelled call would be plenty; a new connection whenever the current one closed.
  const connection = async (): Promise<RawH2> => {
    if (current && !current.isClosed && current.goaway === undefined) return current;
    connecting ??= RawH2.connect({ port, localAddress: attackerAddress() }).then((c) => {
      conns.push(c);
      ctx.onEnd(() => c.destroy());
      current = c;
      connecting = undefined;
      return c;
    });
    return connecting;
  };
  const inFlight = new Set<Promise<void>>();
  let failed = 0;
  const sent = await paced(ctx, RATE_PER_SECOND / 2, PER_SHAPE, () => {
    const p = (async () => {
      try {
        const c = await connection();
        const id = c.openStream(headers);
        await c.sendData(id, data, { endStream: true });
        await new Promise((r) => setTimeout(r, CANCEL_AFTER_MS + Math.floor(Math.random() * 3)));
        c.rst(id, H2_ERROR.CANCEL);
      } catch {
        failed++;
      }
    })();
    inFlight.add(p);
    void p.then(() => inFlight.delete(p));
  });
  await Promise.all(inFlight);
  return { sent, failed, seen: describeConnections(conns) };
}

function goawayLines(chain: HostileChain): string[] {
  return (["profiles", "users", "gateway"] as const).flatMap((name) =>
    warningsMatching(chain, name, GOAWAY_LOG).map(([msg, n]) => `${name} logged ${n}× "${msg}"`),
  );
}

it(`legitimate cancellations (${RATE_PER_SECOND}/s for ${ATTACK_MS / 1000} s, HTTP/1.1 closes and h2 RST_STREAM) never cost other callers their calls`, {
  timeout: 60_000,
}, async (t) => {
  await withHostileChain({ all: { FAULT_INJECTION: "on" } }, async (chain) => {
    const port = chain.gateway.port;
    const o = await observe(chain, (ctx) => Promise.all([cancelOverHttp1(ctx, port), cancelOverH2(ctx, port)]), {
      attackMs: ATTACK_MS,
      tailMs: 3_000,
    });
    const [h1, h2] = o.result;
    const seconds = (o.attackEnd - o.attackStart) / 1000;
    t.diagnostic(
      `HTTP/1.1: ${h1.sent} requests closed after ${CANCEL_AFTER_MS} ms (${h1.failedToConnect} could not connect, ${h1.answeredBeforeCancel} answered first); ` +
        `h2: ${h2.sent} streams reset (${h2.failed} failed to send); ${h2.seen}; ` +
        `${((h1.sent + h2.sent) / seconds).toFixed(0)} cancellations/s over ${seconds.toFixed(1)} s`,
    );
    const problems = violations(o, { poolsKept: true });
    problems.push(...goawayLines(chain));
    const planned = 2 * PER_SHAPE;
    if (!chain.deaths.size && h1.sent + h2.sent < MIN_SENT_FRACTION * planned) {
      problems.push(
        `the attack itself fell short: ${h1.sent + h2.sent} of ${planned} cancellations sent (this machine too busy?)`,
      );
    }
    assertHeld(t, o, problems, `${RATE_PER_SECOND} cancellations/s at the gateway`);
  });
});
