import { ConfigError } from "../config/config.ts";
import type { Logger } from "../observe/logger.ts";
import { ByteBudget } from "./byte-budget.ts";
import { clientAddress } from "./client-address.ts";
import { ConnectionLimits } from "./connection-limits.ts";
import { Http1Pipeline } from "./http1-pipeline.ts";
import { createLimitReporter, type LimitReporter } from "./limit-reporter.ts";
import { ResetBudget } from "./reset-budget.ts";
import { SessionGuard } from "./session-guard.ts";
import { connectionCap, type LimitSettings } from "./settings.ts";

/** Bounds on the health service, which needs no token: Watch streams never end on their own. */
export interface HealthLimits {
  /** Watch streams open at once (MAX_HEALTH_WATCHES); more get ResourceExhausted. */
  readonly maxWatches: number;
  /** Told of each Watch refused, with the caller's address when the engine knows it. */
  readonly onRefused?: (client: string | undefined) => void;
}

/** The bound objects one server shares between its engine, its health service and /metrics. */
export interface ServerLimits {
  readonly report: LimitReporter;
  readonly budget: ByteBudget;
  readonly sessions: SessionGuard;
  /** MAX_CONNECTIONS after {@link connectionCap}. */
  readonly maxConnections: number;
  readonly health: HealthLimits;
  /** The edge's own: per-client connection caps, pipelining, resets. */
  readonly edge?: { readonly connections: ConnectionLimits; readonly pipeline: Http1Pipeline };
}

/** Builds a server's bounds from its settings; throws ConfigError for settings that contradict each other. */
export function serverLimits(
  settings: LimitSettings & { readonly maxMessageBytes: number },
  logger: Logger,
  engine: "grpc" | "connect",
): ServerLimits {
  const problems: string[] = [];
  for (const [env, value] of [
    ["MAX_BUFFERED_REQUEST_BYTES", settings.maxBufferedRequestBytes],
    ["MAX_BUFFERED_REQUEST_BYTES_PER_CLIENT", settings.maxBufferedRequestBytesPerClient],
  ] as const) {
    // A compressed message and what it inflates to are held together.
    if (value < 2 * settings.maxMessageBytes) {
      problems.push(`${env}=${value}: must be at least twice MAX_MESSAGE_BYTES (${settings.maxMessageBytes})`);
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);

  const report = createLimitReporter(logger);
  const maxConnections = connectionCap(settings.maxConnections);
  if (maxConnections < settings.maxConnections) {
    logger.warn(
      { max_connections: maxConnections },
      `MAX_CONNECTIONS lowered from ${settings.maxConnections} to stay below this process's open-file limit`,
    );
  }
  const edge = engine === "connect";
  const resets = edge ? new ResetBudget(settings.maxResetStreamsPerSecond) : undefined;
  return {
    report,
    budget: new ByteBudget(settings.maxBufferedRequestBytes, settings.maxBufferedRequestBytesPerClient),
    maxConnections,
    sessions: new SessionGuard({
      headersTimeoutMs: settings.headersTimeoutMs,
      idleTimeoutMs: settings.idleTimeoutMs,
      minPingIntervalMs: settings.minPingIntervalMs,
      maxControlBytesPerSecond: settings.maxControlBytesPerSecond,
      report,
      ...(resets && { resets }),
    }),
    health: {
      maxWatches: settings.maxHealthWatches,
      onRefused: (client) => report("health_watches", clientAddress(client)),
    },
    ...(edge && {
      edge: {
        connections: new ConnectionLimits({
          maxConnections,
          maxPerClient: settings.maxConnectionsPerClient,
          headersTimeoutMs: settings.headersTimeoutMs,
          report,
          ...(resets && { resets }),
        }),
        pipeline: new Http1Pipeline(settings.maxPipelinedRequests, report),
      },
    }),
  };
}
