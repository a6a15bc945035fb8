/**
 * The observer of a hostile test, run in a worker thread so that the
 * attacker's work on the main thread never delays it: a legitimate client
 * from 127.0.0.1 calling GetProfile through the gateway (gRPC over HTTP/2
 * and Connect over HTTP/1.1, one call at a time each), `/healthz` of every
 * admin port, and RSS, open fds and pooled connections of every process,
 * sampled until the main thread posts "stop"; then it posts its report.
 */
import * as http from "node:http";
import { parentPort, workerData } from "node:worker_threads";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { GatewayService } from "@demo/proto/demo/gateway/v1/gateway_pb";
import { connectionLocalPorts, cpuMicros, openFds, rssBytes } from "@demo/rpc-kit/testing";

export interface ObserverConfig {
  readonly processes: readonly { name: string; pid: number; adminPort: number }[];
  readonly gatewayPort: number;
  /** Pause between two calls of one legitimate client. */
  readonly legitIntervalMs: number;
  /** Deadline of each legitimate call: a call that hangs fails with DeadlineExceeded after it. */
  readonly legitTimeoutMs: number;
  /** Off for tests with no legitimate traffic of this kind. */
  readonly legit: boolean;
  readonly sampleEveryMs: number;
  readonly healthzEveryMs: number;
  readonly healthzTimeoutMs: number;
  /** Connections a process holds to a port (the gateway's pooled connection to profiles...). */
  readonly pools: readonly { name: string; pid: number; remotePort: number }[];
}

export interface LegitCall {
  /** Date.now() when it started. */
  readonly at: number;
  readonly ms: number;
  readonly protocol: "grpc" | "connect-h1";
  /** Code name of the failure ("internal", "deadline_exceeded", "wrong answer"), undefined when it succeeded. */
  readonly error?: string;
  readonly message?: string;
}

export interface ProcessSamples {
  readonly name: string;
  peakRss: number;
  peakRssAt: number;
  peakFds: number;
  peakFdsAt: number;
  /** Date.now() of the first sample that found no process. */
  goneAt?: number;
  /** [Date.now(), rss bytes, fds, CPU time used so far in µs] every sample. */
  readonly series: [number, number, number, number][];
}

export interface HealthzStats {
  polls: number;
  maxMs: number;
  readonly failures: { at: number; error: string }[];
}

export interface PoolStats {
  /** Every local port seen, in order of first sight: one per connection the process opened. */
  readonly ports: number[];
  /** Samples that found no connection at all. */
  emptySamples: number;
  samples: number;
}

export interface ObserverReport {
  readonly startedAt: number;
  readonly stoppedAt: number;
  readonly calls: LegitCall[];
  readonly processes: Record<string, ProcessSamples>;
  readonly healthz: Record<string, HealthzStats>;
  readonly pools: Record<string, PoolStats>;
}

const config = workerData as ObserverConfig;
const startedAt = Date.now();
let stopping = false;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const calls: LegitCall[] = [];
const processes: Record<string, ProcessSamples> = {};
const healthz: Record<string, HealthzStats> = {};
const pools: Record<string, PoolStats> = {};

function codeName(err: unknown): { error: string; message: string } {
  if (err instanceof ConnectError) return { error: Code[err.code] ?? String(err.code), message: err.rawMessage };
  return { error: "thrown", message: String(err) };
}

async function legitLoop(protocol: LegitCall["protocol"]): Promise<void> {
  const baseUrl = `http://127.0.0.1:${config.gatewayPort}`;
  const transport =
    protocol === "grpc" ? createGrpcTransport({ baseUrl }) : createConnectTransport({ baseUrl, httpVersion: "1.1" });
  const client = createClient(GatewayService, transport);
  while (!stopping) {
    const at = Date.now();
    const t0 = performance.now();
    let failure: { error: string; message: string } | undefined;
    try {
      const res = await client.getProfile({ userId: "u-1" }, { timeoutMs: config.legitTimeoutMs });
      if (res.profile?.user?.name !== "Ada Lovelace") {
        failure = { error: "wrong answer", message: JSON.stringify(res.profile?.user?.name) };
      }
    } catch (err) {
      failure = codeName(err);
    }
    calls.push({ at, ms: performance.now() - t0, protocol, ...failure });
    await sleep(config.legitIntervalMs);
  }
}

async function sampleLoop(): Promise<void> {
  for (const p of config.processes) {
    processes[p.name] = { name: p.name, peakRss: 0, peakRssAt: 0, peakFds: 0, peakFdsAt: 0, series: [] };
  }
  for (const pool of config.pools) pools[pool.name] = { ports: [], emptySamples: 0, samples: 0 };
  let n = 0;
  while (!stopping) {
    const now = Date.now();
    for (const p of config.processes) {
      const s = processes[p.name] as ProcessSamples;
      if (s.goneAt !== undefined) continue;
      try {
        const rss = rssBytes(p.pid);
        const fds = openFds(p.pid);
        const cpu = cpuMicros(p.pid);
        // A zombie (exited, not yet reaped) has no RSS.
        if (rss === 0) throw new Error("exited");
        s.series.push([now, rss, fds, cpu]);
        if (rss > s.peakRss) [s.peakRss, s.peakRssAt] = [rss, now];
        if (fds > s.peakFds) [s.peakFds, s.peakFdsAt] = [fds, now];
      } catch {
        s.goneAt = now;
      }
    }
    // Pooled connections: every other sample (reading the kernel's TCP tables costs more).
    if (n++ % 2 === 0) {
      for (const pool of config.pools) {
        const stats = pools[pool.name] as PoolStats;
        try {
          const ports = connectionLocalPorts(pool.pid, pool.remotePort);
          stats.samples++;
          if (ports.length === 0) stats.emptySamples++;
          for (const port of ports) if (!stats.ports.includes(port)) stats.ports.push(port);
        } catch {
          // process gone
        }
      }
    }
    await sleep(config.sampleEveryMs);
  }
}

function getHealthz(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    // A fresh connection each time (agent: false): no keep-alive race with the server's idle close.
    const req = http.get(
      { host: "127.0.0.1", port, path: "/healthz", agent: false, timeout: config.healthzTimeoutMs },
      (res) => {
        res.resume();
        res.on("end", () => (res.statusCode === 200 ? resolve() : reject(new Error(`HTTP ${res.statusCode}`))));
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error(`no answer in ${config.healthzTimeoutMs} ms`)));
    req.on("error", reject);
  });
}

async function healthzLoop(p: { name: string; adminPort: number }): Promise<void> {
  const stats: HealthzStats = { polls: 0, maxMs: 0, failures: [] };
  healthz[p.name] = stats;
  while (!stopping) {
    const at = Date.now();
    const t0 = performance.now();
    try {
      await getHealthz(p.adminPort);
    } catch (err) {
      stats.failures.push({ at, error: (err as Error).message });
    }
    stats.polls++;
    stats.maxMs = Math.max(stats.maxMs, performance.now() - t0);
    await sleep(config.healthzEveryMs);
  }
}

const loops = [
  sampleLoop(),
  ...config.processes.map((p) => healthzLoop(p)),
  ...(config.legit ? [legitLoop("grpc"), legitLoop("connect-h1")] : []),
];

parentPort?.on("message", async (msg: { type: string }) => {
  if (msg.type !== "stop") return;
  stopping = true;
  await Promise.all(loops);
  const report: ObserverReport = { startedAt, stoppedAt: Date.now(), calls, processes, healthz, pools };
  parentPort?.postMessage(report);
});
parentPort?.postMessage({ type: "ready" });
