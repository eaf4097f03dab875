// The control plane as users run it, for end-to-end tests: `wasmesh server` as a child process on
// a data directory, the `wasmesh` CLI as a child process, and Envoy sidecars started from
// `wasmesh bootstrap` output.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import https from "node:https";
import { join } from "node:path";
import { type EnvoyProcess, freePort, REPO_ROOT, startEnvoy } from "./envoy.ts";
import { removeDir, tempDir } from "./temp.ts";
import { until } from "./wait.ts";
import { useXdsToken } from "./xds-client.ts";

export const WASMESH_BIN = join(REPO_ROOT, "bin", "wasmesh.js");

/** Admin tokens of the control planes a test started, by API origin (http://127.0.0.1:port). */
const apiTokens = new Map<string, string>();

/** The admin token `wasmesh server` wrote into its data directory at first start. */
export function adminTokenOf(dataDir: string): string {
  return readFileSync(join(dataDir, "admin-token"), "utf8").trim();
}

/**
 * Makes apiFetch() (and proxyStatus, metricSum, wasmesh() with `api`) call this API with this
 * token. Returns the token.
 */
export function useToken(api: string, token: string): string {
  apiTokens.set(new URL(api).origin, token);
  return token;
}

/** An in-process control plane's API URL, its admin token registered for apiFetch(). */
export function apiOf(plane: { httpPort: number; xdsPort: number; adminTokenFile: string }): {
  api: string;
  token: string;
} {
  const api = `http://127.0.0.1:${plane.httpPort}`;
  const token = useToken(api, readFileSync(plane.adminTokenFile, "utf8").trim());
  useXdsToken(`127.0.0.1:${plane.xdsPort}`, token);
  return { api, token };
}

/** fetch() with `Authorization: Bearer <token>` (unless the call sets one). */
export function authorizedFetch(token: string): typeof fetch {
  return (input, init = {}) => {
    const headers = new Headers(init.headers);
    if (!headers.has("authorization")) headers.set("authorization", `Bearer ${token}`);
    return fetch(input, { ...init, headers });
  };
}

/** A dataplane token of `service`, issued by the API at `api` (with its registered admin token). */
export async function dataplaneToken(api: string, service: string): Promise<string> {
  const response = await apiFetch(`${api}/v1/tokens`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ role: "dataplane", service }),
  });
  if (response.status !== 201)
    throw new Error(`POST /v1/tokens: ${response.status} ${await response.text()}`);
  return ((await response.json()) as { secret: string }).secret;
}

/** fetch() with the admin token of the control plane the URL names, if a test registered one. */
export function apiFetch(url: string | URL, init: RequestInit = {}): Promise<Response> {
  const token = apiTokens.get(new URL(url).origin);
  return token === undefined ? fetch(url, init) : authorizedFetch(token)(url, init);
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `wasmesh <args>` with the Node running the tests; `input` goes to stdin. */
export function wasmesh(
  args: string[],
  options: { api?: string; token?: string; input?: string | Uint8Array } = {},
): Promise<CliResult> {
  // The token given, else the one registered for the API (useToken).
  const token = options.token ?? (options.api ? apiTokens.get(new URL(options.api).origin) : undefined);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [WASMESH_BIN, ...args], {
      env: {
        ...process.env,
        ...(options.api ? { WASMESH_API: options.api } : {}),
        ...(token ? { WASMESH_TOKEN: token } : {}),
      },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString("utf8");
    });
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString("utf8");
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
    child.stdin.end(options.input ?? "");
  });
}

/**
 * Runs a command to its end (killed after `timeout`, default 30 s). `code` is -1 when it did not
 * exit with a code (not started, or killed): never mistaken for a failure exit.
 */
export function runCommand(
  command: string,
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; timeout?: number } = {},
): Promise<CliResult> {
  return new Promise((resolve) => {
    // With options.env, a command given by name is looked up on options.env.PATH.
    execFile(command, args, { timeout: 30_000, ...options }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === "number" ? error.code : -1) : 0;
      // Not started at all (e.g. ENOENT) or killed: the reason is in the error only.
      resolve({
        code,
        stdout,
        stderr: stderr || (error && typeof error.code !== "number" ? error.message : ""),
      });
    });
  });
}

interface SocketAddress {
  address: string;
  port_value: number;
}

/** The parts of `wasmesh bootstrap` output the tests read. */
export interface Bootstrap {
  node: { id: string; cluster: string; metadata: Record<string, unknown> };
  admin: { address: { socket_address: SocketAddress } };
  dynamic_resources: { ads_config: { api_type: string } };
  static_resources: {
    clusters: {
      name: string;
      type: string;
      load_assignment: {
        endpoints: { lb_endpoints: { endpoint: { address: { socket_address: SocketAddress } } }[] }[];
      };
    }[];
  };
}

