// Issue 18 §3-4's metrics proof, with real components only: `wasmesh server` as a process, the
// canary mesh (productpage calls reviews, split 90/10 over v1 and v2; test/fixtures/canary-mesh.yaml)
// with an AccessRule that denies productpage's calls to itself and a CircuitBreaker on reviews v2,
// three sidecars started by `wasmesh dataplane run` (each serving its /metrics on a port it picked),
// reviews-v2-1's agent merging a small real app metrics endpoint, and a real Prometheus (Debian's
// package; test/support/prometheus.ts) scraping every agent and the control plane.
//
// Prometheus runs deploy/observability/prometheus.yml itself, its relabelling untouched: Debian's
// build has no Kubernetes discovery, so each job's kubernetes_sd_configs is swapped for a file_sd
// of the targets with the __meta_kubernetes_* labels the discovery would give (an injected pod's
// annotations, its IP, its phase; the control plane's endpoints), and the control plane job is
// plain http with a read-only token rather than https. What the relabelling keeps and where it
// points is the deploy file's.
//
// Then: every target is up; 1,000 requests through productpage's sidecar give reviews v2 its share
// in PromQL; every `expr` of every dashboard in deploy/observability/dashboards parses and names
// only metrics Prometheus really has; the app's metrics are merged, and an app that stops answering
// turns wasmesh_app_metrics_up to 0 while the sidecar's own part is still scraped.
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import YAML from "yaml";
import { type CanaryMesh, resource, startCanaryMesh } from "../support/canary-mesh.ts";
import { REPO_ROOT } from "../support/envoy.ts";
import { type Prometheus, startPrometheus } from "../support/prometheus.ts";

const OBSERVABILITY = join(REPO_ROOT, "deploy", "observability");
const CLIENT = "productpage-1";
const AGENTS = [
  { name: CLIENT, service: "productpage" },
  { name: "reviews-v1-1", service: "reviews", labels: { version: "v1" } },
  { name: "reviews-v2-1", service: "reviews", labels: { version: "v2" } },
];
/** Requests productpage sends to reviews, one after another. */
const REQUESTS = 1_000;

let mesh: CanaryMesh;
let prometheus: Prometheus;
let app: http.Server;
let appAnswers = true;

const metricsPortOf = (name: string): number => {
  const port = /^ports: .*, metrics (\d+)/m.exec(mesh.agent(name).stdout())?.[1];
  if (port === undefined) throw new Error(`${name}: no metrics port in its first line`);
  return Number(port);
};

/** deploy/observability/prometheus.yml with file_sd targets standing in for Kubernetes discovery. */
function deployedConfig(dir: string, token: string): string {
  const config = YAML.parse(readFileSync(join(OBSERVABILITY, "prometheus.yml"), "utf8")) as {
    global: Record<string, string>;
    scrape_configs: Record<string, unknown>[];
  };
  config.global = { scrape_interval: "1s", evaluation_interval: "1s", scrape_timeout: "1s" };
  const sidecars = AGENTS.map((agent) => ({
    // The discovery lists a pod once per container port: here the app's.
    targets: ["127.0.0.1:9080"],
    labels: {
      __meta_kubernetes_pod_annotation_prometheus_io_scrape: "true",
      __meta_kubernetes_pod_annotation_prometheus_io_port: String(metricsPortOf(agent.name)),
      __meta_kubernetes_pod_annotation_prometheus_io_path: "/metrics",
      __meta_kubernetes_pod_annotation_wasmesh_io_sidecar: "injected",
      __meta_kubernetes_pod_ip: "127.0.0.1",
      __meta_kubernetes_pod_phase: "Running",
      __meta_kubernetes_namespace: "default",
      __meta_kubernetes_pod_name: agent.name,
    },
  }));
  // A pod without the annotation, and one that has finished: not scraped.
  const ignoredPod = (name: string, labels: Record<string, string>) => ({
    targets: ["127.0.0.1:9"],
    labels: {
      __meta_kubernetes_pod_ip: "127.0.0.1",
      __meta_kubernetes_pod_phase: "Running",
      __meta_kubernetes_pod_name: name,
      ...labels,
    },
  });
  sidecars.push(
    ignoredPod("unmeshed", {}) as (typeof sidecars)[number],
    ignoredPod("finished", {
      __meta_kubernetes_pod_annotation_prometheus_io_scrape: "true",
      __meta_kubernetes_pod_annotation_prometheus_io_port: "9",
      __meta_kubernetes_pod_phase: "Succeeded",
    }) as (typeof sidecars)[number],
  );
  const controlPlane = ["http", "grpc"].map((port) => ({
    targets: [port === "http" ? `127.0.0.1:${new URL(mesh.cp.api).port}` : mesh.cp.xds],
    labels: {
      __meta_kubernetes_service_name: "wasmesh-control-plane",
      __meta_kubernetes_endpoint_port_name: port,
      __meta_kubernetes_pod_name: "wasmesh-control-plane-0",
    },
  }));
  writeFileSync(join(dir, "sidecars.json"), JSON.stringify(sidecars));
  writeFileSync(join(dir, "control-plane.json"), JSON.stringify(controlPlane));
  writeFileSync(join(dir, "token"), token, { mode: 0o600 });
  for (const job of config.scrape_configs) {
    expect(job.kubernetes_sd_configs).toBeDefined();
    delete job.kubernetes_sd_configs;
    const file = job.job_name === "wasmesh-sidecars" ? "sidecars.json" : "control-plane.json";
    job.file_sd_configs = [{ files: [join(dir, file)], refresh_interval: "1s" }];
    if (job.job_name === "wasmesh-control-plane") {
      expect(job.authorization).toMatchObject({ type: "Bearer" });
      job.scheme = "http";
      delete job.tls_config;
      job.authorization = { type: "Bearer", credentials_file: join(dir, "token") };
    }
  }
  return JSON.stringify(config);
}

