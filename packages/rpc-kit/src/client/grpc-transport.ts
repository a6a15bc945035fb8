import { create, type DescMessage, type DescMethod, isMessage, type MessageShape } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  createContextKey,
  createContextValues,
  type Interceptor,
  type StreamResponse,
  type Transport,
  type UnaryRequest,
  type UnaryResponse,
} from "@connectrpc/connect";
import { runStreamingCall } from "@connectrpc/connect/protocol";
import { type ClientReadableStream, status as GrpcStatus, Metadata, type ServiceError } from "@grpc/grpc-js";
import { trace } from "@opentelemetry/api";
import { currentCall } from "../call/call-record.ts";
import { outboundTimeoutMs } from "../call/deadline.ts";
import { markUpstreamError } from "../call/errors.ts";
import { methodCodec } from "../grpc/codec.ts";
import { headersToMetadata, isEmptyHeaders, metadataToHeaders } from "../grpc/grpc-metadata.ts";
import { grpcStatusToConnectError } from "../grpc/grpc-status.ts";
import { recordRetry, recordRetryThrottled } from "../observe/metrics.ts";
import type { Endpoint } from "./endpoint.ts";
import { backoffMs, isRetryable, markFinal, markNeverSent, type RetryOptions, retryPushback } from "./retry-policy.ts";
import type { ConnectWait, Upstream } from "./upstream.ts";

/**
 * A Connect Transport over an upstream's grpc-js endpoint channels:
 * Connect-typed clients and interceptors above, grpc-js connections below.
 * Unary and server-streaming methods.
 *
 * Per call: a deadline (the caller's timeout or the default, capped by the
 * inbound call's deadline minus a margin), the inbound call's cancellation,
 * and attempts: each on an endpoint chosen by the upstream's policy,
 * retried per retry-policy.ts within the upstream's budget, visible as
 * `retry` events on the client span and in rpc_kit_client_retries_total.
 */
export interface GrpcTransportOptions {
  readonly upstream: Upstream;
  readonly defaultTimeoutMs: number;
  /** Deadline of a server-streaming call that sets none. */
  readonly defaultStreamTimeoutMs: number;
  readonly deadlineMarginMs: number;
  readonly retry: Required<RetryOptions>;
  readonly interceptors: readonly Interceptor[];
}

/** Request headers: the caller's, plus the inbound call's forwarded ones it did not set itself. */
function withForwarded(header: ConstructorParameters<typeof Headers>[0], forwarded: Headers | undefined): Headers {
  const headers = new Headers(header);
  forwarded?.forEach((value, key) => {
    if (!headers.has(key)) headers.set(key, value);
  });
  return headers;
}

type AnyFn = Parameters<Interceptor>[0];

/** What the transport decided for a call before the interceptors ran: its timeout, or why it is refused. */
const planKey = createContextKey<{ refused: ConnectError | undefined; timeout: number | undefined }>(
  { refused: undefined, timeout: undefined },
  { description: "rpc-kit call plan" },
);

/** A fresh error with the code and message of why a call's signal was aborted (the reason may be shared). */
function cancelledBecause(reason: unknown): ConnectError {
  const why = ConnectError.from(reason, Code.Canceled);
  return new ConnectError(why.rawMessage, why.code === Code.DeadlineExceeded ? Code.DeadlineExceeded : Code.Canceled);
}

/** The signal of a call nobody can cancel. */
const NEVER_ABORTED = new AbortController().signal;

/**
 * grpc-js's ways of saying the server never took the call: no connection; a
 * stream the server refused (REFUSED_STREAM, e.g. past its concurrency limit
 * or after its GOAWAY), which grpc-js retries once by itself; or one it reset
 * with ENHANCE_YOUR_CALM, which Node's servers (and rpc-kit's bounds) do only
 * to a stream as it opens, before any handler sees it.
 */
function neverSentByGrpcJs(err: ServiceError): boolean {
  return (
    (err.code === GrpcStatus.UNAVAILABLE &&
      /^(No connection established|Stream refused by server)/.test(err.details)) ||
    refusedAsItOpened(err)
  );
}

