import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { ProfileService } from "@demo/proto/demo/profiles/v1/profiles_pb";
import { UserService } from "@demo/proto/demo/users/v1/users_pb";
import { Health } from "@demo/proto/health/v1/health_pb";
import { createClient } from "../client/client.ts";
import { UpstreamPool } from "../client/upstream-pool.ts";
import { type RunningServer, serve } from "../serve.ts";
import { service } from "../server/service-registration.ts";
import { captureLogger, freePort, testServerSettings } from "../testing/index.ts";
import { upstreamServiceName } from "./hop-timing.ts";
import { parseServerTiming, SERVER_TIMING, SERVER_TIMING_REQUEST } from "./server-timing.ts";

describe("hop timings", () => {
  it("names an upstream after its proto package's service, never its address", () => {
    assert.equal(upstreamServiceName(UserService), "users");
    assert.equal(upstreamServiceName(ProfileService), "profiles");
    assert.equal(upstreamServiceName(Health), "health");
  });

  describe("an upstream that never answers", () => {
    const pool = new UpstreamPool();
    const callers = new UpstreamPool();
    let profiles: RunningServer;
    let client: ReturnType<typeof createClient<typeof ProfileService>>;
    let usersPort: number;

    before(async () => {
      usersPort = await freePort();
      // Nothing listens there: the call to users gets no reply, so profiles times that hop itself.
      const users = createClient(UserService, `localhost:${usersPort}`, { pool, timeoutMs: 500 });
      const impl: ServiceImpl<typeof ProfileService> = {
        async getProfile(req) {
          const { user } = await users.getUser({ id: req.userId });
          return { profile: { user } };
        },
        createProfile() {
          throw new ConnectError("no", Code.Unimplemented);
        },
        async *listProfiles() {},
      };
      profiles = await serve({
        name: "profiles",
        settings: testServerSettings({ serverTiming: true }),
        logger: captureLogger("profiles").logger,
        services: [service(ProfileService, impl)],
        ownsProcess: false,
        pool,
      });
      client = createClient(ProfileService, `localhost:${profiles.port}`, { pool: callers });
    });

    after(async () => {
      await profiles.shutdown();
      pool.close();
      callers.close();
    });

    it("is named in the server-timing answer by its service, with no host or port", async () => {
      const err = await client
        .getProfile({ userId: "u-1" }, { headers: { [SERVER_TIMING_REQUEST]: "on" } })
        .catch((e: unknown) => ConnectError.from(e));
      assert.ok(err instanceof ConnectError);
      const value = err.metadata.get(SERVER_TIMING) ?? "";
      const hops = parseServerTiming(value).hops;
      assert.deepEqual(
        hops.map((h) => [h.service, h.byCaller]),
        [
          ["profiles", false],
          ["users", true],
        ],
      );
      assert.ok(!value.includes("localhost") && !value.includes(String(usersPort)), value);
    });
  });
});
