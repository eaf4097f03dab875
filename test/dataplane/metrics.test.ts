// The sidecar's Prometheus endpoint (dataplane/metrics.ts): the translation of Envoy's stats, on a
// real capture (test/fixtures/envoy-stats/: productpage-1 of the canary mesh after 100 requests to
// reviews under the 90/10 split, 3 calls to productpage denied by an AccessRule at the source, a
// CircuitBreaker on reviews v2; reviews-v1-1 is one of the called), the app's metrics merged, an
// app that is down or slow, Envoy away, and label escaping. The servers here are real
// (node:http stand-ins for Envoy's admin and the app).
import { readFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { runOptions } from "../../control-plane/cli/commands/dataplane.ts";
import {
  appMetricsPart,
  destinationOf,
  ENVOY_JSON_FILTER,
  ENVOY_PROMETHEUS_FILTER,
  escapeLabelValue,
  type MetricsServer,
  parsePrometheusText,
  prometheusCluster,
  startMetricsServer,
  translateEnvoyStats,
} from "../../dataplane/metrics.ts";
import { REPO_ROOT } from "../support/envoy.ts";

const FIXTURES = join(REPO_ROOT, "test", "fixtures", "envoy-stats");
const fixture = (name: string) => readFileSync(join(FIXTURES, name), "utf8");
const PRODUCTPAGE = { service: "productpage", workload: "productpage-1" };

/** The samples of a text, as `name{sorted labels}` → value. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const s of parsePrometheusText(text)) {
    const labels = Object.entries(s.labels)
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([k, v]) => `${k}=${v}`)
      .join(",");
    out.set(`${s.name}{${labels}}`, Number(s.value));
  }
  return out;
}

describe("translateEnvoyStats on a real capture", () => {
  const text = translateEnvoyStats(
    fixture("productpage-1.stats.json"),
    fixture("productpage-1.prometheus.txt"),
    PRODUCTPAGE,
  );
  const got = samples(text);

  it("counts outbound requests per destination service and subset, by response code class", () => {
    const who = "service=productpage,workload=productpage-1";
    expect(
      got.get(
        `wasmesh_outbound_requests_total{destination_service=reviews,destination_subset=version=v1,response_code_class=2xx,${who}}`,
      ),
    ).toBe(90);
    expect(
      got.get(
        `wasmesh_outbound_requests_total{destination_service=reviews,destination_subset=version=v2,response_code_class=2xx,${who}}`,
      ),
    ).toBe(10);
    // Clusters never called are left out; Envoy's per-origin copies (external.) are not counted twice.
    const outbound = [...got].filter(([k]) => k.startsWith("wasmesh_outbound_requests_total"));
    expect(outbound).toHaveLength(2);
  });

  it("keeps the request-duration histograms, with buckets, sum and count", () => {
    const v1 = [...got].filter(
      ([k]) =>
        k.startsWith("wasmesh_outbound_request_duration_milliseconds_bucket{") &&
        k.includes("destination_subset=version=v1"),
    );
    expect(v1.length).toBeGreaterThan(10);
    expect(
      got.get(
        "wasmesh_outbound_request_duration_milliseconds_bucket{destination_service=reviews,destination_subset=version=v1,le=+Inf,service=productpage,workload=productpage-1}",
      ),
    ).toBe(90);
    expect(
      got.get(
        "wasmesh_outbound_request_duration_milliseconds_count{destination_service=reviews,destination_subset=version=v2,service=productpage,workload=productpage-1}",
      ),
    ).toBe(10);
    expect(
      got.get(
        "wasmesh_outbound_request_duration_milliseconds_sum{destination_service=reviews,destination_subset=version=v2,service=productpage,workload=productpage-1}",
      ),
    ).toBeGreaterThan(0);
    expect(text).toContain("# TYPE wasmesh_outbound_request_duration_milliseconds histogram\n");
    expect(text).toContain("# TYPE wasmesh_inbound_request_duration_milliseconds histogram\n");
  });

  it("has the routing filter's routes taken, denials and circuits under their documented names", () => {
    const who = "service=productpage,workload=productpage-1";
    expect(
      got.get(
        `wasmesh_route_requests_total{destination_service=reviews,destination_subset=version=v1,${who}}`,
      ),
    ).toBe(90);
    expect(
      got.get(
        `wasmesh_route_requests_total{destination_service=reviews,destination_subset=version=v2,${who}}`,
      ),
    ).toBe(10);
    expect(got.get(`wasmesh_rule_denied_total{rule=no-self-calls,${who}}`)).toBe(3);
    for (const family of [
      "wasmesh_circuit_open",
      "wasmesh_circuit_opened_total",
      "wasmesh_circuit_closed_total",
      "wasmesh_circuit_rejected_total",
      "wasmesh_circuit_fallback_total",
    ])
      expect(got.get(`${family}{destination_service=reviews,destination_subset=version=v2,${who}}`)).toBe(0);
    expect(got.get(`wasmesh_inbound_denied_total{${who}}`)).toBe(0);
  });

  it("serves only wasmesh_ names, each family once with HELP and TYPE, every series with service and workload", () => {
    const parsed = parsePrometheusText(text);
    expect(parsed.length).toBeGreaterThan(50);
    for (const s of parsed) {
      expect(s.name).toMatch(/^wasmesh_/);
      expect(s.labels.service).toBe("productpage");
      expect(s.labels.workload).toBe("productpage-1");
    }
    const types = [...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]);
    expect(new Set(types).size).toBe(types.length);
    expect(text).not.toMatch(/envoy_|wasmcustom/);
  });

  it("counts inbound requests by code class on the called side", () => {
    const reviews = samples(
      translateEnvoyStats(fixture("reviews-v1-1.stats.json"), fixture("reviews-v1-1.prometheus.txt"), {
        service: "reviews",
        workload: "reviews-v1-1",
      }),
    );
    expect(
      reviews.get(
        "wasmesh_inbound_requests_total{response_code_class=2xx,service=reviews,workload=reviews-v1-1}",
      ),
    ).toBe(90);
    expect(
      reviews.get(
        "wasmesh_inbound_request_duration_milliseconds_count{service=reviews,workload=reviews-v1-1}",
      ),
    ).toBe(90);
  });

  it("translates the same from Envoy's unfiltered output", () => {
    // The filters only spare work: what they leave out is not used.
    const json = JSON.parse(fixture("productpage-1.stats.json")) as { stats: unknown[] };
    json.stats.push({ name: "cluster.wasmesh-xds.upstream_rq_total", value: 7 });
    json.stats.push({ name: "listener.admin.downstream_cx_total", value: 3 });
    const prom = `${fixture("productpage-1.prometheus.txt")}envoy_cluster_upstream_rq_time_count{envoy_cluster_name="wasmesh-xds"} 7\n`;
    expect(translateEnvoyStats(JSON.stringify(json), prom, PRODUCTPAGE)).toBe(text);
    expect(ENVOY_JSON_FILTER).toContain("wasmcustom");
    expect(ENVOY_PROMETHEUS_FILTER).toContain("upstream_rq_time");
  });
});

describe("cluster names", () => {
  it("reads destinations from outbound cluster names", () => {
    expect(destinationOf("outbound|reviews")).toEqual({
      destination_service: "reviews",
      destination_subset: "",
    });
    expect(destinationOf("outbound|reviews.default|version=v2,zone=a")).toEqual({
      destination_service: "reviews.default",
      destination_subset: "version=v2,zone=a",
    });
    expect(destinationOf("inbound|8080")).toBeUndefined();
  });

  it("maps a dotted cluster name (a Kubernetes service) back from Envoy's Prometheus family", () => {
    const clusters = ["outbound|reviews.default|version=v2", "outbound|reviews.default", "outbound|ratings"];
    // Envoy's tag extraction cuts the name at its first dot: the rest lands in the family name.
    expect(
      prometheusCluster(
        "envoy_cluster_default_version_v2_upstream_rq_time",
        "upstream_rq_time",
        "outbound|reviews",
        clusters,
      ),
    ).toBe("outbound|reviews.default|version=v2");
    expect(
      prometheusCluster(
        "envoy_cluster_default_upstream_rq_time",
        "upstream_rq_time",
        "outbound|reviews",
        clusters,
      ),
    ).toBe("outbound|reviews.default");
    expect(
      prometheusCluster("envoy_cluster_upstream_rq_time", "upstream_rq_time", "outbound|ratings", clusters),
    ).toBe("outbound|ratings");
    expect(
      prometheusCluster(
        "envoy_cluster_external_upstream_rq_time",
        "upstream_rq_time",
        "outbound|ratings",
        clusters,
      ),
    ).toBeUndefined();
  });

  it("translates a mesh of dotted names end to end", () => {
    const json = JSON.stringify({
      stats: [
        { name: "cluster.outbound|reviews.default|version=v2.upstream_rq_total", value: 4 },
        { name: "cluster.outbound|reviews.default|version=v2.upstream_rq_5xx", value: 1 },
        { name: "cluster.outbound|reviews.default|version=v2.upstream_rq_2xx", value: 3 },
        { name: "wasmcustom.wasmesh.route.outbound|reviews.default|version=v2.requests", value: 4 },
        { name: "wasmcustom.wasmesh.rule.deny.the.dots.denied", value: 2 },
      ],
    });
    const prom = [
      "# TYPE envoy_cluster_default_version_v2_upstream_rq_time histogram",
      'envoy_cluster_default_version_v2_upstream_rq_time_bucket{envoy_cluster_name="outbound|reviews",le="+Inf"} 4',
      'envoy_cluster_default_version_v2_upstream_rq_time_sum{envoy_cluster_name="outbound|reviews"} 12.5',
      'envoy_cluster_default_version_v2_upstream_rq_time_count{envoy_cluster_name="outbound|reviews"} 4',
      "",
    ].join("\n");
    const got = samples(
      translateEnvoyStats(json, prom, { service: "productpage.default", workload: "pp-1.default" }),
    );
    const dest = "destination_service=reviews.default,destination_subset=version=v2";
    const who = "service=productpage.default,workload=pp-1.default";
    expect(got.get(`wasmesh_outbound_requests_total{${dest},response_code_class=5xx,${who}}`)).toBe(1);
    expect(got.get(`wasmesh_outbound_request_duration_milliseconds_bucket{${dest},le=+Inf,${who}}`)).toBe(4);
    expect(got.get(`wasmesh_outbound_request_duration_milliseconds_sum{${dest},${who}}`)).toBe(12.5);
    expect(got.get(`wasmesh_route_requests_total{${dest},${who}}`)).toBe(4);
    expect(got.get(`wasmesh_rule_denied_total{rule=deny.the.dots,${who}}`)).toBe(2);
  });
});

describe("label escaping", () => {
  it("escapes backslashes, quotes and newlines, and reads them back", () => {
    const nasty = 'a\\b"c\nd';
    expect(escapeLabelValue(nasty)).toBe('a\\\\b\\"c\\nd');
    const json = JSON.stringify({
      stats: [{ name: `wasmcustom.wasmesh.rule.${nasty}.denied`, value: 1 }],
    });
    const text = translateEnvoyStats(json, "", { service: 'svc"x', workload: "w\\1" });
    expect(text).toContain(
      'wasmesh_rule_denied_total{rule="a\\\\b\\"c\\nd",service="svc\\"x",workload="w\\\\1"} 1',
    );
    const [sample] = parsePrometheusText(text);
    expect(sample?.labels).toEqual({ rule: nasty, service: 'svc"x', workload: "w\\1" });
  });
});

describe("the app's metrics", () => {
  it("are merged as they come, without wasmesh_ families and OpenMetrics' # EOF", () => {
    const app = [
      "# HELP app_orders_total Orders.",
      "# TYPE app_orders_total counter",
      'app_orders_total{kind="book"} 3',
      "# TYPE wasmesh_route_requests_total counter",
      "wasmesh_route_requests_total 99",
      "# EOF",
    ].join("\n");
    expect(appMetricsPart(app)).toBe(
      '# HELP app_orders_total Orders.\n# TYPE app_orders_total counter\napp_orders_total{kind="book"} 3\n',
    );
    expect(appMetricsPart("")).toBe("");
  });
});

describe("the metrics server", () => {
  const servers: { close(): Promise<void> }[] = [];
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => s.close()));
  });

  /** A node:http server answering with `handler`; closed after the test. */
  async function serve(handler: http.RequestListener): Promise<number> {
    const server = http.createServer(handler);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    servers.push({
      close: () =>
        new Promise<void>((resolve) => {
          server.closeAllConnections();
          server.close(() => resolve());
        }),
    });
    return (server.address() as AddressInfo).port;
  }

  /** Envoy's admin as the fixture captured it. */
  const envoyAdmin = () =>
    serve((req, res) => {
      const url = new URL(req.url ?? "/", "http://x");
      if (url.pathname === "/stats" && url.searchParams.get("format") === "json") {
        expect(url.searchParams.get("filter")).toBe(ENVOY_JSON_FILTER);
        res.end(fixture("productpage-1.stats.json"));
      } else if (url.pathname === "/stats/prometheus") {
        expect(url.searchParams.get("filter")).toBe(ENVOY_PROMETHEUS_FILTER);
        res.end(fixture("productpage-1.prometheus.txt"));
      } else res.writeHead(404).end();
    });

  async function metricsServer(
    options: Partial<Parameters<typeof startMetricsServer>[0]>,
  ): Promise<MetricsServer> {
    const server = await startMetricsServer({
      ...PRODUCTPAGE,
      port: 0,
      adminPort: () => undefined,
      ...options,
    });
    servers.push(server);
    return server;
  }

  const get = async (port: number, path = "/metrics") => {
    const response = await fetch(`http://127.0.0.1:${port}${path}`);
    return {
      status: response.status,
      type: response.headers.get("content-type"),
      text: await response.text(),
    };
  };

  it("serves Envoy's part and the app's, with wasmesh_app_metrics_up 1", async () => {
    const admin = await envoyAdmin();
    const appPort = await serve((req, res) => {
      expect(req.url).toBe("/app/metrics");
      res.end('# TYPE app_orders_total counter\napp_orders_total{kind="book"} 3\n');
    });
    const server = await metricsServer({
      adminPort: () => admin,
      app: { port: appPort, path: "/app/metrics" },
    });
    const { status, type, text } = await get(server.port);
    expect(status).toBe(200);
    expect(type).toBe("text/plain; version=0.0.4; charset=utf-8");
    const got = samples(text);
    expect(got.get("wasmesh_app_metrics_up{service=productpage,workload=productpage-1}")).toBe(1);
    expect(got.get("app_orders_total{kind=book}")).toBe(3);
    expect(text).toContain("wasmesh_outbound_requests_total{");
    expect((await get(server.port, "/other")).status).toBe(404);
  });

  it("keeps Envoy's part when the app is down, errs, or is slower than its time limit", async () => {
    const admin = await envoyAdmin();
    const failing = await serve((_req, res) => res.writeHead(500).end("boom"));
    const slow = await serve(() => {
      // Never answers.
    });
    const closedPort = await serve(() => {});
    await servers.pop()?.close(); // nothing listens there now
    for (const app of [
      { port: closedPort, path: "/metrics" },
      { port: failing, path: "/metrics" },
      { port: slow, path: "/metrics", timeoutMs: 300 },
    ]) {
      const server = await metricsServer({ adminPort: () => admin, app });
      const started = Date.now();
      const { status, text } = await get(server.port);
      expect(Date.now() - started).toBeLessThan(2_000);
      expect(status).toBe(200);
      expect(samples(text).get("wasmesh_app_metrics_up{service=productpage,workload=productpage-1}")).toBe(0);
      expect(text).toContain("wasmesh_route_requests_total{");
      expect(text).not.toContain("boom");
    }
  });

  it("answers 503 with the reason when Envoy's admin cannot be read", async () => {
    const gone = await serve(() => {});
    await servers.pop()?.close();
    const server = await metricsServer({ adminPort: () => gone });
    const { status, text } = await get(server.port);
    expect(status).toBe(503);
    expect(text).toMatch(
      new RegExp(`^Envoy's stats cannot be read \\(admin 127\\.0\\.0\\.1:${gone}\\): .*ECONNREFUSED`),
    );
  });
});

