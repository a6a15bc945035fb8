export {
  type AuthSettings,
  authSettings,
  callerIdentity,
  type Identity,
  UNAUTHENTICATED_MESSAGE,
} from "./auth.ts";
export type { BalancingPolicy } from "./balancing.ts";
export { currentCallScope } from "./call-scope.ts";
export {
  type ClientOptions,
  clientOptionsFrom,
  clientSettings,
  createClient,
  createClientFromTransport,
} from "./client.ts";
export { codeToString } from "./codes.ts";
export {
  type Config,
  ConfigError,
  loadConfig,
  loadConfigOrExit,
  parseTarget,
  type Setting,
  setting,
} from "./config.ts";
export {
  CORS_ALLOWED_HEADERS,
  CORS_EXPOSED_HEADERS,
  type CorsSettings,
  corsSettings,
  ORIGIN_NOT_ALLOWED,
  parseOrigin,
} from "./cors.ts";
export {
  DEFAULT_CALL_TIMEOUT_MS,
  DEFAULT_DEADLINE_MARGIN_MS,
  DEFAULT_STREAM_TIMEOUT_MS,
  outboundTimeoutMs,
} from "./deadline.ts";
export {
  type FieldViolation,
  INTERNAL_ERROR_MESSAGE,
  invalidArgument,
  relayUpstreamError,
  toCallerError,
  translateUpstreamError,
  upstreamOriginOf,
} from "./errors.ts";
export { HealthState, ServingStatus } from "./health.ts";
export { createLogger, flushLogger, type LogFormat, type Logger, type LogLevel } from "./logger.ts";
export { collectRuntimeMetrics, grpcCodeLabel, HANDLING_SECONDS_BUCKETS, metricsRegistry } from "./metrics.ts";
export { RATE_LIMITED_MESSAGE, type RateLimitSettings, rateLimitSettings } from "./rate-limit.ts";
export { REDACTED, redactMessage } from "./redact.ts";
export type { RetryBudgetOptions } from "./retry-budget.ts";
export { DEFAULT_RETRY, type RetryOptions } from "./retry-policy.ts";
export { requestLogger } from "./rpc-log.ts";
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
} from "./server.ts";
export {
  type CallTimings,
  formatServerTiming,
  type HopTiming,
  parseServerTiming,
  SERVER_TIMING,
  SERVER_TIMING_REQUEST,
} from "./server-timing.ts";
export { type ServiceRegistration, service } from "./service-registration.ts";
export {
  DEFAULT_CONTENT_SECURITY_POLICY,
  loadStaticSite,
  type StaticSite,
  type StaticSiteOptions,
} from "./static-site.ts";
export { shutdownTelemetry, startTelemetry, type TelemetryOptions, telemetrySettings } from "./telemetry.ts";
export {
  CertificateFiles,
  type CertificateFilesOptions,
  type CertificateInfo,
  type TlsFiles,
  tlsFrom,
  tlsSettings,
} from "./tls.ts";
export {
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_DNS_REFRESH_MS,
  type UpstreamOptions,
  type UpstreamSnapshot,
} from "./upstream.ts";
export { DEFAULT_CHANNEL_OPTIONS, defaultUpstreamPool, UpstreamPool } from "./upstream-pool.ts";
