import { Code, ConnectError } from "@connectrpc/connect";
import { type ChannelCredentials, type ChannelOptions, connectivityState, credentials } from "@grpc/grpc-js";
import { parseTargetSpec, type TargetSpec } from "../config/target.ts";
import type { CertificateFiles } from "../security/certificate-files.ts";
import { type BalancingPolicy, createPicker, type Picker } from "./balancing.ts";
import { type EndpointAddress, resolveTarget } from "./discovery.ts";
import { DEFAULT_EJECTION, type EjectionOptions, Endpoint } from "./endpoint.ts";
import { RetryBudget, type RetryBudgetOptions } from "./retry-budget.ts";
import { markNeverSent } from "./retry-policy.ts";

/** How an upstream finds and chooses endpoints; every field has a default. */
export interface UpstreamOptions {
  /** `round_robin` (default) or `least_loaded` (power of two choices on in-flight calls). */
  readonly policy?: BalancingPolicy;
  /** Re-resolve DNS names this often. Default 30,000 ms. */
  readonly dnsRefreshMs?: number;
  /** Query these DNS servers instead of the system resolver. Default: the system resolver. */
  readonly dnsServers?: readonly string[];
  /** With `dnsServers`: per-query timeout. Default 1,000 ms, asked twice. */
  readonly dnsTimeoutMs?: number;
  /** A failing connection triggers re-resolution at most this often. Default 1,000 ms. */
  readonly minRefreshIntervalMs?: number;
  /** Outlier ejection of endpoints that keep answering Unavailable. Default 5 in a row → 1 s, doubling to 30 s. */
  readonly ejection?: EjectionOptions;
  /**
   * grpc-js channel options of this upstream's endpoint channels, over the
   * pool's (keepalive, reconnect backoff, message sizes). Default the pool's.
   */
  readonly channelOptions?: ChannelOptions;
  /**
   * How long a call waits for a ready endpoint (a connection), over all its
   * attempts, before failing with Unavailable; a black-holed address costs a
   * call at most this. Default 1,000 ms (an in-cluster h2c connect takes about a millisecond).
   */
  readonly connectTimeoutMs?: number;
  /** The retry budget of this upstream. Default 10% of calls, 10 tokens to start, at most 100 saved. */
  readonly retryBudget?: RetryBudgetOptions;
  /**
   * mTLS: dial TLS, present this certificate and verify the server's against
   * its CA, picking up new files for new connections. Default plaintext (h2c).
   */
  readonly tls?: CertificateFiles;
  /** With `tls`: the name the server's certificate must carry. Default the target's host name. */
  readonly tlsServerName?: string;
}

export const DEFAULT_DNS_REFRESH_MS = 30_000;
export const DEFAULT_CONNECT_TIMEOUT_MS = 1_000;
export const DEFAULT_MIN_REFRESH_INTERVAL_MS = 1_000;

/** How long one call may still wait for a connection, over all its attempts. */
export interface ConnectWait {
  leftMs: number;
}

/** What /debug/rpc shows of one upstream. */
export interface UpstreamSnapshot {
  target: string;
  policy: BalancingPolicy;
  resolvedAt: string | null;
  resolveError: string | null;
  endpoints: {
    address: EndpointAddress;
    state: string;
    ready: boolean;
    ejected: boolean;
    ejections: number;
    inFlight: number;
    calls: number;
    failures: number;
  }[];
  retryBudget: { tokens: number; maxTokens: number; ratio: number };
}

/**
 * The name a server certificate is checked against: the host of the target
 * (a static target's first), as gRPC does; the channels dial resolved IP
 * addresses, whose certificates would otherwise need IP SANs.
 */
function serverNameOf(spec: TargetSpec): string {
  return spec.kind === "dns" ? spec.host : (spec.hostPorts[0]?.host ?? "");
}

/**
 * One upstream target: its endpoints (kept current by discovery), the choice
 * of one per call (balancing), and its retry budget.
 */
