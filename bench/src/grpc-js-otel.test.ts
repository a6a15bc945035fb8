/**
 * The hand-wired `grpc-js-otel` chain really does the work it is measured
 * for: its instrumentations make spans (a silent no-op is the way an ESM
 * instrumentation fails), one trace crosses the three processes, each writes
 * a log line per call to its file and counts the calls on /metrics.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { GatewayService } from "@demo/proto/demo/gateway/v1/gateway_pb";
import { parsePrometheusText } from "@demo/rpc-kit/testing";
import { CONFIGS, type Config, type Role, startConfig } from "./configs.ts";
import { Databases } from "./databases.ts";

const CALLS = 20;
const databases = new Databases();
const logDir = mkdtempSync(join(tmpdir(), "grpc-js-otel-test-"));
after(async () => {
  await databases.close();
  rmSync(logDir, { recursive: true, force: true });
});

/** `grpc-js-otel` with SPAN_STATS=1: each process counts the spans ended and prints them when it stops. */
const otel = CONFIGS.find((c) => c.name === "grpc-js-otel") as Config;
const counted: Config = {
  ...otel,
  command(role, port, upstream, context) {
    const command = otel.command(role, port, upstream, context);
    return { ...command, env: { ...command.env, SPAN_STATS: "1" } };
  },
};

function metric(text: string, name: string, labels: string): number {
  let total = 0;
  for (const [key, value] of parsePrometheusText(text)) {
    if (key.startsWith(`${name}{`) && labels.split(",").every((l) => key.includes(l))) total += value;
  }
  return total;
}

test("grpc-js-otel: spans at every hop and on the query, one trace per call, a log line and metrics per call", async () => {
  const running = await startConfig(counted, { logDir, databases });
  let stopped = false;
  try {
    const client = createClient(
      GatewayService,
      createGrpcTransport({ baseUrl: `http://127.0.0.1:${running.gatewayPort}` }),
    );
    for (let i = 0; i < CALLS; i++) {
      const { profile } = await client.getProfile({ userId: "u-1" }, { timeoutMs: 5_000 });
      assert.equal(profile?.initials, "AL");
      assert.equal(profile?.user?.email, "ada@example.com");
    }
    await assert.rejects(client.getProfile({ userId: "u-404" }, { timeoutMs: 5_000 }), /not found/);

    const scrape = async (role: Role) => (await fetch(`http://127.0.0.1:${running.adminPorts[role]}/metrics`)).text();
    const usersMetrics = await scrape("users");
    const getUser = 'grpc_service="demo.users.v1.UserService",grpc_method="GetUser"';
    assert.equal(metric(usersMetrics, "grpc_server_handled_total", `${getUser},grpc_code="OK"`), CALLS);
    assert.equal(metric(usersMetrics, "grpc_server_handled_total", `${getUser},grpc_code="NotFound"`), 1);
    assert.equal(metric(usersMetrics, "grpc_server_handling_seconds_count", getUser), CALLS + 1);
    const profilesMetrics = await scrape("profiles");
    assert.equal(metric(profilesMetrics, "grpc_client_handled_total", `${getUser},grpc_code="OK"`), CALLS);
    assert.equal(metric(profilesMetrics, "grpc_client_handling_seconds_count", getUser), CALLS + 1);

    await running.stop();
    stopped = true;
    const spans = (role: Role): Record<string, number> => {
      const out = readFileSync(join(logDir, `grpc-js-otel-${role}.log`), "utf8");
      const line = out.split("\n").find((l) => l.includes('"spans ended"'));
      assert.ok(line, `${role} printed no span counts: ${out}`);
      return JSON.parse(line).spans;
    };
    // SpanKind: 1 server, 2 client.
    const calls = CALLS + 1;
    assert.equal(spans("gateway")["grpc.demo.gateway.v1.GatewayService/GetProfile (kind 1)"], calls);
    assert.equal(spans("gateway")["grpc.demo.profiles.v1.ProfileService/GetProfile (kind 2)"], calls);
    assert.equal(spans("profiles")["grpc.demo.profiles.v1.ProfileService/GetProfile (kind 1)"], calls);
    assert.equal(spans("profiles")["grpc.demo.users.v1.UserService/GetUser (kind 2)"], calls);
    const users = spans("users");
    assert.equal(users["grpc.demo.users.v1.UserService/GetUser (kind 1)"], calls);
    const queries = Object.entries(users).filter(([name]) => name.startsWith("pg.query:users.get"));
    assert.equal(
      queries.reduce((n, [, count]) => n + count, 0),
      calls,
      `the query's spans: ${JSON.stringify(users)}`,
    );

    // One info line per call in each process's file, and the same trace id at every hop.
    const lines = (role: Role) =>
      readFileSync(join(logDir, `grpc-js-otel-${role}.calls.log`), "utf8")
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as Record<string, unknown>);
    const traces = (role: Role) => new Set(lines(role).map((l) => l.trace_id));
    for (const role of ["gateway", "profiles", "users"] as const) {
      const logged = lines(role);
      assert.equal(logged.length, calls, role);
      for (const l of logged) {
        assert.equal(l.level, 30);
        assert.equal(l.service, role);
        assert.match(String(l.trace_id), /^[0-9a-f]{32}$/);
        assert.equal(typeof l.duration_ms, "number");
      }
      assert.equal(logged.filter((l) => l.code === "NotFound").length, 1);
    }
    assert.equal(traces("gateway").size, calls);
    assert.deepEqual(traces("users"), traces("gateway"));
    assert.deepEqual(traces("profiles"), traces("gateway"));
  } finally {
    if (!stopped) await running.stop();
  }
});
