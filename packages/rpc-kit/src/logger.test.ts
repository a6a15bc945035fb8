import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { context, INVALID_SPAN_CONTEXT, TraceFlags, trace } from "@opentelemetry/api";
import { NoopSpanProcessor } from "@opentelemetry/sdk-trace";
import { shutdownTelemetry, startTelemetry } from "./telemetry.ts";
import { captureLogger } from "./testing/index.ts";

describe("logger: trace ids", () => {
  // The SDK's context manager, so that context.with() makes a span current.
  before(() =>
    startTelemetry({
      serviceName: "test",
      otlpEndpoint: undefined,
      otlpTracesEndpoint: undefined,
      spanProcessors: [new NoopSpanProcessor()],
    }),
  );
  after(() => shutdownTelemetry());

  const spanContext = {
    traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
    spanId: "00f067aa0ba902b7",
    traceFlags: TraceFlags.SAMPLED,
  };

  it("puts the current span's trace_id and span_id on every line written while it is current", async () => {
    const { logger, lines } = captureLogger("test");
    const ctx = trace.setSpanContext(context.active(), spanContext);
    await context.with(ctx, async () => {
      logger.info("before an await");
      await new Promise((r) => setImmediate(r));
      logger.child({ rpc_method: "GetUser" }).info({ user_id: "u-1" }, "a handler's line");
    });
    assert.equal(lines.length, 2);
    for (const line of lines) {
      assert.equal(line.trace_id, spanContext.traceId);
      assert.equal(line.span_id, spanContext.spanId);
    }
  });

  it("writes no ids outside a span, nor zeros for the invalid span", () => {
    const { logger, lines } = captureLogger("test");
    logger.info("outside");
    context.with(trace.setSpanContext(context.active(), INVALID_SPAN_CONTEXT), () => logger.info("invalid span"));
    assert.equal(lines.length, 2);
    for (const line of lines) {
      assert.ok(!("trace_id" in line), `${String(line.msg)}: no trace_id`);
      assert.ok(!("span_id" in line), `${String(line.msg)}: no span_id`);
    }
  });
});
