import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { MAX_TIMEOUT_MS, outboundTimeoutMs } from "./deadline.ts";

const base = { requestedMs: undefined, defaultMs: 5_000, inboundDeadline: undefined, marginMs: 10, now: 1_000_000 };

describe("outboundTimeoutMs", () => {
  it("uses the default when the caller sets no timeout, or a non-positive one", () => {
    assert.equal(outboundTimeoutMs(base), 5_000);
    assert.equal(outboundTimeoutMs({ ...base, requestedMs: 0 }), 5_000);
    assert.equal(outboundTimeoutMs({ ...base, requestedMs: -3 }), 5_000);
  });

  it("uses the caller's timeout, floored to whole ms", () => {
    assert.equal(outboundTimeoutMs({ ...base, requestedMs: 250.9 }), 250);
  });

  it("caps at the inbound deadline minus the margin", () => {
    assert.equal(outboundTimeoutMs({ ...base, inboundDeadline: base.now + 300.7 }), 290);
    assert.equal(outboundTimeoutMs({ ...base, requestedMs: 100, inboundDeadline: base.now + 300 }), 100);
  });

  it("caps at what the gRPC timeout header can carry", () => {
    assert.equal(outboundTimeoutMs({ ...base, requestedMs: 1e12 }), MAX_TIMEOUT_MS);
  });

  it("fails fast with DeadlineExceeded when the budget is spent", () => {
    for (const left of [10, 10.9, 5, 0, -50]) {
      assert.throws(
        () => outboundTimeoutMs({ ...base, inboundDeadline: base.now + left }),
        (err: unknown) => err instanceof ConnectError && err.code === Code.DeadlineExceeded,
        `left ${left} ms`,
      );
    }
    assert.equal(outboundTimeoutMs({ ...base, inboundDeadline: base.now + 11 }), 1);
  });
});
