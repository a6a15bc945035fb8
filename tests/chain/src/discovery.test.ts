import assert from "node:assert/strict";
import * as net from "node:net";
import { after, before, describe, it } from "node:test";
import { UserService } from "@demo/proto/demo/users/v1/users_pb";
import { createClient } from "@demo/rpc-kit";
import { UpstreamPool } from "@demo/rpc-kit/client";
import { freePort } from "@demo/rpc-kit/testing";
import { type DnsServer, startDnsServer } from "./dns-server.ts";
import { type ServiceProcess, startService } from "./processes.ts";

const NAME = "users.test";
const REFRESH_MS = 1_500;

/** GetUser calls a replica has served, from its /metrics. */
async function served(replica: ServiceProcess, host: string): Promise<number> {
  const text = await (await fetch(`http://${host}:${replica.adminPort}/metrics`)).text();
  const line = text
    .split("\n")
    .find(
      (l) =>
        l.startsWith("grpc_server_handled_total{") &&
        l.includes('grpc_method="GetUser"') &&
        l.includes('grpc_code="OK"'),
    );
  return line ? Number(line.slice(line.lastIndexOf(" ") + 1)) : 0;
}

describe("discovery and balancing over DNS, with replicas on 127.0.0.2-5", () => {
  let dns: DnsServer;
  let port: number;
  const replicas = new Map<string, ServiceProcess>();
  const pool = new UpstreamPool();
  let client: ReturnType<typeof createClient<typeof UserService>>;

  async function startReplica(ip: string) {
    replicas.set(ip, await startService("users", { HOST: ip, PORT: String(port), ADMIN_PORT: "0" }));
  }
  const counts = async () =>
    Object.fromEntries(await Promise.all([...replicas].map(async ([ip, r]) => [ip, await served(r, ip)] as const)));

  /** Runs `calls` GetUser calls, 16 at a time; returns the failures. */
  async function load(calls: number): Promise<unknown[]> {
    const failures: unknown[] = [];
    let sent = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (sent < calls) {
          sent++;
          await client.getUser({ id: "u-1" }).catch((err: unknown) => failures.push(String(err)));
        }
      }),
    );
    return failures;
  }

  before(async () => {
    dns = await startDnsServer({ [NAME]: ["127.0.0.2", "127.0.0.3", "127.0.0.4"] });
    port = await freePort("127.0.0.2");
    await Promise.all(["127.0.0.2", "127.0.0.3", "127.0.0.4"].map(startReplica));
    client = createClient(UserService, `dns:///${NAME}:${port}`, {
      pool,
      dnsServers: [dns.address],
      dnsRefreshMs: REFRESH_MS,
    });
    await load(30); // connect to every replica
  });
  after(async () => {
    pool.close();
    await Promise.all([...replicas.values()].map((r) => r.stop()));
    await dns.close();
  });

  it("spreads 3,000 calls evenly over every address the name resolves to", async (t) => {
    const before = await counts();
    assert.deepEqual(await load(3_000), []);
    const after = await counts();
    const ips = ["127.0.0.2", "127.0.0.3", "127.0.0.4"];
    const shares = ips.map((ip) => ((after[ip] ?? 0) - (before[ip] ?? 0)) / 3_000);
    t.diagnostic(`shares ${shares.map((x) => `${(x * 100).toFixed(1)}%`).join(" / ")}`);
    for (const [i, share] of shares.entries()) {
      assert.ok(share >= 0.3 && share <= 0.37, `${ips[i]} got ${(share * 100).toFixed(1)}%`);
    }
  });

  it("sends calls to a replica added to the DNS answer within the refresh interval plus one second", async (t) => {
    await startReplica("127.0.0.5");
    dns.setA(NAME, ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]);
    const added = Date.now();
    let reachedAfter: number | undefined;
    while (Date.now() - added < REFRESH_MS + 3_000) {
      assert.deepEqual(await load(50), []);
      if ((await counts())["127.0.0.5"]) {
        reachedAfter = Date.now() - added;
        break;
      }
    }
    t.diagnostic(`first call to the added replica after ${reachedAfter} ms (refresh ${REFRESH_MS} ms)`);
    assert.ok(reachedAfter !== undefined && reachedAfter <= REFRESH_MS + 1_000, `first call after ${reachedAfter} ms`);
  });

  it("stops sending to a replica removed from the DNS answer", async () => {
    dns.setA(NAME, ["127.0.0.2", "127.0.0.3", "127.0.0.4"]);
    await new Promise((r) => setTimeout(r, REFRESH_MS + 500));
    const before = await counts();
    assert.deepEqual(await load(600), []);
    const after = await counts();
    assert.equal(after["127.0.0.5"], before["127.0.0.5"], "127.0.0.5 got no call");
    assert.ok((after["127.0.0.2"] ?? 0) > (before["127.0.0.2"] ?? 0));
  });

  it("loses no idempotent call when a replica is killed with SIGKILL mid-load, and ejects it", async () => {
    const failures: unknown[] = [];
    const steady = load(3_000).then((f) => failures.push(...f));
    await new Promise((r) => setTimeout(r, 300));
    await replicas.get("127.0.0.3")?.stop("SIGKILL");
    await steady;
    assert.deepEqual(failures, [], "no call failed that a retry could save");
    const [upstream] = pool.snapshot();
    const dead = upstream?.endpoints.find((e) => e.address === `ipv4:127.0.0.3:${port}`);
    assert.ok(dead, "still in DNS, so still known");
    assert.equal(dead.ready, false, `dead endpoint is out of rotation (state ${dead.state})`);
    const callsBefore = dead.calls;
    assert.deepEqual(await load(300), []);
    const later = pool.snapshot()[0]?.endpoints.find((e) => e.address === `ipv4:127.0.0.3:${port}`);
    assert.equal(later?.calls, callsBefore, "no call is sent to the dead endpoint");
    replicas.delete("127.0.0.3");
  });

  it("routes around an address that never answers, at no cost to calls", async () => {
    const accepted = new Set<net.Socket>();
    const blackHole = net.createServer((s) => accepted.add(s));
    await new Promise<void>((r) => blackHole.listen(port, "127.0.0.6", r));
    try {
      dns.setA(NAME, ["127.0.0.2", "127.0.0.4", "127.0.0.6"]);
      await new Promise((r) => setTimeout(r, REFRESH_MS + 500));
      let slowest = 0;
      let sent = 0;
      await Promise.all(
        Array.from({ length: 8 }, async () => {
          while (sent < 400) {
            sent++;
            const started = performance.now();
            await client.getUser({ id: "u-1" });
            slowest = Math.max(slowest, performance.now() - started);
          }
        }),
      );
      assert.ok(slowest < 1_000, `slowest call ${slowest.toFixed(0)} ms (connect timeout 1,000 ms)`);
      const [upstream] = pool.snapshot();
      const hole = upstream?.endpoints.find((e) => e.address === `ipv4:127.0.0.6:${port}`);
      assert.equal(hole?.ready, false);
      assert.equal(hole?.calls, 0, "no call was sent to it");
    } finally {
      for (const s of accepted) s.destroy();
      blackHole.close();
    }
  });
});

