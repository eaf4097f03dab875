// npm run bench:traffic — what the sidecars' traffic reports (issue 14 §1) cost the control plane,
// written to bench-results/traffic.{json,md}.
// Per number of simulated sidecars (BENCH_TRAFFIC_PROXIES, default 100 and 1,000), a fresh `wasmesh
// server` process on a temp data dir, its CPU and memory read from /proc/<pid> (utime+stime,
// VmRSS) alone:
//   1. idle for BENCH_TRAFFIC_IDLE_SECONDS (default 5): its CPU rate without reports, and RSS;
//   2. the sidecars start reporting as `wasmesh dataplane run` does: every BENCH_TRAFFIC_INTERVAL
//      seconds (default 5), spread evenly over the interval, a PUT /v1/proxies/<node>/stats of ~10
//      outbound clusters (counters growing), a breaker and a denial, over a new loopback connection
//      each (the agent keeps none), with a dataplane token of its service (100 services, tokens
//      checked as the agents' are). One interval of warm-up, then BENCH_TRAFFIC_SECONDS (default 30)
//      measured: the control plane's CPU ms per second above its idle rate, its RSS growth over idle
//      (KiB, and per sidecar), and GET /v1/traffic every 500 ms (latency from the client, bytes);
//      every report must answer 204.
// BENCH_CPU_PROF=DIR: the control plane under node --cpu-prof, its profiles in DIR.
// The table puts the sizes side by side, with the 1,000/100 ratios (no thresholds: the machine is
// shared; the ratios say whether the cost grows with the sidecars, as it should, and no faster).
// Beside them, the table alone in this process (control-plane/traffic/, no HTTP): the heap it holds
// per sidecar after a full GC, the CPU of one report kept and of one aggregate.
import { mkdirSync, writeFileSync } from "node:fs";
import http from "node:http";
import { availableParallelism, loadavg } from "node:os";
import { join } from "node:path";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { createTrafficTable } from "../../control-plane/traffic/index.ts";
import { BENCH_RESULTS_DIR, cpuMs, median, percentile, statusKib } from "../support/bench.ts";
import { dataplaneToken, startControlPlaneProcess } from "../support/control-plane.ts";

const list = (value: string | undefined, fallback: number[]) =>
  value === undefined ? fallback : value.split(",").map((s) => Number(s.trim()));
const PROXIES = list(process.env.BENCH_TRAFFIC_PROXIES, [100, 1000]);
const INTERVAL_S = Number(process.env.BENCH_TRAFFIC_INTERVAL ?? 5);
const MEASURE_S = Number(process.env.BENCH_TRAFFIC_SECONDS ?? 30);
const IDLE_S = Number(process.env.BENCH_TRAFFIC_IDLE_SECONDS ?? 5);
const SERVICES = 100;
const CLUSTERS_PER_REPORT = 10;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const service = (i: number) => `svc-${String(i % SERVICES).padStart(3, "0")}`;

/** One HTTP call on a new connection (as the agent's httpRequest): status, bytes, ms. */
function call(
  port: number,
  method: string,
  path: string,
  token: string,
  body?: string,
): Promise<{ status: number; bytes: number; ms: number }> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: "127.0.0.1",
        port,
        method,
        path,
        agent: false,
        headers: {
          authorization: `Bearer ${token}`,
          ...(body !== undefined
            ? { "content-type": "application/json", "content-length": Buffer.byteLength(body) }
            : {}),
        },
      },
      (res) => {
        let bytes = 0;
        res.on("data", (chunk: Buffer) => {
          bytes += chunk.length;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, bytes, ms: performance.now() - started }));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

/** Sidecar i's report after `round` intervals: ten destinations, one breaker, one denial. */
function reportOf(i: number, round: number): string {
  const clusters: Record<string, { requests: number; errors5xx: number }> = {};
  for (let j = 0; j < CLUSTERS_PER_REPORT; j++) {
    const dest = service(i + j + 1);
    const cluster = j % 2 === 0 ? `outbound|${dest}|version=v1` : `outbound|${dest}|version=v2`;
    clusters[cluster] = { requests: round * (50 + j), errors5xx: Math.floor(round / 10) };
  }
  return JSON.stringify({
    service: service(i),
    at: new Date().toISOString(),
    clusters,
    circuits: { [`outbound|${service(i + 1)}|version=v1`]: { open: round % 7 === 0, rejected: round } },
    denials: { [`default-deny:${service(i + 2)}`]: round },
  });
}

