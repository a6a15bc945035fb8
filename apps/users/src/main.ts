import { UserService } from "@demo/proto/demo/users/v1/users_pb";
import {
  authSettings,
  loadConfigOrExit,
  serve,
  serverSettings,
  service,
  setting,
  startTelemetry,
  telemetrySettings,
} from "@demo/rpc-kit";
import { createUserService, DEFAULT_MAX_USERS, UserStore } from "./service.ts";

const config = loadConfigOrExit("users", {
  ...telemetrySettings(),
  ...serverSettings({ port: 50051, adminPort: 9051 }),
  ...authSettings(),
  maxUsers: setting.int(
    "MAX_USERS",
    DEFAULT_MAX_USERS,
    "most users the in-memory store holds, the seeded three included; CreateUser past it fails with ResourceExhausted",
    { min: 3 },
  ),
});

startTelemetry({ serviceName: "users", ...config });

await serve({
  name: "users",
  settings: config,
  auth: config,
  services: [service(UserService, createUserService(new UserStore({ maxUsers: config.maxUsers })))],
});
