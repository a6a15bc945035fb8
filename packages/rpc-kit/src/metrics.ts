import type { DescMethod } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor, type StreamResponse } from "@connectrpc/connect";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import { allUpstreams } from "./upstream-pool.ts";

/**
 * RED metrics in Prometheus' text format, under the names and labels of
 * go-grpc-middleware (grpc-ecosystem/go-grpc-prometheus), so that existing
 * dashboards and alerts work unchanged; the same on both engines and for
 * every client; plus the Node runtime defaults and rpc-kit's own gauges.
 */

/** The process-wide registry served at the admin port's `/metrics`. */
export const metricsRegistry = new Registry();

/**
 * Handling-time buckets in seconds. go-grpc-prometheus uses Prometheus'
 * defaults (5 ms to 10 s); two finer ones are added below 5 ms, where
 * in-cluster hops live.
 */
export const HANDLING_SECONDS_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

const methodLabels = ["grpc_type", "grpc_service", "grpc_method"] as const;
const handledLabels = [...methodLabels, "grpc_code"] as const;

function sideMetrics(side: "server" | "client") {
  return {
    started: new Counter({
      name: `grpc_${side}_started_total`,
      help: `Total number of RPCs started on the ${side}.`,
      labelNames: methodLabels,
      registers: [metricsRegistry],
    }),
    handled: new Counter({
      name: `grpc_${side}_handled_total`,
      help: `Total number of RPCs completed on the ${side}, regardless of success or failure.`,
      labelNames: handledLabels,
      registers: [metricsRegistry],
    }),
    seconds: new Histogram({
      name: `grpc_${side}_handling_seconds`,
      help:
        side === "server"
          ? "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server."
          : "Histogram of response latency (seconds) of the gRPC until it is finished by the application.",
      labelNames: methodLabels,
      buckets: HANDLING_SECONDS_BUCKETS,
      registers: [metricsRegistry],
    }),
    // Response messages of streams: sent by the server, received by the client.
    streamMessages: new Counter({
      name: side === "server" ? "grpc_server_msg_sent_total" : "grpc_client_msg_received_total",
      help:
        side === "server"
          ? "Total number of gRPC stream messages sent by the server."
          : "Total number of RPC stream messages received by the client.",
      labelNames: methodLabels,
      registers: [metricsRegistry],
    }),
  };
}

const server = sideMetrics("server");
const client = sideMetrics("client");

const serverInFlight = new Gauge({
  name: "rpc_kit_server_in_flight_calls",
  help: "Calls being served right now.",
  labelNames: ["grpc_service"],
  registers: [metricsRegistry],
});
const clientInFlight = new Gauge({
  name: "rpc_kit_client_in_flight_calls",
  help: "Outbound calls in flight right now, per upstream target.",
  labelNames: ["target"],
  registers: [metricsRegistry],
});

const retries = new Counter({
  name: "rpc_kit_client_retries_total",
  help: "Retries of outbound calls, by the code of the attempt that failed.",
  labelNames: ["target", "grpc_service", "grpc_method", "grpc_code"],
  registers: [metricsRegistry],
});
const retriesThrottled = new Counter({
  name: "rpc_kit_client_retries_throttled_total",
  help: "Retries not made because the upstream's retry budget was spent.",
  labelNames: ["target"],
  registers: [metricsRegistry],
});
new Gauge({
  name: "rpc_kit_client_retry_budget_tokens",
  help: "Tokens left in each upstream's retry budget (a retry takes one).",
  labelNames: ["target"],
  registers: [metricsRegistry],
  collect() {
    this.reset();
    for (const u of allUpstreams()) this.set({ target: u.target }, u.budget.tokens);
  },
});
new Gauge({
  name: "rpc_kit_upstream_endpoints",
  help: "Endpoints of each upstream target: known (resolved), ready (connected, not ejected), ejected.",
  labelNames: ["target", "state"],
  registers: [metricsRegistry],
  collect() {
    this.reset();
    for (const u of allUpstreams()) {
      const counts = u.counts();
      for (const state of ["known", "ready", "ejected"] as const) this.set({ target: u.target, state }, counts[state]);
    }
  },
});

