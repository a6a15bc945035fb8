import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code, ConnectError, createClient as createConnectClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { UserService } from "@demo/proto/demo/users/v1/users_pb";
import { RetryInfoSchema } from "@demo/proto/google/rpc/error_details_pb";
import { metricsRegistry } from "../observe/metrics.ts";
import { serve } from "../serve.ts";
import { service } from "../server/service-registration.ts";
import { userFixture } from "../test-support/users.ts";
import { captureLogger, testServerSettings } from "../testing/index.ts";
import { RATE_LIMITED_MESSAGE, RateLimiter } from "./rate-limit.ts";

function clock() {
  const c = { t: 0, now: () => c.t };
  return c;
}

describe("RateLimiter: token buckets per client", () => {
  it("allows a burst, then one call per 1/rate, and says how long to wait", () => {
    const c = clock();
    const limiter = new RateLimiter({ ratePerSecond: 10, burst: 3, maxClients: 10, now: c.now });
    assert.deepEqual(
      [1, 2, 3].map(() => limiter.take("a")),
      [0, 0, 0],
    );
    assert.equal(limiter.take("a"), 100);
    c.t += 40;
    assert.equal(limiter.take("a"), 60);
    c.t += 60;
    assert.equal(limiter.take("a"), 0);
    // Another client has its own bucket.
    assert.equal(limiter.take("b"), 0);
    // Refills up to the burst, no further.
    c.t += 60_000;
    assert.deepEqual(
      [1, 2, 3, 4].map(() => limiter.take("a")),
      [0, 0, 0, 100],
    );
  });

  it("tracks at most maxClients, forgetting the least recently seen", () => {
    const c = clock();
    const limiter = new RateLimiter({ ratePerSecond: 1, burst: 1, maxClients: 100, now: c.now });
    for (let i = 0; i < 10_000; i++) limiter.take(`client-${i}`);
    assert.equal(limiter.size, 100);
    // The most recent clients are still limited; the first ones were forgotten.
    assert.ok(limiter.take("client-9999") > 0);
    assert.equal(limiter.take("client-0"), 0);
  });

  it("drops idle clients whose bucket is full again as new ones arrive", () => {
    const c = clock();
    const limiter = new RateLimiter({ ratePerSecond: 10, burst: 5, maxClients: 1000, now: c.now });
    for (let i = 0; i < 50; i++) limiter.take(`old-${i}`);
    c.t += 1_000; // 0.5 s refills a bucket of 5 at 10/s: every old one is full
    for (let i = 0; i < 25; i++) limiter.take(`new-${i}`);
    assert.equal(limiter.size, 25);
  });
});

describe("rate limit at the edge", () => {
  it("answers ResourceExhausted with RetryInfo and retry-after once a client's burst is spent, and counts it", async () => {
    const server = await serve({
      name: "edge",
      engine: "connect",
      settings: testServerSettings(),
      logger: captureLogger("edge").logger,
      rateLimit: { rateLimitPerSecond: 1, rateLimitBurst: 3, rateLimitMaxClients: 100 },
      services: [service(UserService, userFixture().impl)],
      ownsProcess: false,
    });
    try {
      const base = `http://localhost:${server.port}`;
      const post = () =>
        fetch(`${base}/demo.users.v1.UserService/GetUser`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: '{"id":"u-1"}',
        });
      const statuses = [];
      for (let i = 0; i < 3; i++) statuses.push((await post()).status);
      assert.deepEqual(statuses, [200, 200, 200]);
      const refused = await post();
      assert.equal(refused.status, 429);
      assert.equal(refused.headers.get("retry-after"), "1");
      const body = (await refused.json()) as { code: string; message: string; details: { type: string }[] };
      assert.equal(body.code, "resource_exhausted");
      assert.equal(body.message, RATE_LIMITED_MESSAGE);
      assert.equal(body.details[0]?.type, "google.rpc.RetryInfo");

      // The same client over gRPC (the edge's fast path): same bucket (same address), same answer.
      const grpc = createConnectClient(UserService, createGrpcTransport({ baseUrl: base }));
      await assert.rejects(grpc.getUser({ id: "u-1" }), (e: unknown) => {
        assert.ok(e instanceof ConnectError);
        assert.equal(e.code, Code.ResourceExhausted);
        const info = e.findDetails(RetryInfoSchema)[0];
        assert.ok(info, "a RetryInfo detail");
        const ms = Number(info.retryDelay?.seconds ?? 0n) * 1000 + (info.retryDelay?.nanos ?? 0) / 1e6;
        assert.ok(ms > 0 && ms <= 1000, `retry delay ${ms} ms`);
        return true;
      });
      const metrics = await metricsRegistry.metrics();
      assert.match(
        metrics,
        /rpc_kit_rate_limited_total\{grpc_service="demo.users.v1.UserService",grpc_method="GetUser"\} [2-9]/,
      );
      assert.match(metrics, /rpc_kit_rate_limit_clients [1-9]/);
    } finally {
      await server.shutdown();
    }
  });
});
