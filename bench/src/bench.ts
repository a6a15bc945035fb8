/**
 * npm run bench [-- --quick] [--reps N] [--seconds S] [--concurrency 1,16,64] [--configs a,b] [--cpu-prof DIR]
 *
 * Every configuration is three processes on loopback (A → B → C); h2load sends
 * GetProfile to A over one connection with 1, 16 and 64 streams in flight.
 * Repetitions are interleaved (A B C A B C …) and medians reported. Per
 * service process: CPU-µs per request (from /proc, the stable figure on a noisy
 * machine), peak RSS, open fds before and after. The full run also soaks the
 * rpc-kit chain with 100,000 calls and writes bench/RESULTS.md and
 * bench/results.svg. --quick checks that every configuration runs (CI); it
 * fails on errors, never on timings. --cpu-prof writes a V8 CPU profile of
 * every service process to DIR/<configuration>-<role>/.
 *
 * The rpc-kit configurations' users keeps its data in PostgreSQL, and so does
 * that of the hand-wired `grpc-js-otel` and of `grpc-js-pg` (the bare grpc-js
 * chain with a plain pg.Pool), on a fresh database per start that the bench
 * creates and drops (never the repository's .data/, npm start's): on an
 * embedded server the bench starts once per run in a temporary directory and
 * stops at the end (`rpc-kit`, `rpc-kit-lean`, `grpc-js-pg`, `grpc-js-otel`),
 * or on a real server (`rpc-kit-pg-real`) named by BENCH_DATABASE_URL, else
 * TEST_DATABASE_URL — an admin URL, e.g.
 * postgres://postgres:password@127.0.0.1:5432/postgres, whose role may create
 * and drop databases. With neither set, `rpc-kit-pg-real` is reported as
 * skipped (with REQUIRE_TEST_DATABASE=1, as in CI, that is a failure). For
 * those configurations the bench also reports, per call: users' database time
 * (db_client_operation_duration_seconds on its /metrics, scraped around each
 * row: the rpc-kit apps only) and its share of the end-to-end mean latency,
 * users' handling time (grpc_server_handling_seconds: the rpc-kit apps and
 * `grpc-js-otel`), and the CPU time of the PostgreSQL processes serving the
 * run (from /proc; on the real server only when it runs on this machine).
 */
import { execFileSync } from "node:child_process";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { GatewayService } from "@demo/proto/demo/gateway/v1/gateway_pb";
import { cpuMicros, openFds, peakRssBytes, rssBytes } from "@demo/rpc-kit/testing";
import { CONFIGS, type Config, type Role, type RunningConfig, requestFor, startConfig } from "./configs.ts";
import { type CpuMeter, Databases } from "./databases.ts";
import { runH2load } from "./h2load.ts";
import { type DatabaseSample, type Sample, type Skipped, type Soak, writeReport } from "./report.ts";
import { perCall, scrapeUsers, type UsersCounters } from "./users-metrics.ts";

const ROLES: Role[] = ["gateway", "profiles", "users"];

const { values } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    reps: { type: "string" },
    seconds: { type: "string" },
    concurrency: { type: "string" },
    configs: { type: "string" },
    "cpu-prof": { type: "string" },
  },
});
const quick = values.quick ?? false;
const reps = Number(values.reps ?? (quick ? 1 : 3));
const seconds = Number(values.seconds ?? (quick ? 2 : 8));
const concurrencies = (values.concurrency ?? (quick ? "16" : "1,16,64")).split(",").map(Number);
const configs = values.configs ? CONFIGS.filter((c) => values.configs?.split(",").includes(c.name)) : CONFIGS;
const logDir = join(tmpdir(), `rpc-chain-bench-${process.pid}`);
const databases = new Databases();

/** The configuration running now, stopped if the bench is interrupted. */
let current: RunningConfig | undefined;

// Interrupted: the services stopped, the databases dropped and the embedded server stopped (its
// directory removed) before leaving.
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    setTimeout(() => process.exit(130), 10_000).unref();
    void (current?.stop() ?? Promise.resolve())
      .catch(() => {})
      .then(() => databases.close())
      .finally(() => process.exit(130));
  });
}

