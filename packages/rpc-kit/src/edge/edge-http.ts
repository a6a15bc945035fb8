import type { IncomingHttpHeaders } from "node:http";

/**
 * What the edge's own HTTP handlers (cors.ts, static-site.ts) use of a
 * request and its response: the parts that HTTP/1.1's and h2c's request
 * and response objects share.
 */
export interface EdgeRequest {
  readonly method?: string | undefined;
  readonly url?: string | undefined;
  readonly headers: IncomingHttpHeaders;
}

export interface EdgeResponse {
  writeHead(status: number, headers?: Record<string, string>): unknown;
  setHeader(name: string, value: string): unknown;
  getHeader(name: string): number | string | string[] | undefined;
  end(): unknown;
  end(body: string | Uint8Array): unknown;
}

/**
 * A request to one of the edge's methods that was answered with an error
 * before the RPC began (before any interceptor ran, so no span, metric or
 * per-call log line exists for it): an undecodable body, a wrong content
 * type, a malformed timeout, an oversized message.
 */
export interface RefusedRequest {
  /** `package.Service` */
  readonly service: string;
  readonly method: string;
  /** The HTTP status connect-node answered with, or the gRPC code of the gRPC fast path (`InvalidArgument`). */
  readonly status: string;
  readonly contentType: string | undefined;
  readonly durationMs: number;
  /** The connection's remote address. */
  readonly client: string | undefined;
}
