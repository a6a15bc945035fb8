/**
 * Steady load through the gateway for the fault drills: Connect JSON calls
 * over one keep-alive client, each with a deadline sent to the gateway
 * (`connect-timeout-ms`) and a separate, much later local guard, so a call the
 * chain fails to end on time shows up as a hang instead of being cut short by
 * the caller.
 */

/** One finished call. Times are ms from `performance.now()`. */
export interface Outcome {
  /** Connect code in snake_case ("ok", "unavailable", …), or "hang" when the guard fired. */
  readonly code: string;
  readonly startedAt: number;
  readonly tookMs: number;
}

export interface SteadyLoadOptions {
  readonly baseUrl: string;
  readonly concurrency: number;
  /** Deadline sent to the gateway with every call. */
  readonly deadlineMs: number;
  /** Pause between one loop's calls, so that the load is steady rather than saturating. */
  readonly pauseMs?: number;
  /** Extra request headers (fault injection). */
  readonly headers?: Record<string, string>;
  /** Bounds: the load stops at whichever comes first. */
  readonly maxCalls: number;
  readonly maxMs: number;
}

export interface SteadyLoad {
  readonly outcomes: readonly Outcome[];
  /** Stops starting calls and resolves once the ones in flight have ended. */
  stop(): Promise<readonly Outcome[]>;
  /** Resolves when the load has stopped by itself (a bound was reached) or was stopped. */
  readonly done: Promise<readonly Outcome[]>;
}

/** A call is a hang if it is still open this long after its deadline. */
const HANG_AFTER_MS = 5_000;

/** One GetProfile through the gateway; resolves to its outcome, never rejects. */
export async function getProfile(
  baseUrl: string,
  userId: string,
  deadlineMs: number,
  headers: Record<string, string> = {},
): Promise<Outcome> {
  const startedAt = performance.now();
  const outcome = (code: string) => ({ code, startedAt, tookMs: performance.now() - startedAt });
  try {
    const res = await fetch(`${baseUrl}/demo.gateway.v1.GatewayService/GetProfile`, {
      method: "POST",
      headers: { "content-type": "application/json", "connect-timeout-ms": String(deadlineMs), ...headers },
      body: JSON.stringify({ userId }),
      signal: AbortSignal.timeout(deadlineMs + HANG_AFTER_MS),
    });
    const body = (await res.json()) as { code?: string };
    return outcome(res.status === 200 ? "ok" : (body.code ?? `http_${res.status}`));
  } catch (err) {
    const name = (err as Error).name;
    return outcome(name === "TimeoutError" ? "hang" : `transport_error:${(err as Error).message}`);
  }
}

export function steadyLoad(options: SteadyLoadOptions): SteadyLoad {
  const outcomes: Outcome[] = [];
  const until = performance.now() + options.maxMs;
  let stopped = false;
  let started = 0;
  const loops = Array.from({ length: options.concurrency }, async (_, loop) => {
    while (!stopped && started < options.maxCalls && performance.now() < until) {
      started++;
      outcomes.push(await getProfile(options.baseUrl, `u-${(loop % 3) + 1}`, options.deadlineMs, options.headers));
      if (options.pauseMs) await new Promise((r) => setTimeout(r, options.pauseMs));
    }
  });
  const done = Promise.all(loops).then(() => outcomes);
  return {
    outcomes,
    done,
    stop() {
      stopped = true;
      return done;
    },
  };
}

/** Count of outcomes per code, e.g. `{ ok: 812, unavailable: 40 }`. */
export function countByCode(outcomes: readonly Outcome[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const o of outcomes) counts[o.code] = (counts[o.code] ?? 0) + 1;
  return counts;
}

/**
 * How long after `since` the chain was healthy again: the start of the first
 * call from which every later call succeeded, minus `since` (0 if it never
 * failed after `since`; Infinity if the last call failed).
 */
export function recoveryMs(outcomes: readonly Outcome[], since: number): number {
  const sorted = [...outcomes].sort((a, b) => a.startedAt - b.startedAt);
  const lastFailure = sorted.findLastIndex((o) => o.code !== "ok");
  if (lastFailure === sorted.length - 1) return Number.POSITIVE_INFINITY;
  const firstOfHealthyRun = sorted[lastFailure + 1] as Outcome;
  return Math.max(0, firstOfHealthyRun.startedAt - since);
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
