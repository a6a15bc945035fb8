import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { GatewayService } from "@demo/proto/demo/gateway/v1/gateway_pb";
import { key, scrape, total } from "./metrics-scrape.ts";
import { type Chain, startChain } from "./processes.ts";

/** Calls made at the gateway: over gRPC (its fast path) and over Connect (connect-node), different mixes of each. */
const MIX = { grpc: { ok: 7, notFound: 3 }, connect: { ok: 4, notFound: 2 } };
const OK = MIX.grpc.ok + MIX.connect.ok;
const NOT_FOUND = MIX.grpc.notFound + MIX.connect.notFound;

describe(`/metrics after ${MIX.grpc.ok} OK and ${MIX.grpc.notFound} NotFound calls over gRPC, ${MIX.connect.ok} and ${MIX.connect.notFound} over Connect`, () => {
  let chain: Chain;
  before(async () => {
    chain = await startChain();
    for (const [protocol, transport] of [
      ["grpc", createGrpcTransport({ baseUrl: chain.baseUrl })],
      ["connect", createConnectTransport({ baseUrl: chain.baseUrl, httpVersion: "1.1" })],
    ] as const) {
      const client = createClient(GatewayService, transport);
      const { ok, notFound } = MIX[protocol];
      for (let i = 0; i < ok; i++) await client.getProfile({ userId: `u-${(i % 3) + 1}` });
      for (let i = 0; i < notFound; i++) await client.getProfile({ userId: `nobody-${i}` }).catch(() => undefined);
    }
  });
  after(() => chain.stop());

  const hops = [
    { process: "gateway", side: "server", service: "demo.gateway.v1.GatewayService", method: "GetProfile" },
    { process: "gateway", side: "client", service: "demo.profiles.v1.ProfileService", method: "GetProfile" },
    { process: "profiles", side: "server", service: "demo.profiles.v1.ProfileService", method: "GetProfile" },
    { process: "profiles", side: "client", service: "demo.users.v1.UserService", method: "GetUser" },
    { process: "users", side: "server", service: "demo.users.v1.UserService", method: "GetUser" },
  ] as const;

  for (const hop of hops) {
    it(`${hop.process} ${hop.side}: ${hop.service}/${hop.method} counted exactly`, async () => {
      const samples = await scrape(chain[hop.process]);
      const labels = { grpc_type: "unary", grpc_service: hop.service, grpc_method: hop.method };
      assert.equal(samples.get(key(`grpc_${hop.side}_started_total`, labels)), OK + NOT_FOUND);
      assert.equal(samples.get(key(`grpc_${hop.side}_handled_total`, { ...labels, grpc_code: "OK" })), OK);
      assert.equal(samples.get(key(`grpc_${hop.side}_handled_total`, { ...labels, grpc_code: "NotFound" })), NOT_FOUND);
      assert.equal(samples.get(key(`grpc_${hop.side}_handling_seconds_count`, labels)), OK + NOT_FOUND);
      assert.equal(
        samples.get(key(`grpc_${hop.side}_handling_seconds_bucket`, { ...labels, le: "+Inf" })),
        OK + NOT_FOUND,
      );
    });
  }

  for (const [caller, upstream] of [
    ["gateway", "profiles"],
    ["profiles", "users"],
  ] as const) {
    it(`${caller}: its upstream's endpoints all ready, no retry, and the retry budget as /debug/rpc shows it`, async () => {
      const target = `dns:///localhost:${chain[upstream].port}`;
      const samples = await scrape(chain[caller]);
      const res = await fetch(`http://localhost:${chain[caller].adminPort}/debug/rpc`);
      const { upstreams } = (await res.json()) as {
        upstreams: {
          target: string;
          endpoints: { ready: boolean; ejected: boolean }[];
          retryBudget: { tokens: number; maxTokens: number };
        }[];
      };
      const debug = upstreams.find((u) => u.target === target);
      assert.ok(debug, `${caller} has an upstream ${target}`);
      const endpoints = (state: string) => samples.get(key("rpc_kit_upstream_endpoints", { target, state }));
      // localhost is one address or two (IPv4, IPv6); the upstream listens on both.
      assert.equal(endpoints("known"), debug.endpoints.length);
      assert.ok((endpoints("known") ?? 0) >= 1);
      assert.equal(endpoints("ready"), endpoints("known"), "a healthy upstream: every endpoint ready");
      assert.equal(endpoints("ejected"), 0);
      // Nothing failed with Unavailable: no retry made or refused, and the budget only grew.
      assert.equal(total(samples, "rpc_kit_client_retries_total", { target }), 0);
      assert.equal(total(samples, "rpc_kit_client_retries_throttled_total", { target }), 0);
      const tokens = samples.get(key("rpc_kit_client_retry_budget_tokens", { target }));
      assert.equal(tokens, debug.retryBudget.tokens);
      assert.ok(tokens !== undefined && tokens > 0 && tokens <= debug.retryBudget.maxTokens);
    });
  }

  it("exports the Node runtime metrics and rpc-kit's in-flight gauges", async () => {
    const samples = await scrape(chain.profiles);
    const names = new Set([...samples.keys()].map((k) => k.slice(0, k.indexOf("{"))));
    for (const name of [
      "process_cpu_user_seconds_total",
      "process_resident_memory_bytes",
      "nodejs_eventloop_lag_seconds",
    ]) {
      assert.ok(names.has(name), name);
    }
    assert.equal(
      samples.get(key("rpc_kit_client_in_flight_calls", { target: `dns:///localhost:${chain.users.port}` })),
      0,
    );
    assert.equal(
      samples.get(key("rpc_kit_server_in_flight_calls", { grpc_service: "demo.profiles.v1.ProfileService" })),
      0,
    );
  });
});

