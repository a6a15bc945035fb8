/** Reading Prometheus text exposition in tests: series by `name{k="v",…}`, labels sorted by key. */

/** Every sample of `text`, by {@link seriesKey}. */
export function parsePrometheusText(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split("\n")) {
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

/** The key of one series in {@link parsePrometheusText}'s map. */
export function seriesKey(name: string, labels: Record<string, string>): string {
  const sorted = Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .sort()
    .join(",");
  return `${name}{${sorted}}`;
}
