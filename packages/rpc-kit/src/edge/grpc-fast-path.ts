import * as http2 from "node:http2";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { CallContext, LiveCalls } from "../call/call-context.ts";
import { LazyHeaders } from "../grpc/grpc-metadata.ts";
import { connectErrorToGrpcStatus, encodeGrpcMessage } from "../grpc/grpc-status.ts";
import type { ByteLease } from "../limits/byte-budget.ts";
import type { LimitReporter } from "../limits/limit-reporter.ts";
import { readStreamBody } from "../limits/stream-body.ts";
import { grpcCodeLabel } from "../observe/metrics.ts";
import { answerGrpcCall, type GrpcReply, type GrpcRoute, grpcRoutes } from "../server/grpc-answer.ts";
import type { ServiceRegistration } from "../server/service-registration.ts";
import type { RefusedRequest } from "./edge-http.ts";

/**
 * The edge's gRPC path: plain gRPC calls to unary and server-streaming
 * methods, served straight on Node's http2 stream, with the same interceptors
 * and handlers as every other path.
 *
 * connect-node serves gRPC at 4–7× grpc-js's CPU per call (docs/pitfalls.md), and at
 * the gateway that cost is paid on every request that arrives over gRPC. This
 * path does what grpc-js's server does (envelope, status trailers, deadline,
 * cancellation) and nothing else. Everything it does not accept (Connect,
 * gRPC-Web, compressed requests, client streams) goes to connect-node.
 */

export interface GrpcFastPathOptions {
  readonly interceptors: readonly Interceptor[];
  readonly shutdownSignal: AbortSignal;
  /** Largest request message accepted, in bytes. */
  readonly readMaxBytes: number;
  /** Time the request may take to arrive (REQUEST_TIMEOUT_MS). */
  readonly requestTimeoutMs: number;
  /** Told of each refusal by a bound (limits/). */
  readonly report: LimitReporter;
  /** Told of each call refused before its interceptors ran (edge-http.ts). Default: nobody. */
  readonly onRefusedBeforeRpc?: (refusal: RefusedRequest) => void;
}

export interface GrpcFastPath {
  /** True when this path serves a stream with these headers. */
  accepts(headers: http2.IncomingHttpHeaders): boolean;
  /** Serves the call; its request bytes count against `lease`. */
  handle(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, lease: ByteLease): void;
}

const TIMEOUT_UNITS_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1_000, m: 1, u: 0.001, n: 0.000001 };

/**
 * The longest delay a Node timer holds: 2^31-1 ms (24.8 days). A longer one fires after 1 ms,
 * so a valid timeout of, say, `99999999H` would end the call as DeadlineExceeded at once.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * `grpc-timeout` (e.g. `250m`) as an absolute deadline; undefined when absent; throws when malformed.
 * Timeouts beyond {@link MAX_TIMER_MS} are served as that long.
 */
export function parseGrpcTimeout(value: string | undefined, now: number): number | undefined {
  if (value === undefined) return undefined;
  const m = /^(\d{1,8})([HMSmun])$/.exec(value);
  if (m === null) throw new ConnectError(`invalid grpc-timeout "${value}"`, Code.InvalidArgument);
  return now + Math.min(Number(m[1]) * (TIMEOUT_UNITS_MS[m[2] as string] ?? 0), MAX_TIMER_MS);
}

/**
 * Rewrites a `connect-timeout-ms` or `grpc-timeout` request header beyond {@link MAX_TIMER_MS}
 * to that bound, in place, for connect-node, which arms its deadline with a plain setTimeout.
 * Malformed values are left for connect-node to refuse.
 */
export function clampTimeoutHeaders(headers: Record<string, string | string[] | undefined>): void {
  const connect = headers["connect-timeout-ms"];
  if (typeof connect === "string" && /^\d{1,10}$/.test(connect) && Number(connect) > MAX_TIMER_MS) {
    headers["connect-timeout-ms"] = String(MAX_TIMER_MS);
  }
  const grpc = headers["grpc-timeout"];
  const m = typeof grpc === "string" ? /^(\d{1,8})([HMSmun])$/.exec(grpc) : null;
  if (m !== null && Number(m[1]) * (TIMEOUT_UNITS_MS[m[2] as string] ?? 0) > MAX_TIMER_MS) {
    headers["grpc-timeout"] = `${Math.floor(MAX_TIMER_MS / 1000)}S`;
  }
}

