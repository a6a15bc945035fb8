import { create, type DescMessage, isMessage } from "@bufbuild/protobuf";
import type {
  Interceptor,
  MethodImplSpec,
  StreamRequest,
  StreamResponse,
  UnaryRequest,
  UnaryResponse,
} from "@connectrpc/connect";
import { createAsyncIterable } from "@connectrpc/connect/protocol";
import type { CallContext } from "../call/call-context.ts";
import { callRecordKey } from "../call/call-record.ts";

/**
 * Calls a Connect-shaped handler through Connect interceptors, as
 * connect-node's router does, for rpc-kit's own gRPC paths.
 */

function applyInterceptors<T>(next: T, interceptors: readonly Interceptor[]): T {
  return [...interceptors].reverse().reduce((n, i) => i(n as never) as T, next);
}

function normalizeOutput(desc: DescMessage, value: unknown) {
  return isMessage(value, desc) ? value : create(desc, value as never);
}

async function* normalizeStream(desc: DescMessage, messages: AsyncIterable<unknown>) {
  for await (const m of messages) yield normalizeOutput(desc, m);
}

export type UnaryInvoker = (ctx: CallContext, message: unknown) => Promise<UnaryResponse>;
export type ServerStreamingInvoker = (ctx: CallContext, message: unknown) => Promise<StreamResponse>;

export function unaryInvoker(
  spec: Extract<MethodImplSpec, { kind: "unary" }>,
  interceptors: readonly Interceptor[],
): UnaryInvoker {
  const { method } = spec;
  const invoke = applyInterceptors(async (req: UnaryRequest): Promise<UnaryResponse> => {
    const ctx = req.contextValues.get(callRecordKey) as CallContext;
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
  return (ctx, message) =>
    invoke({
      stream: false,
      service: method.parent,
      method,
      requestMethod: "POST",
      url: ctx.url,
      signal: ctx.signal,
      get header() {
        return ctx.requestHeader;
      },
      message: message as never,
      contextValues: ctx.values,
    });
}

export function serverStreamingInvoker(
  spec: Extract<MethodImplSpec, { kind: "server_streaming" }>,
  interceptors: readonly Interceptor[],
): ServerStreamingInvoker {
  const { method } = spec;
  const invoke = applyInterceptors(async (req: StreamRequest): Promise<StreamResponse> => {
    const ctx = req.contextValues.get(callRecordKey) as CallContext;
    let input: unknown;
    for await (const m of req.message) input = m;
    return {
      stream: true,
      service: method.parent,
      method,
      header: ctx.responseHeader,
      trailer: ctx.responseTrailer,
      message: normalizeStream(method.output, spec.impl(input as never, ctx)),
    };
  }, interceptors);
  return (ctx, message) =>
    invoke({
      stream: true,
      service: method.parent,
      method,
      requestMethod: "POST",
      url: ctx.url,
      signal: ctx.signal,
      get header() {
        return ctx.requestHeader;
      },
      message: createAsyncIterable([message as never]),
      contextValues: ctx.values,
    });
}
