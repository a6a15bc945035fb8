/**
 * The production overlay's shape on one machine: three users replicas on one
 * PostgreSQL database, behind profiles (a `static:///` list of all three, as
 * a headless Service's endpoints) and the gateway. A store in process memory
 * failed this: a user created on one replica was NotFound on the other two,
 * and two replicas gave out the same id.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { testDatabase } from "@demo/rpc-kit/testing";
import { leaksOf } from "./leaks.ts";
import { type ServiceProcess, startService } from "./processes.ts";

const USERS = 300;
const READS_EACH = 3;
const CONCURRENCY = 8;

describe("three users replicas on one PostgreSQL, behind profiles and the gateway", () => {
  let database: { url: string; drop(): Promise<void> };
  const replicas: ServiceProcess[] = [];
  let profiles: ServiceProcess;
  let gateway: ServiceProcess;

  before(async () => {
    database = await testDatabase();
    // Started together, as a Deployment's pods are: the migrations' lock lets exactly one apply them.
    replicas.push(...(await Promise.all([1, 2, 3].map(() => startService("users", { DATABASE_URL: database.url })))));
    profiles = await startService("profiles", {
      USERS_ADDR: `static:///${replicas.map((r) => `127.0.0.1:${r.port}`).join(",")}`,
    });
    gateway = await startService("gateway", { PROFILES_ADDR: `127.0.0.1:${profiles.port}` });
  });
  after(async () => {
    await Promise.all([gateway?.stop(), profiles?.stop(), ...replicas.map((r) => r.stop())]);
    await database?.drop();
  });

  const call = async (method: string, body: unknown) => {
    const res = await fetch(`http://127.0.0.1:${gateway.port}/demo.gateway.v1.GatewayService/${method}`, {
      method: "POST",
      headers: { "content-type": "application/json", "connect-timeout-ms": "5000" },
      body: JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };

  /** Runs `task(i)` for i in [0, n) with `CONCURRENCY` at a time. */
  async function each(n: number, task: (i: number) => Promise<void>): Promise<void> {
    let next = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < n) await task(next++);
      }),
    );
  }

  it(`finds each of ${USERS} users created through the gateway on every read, and gives no id twice`, async (t) => {
    const ids: string[] = [];
    const failedCreates: string[] = [];
    await each(USERS, async (i) => {
      const { status, body } = await call("CreateUser", { name: `Replica ${i}`, email: `replica-${i}@example.org` });
      const user = body.user as { id?: string } | undefined;
      if (status === 200 && user?.id) ids.push(user.id);
      else failedCreates.push(`${i}: ${status} ${JSON.stringify(body)}`);
    });
    assert.deepEqual(failedCreates, []);
    assert.equal(new Set(ids).size, USERS, "every id distinct");
    for (const id of ids) assert.match(id, /^u-\d+$/);

    const misses: string[] = [];
    await each(USERS * READS_EACH, async (i) => {
      const id = ids[i % USERS] as string;
      const { status, body } = await call("GetProfile", { userId: id });
      const found = (body.profile as { user?: { id?: string } } | undefined)?.user?.id;
      if (status !== 200 || found !== id) misses.push(`${id}: ${status} ${JSON.stringify(body)}`);
    });
    assert.deepEqual(misses, [], "every read found its user");

    // The load was spread: every replica served creates and reads (none of them is a bystander).
    await new Promise((r) => setTimeout(r, 200)); // log lines are flushed every 100 ms
    const served = replicas.map((r) => ({
      creates: r.lines.filter((l) => l.rpc_method === "CreateUser" && l.rpc_code === "ok").length,
      reads: r.lines.filter((l) => l.rpc_method === "GetUser" && l.rpc_code === "ok").length,
    }));
    t.diagnostic(`per replica: ${JSON.stringify(served)}`);
    for (const [i, s] of served.entries()) {
      assert.ok(s.creates > 0 && s.reads > 0, `replica ${i + 1} served ${JSON.stringify(s)}`);
    }
    assert.equal(
      served.reduce((n, s) => n + s.creates, 0),
      USERS,
    );
  });

  it("applied each migration once although three replicas started at once", () => {
    const applied = replicas.map((r) => r.lines.find((l) => l.msg === "database schema is current")?.applied);
    assert.deepEqual([...applied].sort(), [0, 0, 2], `migrations applied per replica: ${JSON.stringify(applied)}`);
  });

  it("wrote no seeded email, token or database password to any log line", async () => {
    await new Promise((r) => setTimeout(r, 200)); // log lines are flushed every 100 ms
    for (const service of [gateway, profiles, ...replicas]) {
      assert.deepEqual(leaksOf(service), [], `${service.name} logged them`);
    }
  });
});
