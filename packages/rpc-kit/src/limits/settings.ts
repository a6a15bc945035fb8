import { readFileSync } from "node:fs";
import { type Config, setting } from "../config/config.ts";

/**
 * The bounds every server keeps on what clients send (issue 13), read from
 * the environment with their defaults. Spread into `serverSettings()`; each
 * is documented with its default in the README's security section.
 * Defaults fit a pod with a 512 Mi memory limit and leave well-behaved
 * clients (rpc-kit's own, stock gRPC clients, browsers, proxies) untouched.
 */
export function limitSettings() {
  return {
    maxBufferedRequestBytes: setting.int(
      "MAX_BUFFERED_REQUEST_BYTES",
      64 * 1024 * 1024,
      "request-body bytes (received and decompressed) the process holds for calls in progress; calls past it get ResourceExhausted before more of their body is read",
      { min: 64 * 1024, max: 2 ** 40 },
    ),
    maxBufferedRequestBytesPerClient: setting.int(
      "MAX_BUFFERED_REQUEST_BYTES_PER_CLIENT",
      16 * 1024 * 1024,
      "the same, for the calls of one client address, so that one client cannot take all of it",
      { min: 64 * 1024, max: 2 ** 40 },
    ),
    requestTimeoutMs: setting.int(
      "REQUEST_TIMEOUT_MS",
      60_000,
      "time a unary or server-streaming call (or an HTTP/1.1 request) has to send its whole request; then it fails",
      { min: 100, max: 3_600_000 },
    ),
    maxConnections: setting.int(
      "MAX_CONNECTIONS",
      10_000,
      "open connections on the RPC port; more are closed at once (lowered at start to leave 1024 file descriptors free)",
      { min: 1, max: 10_000_000 },
    ),
    maxConnectionsPerClient: setting.int(
      "MAX_CONNECTIONS_PER_CLIENT",
      1_000,
      "open connections from one client address to the edge's RPC port; more are closed at once",
      { min: 1, max: 10_000_000 },
    ),
    headersTimeoutMs: setting.int(
      "HEADERS_TIMEOUT_MS",
      10_000,
      "time a connection has to send its HTTP/2 SETTINGS, and an HTTP/1.1 request its complete head; then the connection is closed (HTTP/1.1: 408)",
      { min: 100, max: 600_000 },
    ),
    idleTimeoutMs: setting.int(
      "IDLE_TIMEOUT_MS",
      300_000,
      "an HTTP/2 connection with no call for this long is closed (GOAWAY); 0 = never",
      { max: 86_400_000 },
    ),
    keepAliveTimeoutMs: setting.int(
      "KEEP_ALIVE_TIMEOUT_MS",
      5_000,
      "an idle HTTP/1.1 keep-alive connection to the edge is closed after this (keep it above a load balancer's idle timeout)",
      { min: 100, max: 3_600_000 },
    ),
    maxPipelinedRequests: setting.int(
      "MAX_PIPELINED_REQUESTS",
      16,
      "HTTP/1.1 requests one connection to the edge may have in progress; later pipelined ones wait unread",
      { min: 1, max: 1_000 },
    ),
    maxResetStreamsPerSecond: setting.int(
      "MAX_RESET_STREAMS_PER_SECOND",
      1_000,
      "HTTP/2 streams one client address may reset per second at the edge (burst twice that), across its connections; past it: GOAWAY, and new connections refused until it recovers",
      { min: 1, max: 10_000_000 },
    ),
    maxHealthWatches: setting.int(
      "MAX_HEALTH_WATCHES",
      1_000,
      "grpc.health.v1 Watch streams open at once; more get ResourceExhausted",
      { max: 10_000_000 },
    ),
    minPingIntervalMs: setting.int(
      "MIN_PING_INTERVAL_MS",
      10_000,
      "an HTTP/2 PING sooner than this after the previous one, with nothing sent in between, is a strike; the third gets GOAWAY(ENHANCE_YOUR_CALM, too_many_pings)",
      { max: 3_600_000 },
    ),
    maxControlBytesPerSecond: setting.int(
      "MAX_CONTROL_BYTES_PER_SECOND",
      128 * 1024,
      "HTTP/2 bytes a connection may send per second that carry no request data (WINDOW_UPDATE, PING, SETTINGS, RST_STREAM, frame headers); over it two seconds running: GOAWAY(ENHANCE_YOUR_CALM)",
      { min: 1024, max: 2 ** 40 },
    ),
    maxJsonDepth: setting.int(
      "MAX_JSON_DEPTH",
      100,
      "deepest nesting of a JSON request; deeper ones get InvalidArgument before they are parsed",
      { min: 1, max: 10_000 },
    ),
  };
}

/** The settings of {@link limitSettings}, parsed. */
export type LimitSettings = Config<ReturnType<typeof limitSettings>>;

/** File descriptors kept free beside the RPC port's connections: the admin port, upstream channels, logs. */
export const RESERVED_FDS = 1024;

/**
 * MAX_CONNECTIONS, lowered to leave {@link RESERVED_FDS} free under the
 * process's open-file limit (Node raises the soft limit to the hard one at
 * start). Past the limit accept() fails and the admin port's /healthz with
 * it: ~20,000 idle connections did that to the gateway on a machine whose
 * limit is 20,000.
 */
export function connectionCap(maxConnections: number, fdLimit = openFileLimit()): number {
  if (fdLimit === undefined) return maxConnections;
  return Math.max(1, Math.min(maxConnections, fdLimit - RESERVED_FDS));
}

/** The soft RLIMIT_NOFILE of this process, read from /proc (Linux); undefined elsewhere or when unlimited. */
export function openFileLimit(): number | undefined {
  try {
    const line = readFileSync("/proc/self/limits", "utf8")
      .split("\n")
      .find((l) => l.startsWith("Max open files"));
    const soft = line?.split(/\s{2,}/)[1];
    return soft === undefined || soft === "unlimited" ? undefined : Number(soft);
  } catch {
    return undefined;
  }
}
