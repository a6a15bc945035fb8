/**
 * npm run load -- [--target URL] [--service gateway|profiles|users] [--rpc GetProfile]
 *                 [--data '{"userId":"u-1"}'] [--protocol grpc|connect]
 *                 [--concurrency 16] [--duration 10 | --requests N] [--rate R]
 *                 [--timeout 5000] [--json]
 *
 * Any RPC of the demo, through the gateway (gRPC or Connect JSON) or straight
 * at an internal service (gRPC). One client for the whole run, never a
 * connection per call. Closed loop by default; --rate makes it open loop.
 * A live progress line on a TTY, then a table (or JSON with --json).
 */
import { parseArgs } from "node:util";
import { type DescMethod, type DescService, fromJson, type JsonValue } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { GatewayService } from "@demo/proto/demo/gateway/v1/gateway_pb";
import { ProfileService } from "@demo/proto/demo/profiles/v1/profiles_pb";
import { UserService } from "@demo/proto/demo/users/v1/users_pb";
import { codeToString } from "@demo/rpc-kit/observe";
import { type LoadReport, runLoad } from "./load-core.ts";

/** Never more than these, whatever was asked. */
const MAX_REQUESTS = 10_000_000;
const MAX_SECONDS = 3_600;

const SERVICES: Record<string, { desc: DescService; port: number; rpc: string; data: string }> = {
  gateway: { desc: GatewayService, port: 8080, rpc: "GetProfile", data: '{"userId":"u-1"}' },
  profiles: { desc: ProfileService, port: 50052, rpc: "GetProfile", data: '{"userId":"u-1"}' },
  users: { desc: UserService, port: 50051, rpc: "GetUser", data: '{"id":"u-1"}' },
};

function fail(message: string): never {
  process.stderr.write(`load: ${message}\n`);
  process.exit(2);
}

const { values } = parseArgs({
  options: {
    target: { type: "string" },
    service: { type: "string", default: "gateway" },
    rpc: { type: "string" },
    data: { type: "string" },
    protocol: { type: "string", default: "grpc" },
    concurrency: { type: "string", default: "16" },
    duration: { type: "string" },
    requests: { type: "string" },
    rate: { type: "string" },
    timeout: { type: "string", default: "5000" },
    json: { type: "boolean", default: false },
    help: { type: "boolean", default: false },
  },
  strict: true,
});

if (values.help) {
  process.stdout.write(
    "npm run load -- [--target URL] [--service gateway|profiles|users] [--rpc NAME] [--data JSON] [--protocol grpc|connect] [--concurrency N] [--duration S | --requests N] [--rate R] [--timeout MS] [--json]\n",
  );
  process.exit(0);
}

const service = SERVICES[values.service ?? ""] ?? fail(`--service must be one of ${Object.keys(SERVICES).join(", ")}`);
const method: DescMethod =
  service.desc.methods.find((m) => m.name === (values.rpc ?? service.rpc)) ??
  fail(
    `${service.desc.typeName} has no method ${values.rpc}; it has ${service.desc.methods.map((m) => m.name).join(", ")}`,
  );
if (method.methodKind !== "unary" && method.methodKind !== "server_streaming")
  fail(`${method.name} is not unary or server-streaming`);
if (values.protocol !== "grpc" && values.protocol !== "connect") fail("--protocol must be grpc or connect");
if (values.protocol === "connect" && values.service !== "gateway") fail("only the gateway speaks the Connect protocol");

const positive = (name: string, raw: string | undefined, max: number): number | undefined => {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) fail(`--${name} must be a positive number`);
  return Math.min(n, max);
};
const concurrency = Math.floor(positive("concurrency", values.concurrency, 10_000) ?? 16);
const requests = Math.floor(positive("requests", values.requests, MAX_REQUESTS) ?? MAX_REQUESTS);
const seconds = positive("duration", values.duration, MAX_SECONDS) ?? (values.requests ? MAX_SECONDS : 10);
const rate = positive("rate", values.rate, 1_000_000);
const timeoutMs = Math.floor(positive("timeout", values.timeout, 600_000) ?? 5000);

let request: unknown;
try {
  // The service's sample request fits its default RPC only; any other starts from an empty request.
  const data = values.data ?? (method.name === service.rpc ? service.data : "{}");
  request = fromJson(method.input, JSON.parse(data) as JsonValue);
} catch (err) {
  fail(`--data is not a valid ${method.input.typeName}: ${(err as Error).message}`);
}

const baseUrl = values.target ?? `http://localhost:${service.port}`;
const transport =
  values.protocol === "connect"
    ? createConnectTransport({ baseUrl, httpVersion: "1.1" })
    : createGrpcTransport({ baseUrl });
const client = createClient(service.desc, transport) as unknown as Record<
  string,
  (req: unknown, options: { timeoutMs: number }) => Promise<unknown> | AsyncIterable<unknown>
>;
const fn = client[method.localName] as (req: unknown, options: { timeoutMs: number }) => unknown;

async function callOnce(): Promise<string> {
  try {
    const result = fn(request, { timeoutMs });
    if (method.methodKind === "server_streaming") {
      for await (const _ of result as AsyncIterable<unknown>) {
        // every message is read; the call counts once
      }
    } else {
      await result;
    }
    return "ok";
  } catch (err) {
    return codeToString(ConnectError.from(err, Code.Unknown).code);
  }
}

const tty = process.stderr.isTTY === true && !values.json;
const report: LoadReport = await runLoad(callOnce, {
  concurrency,
  requests,
  seconds,
  ...(rate !== undefined && { rate }),
  ...(tty && {
    onProgress: (p) =>
      process.stderr.write(
        `\r${p.elapsedSeconds.toFixed(0).padStart(4)} s  ${p.completed.toLocaleString("en").padStart(10)} calls  ${p.recentRps.toFixed(0).padStart(7)} /s  ${p.errors} errors   `,
      ),
  }),
});
if (tty) process.stderr.write("\n");

/** Writes `text` and exits once it is out (stdout to a pipe is asynchronous). */
function finish(text: string): void {
  process.stdout.write(text, () => process.exit(0));
}

if (values.json) {
  finish(
    `${JSON.stringify({ target: baseUrl, rpc: `${service.desc.typeName}/${method.name}`, protocol: values.protocol, concurrency, rate: rate ?? null, ...report })}\n`,
  );
} else {
  const l = report.latencyMs;
  finish(
    [
      `${service.desc.typeName}/${method.name} at ${baseUrl} over ${values.protocol}, ${rate ? `${rate}/s open loop, at most ${concurrency} in flight` : `${concurrency} in flight`}`,
      "",
      "  requests/s      p50      p90      p99      max   calls",
      `  ${report.rps.toFixed(0).padStart(10)} ${l.p50.toFixed(2).padStart(8)} ${l.p90.toFixed(2).padStart(8)} ${l.p99.toFixed(2).padStart(8)} ${l.max.toFixed(2).padStart(8)}   ${report.requests}  (ms)`,
      "",
      ...Object.entries(report.codes)
        .sort((a, b) => b[1] - a[1])
        .map(([code, n]) => `  ${code.padEnd(20)} ${n}`),
      ...(report.dropped ? [`  not started (too many in flight) ${report.dropped}`] : []),
      "",
    ].join("\n"),
  );
}
