/**
 * Bytes appended chunk by chunk into one allocation that doubles as it
 * fills: memory proportional to the bytes received, whatever the chunk sizes.
 * (Keeping each chunk as its own Buffer costs ~100 bytes of object per chunk
 * and pins the 64 KiB socket read it was sliced from: a body sent one byte
 * per HTTP/2 DATA frame exhausted the heap long before its 4 MiB arrived.)
 */
export class GrowableBuffer {
  #bytes: Buffer = EMPTY;
  length = 0;

  /**
   * Copies `chunk` in. `expected`, when known, is the final size: it is then
   * allocated at once (its untouched pages cost nothing until written), else
   * the buffer doubles as it fills.
   */
  append(chunk: Uint8Array, expected?: number): void {
    const needed = this.length + chunk.byteLength;
    if (needed > this.#bytes.length) {
      const capacity =
        expected !== undefined && expected >= needed ? expected : Math.max(needed, this.#bytes.length * 2, 256);
      const grown = Buffer.allocUnsafe(capacity);
      this.#bytes.copy(grown, 0, 0, this.length);
      this.#bytes = grown;
    }
    this.#bytes.set(chunk, this.length);
    this.length = needed;
  }

  /** The first `n` bytes (a view), read with readUInt32BE and the like. */
  view(n = this.length): Buffer {
    return this.#bytes.subarray(0, n);
  }

  /** Hands the bytes over and starts empty. */
  take(): Buffer {
    const out = this.#bytes.subarray(0, this.length);
    this.#bytes = EMPTY;
    this.length = 0;
    return out;
  }
}

const EMPTY = Buffer.alloc(0);
