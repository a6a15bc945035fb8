import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { forwardHeaders } from "./call-scope.ts";

/**
 * Opt-in fault injection for demos and drills (FAULT_INJECTION=on): a
 * request carrying `x-fault-delay-ms: N` and `x-fault-target: <service>` is
 * held N ms in that service before its handler runs. Both headers are passed
 * on to every outbound call, so a fault aimed at `users` can be sent to the
 * gateway. The wait ends early when the call is cancelled or times out, as a
 * real slow handler should.
 */

export const FAULT_DELAY_HEADER = "x-fault-delay-ms";
export const FAULT_TARGET_HEADER = "x-fault-target";
/** Longest delay accepted: one minute. */
export const MAX_FAULT_DELAY_MS = 60_000;

export function faultInjectionInterceptor(serviceName: string): Interceptor {
  return (next) => async (req) => {
    const raw = req.header.get(FAULT_DELAY_HEADER);
    if (raw === null) return next(req);
    const delayMs = Number(raw);
    if (!Number.isInteger(delayMs) || delayMs < 0 || delayMs > MAX_FAULT_DELAY_MS) {
      throw new ConnectError(
        `${FAULT_DELAY_HEADER} must be an integer from 0 to ${MAX_FAULT_DELAY_MS}`,
        Code.InvalidArgument,
      );
    }
    const target = req.header.get(FAULT_TARGET_HEADER) ?? "";
    forwardHeaders(req.contextValues, { [FAULT_DELAY_HEADER]: String(delayMs), [FAULT_TARGET_HEADER]: target });
    if (target === serviceName) await sleep(delayMs, req.signal);
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
