import type { Logger } from "../observe/logger.ts";
import { Database } from "./database.ts";
import { type EmbeddedPostgres, startEmbeddedPostgres } from "./embedded.ts";
import { migrate } from "./migrate.ts";
import type { DatabaseSettings } from "./settings.ts";

/**
 * A service's database at start: the server of DATABASE_URL, or an embedded
 * one when it is unset; the pool; the migrations of `migrations` applied
 * (under their lock); readiness probing started. Retries a database that
 * does not answer yet for up to `waitMs`, then throws (the process cannot
 * serve without it). `close()` ends the pool, then the embedded server.
 */
export interface OpenedDatabase {
  readonly db: Database;
  close(): Promise<void>;
}

export async function openDatabase(
  settings: DatabaseSettings,
  options: {
    readonly name: string;
    readonly migrations: URL | string;
    readonly logger: Logger;
    readonly waitMs?: number;
  },
): Promise<OpenedDatabase> {
  const { logger } = options;
  const embedded: EmbeddedPostgres | undefined =
    settings.databaseUrl === undefined
      ? await startEmbeddedPostgres({ dir: settings.embeddedDatabaseDir, persistent: true, logger })
      : undefined;
  const url = settings.databaseUrl ?? (embedded as EmbeddedPostgres).url;
  const db = new Database({ url, poolMax: settings.databasePoolMax, applicationName: options.name, logger });
  const close = async () => {
    await db.close();
    await embedded?.stop();
  };
  try {
    const waitUntil = Date.now() + (options.waitMs ?? 30_000);
    for (let attempt = 1; ; attempt++) {
      try {
        const { applied, current } = await migrate(db, options.migrations, logger);
        logger.info(
          { database: db.target, applied: applied.length, schema: current.at(-1) },
          "database schema is current",
        );
        break;
      } catch (err) {
        if (Date.now() >= waitUntil || !isRetryable(err)) throw err;
        logger.warn({ database: db.target, attempt }, "the database does not answer yet; retrying");
        await new Promise((r) => setTimeout(r, Math.min(2_000, 250 * attempt)));
      }
    }
    await db.readiness.start();
  } catch (err) {
    await close().catch(() => {});
    throw err;
  }
  return { db, close };
}

function isRetryable(err: unknown): boolean {
  const text = String((err as Error)?.message ?? err);
  return !text.startsWith("migration ");
}
