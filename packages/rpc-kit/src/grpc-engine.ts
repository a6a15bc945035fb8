import { once } from "node:events";
import {
  create,
  type DescMessage,
  type DescMethod,
  type DescService,
  fromBinary,
  isMessage,
  toBinary,
} from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ContextValues,
  createContextKey,
  createContextValues,
  type HandlerContext,
  type Interceptor,
  type MethodImplSpec,
  type StreamRequest,
  type StreamResponse,
  type UnaryRequest,
  type UnaryResponse,
} from "@connectrpc/connect";
import { createAsyncIterable } from "@connectrpc/connect/protocol";
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
import { headersToMetadata, isEmptyHeaders, MetadataHeaders } from "./grpc-metadata.ts";
import { connectErrorToGrpcStatus } from "./grpc-status.ts";
import { toBuffer } from "./grpc-transport.ts";
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
}

const contextKey = createContextKey<HandlerContext | undefined>(undefined, { description: "rpc-kit handler context" });

/**
 * The reason a handler's signal carries once its call is answered. Shared, so
 * that ending a call does not build a DOMException (and its stack) each time.
 */
const CALL_ENDED = new ConnectError("the call has ended", Code.Canceled);

type AnyCall = ServerUnaryCall<unknown, unknown> | ServerWritableStream<unknown, unknown>;

/** A HandlerContext for a grpc-js call; request headers are converted only when read. */
class GrpcHandlerContext implements HandlerContext {
  readonly protocolName = "grpc";
  readonly requestMethod = "POST";
  readonly values: ContextValues = createContextValues();
  readonly signal: AbortSignal;
  private readonly controller = new AbortController();
  private readonly deadline: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private requestHeaders: Headers | undefined;
  private responseHeaders: Headers | undefined;
  private responseTrailers: Headers | undefined;
  private readonly onShutdown = () => this.abort(new ConnectError("server is shutting down", Code.Unavailable));

  private readonly call: AnyCall;
  readonly service: DescService;
  readonly method: DescMethod;
  readonly url: string;
  private readonly shutdownSignal: AbortSignal;

  constructor(call: AnyCall, service: DescService, method: DescMethod, url: string, shutdownSignal: AbortSignal) {
    this.call = call;
    this.service = service;
    this.method = method;
    this.url = url;
    this.shutdownSignal = shutdownSignal;
    this.signal = this.controller.signal;
    const deadline = call.getDeadline();
    const ms = deadline instanceof Date ? deadline.getTime() : deadline;
    if (Number.isFinite(ms)) {
      this.deadline = ms;
      this.timer = setTimeout(
        () => this.abort(new ConnectError("the operation timed out", Code.DeadlineExceeded)),
        Math.max(0, ms - Date.now()),
      );
    }
    call.once("cancelled", () => this.abort(new ConnectError("the caller cancelled the call", Code.Canceled)));
    shutdownSignal.addEventListener("abort", this.onShutdown, { once: true });
  }

  timeoutMs = (): number | undefined => (this.deadline === undefined ? undefined : this.deadline - Date.now());

  get requestHeader(): Headers {
    this.requestHeaders ??= new MetadataHeaders(this.call.metadata);
    return this.requestHeaders;
  }

  get responseHeader(): Headers {
    this.responseHeaders ??= new Headers();
    return this.responseHeaders;
  }

  get responseTrailer(): Headers {
    this.responseTrailers ??= new Headers();
    return this.responseTrailers;
  }

  /** Response headers to send, or undefined when the handler set none. */
  takeResponseMetadata(): Metadata | undefined {
    return this.responseHeaders && !isEmptyHeaders(this.responseHeaders)
      ? headersToMetadata(this.responseHeaders)
      : undefined;
  }

  /** Trailers to send with the status. */
  trailerMetadata(): Metadata {
    return this.responseTrailers ? headersToMetadata(this.responseTrailers) : new Metadata();
  }

  /** Ends the call's signal: on completion (no reason), cancellation, deadline or forced shutdown. */
  abort(reason?: unknown): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.shutdownSignal.removeEventListener("abort", this.onShutdown);
    if (!this.controller.signal.aborted) this.controller.abort(reason ?? CALL_ENDED);
  }
}

function normalizeOutput(desc: DescMessage, value: unknown) {
  return isMessage(value, desc) ? value : create(desc, value as never);
}

function serializerFor(desc: DescMessage) {
  return (value: unknown) => toBuffer(toBinary(desc, value as never));
}

