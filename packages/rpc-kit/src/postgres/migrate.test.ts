import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { captureLogger, realServerSkipReason, type TestServer, testDatabase, withClient } from "../testing/index.ts";
import { Database } from "./database.ts";
import { migrate } from "./migrate.ts";

/**
 * Migrations against a real PostgreSQL (embedded, and TEST_DATABASE_URL's
 * when configured): each file once, in order, under the advisory lock, each
 * in a transaction.
 */

const SERVERS: readonly { server: TestServer; skip: string | undefined }[] = [
  { server: "embedded", skip: undefined },
  { server: "real", skip: realServerSkipReason() },
];

/** A folder of migration files (name → SQL), removed after the file's tests. */
const folders: string[] = [];
async function migrationsFolder(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "rpc-kit-migrations-"));
  folders.push(dir);
  for (const [name, sql] of Object.entries(files)) await writeFile(join(dir, name), sql);
  return dir;
}
after(() => Promise.all(folders.map((dir) => rm(dir, { recursive: true, force: true }))));

const CREATE = "CREATE TABLE things (name text NOT NULL);\n";
/** Not idempotent: applied twice, it leaves two rows. */
const SEED = "INSERT INTO things (name) VALUES ('seeded');\n";
const INDEX = "ALTER TABLE things ADD COLUMN size int NOT NULL DEFAULT 0;\n";

for (const { server, skip } of SERVERS) {
  describe(`migrate on PostgreSQL (${server} server)`, { skip }, () => {
    const opened: Database[] = [];
    const databases: { drop(): Promise<void> }[] = [];
    after(async () => {
      await Promise.all(opened.map((db) => db.close()));
      await Promise.all(databases.map((d) => d.drop()));
    });

    const freshDatabase = async () => {
      const database = await testDatabase(server);
      databases.push(database);
      return database.url;
    };
    const open = (url: string) => {
      const db = new Database({ url, poolMax: 2, applicationName: "migrate-test", logger: captureLogger("m").logger });
      opened.push(db);
      return db;
    };
    const rows = (url: string, sql: string) => withClient(url, async (c) => (await c.query(sql)).rows);

    let logger: ReturnType<typeof captureLogger>;
    before(() => {
      logger = captureLogger("migrate-test");
    });

    it("applies the NNNN_name.sql files in order, each once, and ignores other files", async () => {
      // Written out of order: 0002 needs 0001's table, 0010 comes after 0002.
      const dir = await migrationsFolder({
        "0010_size.sql": INDEX,
        "0002_seed.sql": SEED,
        "0001_things.sql": CREATE,
        "README.md": "not a migration",
        "1_short.sql": "SELECT no_such_thing;",
        "0003_notes.sql.bak": "SELECT no_such_thing;",
      });
      const url = await freshDatabase();
      const db = open(url);
      const result = await migrate(db, dir, logger.logger);
      assert.deepEqual(result.applied, ["0001_things", "0002_seed", "0010_size"]);
      assert.deepEqual(result.current, ["0001_things", "0002_seed", "0010_size"]);
      assert.deepEqual(await rows(url, "SELECT name, size FROM things"), [{ name: "seeded", size: 0 }]);
      assert.deepEqual(
        (await rows(url, "SELECT version FROM schema_migrations ORDER BY applied_at, version")).map((r) => r.version),
        ["0001_things", "0002_seed", "0010_size"],
      );
    });

    it("applies nothing on a second run, and only the new file once one is added", async () => {
      const files = { "0001_things.sql": CREATE, "0002_seed.sql": SEED };
      const dir = await migrationsFolder(files);
      const url = await freshDatabase();
      await migrate(open(url), dir, logger.logger);

      const again = await migrate(open(url), dir, logger.logger);
      assert.deepEqual(again.applied, []);
      assert.deepEqual(again.current, ["0001_things", "0002_seed"]);
      assert.deepEqual(await rows(url, "SELECT count(*)::int AS n FROM things"), [{ n: 1 }]);

      await writeFile(join(dir, "0003_size.sql"), INDEX);
      const added = await migrate(open(url), dir, logger.logger);
      assert.deepEqual(added.applied, ["0003_size"]);
      assert.deepEqual(added.current, ["0001_things", "0002_seed", "0003_size"]);
      assert.deepEqual(await rows(url, "SELECT count(*)::int AS n FROM things"), [{ n: 1 }]);
    });

    it("applies each file exactly once when five processes migrate the same fresh database at once", async () => {
      const dir = await migrationsFolder({
        // Slow enough that the others arrive while it runs, and must wait for the lock.
        "0001_things.sql": `${CREATE}SELECT pg_sleep(0.3);\n`,
        "0002_seed.sql": SEED,
        "0003_size.sql": INDEX,
      });
      const url = await freshDatabase();
      const results = await Promise.all(Array.from({ length: 5 }, () => migrate(open(url), dir, logger.logger)));
      assert.deepEqual(results.flatMap((r) => r.applied).sort(), ["0001_things", "0002_seed", "0003_size"]);
      for (const r of results) assert.deepEqual(r.current, ["0001_things", "0002_seed", "0003_size"]);
      assert.deepEqual(await rows(url, "SELECT count(*)::int AS n FROM schema_migrations"), [{ n: 3 }]);
      assert.deepEqual(await rows(url, "SELECT count(*)::int AS n FROM things"), [{ n: 1 }], "the INSERT ran once");
    });

    it("reports the file that failed, without the URL or password, and applies none of it", async () => {
      const dir = await migrationsFolder({
        "0001_things.sql": CREATE,
        // Its first two statements succeed; the third fails: the transaction takes back all three.
        "0002_broken.sql":
          "CREATE TABLE half (id int);\nINSERT INTO things (name) VALUES ('half');\nSELECT no_such_column FROM half;\n",
        "0003_seed.sql": SEED,
      });
      const url = await freshDatabase();
      const parsed = new URL(url);
      const err: unknown = await migrate(open(url), dir, logger.logger).then(
        () => assert.fail("the migration should fail"),
        (e: unknown) => e,
      );
      assert.ok(err instanceof Error);
      assert.match(err.message, /0002_broken/);
      for (const leak of [url, decodeURIComponent(parsed.password), `${parsed.hostname}:${parsed.port}`]) {
        assert.ok(!err.message.includes(leak), `the error shows ${leak}: ${err.message}`);
        assert.ok(!logger.text().includes(leak), `a log line shows ${leak}`);
      }
      assert.deepEqual(await rows(url, "SELECT version FROM schema_migrations"), [{ version: "0001_things" }]);
      assert.deepEqual(await rows(url, "SELECT to_regclass('half') IS NULL AS gone"), [{ gone: true }]);
      assert.deepEqual(await rows(url, "SELECT count(*)::int AS n FROM things"), [{ n: 0 }]);

      // Fixed, the next run applies it and what follows; the lock was let go.
      await writeFile(join(dir, "0002_broken.sql"), "CREATE TABLE half (id int);\n");
      const fixed = await migrate(open(url), dir, logger.logger);
      assert.deepEqual(fixed.applied, ["0002_broken", "0003_seed"]);
      assert.deepEqual(await rows(url, "SELECT count(*)::int AS n FROM things"), [{ n: 1 }]);
    });
  });
}
