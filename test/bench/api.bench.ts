// npm run bench:api — what a write through the API costs, with the modules' configuration check
// (revision/check.ts) and without it, written to bench-results/api.{json,md}.
// Per mesh size (BENCH_API_SERVICES, default 50 and 500 services, bench:xds's mesh: 2 workloads and a
// 90/10 Route each, CircuitBreakers, AccessRules, one WasmPlugin; and the same denying by default,
// where every service's sidecars get a routing configuration of their own), two control planes in this
// process on their own SQLite files, one checking writes and one not, take the same writes in turn
// (so whatever else the machine does weighs on both alike), one at a time, BENCH_API_ROUNDS each:
//   - a Route's split (the routing configuration changes: the built-in module loads it again);
//   - a WasmPlugin's configuration (that plugin is loaded into its module; the routing
//     configuration is the same, so its verdict is remembered);
//   - a Workload's address (nothing new for any module to load).
// Latency is the client's, from sending the request to the answer (200); the ratio is checked/not.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { type Resource, validateResource } from "../../control-plane/resources/index.ts";
import { type ControlPlane, startControlPlane } from "../../control-plane/server.ts";
import { indexMesh } from "../../control-plane/translate/mesh.ts";
import { routingSuperset } from "../../control-plane/translate/routing-check.ts";
import { denialsFor } from "../../control-plane/translate/routing-filter.ts";
import { RELEASE_WASM } from "../support/artifacts.ts";
import { BENCH_RESULTS_DIR, median, percentile } from "../support/bench.ts";
import { benchMesh, CHANGED_SERVICE, serviceName, splitRoute, tagPlugin } from "../support/bench-xds-mesh.ts";

const list = (value: string | undefined, fallback: number[]) =>
  value === undefined ? fallback : value.split(",").map((s) => Number(s.trim()));
const SERVICES = list(process.env.BENCH_API_SERVICES, [50, 500]);
const ROUNDS = Number(process.env.BENCH_API_ROUNDS ?? 20);
/** Writes of each kind before the measured ones (the first compiles and warms everything). */
const WARMUP = 3;

type Doc = Record<string, unknown>;
type Kind = "route split" | "plugin config" | "workload";
type Policy = "allow" | "deny";
const KINDS: Kind[] = ["route split", "plugin config", "workload"];

/** The round-th write of a kind. */
function change(kind: Kind, round: number): Doc {
  switch (kind) {
    case "route split":
      return splitRoute(CHANGED_SERVICE, round % 2 === 0 ? 50 : 90);
    case "plugin config":
      return tagPlugin(`round-${round}`);
    case "workload":
      return {
        apiVersion: "wasmesh.io/v1alpha1",
        kind: "Workload",
        metadata: { name: `${serviceName(9)}-v1` },
        spec: {
          service: serviceName(9),
          address: `10.9.${round % 200}.${10 + (round % 2)}`,
          port: 9080,
          labels: { version: "v1" },
        },
      };
  }
}

async function apply(plane: ControlPlane, docs: Doc[]): Promise<number> {
  const started = performance.now();
  const response = await fetch(`http://127.0.0.1:${plane.httpPort}/v1/apply`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      authorization: `Bearer ${readFileSync(plane.adminTokenFile, "utf8").trim()}`,
    },
    body: JSON.stringify(docs),
  });
  const text = await response.text();
  const elapsed = performance.now() - started;
  if (response.status !== 200) throw new Error(`apply: ${response.status} ${text.slice(0, 500)}`);
  return elapsed;
}

interface Figures {
  medianMs: number;
  p95Ms: number;
}
const figures = (samples: number[]): Figures => {
  const sorted = [...samples].sort((a, b) => a - b);
  return { medianMs: median(sorted), p95Ms: percentile(sorted, 95) };
};

interface SizeResult {
  services: number;
  /** The MeshPolicy's default access. */
  policy: Policy;
  resources: number;
  /** The routing configuration the built-in module loads per write (every class's at once), bytes. */
  routingConfigBytes: number;
  /** How many distinct routing configurations the proxy classes of this mesh get. */
  denialSets: number;
  writes: Record<Kind, { checked: Figures; unchecked: Figures; ratio: number }>;
  loadAverage: number;
}

/**
 * bench:xds's mesh, or that mesh denying by default (MeshPolicy) with each service allowed to call
 * the next: then every service's sidecars get a routing configuration of their own.
 */
function meshOf(services: number, policy: Policy): Doc[] {
  const docs = benchMesh(services);
  if (policy === "allow") return docs;
  const doc = (kind: string, name: string, spec: Doc): Doc => ({
    apiVersion: "wasmesh.io/v1alpha1",
    kind,
    metadata: { name },
    spec,
  });
  docs.push(doc("MeshPolicy", "default", { defaultAccess: "deny" }));
  for (let i = 0; i < services; i++) {
    const [source, destination] = [serviceName(i), serviceName((i + 1) % services)];
    docs.push(doc("AccessRule", `${source}-to-next`, { source, destination, action: "allow" }));
  }
  return docs;
}

