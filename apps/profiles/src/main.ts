import { ProfileService } from "@demo/proto/demo/profiles/v1/profiles_pb";
import { UserService } from "@demo/proto/demo/users/v1/users_pb";
import {
  authSettings,
  clientOptionsFrom,
  clientSettings,
  createClient,
  loadConfigOrExit,
  serve,
  serverSettings,
  service,
  setting,
  startTelemetry,
  telemetrySettings,
} from "@demo/rpc-kit";
import { createProfileService } from "./service.ts";

const config = loadConfigOrExit("profiles", {
  ...telemetrySettings(),
  ...clientSettings(),
  ...serverSettings({ port: 50052, adminPort: 9052 }),
  ...authSettings(),
  usersAddr: setting.target("USERS_ADDR", "localhost:50051", "address of the users service"),
  rpcTimeoutMs: setting.int("RPC_TIMEOUT_MS", 2_000, "default deadline of calls to users", { min: 1 }),
});

startTelemetry({ serviceName: "profiles", ...config });

const users = createClient(UserService, config.usersAddr, {
  ...clientOptionsFrom(config),
  timeoutMs: config.rpcTimeoutMs,
});

await serve({
  name: "profiles",
  settings: config,
  auth: config,
  services: [service(ProfileService, createProfileService({ users }))],
});
