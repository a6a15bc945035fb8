/** `@demo/rpc-kit/observe`: the process's metrics registry, code names and redaction, for tools and tests. */
export { codeToString } from "../call/codes.ts";
export type { LogFormat, LogLevel } from "./logger.ts";
export {
  collectRuntimeMetrics,
  grpcCodeLabel,
  HANDLING_SECONDS_BUCKETS,
  metricsRegistry,
  registerRpcMetrics,
} from "./metrics.ts";
export { REDACTED, redactMessage } from "./redact.ts";
export { shutdownTelemetry, type TelemetryOptions } from "./telemetry.ts";
