import { once } from "node:events";
import type { DescMethod } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import type { CallContext } from "../call/call-context.ts";
import {
  type ServerStreamingInvoker,
  serverStreamingInvoker,
  type UnaryInvoker,
  unaryInvoker,
} from "./method-invoker.ts";
import { type ServiceRegistration, scopedMethodSpecs } from "./service-registration.ts";

/**
 * How a gRPC call is answered once its request is decoded, shared by the
 * internal engine (grpc-js, server/grpc-engine.ts) and the edge's fast path
 * (Node's http2 stream, edge/grpc-fast-path.ts): the handler runs through the
 * interceptors, then what it set and returned is sent (headers before the
 * first message, messages with backpressure, status OK with its trailers), or
 * what it threw is sent as a status with its details. Each path supplies only
 * how these reach its transport (a GrpcReply).
 */

/** A method both gRPC paths serve: unary or server streaming, with its interceptors applied. */
export type GrpcRoute = { readonly path: string; readonly method: DescMethod } & (
  | { readonly kind: "unary"; readonly invoke: UnaryInvoker }
  | { readonly kind: "server_streaming"; readonly invoke: ServerStreamingInvoker }
);

/** The routes of every registration (client and bidi streams are not served: the paths answer Unimplemented). */
export function grpcRoutes(
  registrations: readonly ServiceRegistration[],
  interceptors: readonly Interceptor[],
): GrpcRoute[] {
  const routes: GrpcRoute[] = [];
  for (const registration of registrations) {
    for (const spec of scopedMethodSpecs(registration)) {
      const path = `/${registration.service.typeName}/${spec.method.name}`;
      if (spec.kind === "unary") {
        routes.push({ path, method: spec.method, kind: "unary", invoke: unaryInvoker(spec, interceptors) });
      } else if (spec.kind === "server_streaming") {
        routes.push({
          path,
          method: spec.method,
          kind: "server_streaming",
          invoke: serverStreamingInvoker(spec, interceptors),
        });
      }
    }
  }
  return routes;
}

/** What one transport does with the answer. */
export interface GrpcReply {
  /** A unary call's answer: the headers the handler set, its message, then status OK with the trailers. */
  unary(headers: Headers | undefined, message: unknown, trailers: Headers | undefined): void;
  /** A stream's headers, before its first message (or its trailers, when it sends none). */
  headers(headers: Headers | undefined): void;
  /** One message of a stream; false when the transport asks to wait for `drain`. */
  write(message: unknown): boolean;
  /** What emits `drain`. */
  readonly drainEmitter: NodeJS.EventEmitter;
  /** Ends a stream with status OK and the trailers. */
  end(trailers: Headers | undefined): void;
  /** Ends the call with the error's status and details, and the handler's trailers. */
  fail(err: ConnectError, trailers: Headers | undefined): void;
}

/** Runs the call's handler and sends its answer through `reply`; ends the call's record when done. */
export async function answerGrpcCall(
  route: GrpcRoute,
  call: CallContext,
  message: unknown,
  reply: GrpcReply,
): Promise<void> {
  try {
    if (route.kind === "unary") {
      const res = await route.invoke(call, message);
      // A handler that ignored its signal answered too late: the deadline (or the caller's cancel) decides.
      if (call.signal.aborted) throw call.signal.reason;
      reply.unary(call.setResponseHeaders, res.message, call.setResponseTrailers);
      return;
    }
    const res = await route.invoke(call, message);
    let headersSent = false;
    for await (const m of res.message) {
      if (call.signal.aborted) break;
      if (!headersSent) {
        headersSent = true;
        reply.headers(call.setResponseHeaders);
      }
      if (!reply.write(m)) await once(reply.drainEmitter, "drain", { signal: call.signal });
    }
    if (call.signal.aborted) throw call.signal.reason;
    if (!headersSent) reply.headers(call.setResponseHeaders);
    reply.end(call.setResponseTrailers);
  } catch (err) {
    reply.fail(ConnectError.from(err, Code.Internal), call.setResponseTrailers);
  } finally {
    call.abort();
  }
}
