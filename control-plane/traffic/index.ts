// Live traffic figures (issue 14 §1): what each sidecar's agent reports of its Envoy's counters
// (PUT /v1/proxies/<node>/stats, every --stats-interval seconds), kept in memory and aggregated
// into the graph GET /v1/traffic serves: edges from a source service to each destination cluster,
// circuits per cluster, denials per rule.
//
// The cost is bounded by construction: per proxy only its last two reports (rates are the
// difference between them over the time between them), at most `maxProxies` proxies (a new one is
// refused beyond that until another expires) and `maxEntries` clusters, circuits and denials per
// report (a larger report is refused naming the field). A proxy that misses three of its intervals
// is dropped, lazily, when the table is next read or written: no timer. Counters are cumulative,
// so a lost report loses no count, and a counter lower than before (Envoy restarted) counts from 0.
import {
  DEFAULT_STATS_INTERVAL_SECONDS,
  MAX_REPORT_ENTRIES,
  type StatsReport,
} from "../../schema/traffic-report.ts";
import { MAX_SERVICE_NAME, parseOutboundCluster } from "../resources/index.ts";

export type { StatsReport } from "../../schema/traffic-report.ts";

export interface TrafficView {
  windowSeconds: number;
  generatedAt: string;
  edges: {
    source: string;
    destination: string;
    subset: Record<string, string> | null;
    cluster: string;
    requestsPerSecond: number;
    errorsPerSecond: number;
    requests: number;
    errors: number;
  }[];
  circuits: {
    service: string;
    subset: Record<string, string> | null;
    cluster: string;
    open: boolean;
    proxies: string[];
  }[];
  denials: { source: string; rule: string; count: number }[];
  proxies: { node: string; service: string; reportedAt: string }[];
}

export interface TrafficOptions {
  /** The clock, ms since the epoch (default Date.now): tests move it. */
  now?: () => number;
  /** The agents' report interval assumed until a proxy's second report shows its own (default 5 s). */
  intervalSeconds?: number;
  /** Intervals without a report after which a proxy is dropped (default 3). */
  expiryIntervals?: number;
  /** Proxies kept at once (default 10,000). */
  maxProxies?: number;
  /** Clusters, circuits and denials, each, in one report (default 256). */
  maxEntries?: number;
  /**
   * How long one aggregate answers every reader (default 1000 ms): however many consoles poll, the
   * table is aggregated at most once a second. 0: every read aggregates.
   */
  viewCacheMs?: number;
}

export const DEFAULT_MAX_PROXIES = 10_000;
export const DEFAULT_MAX_ENTRIES = MAX_REPORT_ENTRIES;
/** The longest node, cluster or rule name a report may carry. */
export const MAX_NAME = 253;
/** A report's body: 256 entries of each kind with long names fit. */
export const MAX_REPORT_BYTES = 256 * 1024;

/** A report refused: the status the API answers, the field at fault and why. */
export class TrafficRefusal extends Error {
  override name = "TrafficRefusal";
  readonly status: 400 | 413 | 429;
  readonly field: string;
  constructor(status: 400 | 413 | 429, field: string, message: string) {
    super(message);
    this.status = status;
    this.field = field;
  }
}

interface Sample {
  /** The agent's reading time (ms), for rates. */
  at: number;
  /** When it arrived (ms), for expiry and reportedAt. */
  received: number;
  report: StatsReport;
}

interface Proxy {
  service: string;
  last: Sample;
  previous?: Sample;
}

export interface TrafficTable {
  /** Keeps a report of `node`; throws TrafficRefusal for a malformed or oversized one, or a full table. */
  report(node: string, body: unknown): void;
  /** The service `node` last reported as, while it is kept. */
  serviceOf(node: string): string | undefined;
  /** The aggregate, computed now. */
  view(): TrafficView;
  /** Proxies kept now (expired ones dropped first). */
  size(): number;
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);
const isCount = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
const bad = (field: string, message: string) => new TrafficRefusal(400, field, `${field}: ${message}`);
const key = (k: string) => JSON.stringify(k);

/** The entries of an object field, checked for type, count and key length. */
function entriesOf(body: Record<string, unknown>, field: string, max: number): [string, unknown][] {
  const value = body[field];
  if (value === undefined) return [];
  if (!isRecord(value)) throw bad(field, "must be an object");
  const entries = Object.entries(value);
  if (entries.length > max) {
    throw new TrafficRefusal(
      413,
      field,
      `${field}: ${entries.length} entries, more than the ${max} a report may carry`,
    );
  }
  for (const [name] of entries) {
    if (name.length === 0 || name.length > MAX_NAME)
      throw bad(`${field}[${key(name.slice(0, 40))}]`, `a name of 1 to ${MAX_NAME} characters`);
  }
  return entries;
}

