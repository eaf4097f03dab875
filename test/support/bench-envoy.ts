// Three Envoy setups with the same traffic policy over the same two upstreams (clusters v1, v2),
// for comparing native Envoy routing, Lua and wasmesh (npm run bench:filters):
//   native  weighted_clusters 90/10, a header route x-user: tester -> v2, outlier detection;
//   lua     envoy.filters.http.lua picks the cluster and writes x-wasmesh-cluster;
//   wasm    envoy.filters.http.wasm (e.g. build/mesh.wasm) with a caller-supplied configuration.
// All three: one listener "bench" on 127.0.0.1:<listenerPort>, HCM stat prefix "bench", every
// domain, the router last. Lua and Wasm route with cluster_header: x-wasmesh-cluster.
import {
  CLUSTER_HEADER,
  clusterHeaderRouteConfig,
  type EnvoyProcess,
  freePort,
  httpListener,
  loopbackCluster,
  startEnvoy,
  staticBootstrap,
  wasmHttpFilter,
} from "./envoy.ts";
import { startUpstream, type Upstream } from "./upstreams.ts";

export type BenchSetup = "native" | "lua" | "wasm";
export const BENCH_SETUPS: readonly BenchSetup[] = ["native", "lua", "wasm"];

export interface BenchPorts {
  adminPort: number;
  listenerPort: number;
  /** Ports of the v1 and v2 upstreams. */
  upstreams: { v1: number; v2: number };
}

/** The traffic policy the native and Lua setups implement (the Wasm setup gets it as configuration). */
export interface BenchPolicy {
  /** Header that sends a request to v2 whatever the split says; default x-user. */
  testerHeader?: string;
  /** Its value; default "tester". */
  testerValue?: string;
  /** Percent of other requests for v1 (the rest go to v2); default 90. */
  v1Weight?: number;
}

export interface NativeBenchOptions extends BenchPorts, BenchPolicy {
  /** Outlier detection on both clusters: eject after this many consecutive 5xx; default 5. */
  consecutive5xx?: number;
  /** Outlier detection sweep interval; default 10 s. */
  intervalMs?: number;
  /** Base ejection time; default 30 s. */
  baseEjectionMs?: number;
  /**
   * When set, weighted_clusters takes its random value from this request header (a number;
   * value % 100 < v1Weight picks v1), which makes the split deterministic for tests. Unset: Envoy
   * draws a random number per request, as in production.
   */
  randomValueHeader?: string;
}

const BENCH_LISTENER = "bench";

const seconds = (ms: number) => `${(ms / 1000).toFixed(3)}s`;

function benchListener(listenerPort: number, routeConfig: object, httpFilters: object[] = []): object {
  return httpListener({
    name: BENCH_LISTENER,
    port: listenerPort,
    statPrefix: BENCH_LISTENER,
    routeConfig,
    httpFilters,
  });
}

/** (a) Native Envoy: the header route first, then weighted_clusters; outlier detection on the clusters. */
export function nativeBenchBootstrap(options: NativeBenchOptions): object {
  const v1Weight = options.v1Weight ?? 90;
  const outlier = {
    outlier_detection: {
      consecutive_5xx: options.consecutive5xx ?? 5,
      interval: seconds(options.intervalMs ?? 10_000),
      base_ejection_time: seconds(options.baseEjectionMs ?? 30_000),
      max_ejection_percent: 100,
      // Only consecutive 5xx: the gateway-failure and success-rate detectors stay off.
      enforcing_consecutive_5xx: 100,
      enforcing_consecutive_gateway_failure: 0,
      enforcing_success_rate: 0,
    },
    // One host per cluster: without this, ejecting it puts the cluster into panic mode and Envoy
    // routes to the ejected host anyway. With 0 it answers 503 "no healthy upstream" instead,
    // which is what an open circuit does.
    common_lb_config: { healthy_panic_threshold: { value: 0 } },
  };
  const routeConfig = {
    name: BENCH_LISTENER,
    virtual_hosts: [
      {
        name: BENCH_LISTENER,
        domains: ["*"],
        routes: [
          {
            match: {
              prefix: "/",
              headers: [
                {
                  name: options.testerHeader ?? "x-user",
                  string_match: { exact: options.testerValue ?? "tester" },
                },
              ],
            },
            route: { cluster: "v2" },
          },
          {
            match: { prefix: "/" },
            route: {
              weighted_clusters: {
                clusters: [
                  { name: "v1", weight: v1Weight },
                  { name: "v2", weight: 100 - v1Weight },
                ],
                ...(options.randomValueHeader ? { header_name: options.randomValueHeader } : {}),
              },
            },
          },
        ],
      },
    ],
  };
  return staticBootstrap({
    adminPort: options.adminPort,
    nodeId: "bench-native",
    listeners: [benchListener(options.listenerPort, routeConfig)],
    clusters: [
      loopbackCluster("v1", options.upstreams.v1, { extra: outlier }),
      loopbackCluster("v2", options.upstreams.v2, { extra: outlier }),
    ],
  });
}

