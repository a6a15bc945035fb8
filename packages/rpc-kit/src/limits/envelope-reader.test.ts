import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { gzipSync } from "node:zlib";
import { Code, ConnectError } from "@connectrpc/connect";
import { ByteBudget } from "./byte-budget.ts";
import { EnvelopeReader } from "./envelope-reader.ts";
import { limitOf } from "./limit-error.ts";
import { envelopeDecoder } from "./request-decoding.ts";

function envelope(message: Uint8Array, flags = 0): Buffer {
  const out = Buffer.alloc(5 + message.length);
  out[0] = flags;
  out.writeUInt32BE(message.length, 1);
  out.set(message, 5);
  return out;
}

/** Cuts `bytes` at the given offsets. */
function cut(bytes: Buffer, at: readonly number[]): Buffer[] {
  const chunks: Buffer[] = [];
  let from = 0;
  for (const to of [...at, bytes.length]) {
    chunks.push(bytes.subarray(from, to));
    from = to;
  }
  return chunks;
}

function readAll(
  chunks: readonly Buffer[],
  reader = new EnvelopeReader({ maxMessageBytes: 1 << 20, lease: new ByteBudget(1 << 30).lease() }),
) {
  const out: Buffer[] = [];
  for (const chunk of chunks) out.push(...reader.push(chunk));
  return { out, rest: reader.rest() };
}

describe("EnvelopeReader", () => {
  const messages = [Buffer.from("first"), Buffer.alloc(0), Buffer.alloc(70_000, 7), Buffer.from("last")];
  const body = Buffer.concat(messages.map((m) => envelope(m)));

  it("hands on whole envelopes however the body is cut, one byte at a time included", () => {
    const cuts: number[][] = [
      [],
      [1],
      [4, 5, 6],
      [12, 13, 20_000, 70_012],
      Array.from({ length: body.length - 1 }, (_, i) => i + 1),
    ];
    for (let seed = 1; seed <= 20; seed++) {
      const at = new Set<number>();
      for (let i = 0; i < 30; i++) at.add(1 + ((seed * 7919 * (i + 1)) % (body.length - 1)));
      cuts.push([...at].sort((a, b) => a - b));
    }
    for (const at of cuts) {
      const { out, rest } = readAll(cut(body, at));
      assert.deepEqual(
        out.map((e) => e.subarray(5)),
        messages,
        `cut at ${at.length} places`,
      );
      assert.equal(rest, undefined);
    }
  });

  it("passes whole envelopes within a chunk on without copying them", () => {
    const { out } = readAll([body]);
    assert.equal(out[0]?.buffer, body.buffer, "a view of the chunk it came in");
  });

  it("gives back an envelope the body cut short", () => {
    const { out, rest } = readAll(cut(body.subarray(0, 20), [3]));
    assert.equal(out.length, 2);
    assert.deepEqual(rest, body.subarray(15, 20), "the third envelope's header");
  });

  it("refuses a declared length beyond the limit as soon as the prefix is read", () => {
    const reader = new EnvelopeReader({ maxMessageBytes: 100, lease: new ByteBudget(1 << 20).lease() });
    const head = envelope(Buffer.alloc(101)).subarray(0, 5);
    assert.deepEqual(reader.push(head.subarray(0, 3)), []);
    assert.throws(
      () => reader.push(head.subarray(3)),
      (e: unknown) => e instanceof ConnectError && e.code === Code.ResourceExhausted && limitOf(e) === "message_size",
    );
  });

  it("counts each envelope at its declared size as soon as its length is read, refusing one the budget has no room for before its bytes arrive", () => {
    const budget = new ByteBudget(1_000, 600);
    const lease = budget.lease("10.0.0.1");
    const reader = new EnvelopeReader({ maxMessageBytes: 10_000, lease });
    const first = envelope(Buffer.alloc(400, 1));
    assert.deepEqual(reader.push(first.subarray(0, 10)), []);
    assert.equal(budget.used, 405, "the whole envelope, with 10 bytes of it received");
    assert.deepEqual(reader.push(first.subarray(10)), [first]);
    assert.equal(budget.used, 405);
    assert.throws(
      () => reader.push(envelope(Buffer.alloc(300)).subarray(0, 5)),
      (e: unknown) =>
        e instanceof ConnectError && e.code === Code.ResourceExhausted && limitOf(e) === "buffered_bytes_per_client",
    );
    assert.equal(budget.used, 405, "the refused envelope took nothing");
    lease.release();
    assert.equal(budget.used, 0);
  });

  it("hands on compressed envelopes decompressed, their flag cleared, the output counted", () => {
    const budget = new ByteBudget(1 << 20);
    const lease = budget.lease();
    const plain = Buffer.alloc(50_000, "a");
    const packed = envelope(gzipSync(plain), 1);
    const reader = new EnvelopeReader({
      maxMessageBytes: 1 << 16,
      lease,
      decode: envelopeDecoder({ encoding: "gzip", maxMessageBytes: 1 << 16, lease, maxJsonDepth: undefined }),
    });
    const [out] = reader.push(packed);
    assert.deepEqual(out, envelope(plain));
    assert.equal(budget.used, packed.length + plain.length);
  });
});
