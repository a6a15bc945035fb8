import assert from "node:assert/strict";
import * as net from "node:net";
import { describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { UserService } from "@demo/proto/demo/users/v1/users_pb";
import { Health, HealthCheckResponse_ServingStatus as Status } from "@demo/proto/health/v1/health_pb";
import { createClient } from "./client/client.ts";
import { UpstreamPool } from "./client/upstream-pool.ts";
import { ListenError, serve } from "./serve.ts";
import { service } from "./server/service-registration.ts";
import { userFixture } from "./test-support/users.ts";
import { captureLogger, testServerSettings, waitFor } from "./testing/index.ts";

function start(engine: "grpc" | "connect", settings = testServerSettings()) {
  return serve({
    name: "users",
    engine,
    settings,
    logger: captureLogger("users").logger,
    services: [service(UserService, userFixture().impl)],
    ownsProcess: false,
    pool: new UpstreamPool(),
  });
}

describe("serve: ports", () => {
  for (const engine of ["grpc", "connect"] as const) {
    it(`${engine}: names the port and its variable when the port is taken`, async () => {
      const blocker = net.createServer();
      await new Promise<void>((r) => blocker.listen(0, r));
      const taken = (blocker.address() as net.AddressInfo).port;
      try {
        await assert.rejects(start(engine, testServerSettings({ port: taken })), (err: unknown) => {
          assert.ok(err instanceof ListenError);
          assert.equal(err.message, `port ${taken} is already in use (set PORT to a free port)`);
          return true;
        });
        await assert.rejects(start(engine, testServerSettings({ adminPort: taken })), /set ADMIN_PORT/);
      } finally {
        blocker.close();
      }
    });
  }
});

describe("serve: graceful shutdown", () => {
  for (const engine of ["grpc", "connect"] as const) {
    it(`${engine}: NOT_SERVING and /readyz 503 while draining, in-flight calls finish, then the port closes`, async () => {
      const server = await start(engine, testServerSettings({ drainDelayMs: 300 }));
      const pool = new UpstreamPool();
      const target = `localhost:${server.port}`;
      const health = createClient(Health, target, { pool });
      const users = createClient(UserService, target, { pool });
      const watched: Status[] = [];
      const watching = (async () => {
        for await (const res of health.watch({ service: "" }, { timeoutMs: 10_000 })) watched.push(res.status);
      })();
      await waitFor(() => watched.length === 1);

      const inFlight = users.getUser({ id: "slow-500" });
      await new Promise((r) => setTimeout(r, 50));
      const stopped = server.shutdown();

      await waitFor(() => watched.includes(Status.NOT_SERVING));
      assert.equal((await fetch(`http://localhost:${server.adminPort}/readyz`)).status, 503);
      assert.equal((await fetch(`http://localhost:${server.adminPort}/healthz`)).status, 200);
      // Still accepting during the drain delay.
      assert.equal((await users.getUser({ id: "u-1" })).user?.id, "u-1");

      assert.equal((await inFlight).user?.id, "u-1");
      await stopped;
      await watching;
      assert.deepEqual(watched, [Status.SERVING, Status.NOT_SERVING]);
      await assert.rejects(
        users.getUser({ id: "u-1" }, { timeoutMs: 500 }),
        (e: unknown) => e instanceof ConnectError && (e.code === Code.Unavailable || e.code === Code.DeadlineExceeded),
      );
      pool.close();
    });
  }

  it("cancels calls still running after the shutdown timeout", async () => {
    const server = await start("grpc", testServerSettings({ shutdownTimeoutMs: 200 }));
    const pool = new UpstreamPool();
    const users = createClient(UserService, `localhost:${server.port}`, { pool });
    const call = users.getUser({ id: "slow-5000" });
    await new Promise((r) => setTimeout(r, 50));
    const started = Date.now();
    await server.shutdown();
    assert.ok(Date.now() - started < 1_000, `shutdown took ${Date.now() - started} ms`);
    await assert.rejects(call, ConnectError);
    pool.close();
  });
});
