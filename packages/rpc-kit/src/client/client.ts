import type { DescMethodServerStreaming, DescMethodUnary, DescService } from "@bufbuild/protobuf";
import {
  type CallOptions,
  type Client,
  createContextValues,
  type Interceptor,
  makeAnyClient,
  type Transport,
} from "@connectrpc/connect";
import { createAsyncIterable } from "@connectrpc/connect/protocol";
import { DEFAULT_CALL_TIMEOUT_MS, DEFAULT_DEADLINE_MARGIN_MS, DEFAULT_STREAM_TIMEOUT_MS } from "../call/deadline.ts";
import { type Config, parseTarget, setting } from "../config/config.ts";
import { serverAddressOf } from "../config/target.ts";
import { clientObserver } from "../observe/client-observer.ts";
import { tlsClientSettings, tlsFrom, tlsSettings } from "../security/tls-settings.ts";
import { BALANCING_POLICIES, type BalancingPolicy } from "./balancing.ts";
import { createGrpcTransport } from "./grpc-transport.ts";
import { DEFAULT_RETRY, type RetryOptions } from "./retry-policy.ts";
import { DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_DNS_REFRESH_MS, type UpstreamOptions } from "./upstream.ts";
import { defaultUpstreamPool, type UpstreamPool } from "./upstream-pool.ts";

/** Options of {@link createClient}; every one has a default. */
export interface ClientOptions extends UpstreamOptions {
  /** Timeout of a unary call that sets none, in ms. Default {@link DEFAULT_CALL_TIMEOUT_MS} (5 s). */
  readonly timeoutMs?: number;
  /** Timeout of a server-streaming call that sets none, in ms. Default {@link DEFAULT_STREAM_TIMEOUT_MS} (30 s). */
  readonly streamTimeoutMs?: number;
  /**
   * Kept back from an inbound call's remaining time when capping an outbound
   * call's deadline. Default {@link DEFAULT_DEADLINE_MARGIN_MS} (10 ms).
   */
  readonly deadlineMarginMs?: number;
  /** Retries of Unavailable on idempotent methods. Default {@link DEFAULT_RETRY}: 3 attempts, 50 ms → 1 s full jitter. */
  readonly retry?: RetryOptions;
  /** Connect interceptors, outermost first, run inside the kit's tracing and metrics. Default none. */
  readonly interceptors?: readonly Interceptor[];
  /** Where the upstream comes from. Default the process-wide pool that `serve()` closes at shutdown. */
  readonly pool?: UpstreamPool;
}

/**
 * The client-side environment of a process, for every upstream it calls;
 * spread into an app's config spec and pass `clientOptionsFrom(config)`.
 */
export function clientSettings() {
  return {
    ...tlsSettings(),
    ...tlsClientSettings(),
    lbPolicy: setting.oneOf(
      "RPC_LB_POLICY",
      BALANCING_POLICIES,
      "round_robin",
      "balancing over an upstream's endpoints: round_robin or least_loaded (power of two choices on in-flight calls)",
    ),
    dnsRefreshMs: setting.int(
      "RPC_DNS_REFRESH_MS",
      DEFAULT_DNS_REFRESH_MS,
      "re-resolve upstream DNS names this often",
      {
        min: 100,
      },
    ),
    connectTimeoutMs: setting.int(
      "RPC_CONNECT_TIMEOUT_MS",
      DEFAULT_CONNECT_TIMEOUT_MS,
      "how long a call waits for a connected endpoint before Unavailable",
      { min: 1 },
    ),
    dnsServers: setting.list(
      "RPC_DNS_SERVERS",
      "DNS servers (ip or ip:port, comma-separated) to ask for upstream addresses instead of the system resolver",
    ),
    retryMaxAttempts: setting.int(
      "RPC_RETRY_MAX_ATTEMPTS",
      DEFAULT_RETRY.maxAttempts,
      "attempts per call, first included",
      {
        min: 1,
        max: 10,
      },
    ),
    streamTimeoutMs: setting.int(
      "RPC_STREAM_TIMEOUT_MS",
      DEFAULT_STREAM_TIMEOUT_MS,
      "deadline of an upstream server-streaming call when the inbound call has a longer one or none",
      { min: 1 },
    ),
    retryBudgetPercent: setting.int(
      "RPC_RETRY_BUDGET_PERCENT",
      10,
      "retries may add at most this share of calls to an upstream",
      { max: 100 },
    ),
  };
}

