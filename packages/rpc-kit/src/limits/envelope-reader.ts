import type { ByteLease } from "./byte-budget.ts";
import { GrowableBuffer } from "./growable-buffer.ts";
import { bufferedBytesError, messageSizeError } from "./limit-error.ts";

/**
 * Splits an enveloped request body (gRPC, gRPC-Web, Connect streaming: a
 * flags byte, a 4-byte length, the message) into whole envelopes as its bytes
 * arrive, in time linear in the bytes received: each byte is looked at once,
 * a message that spans chunks is copied into one buffer of its declared size,
 * and whole envelopes inside a chunk are handed on without a copy.
 *
 * The readers downstream (connect-node's envelope splitter, grpc-js's stream
 * decoder) keep every chunk they are given and, in connect-node's case,
 * re-scan them all on each new one: fed one chunk per envelope, they do
 * neither.
 *
 * Every envelope counts against the call's lease at its declared size, as
 * soon as its length is read: a message larger than `maxMessageBytes`, or
 * one that the budget has no room for, is refused before its bytes arrive.
 * Its buffer is allocated then, at that size, and filled as the bytes come
 * (the pages of an untouched allocation cost no memory): no doubling, no
 * garbage of half-grown copies.
 */
export interface EnvelopeReaderOptions {
  readonly maxMessageBytes: number;
  readonly lease: ByteLease;
  /** Turns a whole envelope into what the reader downstream gets (decompressed, checked). */
  readonly decode?: ((envelope: Buffer) => Buffer) | undefined;
}

export class EnvelopeReader {
  readonly options: EnvelopeReaderOptions;
  readonly #partial = new GrowableBuffer();
  /** Size of the envelope being assembled in `#partial`; 0 while its header is incomplete. */
  #envelopeSize = 0;

  constructor(options: EnvelopeReaderOptions) {
    this.options = options;
  }

  /** Bytes of an envelope not yet complete. */
  get pending(): number {
    return this.#partial.length;
  }

  /** At the end of the body: the bytes of an envelope it cut short (for the reader downstream to refuse), if any. */
  rest(): Buffer | undefined {
    return this.#partial.length > 0 ? this.#partial.take() : undefined;
  }

  /** Takes the next chunk of the body; returns the envelopes it completed, in order. */
  push(chunk: Buffer): Buffer[] {
    const out: Buffer[] = [];
    let offset = 0;
    if (this.#partial.length > 0) {
      offset = this.#fill(chunk, 0);
      if (this.#envelopeSize > 0 && this.#partial.length === this.#envelopeSize) {
        out.push(this.#emit(this.#partial.take()));
        this.#envelopeSize = 0;
      }
    }
    // Whole envelopes within the chunk: views, no copy.
    while (this.#partial.length === 0 && chunk.length - offset >= 5) {
      const size = this.#declared(chunk.readUInt32BE(offset + 1));
      if (chunk.length - offset < size) break;
      this.#take(size);
      out.push(this.#emit(chunk.subarray(offset, offset + size)));
      offset += size;
    }
    if (offset < chunk.length) this.#fill(chunk, offset);
    return out;
  }

  /** Copies bytes of `chunk` from `offset` into the envelope being assembled; returns where it stopped. */
  #fill(chunk: Buffer, offset: number): number {
    if (this.#envelopeSize === 0) {
      const header = Math.min(5 - this.#partial.length, chunk.length - offset);
      this.#partial.append(chunk.subarray(offset, offset + header), 5);
      offset += header;
      if (this.#partial.length < 5) return offset;
      this.#envelopeSize = this.#declared(this.#partial.view().readUInt32BE(1));
      this.#take(this.#envelopeSize);
    }
    const body = Math.min(this.#envelopeSize - this.#partial.length, chunk.length - offset);
    this.#partial.append(chunk.subarray(offset, offset + body), this.#envelopeSize);
    return offset + body;
  }

  /** The size of an envelope whose length prefix says `length`, refused past the message limit. */
  #declared(length: number): number {
    if (length > this.options.maxMessageBytes) throw messageSizeError(this.options.maxMessageBytes);
    return 5 + length;
  }

  /** Counts an envelope of `size` bytes against the lease, or refuses it. */
  #take(size: number): void {
    const refused = this.options.lease.grow(size);
    if (refused !== undefined) throw bufferedBytesError(refused);
  }

  #emit(envelope: Buffer): Buffer {
    return this.options.decode ? this.options.decode(envelope) : envelope;
  }
}
