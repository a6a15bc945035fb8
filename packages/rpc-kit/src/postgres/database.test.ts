import assert from "node:assert/strict";
import * as net from "node:net";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from "@opentelemetry/sdk-trace";
import { CallRecord, runInCall } from "../call/call-record.ts";
import {
  captureLogger,
  freePort,
  metricSample,
  realServerSkipReason,
  type TestServer,
  testDatabase,
  withClient,
} from "../testing/index.ts";
import { Database, type DatabaseOptions, type Statement } from "./database.ts";
import { UniqueViolation } from "./errors.ts";

/**
 * Database against a real PostgreSQL: the embedded server, and the one of
 * TEST_DATABASE_URL when configured (REQUIRE_TEST_DATABASE=1 makes a missing
 * one fail instead of skip). Deadlines are short (a few hundred ms) and every
 * bound asserted is generous: these test what happens, never how fast.
 */

// The query spans, recorded in memory: a provider registered for this test file's process only.
const exporter = new InMemorySpanExporter();
trace.setGlobalTracerProvider(new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] }));

const SERVERS: readonly { server: TestServer; skip: string | undefined }[] = [
  { server: "embedded", skip: undefined },
  { server: "real", skip: realServerSkipReason() },
];

/** Slack over a deadline for a failure to arrive: generous, this is not a speed test. */
const MARGIN_MS = 1_000;

let statements = 0;
/** A statement with a key of its own (statements are prepared by key on each connection). */
function statement(text: string, operation = "SELECT", collection = ""): Statement {
  return { key: `test.${++statements}`, operation, collection, text };
}

/** The ConnectError `promise` rejects with (fails the test when it resolves or rejects otherwise). */
async function connectErrorOf(promise: Promise<unknown>): Promise<ConnectError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof ConnectError, `expected a ConnectError, got ${String(err)}`);
    return err;
  }
  assert.fail("expected the query to fail");
}