export interface ControlPlaneProcess {
  readonly dataDir: string;
  readonly httpPort: number;
  readonly xdsPort: number;
  /** http://127.0.0.1:<httpPort> */
  readonly api: string;
  /** host:port for `wasmesh bootstrap --xds`. */
  readonly xds: string;
  /** The admin token it wrote into its data directory (registered for apiFetch). */
  readonly token: string;
  readonly pid: number;
  logs(): string;
  /** GET/PUT/… against the API, JSON in and out. */
  request(method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown }>;
  /** SIGKILL: a crash, not a shutdown. Resolves once the process is gone. */
  kill(): Promise<void>;
  /** SIGTERM and wait. Idempotent. */
  stop(): Promise<void>;
}

export interface StartControlPlaneOptions {
  /**
   * Reuse a data directory (e.g. after kill()); default a new temp dir, removed by stop() (and, in
   * a test, after its file even when stop() never came: tempDir()).
   */
  dataDir?: string;
  /** Fixed ports (to restart on the same ones); default free ports. */
  httpPort?: number;
  xdsPort?: number;
  extraArgs?: string[];
  /** More environment (e.g. XDG_CONFIG_HOME, where it saves its admin token for the CLI). */
  env?: NodeJS.ProcessEnv;
}

export async function startControlPlaneProcess(
  options: StartControlPlaneOptions = {},
): Promise<ControlPlaneProcess> {
  const ownDir = options.dataDir === undefined;
  const dataDir = options.dataDir ?? tempDir("cp");
  const httpPort = options.httpPort ?? (await freePort());
  const xdsPort = options.xdsPort ?? (await freePort());
  const child: ChildProcess = spawn(
    process.execPath,
    [
      WASMESH_BIN,
      "server",
      "--data",
      dataDir,
      "--http-port",
      String(httpPort),
      "--xds-port",
      String(xdsPort),
      ...(options.extraArgs ?? []),
    ],
    { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...options.env } },
  );
  let logs = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    logs += chunk.toString("utf8");
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    logs += chunk.toString("utf8");
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  let gone = false;
  void exited.then(() => {
    gone = true;
  });

  // --tls or --tls-cert: the API answers https (which tests verify themselves; health is only polled).
  const tls = (options.extraArgs ?? []).some((arg) => arg === "--tls" || arg.startsWith("--tls-cert"));
  const api = `${tls ? "https" : "http"}://127.0.0.1:${httpPort}`;
  try {
    await until(
      () => `wasmesh server to be healthy:\n${logs}`,
      async () => {
        if (gone) throw new Error(`wasmesh server exited during startup:\n${logs}`);
        // Not listening yet: an error, so not healthy yet.
        if (tls) return (await unverifiedStatus(`${api}/healthz`).catch(() => 0)) === 200;
        return (await fetch(`${api}/healthz`).catch(() => undefined))?.ok === true;
      },
      30_000,
      50,
    );
  } catch (error) {
    child.kill("SIGKILL");
    throw error;
  }

  const token = useToken(api, adminTokenOf(dataDir));
  useXdsToken(`127.0.0.1:${xdsPort}`, token);

  const stopWith = async (signal: NodeJS.Signals) => {
    if (!gone) {
      child.kill(signal);
      await exited;
    }
  };
  let stopped = false;
  return {
    dataDir,
    httpPort,
    xdsPort,
    api,
    xds: `127.0.0.1:${xdsPort}`,
    token,
    pid: child.pid ?? -1,
    logs: () => logs,
    async request(method, path, body) {
      const response = await apiFetch(`${api}${path}`, {
        method,
        ...(body !== undefined
          ? { body: JSON.stringify(body), headers: { "content-type": "application/json" } }
          : {}),
      });
      const text = await response.text();
      return { status: response.status, body: text ? (JSON.parse(text) as unknown) : undefined };
    },
    kill: () => stopWith("SIGKILL"),
    async stop() {
      if (stopped) return;
      stopped = true;
      await stopWith("SIGTERM");
      if (ownDir) removeDir(dataDir);
    },
  };
}

/** The status of a GET over https without verifying the certificate (polling a TLS server's health). */
function unverifiedStatus(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { rejectUnauthorized: false, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on("error", reject);
  });
}

