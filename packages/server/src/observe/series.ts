/**
 * Counters and histograms for the token service's per-request metrics, registered in a prom-client
 * `Registry` like any of its metrics (same text format, same `get()` shape, summed across
 * `serve --workers` by prom-client's cluster aggregator), but cheaper on the hot path: a series
 * is bound once to its label values (`labels(...)`, cached by the caller) and then a count or an
 * observation is a few additions. prom-client's own children validate and hash their label
 * object again on every `inc`/`observe`, which cost a token request more than all its other
 * metric work together (bench observe section, docs/performance.md).
 */
import type { Registry } from 'prom-client';

interface Sample {
  value: number;
  labels: Record<string, string | number>;
  metricName?: string;
}

interface MetricJson {
  name: string;
  help: string;
  type: 'counter' | 'histogram';
  values: Sample[];
  aggregator: 'sum';
}

interface SeriesConfig {
  name: string;
  help: string;
  labelNames: readonly string[];
  registers: Registry[];
}

abstract class BoundSeriesMetric<S extends { labels: Record<string, string> }> {
  readonly name: string;
  readonly help: string;
  readonly aggregator = 'sum' as const;
  abstract readonly type: 'counter' | 'histogram';
  readonly #labelNames: readonly string[];
  protected readonly series = new Map<string, S>();

  constructor(config: SeriesConfig) {
    this.name = config.name;
    this.help = config.help;
    this.#labelNames = config.labelNames;
    // The Registry takes any object with a name and get() (prom-client's Metric contract).
    for (const registry of config.registers) registry.registerMetric(this as never);
  }

  protected abstract create(labels: Record<string, string>): S;

  /** The series of these label values (in `labelNames` order), made on first use. */
  labels(...values: string[]): S {
    const key = values.join('\u0000');
    let series = this.series.get(key);
    if (series === undefined) {
      if (values.length !== this.#labelNames.length) throw new TypeError(`${this.name} takes ${this.#labelNames.length} label values, not ${values.length}`);
      const labels: Record<string, string> = {};
      for (const [i, name] of this.#labelNames.entries()) labels[name] = values[i] as string;
      series = this.create(labels);
      this.series.set(key, series);
    }
    return series;
  }

  reset(): void {
    this.series.clear();
  }

  abstract get(): Promise<MetricJson>;
}

export interface CounterSeries {
  readonly labels: Record<string, string>;
  value: number;
  inc(by?: number): void;
}

/** A counter of label-bound series (`labels(...).inc()`). */
export class BoundCounter extends BoundSeriesMetric<CounterSeries> {
  readonly type = 'counter' as const;

  protected create(labels: Record<string, string>): CounterSeries {
    return {
      labels,
      value: 0,
      inc(by = 1) {
        this.value += by;
      },
    };
  }

  async get(): Promise<MetricJson> {
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values: [...this.series.values()].map((s) => ({ value: s.value, labels: s.labels })) };
  }
}

export interface HistogramSeries {
  readonly labels: Record<string, string>;
  /** Observations per bucket (not cumulative; the last slot is above every bound). */
  readonly counts: Float64Array;
  sum: number;
  count: number;
  observe(value: number): void;
}

/** A histogram of label-bound series (`labels(...).observe(seconds)`), `le` buckets as Prometheus expects. */
export class BoundHistogram extends BoundSeriesMetric<HistogramSeries> {
  readonly type = 'histogram' as const;
  readonly #buckets: readonly number[];

  constructor(config: SeriesConfig & { buckets: readonly number[] }) {
    super(config);
    if (config.labelNames.includes('le')) throw new TypeError('le is a reserved label');
    this.#buckets = [...config.buckets].sort((a, b) => a - b);
  }

  protected create(labels: Record<string, string>): HistogramSeries {
    const bounds = this.#buckets;
    return {
      labels,
      counts: new Float64Array(bounds.length + 1),
      sum: 0,
      count: 0,
      observe(value: number) {
        if (!Number.isFinite(value)) return;
        let i = 0;
        while (i < bounds.length && value > (bounds[i] as number)) i++;
        this.counts[i] = (this.counts[i] as number) + 1;
        this.sum += value;
        this.count += 1;
      },
    };
  }

  async get(): Promise<MetricJson> {
    const values: Sample[] = [];
    const bucket = `${this.name}_bucket`;
    for (const s of this.series.values()) {
      let cumulative = 0;
      for (const [i, bound] of this.#buckets.entries()) {
        cumulative += s.counts[i] as number;
        values.push({ value: cumulative, labels: { ...s.labels, le: bound }, metricName: bucket });
      }
      values.push({ value: s.count, labels: { ...s.labels, le: '+Inf' }, metricName: bucket });
      values.push({ value: s.sum, labels: { ...s.labels }, metricName: `${this.name}_sum` });
      values.push({ value: s.count, labels: { ...s.labels }, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}
