import type { Code } from "@connectrpc/connect";
import { codeToString as connectCodeToString } from "@connectrpc/connect/protocol-connect";

/**
 * Code names as Connect writes them on the wire and as logs (and later
 * metrics) show them: `ok` for success, then `not_found`, `deadline_exceeded`…
 */
export function codeToString(code: Code | 0): string {
  return code === 0 ? "ok" : connectCodeToString(code);
}