beforeAll(async () => {
  // The app's own metrics endpoint, merged by reviews-v2-1's agent.
  app = http.createServer((req, res) => {
    if (!appAnswers) {
      res.writeHead(500).end("down\n");
      return;
    }
    res
      .writeHead(200, { "content-type": "text/plain; version=0.0.4" })
      .end(
        `# HELP app_orders_total Orders taken by the app.\n# TYPE app_orders_total counter\napp_orders_total{path="${req.url}"} 7\n`,
      );
  });
  await new Promise<void>((resolve) => app.listen(0, "127.0.0.1", resolve));
  const appMetricsPort = (app.address() as AddressInfo).port;

  mesh = await startCanaryMesh();
  await mesh.apply(
    resource("AccessRule", "no-self-calls", {
      source: "productpage",
      destination: "productpage",
      action: "deny",
    }),
    resource("CircuitBreaker", "reviews-v2", {
      service: "reviews",
      subset: { version: "v2" },
      consecutiveErrors: 5,
      intervalMs: 10_000,
      baseEjectionMs: 30_000,
      fallback: { service: "reviews", subset: { version: "v1" } },
    }),
  );
  await mesh.startAgents(
    AGENTS.map((agent) =>
      agent.name === "reviews-v2-1"
        ? {
            ...agent,
            args: ["--app-metrics-path", "/app-metrics", "--app-metrics-port", String(appMetricsPort)],
          }
        : agent,
    ),
  );
  // Prometheus reads the control plane's /metrics with a read-only token, as an operator would give it.
  const token = (
    await mesh.cli(["token", "create", "--role", "read-only", "--name", "prometheus"])
  ).stdout.trim();
  expect(token).toMatch(/^wsm_/);
  prometheus = await startPrometheus({ jobs: [], config: (dir) => deployedConfig(dir, token) });
});

afterAll(async () => {
  await prometheus?.stop();
  await mesh?.close();
  await new Promise<void>((resolve) => (app ? app.close(() => resolve()) : resolve()));
});

