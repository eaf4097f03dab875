// npm run bench:xds — the control plane under many ADS clients, written to bench-results/xds.{json,md}.
// Per run (protocol × number of proxies), a fresh `wasmesh server` process on a temp data dir, so
// that its memory and CPU are measured alone (/proc/<pid>/status VmRSS, /proc/<pid>/stat utime+stime):
//   1. a mesh of BENCH_SERVICES services applied through the HTTP API (2 workloads and a 90/10 Route
//      each, CircuitBreakers, AccessRules, one WasmPlugin);
//   2. N simulated sidecars connect, each a raw gRPC ADS stream on its own channel, subscribing as
//      Envoy does and ACKing every response (test/support/bench-xds-clients.ts, in child processes
//      of BENCH_CLIENTS_PER_PROCESS sidecars each), first one per service, then the rest; idle RSS
//      with none, with one per service and with all → KiB per further sidecar (and all-in);
//   3. one change at a time, BENCH_ROUNDS times each: a Route split (90/10 ↔ 50/50; every sidecar's
//      routing filter holds every service's routes, so all are affected) and a WasmPlugin's
//      configuration (only one service's sidecars are affected). Per sidecar, the time from just
//      before the HTTP PUT to its ACK of the new version; the control plane's CPU for the push
//      (stat delta minus its idle rate). The median round (by p99) is reported.
import { type ChildProcess, fork } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { availableParallelism, loadavg } from "node:os";
import { join } from "node:path";
import { RELEASE_WASM } from "../support/artifacts.ts";
import { BENCH_RESULTS_DIR, cpuMs, median, percentile, statusKib } from "../support/bench.ts";
import type { ClientCommand, ClientReply } from "../support/bench-xds-clients.ts";
import type { SimulatedProxy } from "../support/bench-xds-mesh.ts";
import {
  benchMesh,
  CHANGED_SERVICE,
  PLUGIN_NAME,
  PLUGIN_SERVICE,
  simulatedProxy,
  splitRoute,
  tagPlugin,
} from "../support/bench-xds-mesh.ts";
import { type ControlPlaneProcess, startControlPlaneProcess } from "../support/control-plane.ts";
import { REPO_ROOT } from "../support/envoy.ts";
import type { AdsProtocol } from "../support/xds-client.ts";

const list = (value: string | undefined, fallback: number[]) =>
  value === undefined
    ? fallback
    : value
        .split(",")
        .map((s) => s.trim())
        .filter((s) => s !== "")
        .map(Number);

const PROXIES = list(process.env.BENCH_PROXIES, [100, 1000, 5000]);
// "A delta run at 1,000 too": by default at 1,000 when that is measured, else at the smallest N.
const DELTA = list(
  process.env.BENCH_DELTA,
  PROXIES.includes(1000) ? [1000] : PROXIES.length ? [Math.min(...PROXIES)] : [],
);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SERVICES = Number(process.env.BENCH_SERVICES ?? 50);
const PER_PROCESS = Number(process.env.BENCH_CLIENTS_PER_PROCESS ?? 1250);
/** 1 = a connection per sidecar, as real sidecars have; more = a cheaper load generator. */
const STREAMS_PER_CHANNEL = Number(process.env.BENCH_STREAMS_PER_CHANNEL ?? 1);
/** A directory for the control plane's CPU profiles (node --cpu-prof), one per run. */
const CPU_PROF = process.env.BENCH_CPU_PROF;
/** No response for this long after the last affected sidecar ACKed: the push is over. */
const QUIET_MS = 300;
const GOAL_P99_MS = 1000;
const GOAL_KIB_PER_PROXY = 100;

const now = () => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Resident memory once the process is quiet: the median of samples over `ms`. */
async function idleRssKib(pid: number, ms = 1000): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i < 5; i++) {
    await sleep(ms / 5);
    samples.push(statusKib(pid, "VmRSS"));
  }
  return median(samples);
}

