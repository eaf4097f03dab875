// The sidecar's Prometheus endpoint (issue 18 §3): `GET /metrics` on --metrics-port merges what a
// mesh dashboard needs of Envoy's stats, renamed to stable `wasmesh_` names with readable labels,
// and the app's own metrics endpoint when it has one (--app-metrics-path), as kuma-dp merges them.
// docs/metrics.md lists every name, type and label.
//
// Envoy is read twice per scrape, both filtered on its side:
// - `/stats?format=json`: counters and gauges under their exact names. The Prometheus output
//   would do for names without dots, but Envoy's tag extraction cuts a cluster name at its first
//   dot (`outbound|reviews.default|version=v2`, a Kubernetes service, becomes the label
//   `outbound|reviews` and the family `envoy_cluster_default_version_v2_…`), and it folds the
//   filter's own metrics (`wasmcustom.wasmesh.route.outbound|reviews|version=v2.requests`) into
//   a name (`wasmesh_route_outbound_reviews_version_v2_requests`) nothing can be read back from.
// - `/stats/prometheus`: the two request-duration histograms, whose buckets, sum and count the
//   JSON output does not give. A family of a dotted cluster name is mapped back with the exact
//   cluster names the JSON output gave (prometheusCluster()).
//
// Only clusters the sidecar has called (upstream_rq_total > 0) are kept: a sidecar has a cluster
// for every destination of the mesh, as stats.ts says too. The translation is a pure function over
// the two texts (translateEnvoyStats), unit-tested on a real capture (test/fixtures/envoy-stats/).
import http from "node:http";
import { statValues } from "./admin-stats.ts";
import { httpRequest, type LocalServer, listen } from "./http.ts";

/** Envoy's admin filter for the JSON read: outbound clusters' counters, inbound's, the filter's, RBAC denials. */
export const ENVOY_JSON_FILTER =
  "^(cluster\\.outbound\\|.*\\.upstream_rq_([1-5]xx|total)|http\\.inbound\\.downstream_rq_([1-5]xx|total)|wasmcustom\\.wasmesh\\..*|extension_config_discovery\\.http_filter\\.wasmesh[.-]inbound[.-]access[.-]rbac\\.rbac\\.denied)$";
/** Envoy's admin filter for the Prometheus read: the request-duration histograms only. */
export const ENVOY_PROMETHEUS_FILTER =
  "^(cluster\\.outbound\\|.*\\.upstream_rq_time|http\\.inbound\\.downstream_rq_time)$";

/** The app's metrics scrape: how long it may take. */
export const APP_METRICS_TIMEOUT_MS = 2_000;
/** Envoy's admin reads: how long each may take. */
export const ENVOY_TIMEOUT_MS = 2_000;

type Labels = Record<string, string>;
type Kind = "counter" | "gauge" | "histogram";

interface Family {
  name: string;
  kind: Kind;
  help: string;
  /** Series lines without the family's name: `[suffix, labels, value]`. */
  series: [string, Labels, string][];
}

