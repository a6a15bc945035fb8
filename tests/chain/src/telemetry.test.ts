import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { GatewayService } from "@demo/proto/demo/gateway/v1/gateway_pb";
import { exportTo, type OtlpReceiver, type ReceivedSpan, startOtlpReceiver } from "./otlp-receiver.ts";
import { type Chain, startChain } from "./processes.ts";

const SERVER = 2;
const CLIENT = 3;

async function until<T>(what: string, find: () => T | undefined, ms = 5_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const found = find();
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe("one trace across three services, exported over OTLP/HTTP", () => {
  let receiver: OtlpReceiver;
  let chain: Chain;
  let gateway: ReturnType<typeof createClient<typeof GatewayService>>;

  before(async () => {
    receiver = await startOtlpReceiver();
    chain = await startChain({ all: exportTo(receiver) });
    gateway = createClient(GatewayService, createConnectTransport({ baseUrl: chain.baseUrl, httpVersion: "1.1" }));
  });
  after(async () => {
    await chain.stop();
    await receiver.close();
  });

  const spansOf = (traceId: string) => receiver.spans.filter((s) => s.traceId === traceId);
  const one = (spans: ReceivedSpan[], service: string, kind: number): ReceivedSpan => {
    const found = spans.filter((s) => s.service === service && s.kind === kind);
    assert.equal(found.length, 1, `one ${service} ${kind === SERVER ? "server" : "client"} span`);
    return found[0] as ReceivedSpan;
  };

  it("continues the caller's trace through every hop, parented hop by hop, with the codes of a NotFound", async () => {
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    const callerSpan = "00f067aa0ba902b7";
    const res = await fetch(`${chain.baseUrl}/demo.gateway.v1.GatewayService/GetProfile`, {
      method: "POST",
      headers: { "content-type": "application/json", traceparent: `00-${traceId}-${callerSpan}-01` },
      body: JSON.stringify({ userId: "nobody" }),
    });
    assert.equal(res.status, 404);
    const spans = await until("5 spans", () => (spansOf(traceId).length >= 5 ? spansOf(traceId) : undefined));
    assert.equal(spans.length, 5);

    const gatewayServer = one(spans, "gateway", SERVER);
    const gatewayClient = one(spans, "gateway", CLIENT);
    const profilesServer = one(spans, "profiles", SERVER);
    const profilesClient = one(spans, "profiles", CLIENT);
    const usersServer = one(spans, "users", SERVER);
    assert.equal(gatewayServer.parentSpanId, callerSpan);
    assert.equal(gatewayClient.parentSpanId, gatewayServer.spanId);
    assert.equal(profilesServer.parentSpanId, gatewayClient.spanId);
    assert.equal(profilesClient.parentSpanId, profilesServer.spanId);
    assert.equal(usersServer.parentSpanId, profilesClient.spanId);

    assert.equal(gatewayServer.name, "demo.gateway.v1.GatewayService/GetProfile");
    assert.equal(usersServer.name, "demo.users.v1.UserService/GetUser");
    assert.deepEqual(gatewayServer.attributes, {
      "rpc.system.name": "connect_rpc",
      "rpc.method": "demo.gateway.v1.GatewayService/GetProfile",
      "rpc.status_code": "not_found",
    });
    assert.equal(usersServer.attributes["rpc.system.name"], "grpc");
    assert.equal(usersServer.attributes["rpc.status_code"], "NOT_FOUND");
    assert.equal(profilesClient.attributes["rpc.status_code"], "NOT_FOUND");
    assert.equal(profilesClient.attributes["server.address"], "localhost");
    assert.equal(profilesClient.attributes["server.port"], chain.users.port);
    // NotFound is the caller's problem, not the server's: only client spans are errors.
    assert.equal(usersServer.status.code ?? 0, 0);
    assert.equal(gatewayServer.status.code ?? 0, 0);
    assert.equal(profilesClient.status.code, 2);
    assert.equal(profilesClient.attributes["error.type"], "NOT_FOUND");
  });

  it("writes the same trace id on the per-RPC log line of every service", async () => {
    const traceId = "0af7651916cd43dd8448eb211c80319c";
    await fetch(`${chain.baseUrl}/demo.gateway.v1.GatewayService/GetProfile`, {
      method: "POST",
      headers: { "content-type": "application/json", traceparent: `00-${traceId}-b7ad6b7169203331-01` },
      body: JSON.stringify({ userId: "u-1" }),
    });
    const spans = await until("5 spans", () => (spansOf(traceId).length >= 5 ? spansOf(traceId) : undefined));
    for (const [service, method] of [
      [chain.users, "GetUser"],
      [chain.profiles, "GetProfile"],
      [chain.gateway, "GetProfile"],
    ] as const) {
      // Log lines are buffered for up to 100 ms, so they may arrive after the spans.
      const line = await until(`${service.name} to log the call with trace_id ${traceId}`, () =>
        service.lines.find((l) => l.rpc_method === method && l.trace_id === traceId),
      );
      const serverSpan = spans.find((s) => s.service === service.name && s.kind === SERVER);
      assert.equal(line.span_id, serverSpan?.spanId, `${service.name} logs the server span's id`);
    }
  });

  it("starts a new trace when the caller sends none, and ends a stream's spans after its last message", async () => {
    let last = "";
    for await (const { profile } of gateway.listProfiles({})) last = profile?.user?.id ?? "";
    assert.equal(last, "u-3");
    const gatewaySpan = await until("the gateway's ListProfiles span", () =>
      receiver.spans.find((s) => s.name === "demo.gateway.v1.GatewayService/ListProfiles" && s.kind === SERVER),
    );
    assert.equal(gatewaySpan.parentSpanId, "");
    const spans = await until("5 spans of the stream", () =>
      spansOf(gatewaySpan.traceId).length >= 5 ? spansOf(gatewaySpan.traceId) : undefined,
    );
    const profilesSpan = one(spans, "profiles", SERVER);
    const usersSpan = one(spans, "users", SERVER);
    assert.equal(usersSpan.name, "demo.users.v1.UserService/ListUsers");
    // Each hop's span lasts until its upstream's stream has ended, not until its handler returned.
    assert.ok(usersSpan.endNs <= profilesSpan.endNs, "users ended before profiles");
    assert.ok(profilesSpan.endNs <= gatewaySpan.endNs, "profiles ended before the gateway");
    assert.ok(usersSpan.startNs >= gatewaySpan.startNs);
    assert.equal(gatewaySpan.attributes["rpc.status_code"], "ok");
  });

  it("never puts a debug_redact field in logs, spans, or errors sent to callers", async () => {
    const email = "private.person@example.org";
    const created = await fetch(`${chain.baseUrl}/demo.gateway.v1.GatewayService/CreateUser`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "Private Person", email }),
    });
    assert.equal(created.status, 200);
    const userId = ((await created.json()) as { user: { id: string } }).user.id;
    // The stored email comes back in GetProfile (it is the caller's own data)…
    const profile = await gateway.getProfile({ userId });
    assert.equal(profile.profile?.user?.email, email);
    // …but no error about it may echo it: taken, or rejected by the owner.
    const taken = await fetch(`${chain.baseUrl}/demo.gateway.v1.GatewayService/CreateUser`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "Someone", email }),
    });
    assert.equal(taken.status, 409);
    assert.ok(!(await taken.text()).includes(email));
    const malformed = "private.person@localhost";
    const rejected = await fetch(`${chain.baseUrl}/demo.gateway.v1.GatewayService/CreateUser`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "Someone", email: malformed }),
    });
    assert.equal(rejected.status, 400);
    assert.ok(!(await rejected.text()).includes("private.person"));

    await until("the spans of the calls", () =>
      receiver.spans.filter((s) => s.name.endsWith("/CreateUser") && s.service === "users").length >= 3
        ? true
        : undefined,
    );
    for (const span of receiver.spans) assert.ok(!span.raw.includes("private.person"), `span ${span.name}`);
    for (const [service, method] of [
      [chain.users, "CreateUser"],
      [chain.profiles, "CreateProfile"],
      [chain.gateway, "CreateUser"],
    ] as const) {
      // Wait for the buffered per-RPC lines, so the check below reads what was really logged.
      await until(`${service.name}'s ${method} lines`, () =>
        service.lines.filter((l) => l.rpc_method === method).length >= 3 ? true : undefined,
      );
      assert.ok(!service.output().includes("private.person"), `${service.name}'s log`);
    }
  });
});
