import { UserService } from "@demo/proto/demo/users/v1/users_pb";
import {
  authSettings,
  createLogger,
  loadConfigOrExit,
  serve,
  serverSettings,
  service,
  setting,
  startTelemetry,
  telemetrySettings,
} from "@demo/rpc-kit";
import { databaseSettings, openDatabase } from "@demo/rpc-kit/postgres";
import { cannotStart, MIGRATIONS } from "./database.ts";
import { createUserService, DEFAULT_MAX_USERS, UserStore } from "./service.ts";

const config = loadConfigOrExit("users", {
  ...telemetrySettings(),
  ...serverSettings({ port: 50051, adminPort: 9051 }),
  ...authSettings(),
  ...databaseSettings(),
  maxUsers: setting.int(
    "MAX_USERS",
    DEFAULT_MAX_USERS,
    "most users the store holds, the seeded three included; CreateUser past it fails with ResourceExhausted",
    { min: 3 },
  ),
});

startTelemetry({ serviceName: "users", ...config });
const logger = createLogger({ service: "users", level: config.logLevel, format: config.logFormat });

// One pool for the process, opened (and the schema migrated) before the port opens, closed after the last call.
const database = await openDatabase(config, { name: "users", migrations: MIGRATIONS, logger }).catch(
  cannotStart(logger),
);

await serve({
  name: "users",
  settings: config,
  logger,
  auth: config,
  services: [service(UserService, createUserService(new UserStore(database.db, { maxUsers: config.maxUsers })))],
  dependencies: [database.db.readiness],
  onShutdown: () => database.close(),
});
