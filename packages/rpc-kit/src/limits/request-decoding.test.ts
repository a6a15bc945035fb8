import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { brotliCompressSync, deflateSync, gzipSync } from "node:zlib";
import { Code, ConnectError } from "@connectrpc/connect";
import { ByteBudget } from "./byte-budget.ts";
import { inflateBounded } from "./inflate.ts";
import { jsonTooDeep } from "./json-depth.ts";
import { limitOf } from "./limit-error.ts";
import { decodeBody } from "./request-decoding.ts";

const isLimit =
  (limit: string, code = Code.ResourceExhausted) =>
  (e: unknown) =>
    e instanceof ConnectError && e.code === code && limitOf(e) === limit;

describe("inflateBounded", () => {
  const plain = Buffer.alloc(100_000, "z");

  it("decompresses gzip, deflate and br, counting the output against the lease", () => {
    for (const [encoding, packed] of [
      ["gzip", gzipSync(plain)],
      ["deflate", deflateSync(plain)],
      ["br", brotliCompressSync(plain)],
    ] as const) {
      const budget = new ByteBudget(1 << 20);
      assert.deepEqual(inflateBounded(packed, encoding, 1 << 20, budget.lease()), plain, encoding);
      assert.equal(budget.used, plain.length);
    }
  });

  it("stops at the message limit: a 100 KB bomb against a 64 KiB limit is refused", () => {
    const budget = new ByteBudget(1 << 20);
    assert.throws(() => inflateBounded(gzipSync(plain), "gzip", 64 * 1024, budget.lease()), isLimit("message_size"));
    assert.equal(budget.used, 0);
  });

  it("stops at what is left of the budget, per process and per client", () => {
    const budget = new ByteBudget(150_000, 80_000);
    const other = budget.lease("10.0.0.2");
    assert.equal(other.grow(60_000), undefined);
    assert.throws(
      () => inflateBounded(gzipSync(plain), "gzip", 1 << 20, budget.lease("10.0.0.1")),
      isLimit("buffered_bytes_per_client"),
    );
    assert.throws(() => inflateBounded(gzipSync(plain), "gzip", 1 << 20, budget.lease()), isLimit("buffered_bytes"));
    assert.equal(budget.used, 60_000);
  });

  it("answers InvalidArgument for bytes that do not decompress, Unimplemented for an unknown compression", () => {
    const lease = new ByteBudget(1 << 20).lease();
    assert.throws(
      () => inflateBounded(Buffer.from("not gzip"), "gzip", 1 << 20, lease),
      (e: unknown) => e instanceof ConnectError && e.code === Code.InvalidArgument,
    );
    assert.throws(
      () => inflateBounded(Buffer.from("x"), "snappy", 1 << 20, lease),
      (e: unknown) => e instanceof ConnectError && e.code === Code.Unimplemented,
    );
  });
});

describe("jsonTooDeep", () => {
  it("counts nesting of objects and arrays, not brackets inside strings", () => {
    assert.equal(jsonTooDeep(Buffer.from('{"a":[{"b":1}]}'), 3), false);
    assert.equal(jsonTooDeep(Buffer.from('{"a":[{"b":[1]}]}'), 3), true);
    assert.equal(jsonTooDeep(Buffer.from(`{"s":"${"[".repeat(500)}\\"{{{"}`), 1), false);
    assert.equal(jsonTooDeep(Buffer.from("[".repeat(2_000_000)), 100), true);
  });

  it("refuses a JSON body nested too deep with InvalidArgument, before any parser sees it", () => {
    const lease = new ByteBudget(1 << 20).lease();
    assert.throws(
      () =>
        decodeBody(Buffer.from(`${"[".repeat(101)}${"]".repeat(101)}`), {
          encoding: undefined,
          maxMessageBytes: 1 << 20,
          lease,
          maxJsonDepth: 100,
        }),
      isLimit("json_depth", Code.InvalidArgument),
    );
    const deepButPacked = gzipSync(Buffer.from("[".repeat(1000)));
    assert.throws(
      () => decodeBody(deepButPacked, { encoding: "gzip", maxMessageBytes: 1 << 20, lease, maxJsonDepth: 100 }),
      isLimit("json_depth", Code.InvalidArgument),
      "checked after decompression",
    );
  });
});