/** The families the endpoint serves, in order, with their help text (docs/metrics.md says more). */
const FAMILIES: Record<string, { kind: Kind; help: string }> = {
  wasmesh_outbound_requests_total: {
    kind: "counter",
    help: "Requests this sidecar sent to a destination (service and subset), by response code class.",
  },
  wasmesh_outbound_request_duration_milliseconds: {
    kind: "histogram",
    help: "Time from the request's start to the upstream response's end, per destination, in ms.",
  },
  wasmesh_inbound_requests_total: {
    kind: "counter",
    help: "Requests this sidecar's inbound listener answered, by response code class.",
  },
  wasmesh_inbound_request_duration_milliseconds: {
    kind: "histogram",
    help: "Time the inbound listener took for a request, first byte in to last byte out, in ms.",
  },
  wasmesh_inbound_denied_total: {
    kind: "counter",
    help: "Requests the inbound listener refused by the mesh's access rules (at the destination).",
  },
  wasmesh_route_requests_total: {
    kind: "counter",
    help: "Requests the routing filter sent to a destination (service and subset): the route taken.",
  },
  wasmesh_rule_denied_total: {
    kind: "counter",
    help: "Requests the routing filter denied by a header rule (early, at the source).",
  },
  wasmesh_rule_aborted_total: {
    kind: "counter",
    help: "Requests the routing filter aborted by a rule's fault injection.",
  },
  wasmesh_rule_delayed_total: {
    kind: "counter",
    help: "Requests the routing filter delayed by a rule's fault injection.",
  },
  wasmesh_circuit_open: {
    kind: "gauge",
    help: "1 while the routing filter's circuit breaker of a destination is open, else 0.",
  },
  wasmesh_circuit_opened_total: { kind: "counter", help: "Times a destination's circuit opened." },
  wasmesh_circuit_closed_total: { kind: "counter", help: "Times a destination's circuit closed again." },
  wasmesh_circuit_rejected_total: {
    kind: "counter",
    help: "Requests refused by a destination's open (or full) circuit.",
  },
  wasmesh_circuit_fallback_total: {
    kind: "counter",
    help: "Requests sent to the fallback destination while a destination's circuit was open.",
  },
};

/** Parsed Prometheus text: one sample. */
export interface Sample {
  name: string;
  labels: Labels;
  value: string;
}

/**
 * The samples of a Prometheus text exposition (0.0.4); comments and lines that do not parse are
 * skipped. Label values are unescaped (`\\`, `\"`, `\n`).
 */
export function parsePrometheusText(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const nameMatch = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line);
    if (nameMatch === null) continue;
    const name = nameMatch[0];
    let i = name.length;
    const labels: Labels = {};
    if (line[i] === "{") {
      i++;
      let ok = false;
      for (;;) {
        while (line[i] === " " || line[i] === ",") i++;
        if (line[i] === "}") {
          i++;
          ok = true;
          break;
        }
        const key = /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(line.slice(i));
        if (key === null) break;
        i += key[0].length;
        while (line[i] === " ") i++;
        if (line[i] !== "=") break;
        i++;
        while (line[i] === " ") i++;
        if (line[i] !== '"') break;
        i++;
        let value = "";
        let closed = false;
        while (i < line.length) {
          const c = line[i] as string;
          if (c === "\\") {
            const next = line[i + 1];
            value += next === "n" ? "\n" : (next ?? "");
            i += 2;
          } else if (c === '"') {
            i++;
            closed = true;
            break;
          } else {
            value += c;
            i++;
          }
        }
        if (!closed) break;
        labels[key[0]] = value;
      }
      if (!ok) continue;
    }
    const value = line.slice(i).trim().split(/\s+/)[0];
    if (value === undefined || value === "") continue;
    samples.push({ name, labels, value });
  }
  return samples;
}

/** A label value escaped for the text format. */
export const escapeLabelValue = (value: string): string =>
  value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");

/** A cluster name `outbound|<service>[|<subset>]` as destination labels; undefined for others. */
export function destinationOf(cluster: string): Labels | undefined {
  if (!cluster.startsWith("outbound|")) return undefined;
  const rest = cluster.slice("outbound|".length);
  const bar = rest.indexOf("|");
  if (rest === "") return undefined;
  return bar < 0
    ? { destination_service: rest, destination_subset: "" }
    : { destination_service: rest.slice(0, bar), destination_subset: rest.slice(bar + 1) };
}

/** Envoy's Prometheus sanitisation of a name: every character but [a-zA-Z0-9_] becomes `_`. */
const sanitize = (name: string) => name.replace(/[^a-zA-Z0-9_]/g, "_");

