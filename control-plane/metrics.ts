// The control plane's own metrics, rendered in the Prometheus text exposition format (0.0.4) for
// GET /metrics. Small on purpose: counters, gauges and histograms with labels, no dependency.

type Labels = Record<string, string>;

const escapeLabel = (v: string) => v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
/**
 * Keys of label objects seen before: a hot caller (a push counts a response per stream, thousands
 * per push) passes the same constant object each time rather than building and escaping its key
 * again. Label objects are never changed once passed.
 */
const keys = new WeakMap<Labels, string>();
const labelKey = (labels: Labels) => {
  let key = keys.get(labels);
  if (key === undefined) {
    key = Object.keys(labels)
      .sort()
      .map((k) => `${k}="${escapeLabel(labels[k] ?? "")}"`)
      .join(",");
    keys.set(labels, key);
  }
  return key;
};
const formatValue = (v: number) => (Number.isFinite(v) ? String(v) : v > 0 ? "+Inf" : v < 0 ? "-Inf" : "NaN");

interface Metric {
  readonly name: string;
  readonly help: string;
  readonly type: "counter" | "gauge" | "histogram";
  render(): string[];
}

class Series {
  readonly values = new Map<string, number>();
  add(labels: Labels, delta: number) {
    const key = labelKey(labels);
    this.values.set(key, (this.values.get(key) ?? 0) + delta);
  }
  lines(name: string): string[] {
    return [...this.values].map(([key, v]) => `${name}${key ? `{${key}}` : ""} ${formatValue(v)}`);
  }
}

export class Counter implements Metric {
  readonly type = "counter";
  private readonly series = new Series();
  private collector: (() => Iterable<[Labels, number]>) | undefined;
  readonly name: string;
  readonly help: string;
  constructor(name: string, help: string) {
    this.name = name;
    this.help = help;
  }
  inc(labels: Labels = {}, by = 1): void {
    this.series.add(labels, by);
  }
  /**
   * Read the totals when scraped instead of counting here: for a count kept where it happens, too
   * often for a labelled inc() (bytes written to each of thousands of streams per push).
   */
  collect(collector: () => Iterable<[Labels, number]>): void {
    this.collector = collector;
  }
  value(labels: Labels = {}): number {
    if (this.collector) this.refresh();
    return this.series.values.get(labelKey(labels)) ?? 0;
  }
  render(): string[] {
    if (this.collector) this.refresh();
    return this.series.values.size === 0 ? [`${this.name} 0`] : this.series.lines(this.name);
  }
  private refresh(): void {
    this.series.values.clear();
    for (const [labels, value] of this.collector?.() ?? []) this.series.values.set(labelKey(labels), value);
  }
}

export class Gauge implements Metric {
  readonly type = "gauge";
  private readonly series = new Series();
  private collector: (() => Iterable<[Labels, number]>) | undefined;
  readonly name: string;
  readonly help: string;
  constructor(name: string, help: string) {
    this.name = name;
    this.help = help;
  }
  set(value: number, labels: Labels = {}): void {
    this.series.values.set(labelKey(labels), value);
  }
  inc(labels: Labels = {}, by = 1): void {
    this.series.add(labels, by);
  }
  dec(labels: Labels = {}, by = 1): void {
    this.series.add(labels, -by);
  }
  /** Read the values when scraped instead of tracking them (e.g. a count held elsewhere). */
  collect(collector: () => Iterable<[Labels, number]>): void {
    this.collector = collector;
  }
  value(labels: Labels = {}): number {
    return this.series.values.get(labelKey(labels)) ?? 0;
  }
  render(): string[] {
    if (this.collector) {
      this.series.values.clear();
      for (const [labels, value] of this.collector()) this.set(value, labels);
    }
    return this.series.values.size === 0 ? [`${this.name} 0`] : this.series.lines(this.name);
  }
}

/** Seconds; buckets from 1 ms to 10 s, suited to configuration push latency. */
export const LATENCY_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;

export class Histogram implements Metric {
  readonly type = "histogram";
  private readonly counts: number[];
  private sum = 0;
  private count = 0;
  readonly name: string;
  readonly help: string;
  readonly buckets: readonly number[];
  constructor(name: string, help: string, buckets: readonly number[] = LATENCY_BUCKETS) {
    this.name = name;
    this.help = help;
    this.buckets = buckets;
    this.counts = buckets.map(() => 0);
  }
  observe(value: number): void {
    this.sum += value;
    this.count++;
    this.buckets.forEach((le, i) => {
      if (value <= le) this.counts[i] = (this.counts[i] ?? 0) + 1;
    });
  }
  snapshot(): { count: number; sum: number } {
    return { count: this.count, sum: this.sum };
  }
  render(): string[] {
    return [
      ...this.buckets.map((le, i) => `${this.name}_bucket{le="${le}"} ${this.counts[i]}`),
      `${this.name}_bucket{le="+Inf"} ${this.count}`,
      `${this.name}_sum ${formatValue(this.sum)}`,
      `${this.name}_count ${this.count}`,
    ];
  }
}

/** The set of metrics one control plane exposes; names must be unique. */
export class MetricsRegistry {
  private readonly metrics = new Map<string, Metric>();

  private register<M extends Metric>(metric: M): M {
    if (this.metrics.has(metric.name)) throw new Error(`metric ${metric.name} is already registered`);
    this.metrics.set(metric.name, metric);
    return metric;
  }
  counter(name: string, help: string): Counter {
    return this.register(new Counter(name, help));
  }
  gauge(name: string, help: string): Gauge {
    return this.register(new Gauge(name, help));
  }
  histogram(name: string, help: string, buckets?: readonly number[]): Histogram {
    return this.register(new Histogram(name, help, buckets));
  }
  /** The Prometheus text format, metrics in registration order. */
  render(): string {
    const out: string[] = [];
    for (const m of this.metrics.values()) {
      out.push(`# HELP ${m.name} ${m.help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")}`);
      out.push(`# TYPE ${m.name} ${m.type}`);
      out.push(...m.render());
    }
    return `${out.join("\n")}\n`;
  }
}

export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";
