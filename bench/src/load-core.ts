/**
 * The engine of the load generator: closed loop (N calls in flight) or open
 * loop (a fixed rate of starts, whatever the responses: latency is measured
 * from when a call was due, so a slow server cannot hide its queue), bounded
 * always by a count and a duration.
 */

export interface LoadOptions {
  /** Calls in flight (closed loop), or the cap on calls in flight (open loop). */
  readonly concurrency: number;
  /** Stop after this many calls. */
  readonly requests: number;
  /** Stop after this many seconds. */
  readonly seconds: number;
  /** Open loop: start this many calls per second. Undefined for a closed loop. */
  readonly rate?: number;
  /** Called about once a second with the progress so far. */
  readonly onProgress?: (progress: Progress) => void;
}

export interface Progress {
  readonly elapsedSeconds: number;
  readonly completed: number;
  readonly errors: number;
  readonly recentRps: number;
}

export interface LoadReport {
  readonly requests: number;
  readonly seconds: number;
  readonly rps: number;
  readonly latencyMs: { readonly p50: number; readonly p90: number; readonly p99: number; readonly max: number };
  /** Completed calls per status code name (`ok`, `not_found`, …). */
  readonly codes: Readonly<Record<string, number>>;
  /** Open loop only: calls that could not start because `concurrency` were in flight. */
  readonly dropped: number;
}

/** One call; resolves with its code name (`ok` on success). */
export type CallFn = () => Promise<string>;

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? 0;
}

export async function runLoad(call: CallFn, options: LoadOptions): Promise<LoadReport> {
  if (!(options.concurrency >= 1) || !(options.requests >= 1) || !(options.seconds > 0)) {
    throw new Error("concurrency, requests and seconds must be positive");
  }
  const latencies: number[] = [];
  const codes: Record<string, number> = {};
  let started = 0;
  let inFlight = 0;
  let dropped = 0;
  let errors = 0;
  const t0 = performance.now();
  const stopAt = t0 + options.seconds * 1000;
  const record = (code: string, latency: number) => {
    latencies.push(latency);
    codes[code] = (codes[code] ?? 0) + 1;
    if (code !== "ok") errors++;
  };
  const one = async (dueAt: number) => {
    inFlight++;
    let code: string;
    try {
      code = await call();
    } catch (err) {
      code = (err as { code?: string }).code ?? "unknown";
    }
    inFlight--;
    record(code, performance.now() - dueAt);
  };

  let lastCompleted = 0;
  let lastAt = t0;
  const progress = options.onProgress
    ? setInterval(() => {
        const now = performance.now();
        options.onProgress?.({
          elapsedSeconds: (now - t0) / 1000,
          completed: latencies.length,
          errors,
          recentRps: ((latencies.length - lastCompleted) * 1000) / (now - lastAt),
        });
        lastCompleted = latencies.length;
        lastAt = now;
      }, 1000)
    : undefined;

  try {
    if (options.rate === undefined) {
      await Promise.all(
        Array.from({ length: options.concurrency }, async () => {
          while (started < options.requests && performance.now() < stopAt) {
            started++;
            await one(performance.now());
          }
        }),
      );
    } else {
      const interval = 1000 / options.rate;
      const pending = new Set<Promise<void>>();
      while (started < options.requests && performance.now() < stopAt) {
        const dueAt = t0 + started * interval;
        const wait = dueAt - performance.now();
        if (wait > 1) await new Promise((r) => setTimeout(r, wait));
        started++;
        if (inFlight >= options.concurrency) {
          dropped++;
          continue;
        }
        const p = one(dueAt).finally(() => pending.delete(p));
        pending.add(p);
      }
      await Promise.all(pending);
    }
  } finally {
    if (progress) clearInterval(progress);
  }

  const seconds = (performance.now() - t0) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    requests: latencies.length,
    seconds,
    rps: latencies.length / seconds,
    latencyMs: {
      p50: percentile(latencies, 50),
      p90: percentile(latencies, 90),
      p99: percentile(latencies, 99),
      max: latencies.at(-1) ?? 0,
    },
    codes,
    dropped,
  };
}
