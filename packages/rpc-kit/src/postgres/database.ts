import { Code, ConnectError } from "@connectrpc/connect";
import { type Attributes, context, type Span, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import pg from "pg";
import { currentCall } from "../call/call-record.ts";
import type { Logger } from "../observe/logger.ts";
import { sendCancelRequest } from "./cancel-request.ts";
import { DATABASE_CANCELED, DATABASE_DEADLINE, isUnavailable, sqlState, toQueryError } from "./errors.ts";
import { type DatabaseMetrics, databaseMetrics } from "./metrics.ts";
import { Readiness } from "./readiness.ts";

/**
 * A service's PostgreSQL: one pool per process (node-postgres), created at
 * start and closed at shutdown, and the lessons of every other hop carried
 * into this one:
 *
 * - every query runs within the deadline of the call it serves (the call
 *   scope's, as outbound RPCs do), waiting for a pooled connection included:
 *   no free connection before the deadline is Unavailable, a query still
 *   running at the deadline is cancelled on the server (CancelRequest) and
 *   is DeadlineExceeded; a call the caller cancels cancels its query;
 * - errors are precise codes with messages that name no SQL, driver text,
 *   host or URL (errors.ts);
 * - a client span per query (OpenTelemetry database conventions), the
 *   operation's duration and the pool's state on /metrics, the call's
 *   database time in its log line and its `server-timing` hops;
 * - readiness: the process is not ready while the database is unreachable.
 */

/** A statement of the store: SQL with `$n` parameters, never built from values. */
export interface Statement {
  /** Unique per distinct SQL: the name it is prepared under on each connection. */
  readonly key: string;
  /** `SELECT`, `INSERT`…: OpenTelemetry's `db.operation.name`. */
  readonly operation: string;
  /** The table: `db.collection.name`. */
  readonly collection: string;
  readonly text: string;
}

export interface DatabaseOptions {
  /** `postgres://user:password@host:port/database`. Never logged. */
  readonly url: string;
  /** Connections in the pool (DATABASE_POOL_MAX). */
  readonly poolMax: number;
  /** The server's `application_name` for this process's connections: the service's name. */
  readonly applicationName: string;
  readonly logger: Logger;
  /** Deadline of a query made outside any call (migrations, probes): default 5 s. */
  readonly defaultTimeoutMs?: number;
  /** Server-side statement_timeout, a net under every call's own deadline: default 30 s. */
  readonly statementTimeoutMs?: number;
  /** A new connection must be made within this: default 2 s. */
  readonly connectTimeoutMs?: number;
}

/** Which pool a connection came from, for the cancel request. */
interface BackendKey {
  readonly processID: number;
  readonly secretKey: number;
}

const tracer = trace.getTracer("@demo/rpc-kit");

export class Database {
  readonly #pool: pg.Pool;
  readonly #logger: Logger;
  readonly #defaultTimeoutMs: number;
  readonly #target: { host: string; port: number; database: string };
  readonly #metrics: DatabaseMetrics;
  readonly #stopReporting: () => void;
  /** Ready while the database answers (readiness.ts probes it). */
  readonly readiness: Readiness;

  constructor(options: DatabaseOptions) {
    const url = new URL(options.url);
    this.#target = {
      host: decodeURIComponent(url.hostname) || "localhost",
      port: Number(url.port || 5432),
      database: decodeURIComponent(url.pathname.slice(1)) || "postgres",
    };
    this.#logger = options.logger;
    this.#defaultTimeoutMs = options.defaultTimeoutMs ?? 5_000;
    this.#pool = new pg.Pool({
      connectionString: options.url,
      max: options.poolMax,
      application_name: options.applicationName,
      statement_timeout: options.statementTimeoutMs ?? 30_000,
      connectionTimeoutMillis: options.connectTimeoutMs ?? 2_000,
      idleTimeoutMillis: 30_000,
    });
    // An idle connection the server dropped (a restart, a failover): the pool replaces it on demand.
    this.#pool.on("error", (err) => {
      this.#logger.warn({ err: redact(err) }, "an idle database connection failed");
      this.readiness.set(false);
    });
    this.#metrics = databaseMetrics();
    this.#stopReporting = this.#metrics.reportPool(this.#pool, options.poolMax);
    this.readiness = new Readiness(() => this.#probe(), this.#logger);
  }

  /** The server and database, for logs: never the user or password. */
  get target(): string {
    return `${this.#target.host}:${this.#target.port}/${this.#target.database}`;
  }

  /**
   * Runs `statement` with `values` within the deadline and cancellation of the
   * call being served (or `options`), and returns its rows.
   */
  async query<R>(
    statement: Statement,
    values: readonly unknown[],
    options: { deadline?: number; signal?: AbortSignal } = {},
  ): Promise<R[]> {
    const scope = currentCall();
    const deadline = Math.min(
      options.deadline ?? scope?.deadline ?? Number.POSITIVE_INFINITY,
      Date.now() + this.#defaultTimeoutMs,
    );
    const signal = options.signal ?? scope?.signal;
    const started = performance.now();
    const span = this.#startSpan(statement);
    let error: unknown;
    try {
      const client = await this.#acquire(deadline, signal);
      return await this.#run<R>(client, statement, values, deadline, signal);
    } catch (err) {
      error = err;
      throw err;
    } finally {
      const ms = performance.now() - started;
      this.#finish(span, statement, ms, error);
      scope?.databaseTime().add(statement, ms, error);
    }
  }

  /** Runs `fn` with a connection of its own (migrations: a session advisory lock, transactions). */
  async withConnection<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.#pool.connect();
    let broken = false;
    try {
      return await fn(client);
    } catch (err) {
      broken = isUnavailable(err);
      throw err;
    } finally {
      client.release(broken);
    }
  }

  /** Ends the probe and every connection (at shutdown, after the calls in flight). */
  async close(): Promise<void> {
    this.readiness.stop();
    this.#stopReporting();
    await this.#pool.end();
  }

  /** A pooled connection before `deadline`, or Unavailable (pool exhausted, or no database), or the call's end. */
  #acquire(deadline: number, signal: AbortSignal | undefined): Promise<pg.PoolClient> {
    const ended = endedCall(signal, deadline);
    if (ended) return Promise.reject(ended);
    return new Promise((resolve, reject) => {
      let settled = false;
      const settle = (err: Error | undefined, client?: pg.PoolClient) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        if (err) reject(err);
        else resolve(client as pg.PoolClient);
      };
      const onAbort = () => settle(endedCall(signal, deadline));
      const timer = setTimeout(
        () =>
          settle(
            new ConnectError(
              "the database is unavailable: no connection was ready before the call's deadline",
              Code.Unavailable,
            ),
          ),
        Math.max(0, deadline - Date.now()),
      );
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#pool.connect().then(
        (client) => {
          // The caller gave up while it waited: the connection goes back at once.
          if (settled) client.release();
          else settle(undefined, client);
        },
        (err: unknown) => {
          // pg-pool bounds the wait (a busy pool, or a server slow to accept) by connectionTimeoutMillis too.
          // Not an outage by itself: the readiness probe decides that.
          if ((err as Error | undefined)?.message === POOL_WAIT_TIMEOUT) {
            settle(new ConnectError("the database is unavailable: no connection was ready in time", Code.Unavailable));
            return;
          }
          if (isUnavailable(err)) this.readiness.set(false);
          settle(toQueryError(err, undefined));
        },
      );
    });
  }

  /** The query on `client`, cancelled on the server at the deadline or when the call ends. */
  async #run<R>(
    client: pg.PoolClient,
    statement: Statement,
    values: readonly unknown[],
    deadline: number,
    signal: AbortSignal | undefined,
  ): Promise<R[]> {
    let cancelled: "deadline" | "caller" | undefined;
    const cancel = (why: "deadline" | "caller") => {
      if (cancelled !== undefined) return;
      cancelled = why;
      const key = client as unknown as BackendKey;
      void sendCancelRequest(this.#target, key.processID, key.secretKey);
    };
    const timer = setTimeout(() => cancel("deadline"), Math.max(0, deadline - Date.now()));
    const onAbort = () => cancel(isDeadline(signal?.reason) ? "deadline" : "caller");
    signal?.addEventListener("abort", onAbort, { once: true });
    let broken = false;
    try {
      const result = await client.query<R & pg.QueryResultRow>({
        name: statement.key,
        text: statement.text,
        values: values as unknown[],
      });
      this.readiness.set(true);
      return result.rows;
    } catch (err) {
      broken = isUnavailable(err);
      if (broken) this.readiness.set(false);
      throw toQueryError(err, cancelled);
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      // A connection we sent a cancel for is not reused: the cancel could land on its next query.
      client.release(broken || cancelled !== undefined);
    }
  }

  #startSpan(statement: Statement): Span {
    const attributes: Attributes = {
      "db.system.name": "postgresql",
      "db.namespace": this.#target.database,
      "db.operation.name": statement.operation,
      "db.collection.name": statement.collection,
      // Parameterized text: the values are never recorded.
      "db.query.text": statement.text,
      "server.address": this.#target.host,
      "server.port": this.#target.port,
    };
    return tracer.startSpan(
      `${statement.operation} ${statement.collection}`,
      { kind: SpanKind.CLIENT, attributes },
      context.active(),
    );
  }

  #finish(span: Span, statement: Statement, ms: number, err: unknown): void {
    const errorType = err === undefined ? undefined : errorTypeOf(err);
    if (errorType !== undefined) {
      span.setAttribute("error.type", errorType);
      const state = sqlState((err as { cause?: unknown }).cause);
      if (state !== undefined) span.setAttribute("db.response.status_code", state);
      span.setStatus({ code: SpanStatusCode.ERROR });
    }
    span.end();
    this.#metrics.observe(statement, ms / 1000, errorType);
  }

  async #probe(): Promise<void> {
    await this.query(PING, [], { deadline: Date.now() + 1_000 });
  }
}

