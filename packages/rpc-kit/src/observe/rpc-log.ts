import type { DescMethod } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext, type StreamRequest, type UnaryRequest } from "@connectrpc/connect";
import pino, { type Level, type Logger } from "pino";
import { callRecordKey, callRecordOf } from "../call/call-record.ts";
import { codeToString } from "../call/codes.ts";
import { upstreamOriginOf } from "../call/errors.ts";

/**
 * One log line per RPC served: `rpc_service`, `rpc_method`, `rpc_code`,
 * `duration_ms` (and, for an error, `err` with its cause). Never the request
 * or response body. Streams are logged when they end.
 */

const silent = pino({ level: "silent" });

/**
 * The logger for lines a handler writes about the call it serves: the
 * service's logger with the call's method fields. Silent where no server set
 * one (handlers called directly in tests).
 */
export function requestLogger(ctx: Pick<HandlerContext, "values" | "method">): Logger {
  const base = ctx.values.get(callRecordKey)?.logger;
  return base ? base.child(rpcFields(ctx.method)) : silent;
}

function rpcFields(method: DescMethod) {
  return { rpc_service: method.parent.typeName, rpc_method: method.name };
}

/** Log level of a finished call: error for our own faults, warn for dependency trouble, info otherwise. */
export function levelForCode(code: Code | 0): Level {
  switch (code) {
    case Code.Internal:
    case Code.Unknown:
    case Code.DataLoss:
    case Code.Unimplemented:
      return "error";
    case Code.Unavailable:
    case Code.DeadlineExceeded:
    case Code.ResourceExhausted:
      return "warn";
    default:
      return "info";
  }
}

/**
 * The per-RPC log line of one inbound call, written by `end` (with the
 * number of messages a stream sent); sets up the handler's request logger
 * on the call's record; the line reports the database time its queries added there.
 */
export function startCallLog(
  req: UnaryRequest | StreamRequest,
  logger: Logger,
): (err: unknown, messages?: number) => void {
  const record = callRecordOf(req.contextValues);
  record.logger = logger;
  const start = performance.now();
  return (err, messages) => {
    const code = err === undefined ? 0 : ConnectError.from(err).code;
    const level = levelForCode(code);
    if (!logger.isLevelEnabled(level)) return;
    const fields: Record<string, unknown> = {
      ...rpcFields(req.method),
      rpc_code: codeToString(code),
      duration_ms: Math.round((performance.now() - start) * 1000) / 1000,
    };
    if (messages !== undefined) fields.messages_sent = messages;
    const database = record.database;
    if (database !== undefined && database.queries > 0) {
      fields.db_ms = Math.round(database.ms * 1000) / 1000;
      fields.db_queries = database.queries;
    }
    if (err !== undefined) {
      fields.err = err;
      const origin = upstreamOriginOf((err as { cause?: unknown }).cause);
      if (origin) fields.upstream = origin.procedure;
    }
    logger[level](fields, `${req.method.name} ${codeToString(code)}`);
  };
}
