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
 * Decompresses a request message, never producing more than what is left of
 * both the message limit and the call's lease: zlib stops at that size
 * (`maxOutputLength`) instead of allocating the rest, and the output counts
 * against the lease. Synchronous, so that no other call can take the room in
 * between. 200 concurrent 4 KB gzip bodies that inflate to 4 MiB each took the
 * gateway to 1.2 GB when each was bounded on its own.
 */
export function inflateBounded(payload: Uint8Array, encoding: string, maxBytes: number, lease: ByteLease): Buffer {
  const inflate = INFLATERS[encoding];
  if (inflate === undefined) throw new ConnectError(`unsupported compression "${encoding}"`, Code.Unimplemented);
  const room = lease.room();
  const overBudget = () => bufferedBytesError(lease.refusal(room + 1) ?? "buffered_bytes");
  if (room === 0) throw overBudget();
  let out: Buffer;
  try {
    out = inflate(payload, { maxOutputLength: Math.min(maxBytes, room) });
  } catch (err) {
    if ((err as { code?: string }).code === "ERR_BUFFER_TOO_LARGE") {
      throw room < maxBytes ? overBudget() : messageSizeError(maxBytes, true);
    }
    throw new ConnectError("cannot decompress the request", Code.InvalidArgument);
  }
  const refused = lease.grow(out.length);
  if (refused !== undefined) throw bufferedBytesError(refused);
  return out;
}
