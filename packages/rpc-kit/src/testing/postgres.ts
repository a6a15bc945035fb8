/**
 * PostgreSQL for tests: a fresh database per test, on a real server when
 * `TEST_DATABASE_URL` names one (an admin URL: CI starts Debian's
 * PostgreSQL), or on an embedded server this test process starts once and
 * stops when it exits. No fake: the same server, SQL and migrations as a
 * deployment.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { createLogger } from "../observe/logger.ts";
import { type EmbeddedPostgres, startEmbeddedPostgres } from "../postgres/embedded.ts";

export type TestServer = "embedded" | "real";

/** The real server's admin URL, if this machine has one configured. */
export function realServerUrl(): string | undefined {
  return process.env.TEST_DATABASE_URL || undefined;
}

/**
 * Why the real-server runs skip here, or undefined when they run. CI sets
 * `REQUIRE_TEST_DATABASE=1`: there a missing server fails instead of skipping.
 */
export function realServerSkipReason(): string | undefined {
  if (realServerUrl() !== undefined) return undefined;
  if (process.env.REQUIRE_TEST_DATABASE === "1") {
    throw new Error("REQUIRE_TEST_DATABASE=1 but TEST_DATABASE_URL is not set: the real-server tests cannot run");
  }
  return "no PostgreSQL server configured (set TEST_DATABASE_URL=postgres://user:pass@host:5432/postgres to run these)";
}

let embedded: Promise<EmbeddedPostgres> | undefined;

/** The admin URL of the embedded server this process shares between its tests, started on first use. */
export function embeddedServerUrl(): Promise<string> {
  embedded ??= startEmbeddedPostgres({
    // A folder no other process has had: one killed before it could clean up leaves its own behind.
    dir: mkdtempSync(join(tmpdir(), "rpc-kit-test-pg-")),
    persistent: false,
    logger: createLogger({ service: "test-postgres", level: "warn", format: "json" }),
  });
  return embedded.then((e) => e.url);
}

/** A database of its own: its name, its URL, and a way to drop it (its connections closed first). */
export interface OwnDatabase {
  readonly name: string;
  readonly url: string;
  drop(): Promise<void>;
}

let counter = 0;

/** A new, empty database on the server of the admin URL `admin`, named `<prefix>_<pid>_<n>_<time>`. */
export async function createDatabase(admin: string, prefix: string): Promise<OwnDatabase> {
  const name = `${prefix}_${process.pid}_${++counter}_${Date.now().toString(36)}`;
  await withClient(admin, (c) => c.query(`CREATE DATABASE ${name}`));
  const url = new URL(admin);
  url.pathname = `/${name}`;
  return {
    name,
    url: url.toString(),
    drop: () => withClient(admin, (c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).then(() => {}),
  };
}

/** A new, empty database on `server`; its URL, and a way to drop it. */
export async function testDatabase(server: TestServer = "embedded"): Promise<OwnDatabase> {
  const admin = server === "real" ? realServerUrl() : await embeddedServerUrl();
  if (admin === undefined) throw new Error("no real PostgreSQL server configured (TEST_DATABASE_URL)");
  return createDatabase(admin, "test");
}

/** Runs `fn` on a connection of its own to `url`. */
export async function withClient<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}