function isGrpcContentType(value: string | undefined): boolean {
  if (value === undefined || !value.startsWith("application/grpc")) return false;
  const rest = value.slice("application/grpc".length);
  return rest === "" || rest === "+proto" || rest.startsWith(";") || rest.startsWith("+proto;");
}

function envelope(bytes: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(5 + bytes.byteLength);
  out[0] = 0;
  out.writeUInt32BE(bytes.byteLength, 1);
  out.set(bytes, 5);
  return out;
}

/** Headers of the handler as an http2 header object (`-bin` values are base64 already). */
function toHttp2(headers: Headers | undefined, into: http2.OutgoingHttpHeaders): http2.OutgoingHttpHeaders {
  headers?.forEach((value, key) => {
    into[key] = value;
  });
  return into;
}

function requestHeaders(headers: http2.IncomingHttpHeaders): Headers {
  return new LazyHeaders(
    (key) => {
      const value = headers[key];
      return value === undefined ? null : Array.isArray(value) ? value.join(", ") : String(value);
    },
    () => {
      const out = new Headers();
      for (const [key, value] of Object.entries(headers)) {
        if (key.startsWith(":") || value === undefined) continue;
        for (const v of Array.isArray(value) ? value : [value]) out.append(key, String(v));
      }
      return out;
    },
  );
}

export function createGrpcFastPath(
  registrations: readonly ServiceRegistration[],
  options: GrpcFastPathOptions,
): GrpcFastPath {
  const routes = new Map<string, GrpcRoute>();
  for (const route of grpcRoutes(registrations, options.interceptors)) routes.set(route.path, route);
  const live = new LiveCalls(options.shutdownSignal);

  return {
    accepts(headers) {
      const encoding = headers["grpc-encoding"];
      return (
        headers[":method"] === "POST" &&
        isGrpcContentType(headers["content-type"]) &&
        (encoding === undefined || encoding === "identity") &&
        routes.has(headers[":path"] ?? "")
      );
    },

    handle(stream, headers, lease) {
      // A stream emits 'error' when its connection dies of a protocol error (Node destroys the
      // session and every open stream with it) or is reset with an error code; 'close' follows
      // and cancels the call. Unlistened, that 'error' is an uncaught exception: the process dies.
      stream.on("error", () => {});
      const route = routes.get(headers[":path"] ?? "") as GrpcRoute;
      const startedAt = performance.now();
      let invoked = false;
      const reply = new Http2Reply(stream, route, (code) => {
        if (invoked) return;
        options.onRefusedBeforeRpc?.({
          service: route.method.parent.typeName,
          method: route.method.name,
          status: grpcCodeLabel(code),
          contentType: headers["content-type"],
          durationMs: performance.now() - startedAt,
          client: stream.session?.socket?.remoteAddress,
        });
      });

      let call: CallContext;
      try {
        call = new CallContext(
          {
            service: route.method.parent,
            method: route.method,
            protocolName: "grpc",
            deadline: parseGrpcTimeout(headers["grpc-timeout"] as string | undefined, Date.now()),
            engineTimesOut: false,
            requestHeaders: () => requestHeaders(headers),
            detach: () => stream.off("close", onClose),
          },
          live,
        );
      } catch (err) {
        reply.fail(ConnectError.from(err, Code.Internal), undefined);
        return;
      }
      call.peerAddress = stream.session?.socket?.remoteAddress;
      // Closed before we finished: the caller cancelled, or the connection went away.
      const onClose = () => call.cancel();
      stream.once("close", onClose);

      const messages: Buffer[] = [];
      const run = () => {
        if (reply.headersSent) return;
        let message: unknown;
        try {
          message = decodeRequest(route, messages);
        } catch (err) {
          reply.fail(err as ConnectError, undefined);
          call.abort();
          return;
        }
        invoked = true;
        void answerGrpcCall(route, call, message, reply);
      };
      readStreamBody(
        stream,
        {
          lease,
          maxMessageBytes: options.readMaxBytes,
          encoding: undefined,
          requestTimeoutMs: options.requestTimeoutMs,
          report: options.report,
        },
        {
          message: (envelope) => messages.push(envelope),
          end: (rest) => {
            if (rest) messages.push(rest);
            // Started once Node has handled the rest of what it read with this request: a stream the client
            // reset in the same read (Rapid Reset sends HEADERS, DATA and RST_STREAM together) is then
            // closed already and costs no handler, no upstream call, no cancellation to relay.
            setImmediate(() => {
              if (!call.signal.aborted) run();
            });
          },
          fail: (err) => {
            reply.fail(ConnectError.from(err, Code.Internal), undefined);
            call.abort();
            // The request was not read to its end: RST_STREAM(NO_ERROR) once the answer is out tells the client to stop sending.
            if (!stream.closed) stream.close(http2.constants.NGHTTP2_NO_ERROR);
          },
        },
      );
    },
  };
}

