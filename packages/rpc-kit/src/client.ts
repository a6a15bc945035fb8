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
import { type ChannelPool, defaultChannelPool } from "./channel-pool.ts";
import { parseTarget } from "./config.ts";
import { DEFAULT_CALL_TIMEOUT_MS, DEFAULT_DEADLINE_MARGIN_MS } from "./deadline.ts";
import { createGrpcTransport } from "./grpc-transport.ts";
import { clientMetricsInterceptor } from "./metrics.ts";
import { clientTracingInterceptor } from "./tracing.ts";

/** Options of {@link createClient}; every one has a default. */
export interface ClientOptions {
  /** Timeout of a call that sets none, in ms. Default {@link DEFAULT_CALL_TIMEOUT_MS} (5 s). */
  readonly timeoutMs?: number;
  /**
   * Kept back from an inbound call's remaining time when capping an outbound
   * call's deadline. Default {@link DEFAULT_DEADLINE_MARGIN_MS} (10 ms).
   */
  readonly deadlineMarginMs?: number;
  /** Connect interceptors, outermost first, run inside the kit's tracing and metrics. Default none. */
  readonly interceptors?: readonly Interceptor[];
  /** Where the channel comes from. Default the process-wide pool that `serve()` closes at shutdown. */
  readonly pool?: ChannelPool;
}

/**
 * A Connect client for `service` at `target` (`host:port` or
 * `dns:///host:port`), over the pooled grpc-js channel for that target.
 * Create it once at start and share it: every client of a target shares one
 * channel, so creating more does not open more connections, but it is never
 * needed per call.
 */
export function createClient<S extends DescService>(
  service: S,
  target: string,
  options: ClientOptions = {},
): Client<S> {
  const normalized = parseTarget(target);
  const pool = options.pool ?? defaultChannelPool;
  const transport = createGrpcTransport({
    target: normalized,
    channel: pool.get(normalized),
    defaultTimeoutMs: options.timeoutMs ?? DEFAULT_CALL_TIMEOUT_MS,
    deadlineMarginMs: options.deadlineMarginMs ?? DEFAULT_DEADLINE_MARGIN_MS,
    interceptors: [
      clientTracingInterceptor(normalized),
      clientMetricsInterceptor(normalized),
      ...(options.interceptors ?? []),
    ],
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