interface Run {
  proxies: number;
  /** The table alone (tableAlone). */
  tableHeapKibPerProxy: number;
  tableReportUs: number;
  tableViewMs: number;
  reportsPerSecond: number;
  reportBytes: number;
  reports: number;
  refused: number;
  refusedSample: string | undefined;
  reportMedianMs: number;
  reportP99Ms: number;
  idleCpuMsPerS: number;
  cpuMsPerS: number;
  /** CPU ms per second above idle: what the reports and the reads cost. */
  reportCpuMsPerS: number;
  cpuUsPerReport: number;
  rssIdleKib: number;
  rssEndKib: number;
  rssGrowthKib: number;
  rssKibPerProxy: number;
  getMedianMs: number;
  getP95Ms: number;
  getBytes: number;
  proxiesListed: number;
  edges: number;
}

/** With BENCH_CPU_PROF=DIR the control plane runs under node --cpu-prof (a profile per run, in DIR). */
const CPU_PROF = process.env.BENCH_CPU_PROF;

async function run(proxies: number): Promise<Run> {
  const alone = tableAlone(proxies);
  const nodeOptions = process.env.NODE_OPTIONS;
  if (CPU_PROF) process.env.NODE_OPTIONS = `${nodeOptions ?? ""} --cpu-prof --cpu-prof-dir=${CPU_PROF}`;
  const cp = await startControlPlaneProcess();
  if (nodeOptions === undefined) delete process.env.NODE_OPTIONS;
  else process.env.NODE_OPTIONS = nodeOptions;
  try {
    const tokens: string[] = [];
    for (let s = 0; s < SERVICES; s++) tokens.push(await dataplaneToken(cp.api, service(s)));
    await sleep(1000);
    const idleStart = cpuMs(cp.pid);
    const idleRss: number[] = [];
    for (let k = 0; k < 5; k++) {
      await sleep((IDLE_S * 1000) / 5);
      idleRss.push(statusKib(cp.pid, "VmRSS"));
    }
    const idleCpuMsPerS = (cpuMs(cp.pid) - idleStart) / IDLE_S;
    const rssIdleKib = median(idleRss);

    let stopping = false;
    let reports = 0;
    let refused = 0;
    let refusedSample: string | undefined;
    let measuring = false;
    const reportMs: number[] = [];
    const reportBytes = Buffer.byteLength(reportOf(0, 1));
    const sidecars = Array.from({ length: proxies }, (_, i) =>
      (async () => {
        // Spread over the interval, as agents started at different times are.
        await sleep((i / proxies) * INTERVAL_S * 1000);
        for (let round = 1; !stopping; round++) {
          const next = performance.now() + INTERVAL_S * 1000;
          const node = `${service(i)}-${i}`;
          try {
            const r = await call(
              cp.httpPort,
              "PUT",
              `/v1/proxies/${node}/stats`,
              tokens[i % SERVICES] as string,
              reportOf(i, round),
            );
            if (measuring) {
              reports++;
              reportMs.push(r.ms);
            }
            if (r.status !== 204) {
              refused++;
              refusedSample ??= `${node}: ${r.status}`;
            }
          } catch (error) {
            refused++;
            refusedSample ??= `${node}: ${(error as Error).message}`;
          }
          await sleep(Math.max(0, next - performance.now()));
        }
      })(),
    );
    await sleep(INTERVAL_S * 1000 + 1000); // every sidecar has reported once, most twice
    measuring = true;
    const cpuStart = cpuMs(cp.pid);
    const started = performance.now();
    const getMs: number[] = [];
    let getBytes = 0;
    let last: { proxies: unknown[]; edges: unknown[] } = { proxies: [], edges: [] };
    while (performance.now() - started < MEASURE_S * 1000) {
      const r = await call(cp.httpPort, "GET", "/v1/traffic", cp.token);
      if (r.status !== 200) throw new Error(`GET /v1/traffic: ${r.status}`);
      getMs.push(r.ms);
      getBytes = r.bytes;
      await sleep(500);
    }
    const seconds = (performance.now() - started) / 1000;
    const cpuMsPerS = (cpuMs(cp.pid) - cpuStart) / seconds;
    measuring = false;
    const rssEndKib = statusKib(cp.pid, "VmRSS");
    const lastGet = await cp.request("GET", "/v1/traffic");
    last = lastGet.body as typeof last;
    stopping = true;
    await Promise.all(sidecars);
    const sorted = [...getMs].sort((a, b) => a - b);
    const reportSorted = [...reportMs].sort((a, b) => a - b);
    return {
      proxies,
      tableHeapKibPerProxy: alone.heapKibPerProxy,
      tableReportUs: alone.reportUs,
      tableViewMs: alone.viewMs,
      reportsPerSecond: reports / seconds,
      reportBytes,
      reports,
      refused,
      refusedSample,
      reportMedianMs: median(reportSorted),
      reportP99Ms: percentile(reportSorted, 99),
      idleCpuMsPerS,
      cpuMsPerS,
      reportCpuMsPerS: cpuMsPerS - idleCpuMsPerS,
      cpuUsPerReport: reports > 0 ? ((cpuMsPerS - idleCpuMsPerS) * seconds * 1000) / reports : Number.NaN,
      rssIdleKib,
      rssEndKib,
      rssGrowthKib: rssEndKib - rssIdleKib,
      rssKibPerProxy: (rssEndKib - rssIdleKib) / proxies,
      getMedianMs: median(sorted),
      getP95Ms: percentile(sorted, 95),
      getBytes,
      proxiesListed: last.proxies.length,
      edges: last.edges.length,
    };
  } finally {
    await cp.stop();
  }
}