describe("dataplane run's metrics flags", () => {
  const base = ["--name", "a", "--service", "s", "--app-port", "8080"];
  const withToken = async (args: string[]) => {
    process.env.WASMESH_TOKEN = "t";
    try {
      return await runOptions([...base, ...args], () => {});
    } finally {
      delete process.env.WASMESH_TOKEN;
    }
  };

  it("passes the port, the address and the app's endpoint to the agent", async () => {
    expect((await withToken([]))?.metrics).toBeUndefined();
    expect(
      (
        await withToken([
          "--metrics-port",
          "15020",
          "--metrics-address",
          "0.0.0.0",
          "--app-metrics-path",
          "/stats",
          "--app-metrics-port",
          "9090",
        ])
      )?.metrics,
    ).toEqual({ port: 15020, address: "0.0.0.0", appPath: "/stats", appPort: 9090 });
    expect((await withToken(["--metrics-port", "0"]))?.metrics).toEqual({ port: 0 });
  });

  it("refuses what cannot work", async () => {
    await expect(withToken(["--metrics-port", "8080"])).rejects.toThrow(
      /--app-port and --metrics-port are both 8080/,
    );
    await expect(withToken(["--metrics-address", "localhost"])).rejects.toThrow(/--metrics-address/);
    await expect(withToken(["--app-metrics-path", "metrics"])).rejects.toThrow(/--app-metrics-path/);
    await expect(withToken(["--app-metrics-port", "9090"])).rejects.toThrow(/needs --app-metrics-path/);
    await expect(withToken(["--metrics-port", "0", "--app-metrics-path", "/m"])).rejects.toThrow(/is off/);
  });
});