function say(line: string): void {
  process.stderr.write(`${line}\n`);
}

try {
  execFileSync("h2load", ["--version"], { stdio: "ignore" });
} catch {
  say("bench: h2load is required (Debian: apt-get install nghttp2-client)");
  process.exit(2);
}

/** One call with a real client: the chain answers correctly before it is measured. */
async function probe(config: Config, port: number): Promise<void> {
  const baseUrl = `http://127.0.0.1:${port}`;
  const transport =
    config.protocol === "connect"
      ? createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: true })
      : createGrpcTransport({ baseUrl });
  const { profile } = await createClient(GatewayService, transport).getProfile({ userId: "u-1" }, { timeoutMs: 5_000 });
  if (profile?.initials !== "AL") throw new Error(`${config.name}: wrong answer ${JSON.stringify(profile)}`);
}

/** What is read of the database side before a row, to subtract after it. */
interface DatabaseMark {
  /** users' counters, where it serves /metrics. */
  readonly users: UsersCounters | undefined;
  readonly postgresCpu: CpuMeter;
}

async function markDatabase(config: Config, running: RunningConfig): Promise<DatabaseMark | undefined> {
  if (!running.database) return undefined;
  const users = config.usersMetrics ? await scrapeUsers(running.adminPorts.users) : undefined;
  return { users, postgresCpu: await running.database.meterCpu() };
}

/** Right after the load: PostgreSQL's CPU first, then users' counters (the scrape does not move them). */
async function databaseSample(
  running: RunningConfig,
  before: DatabaseMark | undefined,
  calls: number,
): Promise<DatabaseSample | undefined> {
  if (!running.database || !before) return undefined;
  const micros = await before.postgresCpu.stop();
  const postgresCpu = micros === undefined ? undefined : micros / calls;
  const { dbMs, queries, usersMs } = before.users
    ? perCall(before.users, await scrapeUsers(running.adminPorts.users))
    : { dbMs: undefined, queries: undefined, usersMs: undefined };
  return { server: running.database.server, dbMs, queries, usersMs, postgresCpu };
}

async function measure(config: Config): Promise<Sample[]> {
  const running = await startConfig(config, { logDir, databases, cpuProfileDir: values["cpu-prof"] });
  current = running;
  const samples: Sample[] = [];
  try {
    await probe(config, running.gatewayPort);
    const request = requestFor(config, running.gatewayPort);
    // Warm up at high concurrency first, so that JIT, pools and connections are settled before any row.
    await runH2load(request, config.maxRequests ? { concurrency: 64, requests: 500 } : { concurrency: 64, seconds: 1 });
    for (const concurrency of concurrencies) {
      const databaseBefore = await markDatabase(config, running);
      const fdsBefore = Object.fromEntries(ROLES.map((r) => [r, openFds(running.pids[r])])) as Record<Role, number>;
      const cpuBefore = Object.fromEntries(ROLES.map((r) => [r, cpuMicros(running.pids[r])])) as Record<Role, number>;
      const result = await runH2load(
        request,
        config.maxRequests ? { concurrency, requests: config.maxRequests } : { concurrency, seconds },
      ).catch(async (err: unknown) => {
        await databaseBefore?.postgresCpu.stop().catch(() => {});
        throw err;
      });
      const cpuPerRequest = Object.fromEntries(
        ROLES.map((r) => [r, (cpuMicros(running.pids[r]) - cpuBefore[r]) / result.requests]),
      ) as Record<Role, number>;
      const database = await databaseSample(running, databaseBefore, result.requests);
      const sample: Sample = {
        config: config.name,
        concurrency,
        ...result,
        cpuPerRequest,
        peakRss: Object.fromEntries(ROLES.map((r) => [r, peakRssBytes(running.pids[r])])) as Record<Role, number>,
        fdsBefore,
        fdsAfter: Object.fromEntries(ROLES.map((r) => [r, openFds(running.pids[r])])) as Record<Role, number>,
        ...(database && { database }),
      };
      if (sample.failed > 0) throw new Error(`${config.name} c=${concurrency}: ${sample.failed} requests failed`);
      say(
        `${config.name.padEnd(20)} c=${String(concurrency).padEnd(3)} ${sample.rps.toFixed(0).padStart(6)} req/s  p50 ${sample.p50Ms.toFixed(1)} ms  p99 ${sample.p99Ms.toFixed(1)} ms  CPU-µs/req ${ROLES.map((r) => `${r} ${cpuPerRequest[r].toFixed(0)}`).join(", ")}${
          database
            ? `  | ${database.server} db ${database.dbMs?.toFixed(2) ?? "–"} ms/call (${database.queries?.toFixed(2) ?? "–"} queries, ${database.dbMs === undefined ? "–" : ((database.dbMs / sample.meanMs) * 100).toFixed(1)}% of mean ${sample.meanMs.toFixed(1)} ms), users handling ${database.usersMs?.toFixed(2) ?? "–"} ms, PostgreSQL CPU-µs/call ${database.postgresCpu?.toFixed(0) ?? "–"}`
            : ""
        }`,
      );
      samples.push(sample);
    }
  } finally {
    await running.stop();
  }
  return samples;
}

