import { UserService } from "@demo/proto/demo/users/v1/users_pb";
import { loadConfigOrExit, serve, serverSettings, service } from "@demo/rpc-kit";
import { createUserService, UserStore } from "./service.ts";

const config = loadConfigOrExit("users", {
  ...serverSettings({ port: 50051, adminPort: 9051 }),
});

await serve({
  name: "users",
  settings: config,
  services: [service(UserService, createUserService(new UserStore()))],
});
