// npm run bench:filters — figures for mesh.wasm, written to bench-results/filters.{json,md}.
//   1. release module size;
//   2. per-request cost of the full filter chain in the TypeScript host;
//   3. Envoy side by side, same machine, same upstreams, same request mix, bounded loopback load:
//      (a) native weighted_clusters + outlier_detection, (b) Lua, (c) mesh.wasm.
// A fourth setup, wasm-floor, is the cheapest possible Wasm filter (see below).
// Runs are interleaved (a, b, c, a, b, c, ...) and medians reported, because the machine is noisy;
// the ratios c/a and c/b are what to read.
import { mkdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { RELEASE_WASM } from "../support/artifacts.ts";
import {
  BENCH_FULL_CHAIN_CONFIG,
  BENCH_MESH_CONFIG,
  BENCH_RESULTS_DIR,
  cpuMs,
  median,
  runWrk,
  startDirectOrigins,
  type WrkResult,
  wrkBinary,
} from "../support/bench.ts";
import { luaBenchBootstrap, nativeBenchBootstrap, wasmBenchBootstrap } from "../support/bench-envoy.ts";
import { type EnvoyProcess, freePort, startEnvoy } from "../support/envoy.ts";
import { MeshUnderTest } from "../support/mesh-host.ts";
import { writeRouteWasm } from "../support/route-wasm.ts";
import { removeDir, tempDir } from "../support/temp.ts";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 16);
const HOST_REQUESTS = Number(process.env.BENCH_HOST_REQUESTS ?? 50_000);

async function hostCost(): Promise<Record<string, number>> {
  const measure = async (config: unknown): Promise<number> => {
    const mesh = await MeshUnderTest.start(config);
    const run = (n: number) => {
      for (let i = 0; i < n; i++) {
        mesh.request({
          path: `/reviews/${i}`,
          headers: i % 10 === 0 ? { "x-user": "tester" } : { "user-agent": "curl/8" },
        });
      }
    };
    run(5_000); // warm up the JIT
    const samples: number[] = [];
    for (let round = 0; round < 5; round++) {
      const start = process.hrtime.bigint();
      run(HOST_REQUESTS / 5);
      samples.push(Number(process.hrtime.bigint() - start) / (HOST_REQUESTS / 5));
    }
    return median(samples);
  };
  const emptyNs = await measure({});
  const fullNs = await measure(BENCH_FULL_CHAIN_CONFIG);
  return {
    emptyConfigNsPerRequest: emptyNs,
    fullChainNsPerRequest: fullNs,
    filterChainNsPerRequest: fullNs - emptyNs,
  };
}

interface SetupSummary {
  rps: number;
  p50Ms: number;
  p99Ms: number;
  envoyCpuUsPerRequest: number;
  errors: number;
  non2xx: number;
}

async function envoySideBySide(): Promise<Record<string, unknown>> {
  const wrk = wrkBinary("bench:filters");
  const upstreams = await startDirectOrigins();
  const setups: { name: string; envoy: EnvoyProcess; port: number }[] = [];
  const floorDir = tempDir("bench");
  try {
    // wasm-floor: a 560-byte hand-written module that only copies one header into the routing
    // header. No Wasm filter can cost less, so it separates Envoy's per-request Wasm cost from ours.
    const floorWasm = writeRouteWasm(floorDir);
    for (const name of ["native", "lua", "wasm-floor", "wasm"] as const) {
      const ports = { adminPort: await freePort(), listenerPort: await freePort(), upstreams };
      const wasm = (wasmPath: string, configuration: string) =>
        wasmBenchBootstrap({ ...ports, wasmPath, configuration });
      const bootstrap =
        name === "native"
          ? nativeBenchBootstrap(ports)
          : name === "lua"
            ? luaBenchBootstrap(ports)
            : name === "wasm-floor"
              ? wasm(floorWasm, "")
              : wasm(RELEASE_WASM, JSON.stringify(BENCH_MESH_CONFIG));
      const envoy = await startEnvoy({
        name: `bench-${name}`,
        bootstrap,
        concurrency: 1,
        logLevel: "warning",
      });
      setups.push({ name, envoy, port: ports.listenerPort });
    }
    for (const s of setups) await runWrk(wrk, s.port, { seconds: 1, connections: CONNECTIONS }); // warm-up
    const runs = new Map<string, WrkResult[]>(setups.map((s) => [s.name, []]));
    // Envoy's own CPU time per request is steadier than throughput on a shared machine.
    const cpuUs = new Map<string, number[]>(setups.map((s) => [s.name, []]));
    for (let round = 0; round < ROUNDS; round++) {
      for (const s of setups) {
        const before = cpuMs(s.envoy.pid);
        const result = await runWrk(wrk, s.port, { seconds: SECONDS, connections: CONNECTIONS });
        cpuUs.get(s.name)?.push(((cpuMs(s.envoy.pid) - before) * 1e3) / result.requests);
        runs.get(s.name)?.push(result);
      }
    }
    const summary: Record<string, SetupSummary> = {};
    for (const [name, results] of runs) {
      summary[name] = {
        rps: median(results.map((r) => r.requests / (r.durationUs / 1e6))),
        envoyCpuUsPerRequest: median(cpuUs.get(name) ?? []),
        p50Ms: median(results.map((r) => r.p50Us / 1000)),
        p99Ms: median(results.map((r) => r.p99Us / 1000)),
        errors: results.reduce((n, r) => n + r.errors, 0),
        non2xx: results.reduce((n, r) => n + r.non2xx, 0),
      };
    }
    const upstreamStatus: Record<string, Record<string, number>> = {};
    for (const s of setups) {
      upstreamStatus[s.name] = Object.fromEntries(
        [...(await s.envoy.stats("upstream_rq_[0-9]xx|wasmcustom"))].filter(([, v]) => v > 0),
      );
    }
    const rps = (name: string) => summary[name]?.rps ?? Number.NaN;
    return {
      loadGenerator: `wrk -t1 -c${CONNECTIONS} -d${SECONDS}s, ${ROUNDS} interleaved rounds, medians`,
      envoyConcurrency: 1,
      setups: summary,
      envoyStats: upstreamStatus,
      ratios: {
        wasmOverNativeThroughput: rps("wasm") / rps("native"),
        wasmOverLuaThroughput: rps("wasm") / rps("lua"),
        nativeOverWasmEnvoyCpu:
          (summary.native?.envoyCpuUsPerRequest ?? 0) / (summary.wasm?.envoyCpuUsPerRequest ?? 1),
        luaOverWasmEnvoyCpu:
          (summary.lua?.envoyCpuUsPerRequest ?? 0) / (summary.wasm?.envoyCpuUsPerRequest ?? 1),
        wasmFloorOverWasmEnvoyCpu:
          (summary["wasm-floor"]?.envoyCpuUsPerRequest ?? 0) / (summary.wasm?.envoyCpuUsPerRequest ?? 1),
      },
    };
  } finally {
    for (const s of setups) await s.envoy.stop();
    await upstreams.envoy.stop();
    removeDir(floorDir);
  }
}

