import { Code, ConnectError } from "@connectrpc/connect";

/**
 * The bounds a server enforces against what clients send (issue 13), by the
 * name they are counted under in `rpc_kit_server_limit_refusals_total{limit}`
 * and logged with.
 */
export type LimitName =
  | "connections"
  | "connections_per_client"
  | "headers_timeout"
  | "request_timeout"
  | "buffered_bytes"
  | "buffered_bytes_per_client"
  | "reset_streams"
  | "health_watches"
  | "pings"
  | "control_bytes"
  | "header_bytes"
  | "json_depth"
  | "message_size"
  | "pipelining";

/**
 * A call refused by one of the bounds: the caller gets its code and message,
 * the operator its name. A plain ConnectError to every reader: ConnectError's
 * `instanceof` goes by name and shape (so `instanceof LimitError` would too:
 * test with {@link limitOf}).
 */
export class LimitError extends ConnectError {
  readonly limit: LimitName;

  constructor(limit: LimitName, message: string, code: Code = Code.ResourceExhausted) {
    super(message, code);
    this.limit = limit;
  }
}

/** The bound that refused `err`, when it is a LimitError. */
export function limitOf(err: unknown): LimitName | undefined {
  const limit = (err as { limit?: unknown } | undefined)?.limit;
  return err instanceof ConnectError && typeof limit === "string" ? (limit as LimitName) : undefined;
}

/** The error of a lease that could not grow, by the bound that refused it. */
export function bufferedBytesError(limit: "buffered_bytes" | "buffered_bytes_per_client"): LimitError {
  return new LimitError(
    limit,
    limit === "buffered_bytes"
      ? "server is busy: too many request bytes buffered"
      : "too many request bytes buffered for this client",
  );
}

/** A message past MAX_MESSAGE_BYTES, as received or once decompressed. */
export function messageSizeError(maxBytes: number, decompressed = false): LimitError {
  return new LimitError(
    "message_size",
    decompressed
      ? `message larger than ${maxBytes} bytes after decompression`
      : `request larger than ${maxBytes} bytes`,
  );
}
