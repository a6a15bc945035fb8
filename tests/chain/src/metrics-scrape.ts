/** Reads a service's /metrics as the tests need it. */
import assert from "node:assert/strict";
import type { ServiceProcess } from "./processes.ts";

/** Prometheus text → value by `name{k="v",…}` with labels sorted by key. */
export async function scrape(
  service: Pick<ServiceProcess, "adminPort">,
  host = "localhost",
): Promise<Map<string, number>> {
  const res = await fetch(`http://${host}:${service.adminPort}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /^text\/plain/);
  const samples = new Map<string, number>();
  for (const line of (await res.text()).split("\n")) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const labels = [...(m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)]
      .map(([, k, v]) => `${k}="${v}"`)
      .sort()
      .join(",");
    samples.set(`${m[1]}{${labels}}`, Number(m[3]));
  }
  return samples;
}

export function key(name: string, labels: Record<string, string>): string {
  const sorted = Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .sort()
    .join(",");
  return `${name}{${sorted}}`;
}

/** The sum of every series of `name` whose labels include `labels`. */
export function total(samples: Map<string, number>, name: string, labels: Record<string, string> = {}): number {
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  let sum = 0;
  for (const [series, value] of samples) {
    if (!series.startsWith(`${name}{`)) continue;
    if (wanted.every((w) => series.includes(w))) sum += value;
  }
  return sum;
}
