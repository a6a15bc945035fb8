import assert from "node:assert/strict";
import { once } from "node:events";
import * as http2 from "node:http2";
import * as net from "node:net";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient as createConnectClient } from "@connectrpc/connect";
import {
  compressionGzip,
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import { CreateUserResponseSchema, GetUserResponseSchema, UserService } from "@demo/proto/demo/users/v1/users_pb";
import { Health } from "@demo/proto/health/v1/health_pb";
import { createClient } from "../client/client.ts";
import { UpstreamPool } from "../client/upstream-pool.ts";
import type { RunningServer, ServerSettings } from "../serve.ts";
import { serveUsers } from "../test-support/users.ts";
import { captureLogger, metricSample } from "../testing/index.ts";

/**
 * The bounds every server keeps on what clients send (limits/), each seen
 * from a client's side on a real server on port 0: what a client past the
 * bound gets, and that clients within it are served. Small settings keep the
 * tests short; the defaults are in limits/settings.ts.
 */

const ENGINES = ["grpc", "connect"] as const;
const GET_USER = "/demo.users.v1.UserService/GetUser";

/** GetUserRequest{id} as a gRPC envelope. */
function getUserEnvelope(id: string): Buffer {
  const message = Buffer.concat([Buffer.from([0x0a, id.length]), Buffer.from(id)]);
  const out = Buffer.alloc(5 + message.length);
  out.writeUInt32BE(message.length, 1);
  message.copy(out, 5);
  return out;
}

const refusals = (limit: string) => metricSample("rpc_kit_server_limit_refusals_total", { limit });

async function withServer(
  engine: (typeof ENGINES)[number],
  settings: Partial<ServerSettings>,
  run: (server: RunningServer, log: ReturnType<typeof captureLogger>) => Promise<void>,
): Promise<void> {
  const log = captureLogger("users");
  const server = await serveUsers({ engine, settings, logger: log.logger });
  try {
    await run(server, log);
  } finally {
    await server.shutdown();
  }
}

/** A gRPC call on a raw http2 stream: resolves with grpc-status, or `rst:<code>`. */
function grpcStream(
  session: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders = {},
): { stream: http2.ClientHttp2Stream; outcome: Promise<string> } {
  const stream = session.request({
    ":method": "POST",
    ":path": GET_USER,
    "content-type": "application/grpc",
    te: "trailers",
    ...headers,
  });
  stream.on("error", () => {});
  let status: string | undefined;
  const record = (h: http2.IncomingHttpHeaders) => {
    if (h["grpc-status"] !== undefined) status = String(h["grpc-status"]);
  };
  stream.on("response", record);
  stream.on("trailers", record);
  stream.resume();
  const outcome = new Promise<string>((resolve) =>
    stream.once("close", () => resolve(status ?? `rst:${stream.rstCode}`)),
  );
  return { stream, outcome };
}

function connect(port: number, localAddress?: string): http2.ClientHttp2Session {
  const session = http2.connect(`http://127.0.0.1:${port}`, {
    createConnection: () => net.connect({ host: "127.0.0.1", port, ...(localAddress && { localAddress }) }),
  });
  session.on("error", () => {});
  return session;
}

/** Resolves when `socket` closes, with the bytes it received. */
function closed(socket: net.Socket): Promise<string> {
  let received = "";
  socket.on("data", (d: Buffer) => {
    received += d.toString("latin1");
  });
  socket.on("error", () => {});
  return new Promise((resolve) => socket.once("close", () => resolve(received)));
}

/**
 * A bare HTTP/2 server answering UserService by hand, whose first call of
 * each method meets `refuse` instead (a dropped connection, a refused
 * stream); `seen` lists the paths of every stream that arrived.
 */
async function refusingFirstCalls(refuse: (stream: http2.ServerHttp2Stream) => void) {
  const seen: string[] = [];
  const h2 = http2.createServer();
  h2.on("stream", (stream, headers) => {
    stream.on("error", () => {});
    const path = String(headers[":path"]);
    seen.push(path);
    if (seen.filter((p) => p === path).length === 1) {
      refuse(stream);
      return;
    }
    stream.resume();
    stream.on("end", () => {
      stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
      stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
      const message = path.endsWith("GetUser")
        ? toBinary(GetUserResponseSchema, create(GetUserResponseSchema, { user: { id: "u-1" } }))
        : toBinary(CreateUserResponseSchema, create(CreateUserResponseSchema, { user: { id: "u-4" } }));
      const out = Buffer.alloc(5 + message.length);
      out.writeUInt32BE(message.length, 1);
      out.set(message, 5);
      stream.end(out);
    });
  });
  await new Promise<void>((resolve) => h2.listen(0, "127.0.0.1", resolve));
  const port = (h2.address() as net.AddressInfo).port;
  return { seen, port, close: () => h2.close() };
}

for (const engine of ENGINES) {
  describe(`bounds on what clients send: ${engine} engine`, () => {
    it("MAX_BUFFERED_REQUEST_BYTES(_PER_CLIENT): unfinished bodies past it are refused with ResourceExhausted, before more is read; others are served", async () => {
      const settings = {
        maxMessageBytes: 64 * 1024,
        maxBufferedRequestBytes: 192 * 1024,
        maxBufferedRequestBytesPerClient: 128 * 1024,
      };
      await withServer(engine, settings, async (server) => {
        const before = await refusals("buffered_bytes_per_client");
        const attacker = connect(server.port, "127.0.0.51");
        const partial = () => {
          const call = grpcStream(attacker);
          const head = Buffer.alloc(5);
          head.writeUInt32BE(60 * 1024, 1);
          call.stream.write(Buffer.concat([head, Buffer.alloc(50 * 1024)])); // never finished
          return call;
        };
        const held = [partial(), partial()];
        await sleep(100);
        const third = partial();
        assert.equal(await third.outcome, String(Code.ResourceExhausted), "past the client's share");
        assert.equal((await refusals("buffered_bytes_per_client")) - before, 1);
        // Another client is served meanwhile.
        const users = createConnectClient(
          UserService,
          createGrpcTransport({ baseUrl: `http://127.0.0.1:${server.port}` }),
        );
        assert.equal((await users.getUser({ id: "u-1" })).user?.id, "u-1");
        for (const call of held) call.stream.close();
        attacker.close();
        await Promise.all(held.map((c) => c.outcome));
        await sleep(20);
        assert.equal(await metricSample("rpc_kit_server_buffered_request_bytes", {}), 0, "every lease given back");
      });
    });

    it("REQUEST_TIMEOUT_MS: a request that does not finish arriving in time fails DeadlineExceeded", async () => {
      await withServer(engine, { requestTimeoutMs: 300 }, async (server) => {
        const session = connect(server.port);
        const call = grpcStream(session);
        call.stream.write(getUserEnvelope("u-1").subarray(0, 7)); // and no more
        const started = performance.now();
        assert.equal(await call.outcome, String(Code.DeadlineExceeded));
        assert.ok(performance.now() - started < 2_000);
        session.close();
      });
    });

    it("MAX_HEADER_BYTES holds on the first stream of a connection too (Node applies its SETTINGS only once acknowledged)", async () => {
      await withServer(engine, { maxHeaderBytes: 4096 }, async (server) => {
        const before = await refusals("header_bytes");
        const session = connect(server.port);
        // Sent at once: before the client can have acknowledged the server's SETTINGS.
        const call = grpcStream(session, { "x-big": "x".repeat(20_000) });
        call.stream.end(getUserEnvelope("u-1"));
        assert.equal(await call.outcome, String(Code.ResourceExhausted));
        assert.equal((await refusals("header_bytes")) - before, 1);
        const fine = grpcStream(session);
        fine.stream.end(getUserEnvelope("u-1"));
        assert.equal(await fine.outcome, "0");
        session.close();
      });
    });

    it("HEADERS_TIMEOUT_MS: a connection that sends nothing, or only the HTTP/2 preface, is closed", async () => {
      await withServer(engine, { headersTimeoutMs: 300 }, async (server) => {
        const before = await refusals("headers_timeout");
        const silent = net.connect(server.port, "127.0.0.1");
        const preface = net.connect(server.port, "127.0.0.1", () => preface.write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
        const started = performance.now();
        await Promise.all([closed(silent), closed(preface)]);
        assert.ok(performance.now() - started < 3_000, "closed within the timeout and a check interval");
        assert.equal((await refusals("headers_timeout")) - before, 2);
      });
    });

    it("MIN_PING_INTERVAL_MS: a client that PINGs without pause gets GOAWAY(ENHANCE_YOUR_CALM, too_many_pings)", async () => {
      await withServer(engine, {}, async (server) => {
        const session = connect(server.port);
        const goaway = once(session, "goaway") as Promise<[number, number, Buffer]>;
        await once(session, "remoteSettings");
        for (let i = 0; i < 10 && !session.destroyed; i++) {
          session.ping(() => {});
          await sleep(1);
        }
        const [code, , debug] = await goaway;
        assert.equal(code, http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
        assert.equal(debug?.toString(), "too_many_pings");
        session.destroy();
      });
    });

    it("MIN_PING_INTERVAL_MS: PINGs between calls, or spaced, are answered", async () => {
      await withServer(engine, { minPingIntervalMs: 200 }, async (server) => {
        const session = connect(server.port);
        let goaway = false;
        session.on("goaway", () => {
          goaway = true;
        });
        for (let i = 0; i < 5; i++) {
          const call = grpcStream(session);
          call.stream.end(getUserEnvelope("u-1"));
          assert.equal(await call.outcome, "0");
          await new Promise((resolve) => session.ping((err) => resolve(err)));
          await new Promise((resolve) => session.ping((err) => resolve(err)));
        }
        for (let i = 0; i < 3; i++) {
          await sleep(250);
          await new Promise((resolve) => session.ping((err) => resolve(err)));
        }
        assert.equal(goaway, false);
        session.close();
      });
    });

    it("MAX_HEALTH_WATCHES: Watch streams past it get ResourceExhausted; all end at shutdown", async () => {
      const log = captureLogger("users");
      const server = await serveUsers({ engine, settings: { maxHealthWatches: 2 }, logger: log.logger });
      const health = createConnectClient(Health, createGrpcTransport({ baseUrl: `http://127.0.0.1:${server.port}` }));
      const watch = async () => {
        const statuses: number[] = [];
        for await (const res of health.watch({})) statuses.push(res.status);
        return statuses;
      };
      const first = watch();
      const second = watch();
      await sleep(100);
      await assert.rejects(watch(), (e: unknown) => e instanceof ConnectError && e.code === Code.ResourceExhausted);
      await server.shutdown();
      // SERVING, then NOT_SERVING as the drain begins, then the stream ends.
      assert.deepEqual(await first, [1, 2]);
      assert.deepEqual(await second, [1, 2]);
    });

    it("MAX_CONNECTIONS: connections past it are closed at once; the admin port still answers", async () => {
      await withServer(engine, { maxConnections: 3 }, async (server) => {
        const before = await refusals("connections");
        const sockets = Array.from({ length: 3 }, () => net.connect(server.port, "127.0.0.1"));
        await Promise.all(sockets.map((s) => once(s, "connect")));
        await sleep(50);
        const extra = net.connect(server.port, "127.0.0.1");
        const received = await closed(extra);
        assert.equal(received, "", "closed without an answer");
        assert.equal((await refusals("connections")) - before, 1);
        const healthz = await fetch(`http://127.0.0.1:${server.adminPort}/healthz`);
        assert.equal(healthz.status, 200);
        for (const s of sockets) s.destroy();
      });
    });

    it("accepts compressed requests, decompressed by rpc-kit within the bounds", async () => {
      await withServer(engine, {}, async (server) => {
        const users = createConnectClient(
          UserService,
          createGrpcTransport({
            baseUrl: `http://127.0.0.1:${server.port}`,
            sendCompression: compressionGzip,
            compressMinBytes: 0,
          }),
        );
        assert.equal((await users.getUser({ id: "u-1" })).user?.id, "u-1");
      });
    });

    it("a compressed request that inflates past MAX_MESSAGE_BYTES is refused, never inflated in full", async () => {
      await withServer(engine, { maxMessageBytes: 64 * 1024 }, async (server) => {
        const users = createConnectClient(
          UserService,
          createGrpcTransport({
            baseUrl: `http://127.0.0.1:${server.port}`,
            sendCompression: compressionGzip,
            compressMinBytes: 0,
            writeMaxBytes: 1 << 20,
          }),
        );
        await assert.rejects(
          users.getUser({ id: "x".repeat(200_000) }),
          (e: unknown) => e instanceof ConnectError && e.code === Code.ResourceExhausted,
        );
      });
    });
  });
}

describe("bounds on what clients send: the edge only", () => {
  let server: RunningServer;
  const log = captureLogger("edge");
  // MAX_CONNECTIONS_PER_CLIENT is small here: each test makes its raw connections from an address of its own.
  before(async () => {
    server = await serveUsers({
      engine: "connect",
      logger: log.logger,
      settings: {
        maxConnectionsPerClient: 4,
        maxPipelinedRequests: 4,
        maxResetStreamsPerSecond: 20,
        idleTimeoutMs: 400,
        maxJsonDepth: 10,
        headersTimeoutMs: 500,
      },
    });
  });
  after(() => server.shutdown());

  it("MAX_JSON_DEPTH: JSON nested deeper is refused with InvalidArgument (HTTP 400) before it is parsed", async () => {
    const before = await refusals("json_depth");
    const deep = `{"id":"u-1","x":${"[".repeat(11)}${"]".repeat(11)}}`;
    const res = await fetch(`http://127.0.0.1:${server.port}${GET_USER}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: deep,
    });
    assert.equal(res.status, 400);
    assert.match(await res.text(), /nested deeper than 10/);
    assert.equal((await refusals("json_depth")) - before, 1);
  });

  it("serves Connect, gRPC-Web and gRPC requests compressed with gzip", async () => {
    const baseUrl = `http://127.0.0.1:${server.port}`;
    for (const transport of [
      createConnectTransport({ baseUrl, httpVersion: "1.1", sendCompression: compressionGzip, compressMinBytes: 0 }),
      createConnectTransport({ baseUrl, httpVersion: "2", sendCompression: compressionGzip, compressMinBytes: 0 }),
      createGrpcWebTransport({ baseUrl, httpVersion: "1.1", sendCompression: compressionGzip, compressMinBytes: 0 }),
    ]) {
      const users = createConnectClient(UserService, transport);
      assert.equal((await users.getUser({ id: "u-1" })).user?.id, "u-1");
      const ids: string[] = [];
      for await (const res of users.listUsers({})) ids.push(res.user?.id ?? "");
      assert.equal(ids.length, 50);
    }
  });

  it("MAX_CONNECTIONS_PER_CLIENT: one address past it is closed at once; another address is served", async () => {
    const before = await refusals("connections_per_client");
    const sockets = Array.from({ length: 4 }, () =>
      net.connect({ host: "127.0.0.1", port: server.port, localAddress: "127.0.0.61" }),
    );
    await Promise.all(sockets.map((s) => once(s, "connect")));
    await sleep(50);
    const extra = net.connect({ host: "127.0.0.1", port: server.port, localAddress: "127.0.0.61" });
    assert.equal(await closed(extra), "");
    assert.equal((await refusals("connections_per_client")) - before, 1);
    const res = await fetch(`http://127.0.0.1:${server.port}${GET_USER}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: '{"id":"u-1"}',
    });
    assert.equal(res.status, 200);
    for (const s of sockets) s.destroy();
  });

  it("HEADERS_TIMEOUT_MS: a partial HTTP/1.1 head gets 408 and the connection is closed", async () => {
    const socket = net.connect(server.port, "127.0.0.1", () => socket.write("POST /x HTTP/1.1\r\nHost: a\r\n"));
    const started = performance.now();
    const received = await closed(socket);
    assert.match(received, /^HTTP\/1\.1 408 /);
    assert.ok(performance.now() - started < 3_000);
  });

  it("answers a malformed request after a served one on the same HTTP/1.1 connection with 400, and stays up", async () => {
    const socket = net.connect({ host: "127.0.0.1", port: server.port, localAddress: "127.0.0.82" });
    await once(socket, "connect");
    const body = '{"id":"u-1"}';
    socket.write(
      `POST ${GET_USER} HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
    );
    let received = "";
    socket.on("data", (d: Buffer) => {
      received += d.toString();
    });
    while (!received.includes("Ada Lovelace")) await sleep(5);
    socket.write("GET / HTTP/1.1\r\nHost a\r\n\r\n"); // no colon: a parse error
    await closed(socket);
    assert.match(received, /HTTP\/1\.1 400 Bad Request/);
    const res = await fetch(`http://127.0.0.1:${server.port}${GET_USER}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
    });
    assert.equal(res.status, 200);
  });

  it("IDLE_TIMEOUT_MS: an HTTP/2 connection without calls gets GOAWAY(NO_ERROR); one with a call in flight does not", async () => {
    const idle = connect(server.port);
    const busy = connect(server.port);
    const busyCall = grpcStream(busy);
    busyCall.stream.end(getUserEnvelope("slow-900"));
    const [code] = (await once(idle, "goaway")) as [number];
    assert.equal(code, http2.constants.NGHTTP2_NO_ERROR);
    assert.equal(await busyCall.outcome, "0", "the call in flight finished on its connection");
    idle.destroy();
    busy.destroy();
  });

  it("MAX_PIPELINED_REQUESTS: pipelined HTTP/1.1 requests run at most that many at once, all answered in order", async () => {
    const socket = net.connect({ host: "127.0.0.1", port: server.port, localAddress: "127.0.0.81" });
    await once(socket, "connect");
    const body = '{"id":"slow-100"}';
    const request = `POST ${GET_USER} HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
    let received = "";
    socket.on("data", (d: Buffer) => {
      received += d.toString();
    });
    const started = performance.now();
    socket.write(request.repeat(12));
    while ((received.match(/HTTP\/1\.1 200/g) ?? []).length < 12 && performance.now() - started < 10_000)
      await sleep(20);
    assert.equal((received.match(/HTTP\/1\.1 200/g) ?? []).length, 12);
    // 12 requests of 100 ms, 4 at a time: at least three rounds.
    assert.ok(performance.now() - started >= 290, "not all at once");
    socket.destroy();
  });

  it("MAX_PIPELINED_REQUESTS: a connection with far more waiting is closed", async () => {
    const before = await refusals("pipelining");
    const socket = net.connect({ host: "127.0.0.1", port: server.port, localAddress: "127.0.0.81" });
    await once(socket, "connect");
    const request = `GET /nothing HTTP/1.1\r\nHost: a\r\n\r\n`;
    const done = closed(socket);
    socket.write(request.repeat(200));
    await done;
    assert.equal((await refusals("pipelining")) - before, 1);
  });

  it("MAX_RESET_STREAMS_PER_SECOND: a client resetting streams past its budget gets GOAWAY(ENHANCE_YOUR_CALM), across connections", async () => {
    const before = await refusals("reset_streams");
    const session = connect(server.port, "127.0.0.71");
    await once(session, "remoteSettings");
    const goaway = once(session, "goaway") as Promise<[number]>;
    for (let i = 0; i < 60 && !session.destroyed && !session.closed; i++) {
      const call = grpcStream(session);
      call.stream.write(getUserEnvelope("slow-1000"));
      await sleep(1);
      call.stream.close(http2.constants.NGHTTP2_CANCEL);
    }
    const [code] = await goaway;
    assert.equal(code, http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
    // A new connection from the same address, right away, is closed at once.
    const again = net.connect({ host: "127.0.0.1", port: server.port, localAddress: "127.0.0.71" });
    assert.equal(await closed(again), "");
    assert.ok((await refusals("reset_streams")) - before >= 2);
    // Another address is served.
    const users = createConnectClient(UserService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${server.port}` }));
    assert.equal((await users.getUser({ id: "u-1" })).user?.id, "u-1");
    session.destroy();
  });
});

describe("bounds on what clients send: internal servers and relayed cancellations", () => {
  it("accept thousands of cancelled calls on one connection without GOAWAY (Node's default would after 1,000 at 33/s)", async () => {
    await withServer("grpc", {}, async (server) => {
      const session = connect(server.port);
      let goaway: number | undefined;
      session.on("goaway", (code: number) => {
        goaway = code;
      });
      await once(session, "remoteSettings");
      for (let round = 0; round < 30; round++) {
        const calls = Array.from({ length: 100 }, () => {
          const call = grpcStream(session);
          call.stream.end(getUserEnvelope("slow-1000"));
          return call;
        });
        await sleep(5);
        for (const call of calls) call.stream.close(http2.constants.NGHTTP2_CANCEL);
        await Promise.all(calls.map((c) => c.outcome));
      }
      assert.equal(goaway, undefined, "3,000 resets, no GOAWAY");
      const fine = grpcStream(session);
      fine.stream.end(getUserEnvelope("u-1"));
      assert.equal(await fine.outcome, "0");
      session.close();
    });
  });

  it("a client retries an idempotent call whose connection was dropped with GOAWAY(INTERNAL_ERROR), and fails a write with Unavailable", async () => {
    const server = await refusingFirstCalls((stream) => {
      stream.session?.goaway(http2.constants.NGHTTP2_INTERNAL_ERROR);
      stream.session?.destroy();
    });
    const pool = new UpstreamPool();
    try {
      const users = createClient(UserService, `static:///127.0.0.1:${server.port}`, { pool });
      assert.equal((await users.getUser({ id: "u-1" })).user?.id, "u-1", "retried on a new connection");
      await assert.rejects(
        users.createUser({ name: "A", email: "a@example.com" }),
        (e: unknown) => e instanceof ConnectError && e.code === Code.Unavailable,
      );
      assert.deepEqual(
        server.seen.map((p) => p.split("/").at(-1)),
        ["GetUser", "GetUser", "CreateUser"],
        "the write was not sent twice",
      );
    } finally {
      pool.close();
      server.close();
    }
  });

  it("a client retries a call whose stream was refused as it opened (RST ENHANCE_YOUR_CALM: never processed), a write too", async () => {
    // How Node refuses streams while its table still holds reset ones (grpc-js-guard.ts).
    const server = await refusingFirstCalls((stream) => stream.close(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM));
    const pool = new UpstreamPool();
    try {
      const users = createClient(UserService, `static:///127.0.0.1:${server.port}`, { pool });
      assert.equal((await users.getUser({ id: "u-1" })).user?.id, "u-1");
      assert.equal((await users.createUser({ name: "A", email: "a@example.com" })).user?.id, "u-4");
      assert.deepEqual(
        server.seen.map((p) => p.split("/").at(-1)),
        ["GetUser", "GetUser", "CreateUser", "CreateUser"],
      );
    } finally {
      pool.close();
      server.close();
    }
  });
});
