import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { createProfileService } from "@demo/profiles";
import { GatewayService } from "@demo/proto/demo/gateway/v1/gateway_pb";
import { ProfileService } from "@demo/proto/demo/profiles/v1/profiles_pb";
import { UserService } from "@demo/proto/demo/users/v1/users_pb";
import { BadRequestSchema } from "@demo/proto/google/rpc/error_details_pb";
import { service as registration, serve } from "@demo/rpc-kit";
import { captureLogger, createInMemoryClient, testServerSettings } from "@demo/rpc-kit/testing";
import { createUserService, type UserStoreOptions } from "@demo/users";
import { openTestUserStore, type TestUserStore } from "@demo/users/testing";
import { createGatewayService } from "./service.ts";

const opened: TestUserStore[] = [];
after(() => Promise.all(opened.map((t) => t.close())));

/** The whole chain in memory (users on a fresh database of the embedded PostgreSQL), counting the calls that reach users. */
async function chain(options: UserStoreOptions = {}) {
  const t = await openTestUserStore(options);
  opened.push(t);
  const store = t.store;
  const counted = { calls: 0 };
  const usersImpl = createUserService(store);
  const users = createInMemoryClient(UserService, {
    ...usersImpl,
    createUser: (req, ctx) => {
      counted.calls++;
      return usersImpl.createUser(req, ctx);
    },
  });
  const profiles = createInMemoryClient(ProfileService, createProfileService({ users }));
  return { gateway: createInMemoryClient(GatewayService, createGatewayService({ profiles })), profiles, counted };
}

function violatedFields(e: unknown): string[] {
  assert.ok(e instanceof ConnectError && e.code === Code.InvalidArgument, String(e));
  return e.findDetails(BadRequestSchema).flatMap((d) => d.fieldViolations.map((v) => v.field));
}

describe("GatewayService", () => {
  it("returns a profile", async () => {
    const { profile } = await (await chain()).gateway.getProfile({ userId: "u-1" });
    assert.equal(profile?.displayName, "Ada L.");
  });

  it("rejects malformed ids at the edge, and keeps NotFound for unknown ones", async () => {
    const { gateway } = await chain();
    for (const userId of ["", "u 1", "../etc", "x".repeat(65)]) {
      await assert.rejects(gateway.getProfile({ userId }), (e: unknown) => {
        assert.deepEqual(violatedFields(e), ["user_id"]);
        return true;
      });
    }
    await assert.rejects(
      gateway.getProfile({ userId: "nobody" }),
      (e: unknown) => (e as ConnectError).code === Code.NotFound,
    );
  });

  it("rejects plainly bad input at the edge without calling users", async () => {
    const { gateway, counted } = await chain();
    await assert.rejects(gateway.createUser({ name: "", email: "not-an-email" }), (e: unknown) => {
      assert.deepEqual(violatedFields(e), ["name", "email"]);
      return true;
    });
    assert.equal(counted.calls, 0);
  });

  it("relays the owner's field error for input the edge let through", async () => {
    const { gateway, counted } = await chain();
    await assert.rejects(gateway.createUser({ name: "X", email: "x@b" }), (e: unknown) => {
      assert.deepEqual(violatedFields(e), ["email"]);
      return true;
    });
    assert.equal(counted.calls, 1);
  });

  it("creates a user and answers AlreadyExists for a taken email", async () => {
    const { gateway } = await chain();
    const { user } = await gateway.createUser({ name: "Barbara Liskov", email: "barbara@example.com" });
    assert.equal(user?.id, "u-4");
    await assert.rejects(
      gateway.createUser({ name: "B", email: "barbara@example.com" }),
      (e: unknown) => (e as ConnectError).code === Code.AlreadyExists,
    );
  });

  it("passes on a full user store as ResourceExhausted: HTTP 429, resource_exhausted, for a Connect caller", async () => {
    const { gateway, profiles } = await chain({ maxUsers: 3 });
    await assert.rejects(gateway.createUser({ name: "Barbara Liskov", email: "barbara@example.com" }), (e: unknown) => {
      assert.equal((e as ConnectError).code, Code.ResourceExhausted, String(e));
      assert.equal((e as ConnectError).rawMessage, "the user store is full");
      return true;
    });
    // The same over HTTP, as a Connect JSON caller sees it.
    const server = await serve({
      name: "gateway",
      engine: "connect",
      settings: testServerSettings(),
      logger: captureLogger("gateway").logger,
      services: [registration(GatewayService, createGatewayService({ profiles }))],
      ownsProcess: false,
    });
    try {
      const res = await fetch(`http://localhost:${server.port}/demo.gateway.v1.GatewayService/CreateUser`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ name: "Barbara Liskov", email: "barbara@example.com" }),
      });
      assert.equal(res.status, 429);
      assert.deepEqual(await res.json(), { code: "resource_exhausted", message: "the user store is full" });
    } finally {
      await server.shutdown();
    }
  });

  it("streams every profile", async () => {
    const ids: string[] = [];
    for await (const { profile } of (await chain()).gateway.listProfiles({})) ids.push(profile?.user?.id ?? "");
    assert.deepEqual(ids, ["u-1", "u-2", "u-3"]);
  });
});
