/**
 * Drill: users' PostgreSQL stops under a load of reads and writes, and comes
 * back 3 s later on the same port with the same data (a failover, a restart
 * of the server). While it is away every call ends within its deadline with
 * Unavailable or DeadlineExceeded, users stays up and reports not ready (its
 * liveness untouched, so Kubernetes takes it out of rotation instead of
 * killing it), and within 2 s of the server's return calls succeed again.
 * No user is created twice: a write is never re-sent once sent.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createLogger } from "@demo/rpc-kit";
import { type EmbeddedPostgres, startEmbeddedPostgres } from "@demo/rpc-kit/postgres";
import { freePort, withClient } from "@demo/rpc-kit/testing";
import { leaksOf } from "../leaks.ts";
import { type Chain, startChain } from "../processes.ts";
import { countByCode, type Outcome, recoveryMs, sleep, steadyLoad } from "./steady-load.ts";

const DEADLINE_MS = 1_000;
/** A call may end this much after its deadline (timers on a busy two-core machine). */
const LATE_MS = 250;
const DOWN_MS = 3_000;

describe("drill: users' PostgreSQL stops under load, then comes back", () => {
  const dir = mkdtempSync(join(tmpdir(), "drill-pg-"));
  const logger = createLogger({ service: "drill-postgres", level: "warn", format: "json" });
  let port: number;
  let server: EmbeddedPostgres;
  let chain: Chain;

  const startServer = () => startEmbeddedPostgres({ dir, persistent: true, logger, port });

  before(async () => {
    port = await freePort("127.0.0.1");
    server = await startServer();
    chain = await startChain({ users: { DATABASE_URL: server.url } });
  });
  after(async () => {
    await chain?.stop();
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const admin = (path: string) => fetch(`http://127.0.0.1:${chain.users.adminPort}${path}`).then((r) => r.status);

  it("ends every call within its deadline while it is away, keeps users alive and unready, and recovers within 2 s", async (t) => {
    const reads = steadyLoad({
      baseUrl: chain.baseUrl,
      concurrency: 6,
      pauseMs: 10,
      deadlineMs: DEADLINE_MS,
      maxCalls: 20_000,
      maxMs: 30_000,
    });
    // One writer: each CreateUser with an email of its own, sent once, its outcome kept.
    let writing = true;
    const writes: (Outcome & { email: string; id?: string })[] = [];
    const writer = (async () => {
      for (let i = 0; writing && i < 2_000; i++) {
        const email = `drill-${i}@example.org`;
        const startedAt = performance.now();
        const res = await fetch(`${chain.baseUrl}/demo.gateway.v1.GatewayService/CreateUser`, {
          method: "POST",
          headers: { "content-type": "application/json", "connect-timeout-ms": String(DEADLINE_MS) },
          body: JSON.stringify({ name: `Drill ${i}`, email }),
          signal: AbortSignal.timeout(DEADLINE_MS + 5_000),
        }).catch(() => undefined);
        const body = (await res?.json().catch(() => ({}))) as { code?: string; user?: { id: string } } | undefined;
        const code = res === undefined ? "hang" : res.status === 200 ? "ok" : (body?.code ?? `http_${res.status}`);
        writes.push({
          code,
          startedAt,
          tookMs: performance.now() - startedAt,
          email,
          ...(body?.user && { id: body.user.id }),
        });
        await sleep(20);
      }
    })();

    await sleep(1_000);
    const downAt = performance.now();
    await server.stop();
    await sleep(DOWN_MS / 2);
    const whileDown = { readyz: await admin("/readyz"), healthz: await admin("/healthz") };
    await sleep(DOWN_MS / 2);
    server = await startServer();
    const backAt = performance.now();
    await sleep(4_000);
    writing = false;
    const outcomes = await reads.stop();
    await writer;
    const afterwards = { readyz: await admin("/readyz"), healthz: await admin("/healthz") };

    const all = [...outcomes, ...writes];
    const slowest = Math.max(...all.map((o) => o.tookMs));
    const down = all.filter((o) => o.startedAt >= downAt && o.startedAt < backAt);
    t.diagnostic(`reads ${outcomes.length}: ${JSON.stringify(countByCode(outcomes))}`);
    t.diagnostic(
      `writes ${writes.length}: ${JSON.stringify(countByCode(writes))}; slowest call ${slowest.toFixed(0)} ms`,
    );
    t.diagnostic(
      `reads recovered ${recoveryMs(outcomes, backAt).toFixed(0)} ms, writes ${recoveryMs(writes, backAt).toFixed(0)} ms after PostgreSQL was back`,
    );
    t.diagnostic(`users while it was away: ${JSON.stringify(whileDown)}; afterwards: ${JSON.stringify(afterwards)}`);

    assert.ok(down.length > 20, `calls while PostgreSQL was away (${down.length})`);
    assert.ok(
      down.some((o) => o.code !== "ok"),
      "the outage was felt",
    );
    for (const o of all) {
      assert.ok(["ok", "unavailable", "deadline_exceeded"].includes(o.code), `a call ended ${o.code}`);
    }
    assert.ok(slowest <= DEADLINE_MS + LATE_MS, `slowest call ${slowest.toFixed(0)} ms (deadline ${DEADLINE_MS} ms)`);
    assert.deepEqual(whileDown, { readyz: 503, healthz: 200 });
    assert.deepEqual(afterwards, { readyz: 200, healthz: 200 });
    assert.equal(
      chain.users.lines.some((l) => l.level === "fatal"),
      false,
      "users kept running",
    );
    assert.ok(
      recoveryMs(outcomes, backAt) <= 2_000,
      `reads recovered in ${recoveryMs(outcomes, backAt).toFixed(0)} ms`,
    );
    assert.ok(recoveryMs(writes, backAt) <= 2_000, `writes recovered in ${recoveryMs(writes, backAt).toFixed(0)} ms`);

    // Nothing twice, nothing acknowledged and lost.
    const stored = await withClient(server.url, async (c) => {
      const { rows } = await c.query<{ email: string; n: string }>(
        "SELECT lower(email) AS email, count(*) AS n FROM users WHERE email LIKE 'drill-%' GROUP BY lower(email)",
      );
      return new Map(rows.map((r) => [r.email, Number(r.n)]));
    });
    assert.deepEqual(
      [...stored].filter(([, n]) => n > 1),
      [],
      "no user created twice",
    );
    const lost = writes.filter((w) => w.code === "ok" && !stored.has(w.email)).map((w) => w.email);
    assert.deepEqual(lost, [], "every acknowledged user is stored");
  });

  it("wrote no seeded email, token or database password to any log line", async () => {
    await sleep(200); // log lines are flushed every 100 ms
    for (const service of [chain.users, chain.profiles, chain.gateway]) {
      assert.deepEqual(leaksOf(service), [], `${service.name} logged them`);
    }
  });
});
