/** Paths, request shapes and attack loops the hostile tests share. */
import { gzipSync } from "node:zlib";
import { RawH1 } from "../raw-h1.ts";
import { codeName, envelope, field1String, grpcRequestHeaders, latin1, RawH2, type RawHeader } from "../raw-h2.ts";
import { type AttackContext, MiB } from "./harness.ts";

export const PATH = {
  gatewayGetProfile: "/demo.gateway.v1.GatewayService/GetProfile",
  gatewayCreateUser: "/demo.gateway.v1.GatewayService/CreateUser",
  gatewayListProfiles: "/demo.gateway.v1.GatewayService/ListProfiles",
  profilesGetProfile: "/demo.profiles.v1.ProfileService/GetProfile",
  usersGetUser: "/demo.users.v1.UserService/GetUser",
  healthWatch: "/grpc.health.v1.Health/Watch",
} as const;

/** The largest message the services take by default (MAX_MESSAGE_BYTES): 4 MiB. */
export const MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

/**
 * A GetProfileRequest (or GetUserRequest: field 1 too) of `size` bytes in
 * all: a user id of `a`s. Valid protobuf, refused by validation once read.
 */
export function bigRequest(size: number): Uint8Array {
  // field1String adds a tag byte and a 3-4 byte length.
  const value = new Uint8Array(size - 5).fill(0x61);
  return field1String(value);
}

/** Headers of a Connect call over HTTP/2 (unary binary by default; or gRPC-Web, Connect streaming by content type). */
export function connectH2Headers(
  path: string,
  extra: readonly RawHeader[] = [],
  contentType = "application/proto",
): RawHeader[] {
  return [
    [":method", "POST"],
    [":scheme", "http"],
    [":path", path],
    [":authority", "localhost"],
    ["content-type", contentType],
    ...(contentType.startsWith("application/grpc-web") ? [["x-grpc-web", "1"] as const] : []),
    ...(contentType.startsWith("application/grpc") ? [] : [["connect-protocol-version", "1"] as const]),
    ...extra,
  ];
}

/** The gRPC request headers of `path` (re-exported for the tests). */
export { grpcRequestHeaders };

/** A gzip body just under `limit` once inflated: a request of `a`s, a few KB on the wire. */
export function gzipBomb(inflated: number, framing: "grpc" | "connect"): Uint8Array {
  const message = bigRequest(inflated - (framing === "grpc" ? 5 : 0));
  const compressed = new Uint8Array(gzipSync(message, { level: 9 }));
  return framing === "grpc" ? envelope(compressed, { flags: 1 }) : compressed;
}

/** `count` bytes of 1-byte HTTP/1.1 chunks of `a` ("1\r\na\r\n" each): 6 bytes on the wire per byte of body. */
export function oneByteChunks(count: number): Buffer {
  return Buffer.alloc(6 * count).fill("1\r\na\r\n", "latin1");
}

export interface SlowBodyOutcome {
  readonly shape: string;
  /** Body bytes the server took before the attack ended. */
  readonly bodyBytesSent: number;
  /** What the connection saw (GOAWAY, resets, responses, close). */
  readonly seen: string;
  /** The server answered: a response, a reset of the stream, a GOAWAY, or a close of the connection. */
  readonly answered: boolean;
}

/**
 * One HTTP/2 request whose body is `body`, sent in DATA frames of
 * `frameSize` bytes as fast as flow control lets it, until done or the
 * attack ends.
 */
export async function slowH2Body(
  ctx: AttackContext,
  opts: {
    shape: string;
    port: number;
    localAddress: string;
    headers: readonly RawHeader[];
    body: Uint8Array;
    frameSize: number;
  },
): Promise<SlowBodyOutcome> {
  const conn = await RawH2.connect({ port: opts.port, localAddress: opts.localAddress });
  ctx.onEnd(() => conn.destroy());
  const id = conn.openStream(opts.headers);
  const sent = await conn.sendData(id, opts.body, {
    frameSize: opts.frameSize,
    endStream: true,
    deadline: ctx.deadline,
    stop: () => ctx.stop(),
  });
  if (sent === opts.body.length) {
    // Wait for the answer (or the end of the attack).
    await conn.waitFor(() => conn.isClosed || ctx.stop() || (conn.streams.get(id)?.remoteEnded ?? false), ctx.deadline);
  }
  const stream = conn.streams.get(id);
  const rst = stream?.rstCode === undefined ? "" : `, stream reset ${stream.rstCode}`;
  const answered =
    (stream?.headerFrames ?? 0) > 0 ||
    stream?.rstCode !== undefined ||
    conn.goaway !== undefined ||
    (conn.isClosed && !conn.closedByUs);
  return { shape: opts.shape, bodyBytesSent: sent, seen: `${conn.describe()}${rst}`, answered };
}

