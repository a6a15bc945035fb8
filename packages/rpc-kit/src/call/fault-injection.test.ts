import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { UserService } from "@demo/proto/demo/users/v1/users_pb";
import { createClient } from "../client/client.ts";
import { UpstreamPool } from "../client/upstream-pool.ts";
import type { RunningServer } from "../serve.ts";
import { serveUsers } from "../test-support/users.ts";

describe("fault injection (FAULT_INJECTION=on)", () => {
  let users: RunningServer;
  const pool = new UpstreamPool();
  let client: ReturnType<typeof createClient<typeof UserService>>;
  before(async () => {
    users = await serveUsers({ settings: { faultInjection: true } });
    client = createClient(UserService, `127.0.0.1:${users.port}`, { pool, retry: { maxAttempts: 1 } });
  });
  after(async () => {
    pool.close();
    await users.shutdown();
  });

  const call = (headers: Record<string, string>) => client.getUser({ id: "u-1" }, { headers });
  const codeOf = async (p: Promise<unknown>) => {
    try {
      await p;
      return "ok";
    } catch (err) {
      return Code[ConnectError.from(err).code];
    }
  };

  it("answers with the code named in x-fault-code when the fault targets this service", async () => {
    assert.equal(await codeOf(call({ "x-fault-code": "unavailable", "x-fault-target": "users" })), "Unavailable");
    assert.equal(
      await codeOf(call({ "x-fault-code": "resource_exhausted", "x-fault-target": "users" })),
      "ResourceExhausted",
    );
    assert.equal(await codeOf(call({ "x-fault-code": "unavailable", "x-fault-target": "profiles" })), "ok");
  });

  it("holds the call x-fault-delay-ms first, then answers with the code", async () => {
    const started = Date.now();
    const headers = { "x-fault-delay-ms": "150", "x-fault-code": "internal", "x-fault-target": "users" };
    assert.equal(await codeOf(call(headers)), "Internal");
    assert.ok(Date.now() - started >= 140);
  });

  it("refuses a code it does not know, naming the valid ones", async () => {
    await assert.rejects(call({ "x-fault-code": "teapot", "x-fault-target": "users" }), (e) => {
      const err = ConnectError.from(e);
      return (
        err.code === Code.InvalidArgument &&
        /x-fault-code must be a code name: canceled, unknown, invalid_argument/.test(err.rawMessage)
      );
    });
  });
});
