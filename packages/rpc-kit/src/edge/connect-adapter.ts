import type * as http from "node:http";
import type * as http2 from "node:http2";
import type { DescMethod } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ConnectRouter,
  type ConnectRouterOptions,
  type ContextValues,
  createConnectRouter,
} from "@connectrpc/connect";
import type { UniversalServerResponse } from "@connectrpc/connect/protocol";
import { universalRequestFromNodeRequest, universalResponseToNodeResponse } from "@connectrpc/connect-node";
import { encodeBase64, GRPC_WEB_TEXT, isGrpcWebText } from "../grpc/grpc-web-text.ts";

/** The requests and responses of Node's http and http2 (compatibility API) servers. */
export type NodeServerRequest = http.IncomingMessage | http2.Http2ServerRequest;
export type NodeServerResponse = http.ServerResponse | http2.Http2ServerResponse;

/**
 * connect-node's `connectNodeAdapter`, with the request body read by rpc-kit
 * (limits/request-body.ts) instead of handed to connect-node as the raw
 * Node stream: the same router, the same universal request and response
 * functions connect-node exports for exactly this, one step in between.
 * gRPC-Web's text mode, which connect-node does not speak, is served as
 * binary gRPC-Web in between: the body reader decodes the request's base64,
 * and the answer is encoded back here (grpc/grpc-web-text.ts).
 */
export interface ConnectAdapterOptions extends ConnectRouterOptions {
  routes(router: ConnectRouter): void;
  contextValues(req: NodeServerRequest): ContextValues;
  /** Requests to paths that are no RPC. Default 404. */
  fallback?: (req: NodeServerRequest, res: NodeServerResponse) => void;
  /** The body connect-node reads for a call to `method`; may edit `header` (the universal request's). */
  body(req: NodeServerRequest, res: NodeServerResponse, method: DescMethod, header: Headers): AsyncIterable<Uint8Array>;
  /** A response that could not be written (connect-node logs these with console.error). */
  onWriteError?: (err: unknown, method: DescMethod) => void;
}

export function connectAdapter(
  options: ConnectAdapterOptions,
): (req: NodeServerRequest, res: NodeServerResponse) => void {
  const router = createConnectRouter(options);
  options.routes(router);
  const handlers = new Map(router.handlers.map((h) => [h.requestPath, h]));
  const fallback =
    options.fallback ??
    ((_req: NodeServerRequest, res: NodeServerResponse) => {
      res.statusCode = 404;
      res.end();
    });
  return (req, res) => {
    const handler = handlers.get((req.url ?? "").split("?", 1)[0] ?? "");
    if (handler === undefined) {
      fallback(req, res);
      return;
    }
    const uReq = universalRequestFromNodeRequest(req, res, undefined, options.contextValues(req));
    const text = isGrpcWebText(uReq.header.get("content-type"));
    uReq.body = options.body(req, res, handler.method, uReq.header);
    handler(uReq)
      .then((uRes) => universalResponseToNodeResponse(text ? asText(uRes) : uRes, res))
      .catch((reason: unknown) => {
        if (ConnectError.from(reason).code !== Code.Aborted) options.onWriteError?.(reason, handler.method);
      });
  };
}

/** A binary gRPC-Web answer as text mode: the same frames (trailers included), base64-encoded. */
function asText(res: UniversalServerResponse): UniversalServerResponse {
  if (res.status !== 200) return res;
  const header = new Headers(res.header);
  header.set("content-type", GRPC_WEB_TEXT);
  header.delete("content-length");
  return {
    ...res,
    header,
    ...(res.body !== undefined && { body: encodeBase64(res.body) }),
  };
}
