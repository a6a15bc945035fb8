import { isIP } from "node:net";
import { format } from "node:util";
import type { Interceptor } from "@connectrpc/connect";
import { type Server, ServerCredentials, setLogger } from "@grpc/grpc-js";
import { faultInjectionInterceptor } from "./call/fault-injection.ts";
import { defaultUpstreamPool, type UpstreamPool } from "./client/upstream-pool.ts";
import { type Config, ConfigError, setting } from "./config/config.ts";
import { type ConnectEngine, createConnectEngine } from "./edge/connect-engine.ts";
import { type CorsSettings, createCorsGate } from "./edge/cors.ts";
import type { RefusedRequest } from "./edge/edge-http.ts";
import {
  createRateLimiter,
  type RateLimiter,
  type RateLimitSettings,
  rateLimitInterceptor,
} from "./edge/rate-limit.ts";
import type { StaticSite } from "./edge/static-site.ts";
import { clientAddress } from "./limits/client-address.ts";
import { LogThrottle } from "./limits/log-throttle.ts";
import { type ServerLimits, serverLimits } from "./limits/server-limits.ts";
import { limitSettings } from "./limits/settings.ts";
import { createLogger, flushLogger, LOG_FORMATS, LOG_LEVELS, type Logger } from "./observe/logger.ts";
import { collectRuntimeMetrics, metricsRegistry, recordRefusedBeforeRpc, reportServerLoad } from "./observe/metrics.ts";
import { registerServiceSchemas } from "./observe/redact.ts";
import { serverObserver } from "./observe/server-observer.ts";
import { shutdownTelemetry } from "./observe/telemetry.ts";
import { type Authenticator, type AuthSettings, authInterceptor, createAuthenticator } from "./security/auth.ts";
import type { CertificateFiles } from "./security/certificate-files.ts";
import { tlsFrom, tlsSettings } from "./security/tls-settings.ts";
import { type AdminRoutes, type AdminServer, createAdminServer } from "./server/admin-server.ts";
import { createGrpcEngine } from "./server/grpc-engine.ts";
import { createHealthService, HealthService, HealthState, ServingStatus } from "./server/health.ts";
import { type ServiceRegistration, service } from "./server/service-registration.ts";
import { onShutdownSignals } from "./server/shutdown-signals.ts";

/** Largest message a server accepts and sends by default (MAX_MESSAGE_BYTES): 4 MiB, gRPC's default. */
export const MAX_MESSAGE_BYTES = 4 * 1024 * 1024;
/** Default of MAX_CONCURRENT_STREAMS: far above what one well-behaved client needs, far below Node's unbounded default. */
export const DEFAULT_MAX_CONCURRENT_STREAMS = 1000;
/** Default of MAX_HEADER_BYTES: Node's HTTP/1.1 default, twice grpc-js's client-side 8 KiB; room for a large JWT. */
export const DEFAULT_MAX_HEADER_BYTES = 16 * 1024;

/**
 * The environment every server reads, with its defaults. Spread it into an
 * app's config spec: `loadConfig({ ...serverSettings({ port: 50051, adminPort: 9051 }), ... })`.
 */