describe("in-flight gauges during a call held at users", () => {
  let chain: Chain;
  before(async () => {
    chain = await startChain({ all: { FAULT_INJECTION: "on" } });
  });
  after(() => chain.stop());

  it("count the call at every hop, server and client side, and drop back to 0 when it ends", async () => {
    const gauges = [
      [chain.gateway, "rpc_kit_server_in_flight_calls", { grpc_service: "demo.gateway.v1.GatewayService" }],
      [chain.gateway, "rpc_kit_client_in_flight_calls", { target: `dns:///localhost:${chain.profiles.port}` }],
      [chain.profiles, "rpc_kit_server_in_flight_calls", { grpc_service: "demo.profiles.v1.ProfileService" }],
      [chain.profiles, "rpc_kit_client_in_flight_calls", { target: `dns:///localhost:${chain.users.port}` }],
      [chain.users, "rpc_kit_server_in_flight_calls", { grpc_service: "demo.users.v1.UserService" }],
    ] as const;
    const read = () =>
      Promise.all(gauges.map(async ([service, name, labels]) => (await scrape(service)).get(key(name, labels))));

    const client = createClient(GatewayService, createGrpcTransport({ baseUrl: chain.baseUrl }));
    // Held 1.5 s in users before its handler runs: in flight at every hop meanwhile.
    const held = client.getProfile(
      { userId: "u-1" },
      { headers: { "x-fault-delay-ms": "1500", "x-fault-target": "users" }, timeoutMs: 10_000 },
    );
    let values = await read();
    for (const deadline = Date.now() + 1_000; values.at(-1) !== 1 && Date.now() < deadline; ) {
      await new Promise((r) => setTimeout(r, 20));
      values = await read();
    }
    assert.deepEqual(values, [1, 1, 1, 1, 1], "one call in flight at each hop, on both sides");

    assert.equal((await held).profile?.user?.id, "u-1");
    assert.deepEqual(await read(), [0, 0, 0, 0, 0]);
  });
});

describe("/debug/rpc", () => {
  it("shows each upstream's endpoints, their state and in-flight calls, and the retry budget", async () => {
    const chain = await startChain();
    try {
      const client = createClient(GatewayService, createGrpcTransport({ baseUrl: chain.baseUrl }));
      await client.getProfile({ userId: "u-1" });
      const res = await fetch(`http://localhost:${chain.profiles.adminPort}/debug/rpc`);
      assert.equal(res.status, 200);
      const { upstreams } = (await res.json()) as {
        upstreams: {
          target: string;
          policy: string;
          endpoints: { address: string; state: string; ready: boolean; inFlight: number; calls: number }[];
          retryBudget: { tokens: number; ratio: number };
        }[];
      };
      assert.equal(upstreams.length, 1);
      const [users] = upstreams;
      assert.equal(users?.target, `dns:///localhost:${chain.users.port}`);
      assert.equal(users?.policy, "round_robin");
      assert.ok(users?.endpoints.some((e) => e.ready && e.state === "READY" && e.calls >= 1));
      assert.ok(users?.endpoints.every((e) => e.inFlight === 0));
      assert.equal(users?.retryBudget.ratio, 0.1);
    } finally {
      await chain.stop();
    }
  });
});
