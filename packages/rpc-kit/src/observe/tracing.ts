import { Code, ConnectError, type StreamRequest, type UnaryRequest } from "@connectrpc/connect";
import {
  type Attributes,
  type Context,
  context,
  propagation,
  type Span,
  SpanKind,
  SpanStatusCode,
  type TextMapGetter,
  type TextMapSetter,
  trace,
} from "@opentelemetry/api";
import { codeToString } from "../call/codes.ts";

/**
 * Client and server spans for every RPC, as Connect interceptors on
 * `@opentelemetry/api` (no monkey-patching): W3C `traceparent`/`tracestate`
 * and `baggage` are extracted from each inbound call and injected into each
 * outbound one, so one request is one trace across every hop. Attributes
 * follow the stable RPC semantic conventions; no request or response data
 * is recorded, so nothing marked `debug_redact` can reach a span.
 *
 * Without a started SDK (see telemetry.ts) the API is a no-op and this costs
 * next to nothing.
 */

const tracer = trace.getTracer("@demo/rpc-kit");

const headerGetter: TextMapGetter<Headers> = {
  get: (carrier, key) => carrier.get(key) ?? undefined,
  keys: (carrier) => [...carrier.keys()],
};
const headerSetter: TextMapSetter<Headers> = {
  set: (carrier, key, value) => carrier.set(key, value),
};

/** gRPC's canonical status names (`NOT_FOUND`), as `rpc.status_code` wants them for gRPC. */
function grpcStatusName(code: Code | 0): string {
  return code === 0 ? "OK" : codeToString(code).toUpperCase().replace("CANCELED", "CANCELLED");
}

/** Server-side codes that mean the server failed (the semantic conventions' rule for server spans). */
const SERVER_ERROR_CODES: ReadonlySet<Code> = new Set([
  Code.Unknown,
  Code.DeadlineExceeded,
  Code.Unimplemented,
  Code.Internal,
  Code.Unavailable,
  Code.DataLoss,
]);

/**
 * The RPC system of a call as the edge received it: gRPC (and gRPC-Web), or
 * Connect, spelled as semantic conventions 1.45 spell it
 * (`RPC_SYSTEM_NAME_VALUE_CONNECTRPC`).
 */
function systemOf(contentType: string | null): "grpc" | "connectrpc" {
  return contentType?.startsWith("application/grpc") ? "grpc" : "connectrpc";
}

function finish(span: Span, kind: "server" | "client", system: string, err: unknown): void {
  const code = err === undefined ? 0 : ConnectError.from(err).code;
  const status = system === "grpc" ? grpcStatusName(code) : codeToString(code);
  span.setAttribute("rpc.status_code", status);
  if (code !== 0 && (kind === "client" || SERVER_ERROR_CODES.has(code))) {
    span.setAttribute("error.type", status);
    // The wire message only: it is what the caller sees, and never a cause's text.
    span.setStatus({ code: SpanStatusCode.ERROR, message: ConnectError.from(err).rawMessage });
  }
  span.end();
}

/**
 * The server span of an inbound call: continues the caller's trace (or
 * starts one); `ctx` makes it current for the handler and everything it
 * calls. `engine` decides `rpc.system.name` for the internal gRPC engine;
 * the edge reads it from the content type. `end` sets the status and ends it.
 */
export function startServerSpan(
  req: UnaryRequest | StreamRequest,
  engine: "grpc" | "connect",
): { readonly ctx: Context; readonly span: Span; end(err: unknown): void } {
  const parent = propagation.extract(context.active(), req.header, headerGetter);
  const system = engine === "grpc" ? "grpc" : systemOf(req.header.get("content-type"));
  const attributes: Attributes = {
    "rpc.system.name": system,
    "rpc.method": `${req.service.typeName}/${req.method.name}`,
  };
  const span = tracer.startSpan(attributes["rpc.method"] as string, { kind: SpanKind.SERVER, attributes }, parent);
  return { ctx: trace.setSpan(parent, span), span, end: (err) => finish(span, "server", system, err) };
}

/**
 * The client span of an outbound call: a child of whatever span is current
 * (the server span of the call being served), injected into the request's
 * headers; `ctx` makes it current for the transport. `end` is idempotent.
 */
export function startClientSpan(
  req: UnaryRequest | StreamRequest,
  { address, port }: { address: string; port: number },
): { readonly ctx: Context; end(err: unknown): void } {
  const parent = context.active();
  const attributes: Attributes = {
    "rpc.system.name": "grpc",
    "rpc.method": `${req.service.typeName}/${req.method.name}`,
    "server.address": address,
    "server.port": port,
  };
  const span = tracer.startSpan(attributes["rpc.method"] as string, { kind: SpanKind.CLIENT, attributes }, parent);
  const ctx = trace.setSpan(parent, span);
  propagation.inject(ctx, req.header, headerSetter);
  let ended = false;
  return {
    ctx,
    end(err) {
      if (ended) return;
      ended = true;
      finish(span, "client", "grpc", err);
    },
  };
}