/** ClientOptions from the settings of {@link clientSettings}. */
export function clientOptionsFrom(config: Config<ReturnType<typeof clientSettings>>): ClientOptions {
  return {
    policy: config.lbPolicy as BalancingPolicy,
    dnsRefreshMs: config.dnsRefreshMs,
    connectTimeoutMs: config.connectTimeoutMs,
    streamTimeoutMs: config.streamTimeoutMs,
    ...(config.dnsServers && { dnsServers: config.dnsServers }),
    retry: { maxAttempts: config.retryMaxAttempts },
    retryBudget: { ratio: config.retryBudgetPercent / 100 },
    ...tlsOptionsFrom(config),
  };
}

/** The mTLS part of {@link clientOptionsFrom}: the process's certificate files, when set. */
function tlsOptionsFrom(
  config: Config<ReturnType<typeof clientSettings>>,
): Pick<ClientOptions, "tls" | "tlsServerName"> {
  const tls = tlsFrom(config);
  if (tls === undefined) return {};
  return { tls, ...(config.tlsServerName && { tlsServerName: config.tlsServerName }) };
}

/**
 * A Connect client for `service` at `target` (`host:port`, `dns:///host:port`
 * or `static:///h1:p1,h2:p2`), balancing over every endpoint of the target
 * through the pool's shared connections. Create it once at start and share
 * it; it is never needed per call.
 */
export function createClient<S extends DescService>(
  service: S,
  target: string,
  options: ClientOptions = {},
): Client<S> {
  const normalized = parseTarget(target);
  const pool = options.pool ?? defaultUpstreamPool;
  const {
    timeoutMs,
    streamTimeoutMs,
    deadlineMarginMs,
    retry,
    interceptors,
    pool: _pool,
    ...upstreamOptions
  } = options;
  const upstream = pool.get(normalized, upstreamOptions);
  const transport = createGrpcTransport({
    upstream,
    defaultTimeoutMs: timeoutMs ?? DEFAULT_CALL_TIMEOUT_MS,
    defaultStreamTimeoutMs: streamTimeoutMs ?? DEFAULT_STREAM_TIMEOUT_MS,
    deadlineMarginMs: deadlineMarginMs ?? DEFAULT_DEADLINE_MARGIN_MS,
    retry: { ...DEFAULT_RETRY, ...retry },
    interceptors: [clientObserver(normalized, serverAddressOf(normalized)), ...(interceptors ?? [])],
  });
  return createClientFromTransport(service, transport);
}

/**
 * A Connect client over any transport, with one difference from Connect's
 * own `createClient`: leaving a server stream early (`break`, `return`, a
 * throw in the loop) cancels the call. Connect's client hides the iterator's
 * `return()`, so a stream left early stays open until its deadline.
 */
export function createClientFromTransport<S extends DescService>(service: S, transport: Transport): Client<S> {
  return makeAnyClient(service, (method) => {
    switch (method.methodKind) {
      case "unary":
        return unaryFn(transport, method);
      case "server_streaming":
        return serverStreamingFn(transport, method);
      default:
        return null;
    }
  }) as Client<S>;
}

function unaryFn(transport: Transport, method: DescMethodUnary) {
  return async (input: unknown, options: CallOptions = {}) => {
    const response = await transport.unary(
      method,
      options.signal,
      options.timeoutMs,
      options.headers,
      input as never,
      options.contextValues ?? createContextValues(),
    );
    options.onHeader?.(response.header);
    options.onTrailer?.(response.trailer);
    return response.message;
  };
}

function serverStreamingFn(transport: Transport, method: DescMethodServerStreaming) {
  return (input: unknown, options: CallOptions = {}): AsyncIterable<unknown> => ({
    [Symbol.asyncIterator]() {
      const controller = new AbortController();
      const signal = options.signal ? AbortSignal.any([options.signal, controller.signal]) : controller.signal;
      let finished = false;
      const start = async () => {
        const response = await transport.stream(
          method,
          signal,
          options.timeoutMs,
          options.headers,
          createAsyncIterable([input as never]),
          options.contextValues ?? createContextValues(),
        );
        options.onHeader?.(response.header);
        return { response, it: response.message[Symbol.asyncIterator]() };
      };
      let started: ReturnType<typeof start> | undefined;
      return {
        async next() {
          started ??= start();
          try {
            const { response, it } = await started;
            const result = await it.next();
            if (result.done) {
              finished = true;
              options.onTrailer?.(response.trailer);
            }
            return result;
          } catch (err) {
            finished = true;
            throw err;
          }
        },
        async return() {
          if (!finished) {
            finished = true;
            controller.abort();
            // One more read lets Connect's call runner see the abort and clear
            // its deadline timer, which would otherwise hold the event loop.
            if (started) await started.then(({ it }) => it.next()).catch(() => undefined);
          }
          return { done: true, value: undefined };
        },
      };
    },
  });
}
