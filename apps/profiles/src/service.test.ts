import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { ProfileService } from "@demo/proto/demo/profiles/v1/profiles_pb";
import { UserService } from "@demo/proto/demo/users/v1/users_pb";
import { BadRequestSchema } from "@demo/proto/google/rpc/error_details_pb";
import { createInMemoryClient } from "@demo/rpc-kit/testing";
import { createUserService, UserStore } from "@demo/users";
import { createProfileService } from "./service.ts";

/** Profiles over the real users handlers, in memory. */
function client() {
  const users = createInMemoryClient(UserService, createUserService(new UserStore()));
  return createInMemoryClient(ProfileService, createProfileService({ users }));
}

const codeIs = (code: Code) => (e: unknown) => e instanceof ConnectError && e.code === code;

describe("ProfileService", () => {
  it("composes a profile from the user", async () => {
    const { profile } = await client().getProfile({ userId: "u-2" });
    assert.equal(profile?.user?.name, "Grace Hopper");
    assert.equal(profile?.displayName, "Grace H.");
    assert.equal(profile?.initials, "GH");
  });

  it("keeps the owner's NotFound", async () => {
    await assert.rejects(client().getProfile({ userId: "u-42" }), (e: unknown) => {
      assert.ok(codeIs(Code.NotFound)(e));
      assert.equal((e as ConnectError).rawMessage, "user u-42 not found");
      return true;
    });
  });

  it("checks its own field before calling users", async () => {
    await assert.rejects(client().getProfile({ userId: "" }), (e: unknown) => {
      assert.ok(codeIs(Code.InvalidArgument)(e));
      assert.equal((e as ConnectError).findDetails(BadRequestSchema)[0]?.fieldViolations[0]?.field, "user_id");
      return true;
    });
  });

  it("creates a user and relays the owner's verdict on the caller's fields", async () => {
    const profiles = client();
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
    const users = createInMemoryClient(UserService, createUserService(new UserStore({ maxUsers: 3 })));
    const profiles = createInMemoryClient(ProfileService, createProfileService({ users }));
    await assert.rejects(profiles.createProfile({ name: "Barbara Liskov", email: "barbara@example.com" }), (e) => {
      assert.ok(codeIs(Code.ResourceExhausted)(e), String(e));
      assert.equal((e as ConnectError).rawMessage, "the user store is full");
      return true;
    });
  });

  it("streams a profile per user, in order", async () => {
    const names: string[] = [];
    for await (const { profile } of client().listProfiles({})) names.push(profile?.displayName ?? "");
    assert.deepEqual(names, ["Ada L.", "Grace H.", "Alan T."]);
  });
});

describe("profileOf", () => {
  it("handles one-word and padded names", async () => {
    const users = createInMemoryClient(UserService, createUserService(new UserStore({ seed: [] })));
    const profiles = createInMemoryClient(ProfileService, createProfileService({ users }));
    await users.createUser({ name: "Plato", email: "plato@example.com" });
    const { profile } = await profiles.getProfile({ userId: "u-1" });
    assert.equal(profile?.displayName, "Plato");
    assert.equal(profile?.initials, "P");
  });
});