/**
 * The table alone, in this process: the heap it holds for `proxies` proxies' two reports each (after
 * a full GC), and the CPU of one report kept and of one aggregate, without HTTP around them.
 */
function tableAlone(proxies: number): { heapKibPerProxy: number; reportUs: number; viewMs: number } {
  setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc") as () => void;
  let t = Date.now();
  const table = createTrafficTable({ now: () => t, viewCacheMs: 0 });
  const bodies = Array.from({ length: proxies }, (_, i) => [
    JSON.parse(reportOf(i, 1)),
    JSON.parse(reportOf(i, 2)),
  ]);
  gc();
  const before = process.memoryUsage().heapUsed;
  const started = performance.now();
  for (const round of [0, 1]) {
    for (let i = 0; i < proxies; i++) table.report(`${service(i)}-${i}`, bodies[i]?.[round]);
    t += INTERVAL_S * 1000;
  }
  const reportUs = ((performance.now() - started) * 1000) / (2 * proxies);
  const viewStarted = performance.now();
  const views = 20;
  for (let k = 0; k < views; k++) table.view();
  const viewMs = (performance.now() - viewStarted) / views;
  bodies.length = 0;
  gc();
  const heapKibPerProxy = (process.memoryUsage().heapUsed - before) / 1024 / proxies;
  if (table.size() !== proxies) throw new Error("the table lost proxies");
  return { heapKibPerProxy, reportUs, viewMs };
}

const fmt = (n: number, digits = 1) => (Number.isFinite(n) ? n.toFixed(digits) : "—");