describe("Prometheus scraping the sidecars and the control plane", () => {
  it("scrapes every agent and the control plane, through the deploy configuration's relabelling", async () => {
    const expected = [
      ...AGENTS.map((a) => `127.0.0.1:${metricsPortOf(a.name)}`),
      `127.0.0.1:${new URL(mesh.cp.api).port}`,
    ].sort();
    await prometheus.waitFor("every target up", async (p) => {
      const targets = await p.targets();
      return (
        targets.length === expected.length &&
        targets.every((t) => t.health === "up") &&
        targets.every((t) => t.lastError === "")
      );
    });
    const targets = await prometheus.targets();
    expect(targets.map((t) => new URL(t.scrapeUrl).host).sort()).toEqual(expected);
    const sidecars = targets.filter((t) => t.labels.job === "wasmesh-sidecars");
    expect(sidecars.map((t) => t.labels.pod).sort()).toEqual(AGENTS.map((a) => a.name).sort());
    for (const t of sidecars) {
      expect(t.labels.wasmesh_sidecar).toBe("injected");
      expect(new URL(t.scrapeUrl).pathname).toBe("/metrics");
    }
    const up = await prometheus.query("up");
    expect(up.map((s) => s.value[1])).toEqual(expected.map(() => "1"));
  });

  it("gives the 90/10 split of the canary route in PromQL", async () => {
    const sent = await mesh.send(CLIENT, "reviews", REQUESTS);
    expect(sent.ok).toBe(REQUESTS);
    const served = (sent.byUpstream.get("reviews-v2-1") ?? 0) / REQUESTS;
    // Three calls productpage may not make: the source's denial counter.
    const denied = await mesh.send(CLIENT, "productpage", 3);
    expect(denied.statuses.get(403)).toBe(3);

    const total = `sum(wasmesh_outbound_requests_total{destination_service="reviews",workload="${CLIENT}"})`;
    await prometheus.waitFor(`${total} to reach ${REQUESTS}`, async (p) => {
      const [sample] = await p.query(total);
      return sample !== undefined && Number(sample.value[1]) >= REQUESTS;
    });
    const bySubset = await prometheus.query(
      `sum by (destination_subset) (wasmesh_outbound_requests_total{destination_service="reviews",workload="${CLIENT}"})`,
    );
    const count = (subset: string) =>
      Number(bySubset.find((s) => s.metric.destination_subset === subset)?.value[1] ?? 0);
    expect(count("version=v1") + count("version=v2")).toBe(REQUESTS);
    const [shareSample] = await prometheus.query(
      `sum(wasmesh_outbound_requests_total{destination_service="reviews",destination_subset="version=v2"}) / sum(wasmesh_outbound_requests_total{destination_service="reviews"})`,
    );
    const share = Number(shareSample?.value[1]);
    // The routing filter's own count of the routes it took says the same.
    const routes = await prometheus.query(
      `sum by (destination_subset) (wasmesh_route_requests_total{destination_service="reviews",workload="${CLIENT}"})`,
    );
    const routed = (subset: string) =>
      Number(routes.find((s) => s.metric.destination_subset === subset)?.value[1] ?? 0);
    console.log(
      `90/10 over ${REQUESTS} requests: PromQL v2 share ${share} (v1 ${count("version=v1")}, v2 ${count("version=v2")}; routes taken v1 ${routed("version=v1")}, v2 ${routed("version=v2")}); the apps saw v2 ${served}`,
    );
    // Smooth weighted round-robin with one Envoy worker (the agents run --concurrency 1) makes it
    // exactly 100 of 1,000; the tolerance (±1 point, 10 requests) is for a request retried or a
    // worker more, not for chance. And what Prometheus says is what the apps saw, to the request.
    expect(Math.abs(share - 0.1)).toBeLessThanOrEqual(0.01);
    expect(share).toBe(served);
    expect(routed("version=v2")).toBe(count("version=v2"));
    expect(routed("version=v1")).toBe(count("version=v1"));

    await prometheus.waitFor("the denials counted", async (p) => {
      const [sample] = await p.query(
        `sum(wasmesh_rule_denied_total{rule="no-self-calls",workload="${CLIENT}"})`,
      );
      return Number(sample?.value[1]) === 3;
    });
    // The called side counts what it answered.
    await prometheus.waitFor("reviews' inbound requests", async (p) => {
      const [sample] = await p.query(
        `sum(wasmesh_inbound_requests_total{service="reviews",response_code_class="2xx"})`,
      );
      return Number(sample?.value[1]) >= REQUESTS;
    });
  });

  it("has every metric each dashboard query names, and runs every query", async () => {
    // After traffic, and after Envoy's stats flush (5 s), so that histograms have their buckets.
    await prometheus.waitFor(
      "the request-duration histograms",
      async (p) =>
        (await p.query("wasmesh_outbound_request_duration_milliseconds_count > 0")).length > 0 &&
        (await p.query("wasmesh_inbound_request_duration_milliseconds_count > 0")).length > 0,
    );
    const names = new Set(await prometheus.metricNames());
    // Metrics that exist as HELP and TYPE before their first event (a NACK, a refused stream, a
    // lapsed lease): Prometheus keeps what it scraped of them as metadata, not as a name.
    const { body } = await prometheus.api("/api/v1/metadata");
    const metadata = new Set(Object.keys(body.data as Record<string, unknown>));
    const known = (name: string) => names.has(name) || metadata.has(name.replace(/_(bucket|sum|count)$/, ""));

    // The extraction itself, on the shapes the dashboards use.
    expect(
      metricNamesOf(
        'sum by (a, b) (rate(x_total{a="b}"}[1m])) / ignoring (b) group_left sum by (a) (rate(x_total[1m])) > bool 0.5',
      ),
    ).toEqual(["x_total"]);
    expect(metricNamesOf("histogram_quantile(0.99, sum by (le) (rate(y_bucket[5m]))) + on (le) z")).toEqual([
      "y_bucket",
      "z",
    ]);
    const files = readdirSync(join(OBSERVABILITY, "dashboards")).filter((f) => f.endsWith(".json"));
    expect(files.sort()).toEqual(["control-plane.json", "mesh.json", "service.json"]);
    let queries = 0;
    const onlyMetadata = new Set<string>();
    for (const file of files) {
      const dashboard = JSON.parse(
        readFileSync(join(OBSERVABILITY, "dashboards", file), "utf8"),
      ) as Dashboard;
      const exprs = [
        ...dashboard.panels.flatMap((p) =>
          (p.targets ?? []).map((t) => ({ where: `${file}: ${p.title}`, expr: t.expr })),
        ),
        ...dashboard.templating.list
          .filter((v) => v.type === "query")
          .map((v) => ({
            where: `${file}: variable ${v.name}`,
            expr: labelValuesMetric(v.definition ?? ""),
          })),
      ];
      expect(exprs.length).toBeGreaterThan(0);
      for (const { where, expr } of exprs) {
        const promql = withVariables(expr);
        const formatted = await prometheus.api(`/api/v1/format_query?query=${encodeURIComponent(promql)}`);
        expect(formatted.body.status, `${where}: ${promql}: ${JSON.stringify(formatted.body)}`).toBe(
          "success",
        );
        const used = metricNamesOf(promql);
        expect(used.length, `${where}: ${promql} names no metric`).toBeGreaterThan(0);
        for (const name of used) {
          expect(known(name), `${where}: ${name} (in ${promql}) is not a metric Prometheus has`).toBe(true);
          if (!names.has(name)) onlyMetadata.add(name);
        }
        await prometheus.query(promql); // evaluates without an error (e.g. no many-to-many match)
        queries++;
      }
    }
    console.log(
      `${queries} dashboard queries checked against ${names.size} metric names; known by metadata only (no event yet): ${[...onlyMetadata].sort().join(", ") || "none"}`,
    );
    // The mesh's own names are all there as series: only the control plane's event counters may wait.
    for (const name of onlyMetadata)
      expect(name).toMatch(/^wasmesh_(xds_nacks|xds_refused_streams|workload_lease_expirations)_total$/);
  });

  it("merges the app's metrics, and keeps serving the sidecar's when the app stops answering", async () => {
    const workload = 'workload="reviews-v2-1"';
    // The app's series come as the app wrote them, with the target's labels (the pod's) only.
    await prometheus.waitFor("the app's metrics", async (p) => {
      const [sample] = await p.query('app_orders_total{path="/app-metrics",pod="reviews-v2-1"}');
      return sample?.value[1] === "7";
    });
    const [up] = await prometheus.query(`wasmesh_app_metrics_up{${workload}}`);
    expect(up?.value[1]).toBe("1");
    // Agents that merge nothing have no such gauge.
    expect(await prometheus.query(`wasmesh_app_metrics_up{workload!="reviews-v2-1"}`)).toEqual([]);

    appAnswers = false;
    await prometheus.waitFor("wasmesh_app_metrics_up 0", async (p) => {
      const [sample] = await p.query(`wasmesh_app_metrics_up{${workload}}`);
      return sample?.value[1] === "0";
    });
    const target = (await prometheus.targets()).find((t) => t.labels.pod === "reviews-v2-1");
    expect(target?.health).toBe("up");
    const [inbound] = await prometheus.query(`sum(wasmesh_inbound_requests_total{${workload}})`);
    expect(Number(inbound?.value[1])).toBeGreaterThan(0);
    appAnswers = true;
  });
});