/**
 * The exact cluster of a Prometheus series of Envoy's `cluster.<name>.<stat>`, from the family
 * (`envoy_cluster_<rest of a dotted name>_<stat>`) and its envoy_cluster_name label (the name up to
 * its first dot), among the exact names `clusters` known from the JSON output; undefined when none.
 */
export function prometheusCluster(
  family: string,
  stat: string,
  label: string | undefined,
  clusters: Iterable<string>,
): string | undefined {
  if (label === undefined) return undefined;
  const prefix = "envoy_cluster_";
  if (!family.startsWith(prefix) || !family.endsWith(stat)) return undefined;
  const middle = family.slice(prefix.length, family.length - stat.length);
  if (middle === "") return label;
  for (const cluster of clusters) {
    if (!cluster.startsWith(`${label}.`)) continue;
    if (`${sanitize(cluster.slice(label.length + 1))}_` === middle) return cluster;
  }
  return undefined;
}

export interface SidecarLabels {
  /** The sidecar's service. */
  service: string;
  /** The Workload's name (Envoy's node id). */
  workload: string;
}

/**
 * The mesh's metrics in the Prometheus text format (0.0.4), from Envoy's `/stats?format=json` and
 * `/stats/prometheus` texts (filtered with ENVOY_JSON_FILTER and ENVOY_PROMETHEUS_FILTER, or not:
 * what is not needed is left out here too). Every series carries `service` and `workload`.
 */
