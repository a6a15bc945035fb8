import type { Registry } from "prom-client";

/**
 * Counters, gauges and histograms whose series are bound once per label set
 * and updated by a field increment per call. prom-client hashes the label
 * object on every inc() and observe(); on the hot path of every RPC, on both
 * sides, that cost more than the rest of the metrics. Served by prom-client's
 * registry like its own metrics (it only needs get() and reset()).
 */

type Labels = Readonly<Record<string, string>>;

interface MetricValue {
  value: number;
  labels: Labels;
  metricName?: string;
}

abstract class Family<S> {
  readonly name: string;
  readonly help: string;
  abstract readonly type: "counter" | "gauge" | "histogram";
  readonly aggregator = "sum";
  protected readonly series = new Map<string, { labels: Labels; series: S }>();

  constructor(registry: Registry, name: string, help: string) {
    this.name = name;
    this.help = help;
    registry.registerMetric(this as never);
  }

  /** The series of `labels`, created on first use; keep it and update it directly. */
  bind(labels: Labels): S {
    const key = JSON.stringify(labels);
    let entry = this.series.get(key);
    if (entry === undefined) {
      entry = { labels, series: this.create() };
      this.series.set(key, entry);
    }
    return entry.series;
  }

  protected abstract create(): S;
  protected abstract values(labels: Labels, series: S): MetricValue[];

  async get() {
    return {
      name: this.name,
      help: this.help,
      type: this.type,
      aggregator: this.aggregator,
      values: [...this.series.values()].flatMap(({ labels, series }) => this.values(labels, series)),
    };
  }

  reset(): void {
    this.series.clear();
  }
}

export interface CounterSeries {
  value: number;
}

/** A family whose series are one number each: counters and gauges. */
abstract class ValueFamily extends Family<CounterSeries> {
  protected create(): CounterSeries {
    return { value: 0 };
  }
  protected values(labels: Labels, series: CounterSeries): MetricValue[] {
    return [{ value: series.value, labels }];
  }
}

export class CounterFamily extends ValueFamily {
  readonly type = "counter";
}

export class GaugeFamily extends ValueFamily {
  readonly type = "gauge";
}

export class HistogramSeries {
  readonly #bounds: readonly number[];
  readonly counts: number[];
  sum = 0;
  count = 0;

  constructor(bounds: readonly number[]) {
    this.#bounds = bounds;
    this.counts = new Array(bounds.length).fill(0);
  }

  observe(value: number): void {
    this.sum += value;
    this.count++;
    const bounds = this.#bounds;
    for (let i = 0; i < bounds.length; i++) {
      if (value <= (bounds[i] as number)) {
        (this.counts[i] as number)++;
        return;
      }
    }
  }
}

export class HistogramFamily extends Family<HistogramSeries> {
  readonly type = "histogram";
  readonly #bounds: readonly number[];

  constructor(registry: Registry, name: string, help: string, bounds: readonly number[]) {
    super(registry, name, help);
    this.#bounds = bounds;
  }

  protected create(): HistogramSeries {
    return new HistogramSeries(this.#bounds);
  }

  protected values(labels: Labels, series: HistogramSeries): MetricValue[] {
    let cumulative = 0;
    const out: MetricValue[] = this.#bounds.map((le, i) => {
      cumulative += series.counts[i] as number;
      return { value: cumulative, labels: { ...labels, le: String(le) }, metricName: `${this.name}_bucket` };
    });
    out.push(
      { value: series.count, labels: { ...labels, le: "+Inf" }, metricName: `${this.name}_bucket` },
      { value: series.sum, labels, metricName: `${this.name}_sum` },
      { value: series.count, labels, metricName: `${this.name}_count` },
    );
    return out;
  }
}
