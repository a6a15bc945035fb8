import assert from "node:assert/strict";
import { once } from "node:events";
import * as http2 from "node:http2";
import * as net from "node:net";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { UserService } from "@demo/proto/demo/users/v1/users_pb";
import type { RunningServer } from "../serve.ts";
import { serveUsers } from "../test-support/users.ts";
import { captureLogger, metricSample } from "../testing/index.ts";

/** GetUserRequest{id: "u-1"} as a gRPC envelope. */
const GET_U1 = Buffer.from([0, 0, 0, 0, 5, 0x0a, 3, 0x75, 0x2d, 0x31]);

/** An HTTP/2 frame, by hand, to send what node:http2's client refuses to. */
function frame(type: number, flags: number, streamId: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(streamId, 5);
  return Buffer.concat([head, payload]);
}

/** An HPACK block of literal fields without indexing or Huffman (all names and values < 127 bytes). */
function hpack(headers: Record<string, string>): Buffer {
  return Buffer.concat(
    Object.entries(headers).map(([name, value]) =>
      Buffer.concat([
        Buffer.from([0, name.length]),
        Buffer.from(name),
        Buffer.from([value.length]),
        Buffer.from(value),
      ]),
    ),
  );
}

describe("gRPC fast path (the edge): hostile clients", () => {
  const log = captureLogger("edge");
  let server: RunningServer;
  let base: string;

  before(async () => {
    server = await serveUsers({ engine: "connect", logger: log.logger });
    base = `http://localhost:${server.port}`;
  });
  after(() => server.shutdown());

  /** Opens a GetUser stream on its own connection, with `headers` added; from the local address `client` if given. */
  function open(headers: http2.OutgoingHttpHeaders = {}, client?: string) {
    const session =
      client === undefined
        ? http2.connect(base)
        : http2.connect(base, {
            createConnection: () => net.connect({ host: "127.0.0.1", port: server.port, localAddress: client }),
          });
    session.on("error", () => {});
    const stream = session.request({
      ":method": "POST",
      ":path": "/demo.users.v1.UserService/GetUser",
      "content-type": "application/grpc",
      te: "trailers",
      ...headers,
    });
    stream.on("error", () => {});
    let grpcStatus: string | undefined;
    const record = (h: http2.IncomingHttpHeaders) => {
      if (h["grpc-status"] !== undefined) grpcStatus = String(h["grpc-status"]);
    };
    stream.on("response", record);
    stream.on("trailers", record);
    stream.resume();
    // Not events.once: it rejects on the 'error' a reset stream emits.
    const closed = new Promise<string | undefined>((resolve) =>
      stream.once("close", () => {
        session.close();
        resolve(grpcStatus);
      }),
    );
    return { stream, closed };
  }

  it("survives callers that reset a stream mid-request with an error code", async () => {
    // RST_STREAM with any code but NO_ERROR and CANCEL makes Node emit 'error' on the server's stream:
    // with no listener there, it was an uncaught exception that took the whole process down.
    for (const code of [
      http2.constants.NGHTTP2_PROTOCOL_ERROR,
      http2.constants.NGHTTP2_INTERNAL_ERROR,
      http2.constants.NGHTTP2_ENHANCE_YOUR_CALM,
    ]) {
      const { stream, closed } = open();
      stream.write(GET_U1.subarray(0, 7));
      await sleep(50); // let the server take the stream
      stream.close(code);
      await closed;
    }
    await sleep(50);
    const client = createClient(UserService, createGrpcTransport({ baseUrl: base }));
    assert.equal((await client.getUser({ id: "u-1" })).user?.id, "u-1");
  });

  it("survives a connection that dies of a protocol error while a call is in flight", async () => {
    // Node destroys the session with an error and every open stream with it: a fast-path
    // stream without an 'error' listener turned that into an uncaught exception.
    const socket = net.connect(server.port, "127.0.0.1");
    socket.on("error", () => {});
    socket.resume(); // read (and drop) the server's frames, so that its close is seen
    await once(socket, "connect");
    const headers = hpack({
      ":method": "POST",
      ":scheme": "http",
      ":path": "/demo.users.v1.UserService/GetUser",
      ":authority": "localhost",
      "content-type": "application/grpc",
      te: "trailers",
    });
    socket.write(
      Buffer.concat([
        Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
        frame(4, 0, 0, Buffer.alloc(0)), // SETTINGS
        frame(1, 0x4, 1, headers), // HEADERS, END_HEADERS
        frame(0, 0, 1, GET_U1.subarray(0, 7)), // half the message, stream left open
      ]),
    );
    await sleep(50);
    socket.write(frame(8, 0, 0, Buffer.alloc(4))); // WINDOW_UPDATE of 0: a connection PROTOCOL_ERROR
    await once(socket, "close");
    await sleep(50);
    const client = createClient(UserService, createGrpcTransport({ baseUrl: base }));
    assert.equal((await client.getUser({ id: "u-1" })).user?.id, "u-1");
  });

  it("refuses a length prefix beyond the limit with ResourceExhausted at once, without waiting for the data", async () => {
    const { stream, closed } = open();
    const head = Buffer.alloc(5);
    head.writeUInt32BE(0xffffffff, 1);
    stream.write(head); // the request stays open: the answer must not wait for 4 GiB
    const [response] = (await once(stream, "response")) as [http2.IncomingHttpHeaders];
    assert.equal(response["grpc-status"], "8");
    stream.close();
    await closed;
  });

  it("counts calls refused before their interceptors ran, which no span or grpc_* series sees, logging one line per client and kind per interval", async () => {
    const refused = () => log.lines.filter((l) => String(l.msg).includes("refused before the call began"));
    const before = refused().length;
    const counted = (status: string) =>
      metricSample("rpc_kit_server_refused_total", {
        grpc_service: "demo.users.v1.UserService",
        grpc_method: "GetUser",
        status,
      });
    const invalid = await counted("InvalidArgument");
    // Field 1 (id) as a length-delimited string that claims 100 bytes and has 1: undecodable.
    const undecodable = open({}, "127.0.0.31");
    undecodable.stream.end(Buffer.from([0, 0, 0, 0, 3, 0x0a, 100, 0x75]));
    assert.equal(await undecodable.closed, "3");
    const badTimeout = open({ "grpc-timeout": "soon" }, "127.0.0.31");
    badTimeout.stream.end(GET_U1);
    assert.equal(await badTimeout.closed, "3");
    const elsewhere = open({ "grpc-timeout": "soon" }, "127.0.0.32");
    elsewhere.stream.end(GET_U1);
    assert.equal(await elsewhere.closed, "3");
    const fine = open({}, "127.0.0.31");
    fine.stream.end(GET_U1);
    assert.equal(await fine.closed, "0");
    await sleep(20);
    assert.deepEqual(
      refused()
        .slice(before)
        .map((l) => [l.client, l.rpc_method, l.status, l.refused]),
      [
        ["127.0.0.31", "GetUser", "InvalidArgument", 1],
        ["127.0.0.32", "GetUser", "InvalidArgument", 1],
      ],
      "the second refusal from 127.0.0.31 is counted, not logged",
    );
    assert.equal((await counted("InvalidArgument")) - invalid, 3);
  });

  it("serves timeouts beyond 2^31-1 ms as 24.8 days, on gRPC and Connect, instead of a timer that fires at once", async () => {
    // A longer setTimeout fires after 1 ms with a TimeoutOverflowWarning: the call ended as DeadlineExceeded.
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.name);
    process.on("warning", onWarning);
    try {
      const { stream, closed } = open({ "grpc-timeout": "99999999H" });
      stream.end(GET_U1);
      assert.equal(await closed, "0");
      const res = await fetch(`${base}/demo.users.v1.UserService/GetUser`, {
        method: "POST",
        headers: { "content-type": "application/json", "connect-timeout-ms": "9999999999" },
        body: '{"id":"u-1"}',
      });
      assert.equal(res.status, 200);
      await sleep(20);
      assert.deepEqual(warnings, []);
    } finally {
      process.off("warning", onWarning);
    }
  });
});
