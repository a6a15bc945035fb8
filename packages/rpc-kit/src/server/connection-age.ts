import type * as http2 from "node:http2";
import { constants as http2constants } from "node:http2";

/**
 * Max connection age for the edge engine, as grpc-js does it for internal
 * servers (`grpc.max_connection_age_ms`): a connection older than the age
 * (±10% jitter, so a fleet's connections do not all go at once) is asked to
 * go away, and its client reconnects, through the Service, to whichever
 * replica it lands on. Without it, a long-lived HTTP/2 client of a ClusterIP
 * Service stays on one pod for ever, and new replicas get no share.
 *
 * - HTTP/2, as grpc-js's server does it: GOAWAY (NO_ERROR, "max_age"), then
 *   close: calls in flight finish, new ones go to a new connection; the
 *   connection is destroyed after the grace period. A stream the client sent
 *   before it read the GOAWAY is refused (REFUSED_STREAM, never processed):
 *   gRPC clients and browsers retry it themselves; connect-node's client
 *   does not, and fails ~1% of calls at a 300 ms age (docs/pitfalls.md).
 *   (A notice GOAWAY, PING, then the final GOAWAY would avoid the race, but
 *   Node 24's client stalls the connection after the notice: measured.)
 * - HTTP/1.1: the next response says `connection: close`, and Node's http
 *   server closes the connection after it. Idle connections are left to the
 *   keep-alive timeout: closing them would race a request the client is sending.
 */
export interface ConnectionAge {
  /** Starts the clock on an HTTP/2 session. */
  session(session: http2.ServerHttp2Session): void;
  /** Starts the clock on an HTTP/1.1 connection. */
  socket(socket: { once(event: "close", fn: () => void): unknown }): void;
  /** True once an HTTP/1.1 connection is past its age: its responses say `connection: close`. */
  isOld(socket: object): boolean;
}

/** The GOAWAY's debug data, as grpc-js sends it. */
const MAX_AGE = Buffer.from("max_age");

/** The age of one connection: `ageMs` ± 10%. */
export function jitteredAgeMs(ageMs: number, random: () => number = Math.random): number {
  return Math.round(ageMs * (0.9 + 0.2 * random()));
}

/** Connection aging; `ageMs` 0 turns it off. */
export function connectionAge(ageMs: number, graceMs: number): ConnectionAge {
  const old = new WeakSet<object>();
  const after = (ms: number, fn: () => void) => setTimeout(fn, ms).unref();
  return {
    session(session) {
      if (ageMs <= 0) return;
      const timer = after(jitteredAgeMs(ageMs), () => {
        if (session.closed || session.destroyed) return;
        const grace = after(graceMs, () => session.destroy());
        session.once("close", () => clearTimeout(grace));
        session.goaway(http2constants.NGHTTP2_NO_ERROR, 2 ** 31 - 1, MAX_AGE);
        session.close();
      });
      session.once("close", () => clearTimeout(timer));
    },
    socket(socket) {
      if (ageMs <= 0) return;
      const timer = after(jitteredAgeMs(ageMs), () => old.add(socket));
      socket.once("close", () => clearTimeout(timer));
    },
    isOld: (socket) => old.has(socket),
  };
}
