import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { freePort, testDatabase } from "@demo/rpc-kit/testing";
import { type DnsServer, startDnsServer } from "../dns-server.ts";
import { leaksOf } from "../leaks.ts";
import { type ServiceProcess, startService } from "../processes.ts";
import { countByCode, sleep, steadyLoad } from "./steady-load.ts";

/** How often callers re-resolve; a replica drains for longer than this before it stops accepting. */
const DNS_REFRESH_MS = 300;
const DRAIN_MS = 1_000;

/**
 * Two replicas each of profiles and users behind DNS names, as a headless
 * Service gives them; a rollout replaces each replica the way Kubernetes does:
 * the new pod starts and is ready, the old one leaves the endpoints and gets
 * SIGTERM, drains, finishes what it accepted, and exits. Every users
 * replica, old and new, shares one PostgreSQL database, as in a deployment.
 */
describe("drill: rolling restart of profiles, then users, under steady load", () => {
  let dns: DnsServer;
  const ports = { profiles: 0, users: 0 };
  const replicas = { profiles: new Map<string, ServiceProcess>(), users: new Map<string, ServiceProcess>() };
  let gateway: ServiceProcess;
  let nextHost = 10;
  let database: { url: string; drop(): Promise<void> };

  const common = () => ({
    RPC_DNS_SERVERS: dns.address,
    RPC_DNS_REFRESH_MS: String(DNS_REFRESH_MS),
    SHUTDOWN_DRAIN_DELAY_MS: String(DRAIN_MS),
  });
  async function startReplica(role: "profiles" | "users"): Promise<string> {
    const ip = `127.0.${role === "users" ? 2 : 1}.${nextHost++}`;
    const env = { ...common(), HOST: ip, PORT: String(ports[role]) };
    replicas[role].set(
      ip,
      await startService(
        role,
        role === "profiles"
          ? { ...env, USERS_ADDR: `dns:///users.drill:${ports.users}` }
          : { ...env, DATABASE_URL: database.url },
      ),
    );
    return ip;
  }
  const publish = (role: "profiles" | "users") => dns.setA(`${role}.drill`, [...replicas[role].keys()]);

  async function roll(role: "profiles" | "users"): Promise<void> {
    for (const [ip, old] of [...replicas[role]]) {
      await startReplica(role); // resolves once it is listening and serving
      replicas[role].delete(ip);
      publish(role);
      const exit = await old.stop("SIGTERM");
      assert.deepEqual(exit, { code: 0, signal: null }, `${role} ${ip} exited cleanly`);
    }
  }

  before(async () => {
    dns = await startDnsServer();
    database = await testDatabase();
    ports.users = await freePort("127.0.2.1");
    ports.profiles = await freePort("127.0.1.1");
    await Promise.all([startReplica("users"), startReplica("users")]);
    publish("users");
    await Promise.all([startReplica("profiles"), startReplica("profiles")]);
    publish("profiles");
    gateway = await startService("gateway", { ...common(), PROFILES_ADDR: `dns:///profiles.drill:${ports.profiles}` });
  });
  after(async () => {
    await gateway?.stop();
    await Promise.all([...replicas.profiles.values(), ...replicas.users.values()].map((r) => r.stop()));
    await dns?.close();
    await database?.drop();
  });

  it("fails no call", async (t) => {
    const load = steadyLoad({
      baseUrl: `http://127.0.0.1:${gateway.port}`,
      concurrency: 8,
      pauseMs: 5,
      deadlineMs: 2_000,
      maxCalls: 200_000,
      maxMs: 60_000,
    });
    // Writes too: CreateUser is never retried once sent, so only the drain keeps these whole.
    let rolling = true;
    const written: string[] = [];
    const created: string[] = [];
    const writer = (async () => {
      for (let i = 0; rolling && i < 2_000; i++) {
        const res = await fetch(`http://127.0.0.1:${gateway.port}/demo.gateway.v1.GatewayService/CreateUser`, {
          method: "POST",
          headers: { "content-type": "application/json", "connect-timeout-ms": "2000" },
          body: JSON.stringify({ name: `Rolling ${i}`, email: `rolling-${i}@example.org` }),
        });
        const body = (await res.json()) as { code?: string; user?: { id: string } };
        written.push(res.status === 200 ? "ok" : (body.code ?? String(res.status)));
        if (body.user !== undefined) created.push(body.user.id);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const started = performance.now();
    await roll("profiles");
    await roll("users");
    const rolledMs = performance.now() - started;
    rolling = false;
    const outcomes = await load.stop();
    await writer;
    const reads = countByCode(outcomes);
    const writes = countByCode(written.map((code) => ({ code, startedAt: 0, tookMs: 0 })));
    t.diagnostic(
      `${outcomes.length} reads during a ${(rolledMs / 1000).toFixed(1)} s rollout: ${JSON.stringify(reads)}`,
    );
    t.diagnostic(`${written.length} writes: ${JSON.stringify(writes)}`);
    assert.ok(outcomes.length > 500, `reads during the rollout (${outcomes.length})`);
    assert.deepEqual(reads, { ok: outcomes.length });
    assert.ok(written.length > 50, `writes during the rollout (${written.length})`);
    assert.deepEqual(writes, { ok: written.length });

    // Every acknowledged write is there, once, on the replicas that replaced the ones that took it.
    assert.equal(new Set(created).size, created.length, "no id given twice");
    const missing: string[] = [];
    for (const id of created) {
      const res = await fetch(`http://127.0.0.1:${gateway.port}/demo.gateway.v1.GatewayService/GetProfile`, {
        method: "POST",
        headers: { "content-type": "application/json", "connect-timeout-ms": "2000" },
        body: JSON.stringify({ userId: id }),
      });
      if (res.status !== 200) missing.push(`${id}: ${res.status}`);
      await res.arrayBuffer();
    }
    assert.deepEqual(missing, [], "every created user is readable after the rollout");
  });

  it("wrote no seeded email or token to any log line", async () => {
    await sleep(200); // log lines are flushed every 100 ms
    for (const service of [gateway, ...replicas.profiles.values(), ...replicas.users.values()])
      assert.deepEqual(leaksOf(service), [], `${service.name} logged them`);
  });
});
