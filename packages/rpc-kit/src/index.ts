export { currentCallScope } from "./call/call-scope.ts";
export { codeToString } from "./call/codes.ts";
export {
  DEFAULT_CALL_TIMEOUT_MS,
  DEFAULT_DEADLINE_MARGIN_MS,
  DEFAULT_STREAM_TIMEOUT_MS,
  outboundTimeoutMs,
} from "./call/deadline.ts";
export {
  type FieldViolation,
  INTERNAL_ERROR_MESSAGE,
  invalidArgument,
  relayUpstreamError,
  toCallerError,
  translateUpstreamError,
  upstreamOriginOf,
} from "./call/errors.ts";
export type { BalancingPolicy } from "./client/balancing.ts";
export {
  type ClientOptions,
  clientOptionsFrom,
  clientSettings,
  createClient,
  createClientFromTransport,
} from "./client/client.ts";
export type { RetryBudgetOptions } from "./client/retry-budget.ts";
export { DEFAULT_RETRY, type RetryOptions } from "./client/retry-policy.ts";
export {
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_DNS_REFRESH_MS,
  type UpstreamOptions,
  type UpstreamSnapshot,
} from "./client/upstream.ts";
export { DEFAULT_CHANNEL_OPTIONS, defaultUpstreamPool, UpstreamPool } from "./client/upstream-pool.ts";
export {
  type Config,
  ConfigError,
  loadConfig,
  loadConfigOrExit,
  parseTarget,
  type Setting,
  setting,
} from "./config/config.ts";
export {
  CORS_ALLOWED_HEADERS,
  CORS_EXPOSED_HEADERS,
  type CorsSettings,
  corsSettings,
  ORIGIN_NOT_ALLOWED,
  parseOrigin,
} from "./edge/cors.ts";
export { RATE_LIMITED_MESSAGE, type RateLimitSettings, rateLimitSettings } from "./edge/rate-limit.ts";
export {
  DEFAULT_CONTENT_SECURITY_POLICY,
  loadStaticSite,
  type StaticSite,
  type StaticSiteOptions,
} from "./edge/static-site.ts";
export { createLogger, flushLogger, type LogFormat, type Logger, type LogLevel } from "./observe/logger.ts";
export { collectRuntimeMetrics, grpcCodeLabel, HANDLING_SECONDS_BUCKETS, metricsRegistry } from "./observe/metrics.ts";
export { REDACTED, redactMessage } from "./observe/redact.ts";
export { requestLogger } from "./observe/rpc-log.ts";
export {
  type CallTimings,
  formatServerTiming,
  type HopTiming,
  parseServerTiming,
  SERVER_TIMING,
  SERVER_TIMING_REQUEST,
} from "./observe/server-timing.ts";
export { shutdownTelemetry, startTelemetry, type TelemetryOptions, telemetrySettings } from "./observe/telemetry.ts";
export {
  type AuthSettings,
  authSettings,
  callerIdentity,
  type Identity,
  UNAUTHENTICATED_MESSAGE,
} from "./security/auth.ts";
export type { CertificateInfo, TlsFiles } from "./security/certificate-checks.ts";
export { CertificateFiles, type CertificateFilesOptions } from "./security/certificate-files.ts";
export { tlsFrom, tlsSettings } from "./security/tls-settings.ts";
export {
  DEFAULT_MAX_CONCURRENT_STREAMS,
  DEFAULT_MAX_HEADER_BYTES,
  ListenError,
  MAX_MESSAGE_BYTES,
  type RunningServer,
  type ServeOptions,
  type ServerSettings,
  serve,
  serverSettings,
} from "./serve.ts";
export { HealthState, ServingStatus } from "./server/health.ts";
export { type ServiceRegistration, service } from "./server/service-registration.ts";
