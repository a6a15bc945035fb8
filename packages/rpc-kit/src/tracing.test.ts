import assert from "node:assert/strict";
import * as http2 from "node:http2";
import type * as net from "node:net";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { UserService } from "@demo/proto/demo/users/v1/users_pb";
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace";
import { createClient } from "./client.ts";
import { metricsRegistry } from "./metrics.ts";
import { shutdownTelemetry, startTelemetry } from "./telemetry.ts";
import { UpstreamPool } from "./upstream-pool.ts";

describe("retries, as the operator sees them", () => {
  const exporter = new InMemorySpanExporter();
  let server: http2.Http2Server;
  let port: number;

  before(async () => {
    startTelemetry({
      serviceName: "test",
      otlpEndpoint: undefined,
      otlpTracesEndpoint: undefined,
      spanProcessors: [new SimpleSpanProcessor({ exporter })],
    });
    // Accepts each call, then drops the connection before answering.
    server = http2.createServer();
    server.on("stream", (stream) => {
      stream.on("data", () => undefined);
      stream.on("end", () => stream.session?.destroy());
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    port = (server.address() as net.AddressInfo).port;
  });
  after(async () => {
    server.close();
    await shutdownTelemetry();
  });

  it("records each retry as an event on the client span and in rpc_kit_client_retries_total", async () => {
    const pool = new UpstreamPool();
    const target = `static:///127.0.0.1:${port}`;
    try {
      const client = createClient(UserService, target, { pool });
      await assert.rejects(
        client.getUser({ id: "u-1" }),
        (e: unknown) => e instanceof ConnectError && e.code === Code.Unavailable,
      );
    } finally {
      pool.close();
    }
    const span = exporter.getFinishedSpans().find((s) => s.name === "demo.users.v1.UserService/GetUser");
    assert.ok(span, "a client span");
    const retries = span.events.filter((e) => e.name === "retry");
    assert.deepEqual(
      retries.map((e) => e.attributes?.["rpc.retry.attempt"]),
      [2, 3],
    );
    assert.equal(span.attributes["rpc.status_code"], "UNAVAILABLE");
    const metric = (await metricsRegistry.getSingleMetric("rpc_kit_client_retries_total")?.get())?.values.find(
      (v) => v.labels.target === target,
    );
    assert.equal(metric?.value, 2);
    assert.equal(metric?.labels.grpc_code, "Unavailable");
  });
});
