import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { testDatabase } from "@demo/rpc-kit/testing";
import { leaksOf } from "../leaks.ts";
import { type ServiceProcess, startService } from "../processes.ts";
import { createIsolatedHost, type IsolatedHost } from "./netns.ts";
import { countByCode, recoveryMs, sleep, steadyLoad } from "./steady-load.ts";
import { type TcpForward, tcpForward } from "./tcp-forward.ts";

const DEADLINE_MS = 1_000;
const LATE_MS = 250;

const made = createIsolatedHost();
const host = "unavailable" in made ? undefined : (made as IsolatedHost);

describe("drill: the link to users (in its own network namespace) is cut under load, then restored", {
  skip: "unavailable" in made ? `SKIPPED, not passed: ${made.unavailable}` : false,
}, () => {
  let users: ServiceProcess;
  let profiles: ServiceProcess;
  let gateway: ServiceProcess;
  let database: { url: string; drop(): Promise<void> };
  let relay: TcpForward;

  before(async () => {
    const h = host as IsolatedHost;
    // users' database is on this host's loopback: the namespace reaches it over the link the drill cuts.
    database = await testDatabase();
    const url = new URL(database.url);
    relay = await tcpForward(h.outsideAddress, { host: url.hostname, port: Number(url.port) });
    url.hostname = h.outsideAddress;
    url.port = String(relay.port);
    users = await startService("users", { HOST: h.address, DATABASE_URL: url.toString() }, { prefix: h.prefix });
    profiles = await startService("profiles", {
      USERS_ADDR: `${h.address}:${users.port}`,
      // What a black-holed endpoint may cost a call before the kit gives up on it.
      RPC_CONNECT_TIMEOUT_MS: "500",
    });
    gateway = await startService("gateway", { PROFILES_ADDR: `127.0.0.1:${profiles.port}` });
  });
  after(async () => {
    host?.restore();
    await Promise.all([gateway?.stop(), profiles?.stop(), users?.stop()]);
    await relay?.close();
    await database?.drop();
    host?.destroy();
  });

  it("answers every call within its deadline while the link is down, and recovers once it is back", async (t) => {
    const h = host as IsolatedHost;
    const load = steadyLoad({
      baseUrl: `http://127.0.0.1:${gateway.port}`,
      concurrency: 8,
      pauseMs: 10,
      deadlineMs: DEADLINE_MS,
      maxCalls: 20_000,
      maxMs: 20_000,
    });
    await sleep(1_000);
    const cutAt = performance.now();
    h.cut();
    await sleep(4_000);
    h.restore();
    const restoredAt = performance.now();
    await sleep(4_000);
    const outcomes = await load.stop();

    const during = outcomes.filter((o) => o.startedAt >= cutAt && o.startedAt < restoredAt);
    const slowest = Math.max(...outcomes.map((o) => o.tookMs));
    const recovery = recoveryMs(outcomes, restoredAt);
    t.diagnostic(
      `calls ${outcomes.length}: ${JSON.stringify(countByCode(outcomes))}; slowest ${slowest.toFixed(0)} ms`,
    );
    t.diagnostic(
      `while cut: ${JSON.stringify(countByCode(during))}; recovered ${recovery.toFixed(0)} ms after the link`,
    );

    assert.ok(during.length > 20, `calls were made while the link was down (${during.length})`);
    const unexpected = during.filter(
      (o) => o.code !== "ok" && o.code !== "unavailable" && o.code !== "deadline_exceeded",
    );
    assert.deepEqual(countByCode(unexpected), {}, "codes while the link was down");
    assert.ok(
      during.filter((o) => o.code !== "ok").length > during.length / 2,
      "most calls fail while the link is down (the cut is real)",
    );
    assert.ok(slowest <= DEADLINE_MS + LATE_MS, `slowest call took ${slowest.toFixed(0)} ms`);
    // Unlike a dead process (connection refused, reconnect at once), a cut link leaves the TCP connection
    // open: calls resume on it at the kernel's next retransmission, which backs off 0.2, 0.4, 0.8, 1.6,
    // 3.2 s… (measured 0–2.0 s after a 4 s cut). Keepalive (30 s + 10 s) replaces it after longer cuts.
    assert.ok(recovery <= 4_000, `recovered ${recovery.toFixed(0)} ms after the link came back`);
  });

  it("wrote no seeded email or token to any log line", async () => {
    await sleep(200); // log lines are flushed every 100 ms
    for (const service of [gateway, profiles, users])
      assert.deepEqual(leaksOf(service), [], `${service.name} logged them`);
  });
});
