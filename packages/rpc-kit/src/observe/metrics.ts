import type { DescMethod } from "@bufbuild/protobuf";
import { Code, ConnectError, type StreamRequest, type UnaryRequest } from "@connectrpc/connect";
import { Counter, collectDefaultMetrics, Gauge, Registry } from "prom-client";
import {
  CounterFamily,
  type CounterSeries,
  GaugeFamily,
  HistogramFamily,
  type HistogramSeries,
} from "./metric-family.ts";

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

/** Labels of every grpc_* series; the handled counters add `grpc_code`, the histograms' buckets `le`. */
const METHOD_LABELS = ["grpc_type", "grpc_service", "grpc_method"] as const;

/**
 * Declares the label names of one of our families on it, as prom-client's
 * own metrics carry theirs (`labelNames`), so that every metric in the
 * registry says which labels a query may use (the dashboard check reads it).
 */
function labelled<F extends object>(
  family: F,
  labelNames: readonly string[],
): F & { readonly labelNames: readonly string[] } {
  return Object.assign(family, { labelNames });
}

function sideMetrics(side: "server" | "client") {
  return {
    started: labelled(
      new CounterFamily(metricsRegistry, `grpc_${side}_started_total`, `Total number of RPCs started on the ${side}.`),
      METHOD_LABELS,
    ),
    handled: labelled(
      new CounterFamily(
        metricsRegistry,
        `grpc_${side}_handled_total`,
        `Total number of RPCs completed on the ${side}, regardless of success or failure.`,
      ),
      [...METHOD_LABELS, "grpc_code"],
    ),
    seconds: labelled(
      new HistogramFamily(
        metricsRegistry,
        `grpc_${side}_handling_seconds`,
        side === "server"
          ? "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server."
          : "Histogram of response latency (seconds) of the gRPC until it is finished by the application.",
        HANDLING_SECONDS_BUCKETS,
      ),
      METHOD_LABELS,
    ),
    // Response messages of streams: sent by the server, received by the client.
    streamMessages: labelled(
      new CounterFamily(
        metricsRegistry,
        side === "server" ? "grpc_server_msg_sent_total" : "grpc_client_msg_received_total",
        side === "server"
          ? "Total number of gRPC stream messages sent by the server."
          : "Total number of RPC stream messages received by the client.",
      ),
      METHOD_LABELS,
    ),
  };
}

type SideMetrics = ReturnType<typeof sideMetrics>;

/**
 * The families of RPC metrics, registered on first use (by `serve()` and
 * `createClient()`, through their interceptors), never at import: a module
 * that only imports the kit adds nothing to the registry.
 */
function createFamilies() {
  return {
    server: sideMetrics("server"),
    client: sideMetrics("client"),
    serverInFlight: labelled(
      new GaugeFamily(metricsRegistry, "rpc_kit_server_in_flight_calls", "Calls being served right now."),
      ["grpc_service"],
    ),
    clientInFlight: labelled(
      new GaugeFamily(
        metricsRegistry,
        "rpc_kit_client_in_flight_calls",
        "Outbound calls in flight right now, per upstream target.",
      ),
      ["target"],
    ),
    retries: new Counter({
      name: "rpc_kit_client_retries_total",
      help: "Retries of outbound calls, by the code of the attempt that failed.",
      labelNames: ["target", "grpc_service", "grpc_method", "grpc_code"],
      registers: [metricsRegistry],
    }),
    retriesThrottled: new Counter({
      name: "rpc_kit_client_retries_throttled_total",
      help: "Retries not made because the upstream's retry budget was spent.",
      labelNames: ["target"],
      registers: [metricsRegistry],
    }),
    refusedBeforeRpc: new Counter({
      name: "rpc_kit_server_refused_total",
      help: "Requests to a method that the edge refused before the RPC began (undecodable body, wrong content type, bad timeout, oversized message): no grpc_server_* series counts them. status: the HTTP status (Connect, gRPC-Web), or the gRPC code (gRPC).",
      labelNames: ["grpc_service", "grpc_method", "status"],
      registers: [metricsRegistry],
    }),
    limitRefusals: new Counter({
      name: "rpc_kit_server_limit_refusals_total",
      help: "Connections, streams and requests refused by a server's bounds on what clients send (limit: connections, connections_per_client, headers_timeout, request_timeout, buffered_bytes, buffered_bytes_per_client, reset_streams, health_watches, pings, control_bytes, header_bytes, json_depth, message_size, pipelining).",
      labelNames: ["limit"],
      registers: [metricsRegistry],
    }),
  };
}

let registered: ReturnType<typeof createFamilies> | undefined;
function families(): ReturnType<typeof createFamilies> {
  registered ??= createFamilies();
  return registered;
}

/**
 * Registers the RPC series (grpc_server_*, grpc_client_*, rpc_kit_*_in_flight_calls,
 * retries, refusals) now rather than with the first server or client: for a
 * tool that lists what a service exports (the dashboard check).
 */
export function registerRpcMetrics(): void {
  families();
}

