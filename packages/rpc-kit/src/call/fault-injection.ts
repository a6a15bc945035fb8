import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { callRecordOf } from "./call-record.ts";
import { codeToString } from "./codes.ts";

/**
 * Opt-in fault injection for demos and drills (FAULT_INJECTION=on), aimed
 * with `x-fault-target: <service>`:
 * - `x-fault-delay-ms: N` holds the call N ms in that service before its
 *   handler runs; the wait ends early when the call is cancelled or times
 *   out, as a real slow handler should.
 * - `x-fault-code: <code>` (Connect's names: `unavailable`, `internal`, …)
 *   makes that service answer with the code instead of running its handler,
 *   as an overloaded or broken replica would.
 * The headers are passed on to every outbound call, so a fault aimed at
 * `users` can be sent to the gateway.
 */

export const FAULT_DELAY_HEADER = "x-fault-delay-ms";
export const FAULT_CODE_HEADER = "x-fault-code";
export const FAULT_TARGET_HEADER = "x-fault-target";

/** Codes by their Connect names (`not_found`), as `x-fault-code` takes them. */
const CODES_BY_NAME: ReadonlyMap<string, Code> = new Map(
  Object.values(Code)
    .filter((c): c is Code => typeof c === "number")
    .map((c) => [codeToString(c), c]),
);
/** Longest delay accepted: one minute. */
export const MAX_FAULT_DELAY_MS = 60_000;

export function faultInjectionInterceptor(serviceName: string): Interceptor {
  return (next) => async (req) => {
    const rawDelay = req.header.get(FAULT_DELAY_HEADER);
    const rawCode = req.header.get(FAULT_CODE_HEADER);
    if (rawDelay === null && rawCode === null) return next(req);
    const delayMs = Number(rawDelay ?? 0);
    if (!Number.isInteger(delayMs) || delayMs < 0 || delayMs > MAX_FAULT_DELAY_MS) {
      throw new ConnectError(
        `${FAULT_DELAY_HEADER} must be an integer from 0 to ${MAX_FAULT_DELAY_MS}`,
        Code.InvalidArgument,
      );
    }
    const code = rawCode === null ? undefined : CODES_BY_NAME.get(rawCode.trim().toLowerCase());
    if (rawCode !== null && code === undefined) {
      throw new ConnectError(
        `${FAULT_CODE_HEADER} must be a code name: ${[...CODES_BY_NAME.keys()].join(", ")}`,
        Code.InvalidArgument,
      );
    }
    const target = req.header.get(FAULT_TARGET_HEADER) ?? "";
    callRecordOf(req.contextValues).forward({
      ...(rawDelay !== null && { [FAULT_DELAY_HEADER]: String(delayMs) }),
      ...(rawCode !== null && { [FAULT_CODE_HEADER]: rawCode.trim().toLowerCase() }),
      [FAULT_TARGET_HEADER]: target,
    });
    if (target !== serviceName) return next(req);
    if (delayMs > 0) await sleep(delayMs, req.signal);
    if (code !== undefined) throw new ConnectError(`fault injected: ${Code[code]}`, code);
    return next(req);
  };
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(ConnectError.from(signal.reason, Code.Canceled));
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
  });
}
