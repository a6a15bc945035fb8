/**
 * Hostile-input cases for fuzz.test.ts: a seeded generator of requests that
 * no well-behaved client sends, each with the outcomes every engine may give.
 *
 * Pure data, no I/O: `generateCase(seed)` is a function of its seed alone, so
 * a failing case is replayed with `FUZZ_CASE_SEED=<seed>`.
 *
 * Outcomes are strings:
 * - `grpc:<code>`    a gRPC status (header or trailer) came back
 * - `http:<status>`  an HTTP/2 or fetch response without grpc-status
 * - `h1:<status>`    the status line of a raw HTTP/1.1 response
 * - `rst:<code>`     the server reset the stream (RST_STREAM) with this HTTP/2 error code
 * - `goaway:<code>`  the server sent GOAWAY with this error code
 * - `h2:response`    a raw HTTP/2 request got response headers (not decoded)
 * - `closed`         the server closed the connection without answering
 * - `silent`         the server kept the connection open and said nothing for the case's wait (we closed it)
 * - `reset`          the client aborted on purpose; only liveness is checked
 */

import {
  concat,
  END_HEADERS,
  END_STREAM,
  envelope,
  field1String,
  H2,
  H2_PREFACE,
  h2Frame,
  h2Request,
  hpackBlock,
  hpackLiteral,
  latin1,
  type RawHeader,
  utf8,
} from "../raw-h2.ts";

// The byte builders moved to ../raw-h2.ts (shared with the hostile suite); re-exported for the fuzz test.
export { envelope, field1String, H2, h2Frame, h2Request, hpackBlock, hpackLiteral, type RawHeader };

export type TargetName = "gateway" | "profiles" | "users" | "gateway-admin" | "profiles-admin" | "users-admin";

/** edge: connect-engine (Connect, gRPC-Web, gRPC fast path); grpc: grpc-js; admin: node:http. */
export type EngineKind = "edge" | "grpc" | "admin";

export const ENGINE_OF: Record<TargetName, EngineKind> = {
  gateway: "edge",
  profiles: "grpc",
  users: "grpc",
  "gateway-admin": "admin",
  "profiles-admin": "admin",
  "users-admin": "admin",
};

export const MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

/** A request over node:http2's client: pseudo-headers and headers Node accepts, the body as we frame it. */
export interface H2Probe {
  readonly kind: "h2";
  readonly headers: Record<string, string>;
  readonly chunks: readonly Uint8Array[];
  /** Pause between chunks (slow clients). */
  readonly gapMs: number;
  /** Reset the stream with this HTTP/2 code after the chunks instead of ending it. */
  readonly resetCode?: number;
  /** Cut the TCP connection (RST) after the chunks instead of ending the stream. */
  readonly socketReset?: boolean;
}

/** Bytes on a TCP socket: raw HTTP/1.1, raw HTTP/2 frames, or garbage. */
export interface RawProbe {
  readonly kind: "raw";
  readonly chunks: readonly Uint8Array[];
  readonly gapMs: number;
  /** How the answer is read: an HTTP/1.1 status line, or HTTP/2 frames for stream 1. */
  readonly read: "h1" | "h2";
  /** Cut the connection with a TCP RST after the chunks. */
  readonly socketReset?: boolean;
  /** How long to wait for an answer before closing the connection ourselves. */
  readonly waitMs: number;
}

/** A request through fetch (undici, HTTP/1.1): Connect and gRPC-Web at the edge, the admin port. */
export interface FetchProbe {
  readonly kind: "fetch";
  readonly method: string;
  readonly path: string;
  readonly headers: Record<string, string>;
  readonly body?: Uint8Array;
}

export type Probe = H2Probe | RawProbe | FetchProbe;

export interface FuzzCase {
  readonly seed: number;
  readonly family: string;
  /** One line saying what was sent. */
  readonly description: string;
  readonly target: TargetName;
  readonly probe: Probe;
  /** Outcomes accepted from this target's engine; `*` accepts any answer (liveness only). */
  readonly expect: readonly string[];
}

// ---------------------------------------------------------------------------
// PRNG

export interface Rng {
  /** Uniform in [0, 1). */
  next(): number;
  int(maxExclusive: number): number;
  between(min: number, max: number): number;
  pick<T>(items: readonly T[]): T;
  bytes(n: number): Uint8Array;
}

/** mulberry32: small, fast, and good enough to pick cases. */
export function createRng(seed: number): Rng {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  return {
    next,
    int,
    between: (min, max) => min + int(max - min + 1),
    pick: <T>(items: readonly T[]) => items[int(items.length)] as T,
    bytes(n) {
      const out = new Uint8Array(n);
      for (let i = 0; i < n; i++) out[i] = int(256);
      return out;
    },
  };
}

