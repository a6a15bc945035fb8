import { GatewayService } from "@demo/proto/demo/gateway/v1/gateway_pb";
import { ProfileService } from "@demo/proto/demo/profiles/v1/profiles_pb";
import { corsSettings, loadStaticSite, rateLimitSettings, serveApp, service, setting } from "@demo/rpc-kit";
import { siteDir } from "@demo/web";
import { createGatewayService } from "./service.ts";

await serveApp({
  name: "gateway",
  ports: { port: 8080, adminPort: 9080 },
  // The public edge: Connect, gRPC-Web and gRPC over HTTP/1.1 and h2c.
  engine: "connect",
  settings: {
    ...rateLimitSettings(),
    ...corsSettings(),
    profilesAddr: setting.target("PROFILES_ADDR", "localhost:50052", "address of the profiles service"),
    rpcTimeoutMs: setting.int("RPC_TIMEOUT_MS", 3_000, "default deadline of calls to profiles", { min: 1 }),
  },
  start: ({ config, client }) => {
    const profiles = client(ProfileService, config.profilesAddr, { timeoutMs: config.rpcTimeoutMs });
    return {
      services: [service(GatewayService, createGatewayService({ profiles }))],
      rateLimit: config,
      cors: config,
      // The demo page at /, built by @demo/web.
      site: loadStaticSite(siteDir),
    };
  },
});