export function serverSettings(defaults: { port: number; adminPort: number }) {
  return {
    ...tlsSettings(),
    ...limitSettings(),
    host: setting.string("HOST", "::", "address to listen on; :: is every IPv6 and IPv4 address"),
    port: setting.port("PORT", defaults.port, "RPC port (gRPC, or Connect/gRPC-Web/gRPC at the edge)"),
    adminPort: setting.port("ADMIN_PORT", defaults.adminPort, "plain HTTP port for /healthz, /readyz, /metrics"),
    logLevel: setting.oneOf("LOG_LEVEL", LOG_LEVELS, "info", "minimum level of log lines"),
    logFormat: setting.oneOf("LOG_FORMAT", LOG_FORMATS, "auto", "json, pretty, or auto (pretty on a TTY)"),
    drainDelayMs: setting.int(
      "SHUTDOWN_DRAIN_DELAY_MS",
      1_000,
      "after SIGTERM, time spent NOT_SERVING but still accepting, so that callers stop sending",
      { max: 600_000 },
    ),
    shutdownTimeoutMs: setting.int(
      "SHUTDOWN_TIMEOUT_MS",
      10_000,
      "bound on finishing in-flight calls after the drain delay; then they are cancelled",
      { max: 600_000 },
    ),
    faultInjection: setting.bool(
      "FAULT_INJECTION",
      false,
      "honour x-fault-delay-ms, x-fault-code and x-fault-target request headers (demos and drills only)",
    ),
    serverTiming: setting.bool(
      "SERVER_TIMING",
      true,
      "answer calls that send x-server-timing: on with a server-timing trailer naming every hop they crossed and the time there; off where callers must not see the services behind the edge",
    ),
    maxConnectionAgeMs: setting.int(
      "MAX_CONNECTION_AGE_MS",
      300_000,
      "close connections older than this (±10%, then SHUTDOWN_TIMEOUT_MS of grace for calls in flight) so clients of a Service rebalance over its replicas; 0 = never",
      { max: 86_400_000 },
    ),
    maxMessageBytes: setting.int(
      "MAX_MESSAGE_BYTES",
      MAX_MESSAGE_BYTES,
      "largest request message accepted (and response sent), in bytes; larger ones fail with ResourceExhausted",
      { min: 1024, max: 256 * 1024 * 1024 },
    ),
    maxConcurrentStreams: setting.int(
      "MAX_CONCURRENT_STREAMS",
      DEFAULT_MAX_CONCURRENT_STREAMS,
      "calls one HTTP/2 connection may have in flight (SETTINGS_MAX_CONCURRENT_STREAMS); clients queue further calls, streams past it are refused",
      { min: 1, max: 2 ** 31 - 1 },
    ),
    maxHeaderBytes: setting.int(
      "MAX_HEADER_BYTES",
      DEFAULT_MAX_HEADER_BYTES,
      "largest request header block (metadata), in bytes: past it a gRPC call fails ResourceExhausted, another HTTP/2 stream is reset, HTTP/1.1 gets 431 (HTTP/2 advertises four times this as SETTINGS_MAX_HEADER_LIST_SIZE)",
      { min: 1024, max: 1024 * 1024 },
    ),
  };
}

/** The settings `serve()` reads, as parsed from {@link serverSettings}. */
export type ServerSettings = Config<ReturnType<typeof serverSettings>>;

export interface ServeOptions {
  /** The service's name in logs (and later in traces and metrics). */
  readonly name: string;
  /**
   * `grpc` (default): a grpc-js server speaking gRPC over h2c, for internal hops.
   * `connect`: connect-node speaking Connect, gRPC-Web and gRPC over HTTP/1.1 and h2c, for the public edge.
   */
  readonly engine?: "grpc" | "connect";
  readonly services: readonly ServiceRegistration[];
  readonly settings: ServerSettings;
  /** Default: a logger built from the settings. */
  readonly logger?: Logger;
  /** App interceptors, run inside the kit's (logging, errors). */
  readonly interceptors?: readonly Interceptor[];
  /**
   * Bearer-JWT authentication (auth.ts), from the settings of `authSettings()`.
   * Omitted, or no key file set: off, said once in the log at start.
   */
  readonly auth?: AuthSettings;
  /** The per-client rate limit (rate-limit.ts), from `rateLimitSettings()`; for the edge. Default none. */
  readonly rateLimit?: RateLimitSettings;
  /** CORS for the connect engine, from the settings of `corsSettings()`. Default: same origin only. */
  readonly cors?: CorsSettings;
  /** A static site the connect engine serves beside the API, e.g. a demo page (`loadStaticSite()`). */
  readonly site?: StaticSite;
  /** Extra admin routes. */
  readonly adminRoutes?: AdminRoutes;
  /** The client upstreams closed at shutdown and shown at /debug/rpc. Default the process-wide pool. */
  readonly pool?: UpstreamPool;
  /**
   * What the process cannot serve without (its database): while any is not
   * ready, every service is NOT_SERVING (gRPC health, `/readyz`), and
   * `/healthz` stays 200. Default none.
   */
  readonly dependencies?: readonly DependencyReadiness[];
  /** Called at shutdown once the calls in flight are done, before telemetry is flushed: closes a database pool. */
  readonly onShutdown?: () => Promise<void>;
  /**
   * Default true: SIGTERM/SIGINT shut the server down and exit the process
   * (a second signal exits at once), and a failure to start is reported in
   * one line and exits with status 1. Tests set false and call `shutdown()`.
   */
  readonly ownsProcess?: boolean;
}

