import type * as http2 from "node:http2";
import { constants } from "node:http2";
import { clientAddress } from "./client-address.ts";
import type { LimitReporter } from "./limit-reporter.ts";
import type { ResetBudget } from "./reset-budget.ts";

/**
 * Bounds on one HTTP/2 connection, on both engines: what Node's http2 server
 * does not enforce by itself.
 *
 * - SETTINGS within HEADERS_TIMEOUT_MS: a connection that sent only the
 *   preface, or nothing, stayed open for minutes.
 * - Idle: no stream for IDLE_TIMEOUT_MS → GOAWAY(NO_ERROR) and close, as
 *   gRPC's max_connection_idle (checked once a second).
 * - PING policy, grpc-go's keepalive enforcement: a PING less than
 *   MIN_PING_INTERVAL_MS after the previous one, with nothing but PING ACKs
 *   sent in between, is a strike; the third gets GOAWAY(ENHANCE_YOUR_CALM,
 *   "too_many_pings"). PINGs every millisecond were answered for ever.
 * - Control bytes: bytes read that carry no request data (WINDOW_UPDATE,
 *   PING, SETTINGS, PRIORITY, RST_STREAM, the 9-byte headers of tiny DATA
 *   frames), above MAX_CONTROL_BYTES_PER_SECOND two seconds running →
 *   GOAWAY(ENHANCE_YOUR_CALM). A WINDOW_UPDATE flood halved legitimate
 *   throughput; nghttp2 has no limit of its own for it.
 * - Resets (edge): each stream the client resets takes a token of its
 *   address's ResetBudget; an empty bucket gets GOAWAY(ENHANCE_YOUR_CALM).
 */
export interface SessionGuardOptions {
  readonly headersTimeoutMs: number;
  /** 0: not watched here. */
  readonly idleTimeoutMs: number;
  readonly minPingIntervalMs: number;
  readonly maxControlBytesPerSecond: number;
  readonly report: LimitReporter;
  /** Per-address reset budget (the edge); omitted: resets are not limited. */
  readonly resets?: ResetBudget;
}

interface SessionState {
  readonly client: string;
  openStreams: number;
  /** performance.now() when the last stream closed (or the session opened). */
  idleSince: number;
  /** Request bytes (DATA payload, header lists) the streams read. */
  requestBytes: number;
  lastRead: number;
  lastWritten: number;
  lastRequestBytes: number;
  controlStrikes: number;
  lastPingAt: number | undefined;
  writtenAtLastPing: number;
  pingStrikes: number;
}

/** A PING ACK: 9-byte frame header and 8 bytes of payload. */
const PING_ACK_BYTES = 17;
const MAX_PING_STRIKES = 2;
/** Control bytes credited per byte the server writes: a client's WINDOW_UPDATEs for what it receives. */
const WRITE_CREDIT = 1 / 16;
const TOO_MANY_PINGS = Buffer.from("too_many_pings");
const IDLE = Buffer.from("idle");

const states = new WeakMap<http2.Http2Session, SessionState>();
/** Streams the server itself closed with an error: their 'aborted' is no client reset. */
const closedByServer = new WeakSet<http2.Http2Stream>();

/** Counts request bytes (headers, DATA payload) a stream of `session` read: the control-bytes measure subtracts them. */
export function countRequestBytes(session: http2.Http2Session | undefined, n: number): void {
  const state = session && states.get(session);
  if (state) state.requestBytes += n;
}

/** Closes `stream` with `code` (RST_STREAM), not counted as a client reset. */
export function closeByServer(stream: http2.Http2Stream, code: number): void {
  closedByServer.add(stream);
  stream.close(code);
}

/** GOAWAY with `code`, then the connection is cut once the frame had a moment to leave. */
export function goAwayAndClose(session: http2.Http2Session, code: number, debug?: Buffer): void {
  if (session.destroyed) return;
  try {
    session.goaway(code, 2 ** 31 - 1, debug);
  } catch {
    // Already closing.
  }
  setTimeout(() => session.destroy(), 100).unref();
}

/** Header list size as HTTP/2 counts it (RFC 7540 §6.5.2): name + value + 32 per field. */
export function headerListSize(rawHeaders: readonly string[]): number {
  let size = 0;
  for (const field of rawHeaders) size += Buffer.byteLength(field);
  return size + (rawHeaders.length / 2) * 32;
}

export class SessionGuard {
  readonly #sessions = new Set<http2.Http2Session>();
  #ticker: NodeJS.Timeout | undefined;
  #lastTick = performance.now();