/** A retry of `method` on `target` after an attempt that failed with `code`. */
export function recordRetry(target: string, method: DescMethod, code: Code): void {
  retries.inc({
    target,
    grpc_service: method.parent.typeName,
    grpc_method: method.name,
    grpc_code: grpcCodeLabel(code),
  });
}

/** A retry refused by the budget. */
export function recordRetryThrottled(target: string): void {
  retriesThrottled.inc({ target });
}

let runtimeMetrics = false;
/** Adds Node's process and runtime metrics (CPU, memory, event loop lag, GC, handles) once per process. */
export function collectRuntimeMetrics(): void {
  if (runtimeMetrics) return;
  runtimeMetrics = true;
  collectDefaultMetrics({ register: metricsRegistry });
}

/** `OK`, `NotFound`, … as Go's codes.Code.String() writes them, which these metric names expect. */
export function grpcCodeLabel(code: Code | 0): string {
  return code === 0 ? "OK" : (Code[code] ?? `Code(${code})`);
}

function grpcType(method: DescMethod): string {
  switch (method.methodKind) {
    case "unary":
      return "unary";
    case "server_streaming":
      return "server_stream";
    case "client_streaming":
      return "client_stream";
    default:
      return "bidi_stream";
  }
}

/** Label values of a method, built once per method and side. */
const labelCache = new WeakMap<DescMethod, Record<(typeof methodLabels)[number], string>>();
function labelsOf(method: DescMethod) {
  let labels = labelCache.get(method);
  if (labels === undefined) {
    labels = { grpc_type: grpcType(method), grpc_service: method.parent.typeName, grpc_method: method.name };
    labelCache.set(method, labels);
  }
  return labels;
}

type SideMetrics = ReturnType<typeof sideMetrics>;

/** The interceptor of one side; `inFlight` returns the gauge labels of a call. */
function measure(
  side: SideMetrics,
  inFlight: Gauge,
  inFlightLabels: (service: string) => Record<string, string>,
): Interceptor {
  return (next) => async (req) => {
    const labels = labelsOf(req.method);
    const gaugeLabels = inFlightLabels(req.service.typeName);
    side.started.inc(labels);
    inFlight.inc(gaugeLabels);
    const start = performance.now();
    const done = (err: unknown) => {
      inFlight.dec(gaugeLabels);
      const code = err === undefined ? 0 : ConnectError.from(err).code;
      side.handled.inc({ ...labels, grpc_code: grpcCodeLabel(code) });
      side.seconds.observe(labels, (performance.now() - start) / 1000);
    };
    let res: Awaited<ReturnType<typeof next>>;
    try {
      res = await next(req);
    } catch (err) {
      done(err);
      throw err;
    }
    if (!res.stream) {
      done(undefined);
      return res;
    }
    return { ...res, message: countStream(res.message, side, labels, done) } as StreamResponse;
  };
}

async function* countStream<T>(
  messages: AsyncIterable<T>,
  side: SideMetrics,
  labels: Record<string, string>,
  done: (err: unknown) => void,
): AsyncGenerator<T> {
  let finished = false;
  try {
    for await (const m of messages) {
      side.streamMessages.inc(labels);
      yield m;
    }
    finished = true;
    done(undefined);
  } catch (err) {
    finished = true;
    done(err);
    throw err;
  } finally {
    if (!finished) done(new ConnectError("the reader stopped early", Code.Canceled));
  }
}

/** Server interceptor: grpc_server_* and the in-flight gauge. */
export function serverMetricsInterceptor(): Interceptor {
  const labels = new Map<string, Record<string, string>>();
  return measure(server, serverInFlight, (service) => {
    let l = labels.get(service);
    if (l === undefined) {
      l = { grpc_service: service };
      labels.set(service, l);
    }
    return l;
  });
}

/** Client interceptor for one upstream target: grpc_client_* and the in-flight gauge. */
export function clientMetricsInterceptor(target: string): Interceptor {
  const labels = { target };
  return measure(client, clientInFlight, () => labels);
}