/** The seed of case `index` of a run: distinct, well spread, reproducible. */
export function caseSeed(runSeed: number, index: number): number {
  let h = (runSeed ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

// ---------------------------------------------------------------------------
// Bytes: protobuf, gRPC envelopes, HTTP/2 frames

/** Splits `bytes` into `n` roughly equal chunks (for dribbling). */
function split(bytes: Uint8Array, n: number): Uint8Array[] {
  const size = Math.max(1, Math.ceil(bytes.length / n));
  const out: Uint8Array[] = [];
  for (let i = 0; i < bytes.length; i += size) out.push(bytes.subarray(i, i + size));
  return out;
}

// ---------------------------------------------------------------------------
// Targets

const RPC: Record<"gateway" | "profiles" | "users", { path: string; service: string }> = {
  gateway: { path: "/demo.gateway.v1.GatewayService/GetProfile", service: "demo.gateway.v1.GatewayService" },
  profiles: { path: "/demo.profiles.v1.ProfileService/GetProfile", service: "demo.profiles.v1.ProfileService" },
  users: { path: "/demo.users.v1.UserService/GetUser", service: "demo.users.v1.UserService" },
};

const RPC_TARGETS = ["gateway", "profiles", "users"] as const;
const ADMIN_TARGETS = ["gateway-admin", "profiles-admin", "users-admin"] as const;
const H1_TARGETS = ["gateway", ...ADMIN_TARGETS] as const;
const ALL_TARGETS = [...RPC_TARGETS, ...ADMIN_TARGETS] as const;

/** A valid GetProfile / GetUser request for u-1, as protobuf bytes. */
export const VALID_REQUEST = field1String(utf8("u-1"));

function grpcHeaders(target: keyof typeof RPC, extra: Record<string, string> = {}): Record<string, string> {
  return {
    ":method": "POST",
    ":path": RPC[target].path,
    "content-type": "application/grpc",
    te: "trailers",
    ...extra,
  };
}

function rawGrpcHeaders(target: keyof typeof RPC, extra: readonly RawHeader[] = []): RawHeader[] {
  return [
    [":method", "POST"],
    [":scheme", "http"],
    [":path", RPC[target].path],
    [":authority", "localhost"],
    ["content-type", "application/grpc"],
    ["te", "trailers"],
    ...extra,
  ];
}

// ---------------------------------------------------------------------------
// Families. Each returns the case for a seed; `expect` is keyed by engine.

type Expect = Partial<Record<EngineKind, readonly string[]>>;

interface Draft {
  readonly description: string;
  readonly probe: Probe;
  readonly expect: Expect;
}

interface Family {
  readonly name: string;
  /** Relative frequency. */
  readonly weight: number;
  readonly targets: readonly TargetName[];
  make(rng: Rng, target: TargetName): Draft;
}

const rpcTarget = (t: TargetName) => t as keyof typeof RPC;

function h2(target: TargetName, body: Uint8Array | readonly Uint8Array[], extra: Record<string, string> = {}): H2Probe {
  return {
    kind: "h2",
    headers: grpcHeaders(rpcTarget(target), extra),
    chunks: body instanceof Uint8Array ? [body] : body,
    gapMs: 0,
  };
}

/** Byte strings protobuf-es refuses for GetProfileRequest / GetUserRequest. */
const BAD_PROTOBUF: readonly { name: string; bytes: number[] }[] = [
  {
    name: "bad varint (11 continuation bytes)",
    bytes: [0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
  },
  { name: "length past the end", bytes: [0x0a, 0x64, 0x61, 0x62, 0x63] },
  { name: "length varint overflowing", bytes: [0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x61] },
  { name: "invalid UTF-8 in the string field", bytes: [0x0a, 0x02, 0xc3, 0x28] },
  { name: "lone surrogate in UTF-8 (CESU)", bytes: [0x0a, 0x03, 0xed, 0xa0, 0x80] },
  { name: "overlong UTF-8", bytes: [0x0a, 0x02, 0xc0, 0xaf] },
  { name: "field number 0", bytes: [0x02, 0x00] },
  { name: "wire type 6", bytes: [0x0e, 0x00] },
  { name: "wire type 7", bytes: [0x0f, 0x00] },
  { name: "unterminated group", bytes: [0x1b, 0x08, 0x01] },
  { name: "end group without start", bytes: [0x1c] },
  { name: "truncated fixed64", bytes: [0x19, 0x01, 0x02] },
  { name: "truncated tag varint", bytes: [0x80] },
];

/** Malformed for every engine. */
const BAD_GRPC_TIMEOUTS = ["", "x", "1", "S", "12345678", "1s", "H1", "1.x", "abcdefgh", "123456789"];
/** Malformed, but grpc-js's unanchored /(\d{1,8})\s*([HMSmun])/ finds a timeout of 100 s in them. */
const LENIENT_GRPC_TIMEOUTS = ["-100S", "+100S", "0x100S", "100 S", "x100S", "123456789S"];
const BAD_CONNECT_TIMEOUTS = ["", "x", "-1", "1.5", "1e3", "12345678901", "0x10", "5 5"];

const families: readonly Family[] = [
  {
    name: "control: valid call",
    weight: 4,
    targets: RPC_TARGETS,
    make: (_rng, t) => ({
      description: "a well-formed unary call for u-1",
      probe: h2(t, envelope(VALID_REQUEST)),
      expect: { edge: ["grpc:0"], grpc: ["grpc:0"] },
    }),
  },
  {
    name: "grpc: length prefix larger than the data",
    weight: 6,
    targets: RPC_TARGETS,
    make: (rng, t) => {
      const extra = rng.between(1, 1000);
      return {
        description: `prefix says ${VALID_REQUEST.length + extra} bytes, ${VALID_REQUEST.length} follow`,
        probe: h2(t, envelope(VALID_REQUEST, { declared: VALID_REQUEST.length + extra })),
        expect: { edge: ["grpc:3"], grpc: ["grpc:12"] },
      };
    },
  },
  {
    name: "grpc: length prefix beyond the 4 MiB limit",
    weight: 4,
    targets: RPC_TARGETS,
    make: (rng, t) => {
      const declared = rng.pick([MAX_MESSAGE_BYTES + 1, 5 * 1024 * 1024, 0x7fffffff, 0xffffffff]);
      return {
        description: `prefix says ${declared} bytes, ${VALID_REQUEST.length} follow`,
        probe: h2(t, envelope(VALID_REQUEST, { declared })),
        expect: { edge: ["grpc:8"], grpc: ["grpc:8"] },
      };
    },
  },
  {
    name: "grpc: truncated message",
    weight: 5,
    targets: RPC_TARGETS,
    make: (rng, t) => {
      const full = envelope(VALID_REQUEST);
      const cut = rng.between(1, full.length - 1);
      return {
        description: `a valid envelope cut after ${cut} of ${full.length} bytes`,
        probe: h2(t, full.subarray(0, cut)),
        expect: { edge: ["grpc:3"], grpc: ["grpc:12"] },
      };
    },
  },
  {
    name: "grpc: no message at all",
    weight: 2,
    targets: RPC_TARGETS,
    make: (_rng, t) => ({
      description: "headers, then END_STREAM with an empty body",
      probe: h2(t, []),
      expect: { edge: ["grpc:3"], grpc: ["grpc:12"] },
    }),
  },
  {
    name: "grpc: two messages to a unary method",
    weight: 2,
    targets: RPC_TARGETS,
    make: (_rng, t) => ({
      description: "two complete envelopes",
      probe: h2(t, concat([envelope(VALID_REQUEST), envelope(VALID_REQUEST)])),
      expect: { edge: ["grpc:3"], grpc: ["grpc:12"] },
    }),
  },
  {
    name: "grpc: compressed flag without grpc-encoding",
    weight: 3,
    targets: RPC_TARGETS,
    make: (_rng, t) => ({
      description: "flag byte 1, no grpc-encoding header, plain protobuf inside",
      probe: h2(t, envelope(VALID_REQUEST, { flags: 1 })),
      // grpc-js reads the flag as identity when no encoding is named and serves the call.
      expect: { edge: ["grpc:13"], grpc: ["grpc:0"] },
    }),
  },
  {
    name: "grpc: compressed flag with a broken gzip body",
    weight: 2,
    targets: RPC_TARGETS,
    make: (rng, t) => {
      const body = rng.bytes(rng.between(1, 64));
      if (body[0] === 0x1f) body[0] = 0; // never the gzip magic
      return {
        description: `grpc-encoding: gzip, flag 1, ${body.length} random bytes`,
        probe: h2(t, envelope(body, { flags: 1 }), { "grpc-encoding": "gzip" }),
        // rpc-kit inflates compressed requests itself, within its bounds, on both engines: bytes that do
        // not decompress are the caller's mistake, InvalidArgument.
        expect: { edge: ["grpc:3"], grpc: ["grpc:3"] },
      };
    },
  },
  {
    name: "grpc: unsupported grpc-encoding",
    weight: 2,
    targets: RPC_TARGETS,
    make: (rng, t) => {
      const encoding = rng.pick(["snappy", "br2", "x-unknown"]);
      return {
        description: `grpc-encoding: ${encoding}, flag 1`,
        probe: h2(t, envelope(VALID_REQUEST, { flags: 1 }), { "grpc-encoding": encoding }),
        expect: { edge: ["grpc:12"], grpc: ["grpc:12"] },
      };
    },
  },
  {
    name: "grpc: random bytes as the body",
    weight: 6,
    targets: RPC_TARGETS,
    make: (rng, t) => {
      const n = rng.between(1, 300);
      return {
        description: `${n} random bytes`,
        probe: h2(t, rng.bytes(n)),
        expect: { edge: ["*grpc"], grpc: ["*grpc"] },
      };
    },
  },
  {
    name: "grpc: random bytes in a well-framed envelope",
    weight: 6,
    targets: RPC_TARGETS,
    make: (rng, t) => {
      const n = rng.between(1, 300);
      return {
        description: `envelope of ${n} random bytes`,
        probe: h2(t, envelope(rng.bytes(n))),
        expect: { edge: ["*grpc"], grpc: ["*grpc"] },
      };
    },
  },
  {
    name: "grpc: invalid protobuf",
    weight: 8,
    targets: RPC_TARGETS,
    make: (rng, t) => {
      const bad = rng.pick(BAD_PROTOBUF);
      return {
        description: bad.name,
        probe: h2(t, envelope(new Uint8Array(bad.bytes))),
        // grpc-js answers Internal for a request it cannot deserialize; the edge InvalidArgument.
        expect: { edge: ["grpc:3"], grpc: ["grpc:13"] },
      };
    },
  },
  {
    name: "grpc: message beyond 4 MiB",
    weight: 1,
    targets: RPC_TARGETS,
    make: (rng, t) => {
      const extra = rng.between(1, 64 * 1024);
      const msg = field1String(new Uint8Array(MAX_MESSAGE_BYTES + extra).fill(0x61));
      return {
        description: `a ${msg.length}-byte message`,
        probe: h2(t, split(envelope(msg), rng.between(1, 8))),
        expect: { edge: ["grpc:8"], grpc: ["grpc:8"] },
      };
    },
  },
  {
    name: "grpc: wrong content-type",
    weight: 4,
    targets: RPC_TARGETS,
    make: (rng, t) => {
      const ct = rng.pick(["text/plain", "application/octet-stream", "application/x-www-form-urlencoded", "image/png"]);
      return {
        description: `content-type: ${ct}`,
        probe: h2(t, envelope(VALID_REQUEST), { "content-type": ct }),
        expect: { edge: ["http:415"], grpc: ["http:415"] },
      };
    },
  },
  {
    name: "grpc: invalid grpc-timeout",
    weight: 4,
    targets: RPC_TARGETS,
    make: (rng, t) => {
      const value = rng.pick(BAD_GRPC_TIMEOUTS);
      return {
        description: `grpc-timeout: "${value}"`,
        probe: h2(t, envelope(VALID_REQUEST), { "grpc-timeout": value }),
        // grpc-js answers Internal for a timeout it cannot parse.
        expect: { edge: ["grpc:3"], grpc: ["grpc:13"] },
      };
    },
  },
  {
    name: "grpc: grpc-timeout only grpc-js accepts",
    weight: 2,
    targets: RPC_TARGETS,
    make: (rng, t) => {
      const value = rng.pick(LENIENT_GRPC_TIMEOUTS);
      return {
        description: `grpc-timeout: "${value}"`,
        probe: h2(t, envelope(VALID_REQUEST), { "grpc-timeout": value }),
        expect: { edge: ["grpc:3"], grpc: ["grpc:0"] },
      };
    },
  },
  {
    name: "grpc: valid grpc-timeout beyond 2^31-1 ms",
    weight: 2,
    targets: RPC_TARGETS,
    make: (rng, t) => {
      // grpc-js truncates the milliseconds to an int32 ((ms) | 0): 99999999H becomes ~1.5 days;
      // 2147484S, 3000000S and 99999999M a negative delay, i.e. a 1 ms timer (TimeoutNegativeWarning
      // on stderr): DeadlineExceeded, or OK when the call is answered within that millisecond.
      // The edge serves them all as 24.8 days (rpc-kit clamps them).
      const [value, grpcJs] = rng.pick([
        ["99999999H", ["grpc:0"]],
        ["2147484S", ["grpc:4", "grpc:0"]],
        ["3000000S", ["grpc:4", "grpc:0"]],
        ["99999999M", ["grpc:4", "grpc:0"]],
      ] as const);
      return {
        description: `grpc-timeout: "${value}"`,
        probe: h2(t, envelope(VALID_REQUEST), { "grpc-timeout": value }),
        expect: { edge: ["grpc:0"], grpc: grpcJs },
      };
    },
  },
  {
    name: "grpc: unknown service or method",
    weight: 4,
    targets: RPC_TARGETS,
    make: (rng, t) => {
      const name = Array.from({ length: rng.between(1, 20) }, () =>
        rng.pick([..."abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"]),
      ).join("");
      const path = rng.pick([
        `/${RPC[rpcTarget(t)].service}/${name}`,
        `/demo.nothing.v1.${name}/GetProfile`,
        `/${name}`,
        "/",
        `/${RPC[rpcTarget(t)].service}/`,
      ]);
      return {
        description: `:path ${path}`,
        probe: h2(t, envelope(VALID_REQUEST), { ":path": path }),
        // connect-node answers an unknown route with a bare HTTP 404, which gRPC clients read as Unimplemented.
        expect: { edge: ["http:404"], grpc: ["grpc:12"] },
      };
    },
  },
  {
    name: "grpc: stream reset mid-request",
    weight: 5,
    targets: RPC_TARGETS,
    make: (rng, t) => {
      const full = envelope(VALID_REQUEST);
      const code = rng.pick([0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13]);
      return {
        description: `half an envelope, then RST_STREAM code ${code}`,
        probe: { ...h2(t, full.subarray(0, rng.between(0, full.length - 1))), resetCode: code },
        expect: { edge: ["reset"], grpc: ["reset"] },
      };
    },
  },
  {
    name: "grpc: TCP reset mid-request",
    weight: 3,
    targets: RPC_TARGETS,
    make: (rng, t) => {
      const full = envelope(VALID_REQUEST);
      return {
        description: "half an envelope, then a TCP RST",
        probe: { ...h2(t, full.subarray(0, rng.between(0, full.length - 1))), socketReset: true },
        expect: { edge: ["reset"], grpc: ["reset"] },
      };
    },
  },
  {
    name: "grpc: slowly dribbled request",
    weight: 2,
    targets: RPC_TARGETS,
    make: (rng, t) => {
      const full = envelope(VALID_REQUEST);
      const gapMs = rng.between(20, 150);
      return {
        description: `a valid envelope one byte every ${gapMs} ms`,
        probe: { ...h2(t, split(full, full.length)), gapMs },
        expect: { edge: ["grpc:0"], grpc: ["grpc:0"] },
      };
    },
  },
  {
    name: "h2 raw: whole conversation dribbled",
    weight: 1,
    targets: RPC_TARGETS,
    make: (rng, t) => {
      const bytes = h2Request(hpackBlock(rawGrpcHeaders(rpcTarget(t))), envelope(VALID_REQUEST));
      const chunks = split(bytes, rng.between(10, 40));
      return {
        description: `preface, headers and data in ${chunks.length} pieces, 50 ms apart`,
        probe: { kind: "raw", chunks, gapMs: 50, read: "h2", waitMs: 3_000 },
        expect: { edge: ["h2:response"], grpc: ["h2:response"] },
      };
    },
  },
  {
    name: "h2 raw: malformed headers",
    weight: 6,
    targets: RPC_TARGETS,
    make: (rng, t) => {
      const base = rawGrpcHeaders(rpcTarget(t));
      // nghttp2 resets the stream (PROTOCOL_ERROR) for a malformed request, but drops a regular
      // field whose name or value is invalid and serves the rest ("dropped" below).
      const variants: { name: string; headers: RawHeader[]; dropped?: true }[] = [
        { name: "uppercase header name", headers: [...base, ["X-Upper", "1"]] },
        { name: "NUL in a header value", headers: [...base, ["x-v", "a\u0000b"]], dropped: true },
        { name: "CR LF in a header value", headers: [...base, ["x-v", "a\r\nx-injected: 1"]], dropped: true },
        { name: "space in a header name", headers: [...base, ["x bad", "1"]], dropped: true },
        { name: "no :path", headers: base.filter(([n]) => n !== ":path") },
        { name: "no :method", headers: base.filter(([n]) => n !== ":method") },
        { name: "pseudo-header after a regular one", headers: [...base, [":status", "200"]] },
        { name: "unknown pseudo-header", headers: [...base.slice(0, 4), [":evil", "1"], ...base.slice(4)] },
        { name: "connection-specific header", headers: [...base, ["connection", "keep-alive"]] },
        { name: "te other than trailers", headers: [...base.filter(([n]) => n !== "te"), ["te", "gzip"]] },
        { name: "duplicate :path", headers: [...base.slice(0, 3), [":path", "/x"], ...base.slice(3)] },
        { name: "empty header name", headers: [...base, ["", "1"]], dropped: true },
      ];
      const v = rng.pick(variants);
      return {
        description: v.name,
        probe: {
          kind: "raw",
          chunks: [h2Request(hpackBlock(v.headers), envelope(VALID_REQUEST))],
          gapMs: 0,
          read: "h2",
          waitMs: 3_000,
        },
        expect: v.dropped ? { edge: ["h2:response"], grpc: ["h2:response"] } : { edge: ["rst:1"], grpc: ["rst:1"] },
      };
    },
  },
  {
    name: "h2 raw: odd bytes in :path and metadata",
    weight: 4,
    targets: RPC_TARGETS,
    make: (rng, t) => {
      const odd = new Uint8Array(
        Array.from({ length: rng.between(1, 8) }, () =>
          rng.pick([0x01, 0x07, 0x1f, 0x7f, 0x80, 0xc3, 0xff, 0x09, 0x20]),
        ),
      );
      const where = rng.pick(["path", "metadata", "grpc-timeout"] as const);
      const headers =
        where === "path"
          ? rawGrpcHeaders(rpcTarget(t)).map(
              ([n, v]): RawHeader => (n === ":path" ? [n, concat([latin1(`${v}`), odd])] : [n, v]),
            )
          : [
              ...rawGrpcHeaders(rpcTarget(t)),
              [where === "metadata" ? "x-odd" : "grpc-timeout", concat([latin1("1S"), odd])] as RawHeader,
            ];
      return {
        description: `bytes ${Buffer.from(odd).toString("hex")} in ${where}`,
        probe: {
          kind: "raw",
          chunks: [h2Request(hpackBlock(headers), envelope(VALID_REQUEST))],
          gapMs: 0,
          read: "h2",
          waitMs: 3_000,
        },
        // A :path with a control byte, space or DEL is malformed (stream reset); bytes 0x80-0xff pass.
        // A metadata or grpc-timeout value with odd bytes is dropped (see above) or kept: served either way.
        expect: (() => {
          const outcome = where === "path" && odd.some((b) => b < 0x80) ? "rst:1" : "h2:response";
          return { edge: [outcome], grpc: [outcome] };
        })(),
      };
    },
  },
  {
    name: "h2 raw: huge headers",
    weight: 3,
    targets: RPC_TARGETS,
    make: (rng, t) => {
      const shape = rng.pick(["one big value", "many headers"] as const);
      const extra: RawHeader[] =
        shape === "one big value"
          ? [["x-big", "a".repeat(rng.between(64 * 1024, 256 * 1024))]]
          : Array.from({ length: rng.between(200, 2_000) }, (_, i): RawHeader => [`x-h${i}`, "v"]);
      const block = hpackBlock(rawGrpcHeaders(rpcTarget(t), extra));
      // HEADERS + CONTINUATION frames of at most 16 KiB each.
      const frames: Uint8Array[] = [];
      for (let i = 0; i < block.length; i += 16_384) {
        const last = i + 16_384 >= block.length;
        const part = block.subarray(i, i + 16_384);
        frames.push(h2Frame(i === 0 ? H2.HEADERS : 9, last ? END_HEADERS : 0, 1, part));
      }
      const bytes = concat([
        latin1("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
        h2Frame(H2.SETTINGS, 0, 0, new Uint8Array(0)),
        ...frames,
        h2Frame(H2.DATA, END_STREAM, 1, envelope(VALID_REQUEST)),
      ]);
      return {
        description: `${shape}: a ${block.length}-byte header block`,
        probe: { kind: "raw", chunks: [bytes], gapMs: 0, read: "h2", waitMs: 3_000 },
        // One field larger than the header table allows: COMPRESSION_ERROR on the connection.
        // More than Node's 128 header pairs: the stream is reset with ENHANCE_YOUR_CALM.
        expect:
          shape === "one big value"
            ? { edge: ["goaway:9"], grpc: ["goaway:9"] }
            : { edge: ["rst:11"], grpc: ["rst:11"] },
      };
    },
  },
  {
    name: "h2 raw: protocol violations",
    weight: 4,
    targets: RPC_TARGETS,
    make: (rng, t) => {
      const head = hpackBlock(rawGrpcHeaders(rpcTarget(t)));
      const variants: { name: string; bytes: Uint8Array; expect: readonly string[] }[] = [
        {
          name: "DATA on stream 0",
          bytes: h2Request(head, undefined, [h2Frame(H2.DATA, 0, 0, latin1("x"))]),
          expect: ["goaway:1"],
        },
        {
          name: "HEADERS on an even stream",
          bytes: concat([
            H2_PREFACE,
            h2Frame(H2.SETTINGS, 0, 0, new Uint8Array(0)),
            h2Frame(H2.HEADERS, END_HEADERS | END_STREAM, 2, head),
          ]),
          expect: ["goaway:1"],
        },
        {
          name: "invalid HPACK index",
          bytes: concat([
            H2_PREFACE,
            h2Frame(H2.SETTINGS, 0, 0, new Uint8Array(0)),
            h2Frame(H2.HEADERS, END_HEADERS, 1, new Uint8Array([0xff, 0xff, 0xff, 0x0f])),
          ]),
          expect: ["goaway:9"],
        },
        {
          name: "oversized frame",
          bytes: concat([
            H2_PREFACE,
            h2Frame(H2.SETTINGS, 0, 0, new Uint8Array(0)),
            h2Frame(H2.HEADERS, END_HEADERS, 1, head),
            h2Frame(H2.DATA, 0, 1, new Uint8Array(20_000)),
          ]),
          expect: ["goaway:6"],
        },
        {
          name: "WINDOW_UPDATE of 0 on the connection",
          bytes: h2Request(head, envelope(VALID_REQUEST), [h2Frame(H2.WINDOW_UPDATE, 0, 0, new Uint8Array(4))]),
          expect: ["goaway:1", "h2:response"],
        },
        {
          name: "SETTINGS with a bad length",
          bytes: concat([H2_PREFACE, h2Frame(H2.SETTINGS, 0, 0, new Uint8Array(5))]),
          expect: ["goaway:6"],
        },
        {
          name: "random frames after the preface",
          bytes: concat([H2_PREFACE, rng.bytes(rng.between(9, 200))]),
          expect: ["*", "silent"],
        },
        {
          name: "DATA beyond content-length",
          bytes: h2Request(
            hpackBlock(rawGrpcHeaders(rpcTarget(t), [["content-length", "2"]])),
            envelope(VALID_REQUEST),
          ),
          // Node destroys the whole session (GOAWAY INTERNAL_ERROR), and every call on it.
          expect: ["goaway:2"],
        },
      ];
      const v = rng.pick(variants);
      return {
        description: v.name,
        probe: { kind: "raw", chunks: [v.bytes], gapMs: 0, read: "h2", waitMs: 3_000 },
        expect: { edge: v.expect, grpc: v.expect },
      };
    },
  },
  {
    name: "raw: HTTP/1.1 and garbage on every port",
    weight: 6,
    targets: ALL_TARGETS,
    make: (rng, t) => {
      const variants = [
        { name: "random bytes", bytes: concat([rng.bytes(rng.between(1, 400)), latin1("\r\n\r\n")]) },
        { name: "an HTTP/1.1 GET", bytes: latin1("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n") },
        {
          name: "an HTTP/1.1 POST of a gRPC request",
          bytes: concat([
            latin1(
              `POST ${RPC.users.path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/grpc\r\nContent-Length: ${envelope(VALID_REQUEST).length}\r\n\r\n`,
            ),
            envelope(VALID_REQUEST),
          ]),
        },
        {
          name: "a truncated HTTP/2 preface then garbage",
          bytes: concat([latin1("PRI * HTTP/2.0\r\n\r\nS"), rng.bytes(rng.between(1, 50)), latin1("\r\n\r\n")]),
        },
        {
          name: "TLS ClientHello bytes",
          bytes: new Uint8Array([
            0x16,
            0x03,
            0x01,
            0x00,
            0xa5,
            0x01,
            0x00,
            0x00,
            0xa1,
            0x03,
            0x03,
            ...rng.bytes(32),
            0x0d,
            0x0a,
            0x0d,
            0x0a,
          ]),
        },
      ];
      const v = rng.pick(variants);
      const engine = ENGINE_OF[t];
      const isGet = v.name === "an HTTP/1.1 GET";
      const isPost = v.name.startsWith("an HTTP/1.1 POST");
      return {
        description: v.name,
        probe: { kind: "raw", chunks: [v.bytes], gapMs: 0, read: engine === "grpc" ? "h2" : "h1", waitMs: 3_000 },
        expect: {
          // Node's HTTP/2 server answers a bad client preface with GOAWAY(INTERNAL_ERROR) and closes.
          grpc: ["goaway:2", "closed"],
          // The edge serves HTTP/1.1 itself: a GET of an unknown path is a 404, a gRPC POST over HTTP/1.1 is 415 at connect-node.
          edge: isGet ? ["h1:404"] : isPost ? ["h1:404"] : ["h1:400"],
          admin: isGet ? ["h1:200"] : isPost ? ["h1:405"] : ["h1:400"],
        },
      };
    },
  },
  {
    name: "h1: malformed requests",
    weight: 6,
    targets: H1_TARGETS,
    make: (rng, t) => {
      const path = t === "gateway" ? RPC.gateway.path : "/healthz";
      const variants: { name: string; text: string; expect: readonly string[] }[] = [
        {
          name: "header name with a space",
          text: `GET ${path} HTTP/1.1\r\nHost: x\r\nBad Name: 1\r\n\r\n`,
          expect: ["h1:400"],
        },
        {
          name: "control byte in a header value",
          text: `GET ${path} HTTP/1.1\r\nHost: x\r\nX-A: a\u0001b\r\n\r\n`,
          expect: ["h1:400"],
        },
        {
          name: "header line without a colon",
          text: `GET ${path} HTTP/1.1\r\nHost: x\r\nnocolon\r\n\r\n`,
          expect: ["h1:400"],
        },
        { name: "obs-fold", text: `GET ${path} HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n`, expect: ["h1:400"] },
        {
          name: "two different content-lengths",
          text: `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab`,
          expect: ["h1:400"],
        },
        {
          name: "content-length and chunked",
          text: `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
          expect: ["h1:400"],
        },
        {
          name: "negative content-length",
          text: `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n`,
          expect: ["h1:400"],
        },
        {
          name: "bad chunk size",
          text: `POST ${path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n`,
          // The admin port answers 405 to a POST before it reads the (broken) body.
          expect: t === "gateway" ? ["h1:400"] : ["h1:405"],
        },
        { name: "unknown HTTP version", text: `GET ${path} HTTP/9.9\r\nHost: x\r\n\r\n`, expect: ["h1:505", "h1:400"] },
        { name: "bare LF line endings", text: `GET ${path} HTTP/1.1\nHost: x\n\n`, expect: ["h1:400"] },
        {
          name: "a 20 KiB header",
          text: `GET ${path} HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(20 * 1024)}\r\n\r\n`,
          expect: ["h1:431"],
        },
        {
          name: "a 20 KiB URL",
          text: `GET ${path}?${"a".repeat(20 * 1024)} HTTP/1.1\r\nHost: x\r\n\r\n`,
          expect: ["h1:431"],
        },
        {
          name: "500 small headers",
          text: `GET ${path} HTTP/1.1\r\nHost: x\r\n${Array.from({ length: 500 }, (_, i) => `X-${i}: v\r\n`).join("")}\r\n`,
          expect: ["*h1"],
        },
        { name: "no Host header", text: `GET ${path} HTTP/1.1\r\n\r\n`, expect: ["h1:400"] },
      ];
      const v = rng.pick(variants);
      return {
        description: v.name,
        probe: { kind: "raw", chunks: [latin1(v.text)], gapMs: 0, read: "h1", waitMs: 3_000 },
        expect: { edge: v.expect, admin: v.expect },
      };
    },
  },
  {
    name: "h1: slowly dribbled request",
    weight: 1,
    targets: H1_TARGETS,
    make: (rng, t) => {
      const body = '{"userId":"u-1"}';
      const text =
        t === "gateway"
          ? `POST ${RPC.gateway.path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`
          : "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
      const chunks = split(latin1(text), rng.between(10, 40));
      return {
        description: `a valid request in ${chunks.length} pieces, 50 ms apart`,
        probe: { kind: "raw", chunks, gapMs: 50, read: "h1", waitMs: 3_000 },
        expect: { edge: ["h1:200"], admin: ["h1:200"] },
      };
    },
  },
  {
    name: "h1: TCP reset mid-request",
    weight: 2,
    targets: H1_TARGETS,
    make: (rng, t) => {
      const text =
        t === "gateway"
          ? `POST ${RPC.gateway.path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"userId":`
          : "GET /metrics HTTP/1.1\r\nHost: x\r\n";
      const bytes = latin1(text);
      return {
        description: "part of a request, then a TCP RST",
        probe: {
          kind: "raw",
          chunks: [bytes.subarray(0, rng.between(1, bytes.length))],
          gapMs: 0,
          read: "h1",
          socketReset: true,
          waitMs: 0,
        },
        expect: { edge: ["reset"], admin: ["reset"] },
      };
    },
  },
  {
    name: "connect: bad JSON",
    weight: 6,
    targets: ["gateway"],
    make: (rng) => {
      // Bodies are built only for the variant picked (some are megabytes).
      const variants: [string, () => Uint8Array][] = [
        ["not JSON", () => utf8("{nope")],
        ["an array", () => utf8("[]")],
        ["null", () => utf8("null")],
        ["a number for the string field", () => utf8('{"userId":5}')],
        ["an unknown field", () => utf8('{"userId":"u-1","admin":true}')],
        ["deeply nested objects", () => utf8(`${'{"a":'.repeat(50_000)}1${"}".repeat(50_000)}`)],
        ["unterminated nested arrays", () => utf8(`{"userId":${"[".repeat(100_000)}`)],
        ["invalid UTF-8 in the string", () => concat([utf8('{"userId":"'), new Uint8Array([0xc3, 0x28]), utf8('"}')])],
        ["lone surrogate escape", () => utf8('{"userId":"\\ud800"}')],
        ["random bytes", () => rng.bytes(rng.between(1, 200))],
        ["a 5 MiB string", () => utf8(`{"userId":"${"a".repeat(5 * 1024 * 1024)}"}`)],
      ];
      const [name, build] = rng.pick(variants);
      const v = { name, body: build(), expect: name === "a 5 MiB string" ? ["http:429"] : ["http:400"] };
      return {
        description: v.name,
        probe: {
          kind: "fetch",
          method: "POST",
          path: RPC.gateway.path,
          headers: { "content-type": "application/json" },
          body: v.body,
        },
        expect: { edge: v.expect },
      };
    },
  },
  {
    name: "connect: bad headers and content types",
    weight: 4,
    targets: ["gateway"],
    make: (rng) => {
      const body = utf8('{"userId":"u-1"}');
      const variants: {
        name: string;
        headers: Record<string, string>;
        body?: Uint8Array;
        method?: string;
        path?: string;
        expect: readonly string[];
      }[] = [
        ...BAD_CONNECT_TIMEOUTS.map((v) => ({
          name: `connect-timeout-ms "${v}"`,
          headers: { "content-type": "application/json", "connect-timeout-ms": v },
          expect: ["http:400"],
        })),
        {
          name: "connect-timeout-ms 9999999999 (10 digits, ~115 days)",
          headers: { "content-type": "application/json", "connect-timeout-ms": "9999999999" },
          expect: ["http:200"],
        },
        { name: "content-type text/plain", headers: { "content-type": "text/plain" }, expect: ["http:415"] },
        { name: "no content-type", headers: {}, expect: ["http:415"] },
        {
          name: "application/proto with a JSON body",
          headers: { "content-type": "application/proto" },
          // connect-node answers undecodable binary with Internal (as grpc-js does), undecodable JSON with InvalidArgument.
          expect: ["http:500"],
        },
        {
          name: "connect-protocol-version 2",
          headers: { "content-type": "application/json", "connect-protocol-version": "2" },
          // connect-node checks the version only when it requires the header, which it does not here.
          expect: ["http:200"],
        },
        {
          name: "content-encoding gzip, body not gzip",
          headers: { "content-type": "application/json", "content-encoding": "gzip" },
          expect: ["http:400"],
        },
        {
          name: "content-encoding unknown",
          headers: { "content-type": "application/json", "content-encoding": "snappy" },
          expect: ["http:404", "http:400", "http:415", "http:501"],
        },
        {
          name: "GET with a bad base64 message",
          headers: {},
          method: "GET",
          path: `${RPC.gateway.path}?encoding=json&base64=1&message=%%%`,
          // The base64 decoder's plain Error becomes Internal in connect-node.
          expect: ["http:500"],
        },
        {
          name: "GET with no message",
          headers: {},
          method: "GET",
          path: `${RPC.gateway.path}?encoding=json`,
          expect: ["http:400"],
        },
        { name: "PUT", headers: { "content-type": "application/json" }, method: "PUT", expect: ["http:405"] },
        {
          name: "unknown method",
          headers: { "content-type": "application/json" },
          path: `/${RPC.gateway.service}/Nope`,
          expect: ["http:404"],
        },
      ];
      const v = rng.pick(variants);
      return {
        description: v.name,
        probe: {
          kind: "fetch",
          method: v.method ?? "POST",
          path: v.path ?? RPC.gateway.path,
          headers: v.headers,
          ...((v.method ?? "POST") === "POST" ? { body: v.body ?? body } : {}),
        },
        expect: { edge: v.expect },
      };
    },
  },
  {
    name: "grpc-web: malformed frames",
    weight: 4,
    targets: ["gateway"],
    make: (rng) => {
      const full = envelope(VALID_REQUEST);
      const variants: { name: string; body: Uint8Array; expect: readonly string[] }[] = [
        { name: "valid", body: full, expect: ["grpc:0"] },
        {
          name: "length prefix larger than the data",
          body: envelope(VALID_REQUEST, { declared: 100 }),
          expect: ["grpc:3"],
        },
        {
          name: "length prefix beyond 4 MiB",
          body: envelope(VALID_REQUEST, { declared: 0xffffffff }),
          expect: ["grpc:8"],
        },
        ...[rng.between(1, full.length - 1)].map((cut) => ({
          name: `truncated after ${cut} bytes`,
          body: full.subarray(0, cut),
          // A complete prefix and no data at all: connect-node's "missing input message" is Unimplemented.
          expect: cut === 5 ? ["grpc:12"] : ["grpc:3"],
        })),
        { name: "compressed flag, no encoding", body: envelope(VALID_REQUEST, { flags: 1 }), expect: ["grpc:13"] },
        // Unlike the gRPC fast path (InvalidArgument), connect-node answers Internal, as grpc-js does.
        { name: "invalid protobuf", body: envelope(new Uint8Array(rng.pick(BAD_PROTOBUF).bytes)), expect: ["grpc:13"] },
        { name: "random bytes", body: rng.bytes(rng.between(1, 200)), expect: ["*grpc"] },
      ];
      const v = rng.pick(variants);
      return {
        description: v.name,
        probe: {
          kind: "fetch",
          method: "POST",
          path: RPC.gateway.path,
          headers: { "content-type": "application/grpc-web+proto" },
          body: v.body,
        },
        expect: { edge: v.expect },
      };
    },
  },
  {
    name: "admin: odd requests",
    weight: 4,
    targets: ADMIN_TARGETS,
    make: (rng) => {
      const variants: { name: string; method: string; path: string; expect: readonly string[] }[] = [
        { name: "POST /metrics", method: "POST", path: "/metrics", expect: ["http:405"] },
        { name: "DELETE /healthz", method: "DELETE", path: "/healthz", expect: ["http:405"] },
        { name: "unknown path", method: "GET", path: `/${"x".repeat(rng.between(1, 2000))}`, expect: ["http:404"] },
        { name: "dot segments", method: "GET", path: "/healthz/../metrics", expect: ["http:404", "http:200"] },
        { name: "query junk", method: "GET", path: "/readyz?%ff%00=&&==", expect: ["http:200"] },
        { name: "HEAD /healthz", method: "HEAD", path: "/healthz", expect: ["http:200"] },
        { name: "GET /debug/rpc", method: "GET", path: "/debug/rpc", expect: ["http:200"] },
      ];
      const v = rng.pick(variants);
      return {
        description: v.name,
        probe: { kind: "fetch", method: v.method, path: v.path, headers: {} },
        expect: { admin: v.expect },
      };
    },
  },
];

export const FAMILY_NAMES = families.map((f) => f.name);

const totalWeight = families.reduce((sum, f) => sum + f.weight, 0);

/** The case of this seed: the family by weight, then a target the family applies to, then the details. */
export function generateCase(seed: number): FuzzCase {
  const rng = createRng(seed);
  let roll = rng.next() * totalWeight;
  let family = families[families.length - 1] as Family;
  for (const f of families) {
    roll -= f.weight;
    if (roll < 0) {
      family = f;
      break;
    }
  }
  const target = rng.pick(family.targets);
  const draft = family.make(rng, target);
  const expect = draft.expect[ENGINE_OF[target]];
  if (expect === undefined) throw new Error(`family "${family.name}" has no expectation for ${target}`);
  return { seed, family: family.name, description: draft.description, target, probe: draft.probe, expect };
}

/** True when `outcome` is one of `expect` (`*` any answer, `*grpc` any gRPC status, `*h1` any HTTP/1.1 status). */
export function outcomeMatches(outcome: string, expect: readonly string[]): boolean {
  return expect.some(
    (e) =>
      e === outcome ||
      (e === "*" && outcome !== "silent") ||
      (e === "*grpc" && outcome.startsWith("grpc:")) ||
      (e === "*h1" && outcome.startsWith("h1:")),
  );
}
