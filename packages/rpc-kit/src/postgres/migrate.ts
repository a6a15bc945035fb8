import { readdir, readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import type { Logger } from "../observe/logger.ts";
import type { Database } from "./database.ts";

/**
 * Versioned SQL migrations: the `NNNN_name.sql` files of a folder, applied
 * in order, each once, each in a transaction with its record in
 * `schema_migrations`. Under a PostgreSQL advisory lock: replicas that start
 * together (or an init container and a replica) apply each exactly once,
 * the others wait and find it done.
 */

/** The advisory lock's key: any fixed 64-bit number, the same in every process of the service. */
const LOCK_KEY = 7_346_221_905_118_003;

export interface MigrationResult {
  /** Versions applied now, in order. */
  readonly applied: readonly string[];
  /** Versions in the database afterwards. */
  readonly current: readonly string[];
}

export async function migrate(db: Database, folder: URL | string, logger: Logger): Promise<MigrationResult> {
  const dir = typeof folder === "string" ? folder : fileURLToPath(folder);
  const files = (await readdir(dir)).filter((f) => /^\d{4}_[\w-]+\.sql$/.test(f)).sort();
  return db.withConnection(async (client) => {
    await client.query("SELECT pg_advisory_lock($1)", [LOCK_KEY]);
    try {
      await client.query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
      );
      const done = new Set(
        (await client.query<{ version: string }>("SELECT version FROM schema_migrations")).rows.map((r) => r.version),
      );
      const applied: string[] = [];
      for (const file of files) {
        const version = file.slice(0, -".sql".length);
        if (done.has(version)) continue;
        const sql = await readFile(`${dir}/${file}`, "utf8");
        await client.query("BEGIN");
        try {
          await client.query(sql);
          await client.query("INSERT INTO schema_migrations (version) VALUES ($1)", [version]);
          await client.query("COMMIT");
        } catch (err) {
          await client.query("ROLLBACK").catch(() => {});
          throw new Error(`migration ${version} failed: ${(err as Error).message}`, { cause: err });
        }
        logger.info({ migration: version }, "migration applied");
        applied.push(version);
        done.add(version);
      }
      return { applied, current: [...done].sort() };
    } finally {
      await client.query("SELECT pg_advisory_unlock($1)", [LOCK_KEY]).catch(() => {});
    }
  });
}
