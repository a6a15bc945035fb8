import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import { create } from "@bufbuild/protobuf";
import { createContextKey, createContextValues, type Interceptor, type StreamRequest } from "@connectrpc/connect";
import { CallRecord, callRecordKey } from "../call/call-record.ts";
import type { ByteBudget, ByteLease } from "../limits/byte-budget.ts";
import { clientAddress } from "../limits/client-address.ts";
import type { ConnectionLimits } from "../limits/connection-limits.ts";
import type { Http1Pipeline } from "../limits/http1-pipeline.ts";
import type { LimitName } from "../limits/limit-error.ts";
import type { LimitReporter } from "../limits/limit-reporter.ts";
import { boundedRequestBody } from "../limits/request-body.ts";
import type { SessionGuard } from "../limits/session-guard.ts";
import { headerListCeiling, refuseLargeHeaders } from "../limits/stream-body.ts";
import { connectionAge } from "../server/connection-age.ts";
import { type ServiceRegistration, scopedMethodSpecs } from "../server/service-registration.ts";
import { connectAdapter, type NodeServerRequest, type NodeServerResponse } from "./connect-adapter.ts";
import { type CorsGate, createCorsGate } from "./cors.ts";
import type { RefusedRequest } from "./edge-http.ts";
import { clampTimeoutHeaders, createGrpcFastPath, type GrpcFastPath } from "./grpc-fast-path.ts";
import type { StaticSite } from "./static-site.ts";

/**
 * The edge engine: @connectrpc/connect-node serving Connect (JSON and binary),
 * gRPC-Web and gRPC on one plaintext port, over HTTP/1.1 and h2c alike; plain
 * gRPC calls take rpc-kit's faster path (grpc-fast-path.ts). CORS is decided
 * before any of them (cors.ts), and GET paths that are no RPC may serve a
 * static site (static-site.ts).
 *
 * Node's http2 server refuses HTTP/1.1 without TLS, so each connection's
 * first bytes decide: the HTTP/2 preface goes to an http2 server, anything
 * else to an http server; the same Connect handler serves both.
 */
export interface ConnectEngineOptions {
  readonly interceptors: readonly Interceptor[];
  /** Aborts every handler's signal when fired (forced shutdown). */
  readonly shutdownSignal: AbortSignal;
  /** Largest request message accepted, in bytes. */
  readonly readMaxBytes: number;
  /** Streams one HTTP/2 connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS). Default Node's (unbounded). */
  readonly maxConcurrentStreams?: number;
  /** Largest request header block, in bytes: HTTP/2 SETTINGS_MAX_HEADER_LIST_SIZE and HTTP/1.1 maxHeaderSize. Default Node's. */
  readonly maxHeaderBytes?: number;
  /** Decides cross-origin requests before the API sees them (cors.ts). Default: same origin only. */
  readonly cors?: CorsGate;
  /** Served for GET/HEAD paths that are not RPCs (static-site.ts). Default none: 404. */
  readonly site?: StaticSite;
  /** Told of each request to a method refused before its RPC began (edge-http.ts). Default: nobody. */
  readonly onRefusedBeforeRpc?: (refusal: RefusedRequest) => void;
  /** Connections older than this (±10%) are asked to go away (connection-age.ts). Default 0: never. */
  readonly maxConnectionAgeMs?: number;
  /** After that, calls still open on an HTTP/2 connection get this long before it is destroyed. Default 10,000 ms. */
  readonly maxConnectionAgeGraceMs?: number;
  /** The bounds on what clients send (limits/). */
  readonly limits: EdgeLimits;
}

/** The edge's share of the bounds (limits/settings.ts), built by `serve()`. */
export interface EdgeLimits {
  readonly budget: ByteBudget;
  readonly report: LimitReporter;
  readonly connections: ConnectionLimits;
  readonly sessions: SessionGuard;
  readonly pipeline: Http1Pipeline;
  readonly headersTimeoutMs: number;
  readonly requestTimeoutMs: number;
  readonly keepAliveTimeoutMs: number;
  readonly maxJsonDepth: number;
}