/** 100,000 calls through the rpc-kit chain: do fds and RSS level off? */
async function soak(): Promise<Soak> {
  const config = CONFIGS.find((c) => c.name === "rpc-kit") as Config;
  const running = await startConfig(config, { logDir, databases });
  current = running;
  try {
    const request = requestFor(config, running.gatewayPort);
    await runH2load(request, { concurrency: 64, seconds: 1 });
    const snapshot = () =>
      Object.fromEntries(
        ROLES.map((r) => [r, { fds: openFds(running.pids[r]), rssMb: rssBytes(running.pids[r]) / 1_048_576 }]),
      ) as Soak["start"];
    const start = snapshot();
    const curve: Soak["curve"] = [];
    const timer = setInterval(() => curve.push({ at: Date.now(), ...snapshot() }), 1_000);
    const result = await runH2load(request, { concurrency: 64, requests: 100_000 });
    clearInterval(timer);
    if (result.failed > 0) throw new Error(`soak: ${result.failed} requests failed`);
    return {
      calls: result.requests,
      start,
      end: snapshot(),
      curve,
      peakRssMb: Object.fromEntries(
        ROLES.map((r) => [r, peakRssBytes(running.pids[r]) / 1_048_576]),
      ) as Soak["peakRssMb"],
    };
  } finally {
    await running.stop();
  }
}

const samples: Sample[] = [];
const skipped: Skipped[] = [];
let failed = false;
const started = Date.now();
const runnable = configs.filter((config) => {
  if (!config.database) return true;
  try {
    const reason = databases.skipReason(config.database);
    if (reason === undefined) return true;
    skipped.push({ config: config.name, reason });
    say(`bench: ${config.name} skipped: ${reason}`);
  } catch (err) {
    failed = true;
    say(`bench: ${config.name} failed: ${(err as Error).message}`);
  }
  return false;
});
for (let rep = 1; rep <= reps; rep++) {
  say(`-- repetition ${rep} of ${reps}`);
  for (const config of runnable) {
    try {
      samples.push(...(await measure(config)));
    } catch (err) {
      failed = true;
      say(`bench: ${config.name} failed: ${(err as Error).message} (logs in ${logDir})`);
    }
  }
}
let soakResult: Soak | undefined;
try {
  if (!quick && !values.configs) {
    say("-- soak: 100,000 calls through the rpc-kit chain");
    soakResult = await soak();
  }
} finally {
  await databases.close();
}
const machine = `${cpus().length} × ${cpus()[0]?.model ?? "cpu"}, Node ${process.version}, h2load ${
  execFileSync("h2load", ["--version"], { encoding: "utf8" }).split("\n")[0]?.split("/")[1] ?? "?"
}`;
const report = writeReport({
  samples,
  soak: soakResult,
  machine,
  reps,
  seconds,
  concurrencies,
  configs,
  skipped,
  write: !quick && !values.configs,
});
process.stdout.write(report);
say(`bench: ${((Date.now() - started) / 1000).toFixed(0)} s${failed ? ", with failures" : ""}`);
process.exit(failed ? 1 : 0);
