/**
 * HTTP/2 written by hand, for tests that send what no well-behaved client
 * sends: the byte builders (protobuf field, gRPC envelope, frames, HPACK
 * literals) used by the fuzz cases, and {@link RawH2}, a client on a plain
 * `net.Socket` that frames every byte itself and parses what comes back.
 */
import type * as net from "node:net";
import { connectSocket, RawConnection, type RawConnectionOptions } from "./raw-socket.ts";

// ---------------------------------------------------------------------------
// Bytes: protobuf, gRPC envelopes, HTTP/2 frames

export const latin1 = (s: string) => new Uint8Array(Buffer.from(s, "latin1"));
export const utf8 = (s: string) => new Uint8Array(Buffer.from(s, "utf8"));

export function concat(parts: readonly Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts));
}

export function varint(n: number): number[] {
  const out: number[] = [];
  let v = n;
  while (v > 0x7f) {
    out.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return out;
}

/** Field 1 as a string: GetProfileRequest.user_id and GetUserRequest.id alike. */
export function field1String(value: Uint8Array): Uint8Array {
  return concat([new Uint8Array([0x0a, ...varint(value.length)]), value]);
}

/** A gRPC length-prefixed message; `declared` overrides the length written in the prefix. */
export function envelope(message: Uint8Array, opts: { flags?: number; declared?: number } = {}): Uint8Array {
  const out = new Uint8Array(5 + message.length);
  out[0] = opts.flags ?? 0;
  new DataView(out.buffer).setUint32(1, opts.declared ?? message.length);
  out.set(message, 5);
  return out;
}

export const H2_PREFACE = latin1("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
export const H2 = {
  DATA: 0,
  HEADERS: 1,
  PRIORITY: 2,
  RST_STREAM: 3,
  SETTINGS: 4,
  PUSH_PROMISE: 5,
  PING: 6,
  GOAWAY: 7,
  WINDOW_UPDATE: 8,
  CONTINUATION: 9,
} as const;
export const END_STREAM = 0x1;
export const ACK = 0x1;
export const END_HEADERS = 0x4;

/** HTTP/2 error codes (RFC 9113 §7). */
export const H2_ERROR = {
  NO_ERROR: 0,
  PROTOCOL_ERROR: 1,
  INTERNAL_ERROR: 2,
  FLOW_CONTROL_ERROR: 3,
  SETTINGS_TIMEOUT: 4,
  STREAM_CLOSED: 5,
  FRAME_SIZE_ERROR: 6,
  REFUSED_STREAM: 7,
  CANCEL: 8,
  COMPRESSION_ERROR: 9,
  CONNECT_ERROR: 10,
  ENHANCE_YOUR_CALM: 11,
  INADEQUATE_SECURITY: 12,
  HTTP_1_1_REQUIRED: 13,
} as const;

/** SETTINGS identifiers (RFC 9113 §6.5.2). */
export const H2_SETTING = {
  HEADER_TABLE_SIZE: 1,
  ENABLE_PUSH: 2,
  MAX_CONCURRENT_STREAMS: 3,
  INITIAL_WINDOW_SIZE: 4,
  MAX_FRAME_SIZE: 5,
  MAX_HEADER_LIST_SIZE: 6,
} as const;

export function h2Frame(type: number, flags: number, streamId: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(9 + payload.length);
  const view = new DataView(out.buffer);
  view.setUint8(0, (payload.length >>> 16) & 0xff);
  view.setUint16(1, payload.length & 0xffff);
  view.setUint8(3, type);
  view.setUint8(4, flags);
  view.setUint32(5, streamId & 0x7fffffff);
  out.set(payload, 9);
  return out;
}

function hpackInt(value: number, prefixBits: number, first: number): number[] {
  const max = (1 << prefixBits) - 1;
  if (value < max) return [first | value];
  const out = [first | max];
  let v = value - max;
  while (v >= 128) {
    out.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return out;
}

/** HPACK "literal header field without indexing, new name", no Huffman: any bytes at all. */
export function hpackLiteral(name: Uint8Array, value: Uint8Array): Uint8Array {
  return concat([
    new Uint8Array([0x00, ...hpackInt(name.length, 7, 0)]),
    name,
    new Uint8Array(hpackInt(value.length, 7, 0)),
    value,
  ]);
}

export type RawHeader = readonly [string | Uint8Array, string | Uint8Array];

export function hpackBlock(headers: readonly RawHeader[]): Uint8Array {
  const b = (v: string | Uint8Array) => (typeof v === "string" ? latin1(v) : v);
  return concat(headers.map(([n, v]) => hpackLiteral(b(n), b(v))));
}

/** A whole HTTP/2 client conversation on stream 1: preface, SETTINGS, HEADERS, and DATA if any. */
export function h2Request(
  headerBlock: Uint8Array,
  data?: Uint8Array,
  extraFrames: readonly Uint8Array[] = [],
): Uint8Array {
  return concat([
    H2_PREFACE,
    h2Frame(H2.SETTINGS, 0, 0, new Uint8Array(0)),
    h2Frame(H2.HEADERS, END_HEADERS | (data === undefined ? END_STREAM : 0), 1, headerBlock),
    ...(data === undefined ? [] : [h2Frame(H2.DATA, END_STREAM, 1, data)]),
    ...extraFrames,
  ]);
}

/** A SETTINGS payload: 6 bytes per (identifier, value). */
export function settingsPayload(settings: Readonly<Record<number, number>>): Uint8Array {
  const entries = Object.entries(settings);
  const out = Buffer.alloc(6 * entries.length);
  entries.forEach(([id, value], i) => {
    out.writeUInt16BE(Number(id), 6 * i);
    out.writeUInt32BE(value >>> 0, 6 * i + 2);
  });
  return new Uint8Array(out);
}

/** Request headers of a gRPC call (`te: trailers`, `content-type: application/grpc`) to `path`. */
export function grpcRequestHeaders(path: string, extra: readonly RawHeader[] = []): RawHeader[] {
  return [
    [":method", "POST"],
    [":scheme", "http"],
    [":path", path],
    [":authority", "localhost"],
    ["content-type", "application/grpc"],
    ["te", "trailers"],
    ...extra,
  ];
}

// ---------------------------------------------------------------------------
// :status from an HPACK block (enough of HPACK for what Node's servers send first)

/** HPACK static table entries 8-14 are `:status` 200, 204, 206, 304, 400, 404, 500. */
const STATIC_STATUS: Record<number, number> = { 8: 200, 9: 204, 10: 206, 11: 304, 12: 400, 13: 404, 14: 500 };
/** Huffman codes of the ten digits (RFC 7541 Appendix B): [code, bit length]. */
const HUFFMAN_DIGITS: readonly (readonly [number, number])[] = [
  [0x0, 5],
  [0x1, 5],
  [0x2, 5],
  [0x19, 6],
  [0x1a, 6],
  [0x1b, 6],
  [0x1c, 6],
  [0x1d, 6],
  [0x1e, 6],
  [0x1f, 6],
];

function huffmanDigits(bytes: Uint8Array): string | undefined {
  let bits = 0;
  let nbits = 0;
  let out = "";
  let i = 0;
  for (;;) {
    while (nbits < 6 && i < bytes.length) {
      bits = (bits << 8) | (bytes[i++] as number);
      nbits += 8;
    }
    if (nbits < 5) break;
    const found = HUFFMAN_DIGITS.findIndex(
      ([code, len]) => nbits >= len && ((bits >>> (nbits - len)) & ((1 << len) - 1)) === code,
    );
    if (found < 0) break;
    out += String(found);
    nbits -= (HUFFMAN_DIGITS[found] as readonly [number, number])[1];
    bits &= (1 << nbits) - 1;
    if (out.length === 3) return out;
  }
  return out.length === 3 ? out : undefined;
}

/**
 * The `:status` of a response header block when it comes first, as nghttp2
 * (Node) encodes it: an indexed static entry (200, 404, ...), or a literal
 * with the static name `:status` and a plain or Huffman-coded value (429,
 * 431, ...). Undefined for anything else; no dynamic table is kept.
 */
export function statusOfBlock(block: Uint8Array): number | undefined {
  const first = block[0];
  if (first === undefined) return undefined;
  if (first & 0x80) return STATIC_STATUS[first & 0x7f];
  if ((first & 0xe0) === 0x20) return undefined; // a dynamic table size update
  // Literal with incremental indexing (01xxxxxx), without (0000xxxx) or never indexed (0001xxxx), name index 8.
  const nameIndex = (first & 0xc0) === 0x40 ? first & 0x3f : first & 0x0f;
  if (nameIndex !== 8) return undefined;
  const lenByte = block[1];
  if (lenByte === undefined) return undefined;
  const value = block.subarray(2, 2 + (lenByte & 0x7f));
  const text = lenByte & 0x80 ? huffmanDigits(value) : Buffer.from(value).toString("latin1");
  return text === undefined || !/^\d{3}$/.test(text) ? undefined : Number(text);
}

// ---------------------------------------------------------------------------
// The client

export interface H2Frame {
  readonly type: number;
  readonly flags: number;
  readonly streamId: number;
  readonly payload: Buffer;
}

export interface RawStream {
  readonly id: number;
  /** HEADERS frames received (response headers, then trailers). */
  headerFrames: number;
  /** `:status` of the first HEADERS, when {@link statusOfBlock} can read it. */
  status?: number;
  /** DATA payload bytes received. */
  dataBytes: number;
  /** The server ended the stream (END_STREAM on HEADERS or DATA). */
  remoteEnded: boolean;
  /** RST_STREAM code received from the server. */
  rstCode?: number;
  /** We reset the stream, or ended our side. */
  localEnded: boolean;
  /** What we may still send on it (flow control). */
  sendWindow: number;
  /** Received bytes not yet returned with WINDOW_UPDATE. */
  unacked: number;
}

export interface GoAway {
  readonly lastStreamId: number;
  readonly code: number;
  readonly debug: string;
  /** ms after the connection opened. */
  readonly atMs: number;
}

export interface RawH2Options extends RawConnectionOptions {
  /** Send the preface and SETTINGS at once (default true). */
  readonly preface?: boolean;
  /** Our SETTINGS (identifier → value). */
  readonly settings?: Readonly<Record<number, number>>;
  /** ACK the server's SETTINGS (default true). */
  readonly ackSettings?: boolean;
  /** Answer the server's PINGs (default true). */
  readonly ackPings?: boolean;
  /** Give back flow-control credit for DATA received (default true). */
  readonly returnCredit?: boolean;
}

/**
 * An HTTP/2 client that writes every frame by hand on a `net.Socket`:
 * streams with any headers, DATA in any frame size (within flow control,
 * as a real client must to get its bytes read), RST_STREAM, PING,
 * WINDOW_UPDATE, raw bytes; and a parser of what comes back (SETTINGS,
 * GOAWAY with its code and debug data, RST_STREAM codes, HEADERS, DATA,
 * PING ACKs). It never throws on a closed socket: writes after a close are
 * dropped and reported by {@link closed}.
 */
export class RawH2 extends RawConnection {
  /** Every stream we opened, by id. */
  readonly streams = new Map<number, RawStream>();
  /** Frames received, by type. */
  readonly received = new Map<number, number>();
  readonly serverSettings = new Map<number, number>();
  goaway: GoAway | undefined;
  /** PING frames with ACK received. */
  pingAcks = 0;
  nextStreamId = 1;
  /** What we may still send on the connection (flow control). */
  connectionWindow = 65_535;
  private initialStreamWindow = 65_535;
  private maxFrameSize = 16_384;
  private unackedConnection = 0;
  private inbox: Buffer = Buffer.alloc(0);
  private readonly options: RawH2Options;

  private constructor(socket: net.Socket, options: RawH2Options) {
    super(socket);
    this.options = options;
  }

  /** Connects (from `localAddress` when given) and, unless `preface: false`, sends the preface and SETTINGS. */
  static async connect(options: RawH2Options): Promise<RawH2> {
    const { socket, connected } = connectSocket(options);
    const client = new RawH2(socket, options);
    await connected;
    if (options.preface ?? true) client.sendPreface(options.settings ?? {});
    return client;
  }

  /** The preface and our SETTINGS frame. */
  sendPreface(settings: Readonly<Record<number, number>> = {}): void {
    this.writeNow(concat([H2_PREFACE, h2Frame(H2.SETTINGS, 0, 0, settingsPayload(settings))]));
  }

  /** The frames of a header block: HEADERS, then CONTINUATION past the frame size. */
  headerFrames(streamId: number, headers: readonly RawHeader[] | Uint8Array, endStream: boolean): Uint8Array {
    const block = headers instanceof Uint8Array ? headers : hpackBlock(headers);
    const frames: Uint8Array[] = [];
    const size = this.maxFrameSize;
    for (let at = 0; at === 0 || at < block.length; at += size) {
      const part = block.subarray(at, at + size);
      const last = at + size >= block.length;
      const flags = (last ? END_HEADERS : 0) | (at === 0 && endStream ? END_STREAM : 0);
      frames.push(h2Frame(at === 0 ? H2.HEADERS : H2.CONTINUATION, flags, streamId, part));
    }
    return concat(frames);
  }

  /** Opens a stream with `headers` (HEADERS and CONTINUATION frames as needed) and returns its id. */
  openStream(headers: readonly RawHeader[] | Uint8Array, opts: { endStream?: boolean } = {}): number {
    const id = this.allocateStream();
    this.writeNow(this.headerFrames(id, headers, opts.endStream ?? false));
    if (opts.endStream) (this.streams.get(id) as RawStream).localEnded = true;
    return id;
  }

  /** Registers the next client stream id (odd) without sending anything: for frames built by hand. */
  allocateStream(): number {
    const id = this.nextStreamId;
    this.nextStreamId += 2;
    this.streams.set(id, {
      id,
      headerFrames: 0,
      dataBytes: 0,
      remoteEnded: false,
      localEnded: false,
      sendWindow: this.initialStreamWindow,
      unacked: 0,
    });
    return id;
  }

  /**
   * Sends `data` on `streamId` in DATA frames of `frameSize` payload bytes,
   * within the flow-control windows the server grants (waiting for its
   * WINDOW_UPDATEs). Stops early, returning the bytes sent, when the stream
   * or the connection is closed by the server, or at `deadline`
   * (performance.now()), or when `stop()` says so.
   */
  async sendData(
    streamId: number,
    data: Uint8Array,
    opts: { frameSize?: number; endStream?: boolean; deadline?: number; stop?: () => boolean } = {},
  ): Promise<number> {
    const stream = this.streams.get(streamId);
    if (stream === undefined) throw new Error(`stream ${streamId} was not opened`);
    const frameSize = Math.max(1, Math.min(opts.frameSize ?? this.maxFrameSize, this.maxFrameSize));
    const deadline = opts.deadline ?? Number.POSITIVE_INFINITY;
    const stopped = () =>
      this.isClosed ||
      stream.rstCode !== undefined ||
      stream.remoteEnded ||
      performance.now() >= deadline ||
      (opts.stop?.() ?? false);
    // Frames are written in batches of about 64 KiB of wire bytes, so that one batch is cheap to build.
    const framesPerBatch = Math.max(1, Math.floor(65_536 / (9 + frameSize)));
    let sent = 0;
    while (sent < data.length) {
      if (stopped()) return sent;
      const credit = Math.min(this.connectionWindow, stream.sendWindow);
      if (credit <= 0) {
        await this.waitFor(() => Math.min(this.connectionWindow, stream.sendWindow) > 0 || stopped(), deadline);
        continue;
      }
      const take = Math.min(credit, data.length - sent, framesPerBatch * frameSize);
      const frames = Math.ceil(take / frameSize);
      const out = Buffer.allocUnsafe(take + 9 * frames);
      let at = 0;
      for (let i = 0; i < frames; i++) {
        const len = Math.min(frameSize, take - i * frameSize);
        const last = sent + i * frameSize + len === data.length;
        out.writeUIntBE(len, at, 3);
        out[at + 3] = H2.DATA;
        out[at + 4] = last && opts.endStream ? END_STREAM : 0;
        out.writeUInt32BE(streamId, at + 5);
        out.set(data.subarray(sent + i * frameSize, sent + i * frameSize + len), at + 9);
        at += 9 + len;
      }
      this.connectionWindow -= take;
      stream.sendWindow -= take;
      sent += take;
      if (sent === data.length && opts.endStream) stream.localEnded = true;
      await this.write(out, deadline);
    }
    return sent;
  }

  /** DATA with END_STREAM and nothing in it. */
  endStream(streamId: number): void {
    const stream = this.streams.get(streamId);
    if (stream) stream.localEnded = true;
    this.writeNow(h2Frame(H2.DATA, END_STREAM, streamId, new Uint8Array(0)));
  }

  rst(streamId: number, code: number = H2_ERROR.CANCEL): void {
    const stream = this.streams.get(streamId);
    if (stream) stream.localEnded = true;
    const payload = Buffer.alloc(4);
    payload.writeUInt32BE(code);
    this.writeNow(h2Frame(H2.RST_STREAM, 0, streamId, payload));
  }

  ping(payload: Uint8Array = new Uint8Array(8), ack = false): boolean {
    return this.writeNow(h2Frame(H2.PING, ack ? ACK : 0, 0, payload));
  }

  windowUpdate(streamId: number, increment: number): boolean {
    const payload = Buffer.alloc(4);
    payload.writeUInt32BE(increment & 0x7fffffff);
    return this.writeNow(h2Frame(H2.WINDOW_UPDATE, 0, streamId, payload));
  }

  /** One line: what came back, for assertion messages. */
  describe(): string {
    const types = Object.entries(H2)
      .filter(([, t]) => (this.received.get(t) ?? 0) > 0)
      .map(([name, t]) => `${name}×${this.received.get(t)}`)
      .join(" ");
    const goaway = this.goaway
      ? `GOAWAY(${codeName(this.goaway.code)}${this.goaway.debug ? ` "${this.goaway.debug}"` : ""}) at ${this.goaway.atMs.toFixed(0)} ms`
      : "no GOAWAY";
    return `received [${types || "nothing"}], ${goaway}, ${this.describeClose()}, ${this.bytesSent} bytes sent`;
  }

  protected onBytes(chunk: Buffer): void {
    this.inbox = this.inbox.length === 0 ? chunk : Buffer.concat([this.inbox, chunk]);
    let at = 0;
    while (this.inbox.length - at >= 9) {
      const length = this.inbox.readUIntBE(at, 3);
      if (this.inbox.length - at - 9 < length) break;
      const frame: H2Frame = {
        type: this.inbox[at + 3] as number,
        flags: this.inbox[at + 4] as number,
        streamId: this.inbox.readUInt32BE(at + 5) & 0x7fffffff,
        payload: this.inbox.subarray(at + 9, at + 9 + length),
      };
      at += 9 + length;
      this.onFrame(frame);
    }
    this.inbox = at === this.inbox.length ? Buffer.alloc(0) : Buffer.from(this.inbox.subarray(at));
  }

  private onFrame(frame: H2Frame): void {
    this.received.set(frame.type, (this.received.get(frame.type) ?? 0) + 1);
    const stream = this.streams.get(frame.streamId);
    const { payload } = frame;
    switch (frame.type) {
      case H2.SETTINGS:
        if (frame.flags & ACK) break;
        for (let i = 0; i + 6 <= payload.length; i += 6) {
          const id = payload.readUInt16BE(i);
          const value = payload.readUInt32BE(i + 2);
          this.serverSettings.set(id, value);
          if (id === H2_SETTING.INITIAL_WINDOW_SIZE) {
            const delta = value - this.initialStreamWindow;
            this.initialStreamWindow = value;
            for (const s of this.streams.values()) s.sendWindow += delta;
          } else if (id === H2_SETTING.MAX_FRAME_SIZE) {
            this.maxFrameSize = value;
          }
        }
        if (this.options.ackSettings ?? true) this.writeNow(h2Frame(H2.SETTINGS, ACK, 0, new Uint8Array(0)));
        break;
      case H2.WINDOW_UPDATE: {
        const increment = payload.readUInt32BE(0) & 0x7fffffff;
        if (frame.streamId === 0) this.connectionWindow += increment;
        else if (stream) stream.sendWindow += increment;
        break;
      }
      case H2.PING:
        if (frame.flags & ACK) this.pingAcks++;
        else if (this.options.ackPings ?? true) this.ping(payload, true);
        break;
      case H2.GOAWAY:
        // The first GOAWAY says why; Node follows its own with a GOAWAY(NO_ERROR) as it tears the session down.
        this.goaway ??= {
          lastStreamId: payload.readUInt32BE(0) & 0x7fffffff,
          code: payload.readUInt32BE(4),
          debug: payload.subarray(8).toString("latin1"),
          atMs: performance.now() - this.openedAt,
        };
        break;
      case H2.RST_STREAM:
        if (stream) stream.rstCode = payload.readUInt32BE(0);
        break;
      case H2.HEADERS:
        if (stream) {
          if (stream.headerFrames === 0) {
            // Skip padding and priority fields before the block.
            let block: Buffer = payload;
            if (frame.flags & 0x8) block = block.subarray(1, block.length - (payload[0] as number));
            if (frame.flags & 0x20) block = block.subarray(5);
            const status = statusOfBlock(block);
            if (status !== undefined) stream.status = status;
          }
          stream.headerFrames++;
          if (frame.flags & END_STREAM) stream.remoteEnded = true;
        }
        break;
      case H2.DATA:
        if (stream) {
          stream.dataBytes += payload.length;
          if (frame.flags & END_STREAM) stream.remoteEnded = true;
        }
        if ((this.options.returnCredit ?? true) && payload.length > 0) this.returnCredit(stream, payload.length);
        break;
    }
  }

  /** Gives back flow-control credit once a quarter of the default window has been received. */
  private returnCredit(stream: RawStream | undefined, bytes: number): void {
    this.unackedConnection += bytes;
    if (this.unackedConnection >= 16_384) {
      this.windowUpdate(0, this.unackedConnection);
      this.unackedConnection = 0;
    }
    if (stream && !stream.remoteEnded) {
      stream.unacked += bytes;
      if (stream.unacked >= 16_384) {
        this.windowUpdate(stream.id, stream.unacked);
        stream.unacked = 0;
      }
    }
  }
}

/** `ENHANCE_YOUR_CALM` for 11, or the number. */
export function codeName(code: number): string {
  return Object.entries(H2_ERROR).find(([, c]) => c === code)?.[0] ?? String(code);
}
