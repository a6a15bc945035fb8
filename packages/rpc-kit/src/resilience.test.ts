import assert from "node:assert/strict";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import * as http2 from "node:http2";
import * as net from "node:net";
import { describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { UserService } from "@demo/proto/demo/users/v1/users_pb";
import { createClient } from "./client.ts";
import { serve } from "./server.ts";
import { service } from "./service-registration.ts";
import { userFixture } from "./testing/fixtures.ts";
import { captureLogger, testServerSettings } from "./testing/index.ts";
import { UpstreamPool } from "./upstream-pool.ts";

const isCode = (code: Code) => (e: unknown) => e instanceof ConnectError && e.code === code;

/** Local ports of this process's established TCP connections to `port`. */
function localPortsTo(port: number): number[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync("/proc/self/fd")) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`));
      if (m?.[1]) inodes.add(m[1]);
    } catch {
      // closed meanwhile
    }
  }
  const ports: number[] = [];
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    for (const row of readFileSync(table, "utf8").split("\n").slice(1)) {
      const cols = row.trim().split(/\s+/);
      const [local = "", remote = ""] = [cols[1], cols[2]];
      if (cols[3] !== "01" || !inodes.has(cols[9] ?? "")) continue;
      if (Number.parseInt(remote.slice(remote.lastIndexOf(":") + 1), 16) !== port) continue;
      ports.push(Number.parseInt(local.slice(local.lastIndexOf(":") + 1), 16));
    }
  }
  return ports;
}

describe("retries stay within the budget", () => {
  it("with users answering Unavailable to everything, calls reaching it ≤ (1 + 10%) × calls + 10", async () => {
    let reached = 0;
    const fixture = userFixture();
    const users = await serve({
      name: "users",
      settings: testServerSettings(),
      logger: captureLogger("users").logger,
      services: [
        service(UserService, {
          ...fixture.impl,
          getUser() {
            reached++;
            throw new ConnectError("overloaded", Code.Unavailable);
          },
        }),
      ],
      ownsProcess: false,
      pool: new UpstreamPool(),
    });
    const pool = new UpstreamPool();
    try {
      const client = createClient(UserService, `localhost:${users.port}`, { pool, timeoutMs: 1_000 });
      const calls = 200;
      for (let i = 0; i < calls; i++) {
        const started = Date.now();
        await assert.rejects(client.getUser({ id: "u-1" }), isCode(Code.Unavailable));
        assert.ok(Date.now() - started < 1_000, "answered within its deadline");
      }
      assert.ok(reached >= calls, `${reached} reached users`);
      assert.ok(reached <= 1.1 * calls + 10, `${reached} calls reached users for ${calls} sent`);
      const [snapshot] = pool.snapshot();
      assert.ok((snapshot?.retryBudget.tokens ?? 99) < 1, "the budget is spent");
    } finally {
      pool.close();
      await users.shutdown();
    }
  });
});

describe("a call that may have been processed", () => {
  it("is never sent twice when it is not idempotent, and retried when it is", async () => {
    const seen = new Map<string, number>();
    // Accepts each call, then drops the connection before answering.
    const server = http2.createServer();
    server.on("stream", (stream, headers) => {
      const path = String(headers[":path"]);
      seen.set(path, (seen.get(path) ?? 0) + 1);
      stream.on("data", () => undefined);
      stream.on("end", () => stream.session?.destroy());
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as net.AddressInfo).port;
    const pool = new UpstreamPool();
    try {
      const client = createClient(UserService, `static:///127.0.0.1:${port}`, { pool, timeoutMs: 3_000 });
      await assert.rejects(client.createUser({ name: "A", email: "a@example.com" }), isCode(Code.Unavailable));
      assert.equal(seen.get("/demo.users.v1.UserService/CreateUser"), 1);
      await assert.rejects(client.getUser({ id: "u-1" }), isCode(Code.Unavailable));
      assert.equal(seen.get("/demo.users.v1.UserService/GetUser"), 3, "GetUser is idempotent: three attempts");
    } finally {
      pool.close();
      server.close();
    }
  });
});

describe("an address that never answers", () => {
  it("costs at most the connect timeout, then Unavailable", async () => {
    const accepted = new Set<net.Socket>();
    const blackHole = net.createServer((socket) => accepted.add(socket));
    await new Promise<void>((r) => blackHole.listen(0, "127.0.0.1", r));
    const port = (blackHole.address() as net.AddressInfo).port;
    const pool = new UpstreamPool();
    try {
      const client = createClient(UserService, `static:///127.0.0.1:${port}`, {
        pool,
        connectTimeoutMs: 300,
        timeoutMs: 5_000,
        retry: { maxAttempts: 1 },
      });
      const started = Date.now();
      await assert.rejects(client.getUser({ id: "u-1" }), isCode(Code.Unavailable));
      const took = Date.now() - started;
      assert.ok(took >= 250 && took < 600, `took ${took} ms`);
    } finally {
      pool.close();
      for (const socket of accepted) socket.destroy();
      blackHole.close();
    }
  });
});

describe("a server with a short max connection age", () => {
  it("rotates connections under steady load without failing a call", async () => {
    const users = await serve({
      name: "users",
      settings: testServerSettings({ maxConnectionAgeMs: 300 }),
      logger: captureLogger("users").logger,
      services: [service(UserService, userFixture().impl)],
      ownsProcess: false,
      pool: new UpstreamPool(),
    });
    const pool = new UpstreamPool();
    const ports = new Set<number>();
    const sampler = setInterval(() => {
      for (const p of localPortsTo(users.port)) ports.add(p);
    }, 20);
    try {
      const client = createClient(UserService, `localhost:${users.port}`, { pool });
      const until = Date.now() + 2_000;
      let ok = 0;
      const failures: unknown[] = [];
      await Promise.all(
        Array.from({ length: 8 }, async () => {
          while (Date.now() < until) {
            try {
              await client.getUser({ id: "u-1" });
              ok++;
            } catch (err) {
              failures.push(err);
            }
          }
        }),
      );
      assert.deepEqual(failures, []);
      assert.ok(ok > 200, `${ok} calls`);
      assert.ok(ports.size >= 3, `${ports.size} connections over 2 s with a 300 ms max age`);
    } finally {
      clearInterval(sampler);
      pool.close();
      await users.shutdown();
    }
  });
});
