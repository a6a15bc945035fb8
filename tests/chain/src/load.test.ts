import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { type Chain, establishedConnections, repoRoot, startChain } from "./processes.ts";

interface LoadRun {
  readonly pid: number;
  readonly done: Promise<{ code: number | null; stdout: string; stderr: string }>;
}

function startLoad(args: string[]): LoadRun {
  let resolveDone: (v: { code: number | null; stdout: string; stderr: string }) => void = () => undefined;
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((r) => {
    resolveDone = r;
  });
  const child = execFile(process.execPath, [join(repoRoot, "bench/src/load.ts"), ...args], (err, stdout, stderr) =>
    resolveDone({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
  );
  return { pid: child.pid ?? -1, done };
}

const load = (args: string[]) => startLoad(args).done;

describe("npm run load, against the chain", () => {
  let chain: Chain;
  before(async () => {
    chain = await startChain();
  });
  after(() => chain.stop());

  it("drives gRPC through the gateway and reports rates, latencies and codes as JSON", async () => {
    const { code, stdout } = await load([
      "--target",
      chain.baseUrl,
      "--requests",
      "300",
      "--concurrency",
      "8",
      "--json",
    ]);
    assert.equal(code, 0);
    const report = JSON.parse(stdout) as {
      requests: number;
      rps: number;
      codes: Record<string, number>;
      latencyMs: { p99: number };
    };
    assert.equal(report.requests, 300);
    assert.deepEqual(report.codes, { ok: 300 });
    assert.ok(report.rps > 0 && report.latencyMs.p99 > 0);
  });

  it("runs another RPC without --data from an empty request (the README's ListProfiles example)", async () => {
    const { code, stdout, stderr } = await load([
      "--target",
      chain.baseUrl,
      "--protocol",
      "connect",
      "--rpc",
      "ListProfiles",
      "--requests",
      "20",
      "--json",
    ]);
    assert.equal(code, 0, stderr);
    assert.deepEqual((JSON.parse(stdout) as { codes: Record<string, number> }).codes, { ok: 20 });
  });

  it("speaks Connect JSON to the gateway and counts error codes", async () => {
    const { code, stdout } = await load([
      "--target",
      chain.baseUrl,
      "--protocol",
      "connect",
      "--data",
      '{"userId":"nobody"}',
      "--requests",
      "50",
      "--json",
    ]);
    assert.equal(code, 0);
    assert.deepEqual((JSON.parse(stdout) as { codes: Record<string, number> }).codes, { not_found: 50 });
  });

  it("calls an internal service directly, a stream counting as one call, with a readable table", async () => {
    const users = `http://localhost:${chain.users.port}`;
    const { code, stdout } = await load([
      "--target",
      users,
      "--service",
      "users",
      "--rpc",
      "ListUsers",
      "--data",
      "{}",
      "--requests",
      "20",
    ]);
    assert.equal(code, 0);
    assert.match(stdout, /demo\.users\.v1\.UserService\/ListUsers/);
    assert.match(stdout, /requests\/s\s+p50\s+p90\s+p99\s+max/);
    assert.match(stdout, /ok\s+20/);
  });

  it("uses one connection for the whole run", async () => {
    const run = startLoad(["--target", chain.baseUrl, "--duration", "2", "--concurrency", "32", "--json"]);
    // Sampled until the tool exits, not for a fixed time: on a busy machine its start-up alone can take seconds.
    const seen: number[] = [];
    let running = true;
    void run.done.then(() => {
      running = false;
    });
    while (running) {
      await new Promise((r) => setTimeout(r, 100));
      try {
        seen.push(establishedConnections(run.pid, chain.gateway.port));
      } catch {
        break; // exited between the check and the read of /proc
      }
    }
    const { code, stdout } = await run.done;
    assert.equal(code, 0);
    // A count reached in a 2 s run would be a rate: asserts that calls were made, not how many.
    assert.ok((JSON.parse(stdout) as { requests: number }).requests >= 10, stdout);
    assert.ok(seen.some((n) => n === 1) && seen.every((n) => n <= 1), `connections over the run: ${seen.join(", ")}`);
  });

  it("says what is wrong with bad arguments", async () => {
    const { code, stderr } = await load(["--target", chain.baseUrl, "--rpc", "Nope"]);
    assert.equal(code, 2);
    assert.match(stderr, /has no method Nope; it has GetProfile, CreateUser, ListProfiles/);
  });
});