export interface RunningServer {
  readonly port: number;
  readonly adminPort: number;
  readonly logger: Logger;
  readonly health: HealthState;
  /**
   * NOT_SERVING → drain delay → stop accepting → finish in-flight calls
   * (bounded by the shutdown timeout, then cancelled) → close client channels
   * → flush logs. Idempotent.
   */
  shutdown(): Promise<void>;
}

/** A dependency's readiness, as `serve({ dependencies })` reads it (postgres/readiness.ts). */
export interface DependencyReadiness {
  readonly ready: boolean;
  subscribe(listener: (ready: boolean) => void): () => void;
}

/** Raised when a port cannot be bound; its message names the port and its variable. */
export class ListenError extends Error {
  override name = "ListenError";
}

/**
 * Serves `services` on the RPC port with grpc.health.v1 beside them, and the
 * admin port, and shuts both down in order. See {@link ServeOptions}. The
 * steps: the process's logging, TLS and runtime metrics; authentication and
 * the bounds (limits/), each setting error reported in one line; the
 * interceptors (the server observer outermost); the engine and its port
 * (`edgeListener` or `internalListener`), then the admin port;
 * `announceProtections`; readiness from the dependencies; the ordered
 * `shutdown`; `exitOnSignals`; the "listening" line, last.
 */
