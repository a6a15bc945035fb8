import { Code, ConnectError } from "@connectrpc/connect";
import { context, INVALID_SPANID, trace } from "@opentelemetry/api";
import pino, { type DestinationStream, type Logger } from "pino";
import pretty from "pino-pretty";
import { codeToString } from "../call/codes.ts";
import { redactForLog } from "./redact.ts";

export type { Logger } from "pino";

/** Log levels accepted by LOG_LEVEL. */
export const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** LOG_FORMAT: `json` (one object per line), `pretty` (for humans), or `auto` (pretty only on a TTY). */
export const LOG_FORMATS = ["auto", "json", "pretty"] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

export interface LoggerOptions {
  /** The `service` field of every line. */
  readonly service: string;
  readonly level: LogLevel;
  readonly format: LogFormat;
  /** Where lines go. Default stdout, asynchronously (flushed by {@link flushLogger}). */
  readonly destination?: DestinationStream;
}

/** Pretty lines where a human reads them: asked for, or `auto` on a terminal; JSON for everything else. */
export function usesPrettyOutput(format: LogFormat, stdoutIsTTY: boolean): boolean {
  return format === "pretty" || (format === "auto" && stdoutIsTTY);
}

/**
 * A pino logger with the platform's conventions: `service` on every line,
 * ISO time, level as a word, errors as `{type, code, message, stack, cause}`,
 * protobuf messages shown redacted (never whole, never a `debug_redact`
 * field), and pretty output only where a human reads it.
 */
export function createLogger(options: LoggerOptions): Logger {
  const usePretty = usesPrettyOutput(options.format, process.stdout.isTTY === true);
  const destination =
    options.destination ??
    (usePretty
      ? pretty({
          colorize: process.stdout.isTTY === true,
          translateTime: "HH:MM:ss.l",
          singleLine: true,
          // pino-pretty always puts `err` on a line of its own; keep it to one.
          customPrettifiers: { err: (value) => JSON.stringify(value) },
          // One line per event: "gateway  | GetProfile ok (3.2 ms)  {extra fields}".
          ignore: "pid,hostname,service,rpc_service,rpc_method,rpc_code,duration_ms,trace_id,span_id",
          messageFormat: (log, messageKey) =>
            `${String(log.service).padEnd(8)} | ${String(log[messageKey])}${
              typeof log.duration_ms === "number" ? ` (${log.duration_ms} ms)` : ""
            }`,
          sync: true,
        })
      : bufferedStdout());
  return pino(
    {
      level: options.level,
      base: { service: options.service },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: {
        level: (label) => ({ level: label }),
        log: (object) => redactForLog(object) as Record<string, unknown>,
      },
      serializers: { err: serializeError, cause: serializeError },
      // Every line written while a span is current carries its ids: per-RPC lines and handler lines alike.
      mixin: traceFields,
    },
    destination,
  );
}

/**
 * pino merges each line's fields into what this returns, so it must be a
 * fresh object. No fields outside a span, nor for the invalid (all-zero)
 * span the API hands out when no SDK is started: a zero id would group
 * unrelated lines as one trace.
 */
function traceFields(): object {
  const span = trace.getSpan(context.active());
  if (span === undefined) return {};
  const { traceId, spanId } = span.spanContext();
  if (spanId === INVALID_SPANID) return {};
  return { trace_id: traceId, span_id: spanId };
}

/** How long a log line may wait in the buffer before it is written. */
export const LOG_FLUSH_INTERVAL_MS = 100;

/**
 * stdout, written asynchronously in chunks of at least 4 KiB, and at least
 * every 100 ms: a write per line cost about 60 CPU-µs per call on the users
 * service at 5,000 calls/s (thread-pool hand-off and a syscall per line),
 * most of what logging cost. A slow reader never stalls a call.
 */
function bufferedStdout(): DestinationStream {
  const destination = pino.destination({ dest: 1, sync: false, minLength: 4096 });
  const stream = destination as unknown as { destroyed: boolean; flush(): void };
  const timer = setInterval(() => {
    if (stream.destroyed) clearInterval(timer);
    else stream.flush();
  }, LOG_FLUSH_INTERVAL_MS).unref();
  return destination;
}

/** Writes out buffered lines; call before `process.exit`. */
export function flushLogger(logger: Logger): Promise<void> {
  return new Promise((resolve) => {
    logger.flush(() => resolve());
  });
}

/**
 * Errors for log lines: type, code (for ConnectErrors), message, stack and
 * cause chain. ConnectError details and metadata are left out: they may carry
 * data that is not ours to log.
 */
export function serializeError(err: unknown, depth = 0): unknown {
  if (!(err instanceof Error)) return err;
  const out: Record<string, unknown> = { type: err.name };
  if (err instanceof ConnectError) {
    out.code = codeToString(err.code);
    out.message = err.rawMessage;
  } else {
    out.message = err.message;
    const code = (err as { code?: unknown }).code;
    if (typeof code === "string" || typeof code === "number") out.code = code;
  }
  if (err.stack && !(err instanceof ConnectError && err.code !== Code.Internal && err.code !== Code.Unknown)) {
    out.stack = err.stack;
  }
  if (err.cause !== undefined && depth < 3 && !restates(err, err.cause))
    out.cause = serializeError(err.cause, depth + 1);
  return out;
}

/** True when `cause` is an upstream error passed on unchanged: logging it again adds nothing. */
function restates(err: Error, cause: unknown): boolean {
  return (
    err instanceof ConnectError &&
    cause instanceof ConnectError &&
    err.code === cause.code &&
    err.rawMessage === cause.rawMessage &&
    cause.cause === undefined
  );
}
