import { AsyncLocalStorage } from "node:async_hooks";
import { type ContextValues, createContextKey, type HandlerContext } from "@connectrpc/connect";
import type { JWTPayload } from "jose";
import type { Logger } from "pino";
import { outcomeCode } from "./codes.ts";

/**
 * The record of one inbound call: everything the call needs downstream, in
 * one object that every layer reads and writes in place. The engines make it
 * (on rpc-kit's own gRPC paths it is the handler context itself,
 * call-context.ts); interceptors reach it through the request's
 * `contextValues`, handlers through their context, and the handler's outbound
 * calls and queries through AsyncLocalStorage, which holds the record itself:
 * nothing is copied from one place to another.
 */

/** One hop of a call. */
export interface HopTiming {
  /** The serving process's name (`users`); for an upstream that gave no reply, its service's name as its caller knows it. */
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

/** The caller as its verified token says (security/auth.ts verifies it). */
export interface Identity {
  /** The token's `sub`. */
  readonly subject: string;
  /** From `scope` (space-separated) or `scp` (a list). */
  readonly scopes: readonly string[];
  /** Every claim of the token. */
  readonly claims: Readonly<JWTPayload>;
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

export class CallRecord {
  /** Absolute deadline in epoch ms, or undefined when the caller set none. */
  deadline: number | undefined;
  /** Aborted when the inbound call ends, is cancelled or times out; set once the handler runs. */
  signal: AbortSignal | undefined;
  /** Headers of the inbound call that outbound calls carry on (auth, fault injection, the ask for hop timings). */
  forwardedHeaders: Headers | undefined;
  /** Where outbound calls put the hop timings their upstreams return (observe/hop-timing.ts); undefined when off. */
  hopTimings: HopTiming[] | undefined;
  /** What the call's queries took (postgres/database.ts adds to it); made by the first query. */
  database: DatabaseTime | undefined;
  /** The caller's verified identity, when a token came with the call. */
  identity: Identity | undefined;
  /** The service's logger, set by the server that logs the call (handlers take `requestLogger(ctx)`). */
  logger: Logger | undefined;
  /** Remote address of the connection the call arrived on (the edge's rate limit keys on it). */
  peerAddress: string | undefined;

  constructor(deadline?: number, signal?: AbortSignal) {
    this.deadline = deadline;
    this.signal = signal;
  }

  /** Makes the call's outbound calls carry `headers` on, besides what is forwarded already. */
  forward(headers: Readonly<Record<string, string>>): void {
    this.forwardedHeaders ??= new Headers();
    for (const [name, value] of Object.entries(headers)) this.forwardedHeaders.set(name, value);
  }

  /** The call's database time, made on first use. */
  databaseTime(): DatabaseTime {
    this.database ??= new DatabaseTime(this.hopTimings);
    return this.database;
  }
}

/** Where an interceptor finds the record of the call it sees (the request carries only contextValues). */
export const callRecordKey = createContextKey<CallRecord | undefined>(undefined, {
  description: "rpc-kit call record",
});

/** The record of the call these values belong to, made when the engine that served it made none. */
export function callRecordOf(values: ContextValues): CallRecord {
  let record = values.get(callRecordKey);
  if (record === undefined) {
    record = new CallRecord();
    values.set(callRecordKey, record);
  }
  return record;
}

/**
 * The record of the call a handler serves, with its deadline and signal: set
 * by rpc-kit's own gRPC paths when the call arrives, taken from the handler
 * context here when connect-node (or an in-memory transport) made it.
 */
export function handlerCallRecord(ctx: HandlerContext): CallRecord {
  const record = callRecordOf(ctx.values);
  if (record.signal === undefined) {
    const remaining = ctx.timeoutMs();
    record.deadline = remaining === undefined ? undefined : Date.now() + remaining;
    record.signal = ctx.signal;
  }
  return record;
}

const storage = new AsyncLocalStorage<CallRecord>();

/** The record of the inbound call being served, if any. */
export function currentCall(): CallRecord | undefined {
  return storage.getStore();
}

/** Runs `fn` with `record` as the call being served. */
export function runInCall<R>(record: CallRecord, fn: () => R): R {
  return storage.run(record, fn);
}

/**
 * Wraps an async iterator so that each `next()` runs inside `record`: server
 * streaming handlers are async generators that the engine drives, and their
 * body must see the call that started them.
 */
export function iterateInCall<T>(record: CallRecord, iterable: AsyncIterable<T>): AsyncIterable<T> {
  return {
    [Symbol.asyncIterator]() {
      const it = storage.run(record, () => iterable[Symbol.asyncIterator]());
      return {
        next: () => storage.run(record, () => it.next()),
        return: async (value?: unknown) => {
          if (it.return)
            return storage.run(record, () => (it.return as (v?: unknown) => Promise<IteratorResult<T>>)(value));
          return { done: true, value: undefined };
        },
      };
    },
  };
}
