import { ProfileService } from "@demo/proto/demo/profiles/v1/profiles_pb";
import { UserService } from "@demo/proto/demo/users/v1/users_pb";
import { serveApp, service, setting } from "@demo/rpc-kit";
import { createProfileService } from "./service.ts";

await serveApp({
  name: "profiles",
  ports: { port: 50052, adminPort: 9052 },
  settings: {
    usersAddr: setting.target("USERS_ADDR", "localhost:50051", "address of the users service"),
    rpcTimeoutMs: setting.int("RPC_TIMEOUT_MS", 2_000, "default deadline of calls to users", { min: 1 }),
  },
  start: ({ config, client }) => {
    const users = client(UserService, config.usersAddr, { timeoutMs: config.rpcTimeoutMs });
    return { services: [service(ProfileService, createProfileService({ users }))] };
  },
});
