import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest } from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import { Base64Decoder, GRPC_WEB_BINARY, isGrpcWebText } from "../grpc/grpc-web-text.ts";
import type { ByteLease } from "./byte-budget.ts";
import { EnvelopeReader } from "./envelope-reader.ts";
import { GrowableBuffer } from "./growable-buffer.ts";
import { bufferedBytesError, LimitError, type LimitName, limitOf, messageSizeError } from "./limit-error.ts";
import { watchRequest } from "./request-deadlines.ts";
import { decodeBody, envelopeDecoder, inflatable, type MessageDecoding } from "./request-decoding.ts";
import { countRequestBytes } from "./session-guard.ts";

/**
 * The request body connect-node reads at the edge (Connect, gRPC-Web, and
 * gRPC that the fast path does not take), over HTTP/1.1 or HTTP/2, read by
 * rpc-kit first:
 *
 * - within the call's lease of the process's request bytes, refused before a
 *   byte is read when nothing is left;
 * - coalesced: one growing buffer, one chunk per envelope handed on, so that
 *   connect-node neither keeps one object per received chunk nor re-scans its
 *   buffered chunks on each new one (it did, quadratically: 0.2 MiB sent in
 *   small frames kept the gateway at 100% CPU for two minutes);
 * - decompressed within bounds (the header naming the compression is then
 *   removed, so connect-node reads identity bytes), JSON checked for depth;
 * - for unary and server-streaming methods, whole within REQUEST_TIMEOUT_MS;
 * - gRPC-Web's text mode decoded from base64 (the header then names binary
 *   gRPC-Web, which connect-node serves; the edge encodes the answer back).
 */
export interface RequestBodyOptions {
  readonly lease: ByteLease;
  readonly maxMessageBytes: number;
  readonly maxJsonDepth: number;
  readonly requestTimeoutMs: number;
  /** True for unary and server-streaming methods: one request message, read whole. */
  readonly singleMessage: boolean;
  /** Told of a request the bounds refused; `unread` when its body was not read to its end. */
  readonly onRefused: (limit: LimitName, unread: boolean) => void;
}

type NodeRequest = IncomingMessage | Http2ServerRequest;

/** How each protocol frames and compresses a request body, from its content type. */
function framingOf(contentType: string): { enveloped: boolean; encodingHeader: string } | undefined {
  if (contentType.startsWith("application/grpc")) return { enveloped: true, encodingHeader: "grpc-encoding" };
  if (contentType.startsWith("application/connect+")) {
    return { enveloped: true, encodingHeader: "connect-content-encoding" };
  }
  if (/^application\/(json|proto)(;|$)/.test(contentType)) {
    return { enveloped: false, encodingHeader: "content-encoding" };
  }
  return undefined;
}

/**
 * The body for connect-node in place of the request's own; `header` (the
 * universal request's) loses the compression it names when rpc-kit
 * decompresses it.
 */
