import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { context, INVALID_SPAN_CONTEXT, TraceFlags, trace } from "@opentelemetry/api";
import { NoopSpanProcessor } from "@opentelemetry/sdk-trace";
import { captureLogger } from "../testing/index.ts";
import { usesPrettyOutput } from "./logger.ts";
import { shutdownTelemetry, startTelemetry } from "./telemetry.ts";

const hasScript = spawnSync("script", ["--version"]).status === 0;

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

describe("logger: output format", () => {
  it("is pretty when asked, or on a terminal with auto; JSON otherwise", () => {
    assert.equal(usesPrettyOutput("pretty", false), true);
    assert.equal(usesPrettyOutput("auto", true), true);
    assert.equal(usesPrettyOutput("auto", false), false);
    assert.equal(usesPrettyOutput("json", true), false);
  });

  const script = `import { createLogger, flushLogger } from ${JSON.stringify(new URL("./logger.ts", import.meta.url).href)};
const logger = createLogger({ service: "users", level: "info", format: "auto" });
logger.info({ rpc_method: "GetUser", duration_ms: 1.5 }, "GetUser ok");
await flushLogger(logger);`;

  it("writes JSON lines under LOG_FORMAT=auto when stdout is a pipe", () => {
    const out = execFileSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" });
    const line = JSON.parse(out.trim()) as Record<string, unknown>;
    assert.deepEqual([line.service, line.msg, line.level], ["users", "GetUser ok", "info"]);
  });

  it("writes pretty lines under LOG_FORMAT=auto on a terminal", {
    skip: !hasScript && "util-linux script(1) is not installed",
  }, () => {
    // script(1) runs the command on a pseudo-terminal, as a developer's shell would.
    const command = [process.execPath, "--input-type=module", "-e", script]
      .map((a) => `'${a.replaceAll("'", "'\\''")}'`)
      .join(" ");
    const out = execFileSync("script", ["-qec", command, "/dev/null"], { encoding: "utf8" });
    assert.match(out, /users {4}\| GetUser ok \(1\.5 ms\)/);
    assert.doesNotMatch(out, /"msg"/);
  });
});
