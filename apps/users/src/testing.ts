/**
 * users on a fresh, migrated database, for tests here and in the services
 * that call users (profiles, gateway): the real store, on a real
 * PostgreSQL (the embedded server, or the one of TEST_DATABASE_URL).
 */
import { createLogger } from "@demo/rpc-kit";
import { Database, migrate } from "@demo/rpc-kit/postgres";
import { type TestServer, testDatabase } from "@demo/rpc-kit/testing";
import { MIGRATIONS } from "./database.ts";
import { UserStore, type UserStoreOptions } from "./user-store.ts";

export interface TestUserStore {
  readonly store: UserStore;
  readonly db: Database;
  /** The database's URL (to inspect it, or start users processes on it). */
  readonly url: string;
  /** Closes the pool and drops the database. */
  close(): Promise<void>;
}

export async function openTestUserStore(
  options: UserStoreOptions & { server?: TestServer } = {},
): Promise<TestUserStore> {
  const database = await testDatabase(options.server);
  const logger = createLogger({ service: "users-test", level: "warn", format: "json" });
  const db = new Database({ url: database.url, poolMax: 5, applicationName: "users-test", logger });
  await migrate(db, MIGRATIONS, logger);
  return {
    store: new UserStore(db, options),
    db,
    url: database.url,
    async close() {
      await db.close();
      await database.drop();
    },
  };
}
