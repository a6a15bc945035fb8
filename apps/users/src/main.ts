import { UserService } from "@demo/proto/demo/users/v1/users_pb";
import {
  authSettings,
  loadConfigOrExit,
  serve,
  serverSettings,
  service,
  startTelemetry,
  telemetrySettings,
} from "@demo/rpc-kit";
import { createUserService, UserStore } from "./service.ts";

const config = loadConfigOrExit("users", {
  ...telemetrySettings(),
  ...serverSettings({ port: 50051, adminPort: 9051 }),
  ...authSettings(),
});

startTelemetry({ serviceName: "users", ...config });

await serve({
  name: "users",
  settings: config,
  auth: config,
  services: [service(UserService, createUserService(new UserStore()))],
});
