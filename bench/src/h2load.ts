/**
 * Drives load with h2load (Debian's nghttp2-client): cheap in CPU, so the
 * cores go to the services measured. Latencies come from its per-request
 * log (--log-file), percentiles computed here.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface LoadRequest {
  readonly url: string;
  readonly headers: readonly string[];
  readonly body: Uint8Array;
}

export interface LoadResult {
  readonly requests: number;
  readonly failed: number;
  readonly seconds: number;
  readonly rps: number;
  readonly meanMs: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? 0;
}

/** Runs h2load on one connection with `concurrency` streams, for `seconds` or `requests`. */
export function runH2load(
  request: LoadRequest,
  options: { concurrency: number; seconds?: number; requests?: number },
): Promise<LoadResult> {
  const dir = mkdtempSync(join(tmpdir(), "h2load-"));
  const bodyPath = join(dir, "body.bin");
  const logPath = join(dir, "requests.log");
  writeFileSync(bodyPath, request.body);
  const args = [
    "-c",
    "1",
    "-m",
    String(options.concurrency),
    "-t",
    "1",
    "-d",
    bodyPath,
    "--log-file",
    logPath,
    ...request.headers.flatMap((h) => ["-H", h]),
    ...(options.requests !== undefined ? ["-n", String(options.requests)] : ["-D", String(options.seconds ?? 5)]),
    request.url,
  ];
  return new Promise((resolve, reject) => {
    execFile("h2load", args, { maxBuffer: 16 * 1024 * 1024 }, (err, stdout) => {
      try {
        if (err) throw new Error(`h2load failed: ${err.message}\n${stdout}`);
        const rows = readFileSync(logPath, "utf8").trim().split("\n").filter(Boolean);
        const durations: number[] = [];
        let failed = 0;
        let first = Number.POSITIVE_INFINITY;
        let last = 0;
        for (const row of rows) {
          const [start, status, micros] = row.split("\t").map(Number) as [number, number, number];
          if (status !== 200) failed++;
          durations.push(micros / 1000);
          first = Math.min(first, start);
          last = Math.max(last, start + micros);
        }
        const seconds = (last - first) / 1e6;
        durations.sort((a, b) => a - b);
        const done = /(\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(stdout);
        resolve({
          requests: durations.length,
          failed: failed + Number(done?.[3] ?? 0) + Number(done?.[4] ?? 0),
          seconds,
          rps: durations.length / seconds,
          meanMs: durations.reduce((sum, d) => sum + d, 0) / Math.max(1, durations.length),
          p50Ms: percentile(durations, 50),
          p99Ms: percentile(durations, 99),
          maxMs: durations.at(-1) ?? 0,
        });
      } catch (e) {
        reject(e);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
}
