/**
 * HTTP/1.1 written by hand on a `net.Socket`: requests with any head and
 * body framing (Content-Length, chunks of any size, pipelined), and an
 * incremental parser of the responses that come back (status, headers,
 * Content-Length or chunked bodies), with the time the socket closed.
 */
import { connectSocket, RawConnection, type RawConnectionOptions } from "./raw-socket.ts";

export interface H1Response {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  /** The body (kept up to 64 KiB). */
  readonly body: Buffer;
  /** ms after the connection opened. */
  readonly atMs: number;
}

/** A request head (and body with Content-Length when given). Header names as written. */
export function h1Request(
  method: string,
  path: string,
  headers: Readonly<Record<string, string>>,
  body?: Uint8Array | string,
): Buffer {
  const bytes = body === undefined ? undefined : typeof body === "string" ? Buffer.from(body) : Buffer.from(body);
  const lines = [`${method} ${path} HTTP/1.1`, "Host: localhost"];
  for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
  if (bytes !== undefined) lines.push(`Content-Length: ${bytes.length}`);
  const head = Buffer.from(`${lines.join("\r\n")}\r\n\r\n`, "latin1");
  return bytes === undefined ? head : Buffer.concat([head, bytes]);
}

/** The head of a request whose body follows in chunks (`Transfer-Encoding: chunked`). */
export function h1ChunkedHead(method: string, path: string, headers: Readonly<Record<string, string>>): Buffer {
  return h1Request(method, path, { ...headers, "Transfer-Encoding": "chunked" });
}

/** `bytes` as chunks of `chunkSize` bytes each, e.g. 1-byte chunks "1\r\nX\r\n". Add {@link LAST_CHUNK} to end. */
export function h1Chunks(bytes: Uint8Array, chunkSize: number): Buffer {
  const parts: Buffer[] = [];
  for (let at = 0; at < bytes.length; at += chunkSize) {
    const part = bytes.subarray(at, at + chunkSize);
    parts.push(Buffer.from(`${part.length.toString(16)}\r\n`, "latin1"), Buffer.from(part), CRLF);
  }
  return Buffer.concat(parts);
}

const CRLF = Buffer.from("\r\n");
export const LAST_CHUNK = Buffer.from("0\r\n\r\n");

export type RawH1Options = RawConnectionOptions;

/**
 * An HTTP/1.1 client with no opinion: it writes what it is given, when it
 * is given, and parses every response that comes back, in order. It never
 * throws on a closed socket: writes after a close are dropped.
 */
export class RawH1 extends RawConnection {
  /** Responses parsed, in order (bodies kept up to 64 KiB each; see {@link statuses} for all). */
  readonly responses: H1Response[] = [];
  /** The status of every response, in order. */
  readonly statuses: number[] = [];
  /** Bytes the parser could not read as a response. */
  garbled = false;
  /** Responses kept in {@link responses}; only statuses past it. */
  keepResponses = 1_000;
  private inbox: Buffer = Buffer.alloc(0);

  static async connect(options: RawH1Options): Promise<RawH1> {
    const { socket, connected } = connectSocket(options);
    const client = new RawH1(socket);
    await connected;
    return client;
  }

  protected onBytes(chunk: Buffer): void {
    this.inbox = this.inbox.length === 0 ? chunk : Buffer.concat([this.inbox, chunk]);
    this.parse(false);
  }

  protected override onClose(): void {
    this.parse(true);
  }

  /**
   * Writes `bytes` in pieces of at most `pieceBytes`, waiting for the socket
   * between them; stops at `deadline` (performance.now()), on close, or when
   * `stop()` says so. Returns the bytes written.
   */
  async writeAll(
    bytes: Uint8Array,
    opts: { pieceBytes?: number; deadline?: number; stop?: () => boolean } = {},
  ): Promise<number> {
    const piece = opts.pieceBytes ?? 65_536;
    let at = 0;
    while (at < bytes.length) {
      if (this.isClosed || performance.now() >= (opts.deadline ?? Number.POSITIVE_INFINITY) || opts.stop?.()) break;
      await this.write(bytes.subarray(at, at + piece), opts.deadline);
      at += piece;
    }
    return Math.min(at, bytes.length);
  }

  describe(): string {
    const statuses = new Map<number, number>();
    for (const s of this.statuses) statuses.set(s, (statuses.get(s) ?? 0) + 1);
    const answered = [...statuses].map(([s, n]) => `${s}×${n}`).join(" ") || "no response";
    return `${answered}, ${this.describeClose()}, ${this.bytesSent} bytes sent`;
  }

  /** Parses every complete response in the inbox; at close, a body read to the end counts too. */
  private parse(atClose: boolean): void {
    let at = 0;
    const inbox = this.inbox;
    for (;;) {
      if (this.garbled || at >= inbox.length) break;
      const headEnd = inbox.indexOf("\r\n\r\n", at);
      if (headEnd < 0) {
        if (inbox.length - at > 64 * 1024 || atClose) this.garbled = true;
        break;
      }
      const lines = inbox.subarray(at, headEnd).toString("latin1").split("\r\n");
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? "");
      if (!m) {
        this.garbled = true;
        break;
      }
      const headers: Record<string, string> = {};
      for (const line of lines.slice(1)) {
        const colon = line.indexOf(":");
        if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
      const status = Number(m[1]);
      const bodyStart = headEnd + 4;
      let body: Buffer;
      let end: number;
      if (status === 204 || status === 304 || (status >= 100 && status < 200)) {
        body = Buffer.alloc(0);
        end = bodyStart;
      } else if (headers["transfer-encoding"]?.toLowerCase().includes("chunked")) {
        const parsed = readChunked(inbox, bodyStart);
        if (parsed === undefined) break;
        [body, end] = parsed;
      } else if (headers["content-length"] !== undefined) {
        const length = Number(headers["content-length"]);
        if (inbox.length - bodyStart < length) break;
        body = inbox.subarray(bodyStart, bodyStart + length);
        end = bodyStart + length;
      } else {
        // Read to the end of the connection.
        if (!atClose) break;
        body = inbox.subarray(bodyStart);
        end = inbox.length;
      }
      this.statuses.push(status);
      if (this.responses.length < this.keepResponses) {
        this.responses.push({
          status,
          headers,
          body: Buffer.from(body.subarray(0, 64 * 1024)),
          atMs: performance.now() - this.openedAt,
        });
      }
      at = end;
    }
    if (at > 0) this.inbox = at >= inbox.length ? Buffer.alloc(0) : Buffer.from(inbox.subarray(at));
  }
}

/** A chunked body starting at `at`: [body, end offset], or undefined when incomplete. */
function readChunked(buf: Buffer, at: number): [Buffer, number] | undefined {
  const parts: Buffer[] = [];
  let pos = at;
  for (;;) {
    const eol = buf.indexOf("\r\n", pos);
    if (eol < 0) return undefined;
    const size = Number.parseInt(buf.subarray(pos, eol).toString("latin1"), 16);
    if (Number.isNaN(size)) return [Buffer.concat(parts), buf.length];
    if (size === 0) {
      // Trailers (none expected), then an empty line.
      const end = buf.indexOf("\r\n\r\n", eol);
      return end < 0 ? undefined : [Buffer.concat(parts), end + 4];
    }
    if (buf.length < eol + 2 + size + 2) return undefined;
    parts.push(buf.subarray(eol + 2, eol + 2 + size));
    pos = eol + 2 + size + 2;
  }
}
