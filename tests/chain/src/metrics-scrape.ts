/** Reads a service's /metrics as the tests need it. */
import assert from "node:assert/strict";
import { parsePrometheusText } from "@demo/rpc-kit/testing";
import type { ServiceProcess } from "./processes.ts";

/** Prometheus text → value by `name{k="v",…}` with labels sorted by key. */
export async function scrape(
  service: Pick<ServiceProcess, "adminPort">,
  host = "localhost",
): Promise<Map<string, number>> {
  const res = await fetch(`http://${host}:${service.adminPort}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /^text\/plain/);
  return parsePrometheusText(await res.text());
}

export { seriesKey as key } from "@demo/rpc-kit/testing";

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
