import type { DescMethod, DescService } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ContextValues,
  createContextKey,
  createContextValues,
  type HandlerContext,
} from "@connectrpc/connect";

/**
 * The HandlerContext of a call served by rpc-kit's own gRPC paths (the grpc-js
 * engine and the edge's gRPC fast path): its deadline, its cancellation, and
 * headers that are converted only when someone reads them.
 */

/**
 * The reason a handler's signal carries once its call is answered. Shared, so
 * that ending a call does not build a DOMException (and its stack) each time.
 */
export const CALL_ENDED = new ConnectError("the call has ended", Code.Canceled);

/** Where interceptors and handlers find the context of the call (its request carries only contextValues). */
export const callContextKey = createContextKey<HandlerContext | undefined>(undefined, {
  description: "rpc-kit handler context",
});

/** Where the engines put the remote address of the connection a call arrived on (the edge's rate limit keys on it). */
export const peerAddressKey = createContextKey<string | undefined>(undefined, {
  description: "rpc-kit remote address of the call's connection",
});

export interface CallSource {
  readonly service: DescService;
  readonly method: DescMethod;
  readonly protocolName: string;
  /** Absolute deadline in epoch ms, or undefined. */
  readonly deadline: number | undefined;
  /** The request headers, built on first read. */
  readonly requestHeaders: () => Headers;
  /** Detaches engine listeners when the call ends. */
  readonly detach?: () => void;
}

export class CallContext implements HandlerContext {
  readonly requestMethod = "POST";
  readonly values: ContextValues = createContextValues();
  readonly signal: AbortSignal;
  readonly service: DescService;
  readonly method: DescMethod;
  readonly protocolName: string;
  readonly url: string;
  readonly #controller = new AbortController();
  readonly #deadline: number | undefined;
  readonly #source: CallSource;
  readonly #shutdownSignal: AbortSignal;
  #timer: NodeJS.Timeout | undefined;
  #requestHeaders: Headers | undefined;
  #responseHeaders: Headers | undefined;
  #responseTrailers: Headers | undefined;
  readonly #onShutdown = () => this.abort(new ConnectError("server is shutting down", Code.Unavailable));

  constructor(source: CallSource, shutdownSignal: AbortSignal) {
    this.#source = source;
    this.service = source.service;
    this.method = source.method;
    this.protocolName = source.protocolName;
    this.url = `/${source.service.typeName}/${source.method.name}`;
    this.signal = this.#controller.signal;
    this.#deadline = source.deadline;
    this.#shutdownSignal = shutdownSignal;
    this.values.set(callContextKey, this);
    if (source.deadline !== undefined) {
      this.#timer = setTimeout(
        () => this.abort(new ConnectError("the operation timed out", Code.DeadlineExceeded)),
        Math.max(0, source.deadline - Date.now()),
      );
    }
    shutdownSignal.addEventListener("abort", this.#onShutdown, { once: true });
  }

  timeoutMs = (): number | undefined => (this.#deadline === undefined ? undefined : this.#deadline - Date.now());

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

  /** The caller went away. A no-op once the call has ended. */
  cancel(): void {
    if (!this.signal.aborted) this.abort(new ConnectError("the caller cancelled the call", Code.Canceled));
  }

  /** Ends the call's signal: on completion (no reason), cancellation, deadline or forced shutdown. */
  abort(reason?: unknown): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#shutdownSignal.removeEventListener("abort", this.#onShutdown);
    this.#source.detach?.();
    if (!this.#controller.signal.aborted) this.#controller.abort(reason ?? CALL_ENDED);
  }
}