export class Upstream {
  readonly target: string;
  readonly policy: BalancingPolicy;
  readonly budget: RetryBudget;
  readonly #spec: TargetSpec;
  readonly #options: UpstreamOptions;
  readonly #channelOptions: ChannelOptions;
  readonly #credentials: ChannelCredentials;
  readonly #endpoints = new Map<EndpointAddress, Endpoint>();
  readonly #picker: Picker<Endpoint>;
  readonly #connectTimeoutMs: number;
  readonly #ejection: Required<EjectionOptions>;
  readonly #minRefreshIntervalMs: number;
  readonly #waiters = new Set<() => void>();
  readonly #timer: NodeJS.Timeout;
  #refreshing: Promise<void> | undefined;
  #deferredRefresh: NodeJS.Timeout | undefined;
  #lastRefresh = 0;
  #resolvedAt: Date | undefined;
  #resolveError: string | undefined;
  #closed = false;

  constructor(target: string, channelOptions: ChannelOptions, options: UpstreamOptions = {}) {
    this.target = target;
    this.#spec = parseTargetSpec(target);
    this.#options = options;
    this.#ejection = { ...DEFAULT_EJECTION, ...options.ejection };
    this.#minRefreshIntervalMs = options.minRefreshIntervalMs ?? DEFAULT_MIN_REFRESH_INTERVAL_MS;
    this.#channelOptions = {
      ...channelOptions,
      ...options.channelOptions,
      ...(options.tls && {
        "grpc.ssl_target_name_override": options.tlsServerName ?? serverNameOf(this.#spec),
      }),
    };
    this.#credentials = options.tls?.channelCredentials() ?? credentials.createInsecure();
    this.policy = options.policy ?? "round_robin";
    this.#picker = createPicker<Endpoint>(this.policy);
    this.#connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    this.budget = new RetryBudget(options.retryBudget);
    void this.refresh();
    const every = this.#spec.kind === "dns" ? (options.dnsRefreshMs ?? DEFAULT_DNS_REFRESH_MS) : 0;
    this.#timer = setInterval(() => void this.refresh(), every || 86_400_000).unref();
  }

  /** Resolves the target now and reconciles the endpoints; keeps the last good list on failure. */
  refresh(): Promise<void> {
    if (this.#refreshing) return this.#refreshing;
    this.#lastRefresh = Date.now();
    this.#refreshing = (async () => {
      try {
        const addresses = await resolveTarget(this.#spec, {
          ...(this.#options.dnsServers && { dnsServers: this.#options.dnsServers }),
          ...(this.#options.dnsTimeoutMs !== undefined && { dnsTimeoutMs: this.#options.dnsTimeoutMs }),
        });
        if (this.#closed) return;
        this.#reconcile(addresses);
        this.#resolvedAt = new Date();
        this.#resolveError = undefined;
      } catch (err) {
        this.#resolveError = (err as Error).message;
      } finally {
        this.#refreshing = undefined;
        this.#wake();
      }
    })();
    return this.#refreshing;
  }

  /**
   * Re-resolves after a connection failure: at once, or, within
   * `minRefreshIntervalMs` of the last resolution, when that interval is up
   * (a request is deferred, never dropped: a failed endpoint's channel may
   * not change state again to ask twice).
   */
  requestRefresh(): void {
    if (this.#spec.kind !== "dns" || this.#deferredRefresh !== undefined || this.#closed) return;
    const wait = this.#lastRefresh + this.#minRefreshIntervalMs - Date.now();
    if (wait <= 0) {
      void this.refresh();
      return;
    }
    this.#deferredRefresh = setTimeout(() => {
      this.#deferredRefresh = undefined;
      void this.refresh();
    }, wait).unref();
  }

