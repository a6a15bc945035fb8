import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  captureLogger,
  freePort,
  realServerSkipReason,
  type TestServer,
  testDatabase,
  waitFor,
} from "../testing/index.ts";
import { Database } from "./database.ts";
import { type EmbeddedPostgres, startEmbeddedPostgres } from "./embedded.ts";

/**
 * The database's readiness as the server's /readyz reads it: ready while
 * the database answers, not ready while it does not, ready again when it
 * is back, found by the probe without any query of the service's own.
 */

const SERVERS: readonly { server: TestServer; skip: string | undefined }[] = [
  { server: "embedded", skip: undefined },
  { server: "real", skip: realServerSkipReason() },
];

/** The probe's interval here: short, so that the tests need not wait a second per change. */
const PROBE_MS = 100;

const SELECT_ONE = { key: "readiness-test.one", operation: "SELECT", collection: "", text: "SELECT 1 AS one" };

for (const { server, skip } of SERVERS) {
  describe(`readiness on PostgreSQL (${server} server)`, { skip }, () => {
    it("is ready once the probe finds the database answering, and not before", async () => {
      const database = await testDatabase(server);
      const db = new Database({
        url: database.url,
        poolMax: 1,
        applicationName: "readiness-test",
        logger: captureLogger("readiness-test").logger,
      });
      try {
        assert.equal(db.readiness.ready, false, "not ready before anything answered");
        await db.readiness.start(PROBE_MS);
        assert.equal(db.readiness.ready, true);
      } finally {
        await db.close();
        await database.drop();
      }
    });
  });
}

describe("readiness across an outage of the database (an embedded server of its own)", () => {
  const dirs: string[] = [];
  after(() => Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true }))));

  it("goes not ready when the server stops, and ready again when it is back on the same port", async () => {
    const dir = await mkdtemp(join(tmpdir(), "rpc-kit-readiness-pg-"));
    dirs.push(dir);
    const serverLog = captureLogger("readiness-pg");
    const serverLogger = serverLog.logger;
    const port = await freePort();
    let pg: EmbeddedPostgres | undefined = await startEmbeddedPostgres({
      dir,
      persistent: true,
      port,
      logger: serverLogger,
    });
    const db = new Database({
      url: pg.url,
      poolMax: 2,
      applicationName: "readiness-test",
      logger: captureLogger("readiness-test").logger,
      connectTimeoutMs: 500,
    });
    const changes: boolean[] = [];
    const unsubscribe = db.readiness.subscribe((ready) => changes.push(ready));
    try {
      await db.readiness.start(PROBE_MS);
      assert.equal(db.readiness.ready, true);

      await pg.stop();
      pg = undefined;
      await waitFor(() => !db.readiness.ready, 5_000);
      await assert.rejects(
        db.query(SELECT_ONE, []),
        (err: unknown) => err instanceof ConnectError && err.code === Code.Unavailable,
      );

      pg = await startEmbeddedPostgres({ dir, persistent: true, port, logger: serverLogger });
      // No query of its own: the probe finds it back.
      await waitFor(() => db.readiness.ready, 10_000);
      assert.deepEqual(await db.query(SELECT_ONE, []), [{ one: 1 }]);
      assert.deepEqual(changes, [true, false, true]);
      const password = decodeURIComponent(new URL(pg.url).password);
      assert.ok(password.length > 0 && !serverLog.text().includes(password), "the server's log holds no password");
    } finally {
      unsubscribe();
      await db.close();
      await pg?.stop();
    }
  });
});