export async function serve(options: ServeOptions): Promise<RunningServer> {
  const { settings, name } = options;
  const logger =
    options.logger ?? createLogger({ service: name, level: settings.logLevel, format: settings.logFormat });
  const ownsProcess = options.ownsProcess ?? true;
  const pool = options.pool ?? defaultUpstreamPool;
  routeGrpcJsLogs(logger);
  // mTLS on the grpc engine's port when the TLS files are set; the connect engine (the public edge) stays plain.
  const tls = tlsFrom(settings);
  tls?.setLogger(logger);
  if (tls && options.engine === "connect") {
    logger.info("the TLS files serve this process's clients; its public port stays plain (TLS ends at the ingress)");
  }
  if (options.engine !== "connect" && (options.cors !== undefined || options.site !== undefined)) {
    throw new Error(`${name}: cors and site are served by the connect engine only (engine: "connect")`);
  }
  const health = new HealthState();
  const forceStop = new AbortController();
  collectRuntimeMetrics();
  /** A process of our own reports a bad setting or port in one line and exits 1; otherwise it is thrown. */
  const cannotStart = async (err: unknown): Promise<never> => {
    if (ownsProcess && (err instanceof ConfigError || err instanceof ListenError)) {
      logger.fatal(`${name} cannot start: ${err.message}`);
      await flushLogger(logger);
      process.exit(1);
    }
    throw err;
  };
  let authenticator: Authenticator | undefined;
  try {
    authenticator = options.auth === undefined ? undefined : createAuthenticator(options.auth);
  } catch (err) {
    await cannotStart(err);
  }
  let limits: ServerLimits;
  try {
    limits = serverLimits(settings, logger, options.engine ?? "grpc");
  } catch (err) {
    return cannotStart(err);
  }
  const limiter = options.rateLimit === undefined ? undefined : createRateLimiter(options.rateLimit);
  // Outermost first: the observer (span, timing, metrics, log line, error boundary) sees the code
  // the caller gets, whoever refused the call within it.
  const interceptors = [
    serverObserver({
      engine: options.engine ?? "grpc",
      serviceName: name,
      serverTiming: settings.serverTiming,
      logger,
    }),
    // Authentication before the rate limit, which keys on the verified subject.
    ...(authenticator ? [authInterceptor(authenticator)] : []),
    ...(limiter ? [rateLimitInterceptor(limiter)] : []),
    ...(settings.faultInjection ? [faultInjectionInterceptor(name)] : []),
    ...(options.interceptors ?? []),
  ];
  const registrations = [...options.services, service(HealthService, createHealthService(health, limits.health))];
  for (const r of registrations) registerServiceSchemas(r.service);

  let rpc: RpcListener;
  let admin: AdminServer;
  let port: number;
  let adminPort: number;
  try {
    rpc =
      options.engine === "connect"
        ? edgeListener(registrations, interceptors, { options, limits, forceStop, logger })
        : internalListener(registrations, interceptors, { options, limits, forceStop, tls });
    port = await bindOrExplain(() => rpc.listen(settings.host, settings.port), settings.port, "PORT");
    admin = createAdminServer(health, {
      "/metrics": serveMetrics,
      "/debug/rpc": (_req, res) => {
        res
          .writeHead(200, { "content-type": "application/json" })
          .end(`${JSON.stringify({ upstreams: pool.snapshot() }, null, 2)}\n`);
      },
      ...options.adminRoutes,
    });
    adminPort = await bindOrExplain(
      () => admin.listen(settings.host, settings.adminPort),
      settings.adminPort,
      "ADMIN_PORT",
    ).catch(async (err: unknown) => {
      rpc.destroy();
      throw err;
    });
  } catch (err) {
    return cannotStart(err);
  }

  announceProtections(options, authenticator, limiter, logger);
  const dependencies = options.dependencies ?? [];
  const servingStatus = () => (dependencies.every((d) => d.ready) ? ServingStatus.SERVING : ServingStatus.NOT_SERVING);
  for (const r of registrations) health.set(r.service.typeName, servingStatus());
  health.set("", servingStatus());
  const stopReportingLoad = reportServerLoad({
    connections: () => limits.edge?.connections.open ?? limits.sessions.size,
    bufferedRequestBytes: () => limits.budget.used,
  });

  let shuttingDown: Promise<void> | undefined;
  const unsubscribe = dependencies.map((d) =>
    d.subscribe(() => {
      if (shuttingDown === undefined) health.setAll(servingStatus());
    }),
  );
  const shutdown = () => {
    shuttingDown ??= (async () => {
      logger.info({ drain_delay_ms: settings.drainDelayMs }, `${name} shutting down`);
      health.setAll(ServingStatus.NOT_SERVING);
      await delay(settings.drainDelayMs);
      health.close();
      const stopped = rpc.close();
      const timedOut = await withTimeout(stopped, settings.shutdownTimeoutMs);
      if (timedOut) {
        logger.warn(
          { shutdown_timeout_ms: settings.shutdownTimeoutMs },
          "in-flight calls did not finish in time; cancelling them",
        );
        forceStop.abort();
        rpc.destroy();
      }
      pool.close();
      for (const stop of unsubscribe) stop();
      await options.onShutdown?.().catch((err: unknown) => logger.warn({ err }, "closing at shutdown failed"));
      await shutdownTelemetry().catch((err: unknown) => logger.warn({ err }, "flushing telemetry failed"));
      await admin.close();
      stopReportingLoad();
      logger.info(`${name} stopped`);
      await flushLogger(logger);
    })();
    return shuttingDown;
  };

  if (ownsProcess) exitOnSignals(shutdown, logger);

  // Announced last: whoever waits for this line may signal at once, and the handlers are in place.
  logger.info({ port, admin_port: adminPort, engine: options.engine ?? "grpc" }, `${name} listening`);
  return { port, adminPort, logger, health, shutdown };
}

/** What the engines are built from besides the registrations and interceptors. */
interface EngineParts {
  readonly options: ServeOptions;
  readonly limits: ServerLimits;
  readonly forceStop: AbortController;
}

/**
 * Requests the edge refused before their RPC began: no span, grpc_* series or
 * per-RPC line exists for these, so each is counted, and logged once per
 * client and kind per interval.
 */
function refusedBeforeRpcReporter(logger: Logger): (r: RefusedRequest) => void {
  const refusedLog = new LogThrottle();
  return (r) => {
    // No span, grpc_* series or per-RPC line exists for these: a counter and a line do.
    recordRefusedBeforeRpc(r.service, r.method, r.status);
    const client = clientAddress(r.client);
    const refused = refusedLog.take(`${r.service}/${r.method} ${r.status} ${client}`);
    if (refused === undefined) return;
    logger.info(
      {
        rpc_service: r.service,
        rpc_method: r.method,
        status: r.status,
        content_type: r.contentType?.slice(0, 100),
        duration_ms: Math.round(r.durationMs * 1000) / 1000,
        client,
        refused,
      },
      `${r.method} refused before the call began: ${/^\d+$/.test(r.status) ? `HTTP ${r.status}` : r.status}`,
    );
  };
}

