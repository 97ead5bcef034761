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
  /** Every series, for the scrape. */
  protected readonly series: S[] = [];
  /**
   * The series by label values, one Map level per label: a lookup hashes the values themselves
   * (a string keeps its hash once computed, and the values are the same few strings request after
   * request) instead of a key joined anew on every call, which allocated a string and hashed it.
   */
  #byValues = new Map<string, unknown>();

  constructor(config: SeriesConfig) {
    this.name = config.name;
    this.help = config.help;
    this.#labelNames = config.labelNames;
    if (config.labelNames.length === 0) throw new TypeError(`${config.name}: a bound series metric has at least one label`);
    // The Registry takes any object with a name and get() (prom-client's Metric contract).
    for (const registry of config.registers) registry.registerMetric(this as never);
  }

  protected abstract create(labels: Record<string, string>): S;

  /** The series of these label values (in `labelNames` order), made on first use. */
  labels(...values: string[]): S {
    const last = this.#labelNames.length - 1;
    if (values.length !== last + 1) throw new TypeError(`${this.name} takes ${last + 1} label values, not ${values.length}`);
    let level = this.#byValues;
    for (let i = 0; i < last; i++) {
      let next = level.get(values[i] as string) as Map<string, unknown> | undefined;
      if (next === undefined) {
        next = new Map();
        level.set(values[i] as string, next);
      }
      level = next;
    }
    let series = level.get(values[last] as string) as S | undefined;
    if (series === undefined) {
      const labels: Record<string, string> = {};
      for (const [i, name] of this.#labelNames.entries()) labels[name] = String(values[i]);
      series = this.create(labels);
      level.set(values[last] as string, series);
      this.series.push(series);
    }
    return series;
  }

  reset(): void {
    this.series.length = 0;
    this.#byValues = new Map();
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
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values: this.series.map((s) => ({ value: s.value, labels: s.labels })) };
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
    for (const s of this.series) {
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