const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/** The bound an HTTP/1.1 parse error of Node's stands for, if any. */
function httpClientErrorLimit(err: NodeJS.ErrnoException, socket: net.Socket): LimitName | undefined {
  if (err.code === "ERR_HTTP_REQUEST_TIMEOUT") {
    // A request whose head was read (the parser holds its message) timed out on its body.
    return (socket as net.Socket & { parser?: { incoming?: unknown } }).parser?.incoming
      ? "request_timeout"
      : "headers_timeout";
  }
  return err.code === "HPE_HEADER_OVERFLOW" ? "header_bytes" : undefined;
}

/** Set by the outermost interceptor: the request became an RPC. */
const rpcBeganKey = createContextKey<{ began: boolean }>({ began: false }, { description: "rpc-kit rpc began" });

const markRpcBegan: Interceptor = (next) => (req) => {
  req.contextValues.get(rpcBeganKey).began = true;
  return next(req);
};

export interface ConnectEngine {
  /** Listens on `host` and `port` (0 for any); resolves with the bound port. */
  listen(host: string, port: number): Promise<number>;
  /**
   * Stops accepting connections, asks open ones to finish (GOAWAY on h2,
   * `connection: close` on HTTP/1.1) and resolves when all have closed.
   */
  close(): Promise<void>;
  /** Destroys every open connection at once. */
  destroy(): void;
}

/**
 * A server-streaming request with no message at all (`curl --data-binary ''`
 * with a Connect streaming content type) is served as a request with the
 * default message instead of failing with "missing input message": the
 * friendlier reading for methods like ListProfiles whose request is empty.
 */
const defaultStreamRequest: Interceptor = (next) => (req) => {
  if (!req.stream || req.method.methodKind !== "server_streaming") return next(req);
  const input = req.message;
  const method = req.method;
  async function* orDefault() {
    let seen = false;
    for await (const m of input) {
      seen = true;
      yield m;
    }
    if (!seen) yield create(method.input);
  }
  return next({ ...req, message: orDefault() } as StreamRequest);
};

/**
 * Every HTTP/2 stream passes here first: its header list within
 * MAX_HEADER_BYTES (stream-body.ts `refuseLargeHeaders`), a lease of the
 * process's request bytes, then the gRPC fast path or connect-node. Node's
 * http2 server serves (req, res) handlers through one "stream" listener of
 * its own (added with the first "request" listener); that listener is taken
 * out and called for the streams left to connect-node.
 */
function gateStreams(
  server: http2.Http2Server,
  fastPath: GrpcFastPath,
  limits: EdgeLimits,
  maxHeaderBytes: number | undefined,
  leases: WeakMap<object, ByteLease>,
): void {
  const compat = server.listeners("stream");
  if (compat.length !== 1)
    throw new Error("node:http2 changed how it serves requests: rpc-kit cannot gate its streams");
  const connectNode = compat[0] as (...args: unknown[]) => void;
  server.removeListener("stream", connectNode);
  server.on("stream", (stream, headers, flags, rawHeaders: string[]) => {
    if (
      maxHeaderBytes !== undefined &&
      refuseLargeHeaders(stream, headers, rawHeaders, maxHeaderBytes, limits.report)
    ) {
      return;
    }
    const client = clientAddress(stream.session?.socket?.remoteAddress);
    const lease = limits.budget.lease(client);
    if (fastPath.accepts(headers)) {
      fastPath.handle(stream, headers, lease); // which gives the lease back when the stream closes
      return;
    }
    stream.once("close", () => lease.release());
    leases.set(stream, lease);
    connectNode.call(server, stream, headers, flags, rawHeaders);
  });
}

/** The began-flag of each request that may be refused before its RPC, read by `contextValues`. */
const rpcBegan = new WeakMap<object, { began: boolean }>();

