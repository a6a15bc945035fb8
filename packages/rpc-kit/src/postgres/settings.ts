import { type Config, setting } from "../config/config.ts";

/** The environment of a service that owns data in PostgreSQL. */
export function databaseSettings() {
  return {
    databaseUrl: setting.secret(
      "DATABASE_URL",
      "the PostgreSQL server: postgres://user:password@host:5432/database; unset: an embedded PostgreSQL (development only)",
      checkDatabaseUrl,
    ),
    databasePoolMax: setting.int("DATABASE_POOL_MAX", 10, "connections to PostgreSQL per process", {
      min: 1,
      max: 1_000,
    }),
    embeddedDatabaseDir: setting.string(
      "EMBEDDED_DATABASE_DIR",
      ".data/postgres",
      "where the embedded PostgreSQL keeps its data when DATABASE_URL is unset (kept across restarts)",
    ),
  };
}

export type DatabaseSettings = Config<ReturnType<typeof databaseSettings>>;

/** Throws a message that never repeats the URL (it holds the password). */
export function checkDatabaseUrl(raw: string): void {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new Error("must be a URL: postgres://user:password@host:5432/database");
  }
  if (url.protocol !== "postgres:" && url.protocol !== "postgresql:") {
    throw new Error("must start with postgres:// or postgresql://");
  }
  if (url.hostname === "") throw new Error("must name a host: postgres://user:password@host:5432/database");
}
