import assert from "node:assert/strict";
import * as http from "node:http";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError, createClient as createConnectClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { UserService } from "@demo/proto/demo/users/v1/users_pb";
import { Health, HealthCheckResponse_ServingStatus } from "@demo/proto/health/v1/health_pb";
import type { RunningServer } from "../serve.ts";
import { serveUsers } from "../test-support/users.ts";
import { captureLogger, metricSample } from "../testing/index.ts";

/** POSTs `body` over HTTP/1.1 from the local address `client`; resolves with the status. */
function postFrom(port: number, client: string, path: string, body: string, contentType: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: "127.0.0.1", port, path, method: "POST", localAddress: client, headers: { "content-type": contentType } },
      (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

describe("connect engine (the edge): one plaintext port for every protocol", () => {
  const log = captureLogger("edge");
  let server: RunningServer;
  let base: string;

  before(async () => {
    server = await serveUsers({ engine: "connect", logger: log.logger });
    base = `http://localhost:${server.port}`;
  });
  after(() => server.shutdown());

  const post = (method: string, body: string, headers: Record<string, string> = {}) =>
    fetch(`${base}/demo.users.v1.UserService/${method}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body,
    });

  it("answers Connect JSON over HTTP/1.1", async () => {
    const res = await post("GetUser", '{"id":"u-1"}');
    assert.equal(res.status, 200);
    assert.equal(((await res.json()) as { user: { name: string } }).user.name, "Ada Lovelace");
  });

  it("maps codes to HTTP statuses (NotFound → 404, InvalidArgument → 400, Internal → 500)", async () => {
    const notFound = await post("GetUser", '{"id":"u-9"}');
    assert.equal(notFound.status, 404);
    assert.deepEqual(await notFound.json(), { code: "not_found", message: "user u-9 not found" });
    assert.equal((await post("GetUser", '{"id":"bad"}')).status, 400);
    const crash = await post("GetUser", '{"id":"crash"}');
    assert.equal(crash.status, 500);
    assert.doesNotMatch(await crash.text(), /hunter2/);
  });

  it("rejects malformed JSON and unknown fields as InvalidArgument", async () => {
    assert.equal((await post("GetUser", "{nope")).status, 400);
    assert.equal((await post("GetUser", '{"id":"u-1","admin":true}')).status, 400);
  });

  it("answers gRPC, gRPC-Web and Connect binary over h2c on the same port", async () => {
    for (const transport of [
      createGrpcTransport({ baseUrl: base }),
      createGrpcWebTransport({ baseUrl: base, httpVersion: "2" }),
      createConnectTransport({ baseUrl: base, httpVersion: "2" }),
      createGrpcWebTransport({ baseUrl: base, httpVersion: "1.1" }),
    ]) {
      const client = createConnectClient(UserService, transport);
      assert.equal((await client.getUser({ id: "u-1" })).user?.id, "u-1");
      await assert.rejects(
        client.getUser({ id: "u-9" }),
        (e: unknown) => e instanceof ConnectError && e.code === Code.NotFound,
      );
    }
  });

  it("streams, and serves a streaming request with no message as the empty request", async () => {
    const res = await fetch(`${base}/demo.users.v1.UserService/ListUsers`, {
      method: "POST",
      headers: { "content-type": "application/connect+json" },
      body: new Uint8Array(0),
    });
    assert.equal(res.status, 200);
    const body = await res.text();
    assert.match(body, /"id":"u-1"/);
    assert.match(body, /"id":"u-50"/);
  });

  it("serves grpc.health.v1 on the public port, for gRPC probes", async () => {
    const health = createConnectClient(Health, createGrpcTransport({ baseUrl: base }));
    assert.equal((await health.check({})).status, HealthCheckResponse_ServingStatus.SERVING);
  });

  it("counts each request refused before its RPC began, which no span or grpc_* series sees, and logs it once per client and kind per interval", async () => {
    const refused = () => log.lines.filter((l) => String(l.msg).includes("refused before the call began"));
    const before = refused().length;
    const counted = (status: string) =>
      metricSample("rpc_kit_server_refused_total", {
        grpc_service: "demo.users.v1.UserService",
        grpc_method: "GetUser",
        status,
      });
    const [bad400, bad415] = [await counted("400"), await counted("415")];
    // Each from an address of its own: the log line is per client address.
    const from = (client: string, body: string, contentType = "application/json") =>
      postFrom(server.port, client, "/demo.users.v1.UserService/GetUser", body, contentType);
    assert.equal(await from("127.0.0.21", "{not json"), 400);
    assert.equal(await from("127.0.0.21", "{still not json"), 400);
    assert.equal(await from("127.0.0.21", '{"id":"u-1"}', "text/plain"), 415);
    assert.equal(await from("127.0.0.22", "{not json"), 400);
    assert.equal(await from("127.0.0.21", '{"id":"u-9"}'), 404, "an RPC that fails is not 'refused'");
    assert.equal(
      (await fetch(`${base}/no.Such/Method`, { method: "POST" })).status,
      404,
      "nor a path that is no method",
    );
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(
      refused()
        .slice(before)
        .map((l) => [l.client, l.rpc_method, l.status, l.content_type, l.refused]),
      [
        ["127.0.0.21", "GetUser", "400", "application/json", 1],
        ["127.0.0.21", "GetUser", "415", "text/plain", 1],
        ["127.0.0.22", "GetUser", "400", "application/json", 1],
      ],
      "the second 400 from 127.0.0.21 is counted, not logged",
    );
    assert.deepEqual([(await counted("400")) - bad400, (await counted("415")) - bad415], [3, 1]);
  });

  it("logs one line per call with the code", () => {
    const codes = log.lines.filter((l) => l.rpc_method === "GetUser").map((l) => l.rpc_code);
    assert.ok(codes.includes("ok") && codes.includes("not_found") && codes.includes("internal"));
  });
});
