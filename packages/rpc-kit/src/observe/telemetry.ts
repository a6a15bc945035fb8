import { defaultResource, resourceFromAttributes } from "@opentelemetry/resources";
import { NodeSDK } from "@opentelemetry/sdk-node";
import { NoopSpanProcessor, type SpanProcessor } from "@opentelemetry/sdk-trace";
import { setting } from "../config/config.ts";

/**
 * One call starts the OpenTelemetry SDK for the process. The SDK reads the
 * standard `OTEL_*` variables itself (sampler, propagators, resource,
 * exporter protocol and headers); rpc-kit decides only whether spans leave
 * the process: OTLP/HTTP export when an OTLP endpoint is set and
 * OTEL_TRACES_EXPORTER is not `none`, nothing otherwise. Spans are still made
 * without an exporter, so trace ids reach the logs and the next hop either
 * way (left to itself, the SDK registers no tracer at all for `none`, and a
 * call would get no trace id of its own, in the logs or on the wire).
 */

/** The telemetry variables rpc-kit itself reads; spread into an app's config spec. */
export function telemetrySettings() {
  return {
    otlpEndpoint: setting.optional(
      "OTEL_EXPORTER_OTLP_ENDPOINT",
      "OTLP/HTTP collector base URL, e.g. http://collector:4318; traces are exported only when this (or the traces endpoint) is set",
    ),
    otlpTracesEndpoint: setting.optional(
      "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
      "OTLP/HTTP traces URL, overrides the base URL",
    ),
    tracesExporter: setting.optional(
      "OTEL_TRACES_EXPORTER",
      "none: export no spans even with an endpoint set (trace context is still propagated and logged); otherwise as the SDK reads it (default otlp)",
    ),
  };
}

export interface TelemetryOptions {
  /** `service.name`, unless OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES say otherwise. */
  readonly serviceName: string;
  readonly otlpEndpoint: string | undefined;
  readonly otlpTracesEndpoint: string | undefined;
  /** OTEL_TRACES_EXPORTER; `none` exports nothing. Default undefined: the SDK's default, otlp. */
  readonly tracesExporter?: string | undefined;
  /** Replaces the exporter chosen from the environment (tests and benchmarks). */
  readonly spanProcessors?: readonly SpanProcessor[];
}

let sdk: NodeSDK | undefined;

/** Starts the SDK once per process; later calls are ignored. */
export function startTelemetry(options: TelemetryOptions): void {
  if (sdk !== undefined) return;
  const exportFromEnv =
    (options.otlpEndpoint !== undefined || options.otlpTracesEndpoint !== undefined) &&
    // The SDK's reading: the first name decides whether there is any exporter.
    options.tracesExporter?.split(",")[0]?.trim() !== "none";
  sdk = new NodeSDK({
    resource: defaultResource().merge(resourceFromAttributes({ "service.name": options.serviceName })),
    // Undefined lets the SDK build the OTLP exporter from OTEL_* (protocol, headers, timeout).
    ...(options.spanProcessors
      ? { spanProcessors: [...options.spanProcessors] }
      : !exportFromEnv && { spanProcessors: [new NoopSpanProcessor()] }),
    // Logs are pino's and metrics Prometheus': no OTLP logs or metrics exporters.
    logRecordProcessors: [],
    metricReaders: [],
  });
  sdk.start();
}

/**
 * Exports what is buffered and stops the SDK; part of `serve()`'s shutdown.
 * Bounded: an unreachable collector (no such host, a black hole) must not
 * hold a stopping pod for the exporter's own 10 s timeout. Rejects when the
 * bound is reached; the spans not yet sent are lost.
 */
export async function shutdownTelemetry(timeoutMs = 2_000): Promise<void> {
  const running = sdk;
  sdk = undefined;
  if (running === undefined) return;
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      running.shutdown(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`telemetry not flushed within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
