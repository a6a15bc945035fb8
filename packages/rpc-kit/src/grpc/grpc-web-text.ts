import { Code, ConnectError } from "@connectrpc/connect";

/**
 * gRPC-Web's text mode (`application/grpc-web-text`): the same frames as
 * binary gRPC-Web, base64-encoded in both directions. grpc-web's generated
 * clients use it by default, and only text mode carries server streaming
 * through their XHR transport. connect-node speaks binary gRPC-Web only, so
 * the edge decodes the request and encodes the response around it.
 *
 * The encoded body is one continuous base64 text; a client may also send
 * separately padded pieces one after another, so padding may end any group
 * of four characters, not only the last.
 */

/** True for a text-mode content type (`application/grpc-web-text`, `…+proto`, with parameters). */
export function isGrpcWebText(contentType: string | null | undefined): boolean {
  return /^application\/grpc-web-text(\+proto)?(;|$)/i.test(contentType ?? "");
}

/** The binary gRPC-Web content type that carries the same frames. */
export const GRPC_WEB_BINARY = "application/grpc-web+proto";

/** The text-mode content type of responses. */
export const GRPC_WEB_TEXT = "application/grpc-web-text+proto";

const BASE64_GROUP = /^[A-Za-z0-9+/]{2}(?:[A-Za-z0-9+/]{2}|[A-Za-z0-9+/]=|==)$/;

/** Decodes base64 text as it arrives, in whole groups of four characters; whitespace is ignored. */
export class Base64Decoder {
  #pending = "";

  /** The bytes of the complete groups in `chunk` and what was left over before it. */
  push(chunk: Uint8Array): Buffer {
    const bytes = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    const text = this.#pending + bytes.toString("latin1").replace(/[\r\n\t ]/g, "");
    const whole = text.length - (text.length % 4);
    this.#pending = text.slice(whole);
    return decodeGroups(text.slice(0, whole));
  }

  /** Throws when the text ended inside a group. */
  end(): void {
    if (this.#pending.length > 0) throw invalid();
  }
}

function invalid(): ConnectError {
  return new ConnectError("protocol error: the gRPC-Web text body is not valid base64", Code.InvalidArgument);
}

/** Whole groups of four, each padded group decoded on its own (padding may end any group). */
function decodeGroups(text: string): Buffer {
  const parts: Buffer[] = [];
  let start = 0;
  for (let i = 0; i < text.length; i += 4) {
    const group = text.slice(i, i + 4);
    if (!BASE64_GROUP.test(group)) throw invalid();
    if (group.endsWith("=")) {
      parts.push(Buffer.from(text.slice(start, i + 4), "base64"));
      start = i + 4;
    }
  }
  if (start < text.length) parts.push(Buffer.from(text.slice(start), "base64"));
  return parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts);
}

/**
 * The response body base64-encoded as one continuous text: bytes that do not
 * fill a group of three wait for the next chunk, and the last group is padded.
 */
export async function* encodeBase64(body: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  let carry: Buffer = Buffer.alloc(0);
  for await (const chunk of body) {
    const bytes = carry.length > 0 ? Buffer.concat([carry, chunk]) : Buffer.from(chunk);
    const whole = bytes.length - (bytes.length % 3);
    carry = bytes.subarray(whole);
    if (whole > 0) yield Buffer.from(bytes.subarray(0, whole).toString("base64"), "latin1");
  }
  if (carry.length > 0) yield Buffer.from(carry.toString("base64"), "latin1");
}
