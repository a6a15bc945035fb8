import { Code, ConnectError } from "@connectrpc/connect";

/**
 * Passes a stream's messages through and calls `end` exactly once when the
 * stream ends: after its last message (no error), on its error, or with
 * Canceled (`earlyStop` as the message) when its reader stops early. A value
 * `end` returns for an error is thrown in the error's place. `onMessage`
 * sees each message as it passes. The interceptors that watch streams
 * (metrics, logs, hop timings) share it.
 */
export async function* onStreamEnd<T>(
  messages: AsyncIterable<T>,
  end: (err: unknown, messages: number) => unknown,
  { onMessage, earlyStop = "the reader stopped early" }: { onMessage?: () => void; earlyStop?: string } = {},
): AsyncGenerator<T> {
  let count = 0;
  let ended = false;
  try {
    for await (const m of messages) {
      count++;
      onMessage?.();
      yield m;
    }
    ended = true;
    end(undefined, count);
  } catch (err) {
    ended = true;
    throw end(err, count) ?? err;
  } finally {
    if (!ended) end(new ConnectError(earlyStop, Code.Canceled), count);
  }
}