export function boundedRequestBody(
  req: NodeRequest,
  header: Headers,
  o: RequestBodyOptions,
): AsyncIterable<Uint8Array> {
  const text = isGrpcWebText(header.get("content-type")) ? new Base64Decoder() : undefined;
  if (text) header.set("content-type", GRPC_WEB_BINARY);
  const contentType = (header.get("content-type") ?? "").toLowerCase();
  const framing = framingOf(contentType);
  const encoding = framing && (header.get(framing.encodingHeader) ?? undefined)?.toLowerCase();
  const decoding: MessageDecoding = {
    encoding: inflatable(encoding) ? encoding : undefined,
    maxMessageBytes: o.maxMessageBytes,
    lease: o.lease,
    maxJsonDepth: contentType.includes("json") ? o.maxJsonDepth : undefined,
  };
  if (framing && decoding.encoding !== undefined) {
    header.delete(framing.encodingHeader);
    header.delete("content-length");
  }
  let complete = false;
  const refused = (err: unknown): unknown => {
    const limit = limitOf(err);
    if (limit !== undefined) o.onRefused(limit, !complete);
    return err;
  };
  if (!o.singleMessage && framing?.enveloped) return streamOfEnvelopes(req, o, decoding, refused, text);
  return (async function* () {
    const room = o.lease.refusal(1);
    if (room !== undefined) throw refused(bufferedBytesError(room));
    const chunks: Buffer[] = [];
    try {
      if (framing?.enveloped) {
        const reader = new EnvelopeReader({
          maxMessageBytes: o.maxMessageBytes,
          lease: o.lease,
          decode: envelopeDecoder(decoding),
        });
        await readAll(req, o, (chunk) => chunks.push(...reader.push(text ? text.push(chunk) : chunk)));
        complete = true;
        text?.end();
        const rest = reader.rest();
        if (rest) chunks.push(rest); // cut short: connect-node says so
      } else {
        const body = new GrowableBuffer();
        // A declared length is taken (and allocated) at once, as an envelope's is; else bytes as they come.
        const declared = declaredLength(header.get("content-length"), o.maxMessageBytes);
        if (declared !== undefined) take(o.lease, declared);
        await readAll(req, o, (chunk) => {
          if (body.length + chunk.length > (declared ?? o.maxMessageBytes)) {
            if (declared !== undefined && body.length + chunk.length <= o.maxMessageBytes) {
              throw new ConnectError("protocol error: more bytes than the content-length", Code.InvalidArgument);
            }
            throw messageSizeError(o.maxMessageBytes);
          }
          if (declared === undefined) take(o.lease, chunk.length);
          body.append(chunk, declared);
        });
        complete = true;
        chunks.push(framing ? decodeBody(body.take(), decoding) : body.take());
      }
    } catch (err) {
      throw refused(err);
    }
    yield* chunks;
  })();
}

/** A content-length within the limit, refused past it; undefined when absent or not a number. */
function declaredLength(value: string | null, maxBytes: number): number | undefined {
  if (value === null || !/^\d{1,15}$/.test(value)) return undefined;
  const n = Number(value);
  if (n > maxBytes) throw messageSizeError(maxBytes);
  return n;
}

function take(lease: ByteLease, n: number): void {
  const refused = lease.grow(n);
  if (refused !== undefined) throw bufferedBytesError(refused);
}

/** Client- and bidi-streaming requests: envelopes handed on as they complete, each given back to the budget once read. */
async function* streamOfEnvelopes(
  req: NodeRequest,
  o: RequestBodyOptions,
  decoding: MessageDecoding,
  refused: (err: unknown) => unknown,
  text: Base64Decoder | undefined,
): AsyncGenerator<Uint8Array> {
  const reader = new EnvelopeReader({
    maxMessageBytes: o.maxMessageBytes,
    lease: o.lease,
    decode: envelopeDecoder(decoding),
  });
  const session = "stream" in req ? req.stream.session : undefined;
  try {
    for await (const chunk of req as AsyncIterable<Buffer>) {
      countRequestBytes(session, chunk.length);
      for (const envelope of reader.push(text ? text.push(chunk) : chunk)) {
        yield envelope;
        o.lease.release(envelope.length);
      }
    }
    text?.end();
  } catch (err) {
    throw refused(err);
  }
  const rest = reader.rest();
  if (rest) yield rest;
}

/** Reads the whole body with 'data' events (no promise per chunk), within REQUEST_TIMEOUT_MS. */
function readAll(req: NodeRequest, o: RequestBodyOptions, onChunk: (chunk: Buffer) => void): Promise<void> {
  const session = "stream" in req ? req.stream.session : undefined;
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      deadline.done();
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onError);
      req.off("close", onClose);
    };
    const stop = (err: unknown) => {
      cleanup();
      req.pause();
      reject(err);
    };
    const onData = (chunk: Buffer) => {
      countRequestBytes(session, chunk.length);
      try {
        onChunk(chunk);
      } catch (err) {
        stop(err);
      }
    };
    const onEnd = () => {
      cleanup();
      resolve();
    };
    const onError = (err: unknown) => stop(ConnectError.from(err, Code.Canceled));
    const onClose = () => {
      if (!req.complete) stop(new ConnectError("the request was aborted", Code.Canceled));
    };
    const deadline = watchRequest(o.requestTimeoutMs, () =>
      stop(new LimitError("request_timeout", "the request was not received in time", Code.DeadlineExceeded)),
    );
    if (req.readableEnded) {
      onEnd();
      return;
    }
    req.on("data", onData);
    req.once("end", onEnd);
    req.once("error", onError);
    req.once("close", onClose);
  });
}
