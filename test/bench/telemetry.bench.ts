// npm run bench:telemetry — what tracing and access logs cost one sidecar's Envoy (issue 18, §5:
// the Envoy CPU per request with tracing at 0%, 1% and 100% sampling and with access logs on, as
// ratios to off; goal: at 1% sampling, within 3% of off), written to bench-results/telemetry.{json,md}.
//
// One sidecar, the same one throughout: `wasmesh dataplane run` (the agent as users run it, its Envoy
// with --concurrency 1) for service productpage, registered with `wasmesh server` (a process),
// measured on two paths, one after the other under each configuration:
//   inbound   its inbound listener in front of its app: no Wasm filter, the cheapest path Envoy has,
//             where a fixed cost per request shows the most;
//   outbound  its outbound listener, the path every mesh request takes at its source: mesh.wasm picks
//             the subset of service reviews (wrk-mix.lua's Host) by a Route (x-user: tester → v2,
//             otherwise 90/10 v1/v2), and Envoy calls it. reviews has no sidecar: its two Workloads
//             (version v1 and v2) are the direct-response origins themselves, so that only the
//             measured sidecar is in the path.
// The app and reviews' workloads are one Envoy answering directly on two ports (a separate process,
// as cheap as an app can be, so that it is not what saturates). The collector is a real Jaeger v2
// over OTLP/gRPC, so at 100% every span is really exported.
// Configurations, changed through the control plane's CLI (`wasmesh apply` / `wasmesh delete`), each
// run only once the proxy has ACKed the store's revision:
//   off          no Tracing, no AccessLog
//   tracing-0    Tracing with randomPercent 0: the provider on the listeners, nothing sampled
//   tracing-1    randomPercent 1
//   tracing-100  randomPercent 100: every request a span, exported to Jaeger
//   access-log   an AccessLog to a temp file, default format; no Tracing
// Load: wrk -t1 (test/bench/wrk-mix.lua), BENCH_CONNECTIONS (16) connections for BENCH_SECONDS (5) on
// loopback, each path after a 1 s warm-up of its own. Rounds (BENCH_ROUNDS, 3) are interleaved, the
// order of the configurations rotated each round and that of the two paths alternated; Envoy's CPU
// (all threads, /proc) per request answered is compared with "off" of the same round on the same
// path, and the medians of those paired ratios reported, per path.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import {
  BENCH_RESULTS_DIR,
  cpuMs,
  median,
  runWrk,
  startDirectOrigins,
  type WrkResult,
  wrkBinary,
} from "../support/bench.ts";
import { type CanaryMesh, resource, startCanaryMesh } from "../support/canary-mesh.ts";
import { dataplaneToken } from "../support/control-plane.ts";
import { type AgentProcess, startAgentProcess } from "../support/dataplane.ts";
import { type Jaeger, startJaeger } from "../support/jaeger.ts";
import { removeTempDirs, tempDir } from "../support/temp.ts";
import { until } from "../support/wait.ts";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 16);
const WARMUP_SECONDS = 1;
const GOAL_RATIO_AT_1 = 1.03;
/** The measured sidecar's service, and the one its outbound path calls (wrk-mix.lua's Host). */
const SERVICE = "productpage";
const DESTINATION = "reviews";

const PATHS = ["inbound", "outbound"] as const;
type Path = (typeof PATHS)[number];
const PATH_LABELS: Record<Path, string> = {
  inbound: "inbound listener → app (no Wasm filter)",
  outbound: `outbound listener → ${DESTINATION} (mesh.wasm routing: tester → v2, else 90/10)`,
};

const CONFIGS = ["off", "tracing-0", "tracing-1", "tracing-100", "access-log"] as const;
type Config = (typeof CONFIGS)[number];
const LABELS: Record<Config, string> = {
  off: "off (no Tracing, no AccessLog)",
  "tracing-0": "tracing, 0% sampled (provider on)",
  "tracing-1": "tracing, 1% sampled",
  "tracing-100": "tracing, 100% sampled (exported to Jaeger)",
  "access-log": "access log to a file (default format), no tracing",
};

interface Run {
  requests: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  envoyCpuMs: number;
  envoyCpuUsPerRequest: number;
  errors: number;
  non2xx: number;
  /** Deltas of the path's connection manager's tracing counters over the run (sampling decisions). */
  tracingStats: Record<string, number>;
}

interface Summary {
  envoyCpuUsPerRequest: number;
  ratioToOff: number;
  ratioToOffPerRound: number[];
  rps: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  non2xx: number;
}

