import { type Code, ConnectError } from "@connectrpc/connect";
import { codeToString as connectCodeToString } from "@connectrpc/connect/protocol-connect";

/**
 * Code names as Connect writes them on the wire and as logs (and later
 * metrics) show them: `ok` for success, then `not_found`, `deadline_exceeded`…
 */
export function codeToString(code: Code | 0): string {
  return code === 0 ? "ok" : connectCodeToString(code);
}

/** The code of a call's outcome: `ok`, or the error's. */
export function outcomeCode(err: unknown): string {
  return err === undefined ? "ok" : codeToString(ConnectError.from(err).code as Code);
}
