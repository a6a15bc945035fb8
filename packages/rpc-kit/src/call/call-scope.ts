import { AsyncLocalStorage } from "node:async_hooks";
import { type ContextValues, createContextKey } from "@connectrpc/connect";
import { outcomeCode } from "./codes.ts";

/** One hop of a call. */
export interface HopTiming {
  /** The serving process's name (`users`), or the upstream's address when it gave no reply. */
  readonly service: string;
  /** `demo.users.v1.UserService/GetUser` */
  readonly method: string;
  /** Time spent in that hop (everything below it included), in ms. */
  readonly durationMs: number;
  /** The code the hop answered with, as Connect writes it: `ok`, `not_found`, … */
  readonly code: string;
  /** True when the caller measured it, because no answer carrying a timing came back. */
  readonly byCaller: boolean;
}

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
  /** What the call's database queries took (postgres/database.ts adds to it); undefined outside a server. */
  readonly database: DatabaseTime | undefined;
}

/**
 * The time an inbound call spent in its database queries: written in the
 * call's log line (`db_ms`, `db_queries`) and, when the call asked for hop
 * timings, one hop `postgres` beside its upstreams (timed by the caller: the
 * database reports none).
 */
export class DatabaseTime {
  ms = 0;
  queries = 0;
  readonly #hops: HopTiming[] | undefined;
  #hop: { service: string; method: string; durationMs: number; code: string; byCaller: boolean } | undefined;

  constructor(hops: HopTiming[] | undefined) {
    this.#hops = hops;
  }

  add(statement: { readonly operation: string; readonly collection: string }, ms: number, err: unknown): void {
    this.ms += ms;
    this.queries++;
    if (this.#hops === undefined) return;
    const method = `${statement.operation} ${statement.collection}`.trim();
    if (this.#hop === undefined) {
      this.#hop = { service: "postgres", method, durationMs: 0, code: "ok", byCaller: true };
      this.#hops.push(this.#hop);
    } else if (!this.#hop.method.split(", ").includes(method)) {
      this.#hop.method = `${this.#hop.method}, ${method}`;
    }
    this.#hop.durationMs += ms;
    if (err !== undefined) this.#hop.code = outcomeCode(err);
  }
}

/** Where the server puts the call's DatabaseTime (rpc-log.ts makes it, and reads it when the call ends). */
export const databaseTimeKey = createContextKey<DatabaseTime | undefined>(undefined, {
  description: "rpc-kit database time of a call",
});

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
