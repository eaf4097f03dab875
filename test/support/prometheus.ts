// A real Prometheus for tests (issue 18 §4): Debian's `prometheus` package (./dev installs it;
// $PROMETHEUS_BIN overrides the binary), started with a generated scrape configuration of static
// targets (scrape_interval 1 s), its TSDB in a temp dir, its web API on a free loopback port. The
// helpers read its HTTP API: instant queries, targets, metric names.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { freePort } from "./envoy.ts";
import { tempDir } from "./temp.ts";
import { until } from "./wait.ts";

export interface ScrapeJob {
  /** The job label. */
  job: string;
  /** host:port targets. */
  targets: string[];
  /** Default /metrics. */
  metricsPath?: string;
  /** A bearer token Prometheus sends (written to a file it reads: `authorization.credentials_file`). */
  bearerToken?: string;
  /** More labels on every target of the job. */
  labels?: Record<string, string>;
}

export interface PrometheusOptions {
  jobs: ScrapeJob[];
  /**
   * A whole configuration instead of the one generated from `jobs` (YAML; JSON is YAML too), made
   * with the temp dir Prometheus runs in (for the files it names).
   */
  config?: (dir: string) => string;
  /** Seconds; default 1. */
  scrapeIntervalSeconds?: number;
  /** More top-level YAML (e.g. rule_files), appended as is. */
  extraConfig?: string;
}

export interface PromTarget {
  labels: Record<string, string>;
  scrapeUrl: string;
  health: "up" | "down" | "unknown";
  lastError: string;
  lastScrape: string;
}

export interface PromSample {
  metric: Record<string, string>;
  value: [number, string];
}

export interface Prometheus {
  /** http://127.0.0.1:<port> */
  readonly url: string;
  /** The configuration file it runs with. */
  readonly configFile: string;
  /** An instant query's vector (or scalar as one sample); throws on a query error. */
  query(promql: string): Promise<PromSample[]>;
  /** The active targets. */
  targets(): Promise<PromTarget[]>;
  /** Every metric name it holds (/api/v1/label/__name__/values). */
  metricNames(): Promise<string[]>;
  /** The raw JSON of a GET on its API (path with query). */
  api(path: string): Promise<{ status: number; body: Record<string, unknown> }>;
  /** Polls `check` (which may query) until true; throws after timeoutMs with `what`. */
  waitFor(what: string, check: (p: Prometheus) => Promise<boolean>, timeoutMs?: number): Promise<void>;
  /** Its output so far (stderr: Prometheus logs there). */
  log(): string;
  stop(): Promise<void>;
}

/** The prometheus binary: $PROMETHEUS_BIN, else `prometheus` on PATH; throws if there is none. */
export function findPrometheus(): string {
  const bin = process.env.PROMETHEUS_BIN || "prometheus";
  try {
    execFileSync(bin, ["--version"], { stdio: "ignore" });
  } catch {
    throw new Error(
      `no Prometheus binary (${bin}): install Debian's prometheus package (./dev does) or set PROMETHEUS_BIN`,
    );
  }
  return bin;
}

const quote = (s: string) => JSON.stringify(s);

/** The scrape configuration (YAML; JSON strings are YAML strings). */
export function prometheusConfig(options: PrometheusOptions, dir: string): string {
  const interval = `${options.scrapeIntervalSeconds ?? 1}s`;
  const lines = [
    "global:",
    `  scrape_interval: ${interval}`,
    `  evaluation_interval: ${interval}`,
    `  scrape_timeout: ${interval}`,
    "scrape_configs:",
  ];
  options.jobs.forEach((job, i) => {
    lines.push(
      `  - job_name: ${quote(job.job)}`,
      `    metrics_path: ${quote(job.metricsPath ?? "/metrics")}`,
    );
    if (job.bearerToken !== undefined) {
      const file = join(dir, `token-${i}`);
      writeFileSync(file, job.bearerToken, { mode: 0o600 });
      lines.push("    authorization:", "      type: Bearer", `      credentials_file: ${quote(file)}`);
    }
    lines.push("    static_configs:", `      - targets: [${job.targets.map(quote).join(", ")}]`);
    if (job.labels !== undefined && Object.keys(job.labels).length > 0) {
      lines.push("        labels:");
      for (const [k, v] of Object.entries(job.labels)) lines.push(`          ${k}: ${quote(v)}`);
    }
  });
  return `${lines.join("\n")}\n${options.extraConfig ?? ""}`;
}

const live = new Set<ChildProcess>();
let hooked = false;

export async function startPrometheus(options: PrometheusOptions): Promise<Prometheus> {
  if (!hooked) {
    hooked = true;
    process.on("exit", () => {
      for (const child of live) child.kill("SIGKILL");
    });
  }
  const bin = findPrometheus();
  const dir = tempDir("prometheus");
  const configFile = join(dir, "prometheus.yml");
  writeFileSync(
    configFile,
    options.config !== undefined ? options.config(dir) : prometheusConfig(options, dir),
  );
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(
    bin,
    [
      `--config.file=${configFile}`,
      `--storage.tsdb.path=${join(dir, "data")}`,
      `--web.listen-address=127.0.0.1:${port}`,
      "--log.level=warn",
    ],
    { cwd: dir, stdio: ["ignore", "pipe", "pipe"] },
  );
  live.add(child);
  let output = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    output += chunk.toString("utf8");
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    output += chunk.toString("utf8");
  });
  let exited = false;
  const gone = new Promise<void>((resolve) => {
    child.once("close", () => {
      exited = true;
      live.delete(child);
      resolve();
    });
  });

  const api = async (path: string) => {
    const response = await fetch(`${url}${path}`);
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };
  const prometheus: Prometheus = {
    url,
    configFile,
    async query(promql) {
      const { status, body } = await api(`/api/v1/query?query=${encodeURIComponent(promql)}`);
      if (status !== 200 || body.status !== "success")
        throw new Error(`query ${promql}: HTTP ${status}: ${JSON.stringify(body)}`);
      const data = body.data as { resultType: string; result: unknown };
      if (data.resultType === "vector") return data.result as PromSample[];
      if (data.resultType === "scalar") return [{ metric: {}, value: data.result as [number, string] }];
      throw new Error(`query ${promql}: a ${data.resultType}, not a vector`);
    },
    async targets() {
      const { body } = await api("/api/v1/targets?state=active");
      return (body.data as { activeTargets: PromTarget[] }).activeTargets;
    },
    async metricNames() {
      const { body } = await api("/api/v1/label/__name__/values");
      return body.data as string[];
    },
    api,
    async waitFor(what, check, timeoutMs = 30_000) {
      await until(
        () => `${what} (Prometheus at ${url})`,
        async () => {
          if (exited) throw new Error(`Prometheus exited:\n${output.slice(-3000)}`);
          try {
            return await check(prometheus);
          } catch {
            return false;
          }
        },
        timeoutMs,
        250,
      );
    },
    log: () => output,
    async stop() {
      if (exited) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await gone;
      clearTimeout(timer);
    },
  };
  try {
    await until(
      () => `Prometheus to be ready at ${url}/-/ready\n${output.slice(-3000)}`,
      async () => {
        if (exited) throw new Error(`Prometheus exited at start:\n${output.slice(-3000)}`);
        try {
          return (await fetch(`${url}/-/ready`)).status === 200;
        } catch {
          return false;
        }
      },
      30_000,
      100,
    );
  } catch (error) {
    await prometheus.stop();
    throw error;
  }
  return prometheus;
}
