import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { ProfileService } from "@demo/proto/demo/profiles/v1/profiles_pb";
import { UserService } from "@demo/proto/demo/users/v1/users_pb";
import { BadRequestSchema } from "@demo/proto/google/rpc/error_details_pb";
import { Health, HealthCheckResponse_ServingStatus } from "@demo/proto/health/v1/health_pb";
import { createClient } from "../client/client.ts";
import { UpstreamPool } from "../client/upstream-pool.ts";
import { type RunningServer, serve } from "../serve.ts";
import { ada, type UserFixture, userFixture } from "../test-support/users.ts";
import { captureLogger, testServerSettings, waitFor } from "../testing/index.ts";
import { service } from "./service-registration.ts";

function isCode(code: Code) {
  return (err: unknown) => err instanceof ConnectError && err.code === code;
}

describe("grpc engine with a Connect client over grpc-js", () => {
  const pool = new UpstreamPool();
  const usersLog = captureLogger("users");
  const profilesLog = captureLogger("profiles");
  let fixture: UserFixture;
  let users: RunningServer;
  let profiles: RunningServer;
  let usersClient: ReturnType<typeof createClient<typeof UserService>>;
  let profilesClient: ReturnType<typeof createClient<typeof ProfileService>>;

  before(async () => {
    fixture = userFixture();
    users = await serve({
      name: "users",
      settings: testServerSettings(),
      logger: usersLog.logger,
      services: [service(UserService, fixture.impl)],
      ownsProcess: false,
      pool,
    });
    // A forwarding service in the middle, as profiles is in the demo.
    const upstream = createClient(UserService, `localhost:${users.port}`, { pool });
    const impl: ServiceImpl<typeof ProfileService> = {
      async getProfile(req) {
        const { user } = await upstream.getUser({ id: req.userId });
        return { profile: { user, displayName: "x" } };
      },
      createProfile() {
        throw new ConnectError("no", Code.Unimplemented);
      },
      async *listProfiles() {
        for await (const { user } of upstream.listUsers({})) yield { profile: { user } };
      },
    };
    profiles = await serve({
      name: "profiles",
      settings: testServerSettings(),
      logger: profilesLog.logger,
      services: [service(ProfileService, impl)],
      ownsProcess: false,
      pool: new UpstreamPool(),
    });
    usersClient = createClient(UserService, `localhost:${users.port}`, { pool });
    profilesClient = createClient(ProfileService, `localhost:${profiles.port}`, { pool });
  });

  after(async () => {
    await profiles.shutdown();
    await users.shutdown();
    pool.close();
  });

  it("serves a unary call and logs one line for it", async () => {
    const res = await usersClient.getUser({ id: "u-1" });
    assert.equal(res.user?.name, "Ada Lovelace");
    const line = usersLog.lines.find((l) => l.rpc_method === "GetUser" && l.rpc_code === "ok");
    assert.ok(line, "a per-RPC line");
    assert.equal(line.service, "users");
    assert.equal(line.rpc_service, "demo.users.v1.UserService");
    assert.equal(typeof line.duration_ms, "number");
    assert.doesNotMatch(usersLog.text(), /ada@example\.com/);
  });

  it("keeps NotFound across two hops, with its message", async () => {
    await assert.rejects(profilesClient.getProfile({ userId: "u-404" }), (err: unknown) => {
      assert.ok(isCode(Code.NotFound)(err));
      assert.equal((err as ConnectError).rawMessage, "user u-404 not found");
      return true;
    });
  });

  it("carries error details (google.rpc.BadRequest) to the client", async () => {
    await assert.rejects(usersClient.getUser({ id: "bad" }), (err: unknown) => {
      assert.ok(isCode(Code.InvalidArgument)(err));
      assert.equal((err as ConnectError).findDetails(BadRequestSchema)[0]?.fieldViolations[0]?.field, "id");
      return true;
    });
  });

  it("turns the upstream's InvalidArgument into Internal at the next hop", async () => {
    await assert.rejects(profilesClient.getProfile({ userId: "bad" }), (err: unknown) => {
      assert.ok(isCode(Code.Internal)(err));
      assert.equal((err as ConnectError).rawMessage, "internal error");
      assert.equal((err as ConnectError).details.length, 0);
      return true;
    });
    const line = profilesLog.lines.findLast((l) => l.rpc_code === "internal");
    assert.equal(line?.upstream, "demo.users.v1.UserService/GetUser");
  });

  it("answers a thrown Error with Internal and a safe message, logging the cause", async () => {
    await assert.rejects(usersClient.getUser({ id: "crash" }), (err: unknown) => {
      assert.ok(isCode(Code.Internal)(err));
      assert.doesNotMatch((err as Error).message, /hunter2/);
      return true;
    });
    const line = usersLog.lines.findLast((l) => l.rpc_code === "internal");
    assert.equal(line?.level, "error");
    assert.match(JSON.stringify(line?.err), /db password=hunter2 exploded/);
  });

  it("caps the upstream deadline at the inbound deadline minus the margin", async () => {
    fixture.timeouts.length = 0;
    await profilesClient.getProfile({ userId: "u-1" }, { timeoutMs: 300 });
    const seen = fixture.timeouts[0];
    assert.ok(seen !== undefined && seen <= 290 && seen > 200, `users saw ${seen} ms`);
  });

  it("gives an outbound call the client's default deadline when there is no inbound one", async () => {
    fixture.timeouts.length = 0;
    await usersClient.getUser({ id: "u-1" });
    const seen = fixture.timeouts[0];
    assert.ok(seen !== undefined && seen <= 5_000 && seen > 4_000, `users saw ${seen} ms`);
  });

  it("gives a server stream the client's stream deadline, not the unary one, when there is no inbound one", async () => {
    // 50 users 10 ms apart: ~500 ms, five times the unary default set here.
    const client = createClient(UserService, `localhost:${users.port}`, {
      pool,
      timeoutMs: 100,
      streamTimeoutMs: 5_000,
    });
    let n = 0;
    for await (const _ of client.listUsers({})) n++;
    assert.equal(n, 50);
    const short = createClient(UserService, `localhost:${users.port}`, {
      pool,
      timeoutMs: 5_000,
      streamTimeoutMs: 100,
    });
    await assert.rejects(async () => {
      for await (const _ of short.listUsers({})) n++;
    }, isCode(Code.DeadlineExceeded));
  });

  it("ends a call that outlives its deadline with DeadlineExceeded, and the upstream stops", async () => {
    fixture.cancelled.length = 0;
    const started = Date.now();
    await assert.rejects(
      profilesClient.getProfile({ userId: "slow-2000" }, { timeoutMs: 150 }),
      isCode(Code.DeadlineExceeded),
    );
    assert.ok(Date.now() - started < 400, `took ${Date.now() - started} ms`);
    await waitFor(() => fixture.cancelled.length === 1);
  });

  it("passes cancellation downstream", async () => {
    fixture.cancelled.length = 0;
    const controller = new AbortController();
    const call = profilesClient.getProfile({ userId: "slow-5000" }, { signal: controller.signal });
    await waitFor(() => fixture.timeouts.length > 0 && fixture.calls > 0);
    setTimeout(() => controller.abort(), 100);
    await assert.rejects(call, isCode(Code.Canceled));
    await waitFor(() => fixture.cancelled.length === 1);
  });

  it("reports a call cut short by the inbound deadline as DeadlineExceeded, not Cancelled", async () => {
    // The inbound deadline can fire just before the upstream's own DeadlineExceeded arrives (a busy
    // event loop): the outbound call is then cancelled by us, and must still say why.
    const controller = new AbortController();
    const call = usersClient.getUser({ id: "slow-5000" }, { signal: controller.signal });
    setTimeout(() => controller.abort(new ConnectError("the operation timed out", Code.DeadlineExceeded)), 50);
    await assert.rejects(call, isCode(Code.DeadlineExceeded));
  });

  it("fails fast without sending when the inbound budget is spent", async () => {
    const before = fixture.calls;
    // profiles gets 5 ms, less than the 10 ms margin: the users call is never sent.
    await assert.rejects(profilesClient.getProfile({ userId: "u-1" }, { timeoutMs: 5 }), isCode(Code.DeadlineExceeded));
    assert.equal(fixture.calls, before);
  });

  it("streams through a hop and stops the upstream stream when the client leaves early", async () => {
    fixture.streamsEnded.length = 0;
    const ids: string[] = [];
    for await (const { profile } of profilesClient.listProfiles({})) {
      ids.push(profile?.user?.id ?? "");
      if (ids.length === 3) break;
    }
    assert.deepEqual(ids, ["u-1", "u-2", "u-3"]);
    await waitFor(() => fixture.streamsEnded.length === 1);
    assert.ok((fixture.streamsEnded[0] ?? 99) < 10, `users yielded ${fixture.streamsEnded[0]} of 50`);
  });

  it("serves grpc.health.v1 Check on the RPC port", async () => {
    const health = createClient(Health, `localhost:${users.port}`, { pool });
    assert.equal((await health.check({ service: "" })).status, HealthCheckResponse_ServingStatus.SERVING);
    assert.equal(
      (await health.check({ service: "demo.users.v1.UserService" })).status,
      HealthCheckResponse_ServingStatus.SERVING,
    );
    await assert.rejects(health.check({ service: "nope" }), isCode(Code.NotFound));
  });

  it("answers admin probes", async () => {
    assert.equal((await fetch(`http://localhost:${users.adminPort}/healthz`)).status, 200);
    assert.equal((await fetch(`http://localhost:${users.adminPort}/readyz`)).status, 200);
    assert.equal((await fetch(`http://localhost:${users.adminPort}/nope`)).status, 404);
  });

  it("shares one upstream per target", () => {
    assert.deepEqual(
      pool
        .snapshot()
        .map((u) => u.target)
        .sort(),
      [`dns:///localhost:${profiles.port}`, `dns:///localhost:${users.port}`].sort(),
    );
    assert.equal(ada.id, "u-1");
  });
});
