import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { GatewayService } from "@demo/proto/demo/gateway/v1/gateway_pb";
import { key, scrape } from "./metrics-scrape.ts";
import { type Chain, startChain } from "./processes.ts";

describe("/metrics after 7 OK and 3 NotFound calls", () => {
  let chain: Chain;
  before(async () => {
    chain = await startChain();
    const client = createClient(GatewayService, createGrpcTransport({ baseUrl: chain.baseUrl }));
    for (let i = 0; i < 7; i++) await client.getProfile({ userId: `u-${(i % 3) + 1}` });
    for (let i = 0; i < 3; i++) await client.getProfile({ userId: `nobody-${i}` }).catch(() => undefined);
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
      assert.equal(samples.get(key(`grpc_${hop.side}_started_total`, labels)), 10);
      assert.equal(samples.get(key(`grpc_${hop.side}_handled_total`, { ...labels, grpc_code: "OK" })), 7);
      assert.equal(samples.get(key(`grpc_${hop.side}_handled_total`, { ...labels, grpc_code: "NotFound" })), 3);
      assert.equal(samples.get(key(`grpc_${hop.side}_handling_seconds_count`, labels)), 10);
      assert.equal(samples.get(key(`grpc_${hop.side}_handling_seconds_bucket`, { ...labels, le: "+Inf" })), 10);
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