/** A body checked field by field into a StatsReport (by hand: this runs for every report of every proxy). */
export function parseReport(body: unknown, maxEntries = DEFAULT_MAX_ENTRIES): StatsReport {
  if (!isRecord(body)) throw bad("(root)", "a report must be a JSON object");
  for (const name of Object.keys(body)) {
    if (!["service", "at", "clusters", "circuits", "denials"].includes(name))
      throw bad(name, "unknown field (known: service, at, clusters, circuits, denials)");
  }
  const { service, at } = body;
  if (typeof service !== "string" || service.length === 0 || service.length > MAX_SERVICE_NAME)
    throw bad("service", `the reporting proxy's service, 1 to ${MAX_SERVICE_NAME} characters`);
  if (typeof at !== "string" || !Number.isFinite(Date.parse(at)))
    throw bad("at", "when the counters were read, an RFC 3339 date-time");
  const clusters: StatsReport["clusters"] = {};
  for (const [name, value] of entriesOf(body, "clusters", maxEntries)) {
    const field = `clusters[${key(name)}]`;
    if (clusterOf(name) === undefined) throw bad(field, "not an outbound cluster name");
    if (!isRecord(value) || !isCount(value.requests) || !isCount(value.errors5xx))
      throw bad(field, "must be { requests, errors5xx }, counts");
    clusters[name] = { requests: value.requests, errors5xx: value.errors5xx };
  }
  const circuits: StatsReport["circuits"] = {};
  for (const [name, value] of entriesOf(body, "circuits", maxEntries)) {
    const field = `circuits[${key(name)}]`;
    if (clusterOf(name) === undefined) throw bad(field, "not an outbound cluster name");
    if (!isRecord(value) || typeof value.open !== "boolean" || !isCount(value.rejected))
      throw bad(field, "must be { open: boolean, rejected: count }");
    circuits[name] = { open: value.open, rejected: value.rejected };
  }
  const denials: StatsReport["denials"] = {};
  for (const [name, value] of entriesOf(body, "denials", maxEntries)) {
    if (!isCount(value)) throw bad(`denials[${key(name)}]`, "must be a count");
    denials[name] = value;
  }
  return { service, at, clusters, circuits, denials };
}

/** Increase of a cumulative counter; lower than before means it restarted from 0. */
const increase = (now: number, before: number | undefined) =>
  before === undefined ? now : now >= before ? now - before : now;

const round = (n: number) => Math.round(n * 1000) / 1000;

type ParsedCluster = ReturnType<typeof parseOutboundCluster>;
/**
 * Cluster names read back, remembered: every report names the same few clusters again, and a mesh
 * has a bounded number of them (emptied past 65,536 names, so a stream of made-up names costs no
 * more than that).
 */
const parsedClusters = new Map<string, ParsedCluster>();
function clusterOf(name: string): ParsedCluster {
  let parsed = parsedClusters.get(name);
  if (parsed === undefined && !parsedClusters.has(name)) {
    parsed = parseOutboundCluster(name);
    if (parsedClusters.size >= 65_536) parsedClusters.clear();
    parsedClusters.set(name, parsed);
  }
  return parsed;
}

