import type pg from "pg";
import { Gauge, Histogram } from "prom-client";
import { HANDLING_SECONDS_BUCKETS, metricsRegistry } from "../observe/metrics.ts";

/**
 * The database client's metrics on /metrics, as OpenTelemetry's database
 * conventions name them (`db.client.operation.duration`,
 * `db.client.connection.count`, `db.client.connection.pending_requests`,
 * `db.client.connection.max`), registered when the first Database is made.
 */
export interface DatabaseMetrics {
  observe(
    statement: { readonly operation: string; readonly collection: string },
    seconds: number,
    errorType: string | undefined,
  ): void;
  /** Reports a pool's connections until the returned function is called. */
  reportPool(pool: pg.Pool, max: number): () => void;
}

let metrics: DatabaseMetrics | undefined;

export function databaseMetrics(): DatabaseMetrics {
  metrics ??= create();
  return metrics;
}

function create(): DatabaseMetrics {
  const pools = new Map<pg.Pool, number>();
  const duration = new Histogram({
    name: "db_client_operation_duration_seconds",
    help: "Duration of database queries, waiting for a pooled connection included.",
    labelNames: ["db_system_name", "db_operation_name", "db_collection_name", "error_type"],
    buckets: HANDLING_SECONDS_BUCKETS,
    registers: [metricsRegistry],
  });
  const sum = (read: (pool: pg.Pool, max: number) => number) => {
    let total = 0;
    for (const [pool, max] of pools) total += read(pool, max);
    return total;
  };
  new Gauge({
    name: "db_client_connection_count",
    help: "Connections of the pool, by state: used (a query holds it) or idle.",
    labelNames: ["db_system_name", "state"],
    registers: [metricsRegistry],
    collect() {
      this.set(
        { db_system_name: "postgresql", state: "used" },
        sum((p) => p.totalCount - p.idleCount),
      );
      this.set(
        { db_system_name: "postgresql", state: "idle" },
        sum((p) => p.idleCount),
      );
    },
  });
  new Gauge({
    name: "db_client_connection_pending_requests",
    help: "Queries waiting for a pooled connection.",
    labelNames: ["db_system_name"],
    registers: [metricsRegistry],
    collect() {
      this.set(
        { db_system_name: "postgresql" },
        sum((p) => p.waitingCount),
      );
    },
  });
  new Gauge({
    name: "db_client_connection_max",
    help: "Connections the pool may open (DATABASE_POOL_MAX).",
    labelNames: ["db_system_name"],
    registers: [metricsRegistry],
    collect() {
      this.set(
        { db_system_name: "postgresql" },
        sum((_p, max) => max),
      );
    },
  });
  return {
    observe(statement, seconds, errorType) {
      duration.observe(
        {
          db_system_name: "postgresql",
          db_operation_name: statement.operation,
          db_collection_name: statement.collection,
          error_type: errorType ?? "",
        },
        seconds,
      );
    },
    reportPool(pool, max) {
      pools.set(pool, max);
      return () => pools.delete(pool);
    },
  };
}
