import assert from "node:assert/strict";
import * as http2 from "node:http2";
import type * as net from "node:net";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { UserService } from "@demo/proto/demo/users/v1/users_pb";
import { SpanKind } from "@opentelemetry/api";
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from "@opentelemetry/sdk-trace";
import { createClient } from "../client/client.ts";
import { UpstreamPool } from "../client/upstream-pool.ts";
import { serverAddressOf } from "../config/target.ts";
import { type RunningServer, serve } from "../serve.ts";
import { service } from "../server/service-registration.ts";
import { ada, userFixture } from "../test-support/users.ts";
import { captureLogger, testServerSettings, waitFor } from "../testing/index.ts";
import { metricsRegistry } from "./metrics.ts";
import { shutdownTelemetry, startTelemetry } from "./telemetry.ts";

const exporter = new InMemorySpanExporter();
/** Servers started by the tests; shut down last, since a server's shutdown also stops telemetry. */
const running: RunningServer[] = [];
const pool = new UpstreamPool();

before(() => {
  startTelemetry({
    serviceName: "test",
    otlpEndpoint: undefined,
    otlpTracesEndpoint: undefined,
    spanProcessors: [new SimpleSpanProcessor({ exporter })],
  });
});
after(async () => {
  pool.close();
  for (const server of running) await server.shutdown();
  await shutdownTelemetry();
});

/** ns since the epoch of a span's [seconds, nanos] time. */
const ns = ([s, n]: [number, number]) => BigInt(s) * 1_000_000_000n + BigInt(n);
/** Span times are Date.now() at start (whole ms) plus a precise duration: allow that much when comparing spans. */
const CLOCK_SLACK_NS = 1_000_000n;

describe("retries, as the operator sees them", () => {
  let server: http2.Http2Server;
  let port: number;

  before(async () => {
    // Accepts each call, then drops the connection before answering.
    server = http2.createServer();
    server.on("stream", (stream) => {
      stream.on("data", () => undefined);
      stream.on("end", () => stream.session?.destroy());
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    port = (server.address() as net.AddressInfo).port;
  });
  after(() => {
    server.close();
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
    assert.equal(span.attributes["server.address"], "127.0.0.1");
    assert.equal(span.attributes["server.port"], port);
    const metric = (await metricsRegistry.getSingleMetric("rpc_kit_client_retries_total")?.get())?.values.find(
      (v) => v.labels.target === target,
    );
    assert.equal(metric?.value, 2);
    assert.equal(metric?.labels.grpc_code, "Unavailable");
  });
});

describe("serverAddressOf", () => {
  it("names the host and port of a DNS target", () => {
    assert.deepEqual(serverAddressOf("dns:///users:50051"), { address: "users", port: 50051 });
    assert.deepEqual(serverAddressOf("users.default.svc:50051"), { address: "users.default.svc", port: 50051 });
  });

  it("names the first endpoint of a static list, IPv6 without brackets", () => {
    assert.deepEqual(serverAddressOf("static:///10.0.0.1:50051,10.0.0.2:50052"), { address: "10.0.0.1", port: 50051 });
    assert.deepEqual(serverAddressOf("static:///[fd00::1]:50051,[fd00::2]:50051"), { address: "fd00::1", port: 50051 });
  });
});

describe("streams: spans and the per-RPC log line", () => {
  /**
   * ListUsers as a handler that never looks at its signal streams it: 50
   * users, 10 ms apart. When the caller cancels, the engine stops reading and
   * ends the stream from outside (the iterator's `return()`).
   */
  const deafToCancel: ServiceImpl<typeof UserService> = {
    ...userFixture().impl,
    async *listUsers() {
      for (let n = 1; n <= 50; n++) {
        yield { user: { ...ada, id: `u-${n}` } };
        await sleep(10);
      }
    },
  };

  for (const engine of ["grpc", "connect"] as const) {
    /** A users server on `engine`, its log lines, and a client for it. */
    async function start(impl = deafToCancel) {
      const log = captureLogger("users");
      const server = await serve({
        name: "users",
        engine,
        settings: testServerSettings(),
        logger: log.logger,
        services: [service(UserService, impl)],
        ownsProcess: false,
        pool: new UpstreamPool(),
      });
      running.push(server);
      const target = `static:///127.0.0.1:${server.port}`;
      return { log, target, client: createClient(UserService, target, { pool }) };
    }

    /** The client span of ListUsers at `target`, and the server span of the same trace. */
    async function spansOf(target: string): Promise<{ client: ReadableSpan; server: ReadableSpan }> {
      const port = Number(target.slice(target.lastIndexOf(":") + 1));
      let found: { client: ReadableSpan; server: ReadableSpan } | undefined;
      await waitFor(() => {
        const spans = exporter.getFinishedSpans().filter((s) => s.name === "demo.users.v1.UserService/ListUsers");
        const client = spans.find((s) => s.kind === SpanKind.CLIENT && s.attributes["server.port"] === port);
        const server = spans.find(
          (s) => s.kind === SpanKind.SERVER && s.spanContext().traceId === client?.spanContext().traceId,
        );
        found = client && server ? { client, server } : undefined;
        return found !== undefined;
      });
      return found as { client: ReadableSpan; server: ReadableSpan };
    }

    it(`${engine}: the client and server spans of a stream end after its last message`, async () => {
      const { client, target } = await start();
      let received = 0;
      for await (const _ of client.listUsers({})) received++;
      assert.equal(received, 50);
      const spans = await spansOf(target);
      const serverStart = ns(spans.server.startTime);
      const serverEnd = ns(spans.server.endTime);
      const clientEnd = ns(spans.client.endTime);
      // 50 messages 10 ms apart: a span ended when the headers came, or the handler returned, lasts a few ms.
      assert.ok(serverEnd - serverStart >= 400_000_000n, "the server span lasts the whole stream");
      assert.ok(clientEnd + CLOCK_SLACK_NS >= serverEnd, "the client span ends after the server's");
      assert.equal(spans.server.parentSpanContext?.spanId, spans.client.spanContext().spanId);
      assert.equal(spans.client.attributes["rpc.status_code"], "OK");
      assert.equal(spans.server.attributes["rpc.status_code"], "OK");
    });

    it(`${engine}: a stream its client cancels is logged with the call's trace and span ids`, async () => {
      const { client, target, log } = await start();
      let received = 0;
      for await (const _ of client.listUsers({})) {
        if (++received === 2) break;
      }
      const spans = await spansOf(target);
      let line: Record<string, unknown> | undefined;
      await waitFor(() => {
        line = log.lines.find((l) => l.rpc_method === "ListUsers");
        return line !== undefined;
      });
      assert.equal(line?.rpc_code, "canceled");
      assert.equal(line?.trace_id, spans.server.spanContext().traceId, "the log line carries the trace id");
      assert.equal(line?.span_id, spans.server.spanContext().spanId, "and the server span's id");
      assert.equal(spans.server.attributes["rpc.status_code"], "CANCELLED");
      assert.equal(spans.client.attributes["rpc.status_code"], "CANCELLED");
    });
  }
});
