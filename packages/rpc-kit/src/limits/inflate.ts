import * as zlib from "node:zlib";
import { Code, ConnectError } from "@connectrpc/connect";
import type { ByteLease } from "./byte-budget.ts";
import { bufferedBytesError, messageSizeError } from "./limit-error.ts";

/** Request compressions the servers decompress themselves: gzip and br (Connect, gRPC), deflate (gRPC). */
export const INFLATERS: Readonly<Record<string, (bytes: Uint8Array, options: zlib.ZlibOptions) => Buffer>> = {
  gzip: zlib.gunzipSync,
  deflate: zlib.inflateSync,
  br: zlib.brotliDecompressSync,
};

/**
 * zlib writes its output in chunks of this size and concatenates them at the
 * end, a second copy of the whole message. gzip says how long its output is
 * (the trailer's ISIZE): with a chunk that long there is one chunk and no
 * copy. A false ISIZE costs only the copy; the output is bounded all the same.
 */
function outputChunkSize(payload: Uint8Array, encoding: string, maxBytes: number): number {
  const DEFAULT = 16 * 1024;
  if (encoding !== "gzip" || payload.length < 18) return DEFAULT;
  const isize = Buffer.from(payload.buffer, payload.byteOffset, payload.length).readUInt32LE(payload.length - 4);
  return Math.max(DEFAULT, Math.min(isize, maxBytes));
}

/**
 * Decompresses a request message, never producing more than the message
 * limit (zlib stops there, `maxOutputLength`, instead of allocating the rest),
 * and only while the call's lease has room for that much: the output then
 * counts against the lease. Synchronous, so that no other call can take the
 * room in between. 200 concurrent 4 KB gzip bodies that inflate to 4 MiB each took the
 * gateway to 1.2 GB when each was bounded on its own.
 */
export function inflateBounded(payload: Uint8Array, encoding: string, maxBytes: number, lease: ByteLease): Buffer {
  const inflate = INFLATERS[encoding];
  if (inflate === undefined) throw new ConnectError(`unsupported compression "${encoding}"`, Code.Unimplemented);
  // Room for a whole message first: a request inflated up to what is left and then refused would
  // leave that much garbage behind, for every request a client sends while its share is nearly spent.
  const room = lease.room();
  if (room < maxBytes) throw bufferedBytesError(lease.refusal(room + 1) ?? "buffered_bytes");
  let out: Buffer;
  try {
    out = inflate(payload, { maxOutputLength: maxBytes, chunkSize: outputChunkSize(payload, encoding, maxBytes) });
  } catch (err) {
    if ((err as { code?: string }).code === "ERR_BUFFER_TOO_LARGE") throw messageSizeError(maxBytes, true);
    throw new ConnectError("cannot decompress the request", Code.InvalidArgument);
  }
  const refused = lease.grow(out.length);
  if (refused !== undefined) throw bufferedBytesError(refused);
  return out;
}
