/**
 * A retry budget per upstream: a token bucket that every call fills a
 * little (`ratio`, default 0.1) and every retry drains by one. Retries stop
 * when it is empty, so an upstream that is failing gets at most
 * (1 + ratio) × the calls, plus the tokens in the bucket when it began to
 * fail, never more than `maxTokens`: the bucket starts full, so that bound
 * holds from the first call on. With one retry layer (retry-policy.ts),
 * three hops cannot multiply a failing users service's load into a storm.
 * (Like gRPC A6 retry throttling and Finagle's RetryBudget.)
 */
export interface RetryBudgetOptions {
  /** Tokens added per call. Default 0.1: retries may add 10% to the call volume. */
  readonly ratio?: number;
  /**
   * Bucket size, and the tokens at start. Default 100: enough to retry every
   * in-flight call of a replica that dies under load (10–14 at 16 in flight
   * over three replicas, measured), where A6's 10 lost calls; a failing
   * upstream still gets at most 10% more calls, after one burst of at most this many.
   */
  readonly maxTokens?: number;
  /** Tokens at start, if fewer than `maxTokens` (tests). Default `maxTokens`. */
  readonly initialTokens?: number;
}

/** Tokens are counted in thousandths, so that ten deposits of 0.1 make exactly one. */
const SCALE = 1_000;

export class RetryBudget {
  readonly ratio: number;
  readonly maxTokens: number;
  readonly #deposit: number;
  readonly #max: number;
  #milli: number;

  constructor(options: RetryBudgetOptions = {}) {
    this.ratio = options.ratio ?? 0.1;
    this.maxTokens = options.maxTokens ?? 100;
    const initial = Math.min(this.maxTokens, options.initialTokens ?? this.maxTokens);
    if (!(this.ratio >= 0) || !(this.maxTokens >= 0) || !(initial >= 0)) {
      throw new Error("retry budget ratio and tokens must be >= 0");
    }
    this.#deposit = Math.round(this.ratio * SCALE);
    this.#max = Math.round(this.maxTokens * SCALE);
    this.#milli = Math.round(initial * SCALE);
  }

  get tokens(): number {
    return this.#milli / SCALE;
  }

  /** A call (not a retry) was made. */
  deposit(): void {
    this.#milli = Math.min(this.#max, this.#milli + this.#deposit);
  }

  /** Takes one token for a retry; false when the budget is spent. */
  withdraw(): boolean {
    if (this.#milli < SCALE) return false;
    this.#milli -= SCALE;
    return true;
  }
}
