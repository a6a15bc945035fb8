import assert from "node:assert/strict";
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { GatewayService } from "@demo/proto/demo/gateway/v1/gateway_pb";
import { until } from "@demo/rpc-kit/testing";
import { exportTo, type OtlpReceiver, type ReceivedSpan, startOtlpReceiver } from "./otlp-receiver.ts";
import { type Chain, type ServiceProcess, startChain, startService } from "./processes.ts";

const SERVER = 2;
const CLIENT = 3;

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
      body: JSON.stringify({ userId: "u-90017" }),
    });
    assert.equal(res.status, 404);
    const spans = await until("6 spans", () => (spansOf(traceId).length >= 6 ? spansOf(traceId) : undefined));
    assert.equal(spans.length, 6);
    // Exported as deployed: OTLP/HTTP in the SDK's default encoding, protobuf.
    assert.deepEqual(new Set(receiver.requests), new Set(["POST /v1/traces application/x-protobuf"]));

    const gatewayServer = one(spans, "gateway", SERVER);
    const gatewayClient = one(spans, "gateway", CLIENT);
    const profilesServer = one(spans, "profiles", SERVER);
    const profilesClient = one(spans, "profiles", CLIENT);
    const usersServer = one(spans, "users", SERVER);
    const usersQuery = one(spans, "users", CLIENT);
    assert.equal(gatewayServer.parentSpanId, callerSpan);
    assert.equal(gatewayClient.parentSpanId, gatewayServer.spanId);
    assert.equal(profilesServer.parentSpanId, gatewayClient.spanId);
    assert.equal(profilesClient.parentSpanId, profilesServer.spanId);
    assert.equal(usersServer.parentSpanId, profilesClient.spanId);
    assert.equal(usersQuery.parentSpanId, usersServer.spanId);

    assert.equal(gatewayServer.name, "demo.gateway.v1.GatewayService/GetProfile");
    assert.equal(gatewayClient.name, "demo.profiles.v1.ProfileService/GetProfile");
    assert.equal(profilesServer.name, "demo.profiles.v1.ProfileService/GetProfile");
    assert.equal(profilesClient.name, "demo.users.v1.UserService/GetUser");
    assert.equal(usersServer.name, "demo.users.v1.UserService/GetUser");
    // The database hop: OpenTelemetry's database conventions; the query's text, never its values; a miss is no error.
    assert.equal(usersQuery.name, "SELECT users");
    assert.deepEqual(Object.fromEntries(Object.entries(usersQuery.attributes).filter(([k]) => k.startsWith("db."))), {
      "db.system.name": "postgresql",
      "db.namespace": new URL(chain.users.databaseUrl ?? "").pathname.slice(1),
      "db.operation.name": "SELECT",
      "db.collection.name": "users",
      "db.query.text": "SELECT id, name, email, created_at FROM users WHERE id = $1",
    });
    assert.equal(usersQuery.attributes["server.address"], "127.0.0.1");
    assert.equal(usersQuery.status.code ?? 0, 0);
    assert.doesNotMatch(
      JSON.stringify(spans.map((s) => [s.name, s.attributes])),
      /90017|NOT-A-SECRET/,
      "no parameter value or password in any span",
    );
    // The edge was called with Connect (JSON), so its span speaks Connect's code names; every other span is gRPC.
    assert.deepEqual(gatewayServer.attributes, {
      "rpc.system.name": "connectrpc",
      "rpc.method": "demo.gateway.v1.GatewayService/GetProfile",
      "rpc.status_code": "not_found",
    });
    for (const span of [gatewayClient, profilesServer, profilesClient, usersServer]) {
      assert.equal(span.attributes["rpc.system.name"], "grpc", `${span.service} ${span.kind}`);
      assert.equal(span.attributes["rpc.status_code"], "NOT_FOUND", `${span.service} ${span.kind}`);
    }
    assert.equal(gatewayClient.attributes["server.address"], "localhost");
    assert.equal(gatewayClient.attributes["server.port"], chain.profiles.port);
    assert.equal(profilesClient.attributes["server.address"], "localhost");
    assert.equal(profilesClient.attributes["server.port"], chain.users.port);
    // NotFound is the caller's problem, not the server's: only client spans are errors.
    for (const span of [gatewayServer, profilesServer, usersServer]) {
      assert.equal(span.status.code ?? 0, 0, `${span.service} server span is not an error`);
      assert.equal(span.attributes["error.type"], undefined);
    }
    for (const span of [gatewayClient, profilesClient]) {
      assert.equal(span.status.code, 2, `${span.service} client span is an error`);
      assert.equal(span.attributes["error.type"], "NOT_FOUND");
    }
  });

  it("carries the caller's tracestate to every span of the trace", async () => {
    const traceId = "5c0bd1a2e3f4a5b6c7d8e9f0a1b2c3d4";
    const tracestate = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";
    const res = await fetch(`${chain.baseUrl}/demo.gateway.v1.GatewayService/GetProfile`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        traceparent: `00-${traceId}-00f067aa0ba902b7-01`,
        tracestate,
        baggage: "tenant=acme",
      },
      body: JSON.stringify({ userId: "u-1" }),
    });
    assert.equal(res.status, 200);
    const spans = await until("6 spans", () => (spansOf(traceId).length >= 6 ? spansOf(traceId) : undefined));
    assert.equal(spans.length, 6);
    for (const span of spans) assert.equal(span.traceState, tracestate, `${span.service} ${span.name}`);
  });

  it("writes the same trace id on the per-RPC log line of every service", async () => {
    const traceId = "0af7651916cd43dd8448eb211c80319c";
    await fetch(`${chain.baseUrl}/demo.gateway.v1.GatewayService/GetProfile`, {
      method: "POST",
      headers: { "content-type": "application/json", traceparent: `00-${traceId}-b7ad6b7169203331-01` },
      body: JSON.stringify({ userId: "u-1" }),
    });
    const spans = await until("6 spans", () => (spansOf(traceId).length >= 6 ? spansOf(traceId) : undefined));
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
    const gatewayClient = one(spans, "gateway", CLIENT);
    const profilesSpan = one(spans, "profiles", SERVER);
    const profilesClient = one(spans, "profiles", CLIENT);
    const usersSpan = one(spans, "users", SERVER);
    assert.equal(usersSpan.name, "demo.users.v1.UserService/ListUsers");
    // Each hop's span lasts until its upstream's stream has ended, not until its handler returned
    // or the response headers came: a client span ends when its last message (and status) arrived,
    // after the server span below it and before the server span above it.
    // Span times are whole milliseconds plus a precise duration: compare with 1 ms of slack.
    const before = (a: ReceivedSpan, b: ReceivedSpan, what: string) =>
      assert.ok(a.endNs <= b.endNs + 1_000_000n, `${what}: ${a.endNs} <= ${b.endNs}`);
    before(usersSpan, profilesClient, "users' server span ended before profiles' client span");
    before(profilesClient, profilesSpan, "profiles' client span ended before its server span");
    before(profilesSpan, gatewayClient, "profiles' server span ended before the gateway's client span");
    before(gatewayClient, gatewaySpan, "the gateway's client span ended before its server span");
    assert.ok(usersSpan.startNs + 1_000_000n >= gatewaySpan.startNs);
    assert.equal(gatewaySpan.attributes["rpc.status_code"], "ok");
    assert.equal(gatewayClient.attributes["rpc.status_code"], "OK");
    assert.equal(profilesClient.attributes["rpc.status_code"], "OK");
  });

  it("puts the trace and span ids on the lines a handler writes through the request logger", async () => {
    const traceId = "a3ce929d0e0e47364bf92f3577b34da6";
    const res = await fetch(`${chain.baseUrl}/demo.gateway.v1.GatewayService/CreateUser`, {
      method: "POST",
      headers: { "content-type": "application/json", traceparent: `00-${traceId}-b7ad6b7169203331-01` },
      body: JSON.stringify({ name: "Grace Hopper", email: "grace.hopper@example.org" }),
    });
    assert.equal(res.status, 200);
    const userId = ((await res.json()) as { user: { id: string } }).user.id;
    // users' handler logs "user created" through requestLogger(ctx): the line of the call's server span.
    const created = await until("users' user created line", () =>
      chain.users.lines.find((l) => l.msg === "user created" && l.user_id === userId),
    );
    const perRpc = await until("users' CreateUser line", () =>
      chain.users.lines.find((l) => l.rpc_method === "CreateUser" && l.trace_id === traceId),
    );
    const usersSpan = await until("users' CreateUser span", () =>
      spansOf(traceId).find((s) => s.service === "users" && s.kind === SERVER),
    );
    assert.equal(created.trace_id, traceId);
    assert.equal(created.span_id, usersSpan.spanId);
    assert.equal(created.span_id, perRpc.span_id, "the handler's line and the per-RPC line name the same span");
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

describe("trace context on the wire, with no OTLP endpoint set", () => {
  /** Headers of every call that reached the stand-in users service. */
  const received: http2.IncomingHttpHeaders[] = [];
  let fakeUsers: http2.Http2Server;
  let profiles: ServiceProcess;
  let gateway: ServiceProcess;
  /** A receiver where an SDK sends by default (localhost:4318); undefined when that port is taken here. */
  let defaultReceiver: OtlpReceiver | undefined;

  before(async () => {
    // users, played by a server that keeps the headers it gets and answers every call with NotFound.
    fakeUsers = http2.createServer();
    fakeUsers.on("stream", (stream, headers) => {
      received.push(headers);
      stream.on("data", () => undefined);
      stream.on("end", () =>
        stream.respond(
          { ":status": 200, "content-type": "application/grpc", "grpc-status": "5", "grpc-message": "no such user" },
          { endStream: true },
        ),
      );
    });
    await new Promise<void>((r) => fakeUsers.listen(0, "::", r));
    defaultReceiver = await startOtlpReceiver({ port: 4318, host: "::" }).catch(() => undefined);
    // No OTEL_EXPORTER_OTLP_ENDPOINT: the processes export nothing, yet make spans and pass their context on.
    profiles = await startService("profiles", {
      USERS_ADDR: `localhost:${(fakeUsers.address() as AddressInfo).port}`,
      OTEL_BSP_SCHEDULE_DELAY: "50",
    });
    gateway = await startService("gateway", {
      PROFILES_ADDR: `localhost:${profiles.port}`,
      OTEL_BSP_SCHEDULE_DELAY: "50",
    });
  });
  after(async () => {
    await Promise.all([gateway?.stop(), profiles?.stop()]);
    fakeUsers?.close();
    await defaultReceiver?.close();
  });

  it("passes traceparent, tracestate and baggage from the caller through the gateway and profiles", async () => {
    const traceId = "1bf92f3577b34da6a3ce929d0e0e4737";
    const callerSpan = "00f067aa0ba902b8";
    const tracestate = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";
    const res = await fetch(`http://localhost:${gateway.port}/demo.gateway.v1.GatewayService/GetProfile`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        traceparent: `00-${traceId}-${callerSpan}-01`,
        tracestate,
        baggage: "tenant=acme,plan=gold;tier=1",
      },
      body: JSON.stringify({ userId: "u-1" }),
    });
    assert.equal(res.status, 404);
    const call = received.find((h) => h[":path"] === "/demo.users.v1.UserService/GetUser");
    assert.ok(call, "profiles called users");

    const traceparent = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(String(call.traceparent));
    assert.ok(traceparent, `a sampled traceparent: ${call.traceparent}`);
    assert.equal(traceparent[1], traceId, "the caller's trace");
    assert.notEqual(traceparent[2], callerSpan, "parented on profiles' client span, not on the caller's");
    assert.equal(call.tracestate, tracestate);
    const baggage = new Map(
      String(call.baggage)
        .split(",")
        .map((entry) => entry.trim().split("=", 2) as [string, string]),
    );
    assert.equal(baggage.get("tenant"), "acme");
    assert.equal(baggage.get("plan"), "gold;tier");

    // Both processes logged the call under the caller's trace.
    for (const [service, method] of [
      [profiles, "GetProfile"],
      [gateway, "GetProfile"],
    ] as const) {
      await until(`${service.name} to log the call with trace_id ${traceId}`, () =>
        service.lines.find((l) => l.rpc_method === method && l.trace_id === traceId),
      );
    }
  });

  it("exports nothing, not even to the default endpoint", async (t) => {
    if (defaultReceiver === undefined) {
      t.skip("port 4318 is in use here, so the default endpoint cannot be watched");
      return;
    }
    // Stopping flushes whatever a process had buffered for export.
    await Promise.all([gateway.stop(), profiles.stop()]);
    // Whatever the encoding (the SDK's default is protobuf): no request at all.
    assert.deepEqual(defaultReceiver.requests, []);
  });
});
