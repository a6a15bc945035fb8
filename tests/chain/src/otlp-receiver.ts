/**
 * A minimal OTLP/HTTP trace receiver for tests: accepts `POST /v1/traces`
 * in either OTLP encoding, protobuf (the SDK's default, as deployed) or JSON,
 * and keeps every span, flattened, with its service name.
 */
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { decodeTraceRequest } from "./otlp-protobuf.ts";

export interface ReceivedSpan {
  service: string;
  traceId: string;
  spanId: string;
  parentSpanId: string;
  /** The W3C tracestate the span carried, "" when none. */
  traceState: string;
  name: string;
  /** 1 internal, 2 server, 3 client */
  kind: number;
  startNs: bigint;
  endNs: bigint;
  attributes: Record<string, string | number | boolean>;
  events: { name: string; attributes: Record<string, string | number | boolean> }[];
  status: { code?: number; message?: string };
  /** The raw JSON of the span, for "does X appear anywhere" checks. */
  raw: string;
}

type OtlpValue = { stringValue?: string; intValue?: string | number; boolValue?: boolean; doubleValue?: number };
type OtlpAttribute = { key: string; value: OtlpValue };

function attributesOf(list: OtlpAttribute[] | undefined): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const { key, value } of list ?? []) {
    out[key] =
      value.stringValue ??
      (value.intValue !== undefined ? Number(value.intValue) : undefined) ??
      value.boolValue ??
      value.doubleValue ??
      "";
  }
  return out;
}

export interface OtlpReceiver {
  readonly endpoint: string;
  readonly spans: ReceivedSpan[];
  /** Every request received, as `METHOD /path content-type`. */
  readonly requests: string[];
  close(): Promise<void>;
}

/**
 * Starts a receiver on `port` of `host` (default: any free port on
 * 127.0.0.1). `{ port: 4318, host: "::" }` is where an SDK sends when no
 * endpoint is set (http://localhost:4318, either address family).
 */
export async function startOtlpReceiver({ port = 0, host = "127.0.0.1" } = {}): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    requests.push(`${req.method} ${req.url} ${req.headers["content-type"] ?? ""}`);
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const type = req.headers["content-type"] ?? "";
      const json = type.startsWith("application/json");
      if (req.method !== "POST" || req.url !== "/v1/traces" || !(json || type.startsWith("application/x-protobuf"))) {
        res.writeHead(415).end();
        return;
      }
      const raw = Buffer.concat(chunks);
      const body = (json ? JSON.parse(raw.toString("utf8")) : decodeTraceRequest(raw)) as {
        resourceSpans?: {
          resource?: { attributes?: OtlpAttribute[] };
          scopeSpans?: { spans?: Record<string, unknown>[] }[];
        }[];
      };
      for (const rs of body.resourceSpans ?? []) {
        const service = String(attributesOf(rs.resource?.attributes)["service.name"] ?? "");
        for (const ss of rs.scopeSpans ?? []) {
          for (const s of ss.spans ?? []) {
            spans.push({
              service,
              traceId: String(s.traceId),
              spanId: String(s.spanId),
              parentSpanId: String(s.parentSpanId ?? ""),
              traceState: String(s.traceState ?? ""),
              name: String(s.name),
              kind: Number(s.kind),
              startNs: BigInt(String(s.startTimeUnixNano)),
              endNs: BigInt(String(s.endTimeUnixNano)),
              attributes: attributesOf(s.attributes as OtlpAttribute[]),
              events: ((s.events as { name: string; attributes?: OtlpAttribute[] }[]) ?? []).map((e) => ({
                name: e.name,
                attributes: attributesOf(e.attributes),
              })),
              status: (s.status as { code?: number; message?: string }) ?? {},
              raw: JSON.stringify(s),
            });
          }
        }
      }
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, resolve);
  });
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    spans,
    requests,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/**
 * Env that makes a service export to `receiver`, quickly: in the SDK's
 * default encoding (protobuf), as compose and Kubernetes deploy it, unless
 * `protocol` says `http/json`.
 */
export function exportTo(
  receiver: OtlpReceiver,
  protocol: "http/protobuf" | "http/json" = "http/protobuf",
): Record<string, string> {
  return {
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
    ...(protocol === "http/json" && { OTEL_EXPORTER_OTLP_PROTOCOL: protocol }),
    OTEL_BSP_SCHEDULE_DELAY: "50",
  };
}