interface Dashboard {
  panels: { title: string; targets?: { expr: string }[] }[];
  templating: { list: { name: string; type: string; definition?: string }[] };
}

/** A dashboard's variables as Prometheus takes them: Grafana's interval, and a value for each. */
function withVariables(expr: string): string {
  return expr
    .replace(/\$__rate_interval|\$\{__rate_interval\}|\$__interval|\$__range/g, "1m")
    .replace(/\$\{?service\}?/g, "reviews")
    .replace(/\$\{?job\}?/g, ".+");
}

/** The metric of a `label_values(metric, label)` variable query, as a selector. */
function labelValuesMetric(definition: string): string {
  const m = /^label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,/.exec(definition);
  if (m === null) throw new Error(`a variable query that is not label_values(metric, label): ${definition}`);
  return m[1] as string;
}

const KEYWORDS = new Set([
  "by",
  "without",
  "on",
  "ignoring",
  "group_left",
  "group_right",
  "bool",
  "and",
  "or",
  "unless",
  "offset",
  "inf",
  "nan",
  "Inf",
  "NaN",
]);

/**
 * The metric names a PromQL expression selects: identifiers outside strings, label matchers,
 * ranges and grouping clauses that are not functions (followed by `(`) or keywords.
 */
function metricNamesOf(expr: string): string[] {
  let e = expr.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, '""');
  e = e.replace(/\{[^}]*\}/g, " ").replace(/\[[^\]]*\]/g, " ");
  e = e.replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ");
  const names = new Set<string>();
  for (const m of e.matchAll(/(?<![0-9.])[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const rest = e.slice((m.index ?? 0) + m[0].length);
    if (/^\s*\(/.test(rest) || KEYWORDS.has(m[0])) continue;
    names.add(m[0]);
  }
  return [...names];
}