export function translateEnvoyStats(
  statsJson: string,
  prometheusText: string,
  sidecar: SidecarLabels,
): string {
  const families = new Map<string, Family>();
  const add = (family: string, suffix: string, labels: Labels, value: string) => {
    let f = families.get(family);
    if (f === undefined) {
      const known = FAMILIES[family];
      if (known === undefined) throw new Error(`unknown family ${family}`);
      f = { name: family, kind: known.kind, help: known.help, series: [] };
      families.set(family, f);
    }
    f.series.push([suffix, { ...labels, service: sidecar.service, workload: sidecar.workload }, value]);
  };

  const counters = statValues(statsJson);

  // Clusters the sidecar has called, by exact name.
  const called = new Map<string, Labels>();
  for (const [name, value] of counters) {
    const m = /^cluster\.(outbound\|.*)\.upstream_rq_total$/.exec(name);
    if (m === null || value <= 0) continue;
    // Envoy's per-origin split of a cluster's counters (`<cluster>.external.upstream_rq_…`).
    if (/\.(external|internal)$/.test(m[1] as string)) continue;
    const destination = destinationOf(m[1] as string);
    if (destination !== undefined) called.set(m[1] as string, destination);
  }

  const byCluster = (
    name: string,
    suffix: RegExp,
  ): { cluster: string; labels: Labels; rest: string } | undefined => {
    for (const prefix of ["cluster.", "wasmcustom.wasmesh.breaker.", "wasmcustom.wasmesh.route."]) {
      if (!name.startsWith(prefix)) continue;
      const m = suffix.exec(name);
      if (m === null) return undefined;
      const cluster = name.slice(prefix.length, m.index);
      const labels = prefix === "cluster." ? called.get(cluster) : destinationOf(cluster);
      return labels === undefined ? undefined : { cluster, labels, rest: m[1] ?? "" };
    }
    return undefined;
  };

  const sorted = [...counters].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  for (const [name, value] of sorted) {
    const text = String(value);
    if (name.startsWith("cluster.")) {
      const hit = byCluster(name, /\.upstream_rq_([1-5])xx$/);
      if (hit !== undefined)
        add(
          "wasmesh_outbound_requests_total",
          "",
          { ...hit.labels, response_code_class: `${hit.rest}xx` },
          text,
        );
    } else if (name.startsWith("http.inbound.")) {
      const m = /^http\.inbound\.downstream_rq_([1-5])xx$/.exec(name);
      if (m !== null) add("wasmesh_inbound_requests_total", "", { response_code_class: `${m[1]}xx` }, text);
    } else if (name.startsWith("wasmcustom.wasmesh.route.")) {
      const hit = byCluster(name, /\.requests$/);
      if (hit !== undefined) add("wasmesh_route_requests_total", "", hit.labels, text);
    } else if (name.startsWith("wasmcustom.wasmesh.breaker.")) {
      const hit = byCluster(name, /\.(open|opened|closed|rejected|fallback)$/);
      if (hit === undefined) continue;
      if (hit.rest === "open") add("wasmesh_circuit_open", "", hit.labels, value > 0 ? "1" : "0");
      else add(`wasmesh_circuit_${hit.rest}_total`, "", hit.labels, text);
    } else if (name.startsWith("wasmcustom.wasmesh.rule.")) {
      const m = /^wasmcustom\.wasmesh\.rule\.([\s\S]+)\.(denied|aborted|delayed)$/.exec(name);
      if (m !== null) add(`wasmesh_rule_${m[2]}_total`, "", { rule: m[1] as string }, text);
    } else if (
      /^extension_config_discovery\.http_filter\.wasmesh[.-]inbound[.-]access[.-]rbac\.rbac\.denied$/.test(
        name,
      )
    ) {
      add("wasmesh_inbound_denied_total", "", {}, text);
    }
  }

  // The histograms, from the Prometheus text.
  const clusters = [...called.keys()];
  for (const sample of parsePrometheusText(prometheusText)) {
    const m = /_(bucket|sum|count)$/.exec(sample.name);
    if (m === null) continue;
    const suffix = `_${m[1]}`;
    const family = sample.name.slice(0, -suffix.length);
    const le = sample.labels.le;
    const extra: Labels = suffix === "_bucket" && le !== undefined ? { le } : {};
    if (family === "envoy_http_downstream_rq_time") {
      if (sample.labels.envoy_http_conn_manager_prefix === "inbound")
        add("wasmesh_inbound_request_duration_milliseconds", suffix, extra, sample.value);
      continue;
    }
    if (!family.endsWith("_upstream_rq_time") || family.endsWith("_external_upstream_rq_time")) continue;
    if (family.endsWith("_internal_upstream_rq_time")) continue;
    const cluster = prometheusCluster(family, "upstream_rq_time", sample.labels.envoy_cluster_name, clusters);
    const labels = cluster === undefined ? undefined : called.get(cluster);
    if (labels === undefined) continue;
    add("wasmesh_outbound_request_duration_milliseconds", suffix, { ...labels, ...extra }, sample.value);
  }

  const out: string[] = [];
  for (const name of Object.keys(FAMILIES)) {
    const family = families.get(name);
    if (family === undefined) continue;
    out.push(`# HELP ${name} ${family.help}`, `# TYPE ${name} ${family.kind}`);
    for (const [suffix, labels, value] of family.series)
      out.push(`${name}${suffix}${formatLabels(labels)} ${value}`);
  }
  return out.length === 0 ? "" : `${out.join("\n")}\n`;
}

/** `{k="v",…}` with the values escaped; labels with empty values are left out (Prometheus drops them). */
export function formatLabels(labels: Labels): string {
  const parts = Object.entries(labels)
    .filter(([, v]) => v !== "")
    .map(([k, v]) => `${k}="${escapeLabelValue(v)}"`);
  return parts.length === 0 ? "" : `{${parts.join(",")}}`;
}

/**
 * The app's metrics text as merged: `# EOF` (OpenMetrics) dropped, and every family named
 * `wasmesh_*` dropped (it would collide with the sidecar's own); ends with a newline.
 */
export function appMetricsPart(text: string): string {
  const kept: string[] = [];
  for (const line of text.split("\n")) {
    const trimmed = line.trim();
    if (trimmed === "" || trimmed === "# EOF") continue;
    const comment = /^#\s+(HELP|TYPE|UNIT)\s+(\S+)/.exec(trimmed);
    const name = comment !== null ? comment[2] : /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(trimmed)?.[0];
    if (name?.startsWith("wasmesh_")) continue;
    kept.push(line);
  }
  return kept.length === 0 ? "" : `${kept.join("\n")}\n`;
}