export function createConnectEngine(
  registrations: readonly ServiceRegistration[],
  options: ConnectEngineOptions,
): ConnectEngine {
  const { limits } = options;
  /** The lease of each request's body: an h2 stream's (gateStreams), or an HTTP/1.1 request's. */
  const leases = new WeakMap<object, ByteLease>();
  const adapter = connectAdapter({
    interceptors: [markRpcBegan, ...options.interceptors, defaultStreamRequest],
    shutdownSignal: options.shutdownSignal,
    readMaxBytes: options.readMaxBytes,
    // A misspelt field is an error the caller should see, not a silently empty value.
    jsonOptions: { ignoreUnknownFields: false },
    contextValues: (req) => {
      // The deadline and signal are connect-node's: the record takes them when the handler runs.
      const record = new CallRecord();
      record.peerAddress = req.socket.remoteAddress;
      return createContextValues()
        .set(callRecordKey, record)
        .set(rpcBeganKey, rpcBegan.get(req) ?? { began: false });
    },
    ...(options.site && { fallback: options.site.serve }),
    routes(router) {
      for (const registration of registrations) {
        for (const spec of scopedMethodSpecs(registration)) {
          router.rpc(spec.method, spec.impl as never);
        }
      }
    },
    body: (req, res, method, header) => requestBody(req, res, method.methodKind, header),
  });
  /** The body connect-node reads: bounded, coalesced, decompressed and checked by rpc-kit (limits/request-body.ts). */
  const requestBody = (req: NodeServerRequest, res: NodeServerResponse, kind: string, header: Headers) => {
    const client = clientAddress(req.socket.remoteAddress);
    let lease = "stream" in req ? leases.get(req.stream) : undefined;
    if (lease === undefined) {
      const own = limits.budget.lease(client);
      res.once("close", () => own.release());
      lease = own;
    }
    return boundedRequestBody(req, header, {
      lease,
      maxMessageBytes: options.readMaxBytes,
      maxJsonDepth: limits.maxJsonDepth,
      requestTimeoutMs: limits.requestTimeoutMs,
      singleMessage: kind === "unary" || kind === "server_streaming",
      onRefused: (limit, unread) => {
        limits.report(limit, client);
        if (!unread) return;
        // The rest of the body is not wanted: HTTP/1.1 closes after the answer, h2 resets the stream after it.
        if ("stream" in req) res.once("finish", () => req.stream.close(http2.constants.NGHTTP2_NO_ERROR));
        else if (!res.headersSent) res.setHeader("connection", "close");
      },
    });
  };
  const cors = options.cors ?? createCorsGate({ corsAllowedOrigins: [] });
  // Procedures by path, for telling which refused requests were meant as RPCs.
  const procedures = new Map<string, { service: string; method: string }>();
  for (const registration of registrations) {
    for (const m of registration.service.methods) {
      procedures.set(`/${registration.service.typeName}/${m.name}`, {
        service: registration.service.typeName,
        method: m.name,
      });
    }
  }
  const onRefused = options.onRefusedBeforeRpc;
  const handler: typeof adapter = (req, res) => {
    if (cors(req, res)) return;
    if (onRefused !== undefined) {
      const procedure = procedures.get((req.url ?? "").split("?", 1)[0] ?? "");
      if (procedure !== undefined) {
        const began = { began: false };
        rpcBegan.set(req, began);
        const startedAt = performance.now();
        res.once("finish", () => {
          if (began.began || res.statusCode < 400) return;
          onRefused({
            ...procedure,
            status: String(res.statusCode),
            contentType: req.headers["content-type"],
            durationMs: performance.now() - startedAt,
            client: req.socket.remoteAddress,
          });
        });
      }
    }
    // connect-node arms deadlines with setTimeout: clamp timeouts no timer holds (see clampTimeoutHeaders).
    clampTimeoutHeaders(req.headers);
    adapter(req, res);
  };

  const h1 = http.createServer({
    ...(options.maxHeaderBytes !== undefined && { maxHeaderSize: options.maxHeaderBytes }),
    // Node's own deadlines on a request's head and whole request, checked every second (see below).
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: Math.max(limits.requestTimeoutMs, limits.headersTimeoutMs),
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    connectionsCheckingInterval: 1_000,
  });
  // Node starts checking those deadlines when an http server starts listening. This one never
  // listens (the sniffer below hands it its connections): without this, a partial head stayed
  // open for minutes.
  h1.emit("listening");
  h1.on("clientError", (err: NodeJS.ErrnoException, socket: net.Socket) => {
    const limit = httpClientErrorLimit(err, socket);
    if (limit !== undefined) limits.report(limit, clientAddress(socket.remoteAddress));
    // As Node answers when nobody listens for "clientError".
    const res = (socket as net.Socket & { _httpMessage?: http.ServerResponse | null })._httpMessage;
    if (socket.writable && !res?.headersSent) {
      socket.write(
        limit === "headers_timeout" || limit === "request_timeout"
          ? "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n"
          : limit === "header_bytes"
            ? "HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n\r\n"
            : "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n",
      );
    }
    socket.destroy(err);
  });
  const h2 = http2.createServer(
    {
      settings: {
        ...(options.maxConcurrentStreams !== undefined && { maxConcurrentStreams: options.maxConcurrentStreams }),
        ...(options.maxHeaderBytes !== undefined && { maxHeaderListSize: headerListCeiling(options.maxHeaderBytes) }),
      },
      // Resets are budgeted per client address across connections (session-guard.ts), not per connection.
      streamResetBurst: 2 ** 32 - 1,
      streamResetRate: 2 ** 32 - 1,
    },
    handler,
  );
  gateStreams(
    h2,
    createGrpcFastPath(registrations, {
      interceptors: options.interceptors,
      shutdownSignal: options.shutdownSignal,
      readMaxBytes: options.readMaxBytes,
      requestTimeoutMs: limits.requestTimeoutMs,
      report: limits.report,
      ...(onRefused && { onRefusedBeforeRpc: onRefused }),
    }),
    limits,
    options.maxHeaderBytes,
    leases,
  );
  const sockets = new Set<net.Socket>();
  const sessions = new Set<http2.ServerHttp2Session>();
  const age = connectionAge(options.maxConnectionAgeMs ?? 0, options.maxConnectionAgeGraceMs ?? 10_000);
  let closing = false;

  h2.on("session", (session) => {
    limits.sessions.watch(session);
    sessions.add(session);
    age.session(session);
    session.once("close", () => sessions.delete(session));
    if (closing) session.close();
  });
  // HTTP/1.1 sockets with the number of requests in progress on each: the
  // http server does not track connections it did not accept itself, so idle
  // keep-alive sockets are closed here at shutdown.
  const h1Requests = new Map<net.Socket, number>();
  h1.on("request", (req, res) => {
    const socket = req.socket;
    h1Requests.set(socket, (h1Requests.get(socket) ?? 0) + 1);
    // Once closing (or the connection is old), ask keep-alive clients to reconnect elsewhere.
    if (closing || age.isOld(socket)) res.setHeader("connection", "close");
    res.once("close", () => {
      const left = (h1Requests.get(socket) ?? 1) - 1;
      h1Requests.set(socket, left);
      if (closing && left === 0) socket.end();
    });
    limits.pipeline.dispatch(req, res, handler as http.RequestListener);
  });

  const listener = net.createServer((socket) => {
    if (!limits.connections.admit(socket)) return;
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    // Its first bytes within HEADERS_TIMEOUT_MS; then Node's http deadlines, or the session guard's, take over.
    const firstBytes = limits.connections.firstBytesDeadline(socket);
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const n = Math.min(head.length, H2_PREFACE.length);
      const isH2 = head.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
      if (isH2 && head.length < H2_PREFACE.length) return; // need more bytes to decide
      socket.off("data", onData);
      firstBytes();
      socket.pause();
      socket.unshift(head);
      if (isH2) {
        h2.emit("connection", socket);
      } else {
        h1Requests.set(socket, 0);
        socket.once("close", () => h1Requests.delete(socket));
        age.socket(socket);
        h1.emit("connection", socket);
        socket.resume();
      }
    };
    socket.on("data", onData);
    socket.on("error", () => socket.destroy());
  });

  return {
    listen(host, port) {
      return new Promise((resolve, reject) => {
        listener.once("error", reject);
        listener.listen({ host: host === "::" ? undefined : host, port, ipv6Only: false }, () => {
          listener.off("error", reject);
          resolve((listener.address() as net.AddressInfo).port);
        });
      });
    },
    close() {
      closing = true;
      const closed = new Promise<void>((resolve) => listener.close(() => resolve()));
      for (const session of sessions) session.close();
      for (const [socket, inProgress] of h1Requests) if (inProgress === 0) socket.end();
      return closed;
    },
    destroy() {
      closing = true;
      listener.close();
      for (const socket of sockets) socket.destroy();
    },
  };
}
