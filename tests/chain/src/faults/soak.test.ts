import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { openFds, rssBytes } from "@demo/rpc-kit/testing";
import { leaksOf } from "../leaks.ts";
import { type Chain, startChain } from "../processes.ts";
import { sleep } from "./steady-load.ts";

const CALLS = Number(process.env.SOAK_CALLS ?? 100_000);
const MAX_MS = 10 * 60_000;
/** users' connections to PostgreSQL (DATABASE_POOL_MAX), opened as the load needs them. */
const POOL_MAX = 10;

interface Sample {
  readonly fds: number;
  readonly rssMb: number;
}

const hasH2load = await new Promise<boolean>((resolve) =>
  execFile("h2load", ["--version"], (err) => resolve(err === null)),
);

/** GetProfile{user_id: "u-1"} as one gRPC message. */
const GET_PROFILE = Buffer.from([0, 0, 0, 0, 5, 0x0a, 3, 0x75, 0x2d, 0x31]);

describe(`drill: soak, ${CALLS.toLocaleString("en")} calls through the chain`, {
  skip: hasH2load ? false : "SKIPPED, not passed: h2load is not installed (apt install nghttp2-client)",
}, () => {
  let chain: Chain;
  before(async () => {
    chain = await startChain({ users: { DATABASE_POOL_MAX: String(POOL_MAX) } });
  });
  after(async () => {
    await chain.stop();
  });

  it("levels off in open fds and RSS in every process", async (t) => {
    const body = join(mkdtempSync(join(tmpdir(), "soak-")), "get-profile.bin");
    writeFileSync(body, GET_PROFILE);

    const services = [chain.gateway, chain.profiles, chain.users];
    const samples = new Map(services.map((s) => [s.name, [] as Sample[]]));
    const sample = () => {
      for (const s of services) samples.get(s.name)?.push({ fds: openFds(s.pid), rssMb: rssBytes(s.pid) / 2 ** 20 });
    };
    sample();
    let running = true;
    const run = new Promise<string>((resolve, reject) =>
      execFile(
        "h2load",
        [
          "-n",
          String(CALLS),
          "-c",
          "1",
          "-m",
          "64",
          "-H",
          "content-type: application/grpc",
          "-H",
          "te: trailers",
          "-d",
          body,
          `http://127.0.0.1:${chain.gateway.port}/demo.gateway.v1.GatewayService/GetProfile`,
        ],
        { timeout: MAX_MS, maxBuffer: 1 << 20 },
        (err, stdout) => (err ? reject(err) : resolve(stdout)),
      ),
    ).finally(() => {
      running = false;
    });
    while (running) {
      await sleep(1_000);
      sample();
    }
    const report = await run;
    const succeeded = Number(/(\d+) succeeded/.exec(report)?.[1]);
    t.diagnostic(report.split("\n").find((l) => l.startsWith("finished in")) ?? "");
    assert.equal(succeeded, CALLS, report);

    for (const [name, series] of samples) {
      const first = series[0] as Sample;
      const last = series.at(-1) as Sample;
      // Past the warm-up (the first quarter), the second half may not grow beyond the first.
      const warm = series.slice(Math.floor(series.length / 4));
      const half = Math.floor(warm.length / 2);
      const early = Math.max(...warm.slice(0, half).map((s) => s.rssMb));
      const late = Math.max(...warm.slice(half).map((s) => s.rssMb));
      const maxFds = Math.max(...series.map((s) => s.fds));
      t.diagnostic(
        `${name}: fds ${first.fds} → ${last.fds} (max ${maxFds}); RSS ${first.rssMb.toFixed(0)} → ${last.rssMb.toFixed(0)} MB, max ${early.toFixed(0)} MB in the first half after warm-up and ${late.toFixed(0)} MB in the second`,
      );
      // users opens its pool's connections to PostgreSQL as the load needs them, up to the pool's size.
      const slack = 5 + (name === "users" ? POOL_MAX : 0);
      assert.ok(
        Math.abs(last.fds - first.fds) <= slack && maxFds - first.fds <= slack,
        `${name} fds ${first.fds} → ${last.fds}`,
      );
      assert.ok(late <= early * 1.1 + 20, `${name} RSS still growing: ${early.toFixed(0)} → ${late.toFixed(0)} MB`);
    }
  });

  it("wrote no seeded email or token to any log line", async () => {
    await sleep(200); // log lines are flushed every 100 ms
    for (const service of [chain.gateway, chain.profiles, chain.users])
      assert.deepEqual(leaksOf(service), [], `${service.name} logged them`);
  });
});
