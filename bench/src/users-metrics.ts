/** What the bench reads of users' /metrics around a measurement: its database time and its handling time. */
import { parsePrometheusText } from "@demo/rpc-kit/testing";

export interface UsersCounters {
  /**
   * Whether users reports its database time at all: a hand-wired users
   * (`grpc-js-otel`: prom-client with the grpc_* series only) does not.
   */
  readonly database: boolean;
  /** Seconds users spent in the store's queries (db_client_operation_duration_seconds), pool waits included. */
  readonly dbSeconds: number;
  readonly dbQueries: number;
  /** Seconds users spent handling its calls (grpc_server_handling_seconds of demo.users.v1.UserService). */
  readonly handlingSeconds: number;
  readonly handled: number;
}

const USER_SERVICE = 'grpc_service="demo.users.v1.UserService"';

/**
 * The counters of `text` (Prometheus exposition), summed over their label sets.
 * The readiness probe's `SELECT 1` (every second, collection "") is left out:
 * it is no call's work.
 */
export function usersCounters(text: string): UsersCounters {
  let database = false;
  let dbSeconds = 0;
  let dbQueries = 0;
  let handlingSeconds = 0;
  let handled = 0;
  for (const [key, value] of parsePrometheusText(text)) {
    const brace = key.indexOf("{");
    const name = key.slice(0, brace);
    const labels = key.slice(brace);
    if (name.startsWith("db_client_operation_duration_seconds_")) database = true;
    if (name.startsWith("db_client_operation_duration_seconds_") && !labels.includes('db_collection_name=""')) {
      if (name.endsWith("_sum")) dbSeconds += value;
      else if (name.endsWith("_count")) dbQueries += value;
    } else if (name.startsWith("grpc_server_handling_seconds_") && labels.includes(USER_SERVICE)) {
      if (name.endsWith("_sum")) handlingSeconds += value;
      else if (name.endsWith("_count")) handled += value;
    }
  }
  return { database, dbSeconds, dbQueries, handlingSeconds, handled };
}

/** The counters of users' /metrics on `adminPort` now. */
export async function scrapeUsers(adminPort: number): Promise<UsersCounters> {
  const response = await fetch(`http://127.0.0.1:${adminPort}/metrics`, { signal: AbortSignal.timeout(5_000) });
  if (!response.ok) throw new Error(`users' /metrics answered ${response.status}`);
  return usersCounters(await response.text());
}

/**
 * Per call users served between `before` and `after` (one GetUser per
 * GetProfile): its database milliseconds and queries (undefined when users
 * reports no database time), and its handling milliseconds. Counted on users' own calls rather than the requests h2load
 * completed: a timed h2load run ends with calls in flight, which users still
 * serves (and the warm-up's may land in the next row).
 */
export function perCall(
  before: UsersCounters,
  after: UsersCounters,
): { dbMs: number | undefined; queries: number | undefined; usersMs: number } {
  const calls = Math.max(1, after.handled - before.handled);
  return {
    dbMs: after.database ? ((after.dbSeconds - before.dbSeconds) * 1000) / calls : undefined,
    queries: after.database ? (after.dbQueries - before.dbQueries) / calls : undefined,
    usersMs: ((after.handlingSeconds - before.handlingSeconds) * 1000) / calls,
  };
}
