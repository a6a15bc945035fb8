import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { Health } from "@demo/proto/health/v1/health_pb";
import { createClient } from "../client/client.ts";
import { UpstreamPool } from "../client/upstream-pool.ts";
import type { RunningServer } from "../serve.ts";
import { serveUsers } from "../test-support/users.ts";
import { captureLogger, metricSample, waitFor } from "../testing/index.ts";

const codeOf = (err: unknown) => ConnectError.from(err).code;

for (const engine of ["grpc", "connect"] as const) {
  describe(`grpc.health.v1 Watch on the ${engine} engine`, () => {
    const pool = new UpstreamPool();
    const log = captureLogger("users");
    let server: RunningServer;
    let health: ReturnType<typeof createClient<typeof Health>>;

    before(async () => {
      server = await serveUsers({ engine, logger: log.logger });
      health = createClient(Health, `localhost:${server.port}`, { pool });
    });

    after(async () => {
      await server.shutdown();
      pool.close();
    });

    const handled = (code: string) =>
      metricSample("grpc_server_handled_total", {
        grpc_type: "server_stream",
        grpc_service: "grpc.health.v1.Health",
        grpc_method: "Watch",
        grpc_code: code,
      });
    const counts = async () => ({
      ok: await handled("OK"),
      ended: (await handled("DeadlineExceeded")) + (await handled("Canceled")),
    });
    const watchLines = (codes: readonly string[]) =>
      log.lines.filter((l) => l.rpc_method === "Watch" && codes.includes(l.rpc_code as string)).length;

    // At the deadline, the caller's RST_STREAM and the server's own timer race: either code is right, OK never.
    it("counts and logs a Watch ended by the caller's deadline as DeadlineExceeded or Canceled, never OK", async () => {
      const before = await counts();
      const endedLines = watchLines(["deadline_exceeded", "canceled"]);
      const statuses: unknown[] = [];
      await assert.rejects(
        (async () => {
          for await (const res of health.watch({ service: "" }, { timeoutMs: 200 })) statuses.push(res.status);
        })(),
        (err) => codeOf(err) === Code.DeadlineExceeded,
      );
      assert.equal(statuses.length, 1, "the current status came first");
      await waitFor(() => watchLines(["deadline_exceeded", "canceled"]) === endedLines + 1);
      assert.equal(watchLines(["ok"]), 0);
      assert.deepEqual(await counts(), { ok: before.ok, ended: before.ended + 1 });
    });

    it("counts and logs a Watch the caller cancelled as Canceled, never OK", async () => {
      const before = await counts();
      const canceledLines = watchLines(["canceled"]);
      const controller = new AbortController();
      const watching = (async () => {
        for await (const _ of health.watch({ service: "" }, { timeoutMs: 10_000, signal: controller.signal })) {
          controller.abort();
        }
      })();
      await assert.rejects(watching, (err) => codeOf(err) === Code.Canceled);
      await waitFor(() => watchLines(["canceled"]) === canceledLines + 1);
      assert.equal(watchLines(["ok"]), 0);
      assert.deepEqual(await counts(), { ok: before.ok, ended: before.ended + 1 });
    });
  });
}