/** The series of one method on one side (and, for clients, one target), bound once. */
interface MethodSeries {
  readonly started: CounterSeries;
  readonly handled: (CounterSeries | undefined)[];
  readonly handledFamily: CounterFamily;
  readonly labels: Readonly<Record<string, string>>;
  readonly seconds: HistogramSeries;
  readonly streamMessages: CounterSeries;
  readonly inFlight: CounterSeries;
}

function bindMethod(side: SideMetrics, method: DescMethod, inFlight: CounterSeries): MethodSeries {
  const labels = { grpc_type: grpcType(method), grpc_service: method.parent.typeName, grpc_method: method.name };
  return {
    started: side.started.bind(labels),
    handled: [],
    handledFamily: side.handled,
    labels,
    seconds: side.seconds.bind(labels),
    streamMessages: side.streamMessages.bind(labels),
    inFlight,
  };
}

function handledSeries(m: MethodSeries, code: Code | 0): CounterSeries {
  let series = m.handled[code];
  if (series === undefined) {
    series = m.handledFamily.bind({ ...m.labels, grpc_code: grpcCodeLabel(code) });
    m.handled[code] = series;
  }
  return series;
}

/** A retry of `method` on `target` after an attempt that failed with `code`. */
export function recordRetry(target: string, method: DescMethod, code: Code): void {
  families().retries.inc({
    target,
    grpc_service: method.parent.typeName,
    grpc_method: method.name,
    grpc_code: grpcCodeLabel(code),
  });
}

/** A request to a method that the edge refused before any interceptor ran. */
export function recordRefusedBeforeRpc(service: string, method: string, status: string): void {
  families().refusedBeforeRpc.inc({ grpc_service: service, grpc_method: method, status });
}

/** One refusal by the bound `limit` (limits/limit-error.ts). */
export function recordLimitRefusal(limit: string): void {
  families().limitRefusals.inc({ limit });
}

/** What a running server reports of its load: open connections on its RPC port, request bytes it holds. */
export interface ServerLoad {
  connections(): number;
  bufferedRequestBytes(): number;
}

const serverLoads = new Set<ServerLoad>();
let serverLoadGauges = false;

/** Adds a server's load to the gauges below until the returned function is called. */
export function reportServerLoad(load: ServerLoad): () => void {
  if (!serverLoadGauges) {
    serverLoadGauges = true;
    new Gauge({
      name: "rpc_kit_server_connections",
      help: "Open connections on the RPC port (MAX_CONNECTIONS bounds them).",
      registers: [metricsRegistry],
      collect() {
        this.set(sumOf((l) => l.connections()));
      },
    });
    new Gauge({
      name: "rpc_kit_server_buffered_request_bytes",
      help: "Request-body bytes held for calls in progress, received and decompressed (MAX_BUFFERED_REQUEST_BYTES bounds them).",
      registers: [metricsRegistry],
      collect() {
        this.set(sumOf((l) => l.bufferedRequestBytes()));
      },
    });
  }
  serverLoads.add(load);
  return () => serverLoads.delete(load);
}

function sumOf(read: (load: ServerLoad) => number): number {
  let sum = 0;
  for (const load of serverLoads) sum += read(load);
  return sum;
}

/** A retry refused by the budget. */
export function recordRetryThrottled(target: string): void {
  families().retriesThrottled.inc({ target });
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

/** Counts one call's start; the meter ends it (once) and counts its stream messages. */
function startCall(series: MethodSeries): CallMeter {
  series.started.value++;
  series.inFlight.value++;
  const start = performance.now();
  let ended = false;
  return {
    end(err) {
      if (ended) return;
      ended = true;
      series.inFlight.value--;
      handledSeries(series, err === undefined ? 0 : ConnectError.from(err).code).value++;
      series.seconds.observe((performance.now() - start) / 1000);
    },
    message() {
      series.streamMessages.value++;
    },
  };
}

/** What a side records of one call: its end (code, time, in flight), once, and each stream message (sent or received). */
export interface CallMeter {
  end(err: unknown): void;
  message(): void;
}

/** grpc_server_* and the in-flight gauge, for the calls of one server; each method's series bound once. */
export function serverCallMeter(): (req: UnaryRequest | StreamRequest) => CallMeter {
  const bound = new WeakMap<DescMethod, MethodSeries>();
  return (req) => {
    let m = bound.get(req.method);
    if (m === undefined) {
      const f = families();
      m = bindMethod(f.server, req.method, f.serverInFlight.bind({ grpc_service: req.service.typeName }));
      bound.set(req.method, m);
    }
    return startCall(m);
  };
}

/** grpc_client_* and the in-flight gauge, for the calls of one upstream target; each method's series bound once. */
export function clientCallMeter(target: string): (req: UnaryRequest | StreamRequest) => CallMeter {
  const bound = new WeakMap<DescMethod, MethodSeries>();
  let inFlight: CounterSeries | undefined;
  return (req) => {
    let m = bound.get(req.method);
    if (m === undefined) {
      const f = families();
      inFlight ??= f.clientInFlight.bind({ target });
      m = bindMethod(f.client, req.method, inFlight);
      bound.set(req.method, m);
    }
    return startCall(m);
  };
}