/** One load-generator process and a queue of its replies. */
class ClientProcess {
  readonly child: ChildProcess;
  private readonly replies: ClientReply[] = [];
  private waiting: ((reply: ClientReply) => void) | undefined;
  private exited = false;

  constructor() {
    this.child = fork(join(REPO_ROOT, "test", "support", "bench-xds-clients.ts"), [], {
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    this.child.on("message", (reply: ClientReply) => {
      const waiting = this.waiting;
      if (waiting) {
        this.waiting = undefined;
        waiting(reply);
      } else this.replies.push(reply);
    });
    this.child.once("exit", (code) => {
      this.exited = true;
      this.waiting?.({ op: "error", message: `load generator exited (${code})` });
    });
  }

  async call(command: ClientCommand): Promise<ClientReply> {
    if (this.exited) throw new Error("load generator is gone");
    this.child.send(command);
    const reply =
      this.replies.shift() ??
      (await new Promise<ClientReply>((resolve) => {
        this.waiting = resolve;
      }));
    if (reply.op === "error") throw new Error(`load generator: ${reply.message}`);
    return reply;
  }

  async stop(): Promise<void> {
    if (this.exited) return;
    const gone = new Promise((resolve) => this.child.once("exit", resolve));
    try {
      // It closes its streams and exits by itself.
      await Promise.race([this.call({ op: "close" }).then(() => gone), sleep(5000)]);
    } catch {
      // already going
    }
    if (!this.exited) {
      this.child.kill("SIGTERM");
      await Promise.race([gone, sleep(2000)]);
      if (!this.exited) this.child.kill("SIGKILL");
    }
  }
}

interface ChangeResult {
  change: string;
  affected: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Control plane CPU for the push (API write, reload, translation, encoding, sending), idle rate removed. */
  pushCpuMs: number;
  /** CPU the load-generator processes spent meanwhile (receiving, ACKing), for scale. */
  loadGenCpuMs: number;
  /** The machine's 1-minute load average after the round: other work inflates convergence times. */
  loadAverage: number;
  /** xDS responses per affected sidecar in the push. */
  responsesPerProxy: number;
  missing: number;
  unaffectedPushed: number;
  rounds: Omit<ChangeResult, "change" | "rounds">[];
}

interface RunResult {
  protocol: AdsProtocol;
  proxies: number;
  clientProcesses: number;
  connectMs: number;
  /** Idle, mesh applied, no sidecar. */
  rssBeforeKib: number;
  /** Idle, one sidecar per service connected. */
  rssFirstKib: number;
  /** Idle, all connected and synced. */
  rssAfterKib: number;
  rssPeakKib: number;
  /** (after − before) / proxies: everything the sidecars cost, per sidecar. */
  kibPerProxy: number;
  /** (after − first) / (proxies − services): what one more sidecar costs. */
  marginalKibPerProxy: number;
  changes: ChangeResult[];
}

async function applyMesh(cp: ControlPlaneProcess): Promise<void> {
  const { status, body } = await cp.request("POST", "/v1/apply", benchMesh(SERVICES));
  if (status !== 200) throw new Error(`apply: ${status} ${JSON.stringify(body)}`);
}

async function put(cp: ControlPlaneProcess, path: string, resource: unknown): Promise<string> {
  const { status, body } = await cp.request("PUT", path, resource);
  if (status !== 200) throw new Error(`PUT ${path}: ${status} ${JSON.stringify(body)}`);
  // The xDS version label of the push is the store revision, which the write's resourceVersion is.
  return (body as { metadata: { resourceVersion: string } }).metadata.resourceVersion;
}

async function measureChange(
  cp: ControlPlaneProcess,
  clients: ClientProcess[],
  change: "route split" | "plugin config",
  round: number,
  proxies: number,
): Promise<Omit<ChangeResult, "change" | "rounds">> {
  // The idle CPU rate right before, to take out of the push's share.
  await sleep(300);
  const idleStart = cpuMs(cp.pid);
  const idleAt = now();
  await sleep(1000);
  const idleRate = (cpuMs(cp.pid) - idleStart) / (now() - idleAt);

  const affectedServices = change === "route split" ? null : [PLUGIN_SERVICE];
  const loadGenCpu = () => clients.reduce((sum, c) => sum + (c.child.pid ? cpuMs(c.child.pid) : 0), 0);
  const loadGenStart = loadGenCpu();
  const cpuStart = cpuMs(cp.pid);
  const t0 = now();
  const version =
    change === "route split"
      ? await put(cp, `/v1/routes/${CHANGED_SERVICE}`, splitRoute(CHANGED_SERVICE, round % 2 === 0 ? 50 : 90))
      : await put(cp, `/v1/wasmplugins/${PLUGIN_NAME}`, tagPlugin(`round-${round + 1}`));
  const timeoutMs = 30_000 + proxies * 10;
  const replies = await Promise.all(
    clients.map((c) =>
      c.call({ op: "await", version, affected: affectedServices, timeoutMs, quietMs: QUIET_MS }),
    ),
  );
  const cpuEnd = cpuMs(cp.pid);
  const loadGenEnd = loadGenCpu();
  const t1 = now();
  const latencies: number[] = [];
  let missing = 0;
  let responses = 0;
  let unaffectedPushed = 0;
  for (const reply of replies) {
    if (reply.op !== "acks") throw new Error(`unexpected reply ${reply.op}`);
    for (const at of reply.ackedAt) latencies.push(at - t0);
    missing += reply.missing;
    responses += reply.responses;
    unaffectedPushed += reply.unaffectedPushed;
  }
  latencies.sort((a, b) => a - b);
  const affected = latencies.length + missing;
  return {
    affected,
    // No sidecar ACKed: no figure, rather than 0 ms.
    p50Ms: latencies.length ? percentile(latencies, 50) : Number.NaN,
    p99Ms: latencies.length ? percentile(latencies, 99) : Number.NaN,
    maxMs: latencies.at(-1) ?? Number.NaN,
    pushCpuMs: Math.max(0, cpuEnd - cpuStart - idleRate * (t1 - t0)),
    loadGenCpuMs: loadGenEnd - loadGenStart,
    loadAverage: loadavg()[0] ?? Number.NaN,
    responsesPerProxy: affected > 0 ? responses / affected : 0,
    missing,
    unaffectedPushed,
  };
}

async function run(protocol: AdsProtocol, proxies: number): Promise<RunResult> {
  const label = `${protocol} ${proxies}`;
  // The server inherits this process's environment when it is spawned: profile it alone.
  const nodeOptions = process.env.NODE_OPTIONS;
  if (CPU_PROF) process.env.NODE_OPTIONS = `${nodeOptions ?? ""} --cpu-prof --cpu-prof-dir=${CPU_PROF}`;
  const cp = await startControlPlaneProcess().finally(() => {
    if (nodeOptions === undefined) delete process.env.NODE_OPTIONS;
    else process.env.NODE_OPTIONS = nodeOptions;
  });
  const clients: ClientProcess[] = [];
  stopAll = async () => {
    await Promise.all(clients.map((c) => c.stop()));
    await cp.stop();
  };
  try {
    await applyMesh(cp);
    await sleep(1000);
    const rssBeforeKib = await idleRssKib(cp.pid);

    const processes = Math.max(1, Math.ceil(proxies / PER_PROCESS));
    for (let i = 0; i < processes; i++) clients.push(new ClientProcess());
    const connect = async (from: number, to: number) => {
      const shares: SimulatedProxy[][] = clients.map(() => []);
      for (let i = from; i < to; i++) shares[i % processes]?.push(simulatedProxy(protocol, i, SERVICES));
      await Promise.all(
        clients.map((c, i) =>
          c.call({
            op: "connect",
            address: cp.xds,
            protocol,
            proxies: shares[i] ?? [],
            streamsPerChannel: STREAMS_PER_CHANNEL,
            timeoutMs: 60_000 + proxies * 20,
          }),
        ),
      );
    };
    // First one sidecar per service: what the mesh costs once (a snapshot per proxy class) is then
    // in rssFirstKib, and what each further sidecar costs is the difference that follows.
    const first = Math.min(SERVICES, proxies);
    let connectStart = now();
    await connect(0, first);
    let connectMs = now() - connectStart;
    await sleep(1000);
    const rssFirstKib = await idleRssKib(cp.pid);
    connectStart = now();
    await connect(first, proxies);
    connectMs += now() - connectStart;
    // Let the initial sync's garbage be collected before reading the idle figure.
    await sleep(2000);
    const rssAfterKib = await idleRssKib(cp.pid, 2000);
    console.error(
      `bench:xds ${label}: connected and synced; RSS ${rssBeforeKib} → ${rssFirstKib} (one per service) → ${rssAfterKib} KiB`,
    );

    const changes: ChangeResult[] = [];
    for (const change of ["route split", "plugin config"] as const) {
      const rounds: Omit<ChangeResult, "change" | "rounds">[] = [];
      for (let round = 0; round < ROUNDS; round++) {
        const r = await measureChange(cp, clients, change, round, proxies);
        console.error(
          `bench:xds ${label} ${change} round ${round + 1}: ${r.affected} affected, p50 ${r.p50Ms.toFixed(0)} ms, p99 ${r.p99Ms.toFixed(0)} ms, max ${r.maxMs.toFixed(0)} ms, CPU ${r.pushCpuMs.toFixed(0)} ms (load generator ${r.loadGenCpuMs.toFixed(0)} ms), load average ${r.loadAverage.toFixed(1)}${r.missing ? `, ${r.missing} MISSING` : ""}`,
        );
        rounds.push(r);
      }
      const sorted = [...rounds].sort((a, b) => a.p99Ms - b.p99Ms);
      const med = sorted[Math.floor((sorted.length - 1) / 2)] as (typeof rounds)[number];
      changes.push({ change, ...med, rounds });
    }
    const rssPeakKib = statusKib(cp.pid, "VmHWM");
    return {
      protocol,
      proxies,
      clientProcesses: processes,
      connectMs,
      rssBeforeKib,
      rssFirstKib,
      rssAfterKib,
      rssPeakKib,
      kibPerProxy: (rssAfterKib - rssBeforeKib) / proxies,
      marginalKibPerProxy: proxies > first ? (rssAfterKib - rssFirstKib) / (proxies - first) : Number.NaN,
      changes,
    };
  } finally {
    await stopAll();
    stopAll = async () => {};
  }
}

let stopAll = async () => {};
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    void stopAll().finally(() => process.exit(130));
  });
}

