import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { LogThrottle } from "./log-throttle.ts";
import { ResetBudget } from "./reset-budget.ts";

describe("LogThrottle", () => {
  it("writes one line per key per interval, each saying how many events it stands for", () => {
    const t = new LogThrottle(10_000);
    assert.equal(t.take("a", 0), 1);
    assert.equal(t.take("a", 1), undefined);
    assert.equal(t.take("a", 9_999), undefined);
    assert.equal(t.take("b", 5_000), 1, "another key has its own interval");
    assert.equal(t.take("a", 10_000), 3, "this one and the two suppressed");
  });

  it("writes at most maxLines lines per interval in all", () => {
    const t = new LogThrottle(1_000, 3);
    const written = Array.from({ length: 10 }, (_, i) => t.take(`k${i}`, 0)).filter((n) => n !== undefined);
    assert.equal(written.length, 3);
    assert.equal(t.take("k9", 1_000), 1);
  });

  it("keeps at most maxKeys keys", () => {
    const t = new LogThrottle(1_000, 1_000_000, 100);
    for (let i = 0; i < 1_000; i++) t.take(`client-${i}`, 0);
    assert.equal(t.take("client-999", 1), undefined, "a recent key is still known");
    assert.equal(t.take("client-0", 1), 1, "the oldest were forgotten");
  });
});

describe("ResetBudget", () => {
  it("allows a burst of twice the rate, then the rate, per client", () => {
    const b = new ResetBudget(100);
    for (let i = 0; i < 200; i++) assert.equal(b.take("a", 0), true);
    assert.equal(b.take("a", 0), false);
    assert.equal(b.take("b", 0), true, "another client has its own bucket");
    assert.equal(b.take("a", 10.5), true, "one token back after 10 ms at 100/s");
  });

  it("penalizes an emptied client until its bucket is half full again", () => {
    const b = new ResetBudget(100);
    for (let i = 0; i < 200; i++) b.take("a", 0);
    b.take("a", 0);
    assert.equal(b.penalized("a", 0), true);
    assert.equal(b.penalized("a", 990), true);
    assert.equal(b.penalized("a", 1_001), false, "100 tokens back after 1 s");
    assert.equal(b.penalized("b", 0), false);
  });
});
