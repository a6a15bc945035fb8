import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { leaksOf } from "../leaks.ts";
import { scrape, total } from "../metrics-scrape.ts";
import { type Chain, type ServiceProcess, startChain } from "../processes.ts";
import { countByCode, sleep, steadyLoad } from "./steady-load.ts";

const DEADLINE_MS = 500;
const INJECTED_MS = 5_000;
const CONCURRENCY = 16;
// Answers may trail the deadline this much: 16 calls end at once on a 2-core machine running all four processes.
const LATE_MS = 400;

/** Calls a service is serving right now, from its in-flight gauge. */
const inFlight = async (service: ServiceProcess, grpcService: string) =>
  total(await scrape(service), "rpc_kit_server_in_flight_calls", { grpc_service: grpcService });
const USERS = "demo.users.v1.UserService";
const PROFILES = "demo.profiles.v1.ProfileService";

describe("drill: users answers slower than the caller's deadline", () => {
  let chain: Chain;
  before(async () => {
    chain = await startChain({ all: { FAULT_INJECTION: "true" } });
  });
  after(async () => {
    await chain.stop();
  });

  it("ends every call with DeadlineExceeded on time; users and profiles stop work and hold no calls", async (t) => {
    const load = steadyLoad({
      baseUrl: chain.baseUrl,
      concurrency: CONCURRENCY,
      deadlineMs: DEADLINE_MS,
      headers: { "x-fault-delay-ms": String(INJECTED_MS), "x-fault-target": "users" },
      maxCalls: 400,
      maxMs: 15_000,
    });
    // Sampled while the load runs: calls held by each hop never pile up beyond what callers have open.
    const held = { users: 0, profiles: 0 };
    let running = true;
    void load.done.then(() => {
      running = false;
    });
    while (running) {
      held.users = Math.max(held.users, await inFlight(chain.users, USERS));
      held.profiles = Math.max(held.profiles, await inFlight(chain.profiles, PROFILES));
      await sleep(100);
    }
    const outcomes = await load.done;
    await sleep(300);
    const left = { users: await inFlight(chain.users, USERS), profiles: await inFlight(chain.profiles, PROFILES) };
    const slowest = Math.max(...outcomes.map((o) => o.tookMs));
    t.diagnostic(
      `calls ${outcomes.length}: ${JSON.stringify(countByCode(outcomes))}; slowest ${slowest.toFixed(0)} ms`,
    );
    t.diagnostic(
      `in flight at most: users ${held.users}, profiles ${held.profiles}; 300 ms after: ${JSON.stringify(left)}`,
    );

    assert.deepEqual(countByCode(outcomes), { deadline_exceeded: outcomes.length });
    assert.ok(slowest <= DEADLINE_MS + LATE_MS, `slowest answer after ${slowest.toFixed(0)} ms`);
    assert.ok(held.users <= CONCURRENCY && held.profiles <= CONCURRENCY, JSON.stringify(held));
    assert.deepEqual(left, { users: 0, profiles: 0 }, "calls still held after the load");

    // users saw each call end early (cancelled or past its deadline), not after the injected delay.
    const usersLines = chain.users.lines.filter((l) => l.rpc_method === "GetUser");
    assert.ok(usersLines.length >= outcomes.length * 0.9, `users logged ${usersLines.length} calls`);
    const worked = usersLines.filter((l) => (l.duration_ms as number) >= DEADLINE_MS + LATE_MS);
    assert.deepEqual(
      worked.map((l) => l.duration_ms),
      [],
      "users calls that ran on past the deadline",
    );
    assert.ok(usersLines.every((l) => l.rpc_code === "deadline_exceeded" || l.rpc_code === "canceled"));
  });

  it("wrote no seeded email or token to any log line", async () => {
    await sleep(200); // log lines are flushed every 100 ms
    for (const service of [chain.gateway, chain.profiles, chain.users])
      assert.deepEqual(leaksOf(service), [], `${service.name} logged them`);
  });
});
