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
 * Timeout of a server-streaming call that sets none, in ms (RPC_STREAM_TIMEOUT_MS).
 * A stream's length grows with the data behind it: ListProfiles over 10,000
 * users took 0.7–2 s through the chain on two busy cores, past the 2 s that
 * profiles gives a unary call to users. 30 s keeps a bound on a stuck stream
 * without cutting a long one.
 */
export const DEFAULT_STREAM_TIMEOUT_MS = 30_000;

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