async function main(): Promise<void> {
  const wrk = wrkBinary("bench:telemetry");
  const loadBefore = loadavg();
  const jaeger: Jaeger = await startJaeger();
  const origins = await startDirectOrigins();
  let mesh: CanaryMesh | undefined;
  const logDir = tempDir("bench-telemetry-logs");
  const logFile = join(logDir, "access.log");
  try {
    mesh = await startCanaryMesh({ manifests: [] });
    const m = mesh;
    const http = { ports: [{ name: "http", port: 9080, protocol: "http" }] };
    // The destination of the outbound path: two Workloads without a sidecar (plain text, no lease),
    // each a port of the direct-response origin, and the route the routing filter applies.
    await m.apply(
      resource("Service", SERVICE, http),
      resource("Service", DESTINATION, http),
      ...(["v1", "v2"] as const).map((version) =>
        resource("Workload", `${DESTINATION}-${version}`, {
          service: DESTINATION,
          address: "127.0.0.1",
          port: origins[version],
          labels: { version },
        }),
      ),
      resource("Route", DESTINATION, {
        service: DESTINATION,
        rules: [
          {
            name: "testers",
            match: { headers: [{ name: "x-user", exact: "tester" }] },
            destinations: [{ service: DESTINATION, subset: { version: "v2" } }],
          },
          {
            name: "canary",
            destinations: [
              { service: DESTINATION, subset: { version: "v1" }, weight: 90 },
              { service: DESTINATION, subset: { version: "v2" }, weight: 10 },
            ],
          },
        ],
      }),
    );

    // The sidecar, started as startAgents() starts one, but in front of the direct-response origin.
    const name = `${SERVICE}-1`;
    const agent: AgentProcess = startAgentProcess({
      token: await dataplaneToken(m.cp.api, SERVICE),
      // The agent harness's default, stated: one worker thread, so CPU per request is comparable.
      envoyArgs: ["--concurrency", "1", "--log-level", "warning"],
      args: [
        "--name",
        name,
        "--service",
        SERVICE,
        "--app-port",
        String(origins.v1),
        "--labels",
        "version=v1",
        "--cp",
        m.cp.api,
        "--xds",
        m.cp.xds,
      ],
    });
    m.agents.set(name, agent);
    await agent.waitReady();
    await until(
      `${name} to be registered`,
      async () => {
        const { body } = await m.cp.request("GET", "/v1/workloads");
        return (body as { items: { metadata: { name: string } }[] }).items.some(
          (w) => w.metadata.name === name,
        );
      },
      20_000,
      50,
    );
    await m.synced();
    const envoyPid = agent.envoyPids().at(-1);
    if (envoyPid === undefined) throw new Error("the agent printed no Envoy pid");
    const envoyCmdline = readFileSync(`/proc/${envoyPid}/cmdline`, "utf8").split("\0").filter(Boolean);
    const at = envoyCmdline.indexOf("--concurrency");
    if (at < 0 || envoyCmdline[at + 1] !== "1")
      throw new Error(`the sidecar's Envoy does not run with --concurrency 1: ${envoyCmdline.join(" ")}`);
    const ports = await agent.ports();

    // Configuration changes, through the CLI, each followed by the proxy's ACK of the store's revision.
    let present = { tracing: false, accessLog: false };
    const tracing = (percent: number) =>
      resource("Tracing", "mesh", {
        backend: { protocol: "otlp-grpc", url: `http://${jaeger.otlpGrpcAddress}` },
        sampling: { randomPercent: percent },
      });
    const configure = async (config: Config) => {
      const wantTracing = config.startsWith("tracing-");
      const wantLog = config === "access-log";
      if (present.tracing && !wantTracing) await m.cli(["delete", "tracing", "mesh"]);
      if (present.accessLog && !wantLog) await m.cli(["delete", "accesslog", "mesh"]);
      if (wantTracing) await m.apply(tracing(Number(config.slice("tracing-".length))));
      if (wantLog) await m.apply(resource("AccessLog", "mesh", { backends: [{ file: { path: logFile } }] }));
      present = { tracing: wantTracing, accessLog: wantLog };
      await m.synced(undefined, [name]);
      // A listener change drains the old one: give the new one a moment before the warm-up.
      await new Promise((resolve) => setTimeout(resolve, 250));
    };
    const tracingCounters = async (path: Path) =>
      Object.fromEntries(
        [...(await agent.envoyStats(`^http\\.${path}\\.tracing\\.`))].map(([k, v]) => [
          k.replace(/^.*\.tracing\./, ""),
          v,
        ]),
      );
    const load = (path: Path, seconds: number) =>
      runWrk(wrk, ports[path], { seconds, connections: CONNECTIONS });

    // Each path answers before anything is measured; the outbound one splits as the Route says.
    for (const path of PATHS) {
      const check = await load(path, 1);
      if (check.requests === 0 || check.non2xx > 0 || check.errors > 0)
        throw new Error(`the sidecar's ${path} path fails: ${JSON.stringify(check)}`);
    }
    const canary = await m.send(name, DESTINATION, 200);
    const testers = await m.send(name, DESTINATION, 20, { "x-user": "tester" });
    const split = {
      canary: Object.fromEntries(canary.byUpstream),
      testers: Object.fromEntries(testers.byUpstream),
    };
    const v1 = canary.byUpstream.get("v1") ?? 0;
    const v2 = canary.byUpstream.get("v2") ?? 0;
    if (canary.ok !== 200 || v1 + v2 !== 200 || v2 === 0 || v1 < 150 || testers.byUpstream.get("v2") !== 20)
      throw new Error(`the outbound path does not route as the Route says: ${JSON.stringify(split)}`);

    const rounds: Record<Path, Record<Config, Run>>[] = [];
    const logRequests = { measured: 0, warmup: 0 };
    for (let round = 0; round < ROUNDS; round++) {
      // Rotate the order each round, so that no configuration always follows the same one, and
      // alternate the paths', so that neither is always the first after a change.
      const order = CONFIGS.map((_, i) => CONFIGS[(i + round) % CONFIGS.length] as Config);
      const paths = round % 2 === 0 ? PATHS : ([...PATHS].reverse() as Path[]);
      const row = { inbound: {}, outbound: {} } as Record<Path, Record<Config, Run>>;
      for (const config of order) {
        await configure(config);
        for (const path of paths) {
          const warm = await load(path, WARMUP_SECONDS);
          if (config === "access-log") logRequests.warmup += warm.requests;
          const statsBefore = await tracingCounters(path);
          const before = cpuMs(envoyPid);
          const result: WrkResult = await load(path, SECONDS);
          const used = cpuMs(envoyPid) - before;
          const statsAfter = await tracingCounters(path);
          if (config === "access-log") logRequests.measured += result.requests;
          const run: Run = {
            requests: result.requests,
            rps: result.requests / (result.durationUs / 1e6),
            p50Ms: result.p50Us / 1000,
            p99Ms: result.p99Us / 1000,
            envoyCpuMs: used,
            envoyCpuUsPerRequest: (used * 1e3) / result.requests,
            errors: result.errors,
            non2xx: result.non2xx,
            tracingStats: Object.fromEntries(
              Object.entries(statsAfter).map(([k, v]) => [k, v - (statsBefore[k] ?? 0)]),
            ),
          };
          row[path][config] = run;
          console.log(
            `round ${round + 1} ${path} ${config}: ${run.envoyCpuUsPerRequest.toFixed(2)} µs/request Envoy CPU, ` +
              `${run.rps.toFixed(0)} requests/s, p50 ${run.p50Ms.toFixed(3)} ms ` +
              `(${run.requests} requests, ${run.errors} errors, ${run.non2xx} non-2xx; tracing ${JSON.stringify(run.tracingStats)})`,
          );
        }
      }
      rounds.push(row);
    }
    await configure("off");

    // Evidence that each configuration did what it says.
    await new Promise((resolve) => setTimeout(resolve, 1500)); // Envoy flushes file logs every second
    const logLines = readFileSync(logFile, "utf8").split("\n").filter(Boolean).length;
    const jaegerServices = await jaeger.services();
    const traces = (await jaeger.traces(SERVICE, { limit: 1000 })).length;

    const summary = { inbound: {}, outbound: {} } as Record<Path, Record<Config, Summary>>;
    for (const path of PATHS) {
      for (const config of CONFIGS) {
        const runs = rounds.map((r) => r[path][config]);
        const perRound = rounds.map(
          (r) => r[path][config].envoyCpuUsPerRequest / r[path].off.envoyCpuUsPerRequest,
        );
        summary[path][config] = {
          envoyCpuUsPerRequest: median(runs.map((r) => r.envoyCpuUsPerRequest)),
          ratioToOff: median(perRound),
          ratioToOffPerRound: perRound,
          rps: median(runs.map((r) => r.rps)),
          p50Ms: median(runs.map((r) => r.p50Ms)),
          p99Ms: median(runs.map((r) => r.p99Ms)),
          errors: runs.reduce((n, r) => n + r.errors, 0),
          non2xx: runs.reduce((n, r) => n + r.non2xx, 0),
        };
      }
    }
    const failed = PATHS.reduce(
      (sum, p) => sum + CONFIGS.reduce((n, c) => n + summary[p][c].errors + summary[p][c].non2xx, 0),
      0,
    );
    const goal = Object.fromEntries(
      PATHS.map((p) => {
        const ratio = summary[p]["tracing-1"].ratioToOff;
        return [p, { tracing1RatioToOffAtMost: GOAL_RATIO_AT_1, ratio, met: ratio <= GOAL_RATIO_AT_1 }];
      }),
    ) as Record<Path, { tracing1RatioToOffAtMost: number; ratio: number; met: boolean }>;
    const results = {
      date: new Date().toISOString(),
      loadAverage: { before: loadBefore, after: loadavg() },
      settings: {
        rounds: ROUNDS,
        seconds: SECONDS,
        connections: CONNECTIONS,
        warmupSeconds: WARMUP_SECONDS,
        loadGenerator: `wrk -t1 -c${CONNECTIONS} -d${SECONDS}s (test/bench/wrk-mix.lua), loopback`,
        measured: `the ${SERVICE} sidecar's Envoy (agent-run), on each path`,
        paths: PATH_LABELS,
        envoyCmdline: envoyCmdline.join(" "),
        collector: "Jaeger v2, OTLP/gRPC",
      },
      summary,
      rounds,
      checks: {
        outboundSplit: split,
        accessLogLines: logLines,
        accessLogRequests: logRequests.measured + logRequests.warmup,
        jaegerServices,
        jaegerTraces: { service: SERVICE, traces },
      },
      goal,
      failed,
    };

    const f = (v: number, digits: number) => v.toFixed(digits);
    const table = (path: Path) => [
      `## ${path}: ${PATH_LABELS[path]}`,
      "",
      "| configuration | Envoy CPU µs/request | ratio to off (paired) | per round | requests/s | p50 ms | p99 ms | errors | non-2xx |",
      "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
      ...CONFIGS.map((c) => {
        const s = summary[path][c];
        return `| ${LABELS[c]} | ${f(s.envoyCpuUsPerRequest, 2)} | ${f(s.ratioToOff, 3)} | ${s.ratioToOffPerRound.map((r) => f(r, 3)).join(", ")} | ${f(s.rps, 0)} | ${f(s.p50Ms, 3)} | ${f(s.p99Ms, 3)} | ${s.errors} | ${s.non2xx} |`;
      }),
      "",
      `Goal on ${path}: at 1% sampling, Envoy CPU per request within 3% of off: ${goal[path].met ? "met" : "not met"} (ratio ${f(goal[path].ratio, 3)}).`,
      "",
    ];
    const md = [
      `# bench:telemetry (${results.date})`,
      "",
      `One agent-run sidecar's Envoy (${SERVICE}, --concurrency 1), measured on its inbound listener in front of a direct-response app ` +
        `and on its outbound listener calling ${DESTINATION}, whose two workloads are direct-response origins without a sidecar; ` +
        `${results.settings.loadGenerator}; ${ROUNDS} interleaved rounds (configurations' order rotated, paths' alternated), medians, ` +
        `ratios paired with off of the same round and path. ` +
        `Load average before ${loadBefore.map((l) => f(l, 2)).join(" ")}, after ${results.loadAverage.after.map((l) => f(l, 2)).join(" ")}.`,
      "",
      "| configuration | inbound µs/request | inbound ratio to off | outbound µs/request | outbound ratio to off |",
      "| --- | ---: | ---: | ---: | ---: |",
      ...CONFIGS.map((c) => {
        const [i, o] = [summary.inbound[c], summary.outbound[c]];
        return `| ${LABELS[c]} | ${f(i.envoyCpuUsPerRequest, 2)} | ${f(i.ratioToOff, 3)} | ${f(o.envoyCpuUsPerRequest, 2)} | ${f(o.ratioToOff, 3)} |`;
      }),
      "",
      ...PATHS.flatMap(table),
      `Checks: the outbound path split ${JSON.stringify(split.canary)} of 200 requests and sent ${JSON.stringify(split.testers)} of 20 from the tester; ` +
        `${logLines} access log lines for ${results.checks.accessLogRequests} requests sent with the access log on (both paths); ` +
        `Jaeger returns ${traces} traces of ${SERVICE} (asked for at most 1000) (services: ${jaegerServices.join(", ")}). Failed requests: ${failed}.`,
      "",
    ].join("\n");
    mkdirSync(BENCH_RESULTS_DIR, { recursive: true });
    writeFileSync(join(BENCH_RESULTS_DIR, "telemetry.json"), `${JSON.stringify(results, null, 2)}\n`);
    writeFileSync(join(BENCH_RESULTS_DIR, "telemetry.md"), md);
    console.log(`\n${md}`);
    if (failed > 0) process.exitCode = 1;
  } finally {
    await mesh?.close();
    await origins.envoy.stop();
    await jaeger.stop();
    removeTempDirs();
  }
}

await main();