/** The one request message of a unary or server-streaming call, decoded; throws the status to answer. */
function decodeRequest(route: GrpcRoute, messages: readonly Buffer[]): unknown {
  if (messages.length > 1) {
    throw new ConnectError("protocol error: expected exactly one request message", Code.InvalidArgument);
  }
  const body = messages[0];
  if (body === undefined || body.length < 5) {
    throw new ConnectError("protocol error: missing request message", Code.InvalidArgument);
  }
  if (((body[0] as number) & 1) === 1) {
    throw new ConnectError("protocol error: compressed message without grpc-encoding", Code.Internal);
  }
  if (body.readUInt32BE(1) !== body.length - 5) {
    throw new ConnectError("protocol error: expected exactly one request message", Code.InvalidArgument);
  }
  try {
    return fromBinary(route.method.input, body.subarray(5));
  } catch (err) {
    throw new ConnectError(`cannot decode the request: ${(err as Error).message}`, Code.InvalidArgument);
  }
}

/**
 * The answer on Node's http2 stream: headers when the first message (or the
 * status) goes out, trailers after the body; an error before any message is
 * a trailers-only answer.
 */
class Http2Reply implements GrpcReply {
  headersSent = false;
  readonly drainEmitter: http2.ServerHttp2Stream;
  readonly #route: GrpcRoute;
  readonly #onFail: (code: Code) => void;
  #trailers: http2.OutgoingHttpHeaders = { "grpc-status": "0" };

  constructor(stream: http2.ServerHttp2Stream, route: GrpcRoute, onFail: (code: Code) => void) {
    this.drainEmitter = stream;
    this.#route = route;
    this.#onFail = onFail;
  }

  unary(headers: Headers | undefined, message: unknown, trailers: Headers | undefined): void {
    const stream = this.drainEmitter;
    if (stream.destroyed) return;
    const frame = this.#frame(message);
    this.#trailers = toHttp2(trailers, { "grpc-status": "0" });
    this.headers(headers);
    stream.end(frame);
  }

  headers(headers: Headers | undefined): void {
    const stream = this.drainEmitter;
    this.headersSent = true;
    stream.respond(toHttp2(headers, { ":status": 200, "content-type": "application/grpc" }), {
      waitForTrailers: true,
    });
    stream.once("wantTrailers", () => stream.sendTrailers(this.#trailers));
  }

  write(message: unknown): boolean {
    return this.drainEmitter.write(this.#frame(message));
  }

  #frame(message: unknown): Buffer {
    return envelope(toBinary(this.#route.method.output, message as never));
  }

  end(trailers: Headers | undefined): void {
    this.#trailers = toHttp2(trailers, { "grpc-status": "0" });
    this.drainEmitter.end();
  }

  fail(err: ConnectError, trailers: Headers | undefined): void {
    const stream = this.drainEmitter;
    if (stream.destroyed || stream.closed) return;
    const status = connectErrorToGrpcStatus(err);
    this.#onFail(err.code);
    const sent = toHttp2(trailers, {
      "grpc-status": String(status.code),
      "grpc-message": encodeGrpcMessage(status.details),
      ...status.metadata.toHttp2Headers(),
    });
    if (this.headersSent) {
      this.#trailers = sent;
      stream.end();
    } else {
      this.headersSent = true;
      stream.respond({ ":status": 200, "content-type": "application/grpc", ...sent }, { endStream: true });
    }
  }
}
