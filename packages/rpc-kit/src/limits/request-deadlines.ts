/**
 * Deadlines of requests still arriving (REQUEST_TIMEOUT_MS), kept in one set
 * and checked by one timer four times a second, instead of a timer per call:
 * arming and clearing a timer for every call cost more than everything else
 * the bounds do on the internal servers' hot path. A request is failed at
 * most 250 ms after its deadline.
 */
export interface PendingRequest {
  /** performance.now() at which it expires. */
  readonly deadline: number;
  readonly expire: () => void;
}

const pending = new Set<PendingRequest>();
let sweeper: NodeJS.Timeout | undefined;

/** Watches a request until `done()` is called; `expire` runs once if the deadline passes first. */
export function watchRequest(timeoutMs: number, expire: () => void): { done(): void } {
  const entry: PendingRequest = { deadline: performance.now() + timeoutMs, expire };
  pending.add(entry);
  sweeper ??= setInterval(sweep, 250).unref();
  return { done: () => pending.delete(entry) };
}

function sweep(): void {
  const now = performance.now();
  for (const entry of pending) {
    if (now < entry.deadline) continue;
    pending.delete(entry);
    entry.expire();
  }
  if (pending.size === 0 && sweeper !== undefined) {
    clearInterval(sweeper);
    sweeper = undefined;
  }
}
