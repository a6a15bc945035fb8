import { Code } from "@connectrpc/connect";
import type { ByteLease } from "./byte-budget.ts";
import { INFLATERS, inflateBounded } from "./inflate.ts";
import { jsonTooDeep } from "./json-depth.ts";
import { LimitError } from "./limit-error.ts";

/**
 * What a server does to a request message before the engine's own reader
 * sees it: decompresses it within the bounds (inflate.ts) and refuses JSON
 * nested too deep (json-depth.ts). The engine then reads an identity message.
 */
export interface MessageDecoding {
  /** The request's compression (`grpc-encoding`, `connect-content-encoding`, `content-encoding`); undefined or identity: none. */
  readonly encoding: string | undefined;
  readonly maxMessageBytes: number;
  readonly lease: ByteLease;
  /** Set for JSON requests: the deepest nesting accepted. */
  readonly maxJsonDepth: number | undefined;
}

/** True when the servers decompress `encoding` themselves (and strip the header that names it). */
export function inflatable(encoding: string | undefined): encoding is string {
  return encoding !== undefined && Object.hasOwn(INFLATERS, encoding);
}

function checkJson(message: Uint8Array, maxDepth: number | undefined): void {
  if (maxDepth !== undefined && jsonTooDeep(message, maxDepth)) {
    throw new LimitError("json_depth", `request JSON nested deeper than ${maxDepth} levels`, Code.InvalidArgument);
  }
}

/** The decode hook of an EnvelopeReader: compressed envelopes come out identity, JSON is checked; undefined when there is nothing to do. */
export function envelopeDecoder(d: MessageDecoding): ((envelope: Buffer) => Buffer) | undefined {
  const inflating = inflatable(d.encoding);
  if (!inflating && d.maxJsonDepth === undefined) return undefined;
  return (envelope) => {
    let out = envelope;
    if (inflating && ((envelope[0] as number) & 1) === 1) {
      const message = inflateBounded(envelope.subarray(5), d.encoding as string, d.maxMessageBytes, d.lease);
      out = Buffer.allocUnsafe(5 + message.length);
      out[0] = (envelope[0] as number) & ~1;
      out.writeUInt32BE(message.length, 1);
      message.copy(out, 5);
    }
    // Connect streaming's end-of-stream envelope (flag 2) carries JSON too, but never from a client.
    checkJson(out.subarray(5), d.maxJsonDepth);
    return out;
  };
}

/** A whole un-enveloped body (Connect unary): decompressed and checked. */
export function decodeBody(body: Buffer, d: MessageDecoding): Buffer {
  const out = inflatable(d.encoding) ? inflateBounded(body, d.encoding, d.maxMessageBytes, d.lease) : body;
  checkJson(out, d.maxJsonDepth);
  return out;
}
