import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { UserService } from "@demo/proto/demo/users/v1/users_pb";
import { BadRequestSchema } from "@demo/proto/google/rpc/error_details_pb";
import { createInMemoryClient } from "@demo/rpc-kit/testing";
import { createUserService, DEFAULT_MAX_USERS } from "./service.ts";
import { openTestUserStore, type TestUserStore } from "./testing.ts";

/** The handlers over the real store, on a fresh database of the embedded PostgreSQL. */
const opened: TestUserStore[] = [];
after(() => Promise.all(opened.map((t) => t.close())));
async function client(maxUsers?: number) {
  const t = await openTestUserStore(maxUsers === undefined ? {} : { maxUsers });
  opened.push(t);
  return createInMemoryClient(UserService, createUserService(t.store));
}

function fieldsOf(err: unknown): string[] {
  assert.ok(err instanceof ConnectError);
  return err.findDetails(BadRequestSchema).flatMap((d) => d.fieldViolations.map((v) => v.field));
}

describe("UserService", () => {
  it("starts with the seeded users u-1..u-3", async () => {
    const users = await client();
    const { user } = await users.getUser({ id: "u-1" });
    assert.equal(user?.name, "Ada Lovelace");
    assert.equal(user?.email, "ada@example.com");
    assert.equal(user?.createdAt?.seconds, BigInt(Date.parse("2024-01-01T09:00:00Z") / 1000));
    assert.equal((await users.getUser({ id: "u-3" })).user?.name, "Alan Turing");
  });

  it("answers NotFound for an unknown id and InvalidArgument for an empty one", async () => {
    const users = await client();
    await assert.rejects(
      users.getUser({ id: "u-99" }),
      (e: unknown) => e instanceof ConnectError && e.code === Code.NotFound,
    );
    await assert.rejects(users.getUser({ id: "" }), (e: unknown) => {
      assert.equal((e as ConnectError).code, Code.InvalidArgument);
      assert.deepEqual(fieldsOf(e), ["id"]);
      return true;
    });
  });

  it("creates users with the next id, trimmed name and creation time", async () => {
    const users = await client();
    const before = Date.now() - 60_000;
    const { user } = await users.createUser({ name: "  Barbara Liskov ", email: "barbara@example.com" });
    assert.equal(user?.id, "u-4");
    assert.equal(user?.name, "Barbara Liskov");
    assert.ok(Number(user?.createdAt?.seconds) * 1000 >= before);
    assert.equal((await users.getUser({ id: "u-4" })).user?.email, "barbara@example.com");
  });

  it("refuses a taken email, whatever its case, with AlreadyExists that does not echo it", async () => {
    const users = await client();
    await assert.rejects(users.createUser({ name: "Ada", email: "ADA@example.com" }), (e: unknown) => {
      assert.equal((e as ConnectError).code, Code.AlreadyExists);
      assert.doesNotMatch((e as Error).message, /example\.com/i);
      return true;
    });
  });

  it("names every bad field in InvalidArgument, without echoing values", async () => {
    const users = await client();
    for (const [input, fields] of [
      [{ name: "", email: "x@example.com" }, ["name"]],
      [{ name: "X", email: "not-an-email" }, ["email"]],
      [{ name: "X", email: "x@b" }, ["email"]],
      [{ name: " ", email: "" }, ["name", "email"]],
      [{ name: "x".repeat(101), email: `${"a".repeat(250)}@b.io` }, ["name", "email"]],
    ] as const) {
      await assert.rejects(users.createUser(input), (e: unknown) => {
        assert.equal((e as ConnectError).code, Code.InvalidArgument, JSON.stringify(input));
        assert.deepEqual(fieldsOf(e), fields);
        assert.doesNotMatch((e as Error).message, /not-an-email|x@b/);
        return true;
      });
    }
  });

  it("streams every user in id order, new ones included", async () => {
    const users = await client();
    await users.createUser({ name: "Barbara Liskov", email: "barbara@example.com" });
    const ids: string[] = [];
    for await (const { user } of users.listUsers({})) ids.push(user?.id ?? "");
    assert.deepEqual(ids, ["u-1", "u-2", "u-3", "u-4"]);
  });

  it("refuses CreateUser once the store holds MAX_USERS users, with ResourceExhausted, and keeps serving the others", async () => {
    const users = await client(5);
    await users.createUser({ name: "Barbara Liskov", email: "barbara@example.com" });
    await users.createUser({ name: "Edsger Dijkstra", email: "edsger@example.com" });
    for (const email of ["ken@example.com", "dennis@example.com"]) {
      await assert.rejects(users.createUser({ name: "Ken", email }), (e: unknown) => {
        assert.equal((e as ConnectError).code, Code.ResourceExhausted);
        assert.equal((e as ConnectError).rawMessage, "the user store is full");
        return true;
      });
    }
    const ids: string[] = [];
    for await (const { user } of users.listUsers({})) ids.push(user?.id ?? "");
    assert.deepEqual(ids, ["u-1", "u-2", "u-3", "u-4", "u-5"], "nothing added past the bound");
    assert.equal((await users.getUser({ id: "u-5" })).user?.name, "Edsger Dijkstra");
    await assert.rejects(
      users.createUser({ name: "Ada", email: "ada@example.com" }),
      (e: unknown) => (e as ConnectError).code === Code.AlreadyExists,
      "a taken email is still AlreadyExists",
    );
  });

  it("holds 10,000 users unless told otherwise", async () => {
    assert.equal(DEFAULT_MAX_USERS, 10_000);
    const t = await openTestUserStore();
    opened.push(t);
    assert.equal(t.store.maxUsers, 10_000);
  });
});