/** The `wasmesh_app_metrics_up` gauge: whether the app's metrics were had for this scrape. */
export function appUpPart(up: boolean, sidecar: SidecarLabels): string {
  return [
    "# HELP wasmesh_app_metrics_up 1 when the app's own metrics endpoint answered this scrape, else 0.",
    "# TYPE wasmesh_app_metrics_up gauge",
    `wasmesh_app_metrics_up${formatLabels({ service: sidecar.service, workload: sidecar.workload })} ${up ? 1 : 0}`,
    "",
  ].join("\n");
}

export interface MetricsServerOptions extends SidecarLabels {
  /** 0: a free one. */
  port: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** Envoy's admin port; undefined until it is known (the server may start before the ports are picked). */
  adminPort: () => number | undefined;
  /** The app's metrics: a path on 127.0.0.1:port. */
  app?: { port: number; path: string; timeoutMs?: number };
  envoyTimeoutMs?: number;
}

export type MetricsServer = LocalServer;

/** What one scrape answers: status and body. */
export async function scrape(options: MetricsServerOptions): Promise<{ status: number; text: string }> {
  const admin = options.adminPort();
  const timeoutMs = options.envoyTimeoutMs ?? ENVOY_TIMEOUT_MS;
  const appRead =
    options.app === undefined
      ? undefined
      : httpRequest(`http://127.0.0.1:${options.app.port}${options.app.path}`, {
          timeoutMs: options.app.timeoutMs ?? APP_METRICS_TIMEOUT_MS,
          headers: { accept: "text/plain;version=0.0.4;q=1,*/*;q=0.1" },
        }).then(
          (r) => (r.status === 200 ? r.text : undefined),
          () => undefined,
        );
  let envoyPart: string;
  try {
    if (admin === undefined) throw new Error("Envoy's admin port is not known yet");
    const base = `http://127.0.0.1:${admin}`;
    const [json, prom] = await Promise.all([
      httpRequest(`${base}/stats?format=json&filter=${encodeURIComponent(ENVOY_JSON_FILTER)}`, { timeoutMs }),
      httpRequest(`${base}/stats/prometheus?filter=${encodeURIComponent(ENVOY_PROMETHEUS_FILTER)}`, {
        timeoutMs,
      }),
    ]);
    for (const r of [json, prom])
      if (r.status !== 200) throw new Error(`HTTP ${r.status}: ${r.text.trim().slice(0, 200)}`);
    envoyPart = translateEnvoyStats(json.text, prom.text, options);
  } catch (error) {
    await appRead;
    return {
      status: 503,
      text: `Envoy's stats cannot be read (admin 127.0.0.1:${admin ?? "?"}): ${(error as Error).message}\n`,
    };
  }
  if (appRead === undefined) return { status: 200, text: envoyPart };
  const app = await appRead;
  return {
    status: 200,
    text: envoyPart + appUpPart(app !== undefined, options) + (app === undefined ? "" : appMetricsPart(app)),
  };
}

/** Serves `GET /metrics` (and HEAD); anything else is 404. */
export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const server = http.createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://localhost").pathname;
    if (path !== "/metrics" || (req.method !== "GET" && req.method !== "HEAD")) {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found: GET /metrics\n");
      return;
    }
    scrape(options).then(
      ({ status, text }) => {
        res
          .writeHead(status, {
            "content-type": status === 200 ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain",
          })
          .end(req.method === "HEAD" ? undefined : text);
      },
      (error: unknown) => {
        res.writeHead(500, { "content-type": "text/plain" }).end(`${(error as Error).message}\n`);
      },
    );
  });
  return listen(server, options.host ?? "127.0.0.1", options.port);
}
