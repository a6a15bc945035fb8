import type * as http2 from "node:http2";
import type { Server, ServerCredentials } from "@grpc/grpc-js";
import type { ByteBudget } from "./byte-budget.ts";
import { clientAddress } from "./client-address.ts";
import type { LimitReporter } from "./limit-reporter.ts";
import { inflatable } from "./request-decoding.ts";
import type { SessionGuard } from "./session-guard.ts";
import { readStreamBody, refuseGrpcStream, refuseLargeHeaders } from "./stream-body.ts";

/**
 * rpc-kit's bounds in front of a grpc-js Server, which has none of them:
 * its HTTP/2 servers are wrapped as grpc-js creates them at bind time, so
 * that every connection and stream passes rpc-kit's checks before grpc-js
 * sees it.
 *
 * - MAX_CONNECTIONS through Node's own `server.maxConnections`.
 * - Each session watched by the SessionGuard (SETTINGS deadline, idleness,
 *   PING policy, control bytes). grpc-js's own `grpc.max_connection_idle_ms`
 *   is not used: it closes an idle connection after one to two times its
 *   setting, depending on timer rounding.
 * - Node's per-connection stream-reset limiter is turned off, and so is its
 *   limit on refused streams: either answered the gateway's relayed
 *   cancellations (100–150/s) with GOAWAY(INTERNAL_ERROR) on the one pooled
 *   connection, failing every call in flight on it. What a reset stream costs
 *   is bounded by MAX_CONCURRENT_STREAMS and by handlers that stop on
 *   cancellation; resets are limited per client at the edge.
 * - Each stream: its header list within MAX_HEADER_BYTES (stream-body.ts
 *   `headerListCeiling`: Node enforces the SETTINGS value only once the
 *   client acknowledged it, and with a bare reset), and its body read by stream-body.ts and fed to grpc-js's decoder
 *   one whole, decompressed envelope at a time (grpc-js keeps each DATA
 *   chunk as a Buffer of its own: 4 MiB sent one byte per frame exhausted
 *   the heap).
 *
 * grpc-js has no public hook for any of this: the wrapper relies on
 * `createHttp2Server` and `commonServerOptions` (grpc-js 1.14) and throws
 * at start, not silently, if they change.
 */
export interface GrpcJsGuardOptions {
  readonly maxConnections: number;
  readonly headersTimeoutMs: number;
  readonly maxHeaderBytes: number;
  readonly maxMessageBytes: number;
  readonly requestTimeoutMs: number;
  readonly budget: ByteBudget;
  readonly sessions: SessionGuard;
  readonly report: LimitReporter;
}

interface GrpcJsInternals {
  createHttp2Server?: (credentials: ServerCredentials) => http2.Http2Server;
  commonServerOptions?: http2.ServerOptions & Record<string, unknown>;
}

/** Largest value Node takes for streamResetBurst/streamResetRate: the limiter never trips. */
const UNLIMITED = 2 ** 32 - 1;

export function guardGrpcJsServer(server: Server, o: GrpcJsGuardOptions): void {
  const internals = server as unknown as GrpcJsInternals;
  const { createHttp2Server, commonServerOptions } = internals;
  if (typeof createHttp2Server !== "function" || commonServerOptions === undefined) {
    throw new Error("@grpc/grpc-js changed its Server internals: rpc-kit cannot put its connection limits in front");
  }
  Object.assign(commonServerOptions, {
    streamResetBurst: UNLIMITED,
    streamResetRate: UNLIMITED,
    // Node keeps a reset stream in its table until the event loop gets to destroying it, and refuses
    // new streams (RST ENHANCE_YOUR_CALM) while the table is at MAX_CONCURRENT_STREAMS, though the
    // client counts them closed; after 100 such refusals it kills the connection with
    // GOAWAY(INTERNAL_ERROR). A gateway relaying cancellations under load hit it every ~4 s. Refused
    // streams were never processed (the client retries them); the connection stays.
    maxSessionRejectedStreams: UNLIMITED,
    // TLS (mTLS) handshakes get the same deadline as a plaintext connection's SETTINGS.
    handshakeTimeout: o.headersTimeoutMs,
  });
  internals.createHttp2Server = (credentials) => {
    const h2 = createHttp2Server.call(server, credentials);
    h2.maxConnections = o.maxConnections;
    h2.on("drop", (d?: { remoteAddress?: string }) => o.report("connections", clientAddress(d?.remoteAddress)));
    h2.on("session", (session) => o.sessions.watch(session));
    const grpcJs = h2.listeners("stream") as ((...args: unknown[]) => void)[];
    h2.removeAllListeners("stream");
    h2.on("stream", (stream, headers, flags, rawHeaders: string[]) => {
      if (refuseLargeHeaders(stream, headers, rawHeaders, o.maxHeaderBytes, o.report)) return;
      const client = clientAddress(stream.session?.socket?.remoteAddress);
      const lease = o.budget.lease(client);
      // Decompressed here, within the bounds: grpc-js then reads identity messages.
      const encoding = headers["grpc-encoding"] as string | undefined;
      const inflating = inflatable(encoding);
      if (inflating) delete headers["grpc-encoding"];
      for (const listener of grpcJs) listener.call(h2, stream, headers, flags, rawHeaders);
      const decoder = stream.listeners("data") as ((chunk: Buffer) => void)[];
      if (decoder.length === 0) return; // grpc-js answered already (unknown method, bad content type): nothing leased
      stream.removeAllListeners("data");
      const feed = (bytes: Buffer) => {
        for (const listener of decoder) listener.call(stream, bytes);
      };
      readStreamBody(
        stream,
        {
          lease,
          maxMessageBytes: o.maxMessageBytes,
          encoding: inflating ? encoding : undefined,
          requestTimeoutMs: o.requestTimeoutMs,
          report: o.report,
        },
        { message: feed, end: (rest) => rest && feed(rest), fail: (err) => refuseGrpcStream(stream, err) },
      );
    });
    return h2;
  };
}
