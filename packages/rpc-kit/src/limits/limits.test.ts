import assert from "node:assert/strict";
import * as http2 from "node:http2";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Code, ConnectError, createClient as createConnectClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { UserService } from "@demo/proto/demo/users/v1/users_pb";
import { createClient } from "../client/client.ts";
import { UpstreamPool } from "../client/upstream-pool.ts";
import { loadConfig } from "../config/config.ts";
import { type RunningServer, serve, serverSettings } from "../serve.ts";
import { service } from "../server/service-registration.ts";
import { ada, userFixture } from "../test-support/users.ts";
import { captureLogger, testServerSettings } from "../testing/index.ts";

/**
 * The limits of every server (MAX_MESSAGE_BYTES, MAX_CONCURRENT_STREAMS,
 * MAX_HEADER_BYTES), each enforced with the outcome a caller can act on, on
 * both engines (and, at the edge, on HTTP/1.1 and on the gRPC fast path).
 */

const LIMITS = { maxMessageBytes: 4096, maxConcurrentStreams: 2, maxHeaderBytes: 4096 };

describe("server limits: settings", () => {
  it("has documented defaults and bounds", () => {
    const config = loadConfig(serverSettings({ port: 1, adminPort: 2 }), {});
    assert.equal(config.maxMessageBytes, 4 * 1024 * 1024);
    assert.equal(config.maxConcurrentStreams, 1000);
    assert.equal(config.maxHeaderBytes, 16 * 1024);
    assert.throws(
      () => loadConfig(serverSettings({ port: 1, adminPort: 2 }), { MAX_CONCURRENT_STREAMS: "0" }),
      /MAX_CONCURRENT_STREAMS="0": must be an integer from 1/,
    );
    assert.throws(
      () => loadConfig(serverSettings({ port: 1, adminPort: 2 }), { MAX_HEADER_BYTES: "100" }),
      /MAX_HEADER_BYTES="100": must be an integer from 1024/,
    );
  });
});