async function measure(services: number, policy: Policy): Promise<SizeResult> {
  const docs = meshOf(services, policy);
  const resources = docs.map((d) => {
    const result = validateResource(d);
    if (!result.ok) throw new Error(JSON.stringify(result.errors));
    return result.resource;
  }) as Resource[];
  const mesh = indexMesh(resources);
  const denialSets = new Set(
    [...mesh.services.map((s) => s.metadata.name), "*"].map((s) => JSON.stringify(denialsFor(mesh, s))),
  ).size;
  const routingConfigBytes = Buffer.byteLength(JSON.stringify(routingSuperset(mesh)));

  const dirs: string[] = [];
  const start = async (checkConfigurations: boolean) => {
    const dataDir = mkdtempSync(join(tmpdir(), "wasmesh-bench-api-"));
    dirs.push(dataDir);
    return startControlPlane({
      dataDir,
      httpPort: 0,
      xdsPort: 0,
      builtinModule: RELEASE_WASM,
      checkConfigurations,
      log: () => {},
    });
  };
  const checked = await start(true);
  const unchecked = await start(false);
  try {
    for (const plane of [checked, unchecked]) await apply(plane, docs);
    const writes = {} as SizeResult["writes"];
    for (const kind of KINDS) {
      const samples = { checked: [] as number[], unchecked: [] as number[] };
      for (let round = 0; round < WARMUP + ROUNDS; round++) {
        // In turn, which goes first alternating: both see the same machine.
        const order =
          round % 2 === 0 ? (["checked", "unchecked"] as const) : (["unchecked", "checked"] as const);
        for (const which of order) {
          const ms = await apply(which === "checked" ? checked : unchecked, [change(kind, round)]);
          if (round >= WARMUP) samples[which].push(ms);
        }
      }
      const on = figures(samples.checked);
      const off = figures(samples.unchecked);
      writes[kind] = { checked: on, unchecked: off, ratio: on.medianMs / off.medianMs };
      console.log(
        `${services} services (${policy} by default), ${kind}: checked ${on.medianMs.toFixed(1)} ms (p95 ${on.p95Ms.toFixed(1)}), ` +
          `unchecked ${off.medianMs.toFixed(1)} ms (p95 ${off.p95Ms.toFixed(1)}), ratio ${writes[kind].ratio.toFixed(2)}`,
      );
    }
    const loadAverage = loadavg()[0] ?? 0;
    return { services, policy, resources: docs.length, routingConfigBytes, denialSets, writes, loadAverage };
  } finally {
    await checked.close();
    await unchecked.close();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  }
}

function markdown(results: { sizes: SizeResult[]; rounds: number }): string {
  const lines = [
    "# bench:api",
    "",
    `Measured ${new Date().toISOString()} on this machine (${process.platform}, ${availableParallelism()} CPUs, Node ${process.versions.node}).`,
    `What a write through the API costs (the client's latency, one write at a time, ${results.rounds} of each after ${WARMUP} to warm up), with the modules' configuration check and without it, on two control planes in one process taking the same writes in turn.`,
    "The check loads the routing configuration of the resulting state (every proxy class's and the edge's at once) into the built-in module when it changed, and a written WasmPlugin's configuration into its module; verdicts are remembered per (module, configuration).",
    `Load average (1 min) after each mesh: ${results.sizes.map((s) => `${s.services}/${s.policy} ${s.loadAverage.toFixed(1)}`).join(", ")} (the bench alone keeps it near 1; other work on the cores inflates both columns alike).`,
    "",
    "| services | default access | resources | routing config checked | routing configs of the proxy classes | write | checked median ms | p95 | unchecked median ms | p95 | ratio (median) |",
    "| ---: | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const size of results.sizes) {
    for (const [kind, w] of Object.entries(size.writes)) {
      lines.push(
        `| ${size.services} | ${size.policy} | ${size.resources} | ${(size.routingConfigBytes / 1024).toFixed(0)} KiB | ${size.denialSets} | ${kind} | ` +
          `${w.checked.medianMs.toFixed(1)} | ${w.checked.p95Ms.toFixed(1)} | ${w.unchecked.medianMs.toFixed(1)} | ${w.unchecked.p95Ms.toFixed(1)} | ${w.ratio.toFixed(2)} |`,
      );
    }
  }
  lines.push("");
  return lines.join("\n");
}

const sizes: SizeResult[] = [];
for (const services of SERVICES)
  for (const policy of ["allow", "deny"] as const) sizes.push(await measure(services, policy));
const results = { rounds: ROUNDS, sizes };
mkdirSync(BENCH_RESULTS_DIR, { recursive: true });
writeFileSync(join(BENCH_RESULTS_DIR, "api.json"), `${JSON.stringify(results, null, 2)}\n`);
writeFileSync(join(BENCH_RESULTS_DIR, "api.md"), markdown(results));
console.log(markdown(results));
