/**
 * `@demo/rpc-kit`: what an app needs to serve its API and call others. What
 * libraries and tests need besides lives behind subpaths named for their
 * role: `/client` (pools, transports, retry and deadline defaults),
 * `/server` (health, listen errors, limits' defaults, the static site),
 * `/call` (error translation), `/observe` (the metrics registry, redaction,
 * code names), `/security` (mTLS files, auth and CORS constants),
 * `/server-timing`, `/postgres` and `/testing`.
 */
export {
  type AppConfig,
  type AppContext,
  type AppOptions,
  type AppParts,
  exitCannotStart,
  serveApp,
} from "./app.ts";
export { type CallRecord, currentCall } from "./call/call-record.ts";
export { type FieldViolation, invalidArgument, relayUpstreamError } from "./call/errors.ts";
export { type ClientOptions, clientOptionsFrom, clientSettings, createClient } from "./client/client.ts";
export { type Config, ConfigError, loadConfig, loadConfigOrExit, type Setting, setting } from "./config/config.ts";
export { corsSettings } from "./edge/cors.ts";
export { rateLimitSettings } from "./edge/rate-limit.ts";
export { loadStaticSite } from "./edge/static-site.ts";
export { createLogger, flushLogger, type Logger } from "./observe/logger.ts";
export { requestLogger } from "./observe/rpc-log.ts";
export { startTelemetry, telemetrySettings } from "./observe/telemetry.ts";
export { authSettings, callerIdentity, type Identity } from "./security/auth.ts";
export { type RunningServer, type ServeOptions, type ServerSettings, serve, serverSettings } from "./serve.ts";
export { type ServiceRegistration, service } from "./server/service-registration.ts";
