import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { percentile, runLoad } from "./load-core.ts";

const after =
  (ms: number, code = "ok") =>
  () =>
    new Promise<string>((r) => setTimeout(() => r(code), ms));

describe("runLoad", () => {
  it("closed loop: keeps N calls in flight until the count is reached", async () => {
    let inFlight = 0;
    let most = 0;
    const report = await runLoad(
      async () => {
        inFlight++;
        most = Math.max(most, inFlight);
        await new Promise((r) => setTimeout(r, 2));
        inFlight--;
        return "ok";
      },
      { concurrency: 8, requests: 200, seconds: 30 },
    );
    assert.equal(report.requests, 200);
    assert.equal(most, 8);
    assert.deepEqual(report.codes, { ok: 200 });
    assert.ok(report.latencyMs.p50 >= 2 && report.latencyMs.max >= report.latencyMs.p99);
  });

  it("counts every status code and stops at the duration", async () => {
    let n = 0;
    const report = await runLoad(() => after(1, n++ % 4 === 0 ? "not_found" : "ok")(), {
      concurrency: 4,
      requests: 1_000_000,
      seconds: 0.3,
    });
    assert.ok(report.seconds < 0.6, `${report.seconds} s`);
    assert.ok((report.codes.not_found ?? 0) > 0 && (report.codes.ok ?? 0) > (report.codes.not_found ?? 0));
  });

  it("open loop: starts calls at the rate, measures from when they were due, drops beyond the cap", async () => {
    const steady = await runLoad(after(1), { concurrency: 100, requests: 100, seconds: 10, rate: 200 });
    assert.equal(steady.requests, 100);
    assert.ok(steady.seconds >= 0.45 && steady.seconds < 1.5, `${steady.seconds} s for 100 calls at 200/s`);
    // A server slower than the rate: calls queue, and the latency shows it.
    const overloaded = await runLoad(after(50), { concurrency: 5, requests: 60, seconds: 10, rate: 200 });
    assert.ok(overloaded.dropped > 0, "calls beyond 5 in flight are dropped and counted");
    assert.equal(overloaded.requests + overloaded.dropped, 60);
  });

  it("refuses unbounded or empty runs", async () => {
    await assert.rejects(runLoad(after(1), { concurrency: 0, requests: 10, seconds: 1 }));
    await assert.rejects(runLoad(after(1), { concurrency: 1, requests: 10, seconds: 0 }));
  });
});

describe("percentile", () => {
  it("takes the nearest rank", () => {
    const sorted = Array.from({ length: 100 }, (_, i) => i + 1);
    assert.equal(percentile(sorted, 50), 50);
    assert.equal(percentile(sorted, 99), 99);
    assert.equal(percentile(sorted, 100), 100);
    assert.equal(percentile([], 50), 0);
  });
});