describe("discovery of AAAA records, and re-resolution when a connection fails", () => {
  const NAME6 = "users6.test";
  let dns: DnsServer;
  let port: number;
  const replicas = new Map<string, ServiceProcess>();
  const pool = new UpstreamPool();

  before(async () => {
    port = await freePort("::1");
    dns = await startDnsServer({ [NAME6]: ["127.0.0.7", "127.0.0.8"] }, { [NAME6]: ["::1"] });
    for (const ip of ["127.0.0.7", "127.0.0.8", "::1"]) {
      replicas.set(ip, await startService("users", { HOST: ip, PORT: String(port), ADMIN_PORT: "0" }));
    }
  });
  after(async () => {
    pool.close();
    await Promise.all([...replicas.values()].map((r) => r.stop()));
    await dns.close();
  });

  it("balances over A and AAAA answers alike, and re-resolves at once when a replica's connection fails", async () => {
    // A 30 s timer: any query after the first comes from the failed connection, not the clock.
    const client = createClient(UserService, `dns:///${NAME6}:${port}`, {
      pool,
      dnsServers: [dns.address],
      dnsRefreshMs: 30_000,
    });
    for (let i = 0; i < 300; i++) await client.getUser({ id: "u-1" });
    // A failure right after a resolution is not lost: its re-resolution is deferred to the 1 s minimum interval.
    await pool.upstreams()[0]?.refresh();
    const ipv6 = await served(replicas.get("::1") as ServiceProcess, "[::1]");
    assert.ok(ipv6 >= 90, `the ::1 replica served ${ipv6} of 300`);
    const [upstream] = pool.snapshot();
    assert.deepEqual(upstream?.endpoints.map((e) => e.address).sort(), [
      `ipv4:127.0.0.7:${port}`,
      `ipv4:127.0.0.8:${port}`,
      `ipv6:[::1]:${port}`,
    ]);

    const queriesBefore = dns.queries.get(NAME6) ?? 0;
    dns.setA(NAME6, ["127.0.0.7"]);
    const killed = Date.now();
    await replicas.get("127.0.0.8")?.stop("SIGKILL");
    replicas.delete("127.0.0.8");
    while ((dns.queries.get(NAME6) ?? 0) === queriesBefore && Date.now() - killed < 3_000) {
      await new Promise((r) => setTimeout(r, 20));
    }
    const requeriedAfter = Date.now() - killed;
    assert.ok(
      requeriedAfter < 1_500,
      `asked DNS again ${requeriedAfter} ms after the connection failed (at most 1 s apart)`,
    );
    await new Promise((r) => setTimeout(r, 100));
    assert.ok(
      !pool.snapshot()[0]?.endpoints.some((e) => e.address === `ipv4:127.0.0.8:${port}`),
      "the replica gone from DNS is dropped",
    );
  });
});
