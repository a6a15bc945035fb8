/**
 * Stream resets per client address, across all of its connections: a token
 * bucket per address (MAX_RESET_STREAMS_PER_SECOND, burst twice that). An
 * address that empties its bucket is "penalized" until the bucket is half
 * full again: its connections get GOAWAY and new ones are closed at once.
 *
 * Node's own limit (streamResetRate, 33/s after a burst of 1,000) is per
 * connection: a Rapid Reset client that opened a new connection every 900
 * resets sent the gateway 495,000 streams in 10.5 s and left it unresponsive
 * for ~70 s after it stopped. Keyed on the address it follows the client
 * across connections, and set at 1,000/s it leaves room for legitimate
 * cancellation (a client cancelling 300 calls/s).
 */
export class ResetBudget {
  readonly #buckets = new Map<string, { tokens: number; at: number; penalizedUntil: number }>();
  readonly perSecond: number;
  readonly burst: number;
  readonly maxClients: number;

  constructor(perSecond: number, maxClients = 10_000) {
    this.perSecond = perSecond;
    this.burst = perSecond * 2;
    this.maxClients = maxClients;
  }

  /** Spends a token for a reset by `client`; false when its bucket is empty (and it is now penalized). */
  take(client: string, now = performance.now()): boolean {
    let b = this.#buckets.get(client);
    if (b === undefined) {
      if (this.#buckets.size >= this.maxClients) this.#forgetFull(now);
      b = { tokens: this.burst, at: now, penalizedUntil: 0 };
      this.#buckets.set(client, b);
    }
    this.#refill(b, now);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return true;
    }
    b.penalizedUntil = now + ((this.burst / 2 - b.tokens) / this.perSecond) * 1000;
    return false;
  }

  /** True while `client` is penalized. */
  penalized(client: string, now = performance.now()): boolean {
    const b = this.#buckets.get(client);
    return b !== undefined && now < b.penalizedUntil;
  }

  #refill(b: { tokens: number; at: number }, now: number): void {
    b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) / 1000) * this.perSecond);
    b.at = now;
  }

  /** Drops buckets that are full again (they hold nothing a new one would not). */
  #forgetFull(now: number): void {
    for (const [client, b] of this.#buckets) {
      this.#refill(b, now);
      if (b.tokens >= this.burst && now >= b.penalizedUntil) this.#buckets.delete(client);
    }
    if (this.#buckets.size >= this.maxClients) this.#buckets.delete(this.#buckets.keys().next().value as string);
  }
}
