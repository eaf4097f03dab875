// Stats defined by modules (proxy_define_metric & co.). One MetricStore stands for Envoy's stats
// store: VMs that share it (through SharedData) add to the same counters, as Envoy's workers do.
import { MetricType } from "./abi.ts";

export type MetricKind = "counter" | "gauge" | "histogram";

const KINDS: Record<MetricType, MetricKind> = {
  [MetricType.Counter]: "counter",
  [MetricType.Gauge]: "gauge",
  [MetricType.Histogram]: "histogram",
};

/**
 * Histogram bucket bounds: Envoy's default set (stats_config.histogram_bucket_settings), so the
 * Prometheus rendering lines up with Envoy's /stats/prometheus.
 */
export const HISTOGRAM_BUCKETS = [
  0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000,
  3600000,
] as const;

export interface HistogramSnapshot {
  count: number;
  sum: number;
  /** Cumulative counts per upper bound of HISTOGRAM_BUCKETS (Prometheus `le` semantics). */
  buckets: { le: number; count: number }[];
}

export interface MetricSnapshot {
  name: string;
  type: MetricKind;
  /** Counter or gauge value; for a histogram, the number of recorded values. */
  value: number;
  histogram?: HistogramSnapshot;
}

interface Metric {
  name: string;
  type: MetricKind;
  value: bigint;
  count: number;
  sum: bigint;
  buckets: number[];
}

export class MetricStore {
  // One map per type (indexed by MetricType), keyed by name: the hot path looks a metric up on
  // every increment, and this avoids building a composite key string each time.
  private readonly byType: readonly Map<string, Metric>[] = [new Map(), new Map(), new Map()];

  /** Creates the stat if needed; Envoy keys stats by name (and kind), so redefinition is harmless. */
  define(type: MetricType, name: string): void {
    const metrics = this.byType[type] as Map<string, Metric>;
    if (!metrics.has(name)) {
      metrics.set(name, {
        name,
        type: KINDS[type],
        value: 0n,
        count: 0,
        sum: 0n,
        buckets: HISTOGRAM_BUCKETS.map(() => 0),
      });
    }
  }

  private get(type: MetricType, name: string): Metric {
    const metric = this.byType[type]?.get(name);
    if (!metric) throw new Error(`metric ${name} is not defined`);
    return metric;
  }

  /** Adds to a counter or gauge; gauges wrap like Envoy's uint64 when they go below zero. */
  add(type: MetricType, name: string, delta: bigint): void {
    const metric = this.get(type, name);
    metric.value = BigInt.asUintN(64, metric.value + delta);
  }

  set(type: MetricType, name: string, value: bigint): void {
    this.get(type, name).value = BigInt.asUintN(64, value);
  }

  record(name: string, value: bigint): void {
    const metric = this.get(MetricType.Histogram, name);
    metric.count++;
    metric.sum += value;
    const v = Number(value);
    for (let i = 0; i < HISTOGRAM_BUCKETS.length; i++) {
      if (v <= (HISTOGRAM_BUCKETS[i] as number)) metric.buckets[i] = (metric.buckets[i] as number) + 1;
    }
  }

  read(type: MetricType, name: string): bigint {
    return this.get(type, name).value;
  }

  /** A counter's or gauge's value by name (counters first), or undefined when not defined. */
  value(name: string): number | undefined {
    const metric = this.byType[MetricType.Counter]?.get(name) ?? this.byType[MetricType.Gauge]?.get(name);
    return metric ? Number(metric.value) : undefined;
  }

  snapshot(): MetricSnapshot[] {
    return this.byType
      .flatMap((metrics) => [...metrics.values()])
      .sort((a, b) => (a.name === b.name ? a.type.localeCompare(b.type) : a.name < b.name ? -1 : 1))
      .map((m) => {
        if (m.type !== "histogram") return { name: m.name, type: m.type, value: Number(m.value) };
        return {
          name: m.name,
          type: m.type,
          value: m.count,
          histogram: {
            count: m.count,
            sum: Number(m.sum),
            buckets: HISTOGRAM_BUCKETS.map((le, i) => ({ le, count: m.buckets[i] as number })),
          },
        };
      });
  }

  /**
   * Prometheus text format. Names are the module's names with every character outside
   * [a-zA-Z0-9_:] replaced by "_" (Envoy strips its "wasmcustom" namespace the same way).
   * Histograms use the fixed HISTOGRAM_BUCKETS plus +Inf, _sum and _count.
   */
  prometheus(): string {
    const lines: string[] = [];
    for (const m of this.snapshot()) {
      const name = promName(m.name);
      lines.push(`# TYPE ${name} ${m.type}`);
      if (m.histogram) {
        for (const b of m.histogram.buckets) lines.push(`${name}_bucket{le="${b.le}"} ${b.count}`);
        lines.push(`${name}_bucket{le="+Inf"} ${m.histogram.count}`);
        lines.push(`${name}_sum ${m.histogram.sum}`);
        lines.push(`${name}_count ${m.histogram.count}`);
      } else {
        lines.push(`${name} ${m.value}`);
      }
    }
    return lines.length > 0 ? `${lines.join("\n")}\n` : "";
  }
}

function promName(name: string): string {
  const cleaned = name.replace(/[^a-zA-Z0-9_:]/g, "_");
  return /^[0-9]/.test(cleaned) ? `_${cleaned}` : cleaned;
}
