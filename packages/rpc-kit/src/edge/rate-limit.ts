import { create } from "@bufbuild/protobuf";
import { DurationSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ContextValues, type Interceptor } from "@connectrpc/connect";
import { RetryInfoSchema } from "@demo/proto/google/rpc/error_details_pb";
import { Counter, Gauge } from "prom-client";
import { callRecordOf } from "../call/call-record.ts";
import { type Config, setting } from "../config/config.ts";
import { metricsRegistry } from "../observe/metrics.ts";

/**
 * A per-client rate limit for the edge: one token bucket per client, keyed
 * by the verified subject of its token when it has one, else by the
 * address its connection comes from. Identity headers and X-Forwarded-For
 * are never keys: a caller could pick a fresh key per call.
 *
 * Memory is bounded: at most RATE_LIMIT_MAX_CLIENTS buckets, kept in order
 * of last use; a new client evicts the least recently used one. A bucket
 * that is full again (idle for burst/rate seconds) holds nothing worth
 * keeping, so up to two of those are dropped on every new client as well.
 */

export const RATE_LIMITED_MESSAGE = "rate limit exceeded: retry later";

export function rateLimitSettings() {
  return {
    rateLimitPerSecond: setting.int(
      "RATE_LIMIT_PER_SECOND",
      0,
      "calls per second each client may make, sustained (its token bucket's refill rate); 0 = no rate limit",
      { max: 1_000_000 },
    ),
    rateLimitBurst: setting.int(
      "RATE_LIMIT_BURST",
      100,
      "calls a client may make at once before the sustained rate applies (its bucket's size)",
      { min: 1, max: 1_000_000 },
    ),
    rateLimitMaxClients: setting.int(
      "RATE_LIMIT_MAX_CLIENTS",
      10_000,
      "clients tracked at once (bounds memory); beyond it the least recently seen is forgotten",
      { min: 1, max: 10_000_000 },
    ),
  };
}

export type RateLimitSettings = Config<ReturnType<typeof rateLimitSettings>>;

interface Bucket {
  tokens: number;
  /** performance.now() of the last refill. */
  at: number;
}

export interface RateLimiterOptions {
  readonly ratePerSecond: number;
  readonly burst: number;
  readonly maxClients: number;
  /** Clock in ms; default performance.now. */
  readonly now?: () => number;
}

/** Token buckets per client key, bounded in number. */
export class RateLimiter {
  readonly #rate: number;
  readonly #burst: number;
  readonly #max: number;
  readonly #now: () => number;
  /** In order of last use: the first entry is the least recently used. */
  readonly #buckets = new Map<string, Bucket>();

  constructor(options: RateLimiterOptions) {
    if (!(options.ratePerSecond > 0)) throw new RangeError("ratePerSecond must be positive");
    this.#rate = options.ratePerSecond / 1000;
    this.#burst = options.burst;
    this.#max = options.maxClients;
    this.#now = options.now ?? (() => performance.now());
  }

  /** Clients tracked now. */
  get size(): number {
    return this.#buckets.size;
  }

  /** Takes a token for `key`: 0 when the call may go ahead, else the ms until a token is there. */
  take(key: string): number {
    const now = this.#now();
    let bucket = this.#buckets.get(key);
    if (bucket === undefined) {
      this.#makeRoom(now);
      bucket = { tokens: this.#burst, at: now };
    } else {
      this.#buckets.delete(key); // re-inserted below: now the most recently used
      bucket.tokens = Math.min(this.#burst, bucket.tokens + (now - bucket.at) * this.#rate);
      bucket.at = now;
    }
    this.#buckets.set(key, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return Math.ceil((1 - bucket.tokens) / this.#rate);
  }

  #makeRoom(now: number): void {
    let dropped = 0;
    for (const [key, b] of this.#buckets) {
      const full = b.tokens + (now - b.at) * this.#rate >= this.#burst;
      if (this.#buckets.size >= this.#max || (full && dropped < 2)) {
        this.#buckets.delete(key);
        dropped++;
        continue;
      }
      break;
    }
  }
}

const limiters = new Set<RateLimiter>();
let limited: Counter | undefined;

/** The rate limit's series on /metrics, registered with the first limiter (never at import). */
function registerMetrics(): Counter {
  limited ??= (() => {
    new Gauge({
      name: "rpc_kit_rate_limit_clients",
      help: "Clients the rate limit tracks right now.",
      registers: [metricsRegistry],
      collect() {
        let n = 0;
        for (const l of limiters) n += l.size;
        this.set(n);
      },
    });
    return new Counter({
      name: "rpc_kit_rate_limited_total",
      help: "Calls refused with ResourceExhausted by the per-client rate limit.",
      labelNames: ["grpc_service", "grpc_method"],
      registers: [metricsRegistry],
    });
  })();
  return limited;
}

/** The limiter of `settings`, or undefined when RATE_LIMIT_PER_SECOND is 0. */
export function createRateLimiter(settings: RateLimitSettings): RateLimiter | undefined {
  if (settings.rateLimitPerSecond === 0) return undefined;
  return new RateLimiter({
    ratePerSecond: settings.rateLimitPerSecond,
    burst: settings.rateLimitBurst,
    maxClients: settings.rateLimitMaxClients,
  });
}

/** The client a call is counted against: its verified subject, else its connection's address. */
export function clientKey(values: ContextValues): string {
  const record = callRecordOf(values);
  if (record.identity !== undefined) return `sub:${record.identity.subject}`;
  return `addr:${record.peerAddress ?? "unknown"}`;
}

/**
 * The server interceptor: ResourceExhausted with a google.rpc.RetryInfo
 * (and, over Connect, a `retry-after` header in whole seconds) when the
 * client's bucket is empty. Runs inside authentication, so that it sees the
 * verified subject.
 */
export function rateLimitInterceptor(limiter: RateLimiter): Interceptor {
  const counter = registerMetrics();
  limiters.add(limiter);
  return (next) => async (req) => {
    const waitMs = limiter.take(clientKey(req.contextValues));
    if (waitMs === 0) return next(req);
    counter.inc({ grpc_service: req.service.typeName, grpc_method: req.method.name });
    throw new ConnectError(
      RATE_LIMITED_MESSAGE,
      Code.ResourceExhausted,
      { "retry-after": String(Math.ceil(waitMs / 1000)) },
      [
        {
          desc: RetryInfoSchema,
          value: {
            retryDelay: create(DurationSchema, {
              seconds: BigInt(Math.floor(waitMs / 1000)),
              nanos: (waitMs % 1000) * 1_000_000,
            }),
          },
        },
      ],
    );
  };
}