  readonly options: SessionGuardOptions;

  constructor(options: SessionGuardOptions) {
    this.options = options;
  }

  /** Sessions (connections) open now. */
  get size(): number {
    return this.#sessions.size;
  }

  /** Watches a new session from its first byte. */
  watch(session: http2.Http2Session): void {
    const socket = session.socket;
    const state: SessionState = {
      client: clientAddress(socket?.remoteAddress),
      openStreams: 0,
      idleSince: performance.now(),
      requestBytes: 0,
      lastRead: socket?.bytesRead ?? 0,
      lastWritten: socket?.bytesWritten ?? 0,
      lastRequestBytes: 0,
      controlStrikes: 0,
      lastPingAt: undefined,
      writtenAtLastPing: 0,
      pingStrikes: 0,
    };
    states.set(session, state);
    this.#sessions.add(session);
    this.#startTicker();

    const settingsTimer = setTimeout(() => {
      this.options.report("headers_timeout", state.client);
      session.destroy();
    }, this.options.headersTimeoutMs).unref();
    session.once("remoteSettings", () => clearTimeout(settingsTimer));

    session.on("stream", (stream: http2.ServerHttp2Stream) => {
      state.openStreams++;
      stream.once("close", () => {
        if (--state.openStreams === 0) state.idleSince = performance.now();
      });
      const resets = this.options.resets;
      if (resets !== undefined) {
        stream.once("aborted", () => {
          if (session.destroyed || session.closed || closedByServer.has(stream)) return;
          if (resets.take(state.client)) return;
          this.options.report("reset_streams", state.client);
          goAwayAndClose(session, constants.NGHTTP2_ENHANCE_YOUR_CALM);
        });
      }
    });

    session.on("ping", () => this.#onPing(session, state));
    session.once("close", () => {
      clearTimeout(settingsTimer);
      this.#sessions.delete(session);
      if (this.#sessions.size === 0 && this.#ticker) {
        clearInterval(this.#ticker);
        this.#ticker = undefined;
      }
    });
  }

  #onPing(session: http2.Http2Session, state: SessionState): void {
    const now = performance.now();
    const written = session.socket?.bytesWritten ?? 0;
    const quiet = written - state.writtenAtLastPing <= PING_ACK_BYTES;
    if (state.lastPingAt !== undefined && now - state.lastPingAt < this.options.minPingIntervalMs && quiet) {
      state.pingStrikes++;
    } else if (!quiet) {
      state.pingStrikes = 0;
    }
    state.lastPingAt = now;
    state.writtenAtLastPing = written;
    if (state.pingStrikes > MAX_PING_STRIKES) {
      this.options.report("pings", state.client);
      goAwayAndClose(session, constants.NGHTTP2_ENHANCE_YOUR_CALM, TOO_MANY_PINGS);
    }
  }

  #startTicker(): void {
    if (this.#ticker) return;
    this.#lastTick = performance.now();
    this.#ticker = setInterval(() => this.#tick(), 1_000).unref();
  }

  /** Once a second: each connection's control bytes over the last second, and its idleness. */
  #tick(): void {
    const now = performance.now();
    const seconds = Math.max(0.001, (now - this.#lastTick) / 1000);
    this.#lastTick = now;
    const allowed = this.options.maxControlBytesPerSecond * seconds;
    for (const session of this.#sessions) {
      const state = states.get(session);
      const socket = session.socket;
      if (state === undefined || session.destroyed || socket === undefined) continue;
      const read = socket.bytesRead ?? 0;
      const written = socket.bytesWritten ?? 0;
      const control =
        read -
        state.lastRead -
        (state.requestBytes - state.lastRequestBytes) -
        (written - state.lastWritten) * WRITE_CREDIT;
      state.lastRead = read;
      state.lastWritten = written;
      state.lastRequestBytes = state.requestBytes;
      state.controlStrikes = control > allowed ? state.controlStrikes + 1 : 0;
      if (state.controlStrikes >= 2) {
        this.options.report("control_bytes", state.client);
        goAwayAndClose(session, constants.NGHTTP2_ENHANCE_YOUR_CALM);
      } else if (
        this.options.idleTimeoutMs > 0 &&
        state.openStreams === 0 &&
        now - state.idleSince >= this.options.idleTimeoutMs &&
        !session.closed
      ) {
        session.goaway(constants.NGHTTP2_NO_ERROR, 2 ** 31 - 1, IDLE);
        session.close();
      }
    }
  }
}
