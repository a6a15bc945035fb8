import type { ByteLease } from "./byte-budget.ts";
import { GrowableBuffer } from "./growable-buffer.ts";
import { bufferedBytesError, messageSizeError } from "./limit-error.ts";

/**
 * Splits an enveloped request body (gRPC, gRPC-Web, Connect streaming: a
 * flags byte, a 4-byte length, the message) into whole envelopes as its bytes
 * arrive, in time linear in the bytes received: each byte is looked at once,
 * a message that spans chunks is copied into one growing buffer, and whole
 * envelopes inside a chunk are handed on without a copy.
 *
 * The readers downstream (connect-node's envelope splitter, grpc-js's stream
 * decoder) keep every chunk they are given and, in connect-node's case,
 * re-scan them all on each new one: fed one chunk per envelope, they do
 * neither. Every byte received counts against the call's lease; a message
 * declared larger than `maxMessageBytes` is refused as soon as its length is
 * read, before its bytes arrive.
 */
export interface EnvelopeReaderOptions {
  readonly maxMessageBytes: number;
  readonly lease: ByteLease;
  /** Turns a whole envelope into what the reader downstream gets (decompressed, checked). */
  readonly decode?: ((envelope: Buffer) => Buffer) | undefined;
}

export class EnvelopeReader {
  readonly #partial = new GrowableBuffer();
  /** Size of the envelope being assembled in `#partial`; 0 while its header is incomplete. */
  #envelopeSize = 0;

  readonly options: EnvelopeReaderOptions;

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
    const refused = this.options.lease.grow(chunk.length);
    if (refused !== undefined) throw bufferedBytesError(refused);
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
      const size = 5 + this.#declared(chunk.readUInt32BE(offset + 1));
      if (chunk.length - offset < size) break;
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
      this.#partial.append(chunk.subarray(offset, offset + header));
      offset += header;
      if (this.#partial.length < 5) return offset;
      this.#envelopeSize = 5 + this.#declared(this.#partial.view().readUInt32BE(1));
    }
    const body = Math.min(this.#envelopeSize - this.#partial.length, chunk.length - offset);
    this.#partial.append(chunk.subarray(offset, offset + body), this.#envelopeSize);
    return offset + body;
  }

  #declared(length: number): number {
    if (length > this.options.maxMessageBytes) throw messageSizeError(this.options.maxMessageBytes);
    return length;
  }

  #emit(envelope: Buffer): Buffer {
    return this.options.decode ? this.options.decode(envelope) : envelope;
  }
}