export interface SidecarOptions {
  /**
   * Its xDS server; with `api`, the sidecar's bootstrap carries a dataplane token of its service
   * issued there (dataplaneToken), as users do (`wasmesh bootstrap --token-file`).
   */
  controlPlane: { xds: string; api?: string };
  /** The token instead (null: none, for a sidecar the control plane must refuse). */
  token?: string | null;
  nodeId: string;
  service: string;
  labels?: Record<string, string>;
  /** The local app; without it the sidecar has no inbound listener. */
  appPort?: number;
  protocol?: "sotw" | "delta";
  /** `wasmesh bootstrap --ca-file`: xDS over TLS to a server started with --tls. */
  caFile?: string;
  /**
   * Extra Envoy flags. By default `--drain-time-s 2`: a changed listener (a plugin attached or
   * detached) serves connections opened before the change with its old filter chain until they
   * drain, 600 s by default; deployments shorten it the same way (see README).
   */
  envoyArgs?: string[];
}

export interface Sidecar {
  readonly envoy: EnvoyProcess;
  readonly nodeId: string;
  readonly outboundPort: number;
  readonly inboundPort: number;
  readonly bootstrap: string;
}

/** An Envoy started from `wasmesh bootstrap` output, as a user would start it. */
export async function startSidecar(options: SidecarOptions): Promise<Sidecar> {
  const outboundPort = await freePort();
  const inboundPort = await freePort();
  const adminPort = await freePort();
  const labels = Object.entries(options.labels ?? {})
    .map(([k, v]) => `${k}=${v}`)
    .join(",");
  const token =
    options.token !== undefined
      ? options.token
      : options.controlPlane.api !== undefined
        ? await dataplaneToken(options.controlPlane.api, options.service)
        : null;
  const tokenArgs: string[] = [];
  if (token !== null) {
    const file = join(tempDir("sidecar-token"), `${options.nodeId}.token`);
    writeFileSync(file, `${token}\n`, { mode: 0o600 });
    tokenArgs.push("--token-file", file);
  }
  const result = await wasmesh([
    "bootstrap",
    ...tokenArgs,
    "--node-id",
    options.nodeId,
    "--service",
    options.service,
    ...(labels ? ["--labels", labels] : []),
    "--xds",
    options.controlPlane.xds,
    "--outbound-port",
    String(outboundPort),
    "--inbound-port",
    String(inboundPort),
    ...(options.appPort !== undefined ? ["--app-port", String(options.appPort)] : []),
    "--admin-port",
    String(adminPort),
    "--xds-protocol",
    options.protocol ?? "sotw",
    ...(options.caFile !== undefined ? ["--ca-file", options.caFile] : []),
  ]);
  if (result.code !== 0) throw new Error(`wasmesh bootstrap failed (${result.code}): ${result.stderr}`);
  const envoy = await startEnvoy({
    bootstrap: result.stdout,
    name: options.nodeId,
    extraArgs: options.envoyArgs ?? ["--drain-time-s", "2"],
  });
  return { envoy, nodeId: options.nodeId, outboundPort, inboundPort, bootstrap: result.stdout };
}

export interface StatusProxy {
  nodeId: string;
  service: string;
  protocol: string;
  /** The newest control plane revision whose configuration this proxy has fully acknowledged. */
  syncedVersion?: string;
  acked: Record<string, string>;
  nacks: number;
  lastRejection?: { typeUrl: string; version: string; message: string };
}

/** GET /v1/status. */
export async function proxyStatus(api: string): Promise<StatusProxy[]> {
  const response = await apiFetch(`${api}/v1/status`);
  if (!response.ok) throw new Error(`GET /v1/status: ${response.status} ${await response.text()}`);
  return ((await response.json()) as { proxies: StatusProxy[] }).proxies;
}

/** Polls /v1/status until `check` holds for the proxies (10 ms steps); returns them. */
export async function waitForStatus(
  api: string,
  check: (proxies: StatusProxy[]) => boolean,
  timeoutMs = 20_000,
): Promise<StatusProxy[]> {
  let last: StatusProxy[] = [];
  await until(
    () => `the status condition: ${JSON.stringify(last, null, 2)}`,
    async () => {
      try {
        last = await proxyStatus(api);
      } catch {
        return false; // the control plane may be restarting
      }
      return check(last);
    },
    timeoutMs,
    10,
  );
  return last;
}

/** The current store revision, from /healthz. */
export async function revisionOf(api: string): Promise<number> {
  const response = await fetch(`${api}/healthz`);
  return ((await response.json()) as { revision: number }).revision;
}

/**
 * The sum of a metric's series on the control plane's /metrics whose labels include every one of
 * `labels` (0 when none matches).
 */
export async function metricSum(
  api: string,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const text = await (await apiFetch(`${api}/metrics`)).text();
  let total = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    total += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return total;
}