/** RST_STREAM(ENHANCE_YOUR_CALM), as grpc-js reports it. */
function refusedAsItOpened(err: ServiceError): boolean {
  return err.code === GrpcStatus.RESOURCE_EXHAUSTED && err.details === "Bandwidth exhausted or memory limit exceeded";
}

/**
 * Failures that grpc-js reports under another code but that are Unavailable:
 * the connection under the call went away with an error (a GOAWAY with an
 * error code, a reset session: Internal there, though the call met no server
 * fault), and a stream refused as it opened (ResourceExhausted there, though
 * it is the server asking to be given time, like REFUSED_STREAM). As
 * Unavailable, idempotent calls (and refused ones, never processed) are
 * retried, and others fail with a code that says "try again".
 */
function unavailableInTruth(err: ServiceError): boolean {
  return (
    (err.code === GrpcStatus.INTERNAL && /Session closed with error code/.test(err.details)) || refusedAsItOpened(err)
  );
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

export function createGrpcTransport(options: GrpcTransportOptions): Transport {
  const { upstream, retry } = options;
  const interceptors = [...options.interceptors];

  /** Deadline and signal for one call, or the error that stops it before it is sent. */
  function plan(signal: AbortSignal | undefined, timeoutMs: number | undefined, defaultMs: number) {
    const scope = currentCall();
    let timeout: number | undefined;
    let refused: ConnectError | undefined;
    try {
      timeout = outboundTimeoutMs({
        requestedMs: timeoutMs,
        defaultMs,
        inboundDeadline: scope?.deadline,
        marginMs: options.deadlineMarginMs,
        now: Date.now(),
      });
    } catch (err) {
      refused = err as ConnectError;
    }
    const signals = [signal, scope?.signal].filter((s): s is AbortSignal => s !== undefined);
    const linked = signals.length <= 1 ? signals[0] : AbortSignal.any(signals);
    return { timeout, refused, signal: linked, forwarded: scope?.forwardedHeaders };
  }

  /** The error of a failed attempt, marked with its origin; the endpoint learns of it. */
  function failure(err: ServiceError, method: DescMethod, endpoint: Endpoint, signal: AbortSignal): ConnectError {
    // We cancelled it because our own call ended: say why (DeadlineExceeded when the inbound deadline
    // passed), not grpc-js' Cancelled, which would otherwise win the race against the upstream's answer.
    const cause =
      err.code === GrpcStatus.CANCELLED && signal.aborted
        ? cancelledBecause(signal.reason)
        : unavailableInTruth(err)
          ? grpcStatusToConnectError({ ...err, code: GrpcStatus.UNAVAILABLE })
          : grpcStatusToConnectError(err);
    const connectError = markUpstreamError(cause, {
      target: upstream.target,
      procedure: methodCodec(method).procedure,
    });
    // An Unavailable the endpoint relays from its own upstream ("do not retry") says nothing of the endpoint.
    const unavailable = cause.code === Code.Unavailable && retryPushback(connectError) !== "never";
    endpoint.record(unavailable, Date.now());
    if (unavailable) upstream.requestRefresh();
    return neverSentByGrpcJs(err) ? markNeverSent(connectError) : connectError;
  }

  /**
   * Runs `attempt` until it succeeds or may not be retried: Unavailable on
   * an idempotent method (or a request never sent), attempts left, a token in
   * the budget, and time for the backoff before the deadline.
   */
  async function withRetries<T>(
    method: DescMethod,
    deadline: number,
    signal: AbortSignal,
    attempt: (avoid: Endpoint | undefined) => Promise<{ value: T; endpoint: Endpoint | undefined }>,
  ): Promise<T> {
    upstream.budget.deposit();
    let avoid: Endpoint | undefined;
    for (let n = 1; ; n++) {
      try {
        return (await attempt(avoid)).value;
      } catch (caught) {
        const err = caught as ConnectError & { endpoint?: Endpoint };
        avoid = err.endpoint;
        if (n >= retry.maxAttempts || signal.aborted || !isRetryable(err, method)) throw err;
        const pushback = retryPushback(err);
        const wait = typeof pushback === "number" ? pushback : backoffMs(n, retry);
        if (Date.now() + wait >= deadline) throw err;
        if (!upstream.budget.withdraw()) {
          recordRetryThrottled(upstream.target);
          throw err;
        }
        recordRetry(upstream.target, method, err.code);
        trace.getActiveSpan()?.addEvent("retry", {
          "rpc.retry.attempt": n + 1,
          "rpc.retry.backoff_ms": wait,
          "rpc.retry.previous_status_code": Code[err.code] ?? String(err.code),
        });
        await sleep(wait, signal);
      }
    }
  }

  /** Picks an endpoint; the error of a failed pick carries no endpoint. */
  async function pickFor(
    method: DescMethod,
    deadline: number,
    signal: AbortSignal,
    wait: ConnectWait,
    avoid: Endpoint | undefined,
  ): Promise<Endpoint> {
    let endpoint: Endpoint;
    try {
      endpoint = await upstream.pick(deadline, signal, wait, avoid);
    } catch (err) {
      // Translated like any upstream failure when it escapes a handler: its text names internal addresses.
      const marked = markUpstreamError(err as ConnectError, {
        target: upstream.target,
        procedure: methodCodec(method).procedure,
      });
      // Waited the whole connect timeout already: another attempt would only wait again, or fail at once.
      throw wait.leftMs === 0 ? markFinal(marked) : marked;
    }
    endpoint.calls++;
    endpoint.inFlight++;
    return endpoint;
  }

  /** The innermost step of a unary call: attempts on endpoints, with retries. */
  const unaryNext = async (req: UnaryRequest): Promise<UnaryResponse> => {
    const { refused, timeout } = req.contextValues.get(planKey);
    if (refused !== undefined || timeout === undefined) throw refused;
    const method = req.method;
    const codec = methodCodec(method);
    const deadline = Date.now() + timeout;
    const metadata = isEmptyHeaders(req.header) ? new Metadata() : headersToMetadata(req.header);
    const wait = upstream.connectWait();
    return withRetries(method, deadline, req.signal, async (avoid) => {
      const endpoint = await pickFor(method, deadline, req.signal, wait, avoid);
      const response = await new Promise<UnaryResponse>((resolve, reject) => {
        let responseMetadata: Metadata | undefined;
        let trailers: Metadata | undefined;
        const onAbort = () => call.cancel();
        const call = endpoint.client.makeUnaryRequest(
          codec.path,
          codec.serialize,
          codec.deserialize,
          req.message,
          metadata,
          { deadline },
          (err, value) => {
            endpoint.inFlight--;
            req.signal.removeEventListener("abort", onAbort);
            if (err) {
              reject(Object.assign(failure(err, method, endpoint, req.signal), { endpoint }));
              return;
            }
            endpoint.record(false, Date.now());
            resolve({
              stream: false,
              service: method.parent,
              method,
              message: value as MessageShape<DescMessage>,
              get header() {
                return responseMetadata ? metadataToHeaders(responseMetadata) : new Headers();
              },
              get trailer() {
                return trailers ? metadataToHeaders(trailers) : new Headers();
              },
            });
          },
        );
        call.on("metadata", (m: Metadata) => {
          responseMetadata = m;
        });
        call.on("status", (s: { metadata: Metadata }) => {
          trailers = s.metadata;
        });
        if (req.signal.aborted) call.cancel();
        else req.signal.addEventListener("abort", onAbort, { once: true });
      });
      return { value: response, endpoint };
    });
  };

  /** The interceptors around the unary step, built once: outermost first, as Connect applies them. */
  let interceptedUnary = unaryNext as AnyFn;
  for (let i = interceptors.length - 1; i >= 0; i--)
    interceptedUnary = (interceptors[i] as Interceptor)(interceptedUnary);

  return {
    async unary(method, signal, timeoutMs, header, input, contextValues) {
      const codec = methodCodec(method);
      const { timeout, refused, signal: callSignal, forwarded } = plan(signal, timeoutMs, options.defaultTimeoutMs);
      // Not Connect's runUnaryCall: it adds a deadline timer and an AbortController per call,
      // which grpc-js's own deadline makes redundant (measured on the forwarding hops).
      const values = contextValues ?? createContextValues();
      values.set(planKey, { refused, timeout });
      const req: UnaryRequest = {
        stream: false,
        service: method.parent,
        method,
        requestMethod: "POST",
        url: codec.path,
        signal: callSignal ?? NEVER_ABORTED,
        header: withForwarded(header, forwarded),
        contextValues: values,
        message: isMessage(input, method.input) ? input : create(method.input, input),
      };
      try {
        return (await interceptedUnary(req)) as UnaryResponse<typeof method.input, typeof method.output>;
      } catch (err) {
        throw ConnectError.from(err, Code.Internal);
      }
    },

    async stream(method, signal, timeoutMs, header, input, contextValues) {
      if (method.methodKind !== "server_streaming") {
        throw new ConnectError(
          `${method.parent.typeName}/${method.name}: rpc-kit's gRPC transport supports unary and server-streaming methods only`,
          Code.Unimplemented,
        );
      }
      const codec = methodCodec(method);
      const {
        timeout,
        refused,
        signal: callSignal,
        forwarded,
      } = plan(signal, timeoutMs, options.defaultStreamTimeoutMs);
      return runStreamingCall({
        interceptors,
        ...(callSignal && { signal: callSignal }),
        ...(timeout !== undefined && { timeoutMs: timeout }),
        req: {
          stream: true,
          service: method.parent,
          method,
          requestMethod: "POST",
          url: codec.path,
          header: withForwarded(header, forwarded),
          contextValues: contextValues ?? createContextValues(),
          message: input,
        },
        next: async (req): Promise<StreamResponse<typeof method.input, typeof method.output>> => {
          if (refused !== undefined || timeout === undefined) throw refused;
          const deadline = Date.now() + timeout;
          let request: unknown;
          for await (const m of req.message) {
            request = m;
            break;
          }
          if (request === undefined) request = create(method.input);
          const metadata = isEmptyHeaders(req.header) ? new Metadata() : headersToMetadata(req.header);
          let responseMetadata: Metadata | undefined;
          let trailers: Metadata | undefined;

          /** One attempt: a call on a chosen endpoint, and its first message (or its end). */
          const wait = upstream.connectWait();
          const start = async (avoid: Endpoint | undefined) => {
            const endpoint = await pickFor(method, deadline, req.signal, wait, avoid);
            const call: ClientReadableStream<unknown> = endpoint.client.makeServerStreamRequest(
              codec.path,
              codec.serialize,
              codec.deserialize,
              request,
              metadata,
              { deadline },
            );
            call.on("metadata", (m: Metadata) => {
              responseMetadata = m;
            });
            call.on("status", (s: { metadata: Metadata }) => {
              trailers = s.metadata;
            });
            const onAbort = () => call.cancel();
            req.signal.addEventListener("abort", onAbort, { once: true });
            const it = call[Symbol.asyncIterator]() as AsyncIterator<unknown>;
            const settle = (err: unknown) => {
              endpoint.inFlight--;
              req.signal.removeEventListener("abort", onAbort);
              return err === undefined
                ? undefined
                : Object.assign(failure(err as ServiceError, method, endpoint, req.signal), { endpoint });
            };
            try {
              // Until the first message arrives nothing was committed: a failure here may be retried.
              const first = await it.next();
              if (first.done) settle(undefined);
              return { value: { call, it, first, settle }, endpoint };
            } catch (err) {
              throw settle(err);
            }
          };
          const { call, it, first, settle } = await withRetries(method, deadline, req.signal, start);

          async function* read(): AsyncGenerator<MessageShape<typeof method.output>> {
            if (first.done) return;
            let ended = false;
            try {
              yield first.value as MessageShape<typeof method.output>;
              for (;;) {
                const next = await it.next();
                if (next.done) break;
                yield next.value as MessageShape<typeof method.output>;
              }
              ended = true;
              settle(undefined);
            } catch (err) {
              ended = true;
              throw settle(err);
            } finally {
              if (!ended) {
                settle(undefined);
                call.cancel();
              }
            }
          }
          return {
            stream: true,
            service: method.parent,
            method,
            message: read(),
            get header() {
              return responseMetadata ? metadataToHeaders(responseMetadata) : new Headers();
            },
            get trailer() {
              return trailers ? metadataToHeaders(trailers) : new Headers();
            },
          };
        },
      });
    },
  };
}
