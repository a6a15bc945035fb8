import type { DescService } from "@bufbuild/protobuf";
import type { StreamRequest, UnaryRequest } from "@connectrpc/connect";
import { isSpanContextValid, type Span, TraceFlags } from "@opentelemetry/api";
import { callRecordOf, currentCall } from "../call/call-record.ts";
import { outcomeCode } from "../call/codes.ts";
import {
  formatServerTiming,
  type HopTiming,
  parseServerTiming,
  SERVER_TIMING,
  SERVER_TIMING_REQUEST,
} from "./server-timing.ts";

/**
 * Collects and returns the `server-timing` trailer (server-timing.ts) for
 * calls that ask for it: the server interceptor times its own hop and answers with it followed by the
 * hops its outbound calls reported; the client interceptor gathers those
 * reports (or times an upstream that sent none) into the inbound call's list.
 */

/** The values of `x-server-timing` that ask for the trailer. */
const ASKED = /^(on|1|true)$/i;

/** `00-<trace id>-<span id>-01` of `span`, when it is sampled. */
function traceparentOf(span: Span | undefined): string | undefined {
  const sc = span?.spanContext();
  if (sc === undefined || !isSpanContextValid(sc) || (sc.traceFlags & TraceFlags.SAMPLED) === 0) return undefined;
  return `00-${sc.traceId}-${sc.spanId}-01`;
}

/**
 * The server's side of a call that asks (`x-server-timing: on`) for a
 * `server-timing` trailer, or undefined when it does not: the ask passed on
 * to the call's outbound calls, which report their hops into the call's record;
 * `value(err)` is this hop followed by theirs, named by the call's trace
 * (`span`), for the trailer (or, on errors, the error's metadata, which
 * every protocol sends as trailers).
 */
export function askedServerTiming(
  req: UnaryRequest | StreamRequest,
  serviceName: string,
  span: Span,
): { value(err: unknown): string } | undefined {
  if (!ASKED.test(req.header.get(SERVER_TIMING_REQUEST) ?? "")) return undefined;
  const started = performance.now();
  const traceparent = traceparentOf(span);
  const upstream: HopTiming[] = [];
  const record = callRecordOf(req.contextValues);
  record.hopTimings = upstream;
  record.forward({ [SERVER_TIMING_REQUEST]: "on" });
  const method = `${req.service.typeName}/${req.method.name}`;
  return {
    value: (err) =>
      formatServerTiming({
        ...(traceparent !== undefined && { traceparent }),
        hops: [
          {
            service: serviceName,
            method,
            durationMs: performance.now() - started,
            code: outcomeCode(err),
            byCaller: false,
          },
          ...upstream,
        ],
      }),
  };
}

/**
 * The client's side of the hop timings, for one outbound call: the returned
 * `end(trailer, err)` adds the hops the upstream reported to the list of the
 * inbound call being served, or, when it answered with no timing or not at
 * all, one hop timed here and named after the upstream's service
 * ({@link upstreamServiceName}); once. Undefined outside an inbound call that
 * asked for timings.
 */
export function clientHopTiming(
  req: UnaryRequest | StreamRequest,
): ((source: Headers | undefined, err: unknown) => void) | undefined {
  const hops = currentCall()?.hopTimings;
  if (hops === undefined) return undefined;
  const started = performance.now();
  let recorded = false;
  return (source, err) => {
    if (recorded) return;
    recorded = true;
    const reported = parseServerTiming(source?.get(SERVER_TIMING)).hops;
    if (reported.length > 0) hops.push(...reported);
    else
      hops.push({
        service: upstreamServiceName(req.service),
        method: `${req.service.typeName}/${req.method.name}`,
        durationMs: performance.now() - started,
        code: outcomeCode(err),
        byCaller: true,
      });
  };
}

/**
 * What to call an upstream that gave no timing of its own: the name its
 * proto package gives its service (`demo.users.v1.UserService` → `users`,
 * `grpc.health.v1.Health` → `health`), as the service would name itself.
 * Never its address: a host and port say nothing to the reader of a trace
 * and tell an outsider how the network is laid out.
 */
export function upstreamServiceName(service: DescService): string {
  const packages = service.typeName.split(".").slice(0, -1);
  const named = packages.filter((part) => !/^v\d+((alpha|beta)\d*)?$/.test(part));
  return named.at(-1) ?? service.name;
}
