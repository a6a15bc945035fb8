import { create, type DescMessage, type DescMethod, fromBinary, type MessageShape, toBinary } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  createContextValues,
  type Interceptor,
  type StreamResponse,
  type Transport,
  type UnaryResponse,
} from "@connectrpc/connect";
import { runStreamingCall, runUnaryCall } from "@connectrpc/connect/protocol";
import { type Client as GrpcClient, Metadata, type ServiceError } from "@grpc/grpc-js";
import { currentCallScope } from "./call-scope.ts";
import { outboundTimeoutMs } from "./deadline.ts";
import { markUpstreamError } from "./errors.ts";
import { headersToMetadata, isEmptyHeaders, metadataToHeaders } from "./grpc-metadata.ts";
import { grpcStatusToConnectError } from "./grpc-status.ts";

/**
 * A Connect Transport over one pooled grpc-js channel: Connect-typed clients
 * and interceptors, grpc-js underneath (its connection management, balancing
 * and transparent retries). Only unary and server-streaming methods.
 *
 * Every call gets a deadline: the caller's timeout or the default, capped by
 * the inbound call's deadline minus a margin; the inbound call's cancellation
 * cancels it.
 */
export interface GrpcTransportOptions {
  /** The grpc-js target, for error origins and logs. */
  readonly target: string;
  readonly channel: GrpcClient;
  readonly defaultTimeoutMs: number;
  readonly deadlineMarginMs: number;
  readonly interceptors: readonly Interceptor[];
}

interface MethodCodec {
  readonly path: string;
  readonly serialize: (value: unknown) => Buffer;
  readonly deserialize: (bytes: Buffer) => unknown;
}

const codecs = new WeakMap<DescMethod, MethodCodec>();

/** Path and protobuf-es (de)serializers of a method, built once per method. */
export function methodCodec(method: DescMethod): MethodCodec {
  let codec = codecs.get(method);
  if (codec === undefined) {
    codec = {
      path: `/${method.parent.typeName}/${method.name}`,
      serialize: (value) => toBuffer(toBinary(method.input, value as MessageShape<DescMessage>)),
      deserialize: (bytes) => fromBinary(method.output, bytes),
    };
    codecs.set(method, codec);
  }
  return codec;
}

/** Views protobuf-es bytes as a Buffer without copying (grpc-js wants Buffers). */
export function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Request headers: the caller's, plus the inbound call's forwarded ones it did not set itself. */
function withForwarded(header: ConstructorParameters<typeof Headers>[0], forwarded: Headers | undefined): Headers {
  const headers = new Headers(header);
  forwarded?.forEach((value, key) => {
    if (!headers.has(key)) headers.set(key, value);
  });
  return headers;
}

export function createGrpcTransport(options: GrpcTransportOptions): Transport {
  const { channel, target } = options;
  const interceptors = [...options.interceptors];

  /** Deadline and signal for one call, or the error that stops it before it is sent. */
  function plan(signal: AbortSignal | undefined, timeoutMs: number | undefined) {
    const scope = currentCallScope();
    let timeout: number | undefined;
    let refused: ConnectError | undefined;
    try {
      timeout = outboundTimeoutMs({
        requestedMs: timeoutMs,
        defaultMs: options.defaultTimeoutMs,
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

  function fail(err: ServiceError, method: DescMethod): ConnectError {
    return markUpstreamError(grpcStatusToConnectError(err), {
      target,
      procedure: `${method.parent.typeName}/${method.name}`,
    });
  }

  return {
    async unary(method, signal, timeoutMs, header, input, contextValues) {
      const codec = methodCodec(method);
      const { timeout, refused, signal: callSignal, forwarded } = plan(signal, timeoutMs);
      return runUnaryCall({
        interceptors,
        ...(callSignal && { signal: callSignal }),
        ...(timeout !== undefined && { timeoutMs: timeout }),
        req: {
          stream: false,
          service: method.parent,
          method,
          requestMethod: "POST",
          url: codec.path,
          header: withForwarded(header, forwarded),
          contextValues: contextValues ?? createContextValues(),
          message: input,
        },
        next: (req) =>
          new Promise<UnaryResponse<typeof method.input, typeof method.output>>((resolve, reject) => {
            if (refused !== undefined || timeout === undefined) {
              reject(refused);
              return;
            }
            if (req.signal.aborted) {
              reject(ConnectError.from(req.signal.reason, Code.Canceled));
              return;
            }
            const metadata = isEmptyHeaders(req.header) ? new Metadata() : headersToMetadata(req.header);
            let responseMetadata: Metadata | undefined;
            let trailers: Metadata | undefined;
            const onAbort = () => call.cancel();
            const call = channel.makeUnaryRequest(
              codec.path,
              codec.serialize,
              codec.deserialize,
              req.message,
              metadata,
              { deadline: Date.now() + timeout },
              (err, value) => {
                req.signal.removeEventListener("abort", onAbort);
                if (err) {
                  reject(fail(err, method));
                  return;
                }
                resolve({
                  stream: false,
                  service: method.parent,
                  method,
                  message: value as MessageShape<typeof method.output>,
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
            req.signal.addEventListener("abort", onAbort, { once: true });
          }),
      });
    },

    async stream(method, signal, timeoutMs, header, input, contextValues) {
      if (method.methodKind !== "server_streaming") {
        throw new ConnectError(
          `${method.parent.typeName}/${method.name}: rpc-kit's gRPC transport supports unary and server-streaming methods only`,
          Code.Unimplemented,
        );
      }
      const codec = methodCodec(method);
      const { timeout, refused, signal: callSignal, forwarded } = plan(signal, timeoutMs);
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
          let request: unknown;
          for await (const m of req.message) {
            request = m;
            break;
          }
          if (request === undefined) request = create(method.input);
          if (req.signal.aborted) throw ConnectError.from(req.signal.reason, Code.Canceled);
          const metadata = isEmptyHeaders(req.header) ? new Metadata() : headersToMetadata(req.header);
          const call = channel.makeServerStreamRequest(
            codec.path,
            codec.serialize,
            codec.deserialize,
            request,
            metadata,
            {
              deadline: Date.now() + timeout,
            },
          );
          let responseMetadata: Metadata | undefined;
          let trailers: Metadata | undefined;
          call.on("metadata", (m: Metadata) => {
            responseMetadata = m;
          });
          call.on("status", (s: { metadata: Metadata }) => {
            trailers = s.metadata;
          });
          const onAbort = () => call.cancel();
          req.signal.addEventListener("abort", onAbort, { once: true });
          async function* read(): AsyncGenerator<MessageShape<typeof method.output>> {
            let ended = false;
            try {
              for await (const m of call) yield m as MessageShape<typeof method.output>;
              ended = true;
            } catch (err) {
              ended = true;
              throw fail(err as ServiceError, method);
            } finally {
              req.signal.removeEventListener("abort", onAbort);
              if (!ended) call.cancel();
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