/**
 * The Lua script: the tester header wins; otherwise a smooth weighted round-robin (the nginx
 * algorithm, as in wasmesh's split) picks v1 or v2, so 90/10 means exactly one request in every
 * ten goes to v2, evenly spread. Its state is a Lua global, and Envoy keeps one Lua state per
 * worker thread, so the split is exact per worker (with --concurrency 1, exact overall). The
 * client's own x-wasmesh-cluster is always overwritten.
 */
export function benchLuaScript(policy: BenchPolicy = {}): string {
  const header = (policy.testerHeader ?? "x-user").toLowerCase();
  const value = policy.testerValue ?? "tester";
  const v1Weight = policy.v1Weight ?? 90;
  return `
wasmesh_split = {
  { name = "v1", weight = ${v1Weight}, current = 0 },
  { name = "v2", weight = ${100 - v1Weight}, current = 0 },
}

function envoy_on_request(request_handle)
  local headers = request_handle:headers()
  local cluster
  if headers:get(${JSON.stringify(header)}) == ${JSON.stringify(value)} then
    cluster = "v2"
  else
    local best = nil
    for _, destination in ipairs(wasmesh_split) do
      destination.current = destination.current + destination.weight
      if best == nil or destination.current > best.current then best = destination end
    end
    best.current = best.current - 100
    cluster = best.name
  end
  headers:replace(${JSON.stringify(CLUSTER_HEADER)}, cluster)
  request_handle:clearRouteCache()
end
`;
}

/** (b) Lua: envoy.filters.http.lua writes x-wasmesh-cluster; the route reads it (cluster_header). */
export function luaBenchBootstrap(options: BenchPorts & BenchPolicy): object {
  const lua = {
    name: "envoy.filters.http.lua",
    typed_config: {
      "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
      default_source_code: { inline_string: benchLuaScript(options) },
    },
  };
  return staticBootstrap({
    adminPort: options.adminPort,
    nodeId: "bench-lua",
    listeners: [
      benchListener(options.listenerPort, clusterHeaderRouteConfig({ name: BENCH_LISTENER }), [lua]),
    ],
    clusters: [loopbackCluster("v1", options.upstreams.v1), loopbackCluster("v2", options.upstreams.v2)],
  });
}

export interface WasmBenchOptions extends BenchPorts {
  wasmPath: string;
  /** The plugin configuration text (for mesh.wasm: the mesh JSON configuration). */
  configuration: string;
  /** Default "wasmesh". */
  rootId?: string;
  /** Default "wasmesh". */
  vmId?: string;
}

/** (c) Wasm: envoy.filters.http.wasm (V8) writes x-wasmesh-cluster; the route reads it (cluster_header). */
export function wasmBenchBootstrap(options: WasmBenchOptions): object {
  const filter = wasmHttpFilter({
    name: "wasmesh",
    rootId: options.rootId ?? "wasmesh",
    vmId: options.vmId ?? "wasmesh",
    wasmPath: options.wasmPath,
    configuration: options.configuration,
  });
  return staticBootstrap({
    adminPort: options.adminPort,
    nodeId: "bench-wasm",
    listeners: [
      benchListener(options.listenerPort, clusterHeaderRouteConfig({ name: BENCH_LISTENER }), [filter]),
    ],
    clusters: [loopbackCluster("v1", options.upstreams.v1), loopbackCluster("v2", options.upstreams.v2)],
  });
}

export type BenchSetupOptions =
  | ({ setup: "native" } & Omit<NativeBenchOptions, keyof BenchPorts>)
  | ({ setup: "lua" } & BenchPolicy)
  | ({ setup: "wasm" } & Omit<WasmBenchOptions, keyof BenchPorts>);

export interface RunningBenchSetup {
  setup: BenchSetup;
  envoy: EnvoyProcess;
  v1: Upstream;
  v2: Upstream;
  /** http://127.0.0.1:<listenerPort>/ */
  url: string;
  listenerPort: number;
  stop(): Promise<void>;
}

/** Starts the two upstreams and Envoy with the chosen setup; stop() stops all three. */
export async function startBenchSetup(
  options: BenchSetupOptions & { concurrency?: number; logLevel?: "info" | "warning" | "error" },
): Promise<RunningBenchSetup> {
  const v1 = await startUpstream({ name: "v1" });
  const v2 = await startUpstream({ name: "v2" });
  try {
    const ports: BenchPorts = {
      adminPort: await freePort(),
      listenerPort: await freePort(),
      upstreams: { v1: v1.port, v2: v2.port },
    };
    const bootstrap =
      options.setup === "native"
        ? nativeBenchBootstrap({ ...options, ...ports })
        : options.setup === "lua"
          ? luaBenchBootstrap({ ...options, ...ports })
          : wasmBenchBootstrap({ ...options, ...ports });
    const envoy = await startEnvoy({
      name: `bench-${options.setup}`,
      bootstrap,
      concurrency: options.concurrency ?? 1,
      logLevel: options.logLevel ?? "warning",
    });
    return {
      setup: options.setup,
      envoy,
      v1,
      v2,
      url: `http://127.0.0.1:${ports.listenerPort}/`,
      listenerPort: ports.listenerPort,
      async stop() {
        await envoy.stop();
        await Promise.all([v1.close(), v2.close()]);
      },
    };
  } catch (error) {
    await Promise.all([v1.close(), v2.close()]);
    throw error;
  }
}