export function createTrafficTable(options: TrafficOptions = {}): TrafficTable {
  const now = options.now ?? Date.now;
  const defaultIntervalMs = (options.intervalSeconds ?? DEFAULT_STATS_INTERVAL_SECONDS) * 1000;
  const expiryIntervals = options.expiryIntervals ?? 3;
  const maxProxies = options.maxProxies ?? DEFAULT_MAX_PROXIES;
  const maxEntries = options.maxEntries ?? DEFAULT_MAX_ENTRIES;
  const viewCacheMs = options.viewCacheMs ?? 1000;
  const proxies = new Map<string, Proxy>();
  let cached: { at: number; view: TrafficView } | undefined;

  /** A proxy's own interval: the time between its last two reports (1 s to 10 min), else the default. */
  const intervalOf = (p: Proxy) =>
    p.previous === undefined
      ? defaultIntervalMs
      : Math.min(600_000, Math.max(1000, p.last.received - p.previous.received));
  const expired = (p: Proxy, t: number) => t - p.last.received > expiryIntervals * intervalOf(p);

  function sweep(t: number): void {
    for (const [node, p] of proxies) if (expired(p, t)) proxies.delete(node);
  }

  return {
    report(node, body) {
      if (node.length === 0 || node.length > MAX_NAME)
        throw bad("node", `a node id of 1 to ${MAX_NAME} characters`);
      const report = parseReport(body, maxEntries);
      const t = now();
      let proxy = proxies.get(node);
      if (proxy !== undefined && expired(proxy, t)) {
        proxies.delete(node);
        proxy = undefined;
      }
      const sample: Sample = { at: Date.parse(report.at), received: t, report };
      if (proxy === undefined) {
        if (proxies.size >= maxProxies) sweep(t);
        if (proxies.size >= maxProxies) {
          throw new TrafficRefusal(
            429,
            "node",
            `the control plane keeps the figures of ${maxProxies} proxies, and has that many: ${node}'s are not kept until one stops reporting`,
          );
        }
        proxies.set(node, { service: report.service, last: sample });
        return;
      }
      if (proxy.service !== report.service) {
        // The API checks the token; this keeps one node's two reports of one service.
        proxies.set(node, { service: report.service, last: sample });
        return;
      }
      proxy.previous = proxy.last;
      proxy.last = sample;
    },

    serviceOf(node) {
      const p = proxies.get(node);
      return p === undefined || expired(p, now()) ? undefined : p.service;
    },

    size() {
      sweep(now());
      return proxies.size;
    },

    view() {
      const t = now();
      if (cached !== undefined && t >= cached.at && t - cached.at < viewCacheMs) return cached.view;
      sweep(t);
      const edges = new Map<string, TrafficView["edges"][number]>();
      const circuits = new Map<string, TrafficView["circuits"][number]>();
      const denials = new Map<string, TrafficView["denials"][number]>();
      const listed: TrafficView["proxies"] = [];
      let windowMs = 0;
      for (const [node, p] of proxies) {
        const { last, previous } = p;
        const source = p.service;
        listed.push({ node, service: source, reportedAt: new Date(last.received).toISOString() });
        // The agent's reading times, else the arrival times when its clock went back.
        let dtMs = 0;
        if (previous !== undefined) {
          dtMs = last.at - previous.at;
          if (!(dtMs > 0)) dtMs = last.received - previous.received;
          if (dtMs > 0) windowMs = Math.max(windowMs, dtMs);
        }
        const before = dtMs > 0 ? previous?.report : undefined;
        for (const [cluster, c] of Object.entries(last.report.clusters)) {
          const id = `${source}\u0000${cluster}`;
          let edge = edges.get(id);
          if (edge === undefined) {
            const parsed = clusterOf(cluster);
            if (parsed === undefined) continue;
            edge = {
              source,
              destination: parsed.service,
              subset: parsed.subset,
              cluster,
              requestsPerSecond: 0,
              errorsPerSecond: 0,
              requests: 0,
              errors: 0,
            };
            edges.set(id, edge);
          }
          edge.requests += c.requests;
          edge.errors += c.errors5xx;
          if (before !== undefined) {
            const was = before.clusters[cluster];
            edge.requestsPerSecond += (increase(c.requests, was?.requests) * 1000) / dtMs;
            edge.errorsPerSecond += (increase(c.errors5xx, was?.errors5xx) * 1000) / dtMs;
          }
        }
        for (const [cluster, c] of Object.entries(last.report.circuits)) {
          let circuit = circuits.get(cluster);
          if (circuit === undefined) {
            const parsed = clusterOf(cluster);
            if (parsed === undefined) continue;
            circuit = { service: parsed.service, subset: parsed.subset, cluster, open: false, proxies: [] };
            circuits.set(cluster, circuit);
          }
          if (c.open) {
            circuit.open = true;
            circuit.proxies.push(node);
          }
        }
        for (const [rule, count] of Object.entries(last.report.denials)) {
          const id = `${source}\u0000${rule}`;
          const denial = denials.get(id);
          if (denial === undefined) denials.set(id, { source, rule, count });
          else denial.count += count;
        }
      }
      const byName = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
      for (const edge of edges.values()) {
        edge.requestsPerSecond = round(edge.requestsPerSecond);
        edge.errorsPerSecond = round(edge.errorsPerSecond);
      }
      for (const circuit of circuits.values()) circuit.proxies.sort(byName);
      const view: TrafficView = {
        windowSeconds: round((windowMs > 0 ? windowMs : defaultIntervalMs) / 1000),
        generatedAt: new Date(t).toISOString(),
        edges: [...edges.values()].sort((a, b) => byName(a.source, b.source) || byName(a.cluster, b.cluster)),
        circuits: [...circuits.values()].sort((a, b) => byName(a.cluster, b.cluster)),
        denials: [...denials.values()].sort((a, b) => byName(a.source, b.source) || byName(a.rule, b.rule)),
        proxies: listed.sort((a, b) => byName(a.node, b.node)),
      };
      cached = { at: t, view };
      return view;
    },
  };
}
