import type { Interceptor, StreamResponse } from "@connectrpc/connect";
import { toCallerError } from "./errors.ts";

/**
 * Server interceptor applying the error policy of `errors.ts` to everything
 * a handler throws, for unary calls and for streams mid-way. It runs inside
 * the logging interceptor, which sees both the caller's error and its cause.
 */
export const errorBoundary: Interceptor = (next) => async (req) => {
  let res: Awaited<ReturnType<typeof next>>;
  try {
    res = await next(req);
  } catch (err) {
    throw toCallerError(err, req.signal);
  }
  if (!res.stream) return res;
  return { ...res, message: mapStreamErrors(res.message, req.signal) } as StreamResponse;
};

async function* mapStreamErrors<T>(messages: AsyncIterable<T>, signal: AbortSignal): AsyncGenerator<T> {
  try {
    yield* messages;
  } catch (err) {
    throw toCallerError(err, signal);
  }
}