/** The public port: connect-node (Connect, gRPC-Web, gRPC) with the edge's bounds, CORS and site. */
function edgeListener(
  registrations: readonly ServiceRegistration[],
  interceptors: readonly Interceptor[],
  { options, limits, forceStop, logger }: EngineParts & { readonly logger: Logger },
): RpcListener {
  const { settings } = options;
  const onRefusedBeforeRpc = refusedBeforeRpcReporter(logger);
  return connectListener(
    createConnectEngine(registrations, {
      interceptors,
      shutdownSignal: forceStop.signal,
      readMaxBytes: settings.maxMessageBytes,
      maxConcurrentStreams: settings.maxConcurrentStreams,
      maxHeaderBytes: settings.maxHeaderBytes,
      maxConnectionAgeMs: settings.maxConnectionAgeMs,
      maxConnectionAgeGraceMs: settings.shutdownTimeoutMs,
      onRefusedBeforeRpc,
      limits: {
        budget: limits.budget,
        report: limits.report,
        sessions: limits.sessions,
        connections: (limits.edge as NonNullable<ServerLimits["edge"]>).connections,
        pipeline: (limits.edge as NonNullable<ServerLimits["edge"]>).pipeline,
        headersTimeoutMs: settings.headersTimeoutMs,
        requestTimeoutMs: settings.requestTimeoutMs,
        keepAliveTimeoutMs: settings.keepAliveTimeoutMs,
        maxJsonDepth: settings.maxJsonDepth,
      },
      ...(options.cors && { cors: createCorsGate(options.cors) }),
      ...(options.site && { site: options.site }),
    }),
  );
}

/** An internal port: grpc-js, mTLS when the TLS files are set. */
function internalListener(
  registrations: readonly ServiceRegistration[],
  interceptors: readonly Interceptor[],
  { options, limits, forceStop, tls }: EngineParts & { readonly tls: CertificateFiles | undefined },
): RpcListener {
  const { settings } = options;
  return grpcListener(
    createGrpcEngine(registrations, {
      interceptors,
      shutdownSignal: forceStop.signal,
      maxHeaderBytes: settings.maxHeaderBytes,
      serverOptions: {
        "grpc.max_receive_message_length": settings.maxMessageBytes,
        "grpc.max_send_message_length": settings.maxMessageBytes,
        "grpc.max_concurrent_streams": settings.maxConcurrentStreams,
        "grpc.keepalive_permit_without_calls": 1,
        ...(settings.maxConnectionAgeMs > 0 && {
          "grpc.max_connection_age_ms": settings.maxConnectionAgeMs,
          "grpc.max_connection_age_grace_ms": settings.shutdownTimeoutMs,
        }),
      },
      limits: {
        maxConnections: limits.maxConnections,
        headersTimeoutMs: settings.headersTimeoutMs,
        maxHeaderBytes: settings.maxHeaderBytes,
        maxMessageBytes: settings.maxMessageBytes,
        requestTimeoutMs: settings.requestTimeoutMs,
        budget: limits.budget,
        sessions: limits.sessions,
        report: limits.report,
      },
    }),
    tls?.serverCredentials(),
  );
}

/** Says at start what protects the port: authentication on or off, the rate limit. */
function announceProtections(
  options: ServeOptions,
  authenticator: Authenticator | undefined,
  limiter: RateLimiter | undefined,
  logger: Logger,
): void {
  if (options.auth !== undefined) {
    if (authenticator === undefined) {
      logger.warn(
        "authentication is off: neither AUTH_JWT_SECRET_FILE nor AUTH_JWKS_FILE is set, so calls are accepted without credentials",
      );
    } else {
      logger.info(
        {
          auth_keys: authenticator.keys,
          auth_issuer: options.auth.authIssuer,
          auth_audience: options.auth.authAudience,
          auth_require_for_reads: authenticator.requireForReads,
        },
        "authentication is on: methods with side effects need a bearer token",
      );
    }
  }
  if (limiter !== undefined && options.rateLimit !== undefined) {
    logger.info(
      {
        rate_limit_per_second: options.rateLimit.rateLimitPerSecond,
        rate_limit_burst: options.rateLimit.rateLimitBurst,
      },
      "per-client rate limit is on",
    );
  }
}

