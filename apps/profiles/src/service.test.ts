import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { ProfileService } from "@demo/proto/demo/profiles/v1/profiles_pb";
import { UserService } from "@demo/proto/demo/users/v1/users_pb";
import { BadRequestSchema } from "@demo/proto/google/rpc/error_details_pb";
import { createInMemoryClient } from "@demo/rpc-kit/testing";
import { createUserService } from "@demo/users";
import { openTestUserStore, type TestUserStore } from "@demo/users/testing";
import { createProfileService } from "./service.ts";

/** users' real handlers and store, on a fresh database of the embedded PostgreSQL. */
const opened: TestUserStore[] = [];
after(() => Promise.all(opened.map((t) => t.close())));
async function usersClient(maxUsers?: number) {
  const t = await openTestUserStore(maxUsers === undefined ? {} : { maxUsers });
  opened.push(t);
  return createInMemoryClient(UserService, createUserService(t.store));
}

/** Profiles over the real users handlers, in memory. */
async function client() {
  return createInMemoryClient(ProfileService, createProfileService({ users: await usersClient() }));
}

const codeIs = (code: Code) => (e: unknown) => e instanceof ConnectError && e.code === code;

describe("ProfileService", () => {
  it("composes a profile from the user", async () => {
    const { profile } = await (await client()).getProfile({ userId: "u-2" });
    assert.equal(profile?.user?.name, "Grace Hopper");
    assert.equal(profile?.displayName, "Grace H.");
    assert.equal(profile?.initials, "GH");
  });

  it("keeps the owner's NotFound", async () => {
    await assert.rejects((await client()).getProfile({ userId: "u-42" }), (e: unknown) => {
      assert.ok(codeIs(Code.NotFound)(e));
      assert.equal((e as ConnectError).rawMessage, "user u-42 not found");
      return true;
    });
  });

  it("checks its own field before calling users", async () => {
    await assert.rejects((await client()).getProfile({ userId: "" }), (e: unknown) => {
      assert.ok(codeIs(Code.InvalidArgument)(e));
      assert.equal((e as ConnectError).findDetails(BadRequestSchema)[0]?.fieldViolations[0]?.field, "user_id");
      return true;
    });
  });

  it("creates a user and relays the owner's verdict on the caller's fields", async () => {
    const profiles = await client();
    const { profile } = await profiles.createProfile({ name: "Barbara Liskov", email: "barbara@example.com" });
    assert.equal(profile?.user?.id, "u-4");
    assert.equal(profile?.initials, "BL");
    await assert.rejects(
      profiles.createProfile({ name: "B", email: "barbara@example.com" }),
      codeIs(Code.AlreadyExists),
    );
    await assert.rejects(profiles.createProfile({ name: "B", email: "x@b" }), (e: unknown) => {
      assert.ok(codeIs(Code.InvalidArgument)(e));
      assert.equal((e as ConnectError).findDetails(BadRequestSchema)[0]?.fieldViolations[0]?.field, "email");
      return true;
    });
  });

  it("passes on users' ResourceExhausted for a full store, not Unavailable", async () => {
    const users = await usersClient(3);
    const profiles = createInMemoryClient(ProfileService, createProfileService({ users }));
    await assert.rejects(profiles.createProfile({ name: "Barbara Liskov", email: "barbara@example.com" }), (e) => {
      assert.ok(codeIs(Code.ResourceExhausted)(e), String(e));
      assert.equal((e as ConnectError).rawMessage, "the user store is full");
      return true;
    });
  });

  it("streams a profile per user, in order", async () => {
    const names: string[] = [];
    for await (const { profile } of (await client()).listProfiles({})) names.push(profile?.displayName ?? "");
    assert.deepEqual(names, ["Ada L.", "Grace H.", "Alan T."]);
  });
});

describe("profileOf", () => {
  it("handles one-word and padded names", async () => {
    const users = await usersClient();
    const profiles = createInMemoryClient(ProfileService, createProfileService({ users }));
    const { user } = await users.createUser({ name: "Plato", email: "plato@example.com" });
    const { profile } = await profiles.getProfile({ userId: user?.id ?? "" });
    assert.equal(profile?.displayName, "Plato");
    assert.equal(profile?.initials, "P");
  });
});
