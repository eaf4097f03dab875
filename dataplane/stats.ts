// Traffic figures for the control plane (issue 14 §1): every --stats-interval seconds the agent
// reads its Envoy's counters from the admin interface (only those the figures need: each outbound
// cluster's requests and 5xx answers, the routing filter's breaker and denial metrics) and PUTs a
// compact cumulative report to /v1/proxies/<node>/stats. Cumulative, so a lost report loses no
// count: the control plane's rates are the difference between two reports. A failed report is
// logged once per outage and never touches traffic or the agent's other work.
import { MAX_REPORT_ENTRIES, type StatsReport } from "../schema/traffic-report.ts";
import { statValues } from "./admin-stats.ts";
import { failureOf, type HttpResponse, httpRequest, type Token } from "./http.ts";

const OUTBOUND = "outbound|";
/**
 * Envoy's admin filter (a regex over stat names): the outbound clusters' request and 5xx counters,
 * and the filter's (`wasmcustom.`) breaker gauge and counter and denial counters.
 */
export const STATS_FILTER =
  "^(cluster\\.outbound\\|.*\\.upstream_rq_(total|5xx)|wasmcustom\\.wasmesh\\.(breaker\\..*\\.(open|rejected)|rule\\..*\\.denied))$";

/** The report of Envoy's /stats?format=json text: zero counts left out, each kind capped. */
export function reportOf(service: string, at: Date, statsJson: string): StatsReport {
  const clusters = new Map<string, { requests: number; errors5xx: number }>();
  const circuits = new Map<string, { open: boolean; rejected: number }>();
  const denials = new Map<string, number>();
  const cluster = (name: string) => {
    let c = clusters.get(name);
    if (c === undefined) {
      c = { requests: 0, errors5xx: 0 };
      clusters.set(name, c);
    }
    return c;
  };
  const circuit = (name: string) => {
    let c = circuits.get(name);
    if (c === undefined) {
      c = { open: false, rejected: 0 };
      circuits.set(name, c);
    }
    return c;
  };
  for (const [name, value] of statValues(statsJson)) {
    if (!Number.isSafeInteger(value) || value < 0) continue;
    if (name.startsWith(`cluster.${OUTBOUND}`)) {
      if (name.endsWith(".upstream_rq_total")) cluster(name.slice(8, -18)).requests = value;
      else if (name.endsWith(".upstream_rq_5xx")) cluster(name.slice(8, -16)).errors5xx = value;
    } else if (name.startsWith(`wasmcustom.wasmesh.breaker.${OUTBOUND}`)) {
      const rest = name.slice(27);
      if (rest.endsWith(".open")) circuit(rest.slice(0, -5)).open = value > 0;
      else if (rest.endsWith(".rejected")) circuit(rest.slice(0, -9)).rejected = value;
    } else if (name.startsWith("wasmcustom.wasmesh.rule.") && name.endsWith(".denied")) {
      if (value > 0) denials.set(name.slice(24, -7), value);
    }
  }
  // A sidecar has a cluster for every destination in the mesh: only those it has called go.
  const called = [...clusters].filter(([, c]) => c.requests > 0 || c.errors5xx > 0);
  const capped = <T>(entries: [string, T][], weight: (v: T) => number) =>
    Object.fromEntries(
      entries.length <= MAX_REPORT_ENTRIES
        ? entries
        : entries.sort((a, b) => weight(b[1]) - weight(a[1])).slice(0, MAX_REPORT_ENTRIES),
    );
  return {
    service,
    at: at.toISOString(),
    clusters: capped(called, (c) => c.requests),
    circuits: capped([...circuits], (c) => (c.open ? Number.MAX_SAFE_INTEGER : c.rejected)),
    denials: capped([...denials], (n) => n),
  };
}

export interface StatsReporterOptions {
  /** The Workload's name: Envoy's node id. */
  node: string;
  service: string;
  adminPort: number;
  api: string;
  token: Token;
  ca?: string;
  intervalSeconds: number;
  log: (line: string) => void;
}

export interface StatsReporter {
  /** Reports sent and kept so far (for tests). */
  readonly sent: number;
  /** One report now (the timer's work); never rejects. */
  reportNow(): Promise<void>;
  stop(): void;
}

/** Starts reporting: one report now (the control plane lists the proxy at once), then every intervalSeconds. */
export function startStatsReporter(options: StatsReporterOptions): StatsReporter {
  const { log } = options;
  const timeoutMs = Math.min(options.intervalSeconds, 5) * 1000;
  const url = `${options.api.replace(/\/$/, "")}/v1/proxies/${encodeURIComponent(options.node)}/stats`;
  const statsUrl = `http://127.0.0.1:${options.adminPort}/stats?format=json&filter=${encodeURIComponent(STATS_FILTER)}`;
  let sent = 0;
  let failing: string | undefined;
  let running: Promise<void> | undefined;
  let stopped = false;

  async function once(): Promise<void> {
    let step = "reading Envoy's stats";
    try {
      const stats = await httpRequest(statsUrl, { timeoutMs });
      if (stats.status !== 200) throw new Error(failureOf(stats));
      const report = reportOf(options.service, new Date(), stats.text);
      step = `reporting traffic figures to ${url}`;
      const put: HttpResponse = await httpRequest(url, {
        method: "PUT",
        json: report,
        token: options.token,
        ...(options.ca !== undefined ? { ca: options.ca } : {}),
        timeoutMs,
      });
      if (put.status !== 204 && put.status !== 200) throw new Error(failureOf(put));
      sent++;
      if (failing !== undefined) {
        log("traffic figures reported again");
        failing = undefined;
      }
    } catch (error) {
      // Once per outage: the next line about it is the one saying it is over.
      if (failing === undefined) {
        failing = step;
        log(
          `${step} failed (${(error as Error).message}); retrying every ${options.intervalSeconds} s, quietly`,
        );
      }
    }
  }

  const tick = () => {
    if (stopped || running !== undefined) return; // a slow call is not stacked upon
    running = once().finally(() => {
      running = undefined;
    });
  };
  const timer = setInterval(tick, options.intervalSeconds * 1000);
  timer.unref();
  tick();

  return {
    get sent() {
      return sent;
    },
    reportNow: once,
    stop() {
      stopped = true;
      clearInterval(timer);
    },
  };
}