function markdown(results: Record<string, unknown>): string {
  const r = results as {
    moduleBytes: number;
    host: Record<string, number>;
    envoy: {
      loadGenerator: string;
      setups: Record<string, SetupSummary>;
      ratios: Record<string, number>;
    };
  };
  const lines = [
    "# bench:filters",
    "",
    `Measured ${new Date().toISOString()} on this machine (${process.platform}, Node ${process.versions.node}).`,
    "",
    `- release module: **${r.moduleBytes} bytes** (${(r.moduleBytes / 1024).toFixed(1)} KiB; goal ≤ 64 KiB)`,
    `- TypeScript host, full chain: **${r.host.fullChainNsPerRequest?.toFixed(0)} ns/request** ` +
      `(empty configuration ${r.host.emptyConfigNsPerRequest?.toFixed(0)} ns; the filters add ${r.host.filterChainNsPerRequest?.toFixed(0)} ns)`,
    "",
    `Envoy (${r.envoy.loadGenerator}):`,
    "",
    "| setup | requests/s | p50 ms | p99 ms | Envoy CPU µs/request | errors | non-2xx |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const [name, s] of Object.entries(r.envoy.setups)) {
    lines.push(
      `| ${name} | ${s.rps.toFixed(0)} | ${s.p50Ms.toFixed(3)} | ${s.p99Ms.toFixed(3)} | ${s.envoyCpuUsPerRequest.toFixed(1)} | ${s.errors} | ${s.non2xx} |`,
    );
  }
  lines.push(
    "",
    `- wasm/native throughput: **${r.envoy.ratios.wasmOverNativeThroughput?.toFixed(3)}** (goal ≥ 0.85)`,
    `- wasm/Lua throughput: **${r.envoy.ratios.wasmOverLuaThroughput?.toFixed(3)}** (goal > 1)`,
    `- Envoy CPU per request, native/wasm: ${r.envoy.ratios.nativeOverWasmEnvoyCpu?.toFixed(3)}, Lua/wasm: ${r.envoy.ratios.luaOverWasmEnvoyCpu?.toFixed(3)} (the same comparison measured as CPU, steadier on a shared machine)`,
    `- wasm-floor/wasm Envoy CPU: ${r.envoy.ratios.wasmFloorOverWasmEnvoyCpu?.toFixed(3)} (how close mesh.wasm is to the cheapest possible Wasm filter)`,
    "",
  );
  return lines.join("\n");
}

const results: Record<string, unknown> = {
  moduleBytes: statSync(RELEASE_WASM).size,
  host: await hostCost(),
};
if (process.env.BENCH_SKIP_ENVOY !== "1") results.envoy = await envoySideBySide();
mkdirSync(BENCH_RESULTS_DIR, { recursive: true });
writeFileSync(join(BENCH_RESULTS_DIR, "filters.json"), `${JSON.stringify(results, null, 2)}\n`);
if (results.envoy) writeFileSync(join(BENCH_RESULTS_DIR, "filters.md"), markdown(results));
console.log(JSON.stringify(results, null, 2));