/** pg-pool's error when a caller waited connectionTimeoutMillis for a busy pool's connection (it has no code). */
const POOL_WAIT_TIMEOUT = "timeout exceeded when trying to connect";

const PING: Statement = { key: "rpc-kit.ping", operation: "SELECT", collection: "", text: "SELECT 1" };

function isDeadline(reason: unknown): boolean {
  return reason instanceof ConnectError && reason.code === Code.DeadlineExceeded;
}

/** Why a call can no longer use the database, if it cannot. */
function endedCall(signal: AbortSignal | undefined, deadline: number): ConnectError | undefined {
  if (signal?.aborted) {
    return isDeadline(signal.reason)
      ? new ConnectError(DATABASE_DEADLINE, Code.DeadlineExceeded)
      : new ConnectError(DATABASE_CANCELED, Code.Canceled);
  }
  if (Date.now() >= deadline) return new ConnectError(DATABASE_DEADLINE, Code.DeadlineExceeded);
  return undefined;
}

/** `error.type` of a failed query: the code's name, or the error's. */
function errorTypeOf(err: unknown): string {
  if (err instanceof ConnectError) return Code[err.code] ?? "Unknown";
  return (err as Error).name ?? "Error";
}

/** A driver error for the log: its message and code, never the connection string. */
function redact(err: Error): Record<string, unknown> {
  return { type: err.name, message: err.message, code: (err as { code?: unknown }).code };
}
