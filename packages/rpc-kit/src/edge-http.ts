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
