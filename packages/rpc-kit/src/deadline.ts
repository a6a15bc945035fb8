import { Code, ConnectError } from "@connectrpc/connect";

/**
 * Deadline math for outbound calls.
 *
 * Connect treats `timeoutMs <= 0` as "no deadline" and rejects fractions, so
 * every value that reaches a transport goes through here: floored, capped by
 * the inbound deadline minus a margin, and never zero or negative.
 */

/** Default timeout of an outbound call when neither the caller nor an inbound deadline sets one. */
export const DEFAULT_CALL_TIMEOUT_MS = 5_000;

/**
 * Time kept back from the inbound deadline for the response to travel back,
 * so that the upstream's DeadlineExceeded reaches us before our own caller
 * gives up.
 */
export const DEFAULT_DEADLINE_MARGIN_MS = 10;

/** The largest timeout the gRPC wire format carries (8 digits of ms). */
export const MAX_TIMEOUT_MS = 99_999_999;

export interface OutboundTimeoutInput {
  /** The timeout the caller asked for, if any. */
  requestedMs: number | undefined;
  /** Used when the caller asked for none. */
  defaultMs: number;
  /** Absolute deadline (epoch ms) of the inbound call being served, if any. */
  inboundDeadline: number | undefined;
  marginMs: number;
  now: number;
}

/**
 * Returns the whole number of milliseconds an outbound call may take: the
 * smaller of the requested (or default) timeout and the inbound budget minus
 * the margin. Throws DeadlineExceeded when that budget is already spent, so
 * that a doomed call is never sent.
 */
export function outboundTimeoutMs(input: OutboundTimeoutInput): number {
  const own = input.requestedMs !== undefined && input.requestedMs > 0 ? input.requestedMs : input.defaultMs;
  let timeout = Math.min(own, MAX_TIMEOUT_MS);
  if (input.inboundDeadline !== undefined) {
    const budget = input.inboundDeadline - input.now - input.marginMs;
    if (budget < timeout) timeout = budget;
  }
  timeout = Math.floor(timeout);
  if (timeout < 1) {
    throw new ConnectError(
      "deadline exceeded before the call was sent: no time left in the caller's budget",
      Code.DeadlineExceeded,
    );
  }
  return timeout;
}
