import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { UserService } from "@demo/proto/demo/users/v1/users_pb";
import { createInMemoryClient } from "./index.ts";

describe("createInMemoryClient", () => {
  it("serves the methods a test scripts, and answers Unimplemented for the rest", async () => {
    const users = createInMemoryClient(UserService, {
      async getUser(req) {
        if (req.id !== "u-1") throw new ConnectError(`user ${req.id} not found`, Code.NotFound);
        return { user: { id: "u-1", name: "Ada Lovelace" } };
      },
    });
    assert.equal((await users.getUser({ id: "u-1" })).user?.name, "Ada Lovelace");
    await assert.rejects(users.getUser({ id: "u-2" }), (e: unknown) => {
      assert.ok(e instanceof ConnectError && e.code === Code.NotFound, String(e));
      assert.equal(e.rawMessage, "user u-2 not found");
      return true;
    });
    await assert.rejects(users.createUser({ name: "x", email: "x@example.com" }), (e: unknown) => {
      assert.ok(e instanceof ConnectError && e.code === Code.Unimplemented, String(e));
      return true;
    });
  });
});