for (const engine of ["grpc", "connect"] as const) {
  describe(`server limits: ${engine} engine`, () => {
    let server: RunningServer;
    let base: string;
    let inFlight = 0;
    let maxInFlight = 0;

    before(async () => {
      const fixture = userFixture();
      server = await serve({
        name: "users",
        engine,
        settings: testServerSettings(LIMITS),
        logger: captureLogger("users").logger,
        services: [
          service(UserService, {
            ...fixture.impl,
            async getUser(req, ctx) {
              if (!req.id.startsWith("hold-")) return fixture.impl.getUser(req, ctx);
              inFlight++;
              maxInFlight = Math.max(maxInFlight, inFlight);
              await sleep(Number(req.id.slice(5)));
              inFlight--;
              return { user: ada };
            },
          }),
        ],
        ownsProcess: false,
      });
      base = `http://localhost:${server.port}`;
    });
    after(() => server.shutdown());

    const client = () => createConnectClient(UserService, createGrpcTransport({ baseUrl: base }));
    const code = (e: unknown) => (e instanceof ConnectError ? Code[e.code] : String(e));

    it("MAX_MESSAGE_BYTES: a larger request fails with ResourceExhausted; a smaller one is served", async () => {
      const users = client();
      await assert.rejects(users.getUser({ id: "x".repeat(5000) }), (e: unknown) => {
        assert.equal(code(e), "ResourceExhausted");
        return true;
      });
      await assert.rejects(users.getUser({ id: "x".repeat(3000) }), (e: unknown) => code(e) === "NotFound");
    });

    it("MAX_CONCURRENT_STREAMS: advertised to clients, and one connection never has more calls in flight", async () => {
      const session = http2.connect(base);
      try {
        await new Promise<void>((resolve, reject) => {
          session.once("remoteSettings", () => resolve());
          session.once("error", reject);
        });
        assert.equal(session.remoteSettings.maxConcurrentStreams, 2);
      } finally {
        session.close();
      }
      // Six calls at once on a connection that knows the server's SETTINGS (after a first call):
      // the client holds back what the server would refuse.
      const users = client();
      await users.getUser({ id: "u-1" });
      maxInFlight = 0;
      const results = await Promise.all(Array.from({ length: 6 }, () => users.getUser({ id: "hold-100" })));
      assert.equal(results.length, 6);
      assert.equal(maxInFlight, 2);
    });

    it("MAX_CONCURRENT_STREAMS: streams past it are refused (REFUSED_STREAM, safe to retry)", async () => {
      // Four at once on a new connection, before the client has seen the server's SETTINGS.
      const session = http2.connect(base);
      try {
        const outcomes = await Promise.all(Array.from({ length: 4 }, () => rawGrpcCall(session, "hold-300")));
        assert.deepEqual(outcomes, ["ok", "ok", "refused", "refused"]);
      } finally {
        session.close();
      }
    });

    it("MAX_HEADER_BYTES: a gRPC call with a larger header block fails ResourceExhausted, saying so; a smaller one is served", async () => {
      // Before and after the client acknowledged the server's SETTINGS (Node enforces what it advertises only after).
      const pool = new UpstreamPool();
      try {
        // grpc-js (rpc-kit's client).
        const kit = createClient(UserService, `localhost:${server.port}`, { pool, retry: { maxAttempts: 1 } });
        await kit.getUser({ id: "u-1" });
        await assert.rejects(kit.getUser({ id: "u-1" }, { headers: { "x-big": "a".repeat(6000) } }), (e: unknown) => {
          assert.equal(code(e), "ResourceExhausted");
          assert.match(String((e as ConnectError).rawMessage), /request headers larger than 4096 bytes/);
          return true;
        });
        assert.equal((await kit.getUser({ id: "u-1" }, { headers: { "x-big": "a".repeat(2000) } })).user?.id, "u-1");
      } finally {
        pool.close();
      }
      // connect-node's gRPC client.
      const users = client();
      await assert.rejects(users.getUser({ id: "u-1" }, { headers: { "x-big": "a".repeat(6000) } }), (e: unknown) => {
        assert.equal(code(e), "ResourceExhausted");
        return true;
      });
      await users.getUser({ id: "u-1" });
      await assert.rejects(users.getUser({ id: "u-1" }, { headers: { "x-big": "a".repeat(6000) } }), (e: unknown) => {
        assert.equal(code(e), "ResourceExhausted");
        return true;
      });
    });

    if (engine === "connect") {
      it("MAX_HEADER_BYTES: HTTP/1.1 gets 431 for a larger header block", async () => {
        const post = (size: number) =>
          fetch(`${base}/demo.users.v1.UserService/GetUser`, {
            method: "POST",
            headers: { "content-type": "application/json", "x-big": "a".repeat(size) },
            body: '{"id":"u-1"}',
          });
        assert.equal((await post(6000)).status, 431);
        assert.equal((await post(2000)).status, 200);
      });

      it("MAX_MESSAGE_BYTES: Connect JSON over HTTP/1.1 gets ResourceExhausted too", async () => {
        const res = await fetch(`${base}/demo.users.v1.UserService/GetUser`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ id: "x".repeat(5000) }),
        });
        assert.equal(((await res.json()) as { code: string }).code, "resource_exhausted");
      });
    }
  });
}

/** One unary gRPC GetUser on a raw http2 session: "ok", "refused" (REFUSED_STREAM) or the error's text. */
function rawGrpcCall(session: http2.ClientHttp2Session, id: string): Promise<string> {
  return new Promise((resolve) => {
    const body = Buffer.concat([Buffer.from([0x0a, id.length]), Buffer.from(id)]);
    const frame = Buffer.alloc(5);
    frame.writeUInt32BE(body.length, 1);
    const stream = session.request({
      ":method": "POST",
      ":path": "/demo.users.v1.UserService/GetUser",
      "content-type": "application/grpc",
      te: "trailers",
    });
    let status: string | undefined;
    stream.on("trailers", (t) => {
      status = String(t["grpc-status"]);
    });
    stream.on("response", (h) => {
      if (h["grpc-status"] !== undefined) status = String(h["grpc-status"]);
    });
    stream.on("error", () => undefined);
    stream.on("data", () => undefined);
    stream.on("close", () => {
      if (stream.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM) resolve("refused");
      else resolve(status === "0" ? "ok" : `status ${status} rst ${stream.rstCode}`);
    });
    stream.end(Buffer.concat([frame, body]));
  });
}
