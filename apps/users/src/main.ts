import { UserService } from "@demo/proto/demo/users/v1/users_pb";
import { serveApp, service, setting } from "@demo/rpc-kit";
import { databaseSettings, openDatabase } from "@demo/rpc-kit/postgres";
import { MIGRATIONS } from "./database.ts";
import { createUserService, DEFAULT_MAX_USERS, UserStore } from "./service.ts";

await serveApp({
  name: "users",
  ports: { port: 50051, adminPort: 9051 },
  settings: {
    ...databaseSettings(),
    maxUsers: setting.int(
      "MAX_USERS",
      DEFAULT_MAX_USERS,
      "most users the store holds, the seeded three included; CreateUser past it fails with ResourceExhausted",
      { min: 3 },
    ),
  },
  // One pool for the process, opened (and the schema migrated) before the port opens, closed after the last call.
  start: async ({ name, config, logger }) => {
    const database = await openDatabase(config, { name, migrations: MIGRATIONS, logger });
    return {
      services: [service(UserService, createUserService(new UserStore(database.db, { maxUsers: config.maxUsers })))],
      dependencies: [database.db.readiness],
      onShutdown: () => database.close(),
    };
  },
});
