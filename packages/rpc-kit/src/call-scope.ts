import { AsyncLocalStorage } from "node:async_hooks";
import { type ContextValues, createContextKey } from "@connectrpc/connect";
import type { HopTiming } from "./server-timing.ts";

/**
 * What an outbound call needs to know about the inbound call it is made for:
 * its deadline and its cancellation. The servers set it around every handler;
 * clients read it, so that a handler cannot forget to pass them on.
 */
export interface CallScope {
  /** Absolute deadline in epoch ms, or undefined when the caller set none. */
  readonly deadline: number | undefined;
  /** Aborted when the inbound call ends, is cancelled or times out. */
  readonly signal: AbortSignal;
  /** Headers of the inbound call that outbound calls carry on (see fault-injection.ts). */
  readonly forwardedHeaders: Headers | undefined;
  /** Where outbound calls put the hop timings their upstreams return (see hop-timing.ts); undefined when off. */
  readonly hopTimings: HopTiming[] | undefined;
}

/** Where a server interceptor puts the headers that the handler's outbound calls must carry on. */
export const forwardedHeadersKey = createContextKey<Headers | undefined>(undefined, {
  description: "rpc-kit headers forwarded to outbound calls",
});

/**
 * Makes the handler's outbound calls carry `headers` on, added to what other
 * interceptors forward already (the caller's verified token, fault injection,
 * the ask for hop timings).
 */
export function forwardHeaders(values: ContextValues, headers: Readonly<Record<string, string>>): void {
  const forwarded = new Headers(values.get(forwardedHeadersKey));
  for (const [name, value] of Object.entries(headers)) forwarded.set(name, value);
  values.set(forwardedHeadersKey, forwarded);
}

/** Where the server-timing interceptor puts the list that collects the hop timings of a call's outbound calls. */
export const hopTimingsKey = createContextKey<HopTiming[] | undefined>(undefined, {
  description: "rpc-kit hop timings of outbound calls",
});

const storage = new AsyncLocalStorage<CallScope>();

/** The scope of the inbound call being served, if any. */
export function currentCallScope(): CallScope | undefined {
  return storage.getStore();
}

/** Runs `fn` with `scope` as the current call scope. */
export function runInCallScope<R>(scope: CallScope, fn: () => R): R {
  return storage.run(scope, fn);
}

/**
 * Wraps an async iterator so that each `next()` runs inside `scope`: server
 * streaming handlers are async generators that the engine drives, and their
 * body must see the scope of the call that started them.
 */
export function iterateInCallScope<T>(scope: CallScope, iterable: AsyncIterable<T>): AsyncIterable<T> {
  return {
    [Symbol.asyncIterator]() {
      const it = storage.run(scope, () => iterable[Symbol.asyncIterator]());
      return {
        next: () => storage.run(scope, () => it.next()),
        return: async (value?: unknown) => {
          if (it.return)
            return storage.run(scope, () => (it.return as (v?: unknown) => Promise<IteratorResult<T>>)(value));
          return { done: true, value: undefined };
        },
      };
    },
  };
}