  #reconcile(addresses: readonly EndpointAddress[]): void {
    const wanted = new Set(addresses);
    for (const [address, endpoint] of this.#endpoints) {
      if (!wanted.has(address)) {
        this.#endpoints.delete(address);
        endpoint.close();
      }
    }
    for (const address of addresses) {
      if (!this.#endpoints.has(address)) {
        this.#endpoints.set(
          address,
          new Endpoint(
            address,
            this.#channelOptions,
            (e) => this.#onEndpointChange(e),
            this.#credentials,
            this.#ejection,
          ),
        );
      }
    }
  }

  #onEndpointChange(endpoint: Endpoint): void {
    if (endpoint.state === connectivityState.TRANSIENT_FAILURE) this.requestRefresh();
    this.#wake();
  }

  #wake(): void {
    for (const wake of this.#waiters) wake();
  }

  /** A call's allowance for waiting on connections, shared by its attempts: {@link pick} spends it. */
  connectWait(): ConnectWait {
    return { leftMs: this.#connectTimeoutMs };
  }

  /**
   * An endpoint for one call: a ready one chosen by the policy, preferring
   * any but `avoid` (the endpoint a retried attempt just failed on). When none
   * is ready but one is connecting, waits for it, within the call's `wait`
   * allowance (the connect timeout, for all its attempts together: a retry
   * does not wait for a black hole again) and `deadline`; when all are
   * failing, fails at once. Either way the error is Unavailable, and the
   * request was never sent, so any method may retry it. If every ready
   * endpoint is ejected, uses them anyway: ejection must not take the whole
   * upstream away.
   */
  async pick(deadline: number, signal: AbortSignal, wait: ConnectWait, avoid?: Endpoint): Promise<Endpoint> {
    const startedAt = Date.now();
    const giveUpAt = Math.min(deadline, startedAt + wait.leftMs);
    try {
      for (;;) {
        const now = Date.now();
        const all = [...this.#endpoints.values()];
        let ready = all.filter((e) => e.isReady(now));
        if (ready.length === 0) ready = all.filter((e) => e.state === connectivityState.READY);
        if (ready.length > 1 && avoid !== undefined) ready = ready.filter((e) => e !== avoid);
        if (ready.length > 0) return this.#picker.pick(ready);
        for (const e of all) if (e.state === connectivityState.IDLE) e.connect();
        // Waiting helps only while a connection attempt is under way (or DNS has not answered yet).
        const hope =
          all.some((e) => e.state === connectivityState.CONNECTING || e.state === connectivityState.IDLE) ||
          (all.length === 0 && this.#resolvedAt === undefined && this.#resolveError === undefined);
        if (!hope || now >= giveUpAt || signal.aborted) throw this.#noEndpoint(all, hope);
        await this.#waitForChange(giveUpAt - now, signal);
      }
    } finally {
      wait.leftMs = Math.max(0, wait.leftMs - (Date.now() - startedAt));
    }
  }

  #noEndpoint(all: Endpoint[], waited: boolean): ConnectError {
    const states = all.map((e) => `${e.address} ${e.stateName}`).join(", ");
    const why =
      all.length === 0
        ? this.#resolveError
          ? `cannot resolve ${this.target}: ${this.#resolveError}`
          : `no endpoints for ${this.target}`
        : waited
          ? `no ready endpoint for ${this.target} within ${this.#connectTimeoutMs} ms (${states})`
          : `every endpoint of ${this.target} is failing (${states})`;
    return markNeverSent(new ConnectError(why, Code.Unavailable));
  }

  #waitForChange(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#waiters.delete(done);
        signal.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#waiters.add(done);
      signal.addEventListener("abort", done, { once: true });
    });
  }

  snapshot(): UpstreamSnapshot {
    const now = Date.now();
    return {
      target: this.target,
      policy: this.policy,
      resolvedAt: this.#resolvedAt?.toISOString() ?? null,
      resolveError: this.#resolveError ?? null,
      endpoints: [...this.#endpoints.values()].map((e) => ({
        address: e.address,
        state: e.stateName,
        ready: e.isReady(now),
        ejected: e.isEjected(now),
        ejections: e.ejections,
        inFlight: e.inFlight,
        calls: e.calls,
        failures: e.failures,
      })),
      retryBudget: {
        tokens: Math.round(this.budget.tokens * 1000) / 1000,
        maxTokens: this.budget.maxTokens,
        ratio: this.budget.ratio,
      },
    };
  }

  /** Endpoint counts for metrics. */
  counts(): { known: number; ready: number; ejected: number } {
    const now = Date.now();
    let ready = 0;
    let ejected = 0;
    for (const e of this.#endpoints.values()) {
      if (e.isReady(now)) ready++;
      if (e.isEjected(now)) ejected++;
    }
    return { known: this.#endpoints.size, ready, ejected };
  }

  close(): void {
    this.#closed = true;
    clearInterval(this.#timer);
    clearTimeout(this.#deferredRefresh);
    for (const e of this.#endpoints.values()) e.close();
    this.#endpoints.clear();
    this.#wake();
  }
}
