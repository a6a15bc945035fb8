import assert from "node:assert/strict";
import * as http2 from "node:http2";
import { after, before, describe, it } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { GetUserRequestSchema, UserService } from "@demo/proto/demo/users/v1/users_pb";
import { createClient } from "../client/client.ts";
import { UpstreamPool } from "../client/upstream-pool.ts";
import type { RunningServer } from "../serve.ts";
import { serveUsers, type UserFixture, userFixture } from "../test-support/users.ts";
import { captureLogger, waitFor } from "../testing/index.ts";
import { CallContext, LiveCalls } from "./call-context.ts";

function timers(): number {
  return process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
}

for (const engine of ["grpc", "connect"] as const) {
  describe(`the call's record on the ${engine} engine${engine === "connect" ? " (gRPC fast path)" : ""}`, () => {
    const pool = new UpstreamPool();
    const log = captureLogger("users");
    let fixture: UserFixture;
    let server: RunningServer;
    let client: ReturnType<typeof createClient<typeof UserService>>;

    before(async () => {
      fixture = userFixture();
      server = await serveUsers({ engine, impl: fixture.impl, logger: log.logger });
      client = createClient(UserService, `localhost:${server.port}`, { pool });
    });

    after(async () => {
      await server.shutdown();
      pool.close();
    });

    // A raw HTTP/2 client that never resets its stream: only the server's own deadline can end the call
    // (a grpc-js client would cancel at its deadline, racing the server's timer).
    it("ends a handler still running at its deadline with DeadlineExceeded, and logs it so", async () => {
      fixture.cancelled.length = 0;
      const session = http2.connect(`http://127.0.0.1:${server.port}`);
      try {
        const body = toBinary(GetUserRequestSchema, create(GetUserRequestSchema, { id: "slow-5000" }));
        const frame = Buffer.concat([Buffer.from([0, 0, 0, 0, body.length]), body]);
        const stream = session.request({
          ":method": "POST",
          ":path": "/demo.users.v1.UserService/GetUser",
          "content-type": "application/grpc",
          te: "trailers",
          "grpc-timeout": "100m",
        });
        stream.end(frame);
        const status = await new Promise<string | undefined>((resolve) => {
          let found: string | undefined;
          const take = (h: http2.IncomingHttpHeaders) => {
            found ??= h["grpc-status"] as string | undefined;
          };
          stream.on("response", take);
          stream.on("trailers", take);
          stream.on("close", () => resolve(found));
          stream.resume();
        });
        assert.equal(status, String(Code.DeadlineExceeded));
      } finally {
        session.close();
      }
      await waitFor(() => fixture.cancelled.length === 1);
      assert.deepEqual(fixture.cancelled, [Code.DeadlineExceeded], "the handler's signal says why");
      await waitFor(() => log.lines.some((l) => l.rpc_method === "GetUser" && l.rpc_code === "deadline_exceeded"));
    });

    it("ends a handler whose caller went away with Canceled", async () => {
      fixture.cancelled.length = 0;
      const controller = new AbortController();
      const call = client.getUser({ id: "slow-5000" }, { timeoutMs: 5_000, signal: controller.signal });
      await waitFor(() => fixture.calls > 0 && fixture.timeouts.length > 0);
      setTimeout(() => controller.abort(), 50);
      await assert.rejects(call);
      await waitFor(() => fixture.cancelled.length === 1);
      assert.deepEqual(fixture.cancelled, [Code.Canceled]);
    });

    it(`arms ${engine === "grpc" ? "no deadline timer of its own (grpc-js arms one)" : "one deadline timer per call"}`, async () => {
      fixture.cancelled.length = 0;
      const idle = timers();
      const n = 20;
      const controller = new AbortController();
      const started = fixture.calls;
      const calls = Array.from({ length: n }, () =>
        client.getUser({ id: "slow-5000" }, { timeoutMs: 5_000, signal: controller.signal }).catch(() => undefined),
      );
      await waitFor(() => fixture.calls - started === n);
      // Per call: the handler's sleep, the client's deadline (grpc-js), the server's deadline (one).
      const perCall = (timers() - idle) / n;
      controller.abort();
      await Promise.all(calls);
      await waitFor(() => fixture.cancelled.length === n);
      assert.ok(perCall < 3.5, `${perCall} timers per call in flight`);
    });
  });
}

describe("LiveCalls", () => {
  const source = {
    service: UserService,
    method: UserService.method.getUser,
    protocolName: "grpc",
    deadline: undefined,
    engineTimesOut: false,
    requestHeaders: () => new Headers(),
  };

  it("ends every call in flight with Unavailable when the shutdown signal fires, and forgets ended ones", () => {
    const shutdown = new AbortController();
    const live = new LiveCalls(shutdown.signal);
    const ended = new CallContext(source, live);
    const running = new CallContext(source, live);
    ended.abort();
    shutdown.abort();
    assert.equal(ConnectError.from(running.signal.reason).code, Code.Unavailable);
    assert.equal(ConnectError.from(ended.signal.reason).code, Code.Canceled, "an ended call keeps its own end");
  });

  it("ends a call that arrives after the shutdown signal fired at once", () => {
    const shutdown = new AbortController();
    const live = new LiveCalls(shutdown.signal);
    shutdown.abort();
    const late = new CallContext(source, live);
    assert.equal(late.signal.aborted, true);
    assert.equal(ConnectError.from(late.signal.reason).code, Code.Unavailable);
  });
});
