/**
 * node bench/src/pitfalls/lazy-headers.ts [--calls 200000]
 *
 * What it costs to turn the metadata of a typical inbound gRPC call (the
 * headers grpc-js hands a server) into a fetch `Headers` for every call, next
 * to reading the three headers tracing needs straight from the metadata (what
 * rpc-kit's LazyHeaders does until someone asks for more). CPU time of this
 * process, one core; bounded by --calls (at most 10,000,000).
 */
import { parseArgs } from "node:util";
import { Metadata } from "@grpc/grpc-js";

const { values } = parseArgs({ options: { calls: { type: "string" } } });
const calls = Math.min(Number(values.calls ?? 200_000), 10_000_000);

// What a grpc-js client and the kit send with a call.
const metadata = Metadata.fromHttp2Headers({
  "content-type": "application/grpc",
  te: "trailers",
  "user-agent": "grpc-node-js/1.14.7",
  "grpc-accept-encoding": "identity,deflate,gzip",
  "grpc-timeout": "1990m",
  traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
  tracestate: "",
  "x-server-timing": "on",
});

function convert(m: Metadata): Headers {
  const headers = new Headers();
  for (const [key, value] of Object.entries(m.getMap())) {
    headers.append(key, typeof value === "string" ? value : Buffer.from(value).toString("base64"));
  }
  return headers;
}

function readThree(m: Metadata): number {
  let n = 0;
  for (const key of ["traceparent", "tracestate", "x-server-timing"]) n += m.get(key).length;
  return n;
}

function cpuMicrosPerCall(fn: () => unknown): number {
  for (let i = 0; i < 10_000; i++) fn();
  const start = process.cpuUsage();
  for (let i = 0; i < calls; i++) fn();
  const used = process.cpuUsage(start);
  return (used.user + used.system) / calls;
}

const full = cpuMicrosPerCall(() => convert(metadata).get("traceparent"));
const lazy = cpuMicrosPerCall(() => readThree(metadata));
say(`full conversion to Headers, then one read: ${full.toFixed(2)} CPU-µs per call`);
say(`three reads from the metadata:             ${lazy.toFixed(3)} CPU-µs per call`);
function say(line: string): void {
  process.stdout.write(`${line}\n`);
}
