import type { Logger } from "../observe/logger.ts";
import { recordLimitRefusal } from "../observe/metrics.ts";
import type { LimitName } from "./limit-error.ts";
import { LogThrottle } from "./log-throttle.ts";

/** Counts a refusal on /metrics and logs it, at most once per limit and client per interval. */
export type LimitReporter = (limit: LimitName, client: string) => void;

/** The setting behind each limit, named in the log line so that an operator knows what to raise. */
export const LIMIT_SETTINGS: Readonly<Record<LimitName, string>> = {
  connections: "MAX_CONNECTIONS",
  connections_per_client: "MAX_CONNECTIONS_PER_CLIENT",
  headers_timeout: "HEADERS_TIMEOUT_MS",
  request_timeout: "REQUEST_TIMEOUT_MS",
  buffered_bytes: "MAX_BUFFERED_REQUEST_BYTES",
  buffered_bytes_per_client: "MAX_BUFFERED_REQUEST_BYTES_PER_CLIENT",
  reset_streams: "MAX_RESET_STREAMS_PER_SECOND",
  health_watches: "MAX_HEALTH_WATCHES",
  pings: "MIN_PING_INTERVAL_MS",
  control_bytes: "MAX_CONTROL_BYTES_PER_SECOND",
  header_bytes: "MAX_HEADER_BYTES",
  json_depth: "MAX_JSON_DEPTH",
  message_size: "MAX_MESSAGE_BYTES",
  pipelining: "MAX_PIPELINED_REQUESTS",
};

export function createLimitReporter(logger: Logger, throttle = new LogThrottle()): LimitReporter {
  return (limit, client) => {
    recordLimitRefusal(limit);
    const refused = throttle.take(`${limit} ${client}`);
    if (refused === undefined) return;
    logger.warn(
      { limit, client, refused, setting: LIMIT_SETTINGS[limit], interval_s: throttle.intervalMs / 1000 },
      `limit reached: ${limit}`,
    );
  };
}
