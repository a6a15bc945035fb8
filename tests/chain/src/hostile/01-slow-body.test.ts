/**
 * Finding 1 (critical): one request whose 4 MiB body arrives as 1-byte
 * HTTP/2 DATA frames, or 1-byte HTTP/1.1 chunks, ran every service out of
 * heap in 5-15 s (one Buffer kept per chunk). Request bodies must cost
 * memory proportional to the bytes received.
 *
 * After the fix an HTTP/2 sender of 1-byte frames is also past
 * MAX_CONTROL_BYTES_PER_SECOND (9 bytes of frame header per byte of data)
 * and may be sent away; either way the process must stay up and small.
 */
import { it } from "node:test";
import { envelope } from "../raw-h2.ts";
import {
  bigRequest,
  connectH2Headers,
  grpcRequestHeaders,
  MAX_MESSAGE_BYTES,
  PATH,
  type SlowBodyOutcome,
  slowH1ChunkedBody,
  slowH2Body,
} from "./attacks.ts";
import { assertHeld, attackerAddress, MiB, observe, violations, withHostileChain } from "./harness.ts";

/** How long the slow bodies are sent: today the processes pass 500 MB within 8 s and die within 5-15 s. */
const ATTACK_MS = 12_000;
/**
 * Peak RSS of an attacked service: a ~120 MB idle process (its young
 * generation may take 3 × 32 MB semi-spaces) holding a few 4 MiB bodies,
 * with room; far below the 384 MB old-space cap where today's run dies.
 */
const RSS_BOUND = 256 * MiB;
/** Each body: just under MAX_MESSAGE_BYTES (4 MiB), so the message limit never refuses it. */
const MESSAGE = bigRequest(MAX_MESSAGE_BYTES - 64);

const summary = (outcomes: readonly SlowBodyOutcome[]) =>
  outcomes.map((o) => `${o.shape}: ${(o.bodyBytesSent / MiB).toFixed(2)} MiB sent; ${o.seen}`).join("\n");

it("the gateway survives 4 MiB bodies in 1-byte pieces on its gRPC fast path, Connect over h2 and Connect over HTTP/1.1 chunked", {
  timeout: 60_000,
}, async (t) => {
  await withHostileChain({}, async (chain) => {
    const port = chain.gateway.port;
    const o = await observe(
      chain,
      (ctx) =>
        Promise.all([
          slowH2Body(ctx, {
            shape: "gRPC fast path, 1-byte DATA frames",
            port,
            localAddress: attackerAddress(),
            headers: grpcRequestHeaders(PATH.gatewayGetProfile),
            body: envelope(MESSAGE),
            frameSize: 1,
          }),
          slowH2Body(ctx, {
            shape: "Connect over h2, 1-byte DATA frames",
            port,
            localAddress: attackerAddress(),
            headers: connectH2Headers(PATH.gatewayGetProfile),
            body: MESSAGE,
            frameSize: 1,
          }),
          slowH1ChunkedBody(ctx, {
            shape: "Connect over HTTP/1.1, 1-byte chunks",
            port,
            localAddress: attackerAddress(),
            path: PATH.gatewayGetProfile,
            headers: { "Content-Type": "application/proto", "Connect-Protocol-Version": "1" },
            bodyBytes: MESSAGE.length,
          }),
        ]),
      { attackMs: ATTACK_MS },
    );
    t.diagnostic(summary(o.result));
    assertHeld(t, o, violations(o, { rss: { gateway: RSS_BOUND } }), "slow 1-byte bodies at the gateway");
  });
});

it("profiles and users survive a 4 MiB gRPC body in 1-byte DATA frames", { timeout: 60_000 }, async (t) => {
  await withHostileChain({}, async (chain) => {
    const o = await observe(
      chain,
      (ctx) =>
        Promise.all([
          slowH2Body(ctx, {
            shape: "profiles, 1-byte DATA frames",
            port: chain.profiles.port,
            localAddress: attackerAddress(),
            headers: grpcRequestHeaders(PATH.profilesGetProfile),
            body: envelope(MESSAGE),
            frameSize: 1,
          }),
          slowH2Body(ctx, {
            shape: "users, 1-byte DATA frames",
            port: chain.users.port,
            localAddress: attackerAddress(),
            headers: grpcRequestHeaders(PATH.usersGetUser),
            body: envelope(MESSAGE),
            frameSize: 1,
          }),
        ]),
      { attackMs: ATTACK_MS },
    );
    t.diagnostic(summary(o.result));
    assertHeld(
      t,
      o,
      violations(o, { rss: { profiles: RSS_BOUND, users: RSS_BOUND } }),
      "slow 1-byte bodies at profiles and users",
    );
  });
});