/** Creates a grpc-js Server with every registration's methods added. */
export function createGrpcEngine(registrations: readonly ServiceRegistration[], options: GrpcEngineOptions): Server {
  const server = new Server(options.serverOptions);
  const interceptors = [...options.interceptors];
  for (const registration of registrations) {
    const definition: Record<string, ServiceDefinition[string]> = {};
    const implementation: UntypedServiceImplementation = {};
    for (const spec of scopedMethodSpecs(registration)) {
      const path = `/${registration.service.typeName}/${spec.method.name}`;
      if (spec.kind !== "unary" && spec.kind !== "server_streaming") {
        continue; // Not served: grpc-js answers Unimplemented.
      }
      definition[spec.method.localName] = {
        path,
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
          ? unaryHandler(spec, path, interceptors, options.shutdownSignal)
          : serverStreamingHandler(spec, path, interceptors, options.shutdownSignal);
    }
    server.addService(definition, implementation);
  }
  return server;
}

function applyInterceptors<T>(next: T, interceptors: Interceptor[]): T {
  return interceptors
    .concat()
    .reverse()
    .reduce((n, i) => i(n as never) as T, next);
}

function unaryHandler(
  spec: Extract<MethodImplSpec, { kind: "unary" }>,
  path: string,
  interceptors: Interceptor[],
  shutdownSignal: AbortSignal,
): handleUnaryCall<unknown, unknown> {
  const { method } = spec;
  const invoke = applyInterceptors(async (req: UnaryRequest): Promise<UnaryResponse> => {
    const ctx = req.contextValues.get(contextKey) as GrpcHandlerContext;
    const output = await spec.impl(req.message as never, ctx);
    return {
      stream: false,
      service: method.parent,
      method,
      header: ctx.responseHeader,
      trailer: ctx.responseTrailer,
      message: normalizeOutput(method.output, output),
    };
  }, interceptors);
  return (call, callback) => {
    const ctx = new GrpcHandlerContext(call, method.parent, method, path, shutdownSignal);
    ctx.values.set(contextKey, ctx);
    const req: UnaryRequest = {
      stream: false,
      service: method.parent,
      method,
      requestMethod: "POST",
      url: path,
      signal: ctx.signal,
      get header() {
        return ctx.requestHeader;
      },
      message: call.request as never,
      contextValues: ctx.values,
    };
    invoke(req).then(
      (res) => {
        const headers = ctx.takeResponseMetadata();
        if (headers) call.sendMetadata(headers);
        callback(null, res.message, ctx.trailerMetadata());
        ctx.abort();
      },
      (err: unknown) => {
        const status = connectErrorToGrpcStatus(ConnectError.from(err, Code.Internal));
        status.metadata.merge(ctx.trailerMetadata());
        callback(status);
        ctx.abort();
      },
    );
  };
}

function serverStreamingHandler(
  spec: Extract<MethodImplSpec, { kind: "server_streaming" }>,
  path: string,
  interceptors: Interceptor[],
  shutdownSignal: AbortSignal,
): handleServerStreamingCall<unknown, unknown> {
  const { method } = spec;
  const invoke = applyInterceptors(async (req: StreamRequest): Promise<StreamResponse> => {
    const ctx = req.contextValues.get(contextKey) as GrpcHandlerContext;
    let input: unknown;
    for await (const m of req.message) input = m;
    const output = spec.impl(input as never, ctx);
    return {
      stream: true,
      service: method.parent,
      method,
      header: ctx.responseHeader,
      trailer: ctx.responseTrailer,
      message: normalizeStream(method.output, output),
    };
  }, interceptors);
  return (call) => {
    const ctx = new GrpcHandlerContext(call, method.parent, method, path, shutdownSignal);
    ctx.values.set(contextKey, ctx);
    const req: StreamRequest = {
      stream: true,
      service: method.parent,
      method,
      requestMethod: "POST",
      url: path,
      signal: ctx.signal,
      get header() {
        return ctx.requestHeader;
      },
      message: createAsyncIterable([call.request as never]),
      contextValues: ctx.values,
    };
    void (async () => {
      let headersSent = false;
      try {
        const res = await invoke(req);
        for await (const message of res.message) {
          if (ctx.signal.aborted) break;
          if (!headersSent) {
            headersSent = true;
            const headers = ctx.takeResponseMetadata();
            if (headers) call.sendMetadata(headers);
          }
          if (!call.write(message)) {
            await once(call, "drain", { signal: ctx.signal });
          }
        }
        if (ctx.signal.aborted) throw ctx.signal.reason;
        call.end(ctx.trailerMetadata());
      } catch (err) {
        const status = connectErrorToGrpcStatus(ConnectError.from(err, Code.Internal));
        status.metadata.merge(ctx.trailerMetadata());
        call.emit("error", status);
      } finally {
        ctx.abort();
      }
    })();
  };
}

async function* normalizeStream(desc: DescMessage, messages: AsyncIterable<unknown>) {
  for await (const m of messages) yield normalizeOutput(desc, m);
}
