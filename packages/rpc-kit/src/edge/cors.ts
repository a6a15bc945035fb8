import { cors as connectCors } from "@connectrpc/connect";
import { FAULT_CODE_HEADER, FAULT_DELAY_HEADER, FAULT_TARGET_HEADER } from "../call/fault-injection.ts";
import type { Config, Setting } from "../config/config.ts";
import { SERVER_TIMING, SERVER_TIMING_REQUEST } from "../observe/server-timing.ts";
import type { EdgeRequest, EdgeResponse } from "./edge-http.ts";

/**
 * CORS for the edge: pages from the origins in CORS_ALLOWED_ORIGINS may call
 * the API with Connect or gRPC-Web; a request from any other origin is
 * refused with 403 before it reaches a handler, so a page elsewhere cannot
 * make the edge act even when the browser would only hide the answer.
 * Same-origin requests (the demo page) and requests without an `Origin`
 * (curl, servers) pass untouched.
 */

export const ORIGIN_NOT_ALLOWED = "origin not allowed";

/** Request headers a page may send: Connect's and gRPC-Web's, credentials, trace context, fault injection, the ask for hop timings. */
export const CORS_ALLOWED_HEADERS = [
  ...connectCors.allowedHeaders,
  "Authorization",
  "Traceparent",
  "Tracestate",
  "Baggage",
  FAULT_DELAY_HEADER,
  FAULT_CODE_HEADER,
  FAULT_TARGET_HEADER,
  SERVER_TIMING_REQUEST,
];

/** Response headers a page may read: the status of gRPC-Web, and the hop timings in either place. */
export const CORS_EXPOSED_HEADERS = [
  ...connectCors.exposedHeaders,
  SERVER_TIMING,
  `trailer-${SERVER_TIMING}`,
  "WWW-Authenticate",
  "Retry-After",
];

/** How long a browser may cache a preflight answer: two hours, Chromium's cap. */
const PREFLIGHT_MAX_AGE_SECONDS = 7200;

/** `https://app.example.com:8443`, normalized; throws when `raw` is anything more or less than an origin. */
export function parseOrigin(raw: string): string {
  const problem = `"${raw}" is not an origin (scheme://host[:port], no path), like https://app.example.com`;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new Error(problem);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new Error(problem);
  const onlyOrigin = url.pathname === "/" && !/[?#]/.test(raw) && url.username === "" && url.password === "";
  if (!onlyOrigin || /^[a-z]+:\/\/[^/]*\/./i.test(raw)) throw new Error(problem);
  // As a browser writes it in Origin: default port dropped, host lower-case (punycode).
  return url.origin;
}

function originsSetting(env: string, doc: string): Setting<readonly string[]> {
  return {
    env,
    doc,
    defaultText: undefined,
    parse(raw) {
      const items = (raw ?? "")
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean);
      if (items.includes("*")) {
        if (items.length > 1) throw new Error("* allows every origin: list origins or *, not both");
        return ["*"];
      }
      const bad: string[] = [];
      const origins = items.flatMap((item) => {
        try {
          return [parseOrigin(item)];
        } catch (err) {
          bad.push((err as Error).message);
          return [];
        }
      });
      if (bad.length > 0) throw new Error(bad.join("; "));
      return origins;
    },
  };
}

export function corsSettings() {
  return {
    corsAllowedOrigins: originsSetting(
      "CORS_ALLOWED_ORIGINS",
      "origins (scheme://host[:port], comma-separated) whose pages may call the edge's API; * = any; unset = same origin only",
    ),
  };
}

export type CorsSettings = Config<ReturnType<typeof corsSettings>>;

/**
 * Answers what CORS decides before the API sees a request: a preflight
 * (204 for an allowed origin) or a refusal (403). Returns true when it
 * answered; otherwise the request goes on, with the CORS headers set that
 * let an allowed page read the answer.
 */
export type CorsGate = (req: EdgeRequest, res: EdgeResponse) => boolean;

export function createCorsGate(settings: CorsSettings): CorsGate {
  const anyOrigin = settings.corsAllowedOrigins.includes("*");
  const allowed = new Set(settings.corsAllowedOrigins);
  const allowHeaders = CORS_ALLOWED_HEADERS.join(", ");
  const exposeHeaders = CORS_EXPOSED_HEADERS.join(", ");
  const allowMethods = connectCors.allowedMethods.join(", ");
  return (req, res) => {
    const origin = req.headers.origin;
    if (origin === undefined || isSameOrigin(origin, req)) return false;
    const preflight = req.method === "OPTIONS" && req.headers["access-control-request-method"] !== undefined;
    if (!anyOrigin && !allowed.has(origin)) {
      res.writeHead(403, { "content-type": "text/plain; charset=utf-8", vary: "origin" });
      res.end(`${ORIGIN_NOT_ALLOWED}: ${origin} is not in CORS_ALLOWED_ORIGINS\n`);
      return true;
    }
    if (preflight) {
      res.writeHead(204, {
        "access-control-allow-origin": origin,
        "access-control-allow-methods": allowMethods,
        "access-control-allow-headers": allowHeaders,
        "access-control-max-age": String(PREFLIGHT_MAX_AGE_SECONDS),
        vary: "origin, access-control-request-method, access-control-request-headers",
      });
      res.end();
      return true;
    }
    res.setHeader("access-control-allow-origin", origin);
    res.setHeader("access-control-expose-headers", exposeHeaders);
    res.setHeader("vary", "origin");
    return false;
  };
}

/** The page's origin names the host it was served from (scheme aside: TLS may end at a proxy). */
function isSameOrigin(origin: string, req: EdgeRequest): boolean {
  const host = (req.headers[":authority"] as string | undefined) ?? req.headers.host;
  if (host === undefined) return false;
  try {
    return new URL(origin).host === new URL(`http://${host}`).host;
  } catch {
    return false;
  }
}
