/**
 * Finding 2 (high): one slow stream pinned a core. gRPC-Web, Connect
 * streaming and compressed gRPC decode envelopes by re-scanning every
 * buffered chunk on each new one: a 0.2 MiB message in 1-byte pieces kept
 * the gateway at 100% CPU for 120 s, and its admin port stopped answering.
 * Decoding must be linear in the bytes received.
 */
import { randomBytes } from "node:crypto";
import { it } from "node:test";
import { gzipSync } from "node:zlib";
import { envelope } from "../raw-h2.ts";
import {
  bigRequest,
  connectH2Headers,
  grpcRequestHeaders,
  PATH,
  type SlowBodyOutcome,
  slowH1ChunkedBody,
  slowH2Body,
} from "./attacks.ts";
import { assertHeld, attackerAddress, MiB, observe, violations, withHostileChain } from "./harness.ts";

/** The size of each message, as in the finding. */
const MESSAGE_BYTES = Math.round(0.2 * MiB);
/** Bound on the attack: the bodies take about a second to send, then the test waits for the answers. */
const ATTACK_MS = 10_000;
/**
 * Once the attacker has sent everything and its requests are answered, the
 * gateway has nothing left to do: at most half a core after the attack (the
 * legitimate client's calls cost a few percent); today it stays at 100%.
 */
const TAIL_CPU_BOUND = 0.5;

it("gRPC-Web, Connect streaming and compressed gRPC decode a 0.2 MiB message sent in 1-byte pieces in linear time", {
  timeout: 60_000,
}, async (t) => {
  await withHostileChain({}, async (chain) => {
    const port = chain.gateway.port;
    const enveloped = envelope(bigRequest(MESSAGE_BYTES));
    const compressed = new Uint8Array(gzipSync(randomBytes(MESSAGE_BYTES), { level: 1 }));
    const o = await observe(
      chain,
      (ctx) =>
        Promise.all<SlowBodyOutcome>([
          slowH2Body(ctx, {
            shape: "gRPC-Web over h2, 1-byte DATA frames",
            port,
            localAddress: attackerAddress(),
            headers: connectH2Headers(PATH.gatewayGetProfile, [], "application/grpc-web+proto"),
            body: enveloped,
            frameSize: 1,
          }),
          slowH2Body(ctx, {
            shape: "Connect streaming (ListProfiles) over h2, 1-byte DATA frames",
            port,
            localAddress: attackerAddress(),
            headers: connectH2Headers(PATH.gatewayListProfiles, [], "application/connect+proto"),
            body: enveloped,
            frameSize: 1,
          }),
          slowH2Body(ctx, {
            shape: "gzip-compressed gRPC over h2, 1-byte DATA frames",
            port,
            localAddress: attackerAddress(),
            headers: grpcRequestHeaders(PATH.gatewayGetProfile, [
              ["grpc-encoding", "gzip"],
              ["grpc-accept-encoding", "gzip"],
            ]),
            body: envelope(compressed, { flags: 1 }),
            frameSize: 1,
          }),
          slowH1ChunkedBody(ctx, {
            shape: "gRPC-Web over HTTP/1.1, 1-byte chunks",
            port,
            localAddress: attackerAddress(),
            path: PATH.gatewayGetProfile,
            headers: { "Content-Type": "application/grpc-web+proto", "X-Grpc-Web": "1" },
            bodyBytes: enveloped.length,
          }),
        ]),
      { attackMs: ATTACK_MS, tailMs: 3_000 },
    );
    t.diagnostic(
      o.result.map((r) => `${r.shape}: ${(r.bodyBytesSent / 1024).toFixed(0)} KiB sent; ${r.seen}`).join("\n"),
    );
    const problems = violations(o, { tailCpu: { gateway: TAIL_CPU_BOUND } });
    // The attacker's own requests: answered (or refused, or the connection closed) before the attack's bound.
    for (const r of o.result) {
      if (!r.answered) problems.push(`${r.shape}: no answer within ${ATTACK_MS / 1000} s (${r.seen})`);
    }
    assertHeld(t, o, problems, "0.2 MiB messages in 1-byte pieces at the gateway");
  });
});
