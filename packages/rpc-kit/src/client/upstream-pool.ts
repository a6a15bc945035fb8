import type { ChannelOptions } from "@grpc/grpc-js";
import { Gauge } from "prom-client";
import { metricsRegistry } from "../observe/metrics.ts";
import { Upstream, type UpstreamOptions, type UpstreamSnapshot } from "./upstream.ts";

/**
 * The upstreams of a process: one per target (and options), each with one
 * grpc-js channel per endpoint, shared by every client of that target and
 * closed once at shutdown. A channel per call is the classic "too many open
 * files" outage; this pool makes the right thing the default. (Pooling like
 * undici's Agent: client → upstream per target → one map.)
 */

/** Channel options of every endpoint channel (gRPC core names). */
export const DEFAULT_CHANNEL_OPTIONS: Readonly<ChannelOptions> = Object.freeze({
  // Detect dead peers on idle-looking connections within ~40 s.
  "grpc.keepalive_time_ms": 30_000,
  "grpc.keepalive_timeout_ms": 10_000,
  // Reconnect quickly to a restarted endpoint: 250 ms, growing to at most 1.5 s
  // (gRPC core defaults: 1 s to 120 s). This is how an endpoint that failed is probed back.
  // grpc-js adds ±20% jitter, so a returning endpoint is reached within 1.8 s: the
  // "recovers within 2 s" of the dead-users drill holds by construction, not by luck.
  "grpc.initial_reconnect_backoff_ms": 250,
  "grpc.max_reconnect_backoff_ms": 1_500,
  // 4 MiB, as the servers accept.
  "grpc.max_receive_message_length": 4 * 1024 * 1024,
  "grpc.max_send_message_length": 4 * 1024 * 1024,
  "grpc.primary_user_agent": "rpc-kit",
});

const pools = new Set<UpstreamPool>();

/** Every upstream of every pool in the process. */
function allUpstreams(): Upstream[] {
  return [...pools].flatMap((p) => p.upstreams());
}

let gauges = false;
/** The upstreams' gauges on /metrics, registered with the first upstream (never at import). */
function registerGauges(): void {
  if (gauges) return;
  gauges = true;
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
        for (const state of ["known", "ready", "ejected"] as const)
          this.set({ target: u.target, state }, counts[state]);
      }
    },
  });
}

export class UpstreamPool {
  readonly #upstreams = new Map<string, Upstream>();
  readonly #channelOptions: ChannelOptions;

  constructor(channelOptions: ChannelOptions = DEFAULT_CHANNEL_OPTIONS) {
    this.#channelOptions = channelOptions;
    pools.add(this);
  }

  /** The upstream for `target` (a `dns:///` or `static:///` target), created on first use. */
  get(target: string, options: UpstreamOptions = {}): Upstream {
    const key = `${target} ${JSON.stringify(options)}`;
    let upstream = this.#upstreams.get(key);
    if (upstream === undefined) {
      registerGauges();
      upstream = new Upstream(target, this.#channelOptions, options);
      this.#upstreams.set(key, upstream);
    }
    return upstream;
  }

  upstreams(): Upstream[] {
    return [...this.#upstreams.values()];
  }

  /** What /debug/rpc serves. */
  snapshot(): UpstreamSnapshot[] {
    return this.upstreams().map((u) => u.snapshot());
  }

  /** Closes every endpoint channel; calls in flight finish or are cancelled by grpc-js. */
  close(): void {
    for (const upstream of this.#upstreams.values()) upstream.close();
    this.#upstreams.clear();
  }
}

/** The process-wide pool used by `createClient` unless one is passed; `serve()` closes it at shutdown. */
export const defaultUpstreamPool = new UpstreamPool();
