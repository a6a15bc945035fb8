/**
 * users' database hop seen from outside: the call's deadline reaches the
 * query and the query does not outlive the call; the time a call spent in
 * PostgreSQL is in its log line; users' metrics show the pool.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { parsePrometheusText, seriesKey, until, withClient } from "@demo/rpc-kit/testing";
import { type Chain, startChain } from "./processes.ts";

/** Long enough for the call to reach users' query on a busy machine, short enough to wait for. */
const DEADLINE_MS = 1_500;

describe("users' PostgreSQL, through the chain", () => {
  let chain: Chain;
  let databaseUrl: string;

  before(async () => {
    chain = await startChain();
    databaseUrl = chain.users.databaseUrl as string;
  });
  after(async () => {
    await chain.stop();
  });

  const getProfile = (userId: string, headers: Record<string, string> = {}) =>
    fetch(`${chain.baseUrl}/demo.gateway.v1.GatewayService/GetProfile`, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify({ userId }),
    });

  /** users' queries still running on the server (not idle, not this test's own session). */
  const runningQueries = () =>
    withClient(databaseUrl, async (c) => {
      const { rows } = await c.query<{ query: string }>(
        "SELECT query FROM pg_stat_activity WHERE application_name = 'users' AND state <> 'idle'",
      );
      return rows.map((r) => r.query);
    });

  it("ends a call whose query waits on a lock with DeadlineExceeded at its deadline, and leaves no query running", async () => {
    // Connections up and code paths warm: the deadline is then spent waiting on the lock, not on getting there.
    const warm = await getProfile("u-1");
    assert.equal(warm.status, 200);
    await warm.arrayBuffer();
    // Another session holds the table: users' SELECT waits for it, as it would behind a long migration.
    await withClient(databaseUrl, async (holder) => {
      await holder.query("BEGIN");
      await holder.query("LOCK TABLE users IN ACCESS EXCLUSIVE MODE");
      try {
        const started = performance.now();
        const res = await getProfile("u-1", { "connect-timeout-ms": String(DEADLINE_MS) });
        const tookMs = performance.now() - started;
        assert.equal(res.status, 504);
        assert.equal(((await res.json()) as { code: string }).code, "deadline_exceeded");
        assert.ok(tookMs < DEADLINE_MS + 1_000, `ended ${tookMs.toFixed(0)} ms after it began`);
        // The query was cancelled on the server, not left waiting behind the lock.
        await until("users' query to be gone from pg_stat_activity", async () =>
          (await runningQueries()).length === 0 ? true : undefined,
        );
      } finally {
        await holder.query("ROLLBACK");
      }
    });
    // users' own timer and its caller's cancel, sent as the caller's deadline passes, race: either ends the query.
    const line = await until("users' log line of the cut call", () =>
      chain.users.lines.find(
        (l) => l.rpc_method === "GetUser" && (l.rpc_code === "deadline_exceeded" || l.rpc_code === "canceled"),
      ),
    );
    assert.equal(line.db_queries, 1);
    // The next call is served at once, on a connection that carries no stale cancel.
    const res = await getProfile("u-1");
    assert.equal(res.status, 200);
  });

  it("writes the call's database time in users' log line", async () => {
    const traceId = "7d1c9b2e4f6a8c0e1d3f5a7b9c1e3f5a";
    const res = await getProfile("u-2", { traceparent: `00-${traceId}-00f067aa0ba902b7-01` });
    assert.equal(res.status, 200);
    const line = await until("users' log line", () => chain.users.lines.find((l) => l.trace_id === traceId));
    assert.equal(line.rpc_method, "GetUser");
    assert.equal(line.db_queries, 1);
    assert.equal(typeof line.db_ms, "number");
    assert.ok((line.db_ms as number) > 0 && (line.db_ms as number) <= (line.duration_ms as number));
  });

  it("shows the pool and the query times on users' /metrics", async () => {
    const text = await (await fetch(`http://127.0.0.1:${chain.users.adminPort}/metrics`)).text();
    const samples = parsePrometheusText(text);
    const value = (name: string, labels: Record<string, string>) => samples.get(seriesKey(name, labels));
    assert.equal(value("db_client_connection_max", { db_system_name: "postgresql" }), 10);
    const selects = value("db_client_operation_duration_seconds_count", {
      db_system_name: "postgresql",
      db_operation_name: "SELECT",
      db_collection_name: "users",
      error_type: "",
    });
    assert.ok((selects ?? 0) >= 1, `SELECT users timed (${selects})`);
    // The query the first test's deadline cut, counted as such.
    const cut = (errorType: string) =>
      value("db_client_operation_duration_seconds_count", {
        db_system_name: "postgresql",
        db_operation_name: "SELECT",
        db_collection_name: "users",
        error_type: errorType,
      }) ?? 0;
    assert.equal(cut("DeadlineExceeded") + cut("Canceled"), 1);
    for (const state of ["idle", "used"]) {
      assert.notEqual(
        value("db_client_connection_count", { db_system_name: "postgresql", state }),
        undefined,
        `a ${state} gauge`,
      );
    }
    assert.equal(value("db_client_connection_pending_requests", { db_system_name: "postgresql" }), 0);
  });
});
