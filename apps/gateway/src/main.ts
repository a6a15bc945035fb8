import { GatewayService } from "@demo/proto/demo/gateway/v1/gateway_pb";
import { ProfileService } from "@demo/proto/demo/profiles/v1/profiles_pb";
import {
  authSettings,
  clientOptionsFrom,
  clientSettings,
  corsSettings,
  createClient,
  loadConfigOrExit,
  loadStaticSite,
  rateLimitSettings,
  serve,
  serverSettings,
  service,
  setting,
  startTelemetry,
  telemetrySettings,
} from "@demo/rpc-kit";
import { siteDir } from "@demo/web";
import { createGatewayService } from "./service.ts";

const config = loadConfigOrExit("gateway", {
  ...telemetrySettings(),
  ...clientSettings(),
  ...serverSettings({ port: 8080, adminPort: 9080 }),
  ...authSettings(),
  ...rateLimitSettings(),
  ...corsSettings(),
  profilesAddr: setting.target("PROFILES_ADDR", "localhost:50052", "address of the profiles service"),
  rpcTimeoutMs: setting.int("RPC_TIMEOUT_MS", 3_000, "default deadline of calls to profiles", { min: 1 }),
});

startTelemetry({ serviceName: "gateway", ...config });

const profiles = createClient(ProfileService, config.profilesAddr, {
  ...clientOptionsFrom(config),
  timeoutMs: config.rpcTimeoutMs,
});

await serve({
  name: "gateway",
  engine: "connect",
  settings: config,
  auth: config,
  rateLimit: config,
  cors: config,
  // The demo page at /, built by @demo/web.
  site: loadStaticSite(siteDir),
  services: [service(GatewayService, createGatewayService({ profiles }))],
});
