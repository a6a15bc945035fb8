import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, type ContextValues, createContextValues, type HandlerContext } from "@connectrpc/connect";
import { CallRecord, callRecordKey } from "./call-record.ts";

/**
 * The handler context of a call served by rpc-kit's own gRPC paths (the
 * grpc-js engine and the edge's gRPC fast path). It is the call's record
 * (call-record.ts) too: one object per call carries the deadline, the signal,
 * what is forwarded and what is measured, and headers are converted only
 * when someone reads them.
 */

/**
 * The reason a handler's signal carries once its call is answered. Shared, so
 * that ending a call does not build a DOMException (and its stack) each time.
 */
export const CALL_ENDED = new ConnectError("the call has ended", Code.Canceled);

const SHUTTING_DOWN = new ConnectError("server is shutting down", Code.Unavailable);

export interface CallSource {
  readonly service: DescService;
  readonly method: DescMethod;
  readonly protocolName: string;
  /** Absolute deadline in epoch ms, or undefined. */
  readonly deadline: number | undefined;
  /**
   * True when the engine ends the call at its deadline itself and then calls
   * `expire()` (grpc-js arms a timer for every call with a deadline): no
   * second timer is armed here.
   */
  readonly engineTimesOut: boolean;
  /** The request headers, built on first read. */
  readonly requestHeaders: () => Headers;
  /** Detaches engine listeners when the call ends. */
  readonly detach?: () => void;
}

/**
 * The calls one engine is serving, so that a forced shutdown ends each of
 * them with Unavailable: one listener on the shutdown signal per engine
 * rather than one per call.
 */
export class LiveCalls {
  readonly #calls = new Set<CallContext>();
  readonly #shutdownSignal: AbortSignal;

  constructor(shutdownSignal: AbortSignal) {
    this.#shutdownSignal = shutdownSignal;
    shutdownSignal.addEventListener(
      "abort",
      () => {
        for (const call of this.#calls) call.abort(SHUTTING_DOWN);
      },
      { once: true },
    );
  }

  add(call: CallContext): void {
    if (this.#shutdownSignal.aborted) call.abort(SHUTTING_DOWN);
    else this.#calls.add(call);
  }

  delete(call: CallContext): void {
    this.#calls.delete(call);
  }
}

export class CallContext extends CallRecord implements HandlerContext {
  readonly requestMethod = "POST";
  readonly values: ContextValues = createContextValues();
  declare signal: AbortSignal;
  readonly service: DescService;
  readonly method: DescMethod;
  readonly protocolName: string;
  readonly #controller: AbortController;
  readonly #source: CallSource;
  readonly #live: LiveCalls;
  #timer: NodeJS.Timeout | undefined;
  #requestHeaders: Headers | undefined;
  #responseHeaders: Headers | undefined;
  #responseTrailers: Headers | undefined;

  constructor(source: CallSource, live: LiveCalls) {
    const controller = new AbortController();
    super(source.deadline, controller.signal);
    this.#controller = controller;
    this.#source = source;
    this.#live = live;
    this.service = source.service;
    this.method = source.method;
    this.protocolName = source.protocolName;
    this.values.set(callRecordKey, this);
    if (source.deadline !== undefined && !source.engineTimesOut) {
      this.#timer = setTimeout(() => this.expire(), Math.max(0, source.deadline - Date.now()));
    }
    live.add(this);
  }

  get url(): string {
    return `/${this.service.typeName}/${this.method.name}`;
  }

  timeoutMs = (): number | undefined => (this.deadline === undefined ? undefined : this.deadline - Date.now());

  get requestHeader(): Headers {
    this.#requestHeaders ??= this.#source.requestHeaders();
    return this.#requestHeaders;
  }

  get responseHeader(): Headers {
    this.#responseHeaders ??= new Headers();
    return this.#responseHeaders;
  }

  get responseTrailer(): Headers {
    this.#responseTrailers ??= new Headers();
    return this.#responseTrailers;
  }

  /** Response headers the handler set, if any (without creating them). */
  get setResponseHeaders(): Headers | undefined {
    return this.#responseHeaders;
  }

  /** Trailers the handler set, if any (without creating them). */
  get setResponseTrailers(): Headers | undefined {
    return this.#responseTrailers;
  }

  /**
   * The caller went away (or the engine says the call was cancelled). At the
   * deadline that is the deadline: a client resets its stream when its own
   * timer fires, and grpc-js's server timer reports as a cancel; the clocks
   * may disagree by a millisecond. A no-op once the call has ended.
   */
  cancel(): void {
    if (this.signal.aborted) return;
    if (this.deadline !== undefined && Date.now() >= this.deadline - 1) this.expire();
    else this.abort(new ConnectError("the caller cancelled the call", Code.Canceled));
  }

  /** The deadline passed. A no-op once the call has ended. */
  expire(): void {
    if (!this.signal.aborted) this.abort(new ConnectError("the operation timed out", Code.DeadlineExceeded));
  }

  /** Ends the call's signal: on completion (no reason), cancellation, deadline or forced shutdown. */
  abort(reason?: unknown): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#live.delete(this);
    this.#source.detach?.();
    if (!this.#controller.signal.aborted) this.#controller.abort(reason ?? CALL_ENDED);
  }
}
