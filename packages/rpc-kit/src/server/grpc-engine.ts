import { once } from "node:events";
import type * as http2 from "node:http2";
import { fromBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import {
  type handleServerStreamingCall,
  type handleUnaryCall,
  Metadata,
  Server,
  type ServerOptions,
  type ServerUnaryCall,
  type ServerWritableStream,
  type ServiceDefinition,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import { CallContext } from "../call/call-context.ts";
import { serializerFor } from "../grpc/codec.ts";
import { headersToMetadata, isEmptyHeaders, metadataHeaders } from "../grpc/grpc-metadata.ts";
import { connectErrorToGrpcStatus } from "../grpc/grpc-status.ts";
import { type GrpcJsGuardOptions, guardGrpcJsServer } from "../limits/grpc-js-guard.ts";
import { headerListCeiling } from "../limits/stream-body.ts";
import {
  type ServerStreamingInvoker,
  serverStreamingInvoker,
  type UnaryInvoker,
  unaryInvoker,
} from "./method-invoker.ts";
import { type ServiceRegistration, scopedMethodSpecs } from "./service-registration.ts";

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

/** The context of a grpc-js call: its deadline, its metadata read lazily, cancelled when grpc-js says so. */
function contextOf(call: AnyCall, method: CallContext["method"], shutdownSignal: AbortSignal): CallContext {
  const deadline = call.getDeadline();
  const ms = deadline instanceof Date ? deadline.getTime() : deadline;
  // grpc-js emits "cancelled" after every call, answered or not: CallContext ignores it once the call ended.
  const onCancelled = () => ctx.cancel();
  const ctx = new CallContext(
    {
      service: method.parent,
      method,
      protocolName: "grpc",
      deadline: Number.isFinite(ms) ? ms : undefined,
      requestHeaders: () => metadataHeaders(call.metadata),
      detach: () => call.off("cancelled", onCancelled),
    },
    shutdownSignal,
  );
  call.once("cancelled", onCancelled);
  return ctx;
}

/** Response headers to send, or undefined when the handler set none. */
function responseMetadata(ctx: CallContext): Metadata | undefined {
  const headers = ctx.setResponseHeaders;
  return headers && !isEmptyHeaders(headers) ? headersToMetadata(headers) : undefined;
}

/** Trailers to send with the status. */
function trailerMetadata(ctx: CallContext): Metadata {
  const trailers = ctx.setResponseTrailers;
  return trailers ? headersToMetadata(trailers) : new Metadata();
}

/** Creates a grpc-js Server with every registration's methods added. */
export function createGrpcEngine(registrations: readonly ServiceRegistration[], options: GrpcEngineOptions): Server {
  const server = new Server(options.serverOptions);
  if (options.maxHeaderBytes !== undefined) {
    addHttp2Settings(server, { maxHeaderListSize: headerListCeiling(options.maxHeaderBytes) });
  }
  if (options.limits !== undefined) guardGrpcJsServer(server, options.limits);
  for (const registration of registrations) {
    const definition: Record<string, ServiceDefinition[string]> = {};
    const implementation: UntypedServiceImplementation = {};
    for (const spec of scopedMethodSpecs(registration)) {
      if (spec.kind !== "unary" && spec.kind !== "server_streaming") {
        continue; // Not served: grpc-js answers Unimplemented.
      }
      definition[spec.method.localName] = {
        path: `/${registration.service.typeName}/${spec.method.name}`,
        originalName: spec.method.name,
        requestStream: false,
        responseStream: spec.kind === "server_streaming",
        requestSerialize: serializerFor(spec.method.input),
        requestDeserialize: (bytes: Buffer) => fromBinary(spec.method.input, bytes),
        responseSerialize: serializerFor(spec.method.output),
        responseDeserialize: (bytes: Buffer) => fromBinary(spec.method.output, bytes),
      };
      implementation[spec.method.localName] =
        spec.kind === "unary"
          ? unaryHandler(unaryInvoker(spec, options.interceptors), spec, options.shutdownSignal)
          : serverStreamingHandler(serverStreamingInvoker(spec, options.interceptors), spec, options.shutdownSignal);
    }
    server.addService(definition, implementation);
  }
  return server;
}

function unaryHandler(
  invoke: UnaryInvoker,
  spec: { method: CallContext["method"] },
  shutdownSignal: AbortSignal,
): handleUnaryCall<unknown, unknown> {
  return (call, callback) => {
    const ctx = contextOf(call, spec.method, shutdownSignal);
    invoke(ctx, call.request).then(
      (res) => {
        const headers = responseMetadata(ctx);
        if (headers) call.sendMetadata(headers);
        callback(null, res.message, trailerMetadata(ctx));
        ctx.abort();
      },
      (err: unknown) => {
        const status = connectErrorToGrpcStatus(ConnectError.from(err, Code.Internal));
        status.metadata.merge(trailerMetadata(ctx));
        callback(status);
        ctx.abort();
      },
    );
  };
}

function serverStreamingHandler(
  invoke: ServerStreamingInvoker,
  spec: { method: CallContext["method"] },
  shutdownSignal: AbortSignal,
): handleServerStreamingCall<unknown, unknown> {
  return (call) => {
    const ctx = contextOf(call, spec.method, shutdownSignal);
    void (async () => {
      let headersSent = false;
      try {
        const res = await invoke(ctx, call.request);
        for await (const message of res.message) {
          if (ctx.signal.aborted) break;
          if (!headersSent) {
            headersSent = true;
            const headers = responseMetadata(ctx);
            if (headers) call.sendMetadata(headers);
          }
          if (!call.write(message)) {
            await once(call, "drain", { signal: ctx.signal });
          }
        }
        if (ctx.signal.aborted) throw ctx.signal.reason;
        call.end(trailerMetadata(ctx));
      } catch (err) {
        const status = connectErrorToGrpcStatus(ConnectError.from(err, Code.Internal));
        status.metadata.merge(trailerMetadata(ctx));
        call.emit("error", status);
      } finally {
        ctx.abort();
      }
    })();
  };
}