const fmt = (ms: number) => (Number.isFinite(ms) ? ms.toFixed(0) : "—");
const fmt1 = (n: number) => (Number.isFinite(n) ? n.toFixed(1) : "—");

function loadRange(runs: RunResult[]): string {
  const loads = runs.flatMap((r) => r.changes.flatMap((c) => c.rounds.map((round) => round.loadAverage)));
  return loads.length ? `${Math.min(...loads).toFixed(1)}–${Math.max(...loads).toFixed(1)}` : "—";
}

function markdown(runs: RunResult[], measuredAt: string): string {
  const lines = [
    "# bench:xds",
    "",
    `Measured ${measuredAt} on this machine (${process.platform}, ${availableParallelism()} CPUs, Node ${process.versions.node}).`,
    `${SERVICES} services (2 workloads and a 90/10 Route each; module code inline in ECDS, ~80 KiB per routing filter); ` +
      `${ROUNDS} rounds per change, the median round (by p99) shown.`,
    "Convergence: from just before the HTTP PUT to each affected sidecar's ACK of the new version. " +
      "Push CPU: the control plane's, for the whole write (API, store, translation, sending, ACKs), idle rate removed; " +
      "load-gen CPU: the simulated sidecars' meanwhile, on the same cores. " +
      "RSS per proxy: the control plane's idle RSS with all sidecars connected minus with one per service, " +
      "per further sidecar (in brackets: minus with none, per sidecar).",
    `Load average (1 min) after the rounds: ${loadRange(runs)} (the bench alone stays within about 1–3; ` +
      "more means other work shared the two cores and inflated the convergence times).",
    `Sidecars: ${STREAMS_PER_CHANNEL === 1 ? "one gRPC connection each" : `${STREAMS_PER_CHANNEL} ADS streams per gRPC connection`}, ` +
      `${PER_PROCESS} per load-generator process.`,
    "",
    `| protocol | proxies | change | affected | p50 ms | p99 ms | max ms | push CPU ms | load-gen CPU ms | RSS KiB/proxy | goal: p99 < ${GOAL_P99_MS} ms (≤ 1,000 proxies) | goal: < ${GOAL_KIB_PER_PROXY} KiB/proxy (≥ 1,000 proxies) |`,
    "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
  ];
  const yes = (ok: boolean) => (ok ? "yes" : "**no**");
  for (const r of runs) {
    for (const c of r.changes) {
      const latency = r.proxies > 1000 ? "—" : yes(c.p99Ms < GOAL_P99_MS && c.missing === 0);
      // Below 1,000 the sidecars' few MB are within the V8 heap's own variation.
      const memory = r.proxies < 1000 ? "—" : yes(r.marginalKibPerProxy < GOAL_KIB_PER_PROXY);
      lines.push(
        `| ${r.protocol} | ${r.proxies} | ${c.change} | ${c.affected}${c.missing ? ` (${c.missing} missing)` : ""}${c.unaffectedPushed ? ` (+${c.unaffectedPushed} unaffected pushed)` : ""} | ${fmt(c.p50Ms)} | ${fmt(c.p99Ms)} | ${fmt(c.maxMs)} | ${fmt(c.pushCpuMs)} | ${fmt(c.loadGenCpuMs)} | ${fmt1(r.marginalKibPerProxy)} (${fmt1(r.kibPerProxy)}) | ${latency} | ${memory} |`,
      );
    }
  }
  lines.push(
    "",
    "| protocol | proxies | load-generator processes | connect + sync ms | RSS KiB: no sidecar | one per service | all | peak |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  );
  for (const r of runs) {
    lines.push(
      `| ${r.protocol} | ${r.proxies} | ${r.clientProcesses} | ${fmt(r.connectMs)} | ${r.rssBeforeKib} | ${r.rssFirstKib} | ${r.rssAfterKib} | ${r.rssPeakKib} |`,
    );
  }
  lines.push("");
  return lines.join("\n");
}

if (!existsSync(RELEASE_WASM)) {
  console.error("bench:xds: build/mesh.wasm is missing; run `npm run build:filters` first");
  process.exit(1);
}
const plan: [AdsProtocol, number][] = [];
for (const n of [...new Set([...PROXIES, ...DELTA])].sort((a, b) => a - b)) {
  if (PROXIES.includes(n)) plan.push(["sotw", n]);
  if (DELTA.includes(n)) plan.push(["delta", n]);
}
const measuredAt = new Date().toISOString();
const runs: RunResult[] = [];
for (const [protocol, n] of plan) runs.push(await run(protocol, n));
const results = {
  measuredAt,
  machine: {
    platform: process.platform,
    cpus: availableParallelism(),
    node: process.versions.node,
  },
  settings: {
    services: SERVICES,
    rounds: ROUNDS,
    clientsPerProcess: PER_PROCESS,
    streamsPerChannel: STREAMS_PER_CHANNEL,
  },
  runs,
};
mkdirSync(BENCH_RESULTS_DIR, { recursive: true });
const md = markdown(runs, measuredAt);
writeFileSync(join(BENCH_RESULTS_DIR, "xds.json"), `${JSON.stringify(results, null, 2)}\n`);
writeFileSync(join(BENCH_RESULTS_DIR, "xds.md"), md);
console.log(md);