/** Polls the async `check` until it returns true; fails naming `what` after `ms`. */
async function eventually(what: string, check: () => Promise<boolean>, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** The queries the connections of `applicationName` are running now, as the server sees them. */
async function activeQueries(url: string, applicationName: string): Promise<{ pid: number; query: string }[]> {
  return withClient(url, async (c) => {
    const result = await c.query<{ pid: number; query: string }>(
      "SELECT pid, query FROM pg_stat_activity WHERE application_name = $1 AND state = 'active' AND pid <> pg_backend_pid()",
      [applicationName],
    );
    return result.rows;
  });
}

/** Everything a caller can read of an error: its message, metadata and details. */
function visibleText(err: ConnectError): string {
  return [err.message, err.rawMessage, JSON.stringify([...err.metadata]), JSON.stringify(err.details)].join("\n");
}

const PG_SLEEP = "SELECT pg_sleep(30)";

for (const { server, skip } of SERVERS) {
  describe(`Database on PostgreSQL (${server} server)`, { skip }, () => {
    let url: string;
    let drop: () => Promise<void>;
    const opened: Database[] = [];
    let apps = 0;

    /** A Database of its own on the suite's database, under an application name of its own. */
    const open = (options: Partial<DatabaseOptions> = {}) => {
      const applicationName = `db-test-${server}-${process.pid}-${++apps}`;
      const db = new Database({
        url,
        poolMax: 2,
        applicationName,
        logger: captureLogger("db-test").logger,
        ...options,
      });
      opened.push(db);
      return { db, applicationName };
    };

    before(async () => {
      ({ url, drop } = await testDatabase(server));
    });
    after(async () => {
      await Promise.all(opened.map((db) => db.close()));
      await drop();
    });

    it("answers the rows of a query, with its values as parameters", async () => {
      await withClient(url, async (c) => {
        await c.query("CREATE TABLE answers (id int PRIMARY KEY, name text NOT NULL)");
        await c.query("INSERT INTO answers VALUES (1, 'one'), (2, 'two'), (3, 'three')");
      });
      const { db } = open();
      const rows = await db.query<{ id: number; name: string }>(
        statement("SELECT id, name FROM answers WHERE id >= $1 ORDER BY id", "SELECT", "answers"),
        [2],
      );
      assert.deepEqual(rows, [
        { id: 2, name: "two" },
        { id: 3, name: "three" },
      ]);
      const quoted = "x'); DROP TABLE answers;--";
      const echoed = await db.query<{ v: string }>(statement("SELECT $1::text AS v"), [quoted]);
      assert.deepEqual(echoed, [{ v: quoted }]);
    });

    it("fails a query still blocked at its deadline with DeadlineExceeded, and cancels it on the server", async () => {
      await withClient(url, (c) => c.query("CREATE TABLE locked (id int)"));
      const { db, applicationName } = open();
      await withClient(url, async (holder) => {
        await holder.query("BEGIN");
        await holder.query("LOCK TABLE locked IN ACCESS EXCLUSIVE MODE");
        try {
          const started = Date.now();
          const err = await connectErrorOf(
            db.query(statement("SELECT count(*) FROM locked", "SELECT", "locked"), [], {
              deadline: Date.now() + 300,
            }),
          );
          assert.equal(Code[err.code], "DeadlineExceeded");
          assert.ok(Date.now() - started < 300 + MARGIN_MS, `failed after ${Date.now() - started} ms`);
          // The lock is still held: only a cancel on the server ends the query waiting for it.
          await eventually("the query is no longer running on the server", async () => {
            return (await activeQueries(url, applicationName)).length === 0;
          });
        } finally {
          await holder.query("ROLLBACK");
        }
      });
    });

    it("takes the deadline of the call being served from its record", async () => {
      const { db, applicationName } = open();
      const scope = new CallRecord(Date.now() + 300, new AbortController().signal);
      const started = Date.now();
      const err = await connectErrorOf(runInCall(scope, () => db.query(statement(PG_SLEEP), [])));
      assert.equal(Code[err.code], "DeadlineExceeded");
      assert.ok(Date.now() - started < 300 + MARGIN_MS, `failed after ${Date.now() - started} ms`);
      assert.equal(scope.database?.queries, 1, "the query counts in the call's database time");
      await eventually("the query is no longer running on the server", async () => {
        return (await activeQueries(url, applicationName)).length === 0;
      });
    });

    it("cancels a query whose caller aborts mid-query: Canceled, and gone from the server", async () => {
      const { db, applicationName } = open();
      const abort = new AbortController();
      const running = connectErrorOf(db.query(statement(PG_SLEEP), [], { signal: abort.signal }));
      await eventually("the query runs on the server", async () => {
        return (await activeQueries(url, applicationName)).some((q) => q.query === PG_SLEEP);
      });
      const aborted = Date.now();
      abort.abort();
      const err = await running;
      assert.equal(Code[err.code], "Canceled");
      assert.ok(Date.now() - aborted < MARGIN_MS, `failed ${Date.now() - aborted} ms after the abort`);
      await eventually("the query is no longer running on the server", async () => {
        return (await activeQueries(url, applicationName)).length === 0;
      });
    });

    it("does not reuse a connection whose query it cancelled: the next query on a pool of one answers right", async () => {
      const { db, applicationName } = open({ poolMax: 1 });
      const pidOf = statement("SELECT pg_backend_pid() AS pid");
      const [{ pid: first } = { pid: 0 }] = await db.query<{ pid: number }>(pidOf, []);
      const err = await connectErrorOf(db.query(statement(PG_SLEEP), [], { deadline: Date.now() + 200 }));
      assert.equal(Code[err.code], "DeadlineExceeded");

      const abort = new AbortController();
      const aborted = connectErrorOf(db.query(statement(PG_SLEEP), [], { signal: abort.signal }));
      await eventually("the second query runs on the server", async () => {
        return (await activeQueries(url, applicationName)).some((q) => q.query === PG_SLEEP);
      });
      abort.abort();
      assert.equal(Code[(await aborted).code], "Canceled");

      const add = statement("SELECT $1::int + $2::int AS sum");
      for (let i = 0; i < 5; i++) {
        assert.deepEqual(await db.query(add, [i, 40]), [{ sum: i + 40 }]);
      }
      const [{ pid: last } = { pid: 0 }] = await db.query<{ pid: number }>(pidOf, []);
      assert.notEqual(last, first, "the cancelled connection was replaced");
    });

    it("fails a call that finds no free connection before its deadline with Unavailable, and never runs it later", async () => {
      await withClient(url, (c) => c.query("CREATE TABLE late (what text)"));
      const { db } = open({ poolMax: 1 });
      const holding = connectErrorOf(db.query(statement(PG_SLEEP), [], { deadline: Date.now() + 1_500 }));
      await new Promise((r) => setTimeout(r, 50));
      const started = Date.now();
      const err = await connectErrorOf(
        db.query(statement("INSERT INTO late VALUES ('late')", "INSERT", "late"), [], { deadline: Date.now() + 300 }),
      );
      assert.equal(Code[err.code], "Unavailable");
      assert.ok(Date.now() - started < 300 + MARGIN_MS, `failed after ${Date.now() - started} ms`);
      assert.equal(Code[(await holding).code], "DeadlineExceeded");
      // The pool serves its waiters in order: once this one answers, the INSERT had its turn.
      const [row] = await db.query<{ n: number }>(statement("SELECT count(*)::int AS n FROM late"), []);
      assert.equal(row?.n, 0, "the INSERT that gave up waiting never ran");
    });

    it("fails a call that waits for a connection longer than connectTimeoutMs with Unavailable, not Internal", async () => {
      await withClient(url, (c) => c.query("CREATE TABLE later (what text)"));
      const { db } = open({ poolMax: 1, connectTimeoutMs: 300 });
      await db.query(statement("SELECT 1"), []);
      assert.equal(db.readiness.ready, true, "a query answered: ready");
      const holding = connectErrorOf(db.query(statement(PG_SLEEP), [], { deadline: Date.now() + 1_500 }));
      await new Promise((r) => setTimeout(r, 50));
      const err = await connectErrorOf(
        db.query(statement("INSERT INTO later VALUES ('late')", "INSERT", "later"), [], {
          deadline: Date.now() + 1_000,
        }),
      );
      assert.equal(Code[err.code], "Unavailable", err.message);
      assert.equal(db.readiness.ready, true, "a busy pool is no database outage");
      assert.equal(Code[(await holding).code], "DeadlineExceeded");
      const [row] = await db.query<{ n: number }>(statement("SELECT count(*)::int AS n FROM later"), []);
      assert.equal(row?.n, 0, "the INSERT that gave up waiting never ran");
    });

    it("maps a unique violation to UniqueViolation naming the constraint, not the value", async () => {
      await withClient(url, (c) =>
        c.query("CREATE TABLE emails (email text NOT NULL, CONSTRAINT emails_email_key UNIQUE (email))"),
      );
      const { db } = open();
      const insert = statement("INSERT INTO emails (email) VALUES ($1)", "INSERT", "emails");
      await db.query(insert, ["ada@example.com"]);
      await assert.rejects(db.query(insert, ["ada@example.com"]), (err: unknown) => {
        assert.ok(err instanceof UniqueViolation, `expected a UniqueViolation, got ${String(err)}`);
        assert.equal(err.constraint, "emails_email_key");
        assert.ok(!err.message.includes("ada@example.com"), err.message);
        assert.ok(!err.message.includes("INSERT"), err.message);
        return true;
      });
      // Nothing else is one: another constraint's failure is a plain Internal error.
      const err = await connectErrorOf(db.query(insert, [null]));
      assert.equal(Code[err.code], "Internal");
      assert.ok(!visibleText(err).includes("emails"), visibleText(err));
    });
  });
}

describe("Database without a server", () => {
  const PASSWORD = "pw-Must-Not-Leak-7341";

  it("fails with Unavailable when nothing listens on the port, naming no password, host, port or SQL", async () => {
    const port = await freePort();
    const { logger, text } = captureLogger("db-test");
    const db = new Database({
      url: `postgres://app:${PASSWORD}@127.0.0.1:${port}/appdb`,
      poolMax: 1,
      applicationName: "db-test-closed-port",
      logger,
    });
    try {
      const sql = "SELECT secret_column FROM secret_table WHERE id = $1";
      const err = await connectErrorOf(db.query(statement(sql, "SELECT", "secret_table"), [42]));
      assert.equal(Code[err.code], "Unavailable");
      const shown = visibleText(err);
      for (const leak of [PASSWORD, "127.0.0.1", String(port), "secret_column", "secret_table", "ECONNREFUSED"]) {
        assert.ok(!shown.includes(leak), `the error shows ${leak}: ${shown}`);
      }
      assert.equal(db.readiness.ready, false);
      assert.ok(!text().includes(PASSWORD), "no log line holds the password");
    } finally {
      await db.close();
    }
  });

  it("fails with Unavailable when the server accepts but never answers, by the connect timeout", async () => {
    const silent = net.createServer(() => {});
    const sockets = new Set<net.Socket>();
    silent.on("connection", (s) => sockets.add(s));
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
    const { port } = silent.address() as net.AddressInfo;
    const db = new Database({
      url: `postgres://app:${PASSWORD}@127.0.0.1:${port}/appdb`,
      poolMax: 1,
      applicationName: "db-test-silent",
      logger: captureLogger("db-test").logger,
      connectTimeoutMs: 300,
    });
    try {
      const started = Date.now();
      const err = await connectErrorOf(db.query(statement("SELECT 1"), [], { deadline: Date.now() + 5_000 }));
      assert.equal(Code[err.code], "Unavailable");
      assert.ok(Date.now() - started < 300 + MARGIN_MS, `failed after ${Date.now() - started} ms`);
      const shown = visibleText(err);
      for (const leak of [PASSWORD, "127.0.0.1", String(port)]) {
        assert.ok(!shown.includes(leak), `the error shows ${leak}: ${shown}`);
      }
    } finally {
      await db.close();
      for (const s of sockets) s.destroy();
      await new Promise((r) => silent.close(r));
    }
  });
});

describe("Database telemetry (embedded server)", () => {
  let url: string;
  let drop: () => Promise<void>;
  const opened: Database[] = [];
  const open = (options: Partial<DatabaseOptions> = {}) => {
    const db = new Database({
      url,
      poolMax: 2,
      applicationName: `db-test-telemetry-${opened.length}`,
      logger: captureLogger("db-test").logger,
      ...options,
    });
    opened.push(db);
    return db;
  };

  before(async () => {
    ({ url, drop } = await testDatabase("embedded"));
    await withClient(url, (c) => c.query("CREATE TABLE accounts (id int PRIMARY KEY, email text NOT NULL)"));
  });
  after(async () => {
    await Promise.all(opened.map((db) => db.close()));
    await drop();
  });

  it("makes a client span per query with the database conventions' attributes, and never a parameter value", async () => {
    exporter.reset();
    const db = open();
    const text = "SELECT id, email FROM accounts WHERE email = $1";
    await db.query(statement(text, "SELECT", "accounts"), ["hidden-value-9917@example.com"]);
    const span = exporter.getFinishedSpans().find((s) => s.name === "SELECT accounts");
    assert.ok(span, `a span "SELECT accounts" among ${exporter.getFinishedSpans().map((s) => s.name)}`);
    assert.equal(span.kind, SpanKind.CLIENT);
    assert.equal(span.attributes["db.system.name"], "postgresql");
    assert.equal(span.attributes["db.operation.name"], "SELECT");
    assert.equal(span.attributes["db.collection.name"], "accounts");
    assert.equal(span.attributes["db.query.text"], text);
    assert.equal(span.attributes["db.namespace"], new URL(url).pathname.slice(1));
    assert.notEqual(span.status.code, SpanStatusCode.ERROR);
    const recorded = JSON.stringify(span.attributes);
    assert.ok(!recorded.includes("hidden-value-9917"), recorded);
    assert.ok(!recorded.includes(decodeURIComponent(new URL(url).password)), "no password in a span");
  });

  it("marks the span of a query cut by its deadline as an error, with its type and the server's code", async () => {
    exporter.reset();
    const db = open();
    await connectErrorOf(db.query(statement(PG_SLEEP, "SELECT", "sleepers"), [], { deadline: Date.now() + 200 }));
    const span = exporter.getFinishedSpans().find((s) => s.name === "SELECT sleepers");
    assert.ok(span, "a span for the failed query");
    assert.equal(span.status.code, SpanStatusCode.ERROR);
    assert.equal(span.attributes["error.type"], "DeadlineExceeded");
    assert.equal(span.attributes["db.response.status_code"], "57014");
  });

  it("counts every query in db_client_operation_duration_seconds, by operation, table and error type", async () => {
    const db = open();
    const labels = {
      db_system_name: "postgresql",
      db_operation_name: "INSERT",
      db_collection_name: "accounts",
    };
    const ok = { ...labels, error_type: "" };
    const failed = { ...labels, error_type: "UniqueViolation" };
    const okBefore = await metricSample("db_client_operation_duration_seconds_count", ok);
    const failedBefore = await metricSample("db_client_operation_duration_seconds_count", failed);
    const insert = statement("INSERT INTO accounts VALUES ($1, $2)", "INSERT", "accounts");
    await db.query(insert, [1, "a@example.com"]);
    await db.query(insert, [2, "b@example.com"]);
    await assert.rejects(db.query(insert, [2, "c@example.com"]), UniqueViolation);
    assert.equal(await metricSample("db_client_operation_duration_seconds_count", ok), okBefore + 2);
    assert.equal(await metricSample("db_client_operation_duration_seconds_count", failed), failedBefore + 1);
  });

  it("reports the pool's connections: max, used while a query runs, and callers waiting for one", async () => {
    const system = { db_system_name: "postgresql" };
    const used = { ...system, state: "used" };
    const maxBefore = await metricSample("db_client_connection_max", system);
    const usedBefore = await metricSample("db_client_connection_count", used);
    const pendingBefore = await metricSample("db_client_connection_pending_requests", system);
    // A wait for the connection bounded by the call's deadline only (pg-pool's own bound is connectTimeoutMs).
    const db = open({ poolMax: 1, connectTimeoutMs: 10_000 });
    assert.equal(await metricSample("db_client_connection_max", system), maxBefore + 1);

    const holding = connectErrorOf(db.query(statement(PG_SLEEP), [], { deadline: Date.now() + 1_500 }));
    const waiting = db.query(statement("SELECT 2 AS two"), [], { deadline: Date.now() + 5_000 });
    await eventually("the query holds the connection and the other waits", async () => {
      return (
        (await metricSample("db_client_connection_count", used)) === usedBefore + 1 &&
        (await metricSample("db_client_connection_pending_requests", system)) === pendingBefore + 1
      );
    });
    await holding;
    assert.deepEqual(await waiting, [{ two: 2 }]);
    assert.equal(await metricSample("db_client_connection_count", used), usedBefore);
    assert.equal(await metricSample("db_client_connection_pending_requests", system), pendingBefore);

    opened.splice(opened.indexOf(db), 1);
    await db.close();
    assert.equal(
      await metricSample("db_client_connection_max", system),
      maxBefore,
      "a closed pool is no longer reported",
    );
  });
});