/** One HTTP/1.1 request whose body of `bodyBytes` comes in 1-byte chunks, as fast as the server reads them. */
export async function slowH1ChunkedBody(
  ctx: AttackContext,
  opts: {
    shape: string;
    port: number;
    localAddress: string;
    path: string;
    headers: Readonly<Record<string, string>>;
    bodyBytes: number;
  },
): Promise<SlowBodyOutcome> {
  const conn = await RawH1.connect({ port: opts.port, localAddress: opts.localAddress });
  ctx.onEnd(() => conn.destroy());
  const headers = Object.entries(opts.headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join("");
  await conn.write(
    latin1(`POST ${opts.path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n${headers}\r\n`),
  );
  // 64 Ki body bytes (384 KiB of chunks) at a time.
  const piece = oneByteChunks(64 * 1024);
  let sent = 0;
  while (sent < opts.bodyBytes && !ctx.stop() && !conn.isClosed && conn.statuses.length === 0) {
    const n = Math.min(64 * 1024, opts.bodyBytes - sent);
    await conn.write(n === 64 * 1024 ? piece : piece.subarray(0, 6 * n), ctx.deadline);
    sent += n;
  }
  if (sent === opts.bodyBytes) {
    conn.writeNow("0\r\n\r\n");
    await conn.waitFor(() => conn.isClosed || ctx.stop() || conn.statuses.length > 0, ctx.deadline);
  }
  const answered = conn.statuses.length > 0 || (conn.isClosed && !conn.closedByUs);
  return { shape: opts.shape, bodyBytesSent: sent, seen: conn.describe(), answered };
}

/** Runs `n` copies of `task` at once and waits for all. */
export function all<T>(tasks: readonly (() => Promise<T>)[]): Promise<T[]> {
  return Promise.all(tasks.map((task) => task()));
}

export interface UnfinishedOutcome {
  readonly streams: number;
  /** Body bytes the server took, over all streams. */
  readonly bodyBytesSent: number;
  /** Streams the server refused or ended (RST_STREAM, or a response ending it). */
  readonly refused: number;
  readonly seen: string;
}

/**
 * `connections` HTTP/2 connections opening `streams` calls in all, whose
 * bodies are sent up to `sendBytes` (in 16 KiB frames) and never finished:
 * what a client that stalls mid-upload, or an attacker, leaves the server
 * holding. (Several connections: each has its own flow-control window, so
 * the bytes arrive faster.)
 */
export async function unfinishedBodies(
  ctx: AttackContext,
  opts: {
    port: number;
    /** Source addresses, connection `i` from the `i % n`-th. */
    localAddresses: readonly string[];
    connections: number;
    streams: number;
    /** Headers of stream `i`. */
    headers: (i: number) => readonly RawHeader[];
    /** The body of stream `i` (only `sendBytes` of it are sent). */
    body: (i: number) => Uint8Array;
    sendBytes: number;
  },
): Promise<UnfinishedOutcome> {
  const conns = await Promise.all(
    Array.from({ length: opts.connections }, (_, i) =>
      RawH2.connect({ port: opts.port, localAddress: opts.localAddresses[i % opts.localAddresses.length] as string }),
    ),
  );
  for (const conn of conns) ctx.onEnd(() => conn.destroy());
  const opened: { conn: RawH2; id: number; i: number }[] = [];
  for (let i = 0; i < opts.streams && !ctx.stop(); i++) {
    const conn = conns[i % conns.length] as RawH2;
    if (!conn.isClosed) opened.push({ conn, id: conn.openStream(opts.headers(i)), i });
  }
  const sent = await Promise.all(
    opened.map(({ conn, id, i }) =>
      conn.sendData(id, opts.body(i).subarray(0, opts.sendBytes), {
        frameSize: 16_384,
        endStream: false,
        deadline: ctx.deadline,
        stop: () => ctx.stop(),
      }),
    ),
  );
  // Hold them open until the attack ends.
  while (!ctx.stop() && conns.some((c) => !c.isClosed)) await new Promise((r) => setTimeout(r, 100));
  const refused = opened.filter(({ conn, id }) => {
    const s = conn.streams.get(id);
    return s?.rstCode !== undefined || s?.remoteEnded;
  }).length;
  return {
    streams: opened.length,
    bodyBytesSent: sent.reduce((a, b) => a + b, 0),
    refused,
    seen: describeConnections(conns),
  };
}

/** A summary of many raw connections: GOAWAYs by code, closes, what came back. */
export function describeConnections(conns: readonly RawH2[]): string {
  const goaways = new Map<string, number>();
  for (const c of conns) {
    if (c.goaway) {
      const key = `${codeName(c.goaway.code)}${c.goaway.debug ? ` "${c.goaway.debug}"` : ""}`;
      goaways.set(key, (goaways.get(key) ?? 0) + 1);
    }
  }
  const closedByServer = conns.filter((c) => c.isClosed && !c.closedByUs).length;
  const sent = conns.reduce((a, c) => a + c.bytesSent, 0);
  const g = [...goaways].map(([k, n]) => `GOAWAY(${k})×${n}`).join(", ") || "no GOAWAY";
  return `${conns.length} connection(s): ${g}, ${closedByServer} closed by the server, ${(sent / MiB).toFixed(1)} MiB sent`;
}

/**
 * Calls `launch(i)` `ratePerSecond` times a second (catching up after a
 * late timer), at most `max` times, until the attack stops. Returns the count.
 */
export async function paced(
  ctx: AttackContext,
  ratePerSecond: number,
  max: number,
  launch: (i: number) => void,
): Promise<number> {
  const start = performance.now();
  let launched = 0;
  while (!ctx.stop() && launched < max) {
    const due = Math.min(max, Math.floor(((performance.now() - start) / 1000) * ratePerSecond));
    while (launched < due) launch(launched++);
    await new Promise((r) => setTimeout(r, 5));
  }
  return launched;
}
