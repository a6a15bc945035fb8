import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as http2 from "node:http2";
import type * as net from "node:net";
import { after, describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { UserService } from "@demo/proto/demo/users/v1/users_pb";
import { createClient } from "../client/client.ts";
import { UpstreamPool } from "../client/upstream-pool.ts";
import { serveUsers } from "../test-support/users.ts";
import { freePort, parsePrometheusText, seriesKey } from "../testing/index.ts";
import { collectRuntimeMetrics, metricsRegistry } from "./metrics.ts";

/** What /metrics serves, by `name{k="v",…}` with labels sorted by key. */
const scrape = async () => parsePrometheusText(await metricsRegistry.metrics());
const key = seriesKey;

/** An HTTP/2 server that answers every gRPC call with Unavailable, as an overloaded replica does. */
async function unavailableServer(): Promise<{ port: number; close(): void }> {
  const server = http2.createServer();
  server.on("stream", (stream) => {
    stream.on("data", () => undefined);
    stream.on("end", () =>
      stream.respond(
        { ":status": 200, "content-type": "application/grpc", "grpc-status": "14", "grpc-message": "overloaded" },
        { endStream: true },
      ),
    );
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { port: (server.address() as net.AddressInfo).port, close: () => server.close() };
}

const unavailable = (e: unknown) => e instanceof ConnectError && e.code === Code.Unavailable;

describe("rpc-kit's upstream metrics on /metrics", () => {
  const pool = new UpstreamPool();
  const closers: (() => void)[] = [];
  after(() => {
    pool.close();
    for (const close of closers) close();
  });

  it("rpc_kit_client_retry_budget_tokens and rpc_kit_client_retries_throttled_total follow the budget", async () => {
    const upstream = await unavailableServer();
    closers.push(upstream.close);
    const target = `static:///127.0.0.1:${upstream.port}`;
    // Half a token per call, none to start: a call may retry only once two calls have paid for it.
    const client = createClient(UserService, target, { pool, retryBudget: { ratio: 0.5, initialTokens: 0 } });
    const tokens = key("rpc_kit_client_retry_budget_tokens", { target });
    const throttled = key("rpc_kit_client_retries_throttled_total", { target });
    const retries = key("rpc_kit_client_retries_total", {
      target,
      grpc_service: "demo.users.v1.UserService",
      grpc_method: "GetUser",
      grpc_code: "Unavailable",
    });

    // 0.5 tokens: the retry is refused.
    await assert.rejects(client.getUser({ id: "u-1" }), unavailable);
    let samples = await scrape();
    assert.equal(samples.get(tokens), 0.5);
    assert.equal(samples.get(throttled), 1);
    assert.equal(samples.get(retries), undefined, "no retry yet");

    // 1 token: one retry takes it, the next one is refused.
    await assert.rejects(client.getUser({ id: "u-1" }), unavailable);
    samples = await scrape();
    assert.equal(samples.get(tokens), 0);
    assert.equal(samples.get(retries), 1);
    assert.equal(samples.get(throttled), 2);
  });

  it("rpc_kit_upstream_endpoints counts the endpoints known, ready, and ejected", async () => {
    const upstream = await unavailableServer();
    closers.push(upstream.close);
    const dead = await freePort();
    const target = `static:///127.0.0.1:${upstream.port},127.0.0.1:${dead}`;
    // No retries: each call is one Unavailable answer from the live endpoint.
    const client = createClient(UserService, target, { pool, retryBudget: { ratio: 0, initialTokens: 0 } });
    const endpoints = (state: string) => key("rpc_kit_upstream_endpoints", { target, state });

    // The default ejection: 5 Unavailable answers in a row.
    for (let i = 0; i < 4; i++) await assert.rejects(client.getUser({ id: "u-1" }), unavailable);
    let samples = await scrape();
    assert.equal(samples.get(endpoints("known")), 2, "both listed endpoints are known");
    assert.equal(samples.get(endpoints("ready")), 1, "only the live one is connected");
    assert.equal(samples.get(endpoints("ejected")), 0);

    await assert.rejects(client.getUser({ id: "u-1" }), unavailable);
    samples = await scrape();
    assert.equal(samples.get(endpoints("known")), 2);
    assert.equal(samples.get(endpoints("ready")), 0, "the live one is ejected, the other still down");
    assert.equal(samples.get(endpoints("ejected")), 1);
    assert.equal(samples.get(key("rpc_kit_client_retries_throttled_total", { target })), 5);
  });
});

describe("in-flight gauges", () => {
  it("count a call on both sides while it is under way, and drop back to 0 when it ends", async () => {
    const server = await serveUsers();
    const pool = new UpstreamPool();
    try {
      const target = `static:///127.0.0.1:${server.port}`;
      const client = createClient(UserService, target, { pool });
      const serving = key("rpc_kit_server_in_flight_calls", { grpc_service: "demo.users.v1.UserService" });
      const calling = key("rpc_kit_client_in_flight_calls", { target });

      const held = client.getUser({ id: "slow-300" });
      let samples = await scrape();
      for (const deadline = Date.now() + 2_000; samples.get(serving) !== 1 && Date.now() < deadline; ) {
        await new Promise((r) => setTimeout(r, 10));
        samples = await scrape();
      }
      assert.equal(samples.get(serving), 1, "the server is serving it");
      assert.equal(samples.get(calling), 1, "the client is waiting on it");

      await held;
      samples = await scrape();
      assert.equal(samples.get(serving), 0);
      assert.equal(samples.get(calling), 0);
    } finally {
      pool.close();
      await server.shutdown();
    }
  });
});

describe("metric labels", () => {
  it("every series carries only the label names its metric declares (what dashboards may query)", async () => {
    collectRuntimeMetrics();
    const metrics = await metricsRegistry.getMetricsAsJSON();
    assert.ok(
      metrics.some((m) => m.name === "grpc_client_handled_total" && m.values.length > 0),
      "client series",
    );
    assert.ok(
      metrics.some((m) => m.name === "grpc_server_handled_total" && m.values.length > 0),
      "server series",
    );
    for (const m of metrics) {
      const declared = (metricsRegistry.getSingleMetric(m.name) as { labelNames?: readonly string[] } | undefined)
        ?.labelNames;
      assert.ok(Array.isArray(declared), `${m.name} declares its label names`);
      const allowed = new Set([...declared, ...(String(m.type) === "histogram" ? ["le"] : [])]);
      for (const v of m.values) {
        for (const label of Object.keys(v.labels)) assert.ok(allowed.has(label), `${m.name}: ${label} is declared`);
      }
    }
  });
});

describe("the registry at import", () => {
  it("holds nothing until a server, client or explicit call registers its series", () => {
    // A process of its own: this file has registered series already.
    const every = [
      "../index.ts",
      "../client/index.ts",
      "../server/index.ts",
      "../call/index.ts",
      "../security/index.ts",
      "../postgres/index.ts",
      "../testing/index.ts",
      "./index.ts",
    ].map((m) => new URL(m, import.meta.url).href);
    const script = `const ms = ${JSON.stringify(every)}; for (const m of ms) await import(m);
const { metricsRegistry } = await import(ms.at(-1));
process.stdout.write(JSON.stringify(metricsRegistry.getMetricsAsArray().map((m) => m.name)));`;
    const names = JSON.parse(
      execFileSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" }),
    );
    assert.deepEqual(names, []);
  });
});
