import type { ConnectError, Interceptor, StreamResponse } from "@connectrpc/connect";
import { context } from "@opentelemetry/api";
import { toCallerError } from "../call/errors.ts";
import { askedServerTiming } from "./hop-timing.ts";
import type { Logger } from "./logger.ts";
import { serverCallMeter } from "./metrics.ts";
import { observeStream } from "./observe-stream.ts";
import { startCallLog } from "./rpc-log.ts";
import { SERVER_TIMING } from "./server-timing.ts";
import { startServerSpan } from "./tracing.ts";

/**
 * Everything a server observes of one call, in one interceptor with one
 * skeleton for unary calls and streams: the span (tracing.ts), the
 * `server-timing` answer (hop-timing.ts), the grpc_server_* series
 * (metrics.ts), the log line (rpc-log.ts) and the error boundary (errors.ts:
 * what a handler throws becomes the caller's error). One closure per call
 * and, for a stream, one wrapper around its messages, where five stacked
 * interceptors each made their own.
 *
 * The caller's error is what the span, the series and the log line see (the
 * log line with its cause); the log line is written with the span current,
 * so it carries the call's trace id.
 */
export function serverObserver(options: {
  readonly engine: "grpc" | "connect";
  readonly serviceName: string;
  /** Answer calls that ask with a `server-timing` trailer (SERVER_TIMING). */
  readonly serverTiming: boolean;
  readonly logger: Logger;
}): Interceptor {
  const meter = serverCallMeter();
  return (next) => async (req) => {
    const span = startServerSpan(req, options.engine);
    const timing = options.serverTiming ? askedServerTiming(req, options.serviceName, span.span) : undefined;
    const metered = meter(req);
    const log = startCallLog(req, options.logger);
    const end = (err: unknown, messages?: number) => {
      context.with(span.ctx, () => log(err, messages));
      metered.end(err);
      span.end(err);
    };
    /** The caller's error for `err`, with this hop's timing when asked. */
    const fail = (err: unknown, messages?: number): ConnectError => {
      const callerError = toCallerError(err, req.signal);
      end(callerError, messages);
      if (timing !== undefined) callerError.metadata.set(SERVER_TIMING, timing.value(callerError));
      return callerError;
    };
    let res: Awaited<ReturnType<typeof next>>;
    try {
      res = await context.with(span.ctx, () => next(req));
    } catch (err) {
      throw fail(err);
    }
    if (!res.stream) {
      end(undefined);
      if (timing !== undefined) res.trailer.set(SERVER_TIMING, timing.value(undefined));
      return res;
    }
    const trailer = res.trailer;
    let count = 0;
    return {
      ...res,
      message: observeStream(res.message, span.ctx, {
        earlyStop: "the caller cancelled the stream",
        message: () => {
          count++;
          metered.message();
        },
        end: (err) => {
          if (err !== undefined) return fail(err, count);
          end(undefined, count);
          if (timing !== undefined) trailer.set(SERVER_TIMING, timing.value(undefined));
          return undefined;
        },
      }),
    } as StreamResponse;
  };
}
