/**
 * Applies users' migrations and exits: `npm run migrate -w @demo/users`, or
 * `node dist/migrate.js` in the image (a Kubernetes init container or Job),
 * with DATABASE_URL set. Exits 0 when the schema is current, 1 with one line
 * otherwise. The migrations take a lock: replicas starting at the same time
 * (which apply them too) wait for it and find them done.
 */
import { createLogger, exitCannotStart, loadConfigOrExit, serverSettings } from "@demo/rpc-kit";
import { databaseSettings, openDatabase } from "@demo/rpc-kit/postgres";
import { MIGRATIONS } from "./database.ts";

const config = loadConfigOrExit("users migrate", {
  ...serverSettings({ port: 50051, adminPort: 9051 }),
  ...databaseSettings(),
});
const logger = createLogger({ service: "users-migrate", level: config.logLevel, format: config.logFormat });
if (config.databaseUrl === undefined) {
  // users migrates an embedded database itself at start: on its own, this is for a real server.
  await exitCannotStart(
    logger,
    "users migrate",
    new Error("DATABASE_URL is not set: name the PostgreSQL server to migrate"),
  );
}
const database = await openDatabase(config, { name: "users-migrate", migrations: MIGRATIONS, logger }).catch((err) =>
  exitCannotStart(logger, "users migrate", err),
);
await database.close();
