import { Code, ConnectError } from "@connectrpc/connect";
import { type Context, context } from "@opentelemetry/api";

/**
 * The one stream skeleton of the observers (server-observer.ts,
 * client-observer.ts): passes a stream's messages through, each read with
 * the call's span (`ctx`) current; `message` sees each one; `end` is called
 * once: after the last message (no error), on an error (a value it returns
 * is thrown in the error's place), or with Canceled (`earlyStop` as its
 * message) when the reader stops early, before the inner stream is closed
 * within `ctx` too.
 */
export async function* observeStream<T>(
  messages: AsyncIterable<T>,
  ctx: Context,
  on: { message(): void; end(err: unknown): unknown; readonly earlyStop: string },
): AsyncGenerator<T> {
  const it = messages[Symbol.asyncIterator]();
  let done = false;
  try {
    for (;;) {
      const next = await context.with(ctx, () => it.next());
      if (next.done) break;
      on.message();
      yield next.value;
    }
    done = true;
    on.end(undefined);
  } catch (err) {
    done = true;
    throw on.end(err) ?? err;
  } finally {
    if (!done) {
      on.end(new ConnectError(on.earlyStop, Code.Canceled));
      await context.with(ctx, () => it.return?.());
    }
  }
}
