/**
 * Finding 5 (high): Rapid Reset across connections. Node limits reset
 * streams per connection only; opening a new connection every 900 reset
 * streams (495k streams in 10.5 s) left the gateway unresponsive for ~70 s
 * after the attack stopped. Spec: MAX_RESET_STREAMS_PER_SECOND (1000, burst
 * 2x, default here) per client address across all its connections; past it
 * GOAWAY(ENHANCE_YOUR_CALM) and new connections from the address are closed
 * at once until the budget refills.
 */
import { it } from "node:test";
import {
  concat,
  END_HEADERS,
  END_STREAM,
  envelope,
  field1String,
  grpcRequestHeaders,
  H2,
  H2_ERROR,
  H2_PREFACE,
  h2Frame,
  hpackBlock,
  RawH2,
  utf8,
} from "../raw-h2.ts";
import { describeConnections, PATH } from "./attacks.ts";
import { assertHeld, attackerAddress, observe, refusalCounted, violations, withHostileChain } from "./harness.ts";

/** As in the finding: 900 streams opened and reset per connection, then a new connection. */
const STREAMS_PER_CONNECTION = 900;
/** Bounds on the attack: 10 s, 300k streams, 4 connections at a time. */
const ATTACK_MS = 10_000;
const MAX_STREAMS = 300_000;
const PARALLEL = 4;
/** The gateway must answer normally right after the attack, not 70 s later: the legitimate client keeps calling this long. */
const TAIL_MS = 5_000;

/**
 * Everything one attacking connection sends: preface, SETTINGS, then × 900
 * a whole GetProfile call (HEADERS, DATA with END_STREAM: the server starts
 * serving it) reset at once with RST_STREAM(CANCEL).
 */
function connectionBytes(): Uint8Array {
  const block = hpackBlock(grpcRequestHeaders(PATH.gatewayGetProfile));
  const request = envelope(field1String(utf8("u-1")));
  const cancel = new Uint8Array([0, 0, 0, H2_ERROR.CANCEL]);
  const frames: Uint8Array[] = [H2_PREFACE, h2Frame(H2.SETTINGS, 0, 0, new Uint8Array(0))];
  for (let i = 0; i < STREAMS_PER_CONNECTION; i++) {
    const id = 2 * i + 1;
    frames.push(
      h2Frame(H2.HEADERS, END_HEADERS, id, block),
      h2Frame(H2.DATA, END_STREAM, id, request),
      h2Frame(H2.RST_STREAM, 0, id, cancel),
    );
  }
  return concat(frames);
}

it("the gateway stays responsive during and right after a Rapid Reset spread over many connections from one address", {
  timeout: 60_000,
}, async (t) => {
  await withHostileChain({}, async (chain) => {
    const bytes = connectionBytes();
    const o = await observe(
      chain,
      async (ctx) => {
        let streams = 0;
        let connections = 0;
        let refusedConnections = 0;
        const sample: RawH2[] = [];
        await Promise.all(
          Array.from({ length: PARALLEL }, async () => {
            while (!ctx.stop() && streams < MAX_STREAMS) {
              let c: RawH2;
              try {
                c = await RawH2.connect({ port: chain.gateway.port, localAddress: attackerAddress(), preface: false });
              } catch {
                refusedConnections++;
                await new Promise((r) => setTimeout(r, 10));
                continue;
              }
              connections++;
              if (sample.length < 50) sample.push(c);
              ctx.onEnd(() => c.destroy());
              await c.write(bytes, ctx.deadline);
              streams += STREAMS_PER_CONNECTION;
              // A PING after the streams: its ACK says the server has read them all. Then go (a
              // connection that closed the socket unread would have cost the server nothing).
              c.ping();
              await c.waitFor(() => c.isClosed || c.pingAcks > 0 || ctx.stop(), performance.now() + 2_000);
              const refused = c.isClosed && c.pingAcks === 0;
              c.destroy();
              // A connection closed unread (the address is over its budget): retry, but not in a tight
              // loop, so that the test's own sockets and CPU stay bounded.
              if (refused) await new Promise((r) => setTimeout(r, 25));
            }
          }),
        );
        return { streams, connections, refusedConnections, seen: describeConnections(sample) };
      },
      { attackMs: ATTACK_MS, tailMs: TAIL_MS },
    );
    const r = o.result;
    t.diagnostic(
      `${r.streams} streams opened and reset over ${r.connections} connections in ${((o.attackEnd - o.attackStart) / 1000).toFixed(1)} s ` +
        `(${r.refusedConnections} connection attempts failed); first 50 connections: ${r.seen}`,
    );
    // The calls reset at the edge were relayed to profiles: its pooled connection must survive them too.
    const problems = violations(o, { poolsKept: true });
    if (!chain.deaths.has("gateway")) problems.push(...(await refusalCounted(chain.gateway, "reset_streams")));
    assertHeld(t, o, problems, "Rapid Reset across connections at the gateway");
  });
});
