import { once } from "node:events";
import * as http2 from "node:http2";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { CallContext, peerAddressKey } from "../call/call-context.ts";
import { LazyHeaders } from "../grpc/grpc-metadata.ts";
import { connectErrorToGrpcStatus, encodeGrpcMessage } from "../grpc/grpc-status.ts";
import type { ByteLease } from "../limits/byte-budget.ts";
import type { LimitReporter } from "../limits/limit-reporter.ts";
import { readStreamBody } from "../limits/stream-body.ts";
import { grpcCodeLabel } from "../observe/metrics.ts";
import {
  type ServerStreamingInvoker,
  serverStreamingInvoker,
  type UnaryInvoker,
  unaryInvoker,
} from "../server/method-invoker.ts";
import { type ServiceRegistration, scopedMethodSpecs } from "../server/service-registration.ts";
import type { RefusedRequest } from "./edge-http.ts";

/**
 * The edge's gRPC path: plain gRPC calls to unary and server-streaming
 * methods, served straight on Node's http2 stream, with the same interceptors
 * and handlers as every other path.
 *
 * connect-node serves gRPC at 5–10× grpc-js's CPU per call (DESIGN), and at
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

type Route =
  | { kind: "unary"; invoke: UnaryInvoker; method: CallContext["method"] }
  | { kind: "server_streaming"; invoke: ServerStreamingInvoker; method: CallContext["method"] };

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
  const routes = new Map<string, Route>();
  for (const registration of registrations) {
    for (const spec of scopedMethodSpecs(registration)) {
      const path = `/${registration.service.typeName}/${spec.method.name}`;
      if (spec.kind === "unary") {
        routes.set(path, { kind: "unary", invoke: unaryInvoker(spec, options.interceptors), method: spec.method });
      } else if (spec.kind === "server_streaming") {
        routes.set(path, {
          kind: "server_streaming",
          invoke: serverStreamingInvoker(spec, options.interceptors),
          method: spec.method,
        });
      }
    }
  }

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
      const route = routes.get(headers[":path"] ?? "") as Route;
      const startedAt = performance.now();
      let headersSent = false;
      let invoked = false;
      /** Ends the call with `err`: trailers-only before any message, trailers after. */
      const fail = (err: unknown) => {
        if (stream.destroyed || stream.closed) return;
        const status = connectErrorToGrpcStatus(ConnectError.from(err, Code.Internal));
        if (!invoked) {
          options.onRefusedBeforeRpc?.({
            service: route.method.parent.typeName,
            method: route.method.name,
            status: grpcCodeLabel(status.code as number as Code),
            contentType: headers["content-type"],
            durationMs: performance.now() - startedAt,
            client: stream.session?.socket?.remoteAddress,
          });
        }
        const trailers = toHttp2(ctx?.setResponseTrailers, {
          "grpc-status": String(status.code),
          "grpc-message": encodeGrpcMessage(status.details),
          ...status.metadata.toHttp2Headers(),
        });
        if (headersSent) {
          pendingTrailers = trailers;
          stream.end();
        } else {
          headersSent = true;
          stream.respond({ ":status": 200, "content-type": "application/grpc", ...trailers }, { endStream: true });
        }
      };
      let pendingTrailers: http2.OutgoingHttpHeaders = { "grpc-status": "0" };
      const sendHeaders = () => {
        headersSent = true;
        stream.respond(toHttp2(ctx?.setResponseHeaders, { ":status": 200, "content-type": "application/grpc" }), {
          waitForTrailers: true,
        });
        stream.once("wantTrailers", () => stream.sendTrailers(pendingTrailers));
      };

      let ctx: CallContext | undefined;
      try {
        ctx = new CallContext(
          {
            service: route.method.parent,
            method: route.method,
            protocolName: "grpc",
            deadline: parseGrpcTimeout(headers["grpc-timeout"] as string | undefined, Date.now()),
            requestHeaders: () => requestHeaders(headers),
            detach: () => stream.off("close", onClose),
          },
          options.shutdownSignal,
        );
      } catch (err) {
        fail(err);
        return;
      }
      const call = ctx;
      call.values.set(peerAddressKey, stream.session?.socket?.remoteAddress);
      // Closed before we finished: the caller cancelled, or the connection went away.
      const onClose = () => call.cancel();
      stream.once("close", onClose);

      const messages: Buffer[] = [];
      const run = () => {
        if (headersSent) return;
        void (async () => {
          try {
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
            let message: unknown;
            try {
              message = fromBinary(route.method.input, body.subarray(5));
            } catch (err) {
              throw new ConnectError(`cannot decode the request: ${(err as Error).message}`, Code.InvalidArgument);
            }
            invoked = true;
            if (route.kind === "unary") {
              const res = await route.invoke(call, message);
              // A handler that ignored its signal answered too late: the deadline decides.
              if (call.signal.aborted) throw call.signal.reason;
              if (stream.destroyed) return;
              const bytes = envelope(toBinary(route.method.output, res.message));
              pendingTrailers = toHttp2(call.setResponseTrailers, { "grpc-status": "0" });
              sendHeaders();
              stream.end(bytes);
              return;
            }
            const res = await route.invoke(call, message);
            for await (const m of res.message) {
              if (call.signal.aborted) break;
              if (!headersSent) sendHeaders();
              if (!stream.write(envelope(toBinary(route.method.output, m as never)))) {
                await once(stream, "drain", { signal: call.signal });
              }
            }
            if (call.signal.aborted) throw call.signal.reason;
            if (!headersSent) sendHeaders();
            pendingTrailers = toHttp2(call.setResponseTrailers, { "grpc-status": "0" });
            stream.end();
          } catch (err) {
            fail(err);
          } finally {
            call.abort();
          }
        })();
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
            fail(err);
            call.abort();
            // The request was not read to its end: RST_STREAM(NO_ERROR) once the answer is out tells the client to stop sending.
            if (!stream.closed) stream.close(http2.constants.NGHTTP2_NO_ERROR);
          },
        },
      );
    },
  };
}
