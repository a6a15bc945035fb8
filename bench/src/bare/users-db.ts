/**
 * users' data in PostgreSQL for the hand-wired chains (`grpc-js-pg`,
 * `grpc-js-otel`): what a team writes without rpc-kit — a plain node-postgres
 * pool (10 connections, as users' DATABASE_POOL_MAX default), users'
 * migrations run in order at start on the fresh database the bench gives it,
 * and GetUser's query. The query is a named (prepared) statement, as
 * rpc-kit's store runs it: the same database work per call on both sides.
 *
 * Imported dynamically by the chains, after any instrumentation is registered.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";

/** users' migrations (apps/users/migrations): the schema and the seeded u-1..u-3. */
const MIGRATIONS = fileURLToPath(new URL("../../../apps/users/migrations/", import.meta.url));

export interface UserRow {
  /** int8: node-postgres gives it as a string. */
  readonly id: string;
  readonly name: string;
  readonly email: string;
  readonly created_at: Date;
}

/**
 * A pool on `url` (application_name `users`: the bench meters users' backends by it on a real
 * server), with users' migrations applied: each `NNNN_name.sql` file in order, in a transaction.
 * The database is new at every start, so there is no record of applied versions to keep.
 */
export async function openUsersDatabase(url: string): Promise<pg.Pool> {
  const pool = new pg.Pool({ connectionString: url, max: 10, application_name: "users" });
  // An idle connection the server dropped: the pool replaces it on demand.
  pool.on("error", () => {});
  const client = await pool.connect();
  try {
    const files = readdirSync(MIGRATIONS)
      .filter((f) => /^\d{4}_[\w-]+\.sql$/.test(f))
      .sort();
    for (const file of files) {
      await client.query("BEGIN");
      try {
        await client.query(readFileSync(join(MIGRATIONS, file), "utf8"));
        await client.query("COMMIT");
      } catch (err) {
        await client.query("ROLLBACK").catch(() => {});
        throw new Error(`migration ${file} failed: ${(err as Error).message}`, { cause: err });
      }
    }
  } finally {
    client.release();
  }
  return pool;
}

const GET_USER = { name: "users.get", text: "SELECT id, name, email, created_at FROM users WHERE id = $1" };

/** The user `u-<n>`, or undefined (no such row, or no id of ours). */
export async function findUser(pool: pg.Pool, id: string): Promise<UserRow | undefined> {
  const n = /^u-([1-9]\d{0,17})$/.exec(id)?.[1];
  if (n === undefined) return undefined;
  const { rows } = await pool.query<UserRow>({ ...GET_USER, values: [n] });
  return rows[0];
}
