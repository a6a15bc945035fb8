import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { freePort } from "@demo/rpc-kit/testing";
import { leaksOf } from "../leaks.ts";
import { type ServiceProcess, startService } from "../processes.ts";
import { countByCode, recoveryMs, sleep, steadyLoad } from "./steady-load.ts";

const DEADLINE_MS = 1_000;
/** A caller's answer may come this much after its deadline (scheduling on a busy 2-core machine). */
const LATE_MS = 250;

describe("drill: users is SIGKILLed under load, then comes back", () => {
  let usersPort: number;
  let users: ServiceProcess;
  let profiles: ServiceProcess;
  let gateway: ServiceProcess;

  before(async () => {
    usersPort = await freePort();
    users = await startService("users", { HOST: "127.0.0.1", PORT: String(usersPort) });
    profiles = await startService("profiles", { USERS_ADDR: `127.0.0.1:${usersPort}` });
    gateway = await startService("gateway", { PROFILES_ADDR: `127.0.0.1:${profiles.port}` });
  });
  after(async () => {
    await Promise.all([gateway.stop(), profiles.stop(), users.stop()]);
  });

  it("answers every call within its deadline while users is gone, and recovers within 2 s of its return", async (t) => {
    const load = steadyLoad({
      baseUrl: `http://127.0.0.1:${gateway.port}`,
      concurrency: 8,
      pauseMs: 10,
      deadlineMs: DEADLINE_MS,
      maxCalls: 20_000,
      maxMs: 20_000,
    });
    await sleep(1_000);
    // Calls that end before the signal must all be OK; calls that start once the process is
    // reaped must all fail. Between the two, users may still answer a call or two.
    const killedAt = performance.now();
    assert.deepEqual(await users.stop("SIGKILL"), { code: null, signal: "SIGKILL" });
    const goneAt = performance.now();
    await sleep(3_000);
    // users may answer as soon as it listens, a little before startService hears that it does.
    const respawnAt = performance.now();
    users = await startService("users", { HOST: "127.0.0.1", PORT: String(usersPort) });
    const backAt = performance.now();
    await sleep(3_000);
    const outcomes = await load.stop();

    const during = outcomes.filter((o) => o.startedAt >= goneAt && o.startedAt + o.tookMs < respawnAt);
    const codes = countByCode(outcomes);
    const slowest = Math.max(...outcomes.map((o) => o.tookMs));
    const recovery = recoveryMs(outcomes, backAt);
    t.diagnostic(`calls ${outcomes.length}: ${JSON.stringify(codes)}; slowest ${slowest.toFixed(0)} ms`);
    t.diagnostic(`recovered ${recovery.toFixed(0)} ms after users was back`);

    assert.ok(during.length > 50, `calls were made while users was dead (${during.length})`);
    // While users is dead every call fails, and fails honestly: Unavailable or DeadlineExceeded.
    const unexpected = during.filter((o) => o.code !== "unavailable" && o.code !== "deadline_exceeded");
    assert.deepEqual(countByCode(unexpected), {}, "codes while users was dead");
    // None hangs: each is answered by its deadline.
    assert.ok(slowest <= DEADLINE_MS + LATE_MS, `slowest call took ${slowest.toFixed(0)} ms`);
    // Nothing before the kill failed, and the chain heals by itself.
    assert.deepEqual(countByCode(outcomes.filter((o) => o.startedAt + o.tookMs < killedAt && o.code !== "ok")), {});
    assert.ok(recovery <= 2_000, `recovered ${recovery.toFixed(0)} ms after users returned`);
  });

  it("wrote no seeded email or token to any log line", async () => {
    await sleep(200); // log lines are flushed every 100 ms
    for (const service of [gateway, profiles, users])
      assert.deepEqual(leaksOf(service), [], `${service.name} logged them`);
  });
});