function markdown(runs: Run[], measuredAt: string): string {
  const lines = [
    "# bench:traffic — the sidecars' traffic reports, at the control plane",
    "",
    `Measured ${measuredAt} on ${availableParallelism()} CPUs (load average ${loadavg()
      .map((l) => l.toFixed(2))
      .join(
        ", ",
      )} at the end; the machine is shared). Each simulated sidecar PUTs /v1/proxies/<node>/stats every ${INTERVAL_S} s ` +
      `(${CLUSTERS_PER_REPORT} clusters, a breaker, a denial; a new connection per report, a dataplane token of one of ${SERVICES} services), ` +
      `measured over ${MEASURE_S} s after one interval of warm-up; GET /v1/traffic every 500 ms meanwhile. ` +
      "The table columns are control-plane/traffic/ alone in the bench's process (heap after a full GC; no HTTP).",
    "",
    "| sidecars | table heap KiB per sidecar | table: µs per report kept, ms per aggregate | reports/s | report bytes | refused | report median / p99 ms | CP CPU ms/s (idle) | above idle ms/s | µs CPU per report | RSS idle → end KiB | growth KiB (per sidecar) | GET /v1/traffic median / p95 ms | GET bytes | proxies listed | edges |",
    "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const r of runs) {
    lines.push(
      `| ${r.proxies} | ${fmt(r.tableHeapKibPerProxy, 2)} | ${fmt(r.tableReportUs, 1)}, ${fmt(r.tableViewMs, 2)} | ${fmt(r.reportsPerSecond)} | ${r.reportBytes} | ${r.refused} | ${fmt(r.reportMedianMs, 2)} / ${fmt(r.reportP99Ms, 2)} | ${fmt(r.cpuMsPerS)} (${fmt(r.idleCpuMsPerS)}) | ${fmt(r.reportCpuMsPerS)} | ${fmt(r.cpuUsPerReport, 0)} | ${r.rssIdleKib} → ${r.rssEndKib} | ${r.rssGrowthKib} (${fmt(r.rssKibPerProxy, 2)}) | ${fmt(r.getMedianMs, 2)} / ${fmt(r.getP95Ms, 2)} | ${r.getBytes} | ${r.proxiesListed} | ${r.edges} |`,
    );
  }
  const [small, large] = [runs[0], runs[runs.length - 1]];
  if (small && large && small !== large) {
    const ratio = (a: number, b: number) => fmt(a / b, 2);
    lines.push(
      "",
      `Ratios ${large.proxies} / ${small.proxies} sidecars (×${large.proxies / small.proxies} the sidecars): ` +
        `CPU above idle ×${ratio(large.reportCpuMsPerS, small.reportCpuMsPerS)}, ` +
        `RSS at the end ${small.rssEndKib} → ${large.rssEndKib} KiB (${fmt((large.rssEndKib - small.rssEndKib) / (large.proxies - small.proxies), 1)} KiB per further sidecar; ` +
        "growth over idle is noisy: the idle figure still holds the start's garbage), " +
        `GET /v1/traffic median ×${ratio(large.getMedianMs, small.getMedianMs)}, its bytes ×${ratio(large.getBytes, small.getBytes)}.`,
    );
  }
  lines.push("");
  return lines.join("\n");
}

const measuredAt = new Date().toISOString();
const runs: Run[] = [];
for (const n of PROXIES) {
  const r = await run(n);
  console.log(
    `bench:traffic ${n} sidecars: ${fmt(r.reportsPerSecond)} reports/s, CPU ${fmt(r.reportCpuMsPerS)} ms/s above idle, RSS +${r.rssGrowthKib} KiB, GET ${fmt(r.getMedianMs, 2)} ms`,
  );
  runs.push(r);
}
const results = {
  measuredAt,
  machine: { platform: process.platform, cpus: availableParallelism(), node: process.versions.node },
  settings: {
    proxies: PROXIES,
    intervalSeconds: INTERVAL_S,
    measureSeconds: MEASURE_S,
    services: SERVICES,
    clustersPerReport: CLUSTERS_PER_REPORT,
  },
  runs,
};
mkdirSync(BENCH_RESULTS_DIR, { recursive: true });
const md = markdown(runs, measuredAt);
writeFileSync(join(BENCH_RESULTS_DIR, "traffic.json"), `${JSON.stringify(results, null, 2)}\n`);
writeFileSync(join(BENCH_RESULTS_DIR, "traffic.md"), md);
console.log(md);
const refused = runs.reduce((n, r) => n + r.refused, 0);
if (refused > 0 || runs.some((r) => r.proxiesListed !== r.proxies)) {
  console.error(
    `bench:traffic: ${refused} reports refused (${runs.map((r) => r.refusedSample ?? "").join(" ")}), or a run's GET /v1/traffic lists fewer proxies than report`,
  );
  process.exit(1);
}
