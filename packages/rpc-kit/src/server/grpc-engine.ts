import type * as http2 from "node:http2";
import { type DescMethod, type DescService, fromBinary } from "@bufbuild/protobuf";
import type { ConnectError, Interceptor } from "@connectrpc/connect";
import {
  type handleServerStreamingCall,
  type handleUnaryCall,
  Metadata,
  Server,
  type ServerOptions,
  type ServerUnaryCall,
  type ServerWritableStream,
  type ServiceDefinition,
  type sendUnaryData,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import { CallContext, LiveCalls } from "../call/call-context.ts";
import { serializerFor } from "../grpc/codec.ts";
import { headersToMetadata, isEmptyHeaders, metadataHeaders } from "../grpc/grpc-metadata.ts";
import { connectErrorToGrpcStatus } from "../grpc/grpc-status.ts";
import { type GrpcJsGuardOptions, guardGrpcJsServer } from "../limits/grpc-js-guard.ts";
import { headerListCeiling } from "../limits/stream-body.ts";
import { answerGrpcCall, type GrpcReply, grpcRoutes } from "./grpc-answer.ts";
import type { ServiceRegistration } from "./service-registration.ts";

/**
 * The internal engine: a grpc-js Server serving Connect-shaped handlers.
 * Requests and responses are protobuf-es messages (`toBinary`/`fromBinary`),
 * Connect interceptors run around every call as they would on connect-node,
 * and a thrown ConnectError becomes the gRPC status with its details.
 */
export interface GrpcEngineOptions {
  readonly interceptors: readonly Interceptor[];
  /** Aborts every handler's signal when fired (forced shutdown). */
  readonly shutdownSignal: AbortSignal;
  /** grpc-js server options (gRPC core names). */
  readonly serverOptions: ServerOptions;
  /**
   * Largest request header block (metadata), in bytes, enforced by the
   * guard (limits/grpc-js-guard.ts); the HTTP/2 SETTINGS_MAX_HEADER_LIST_SIZE
   * advertised, which Node enforces by itself, is its ceiling
   * (`headerListCeiling`). grpc-js 1.14 has no option for it (it ignores
   * grpc.max_metadata_size on servers), so it is set on the http2 server
   * options grpc-js keeps; default Node's (64 KiB).
   */
  readonly maxHeaderBytes?: number;
  /** rpc-kit's bounds on what clients send, put in front of grpc-js (limits/grpc-js-guard.ts). */
  readonly limits?: GrpcJsGuardOptions;
}

/** Adds HTTP/2 settings to those grpc-js passes to `http2.createServer` at bind time. */
function addHttp2Settings(server: Server, settings: http2.Settings): void {
  const common = (server as unknown as { commonServerOptions?: http2.ServerOptions }).commonServerOptions;
  if (common !== undefined) common.settings = { ...common.settings, ...settings };
}

type AnyCall = ServerUnaryCall<unknown, unknown> | ServerWritableStream<unknown, unknown>;

/**
 * The record of a grpc-js call: its deadline, its metadata read lazily,
 * cancelled when grpc-js says so. grpc-js arms a timer for every call with a
 * deadline and emits "cancelled" when it fires, so no second timer is armed:
 * a "cancelled" at the deadline is the deadline.
 */
function callOf(call: AnyCall, method: DescMethod, live: LiveCalls): CallContext {
  const deadline = call.getDeadline();
  const ms = deadline instanceof Date ? deadline.getTime() : deadline;
  // grpc-js emits "cancelled" after every call, answered or not (CallContext ignores it once the
  // call ended), and at the deadline (CallContext tells that one apart).
  const onCancelled = () => ctx.cancel();
  const ctx = new CallContext(
    {
      service: method.parent,
      method,
      protocolName: "grpc",
      deadline: Number.isFinite(ms) ? ms : undefined,
      engineTimesOut: true,
      requestHeaders: () => metadataHeaders(call.metadata),
      detach: () => call.off("cancelled", onCancelled),
    },
    live,
  );
  call.once("cancelled", onCancelled);
  return ctx;
}

/** Creates a grpc-js Server with every registration's methods added. */
export function createGrpcEngine(registrations: readonly ServiceRegistration[], options: GrpcEngineOptions): Server {
  const server = new Server(options.serverOptions);
  if (options.maxHeaderBytes !== undefined) {
    addHttp2Settings(server, { maxHeaderListSize: headerListCeiling(options.maxHeaderBytes) });
  }
  if (options.limits !== undefined) guardGrpcJsServer(server, options.limits);
  const live = new LiveCalls(options.shutdownSignal);
  const byService = new Map<
    DescService,
    { definition: Record<string, ServiceDefinition[string]>; implementation: UntypedServiceImplementation }
  >();
  for (const route of grpcRoutes(registrations, options.interceptors)) {
    const { method } = route;
    let entry = byService.get(method.parent);
    if (entry === undefined) {
      entry = { definition: {}, implementation: {} };
      byService.set(method.parent, entry);
    }
    entry.definition[method.localName] = {
      path: route.path,
      originalName: method.name,
      requestStream: false,
      responseStream: route.kind === "server_streaming",
      requestSerialize: serializerFor(method.input),
      requestDeserialize: (bytes: Buffer) => fromBinary(method.input, bytes),
      responseSerialize: serializerFor(method.output),
      responseDeserialize: (bytes: Buffer) => fromBinary(method.output, bytes),
    };
    entry.implementation[method.localName] =
      route.kind === "unary"
        ? (((call, callback) => {
            void answerGrpcCall(route, callOf(call, method, live), call.request, new GrpcJsReply(call, callback));
          }) satisfies handleUnaryCall<unknown, unknown>)
        : (((call) => {
            void answerGrpcCall(route, callOf(call, method, live), call.request, new GrpcJsReply(call));
          }) satisfies handleServerStreamingCall<unknown, unknown>);
  }
  for (const { definition, implementation } of byService.values()) server.addService(definition, implementation);
  return server;
}

/**
 * The answer through grpc-js: headers with sendMetadata, a unary call's
 * message and status in its callback, a stream's messages and status on its
 * writable call.
 */
class GrpcJsReply implements GrpcReply {
  readonly drainEmitter: AnyCall;
  readonly #callback: sendUnaryData<unknown> | undefined;

  constructor(call: AnyCall, callback?: sendUnaryData<unknown>) {
    this.drainEmitter = call;
    this.#callback = callback;
  }

  unary(headers: Headers | undefined, message: unknown, trailers: Headers | undefined): void {
    this.headers(headers);
    this.#callback?.(null, message, trailerMetadata(trailers));
  }

  headers(headers: Headers | undefined): void {
    if (headers && !isEmptyHeaders(headers)) this.drainEmitter.sendMetadata(headersToMetadata(headers));
  }

  write(message: unknown): boolean {
    return (this.drainEmitter as ServerWritableStream<unknown, unknown>).write(message);
  }

  end(trailers: Headers | undefined): void {
    (this.drainEmitter as ServerWritableStream<unknown, unknown>).end(trailerMetadata(trailers));
  }

  fail(err: ConnectError, trailers: Headers | undefined): void {
    const status = connectErrorToGrpcStatus(err);
    if (trailers) status.metadata.merge(headersToMetadata(trailers));
    if (this.#callback) this.#callback(status);
    else this.drainEmitter.emit("error", status);
  }
}

function trailerMetadata(trailers: Headers | undefined): Metadata {
  return trailers ? headersToMetadata(trailers) : new Metadata();
}
