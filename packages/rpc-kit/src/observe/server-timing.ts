import type { HopTiming } from "../call/call-record.ts";

export type { HopTiming };

/**
 * The `server-timing` trailer: each hop a call crossed, with its time there
 * and how it ended, returned to a caller that asks for it (request header
 * `x-server-timing: on`) in the standard Server-Timing syntax. Every server
 * appends its own entry to those its upstreams returned, so the edge's
 * caller sees the whole chain:
 *
 *     traceparent;desc="00-4bf9…-00f0…-01",
 *     gateway;dur=12.4;desc="demo.gateway.v1.GatewayService/GetProfile";code=ok,
 *     profiles;dur=8.1;desc="demo.profiles.v1.ProfileService/GetProfile";code=ok,
 *     users;dur=0.9;desc="demo.users.v1.UserService/GetUser";code=ok
 *
 * An upstream that gave no reply (deadline, lost connection) is timed by its
 * caller and marked `by=caller`, named after its service (`users`), never its address.
 * Parsing and formatting are pure, shared by the kit and the demo page.
 */

export const SERVER_TIMING = "server-timing";
/**
 * The request header that asks for it, passed on to every hop. Calls that do
 * not ask cost nothing: timing every call was measured at +10-15% CPU per
 * hop (unique trailers defeat HPACK, and each hop parses its upstream's).
 */
export const SERVER_TIMING_REQUEST = "x-server-timing";

export interface CallTimings {
  /** The W3C traceparent of the edge's server span, when the call was traced. */
  readonly traceparent?: string;
  /** Hops in call order: the hop that answered first, then what it called. */
  readonly hops: readonly HopTiming[];
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

function quoted(value: string): string {
  return `"${value.replace(/[\\"]/g, "\\$&")}"`;
}

function param(name: string, value: string): string {
  return `;${name}=${TOKEN.test(value) ? value : quoted(value)}`;
}

function metricName(name: string): string {
  // Server-Timing names are tokens; an address like [::1]:50051 is not one.
  const token = name.replace(/[^!#$%&'*+\-.^_`|~0-9A-Za-z]/g, "_") || "_";
  return token === "traceparent" ? "traceparent_" : token;
}

function duration(ms: number): string {
  return String(Number.isFinite(ms) && ms > 0 ? Math.round(ms * 100) / 100 : 0);
}

export function formatServerTiming(timings: CallTimings): string {
  const entries = timings.hops.map(
    (hop) =>
      `${metricName(hop.service)};dur=${duration(hop.durationMs)}` +
      param("desc", hop.method) +
      param("code", hop.code) +
      (hop.byCaller ? param("by", "caller") : ""),
  );
  if (timings.traceparent !== undefined) entries.unshift(`traceparent${param("desc", timings.traceparent)}`);
  return entries.join(", ");
}

/**
 * Reads a `server-timing` value. Entries other than hops (a browser or proxy
 * may add its own, like `cache;desc=hit`) are kept out of `hops` unless they
 * carry a duration and a method.
 */
export function parseServerTiming(value: string | null | undefined): CallTimings {
  const hops: HopTiming[] = [];
  let traceparent: string | undefined;
  for (const entry of splitEntries(value ?? "")) {
    const { name, params } = entry;
    if (name === "traceparent") {
      const desc = params.get("desc");
      if (desc !== undefined) traceparent = desc;
      continue;
    }
    const rawDur = params.get("dur") ?? "";
    const method = params.get("desc");
    if (!/^\d+(\.\d+)?$/.test(rawDur) || method === undefined) continue;
    const dur = Number(rawDur);
    hops.push({
      service: name,
      method,
      durationMs: dur,
      code: params.get("code") ?? "unknown",
      byCaller: params.get("by") === "caller",
    });
  }
  return traceparent === undefined ? { hops } : { traceparent, hops };
}

interface Entry {
  name: string;
  params: Map<string, string>;
}

/** Splits `a;x=1;y="p, q", b` into entries, honouring quoted strings. */
function splitEntries(value: string): Entry[] {
  const entries: Entry[] = [];
  let i = 0;
  const skipSpace = () => {
    while (i < value.length && (value[i] === " " || value[i] === "\t")) i++;
  };
  const readToken = () => {
    const start = i;
    while (i < value.length && !";,= \t".includes(value[i] as string)) i++;
    return value.slice(start, i);
  };
  const readValue = () => {
    if (value[i] !== '"') return readToken();
    let out = "";
    i++;
    while (i < value.length && value[i] !== '"') {
      if (value[i] === "\\") i++;
      out += value[i] ?? "";
      i++;
    }
    i++; // closing quote
    return out;
  };
  while (i < value.length) {
    skipSpace();
    const name = readToken();
    const params = new Map<string, string>();
    skipSpace();
    while (value[i] === ";") {
      i++;
      skipSpace();
      const key = readToken().toLowerCase();
      skipSpace();
      let v = "";
      if (value[i] === "=") {
        i++;
        skipSpace();
        v = readValue();
      }
      // The first occurrence of a parameter wins, as the spec says.
      if (key && !params.has(key)) params.set(key, v);
      skipSpace();
    }
    if (name) entries.push({ name, params });
    // Skip anything malformed up to the next entry.
    while (i < value.length && value[i] !== ",") i++;
    i++;
  }
  return entries;
}
