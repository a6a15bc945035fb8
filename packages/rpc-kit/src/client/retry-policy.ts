import type { DescMethod } from "@bufbuild/protobuf";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { RETRY_PUSHBACK_HEADER } from "../grpc/grpc-metadata.ts";

/**
 * When a failed call may be tried again (gRPC A6, github.com/grpc/proposal A6-client-retries.md):
 * only Unavailable; only for methods the proto declares idempotent
 * (`idempotency_level` NO_SIDE_EFFECTS or IDEMPOTENT), unless the request was
 * never sent, which is always safe; full-jitter exponential backoff; never
 * past the deadline; and one retry layer. That last rule is kept with A6's
 * server pushback: a hop that passes an upstream's Unavailable on (after its
 * own client retried it) adds `grpc-retry-pushback-ms: -1`, "do not retry",
 * so only the hop next to the failure retries, and a failing users service
 * is not retried again by profiles' caller, and again by the gateway's.
 */

export interface RetryOptions {
  /** Attempts in all, the first included. Default 3. */
  readonly maxAttempts?: number;
  /** Backoff before the first retry, before jitter. Default 50 ms. */
  readonly initialBackoffMs?: number;
  /** Cap of the backoff. Default 1,000 ms. */
  readonly maxBackoffMs?: number;
  /** Growth per retry. Default 2. */
  readonly backoffMultiplier?: number;
}

export const DEFAULT_RETRY: Required<RetryOptions> = Object.freeze({
  maxAttempts: 3,
  initialBackoffMs: 50,
  maxBackoffMs: 1_000,
  backoffMultiplier: 2,
});

const neverSent = new WeakSet<ConnectError>();

/** Marks an error as raised before the request left this process (no endpoint, refused connection). */
export function markNeverSent(err: ConnectError): ConnectError {
  neverSent.add(err);
  return err;
}

export function wasNeverSent(err: unknown): boolean {
  return err instanceof ConnectError && neverSent.has(err);
}

const final = new WeakSet<ConnectError>();

/** Marks an error that another attempt cannot mend (a call that spent its whole connect wait). */
export function markFinal(err: ConnectError): ConnectError {
  final.add(err);
  return err;
}

export function isIdempotent(method: DescMethod): boolean {
  return (
    method.idempotency === MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS ||
    method.idempotency === MethodOptions_IdempotencyLevel.IDEMPOTENT
  );
}

/**
 * The server's pushback on `err`, as A6 reads it: undefined when it sent none
 * (use the backoff), "never" for a negative or malformed value (do not retry),
 * else the delay in ms to wait before the retry.
 */
export function retryPushback(err: ConnectError): number | "never" | undefined {
  const raw = err.metadata.get(RETRY_PUSHBACK_HEADER);
  if (raw === null) return undefined;
  return /^\d{1,9}$/.test(raw.trim()) ? Number(raw.trim()) : "never";
}

/** True when `err` from `method` may be retried. */
export function isRetryable(err: unknown, method: DescMethod): boolean {
  if (!(err instanceof ConnectError) || err.code !== Code.Unavailable) return false;
  if (final.has(err) || retryPushback(err) === "never") return false;
  return wasNeverSent(err) || isIdempotent(method);
}

/** Full-jitter backoff before retry number `retry` (1-based): uniform in [0, min(max, initial × multiplier^(retry-1))). */
export function backoffMs(retry: number, options: Required<RetryOptions>, random: () => number = Math.random): number {
  const ceiling = Math.min(options.maxBackoffMs, options.initialBackoffMs * options.backoffMultiplier ** (retry - 1));
  return Math.floor(random() * ceiling);
}
