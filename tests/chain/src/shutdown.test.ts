import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { GatewayService } from "@demo/proto/demo/gateway/v1/gateway_pb";
import { startChain, startService } from "./processes.ts";

describe("SIGTERM to profiles during a burst of calls", () => {
  it("loses none of the calls profiles had accepted", async () => {
    const chain = await startChain({
      all: { FAULT_INJECTION: "on" },
      profiles: { SHUTDOWN_DRAIN_DELAY_MS: "200" },
    });
    try {
      const client = createClient(GatewayService, createGrpcTransport({ baseUrl: chain.baseUrl }));
      // Each call spends 100 ms in users, so that many are in flight in profiles when the signal lands.
      const headers = { "x-fault-delay-ms": "100", "x-fault-target": "users" };
      const outcomes: (Code | "ok")[] = [];
      let sent = 0;
      const burst = Promise.all(
        Array.from({ length: 30 }, async () => {
          while (sent < 600) {
            sent++;
            try {
              await client.getProfile({ userId: "u-1" }, { headers, timeoutMs: 5_000 });
              outcomes.push("ok");
            } catch (err) {
              outcomes.push(ConnectError.from(err).code);
            }
          }
        }),
      );
      await new Promise((r) => setTimeout(r, 400));
      const accepted = chain.profiles.lines.filter((l) => l.rpc_method === "GetProfile").length;
      const exit = chain.profiles.stop("SIGTERM");
      await burst;
      assert.deepEqual(await exit, { code: 0, signal: null });

      // Every call profiles took in finished OK, the ones in flight at SIGTERM included.
      const served = chain.profiles.lines.filter((l) => l.rpc_method === "GetProfile");
      assert.ok(served.length > accepted, `profiles kept serving while draining (${accepted} → ${served.length})`);
      assert.deepEqual(
        served.filter((l) => l.rpc_code !== "ok").map((l) => l.rpc_code),
        [],
        "calls profiles accepted but did not complete",
      );
      const ok = outcomes.filter((o) => o === "ok").length;
      assert.equal(ok, served.length, "every call profiles completed reached the caller");
      // What profiles never accepted fails as Unavailable: safe for the caller to retry elsewhere.
      assert.deepEqual(
        [...new Set(outcomes.filter((o) => o !== "ok"))],
        outcomes.length > ok ? [Code.Unavailable] : [],
      );
      assert.ok(chain.profiles.lines.some((l) => l.msg === "profiles stopped"));
    } finally {
      await chain.stop();
    }
  });
});

describe("a second signal", () => {
  it("ends the process at once, without waiting for the drain", async () => {
    const users = await startService("users", { SHUTDOWN_DRAIN_DELAY_MS: "30000" });
    users.stop("SIGTERM");
    const deadline = Date.now() + 5_000;
    while (!users.lines.some((l) => l.msg === "users shutting down")) {
      assert.ok(Date.now() < deadline, "began shutting down");
      await new Promise((r) => setTimeout(r, 10));
    }
    const started = Date.now();
    const exit = await users.stop("SIGTERM");
    assert.ok(Date.now() - started < 1_000, `exited after ${Date.now() - started} ms`);
    assert.equal(exit.code, 1);
    assert.ok(users.lines.some((l) => l.msg === "second signal: exiting now"));
  });
});
