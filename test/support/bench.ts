// What the benchmarks (test/bench/*.bench.ts) share: statistics, a process's CPU and memory from
// /proc, wrk as the load generator, cheap loopback origins, and the traffic policy they measure.
import { execFile, execFileSync, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import type { FilterConfig } from "../../schema/filter-config.ts";
import {
  type EnvoyProcess,
  freePort,
  httpListener,
  REPO_ROOT,
  startEnvoy,
  staticBootstrap,
} from "./envoy.ts";

export { percentile } from "./load.ts";

export const BENCH_RESULTS_DIR = join(REPO_ROOT, "bench-results");

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

const CLK_TCK = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;

/** CPU ms (user + system, all threads) a process has used so far, from /proc/<pid>/stat (Linux). */
export function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK;
}

/** A field of /proc/<pid>/status in KiB (VmRSS, VmHWM). */
export function statusKib(pid: number, field: string): number {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  if (!match) throw new Error(`no ${field} in /proc/${pid}/status`);
  return Number(match[1]);
}

/** The policy the benchmarks measure: the tester header → v2, otherwise 90/10, a breaker per cluster. */
export const BENCH_MESH_CONFIG = {
  routes: [
    {
      name: "testers",
      match: { headers: [{ name: "x-user", exact: "tester" }] },
      destinations: [{ cluster: "v2" }],
    },
    {
      name: "canary",
      destinations: [
        { cluster: "v1", weight: 90 },
        { cluster: "v2", weight: 10 },
      ],
    },
  ],
  breakers: [
    { cluster: "v1", consecutiveErrors: 5, intervalMs: 10_000, baseEjectionMs: 30_000 },
    { cluster: "v2", consecutiveErrors: 5, intervalMs: 10_000, baseEjectionMs: 30_000 },
  ],
} satisfies FilterConfig;

/** The same with header rules, so the chain runs all three stages, as a mesh would run it. */
export const BENCH_FULL_CHAIN_CONFIG = {
  headerRules: [
    { name: "deny-admin", match: { path: { prefix: "/admin" } }, deny: {} },
    {
      name: "tag",
      match: { headers: [{ name: "user-agent", regex: ".*Mobile.*" }] },
      requestHeaders: { set: [{ name: "x-client-class", value: "mobile" }] },
    },
  ],
  ...BENCH_MESH_CONFIG,
} satisfies FilterConfig;

/**
 * Origins that cost as little as possible: one Envoy answering directly on two ports (v1, v2), a
 * separate process so that its CPU is not the load generator's or the measured process's.
 */
export async function startDirectOrigins(): Promise<{ envoy: EnvoyProcess; v1: number; v2: number }> {
  const v1 = await freePort();
  const v2 = await freePort();
  const listener = (name: string, port: number) =>
    httpListener({
      name,
      port,
      routeConfig: {
        virtual_hosts: [
          {
            name,
            domains: ["*"],
            routes: [
              { match: { prefix: "/" }, direct_response: { status: 200, body: { inline_string: name } } },
            ],
            response_headers_to_add: [{ header: { key: "x-upstream", value: name } }],
          },
        ],
      },
    });
  const envoy = await startEnvoy({
    name: "bench-origins",
    concurrency: 1,
    logLevel: "warning",
    bootstrap: staticBootstrap({
      adminPort: await freePort(),
      listeners: [listener("v1", v1), listener("v2", v2)],
      clusters: [],
    }),
  });
  return { envoy, v1, v2 };
}

/** What test/bench/wrk-mix.lua prints at the end of a wrk run. */
export interface WrkResult {
  requests: number;
  durationUs: number;
  p50Us: number;
  p99Us: number;
  errors: number;
  non2xx: number;
}

/** wrk on PATH, installed from Debian's packages when missing and this process may. */
export function wrkBinary(bench: string): string {
  const found = spawnSync("sh", ["-c", "command -v wrk"], { encoding: "utf8" }).stdout.trim();
  if (found) return found;
  if (process.getuid?.() === 0) {
    console.error(`${bench}: installing wrk (Debian package) for the load generator`);
    execFileSync("apt-get", ["install", "-y", "-qq", "wrk"], { stdio: "inherit" });
    return "wrk";
  }
  throw new Error(`${bench} needs wrk on PATH (apt-get install wrk)`);
}

/**
 * wrk with the benchmarks' request mix (1 in 10 from the tester, Host: reviews) against a loopback
 * port: bounded by time and connections. Asynchronous, so this process keeps draining the pipes of
 * the processes it started while wrk runs.
 */
export async function runWrk(
  wrk: string,
  port: number,
  options: { seconds: number; connections: number },
): Promise<WrkResult> {
  const script = join(REPO_ROOT, "test", "bench", "wrk-mix.lua");
  const { stdout } = await promisify(execFile)(
    wrk,
    ["-t1", `-c${options.connections}`, `-d${options.seconds}s`, "-s", script, `http://127.0.0.1:${port}/`],
    { encoding: "utf8" },
  );
  const line = stdout.split("\n").find((l) => l.startsWith("{"));
  if (!line) throw new Error(`wrk printed no result:\n${stdout}`);
  return JSON.parse(line) as WrkResult;
}
