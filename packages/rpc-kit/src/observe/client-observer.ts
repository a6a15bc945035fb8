import { Code, ConnectError, type Interceptor, type StreamResponse } from "@connectrpc/connect";
import { context } from "@opentelemetry/api";
import { clientHopTiming } from "./hop-timing.ts";
import { clientCallMeter } from "./metrics.ts";
import { observeStream } from "./observe-stream.ts";
import { startClientSpan } from "./tracing.ts";

/**
 * Everything a client observes of one outbound call to `target`, in one
 * interceptor with one skeleton for unary calls and streams: the client span
 * (tracing.ts), the grpc_client_* series (metrics.ts) and the hop timings the
 * upstream reported (hop-timing.ts). `server` is the target's address as the
 * span names it.
 */
export function clientObserver(target: string, server: { address: string; port: number }): Interceptor {
  const meter = clientCallMeter(target);
  return (next) => async (req) => {
    const span = startClientSpan(req, server);
    const metered = meter(req);
    const hop = clientHopTiming(req);
    const end = (source: Headers | undefined, err: unknown) => {
      hop?.(source, err);
      metered.end(err);
      span.end(err);
    };
    let res: Awaited<ReturnType<typeof next>>;
    try {
      res = await context.with(span.ctx, () => next(req));
    } catch (err) {
      end(metadataOf(err), err);
      throw err;
    }
    if (!res.stream) {
      end(res.trailer, undefined);
      return res;
    }
    // The transport fills in the stream's trailer when it ends: read it then.
    const streamed = res;
    // A stream left early ends with its signal, not with a last read.
    req.signal.addEventListener("abort", () => span.end(new ConnectError("the stream was cancelled", Code.Canceled)), {
      once: true,
    });
    return {
      ...res,
      message: observeStream(res.message, span.ctx, {
        earlyStop: "the reader stopped early",
        message: () => metered.message(),
        end: (err) => end(err === undefined ? streamed.trailer : metadataOf(err), err),
      }),
    } as StreamResponse;
  };
}

function metadataOf(err: unknown): Headers | undefined {
  return err instanceof ConnectError ? err.metadata : undefined;
}
