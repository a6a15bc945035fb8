import type * as http2 from "node:http2";
import { constants } from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import { encodeGrpcMessage } from "../grpc/grpc-status.ts";
import type { ByteLease } from "./byte-budget.ts";
import { clientAddress } from "./client-address.ts";
import { EnvelopeReader } from "./envelope-reader.ts";
import { bufferedBytesError, LimitError, limitOf } from "./limit-error.ts";
import type { LimitReporter } from "./limit-reporter.ts";
import { watchRequest } from "./request-deadlines.ts";
import { envelopeDecoder } from "./request-decoding.ts";
import { closeByServer, countRequestBytes, headerListSize } from "./session-guard.ts";

/**
 * Reads the request of a gRPC call off its HTTP/2 stream as whole envelopes
 * (envelope-reader.ts), for rpc-kit's gRPC fast path at the edge and for the
 * grpc-js engine (whose own decoder it feeds): within the call's lease of
 * the process's request bytes, decompressed within bounds, and complete
 * within REQUEST_TIMEOUT_MS.
 */
export interface StreamBodyOptions {
  /** The call's lease: released when the stream closes. */
  readonly lease: ByteLease;
  readonly maxMessageBytes: number;
  /** `grpc-encoding` when the reader decompresses it (request-decoding.ts `inflatable`). */
  readonly encoding: string | undefined;
  readonly requestTimeoutMs: number;
  readonly report: LimitReporter;
}

export interface StreamBodyHandlers {
  /** A whole envelope, identity-encoded. */
  message(envelope: Buffer): void;
  /** The request ended; `rest` is an envelope it cut short, if any. */
  end(rest: Buffer | undefined): void;
  /** The request was refused (a bound, undecompressible data); nothing more is read. */
  fail(err: ConnectError): void;
}

export function readStreamBody(stream: http2.ServerHttp2Stream, o: StreamBodyOptions, h: StreamBodyHandlers): void {
  const client = o.lease.client ?? clientAddress(stream.session?.socket?.remoteAddress);
  let done = false;
  const fail = (err: unknown) => {
    if (done) return;
    done = true;
    deadline.done();
    stream.off("data", onData);
    stream.off("end", onEnd);
    const limit = limitOf(err);
    if (limit !== undefined) o.report(limit, client);
    h.fail(ConnectError.from(err, Code.Internal));
  };
  const reader = new EnvelopeReader({
    maxMessageBytes: o.maxMessageBytes,
    lease: o.lease,
    decode: envelopeDecoder({
      encoding: o.encoding,
      maxMessageBytes: o.maxMessageBytes,
      lease: o.lease,
      maxJsonDepth: undefined,
    }),
  });
  const onData = (chunk: Buffer) => {
    countRequestBytes(stream.session, chunk.length);
    try {
      for (const envelope of reader.push(chunk)) h.message(envelope);
    } catch (err) {
      fail(err);
    }
  };
  const onEnd = () => {
    if (done) return;
    done = true;
    deadline.done();
    h.end(reader.rest());
  };
  const deadline = watchRequest(o.requestTimeoutMs, () =>
    fail(new LimitError("request_timeout", "the request was not received in time", Code.DeadlineExceeded)),
  );
  // One listener for both: the deadline is no longer watched, the call's bytes are given back.
  stream.once("close", () => {
    deadline.done();
    o.lease.release();
  });
  // Nothing left of the budget: refused before a byte of the body is read.
  const refused = o.lease.refusal(1);
  if (refused !== undefined) {
    fail(bufferedBytesError(refused));
    return;
  }
  stream.on("data", onData);
  stream.prependListener("end", onEnd);
}

/**
 * The header list an HTTP/2 server advertises (SETTINGS_MAX_HEADER_LIST_SIZE)
 * and Node enforces by itself, with a bare RST_STREAM(ENHANCE_YOUR_CALM),
 * once the client has acknowledged it: four times MAX_HEADER_BYTES, at least
 * 64 KiB. Up to it, rpc-kit enforces MAX_HEADER_BYTES itself, on every stream
 * (the first ones too, before the acknowledgement), and answers a gRPC call
 * with a status that says what happened.
 */
export function headerListCeiling(maxHeaderBytes: number): number {
  return Math.max(4 * maxHeaderBytes, 64 * 1024);
}

/**
 * Refuses a stream whose header list is past MAX_HEADER_BYTES (true when it
 * did); counts the header list as request bytes otherwise.
 */
export function refuseLargeHeaders(
  stream: http2.ServerHttp2Stream,
  headers: http2.IncomingHttpHeaders,
  rawHeaders: readonly string[],
  maxHeaderBytes: number,
  report: LimitReporter,
): boolean {
  const size = headerListSize(rawHeaders);
  if (size <= maxHeaderBytes) {
    countRequestBytes(stream.session, size);
    return false;
  }
  stream.on("error", () => {});
  report("header_bytes", clientAddress(stream.session?.socket?.remoteAddress));
  if (
    headers["content-type"]?.startsWith("application/grpc") &&
    !headers["content-type"].startsWith("application/grpc-web")
  ) {
    refuseGrpcStream(stream, new LimitError("header_bytes", `request headers larger than ${maxHeaderBytes} bytes`));
  } else {
    closeByServer(stream, constants.NGHTTP2_ENHANCE_YOUR_CALM);
  }
  return true;
}

/**
 * Ends a gRPC call that the stream layer refused: trailers-only with the
 * error's status while no response has begun (then RST_STREAM(NO_ERROR), the
 * HTTP/2 way to say "stop sending"), otherwise a reset.
 */
export function refuseGrpcStream(stream: http2.ServerHttp2Stream, err: ConnectError): void {
  if (stream.destroyed || stream.closed) return;
  if (stream.headersSent) {
    closeByServer(stream, constants.NGHTTP2_CANCEL);
    return;
  }
  stream.respond(
    {
      ":status": 200,
      "content-type": "application/grpc",
      "grpc-status": String(err.code),
      "grpc-message": encodeGrpcMessage(err.rawMessage),
    },
    { endStream: true },
  );
  stream.close(constants.NGHTTP2_NO_ERROR);
}
