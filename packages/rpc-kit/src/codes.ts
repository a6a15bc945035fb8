import { Code } from "@connectrpc/connect";

/**
 * Code names as Connect writes them on the wire and as logs and metrics show
 * them: `ok`, `not_found`, `deadline_exceeded`…
 */
const names: Record<number, string> = {
  0: "ok",
  [Code.Canceled]: "canceled",
  [Code.Unknown]: "unknown",
  [Code.InvalidArgument]: "invalid_argument",
  [Code.DeadlineExceeded]: "deadline_exceeded",
  [Code.NotFound]: "not_found",
  [Code.AlreadyExists]: "already_exists",
  [Code.PermissionDenied]: "permission_denied",
  [Code.ResourceExhausted]: "resource_exhausted",
  [Code.FailedPrecondition]: "failed_precondition",
  [Code.Aborted]: "aborted",
  [Code.OutOfRange]: "out_of_range",
  [Code.Unimplemented]: "unimplemented",
  [Code.Internal]: "internal",
  [Code.Unavailable]: "unavailable",
  [Code.DataLoss]: "data_loss",
  [Code.Unauthenticated]: "unauthenticated",
};

/** `ok` for 0, the Connect name of any other code. */
export function codeToString(code: Code | 0): string {
  return names[code] ?? `code_${code}`;
}
