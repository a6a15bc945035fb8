/**
 * At most one log line per key (a limit and a client address) per interval,
 * and at most `maxLines` lines per interval in all: a flood of refusals is
 * counted on /metrics and summarized in the log, never written per request.
 * Each line says how many refusals it stands for.
 */
export class LogThrottle {
  readonly #entries = new Map<string, { last: number; suppressed: number }>();
  #windowStart = 0;
  #linesInWindow = 0;

  readonly intervalMs: number;
  readonly maxLines: number;
  readonly maxKeys: number;

  constructor(intervalMs = 10_000, maxLines = 100, maxKeys = 10_000) {
    this.intervalMs = intervalMs;
    this.maxLines = maxLines;
    this.maxKeys = maxKeys;
  }

  /**
   * Called for each event of `key`: the number of events a line written now
   * stands for (this one and those suppressed since the last line), or
   * undefined when no line is to be written.
   */
  take(key: string, now = Date.now()): number | undefined {
    if (now - this.#windowStart >= this.intervalMs) {
      this.#windowStart = now;
      this.#linesInWindow = 0;
    }
    const entry = this.#entries.get(key);
    if (entry !== undefined && now - entry.last < this.intervalMs) {
      entry.suppressed++;
      return undefined;
    }
    if (this.#linesInWindow >= this.maxLines) {
      if (entry !== undefined) entry.suppressed++;
      return undefined;
    }
    this.#linesInWindow++;
    if (entry === undefined && this.#entries.size >= this.maxKeys) this.#prune(now);
    this.#entries.delete(key);
    this.#entries.set(key, { last: now, suppressed: 0 });
    return 1 + (entry?.suppressed ?? 0);
  }

  /** Forgets keys quiet for an interval; if all are recent, the oldest half (Map order is insertion order). */
  #prune(now: number): void {
    for (const [key, e] of this.#entries) if (now - e.last >= this.intervalMs) this.#entries.delete(key);
    if (this.#entries.size < this.maxKeys) return;
    let drop = Math.floor(this.maxKeys / 2);
    for (const key of this.#entries.keys()) {
      if (drop-- <= 0) break;
      this.#entries.delete(key);
    }
  }
}