/** SIGTERM/SIGINT: the ordered shutdown, then exit 0 (1 if it failed); a second signal exits at once. */
function exitOnSignals(shutdown: () => Promise<void>, logger: Logger): void {
  onShutdownSignals({
    onFirst: (signal) => {
      logger.info({ signal }, "signal received");
      shutdown().then(
        () => process.exit(0),
        (err: unknown) => {
          logger.error({ err }, "shutdown failed");
          void flushLogger(logger).finally(() => process.exit(1));
        },
      );
    },
    onSecond: (signal) => {
      logger.warn({ signal }, "second signal: exiting now");
      setTimeout(() => process.exit(1), 200).unref();
      void flushLogger(logger).finally(() => process.exit(1));
    },
  });
}

/**
 * grpc-js writes its own diagnostics to stderr (e.g. "No address added out
 * of total 1 resolved" next to our port-in-use line); route them into the
 * service's log at debug level, where LOG_LEVEL=debug shows them.
 */
function routeGrpcJsLogs(logger: Logger): void {
  const write = (...args: unknown[]) => logger.debug({ component: "grpc-js" }, format(...args));
  setLogger({ error: write, info: write, debug: write });
}

/** `GET /metrics`: the process registry in Prometheus' text format. */
const serveMetrics: AdminRoutes[string] = (_req, res) => {
  metricsRegistry.metrics().then(
    (text) => res.writeHead(200, { "content-type": metricsRegistry.contentType }).end(text),
    (err: unknown) => res.writeHead(500, { "content-type": "text/plain" }).end(`${String(err)}\n`),
  );
};

/** The RPC port, whichever engine serves it. */
interface RpcListener {
  listen(host: string, port: number): Promise<number>;
  /** Stop accepting; resolve when in-flight calls are done. */
  close(): Promise<void>;
  /** Cut every connection now. */
  destroy(): void;
}

function grpcListener(server: Server, credentials = ServerCredentials.createInsecure()): RpcListener {
  return {
    listen: (host, port) =>
      new Promise((resolve, reject) => {
        const address = isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
        server.bindAsync(address, credentials, (err, bound) => {
          if (err === null) {
            resolve(bound);
            return;
          }
          if (host !== "::") {
            reject(err);
            return;
          }
          // No IPv6 in this network namespace: fall back to IPv4.
          server.bindAsync(`0.0.0.0:${port}`, credentials, (err4, bound4) =>
            err4 === null ? resolve(bound4) : reject(err),
          );
        });
      }),
    close: () => new Promise((resolve) => server.tryShutdown(() => resolve())),
    destroy: () => server.forceShutdown(),
  };
}

function connectListener(engine: ConnectEngine): RpcListener {
  return {
    listen: (host, port) => engine.listen(host, port),
    close: () => engine.close(),
    destroy: () => engine.destroy(),
  };
}

async function bindOrExplain(bind: () => Promise<number>, port: number, envName: string): Promise<number> {
  try {
    return await bind();
  } catch (err) {
    const text = String((err as Error).message ?? err);
    const code = (err as { code?: unknown }).code;
    if (code === "EADDRINUSE" || /EADDRINUSE|address already in use/i.test(text)) {
      throw new ListenError(`port ${port} is already in use (set ${envName} to a free port)`);
    }
    if (code === "EACCES" || /EACCES|permission denied/i.test(text)) {
      throw new ListenError(`no permission to listen on port ${port} (set ${envName} to a port above 1023)`);
    }
    throw new ListenError(`cannot listen on port ${port} (${envName}): ${text}`);
  }
}

/** Resolves true when `promise` did not settle within `ms`. */
async function withTimeout(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(true), ms);
  });
  try {
    return await Promise.race([promise.then(() => false), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
