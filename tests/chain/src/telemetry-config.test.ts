/**
 * The OTEL_* settings an operator turns: the sampler, and switching export
 * off. Either way trace context still flows and the logs still carry it.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { until } from "@demo/rpc-kit/testing";
import { exportTo, type OtlpReceiver, startOtlpReceiver } from "./otlp-receiver.ts";
import { type Chain, type ServiceProcess, startChain } from "./processes.ts";

async function getProfile(chain: Chain, userId: string, traceparent?: string): Promise<void> {
  const res = await fetch(`${chain.baseUrl}/demo.gateway.v1.GatewayService/GetProfile`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(traceparent && { traceparent }) },
    body: JSON.stringify({ userId }),
  });
  assert.equal(res.status, 200);
}

/** The per-RPC line of each service for the call of trace `traceId` (waits for the buffered lines). */
async function linesOf(chain: Chain, traceId: string): Promise<Record<string, unknown>[]> {
  const lines: Record<string, unknown>[] = [];
  for (const [service, method] of [
    [chain.gateway, "GetProfile"],
    [chain.profiles, "GetProfile"],
    [chain.users, "GetUser"],
  ] as [ServiceProcess, string][]) {
    lines.push(
      await until(`${service.name}'s ${method} line of trace ${traceId}`, () =>
        service.lines.find((l) => l.rpc_method === method && l.trace_id === traceId),
      ),
    );
  }
  return lines;
}

/** The trace id of the gateway's first GetProfile line that is none of `known`. */
function newTraceAtGateway(chain: Chain, known: string[]): Promise<string> {
  return until("the gateway's line of a new trace", () => {
    const line = chain.gateway.lines.find(
      (l) => l.rpc_method === "GetProfile" && typeof l.trace_id === "string" && !known.includes(l.trace_id),
    );
    return line?.trace_id as string | undefined;
  });
}

const VALID_TRACE_ID = /^(?!0{32})[0-9a-f]{32}$/;

describe("OTEL_TRACES_SAMPLER=parentbased_traceidratio, OTEL_TRACES_SAMPLER_ARG=0", () => {
  let receiver: OtlpReceiver;
  let chain: Chain;
  before(async () => {
    receiver = await startOtlpReceiver();
    chain = await startChain({
      all: {
        ...exportTo(receiver, "http/json"),
        OTEL_TRACES_SAMPLER: "parentbased_traceidratio",
        OTEL_TRACES_SAMPLER_ARG: "0",
      },
    });
  });
  after(async () => {
    await chain.stop();
    await receiver.close();
  });

  it("exports no trace it starts, nor one the caller did not sample, but honours a sampled caller", async () => {
    const unsampled = "2bf92f3577b34da6a3ce929d0e0e4736";
    const sampled = "3bf92f3577b34da6a3ce929d0e0e4736";
    await getProfile(chain, "u-1");
    await getProfile(chain, "u-2", `00-${unsampled}-00f067aa0ba902b7-00`);
    await getProfile(chain, "u-3", `00-${sampled}-00f067aa0ba902b7-01`);

    const spans = await until("the sampled trace's 6 spans", () => {
      const found = receiver.spans.filter((s) => s.traceId === sampled);
      return found.length >= 6 ? found : undefined;
    });
    assert.deepEqual(spans.map((s) => s.service).sort(), [
      "gateway",
      "gateway",
      "profiles",
      "profiles",
      "users",
      "users", // its query
    ]);

    // Not exported, yet each call still has one trace id across the three services' logs.
    const root = await newTraceAtGateway(chain, [unsampled, sampled]);
    assert.match(root, VALID_TRACE_ID);
    await linesOf(chain, root);
    await linesOf(chain, unsampled);

    // Stopping flushes what each process had buffered: still only the sampled trace.
    await chain.stop();
    assert.deepEqual([...new Set(receiver.spans.map((s) => s.traceId))], [sampled]);
    assert.equal(receiver.spans.length, 6);
  });
});

describe("OTEL_TRACES_EXPORTER=none with an endpoint set", () => {
  let receiver: OtlpReceiver;
  let chain: Chain;
  before(async () => {
    receiver = await startOtlpReceiver();
    chain = await startChain({ all: { ...exportTo(receiver), OTEL_TRACES_EXPORTER: "none" } });
  });
  after(async () => {
    await chain.stop();
    await receiver.close();
  });

  it("exports nothing, but still starts traces, passes them on and logs their ids", async () => {
    await getProfile(chain, "u-1");
    const traceId = await newTraceAtGateway(chain, []);
    assert.match(traceId, VALID_TRACE_ID);
    const [gateway, profiles, users] = await linesOf(chain, traceId);
    // Each service logs its own span of the trace.
    assert.equal(new Set([gateway?.span_id, profiles?.span_id, users?.span_id]).size, 3);

    await chain.stop();
    assert.deepEqual(receiver.requests, []);
  });
});
