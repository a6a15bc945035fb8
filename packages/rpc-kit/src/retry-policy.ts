import type { DescMethod } from "@bufbuild/protobuf";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";

/**
 * When a failed call may be tried again (gRPC A6, as FACTS.md states it):
 * only Unavailable; only for methods the proto declares idempotent
 * (`idempotency_level` NO_SIDE_EFFECTS or IDEMPOTENT), unless the request was
 * never sent, which is always safe; one retry layer (rpc-kit's client, not
 * every hop's); full-jitter exponential backoff; never past the deadline.
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

export function isIdempotent(method: DescMethod): boolean {
  return (
    method.idempotency === MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS ||
    method.idempotency === MethodOptions_IdempotencyLevel.IDEMPOTENT
  );
}

/** True when `err` from `method` may be retried. */
export function isRetryable(err: unknown, method: DescMethod): boolean {
  if (!(err instanceof ConnectError) || err.code !== Code.Unavailable) return false;
  return wasNeverSent(err) || isIdempotent(method);
}

/** Full-jitter backoff before retry number `retry` (1-based): uniform in [0, min(max, initial × multiplier^(retry-1))). */
export function backoffMs(retry: number, options: Required<RetryOptions>, random: () => number = Math.random): number {
  const ceiling = Math.min(options.maxBackoffMs, options.initialBackoffMs * options.backoffMultiplier ** (retry - 1));
  return Math.floor(random() * ceiling);
}
