/**
 * A retry budget per upstream: a token bucket that every call fills a
 * little (`ratio`, default 0.1) and every retry drains by one. Retries stop
 * when it is empty, so retries add at most `ratio` of the call volume (plus
 * the initial tokens) to an upstream that is failing: three hops cannot
 * multiply a failing users service's load into a storm.
 * (Like gRPC A6 retry throttling and Finagle's RetryBudget.)
 */
export interface RetryBudgetOptions {
  /** Tokens added per call. Default 0.1: retries may add 10% to the call volume. */
  readonly ratio?: number;
  /** Bucket size and initial tokens. Default 10: a burst of 10 retries after a quiet period. */
  readonly maxTokens?: number;
}

export class RetryBudget {
  readonly ratio: number;
  readonly maxTokens: number;
  #tokens: number;

  constructor(options: RetryBudgetOptions = {}) {
    this.ratio = options.ratio ?? 0.1;
    this.maxTokens = options.maxTokens ?? 10;
    if (!(this.ratio >= 0) || !(this.maxTokens >= 0)) throw new Error("retry budget ratio and maxTokens must be >= 0");
    this.#tokens = this.maxTokens;
  }

  get tokens(): number {
    return this.#tokens;
  }

  /** A call (not a retry) was made. */
  deposit(): void {
    this.#tokens = Math.min(this.maxTokens, this.#tokens + this.ratio);
  }

  /** Takes one token for a retry; false when the budget is spent. */
  withdraw(): boolean {
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }
}
