// The data-plane agent as users run it, for end-to-end tests: `wasmesh dataplane run` as a child
// process of the real bin, its output, its readiness endpoint, the Envoy it runs, and signals.
// Every agent started here is killed when the test process exits (its Envoy follows: the agent's
// watchdog stops it).
import { type ChildProcess, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { WASMESH_BIN } from "./control-plane.ts";
import { findEnvoy, parseStats, type ServerInfo, statsPath } from "./envoy.ts";
import { tempDir } from "./temp.ts";
import { until } from "./wait.ts";

export interface AgentPorts {
  inbound: number;
  outbound: number;
  admin: number;
  ready: number;
}

export interface AgentProcess {
  readonly pid: number;
  /** The working directory it was started in (the default --data is under it). */
  readonly cwd: string;
  stdout(): string;
  stderr(): string;
  /** The ports from its first line (what it picked and what it was given). */
  ports(): Promise<AgentPorts>;
  /** The pids of the Envoys it started, in order ("Envoy started (pid N)" / "started again"). */
  envoyPids(): number[];
  /** GET on its Envoy's admin (the admin port it printed): status and text. */
  envoyAdmin(path: string): Promise<{ status: number; text: string }>;
  /** Its Envoy's counters and gauges; filter is Envoy's regex filter. */
  envoyStats(filter?: string): Promise<Map<string, number>>;
  /** Its Envoy's /server_info. */
  serverInfo(): Promise<ServerInfo>;
  /** GET /ready: status and text; status 0 when nothing answers. */
  ready(): Promise<{ status: number; text: string }>;
  waitReady(timeoutMs?: number): Promise<void>;
  /** Waits for a line of its stdout that matches. */
  waitForOutput(pattern: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
  signal(signal: NodeJS.Signals): void;
  /** False once it has exited. */
  readonly running: boolean;
  /** Resolves when it has exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM and wait (SIGKILL after 30 s). Idempotent. */
  stop(): Promise<void>;
}

export interface StartAgentOptions {
  /** `dataplane run` flags after `run`. */
  args: string[];
  /**
   * The agent's token (a dataplane token of its service, dataplaneToken()), written to a file in
   * its working directory and passed as --token-file, as users do. Without it, no token is given.
   */
  token?: string;
  /** Envoy's flags (after `--`); default --concurrency 1 and warnings only, to spare the two cores. */
  envoyArgs?: string[];
  /** The API the agent uses when no --cp is given ($WASMESH_API). */
  api?: string;
  /** Puts .tools' Envoy first on PATH, so that the agent finds `envoy` without --envoy. Default true. */
  envoyOnPath?: boolean;
  /** The working directory; default a new temp dir. */
  cwd?: string;
}

const live = new Set<ChildProcess>();
let hooked = false;

export function startAgentProcess(options: StartAgentOptions): AgentProcess {
  if (!hooked) {
    hooked = true;
    process.on("exit", () => {
      for (const child of live) child.kill("SIGKILL");
    });
  }
  const cwd = options.cwd ?? tempDir("dataplane");
  const env: NodeJS.ProcessEnv = { ...process.env };
  if (options.api !== undefined) env.WASMESH_API = options.api;
  else delete env.WASMESH_API;
  if (options.envoyOnPath ?? true) env.PATH = `${dirname(findEnvoy())}:${env.PATH ?? ""}`;
  const envoyArgs = options.envoyArgs ?? ["--concurrency", "1", "--log-level", "warning"];
  delete env.WASMESH_TOKEN;
  const tokenArgs: string[] = [];
  if (options.token !== undefined) {
    const file = join(cwd, `agent-${live.size}-${Date.now()}.token`);
    writeFileSync(file, `${options.token}\n`, { mode: 0o600 });
    tokenArgs.push("--token-file", file);
  }
  const child = spawn(
    process.execPath,
    [
      WASMESH_BIN,
      "dataplane",
      "run",
      ...tokenArgs,
      ...options.args,
      ...(envoyArgs.length > 0 ? ["--", ...envoyArgs] : []),
    ],
    { cwd, env, stdio: ["ignore", "pipe", "pipe"] },
  );
  live.add(child);
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    stdout += chunk.toString("utf8");
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr += chunk.toString("utf8");
  });
  let gone = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once("close", (code, signal) => {
      gone = true;
      live.delete(child);
      resolve({ code, signal });
    });
  });

  const waitForOutput = async (pattern: RegExp, timeoutMs = 30_000) => {
    let match: RegExpExecArray | null = null;
    await until(
      () =>
        `agent output matching ${pattern}\n--- stdout ---\n${stdout}\n--- stderr (tail) ---\n${stderr.slice(-4000)}`,
      () => {
        match = pattern.exec(stdout);
        if (match) return true;
        if (gone)
          throw new Error(
            `the agent exited\n--- stdout ---\n${stdout}\n--- stderr ---\n${stderr.slice(-4000)}`,
          );
        return false;
      },
      timeoutMs,
      25,
    );
    return match as unknown as RegExpExecArray;
  };
  const ports = async (): Promise<AgentPorts> => {
    const [, inbound, outbound, admin, ready] = await waitForOutput(
      /^ports: inbound (\d+), outbound (\d+), admin (\d+), ready (\d+)/m,
    );
    return {
      inbound: Number(inbound),
      outbound: Number(outbound),
      admin: Number(admin),
      ready: Number(ready),
    };
  };
  const ready = async () => {
    const { ready: port } = await ports();
    try {
      const response = await fetch(`http://127.0.0.1:${port}/ready`);
      return { status: response.status, text: await response.text() };
    } catch {
      return { status: 0, text: "" };
    }
  };
  const envoyAdmin = async (path: string) => {
    const { admin } = await ports();
    const response = await fetch(`http://127.0.0.1:${admin}${path}`);
    return { status: response.status, text: await response.text() };
  };
  const envoyAdminOk = async (path: string) => {
    const response = await envoyAdmin(path);
    if (response.status !== 200)
      throw new Error(`Envoy admin GET ${path}: ${response.status} ${response.text}`);
    return response.text;
  };
  let stopping: Promise<void> | undefined;
  return {
    pid: child.pid ?? -1,
    cwd,
    stdout: () => stdout,
    stderr: () => stderr,
    ports,
    envoyPids: () => [...stdout.matchAll(/Envoy started (?:again )?\(pid (\d+)\)/g)].map((m) => Number(m[1])),
    envoyAdmin,
    envoyStats: async (filter) => parseStats(await envoyAdminOk(statsPath(filter))),
    serverInfo: async () => JSON.parse(await envoyAdminOk("/server_info")) as ServerInfo,
    ready,
    async waitReady(timeoutMs = 60_000) {
      let last = { status: 0, text: "" };
      await until(
        () =>
          `the agent's /ready to answer 200 (last: ${last.status} ${last.text.trim()})\n--- stdout ---\n${stdout}\n--- stderr (tail) ---\n${stderr.slice(-4000)}`,
        async () => {
          if (gone)
            throw new Error(
              `the agent exited\n--- stdout ---\n${stdout}\n--- stderr ---\n${stderr.slice(-4000)}`,
            );
          last = await ready();
          return last.status === 200;
        },
        timeoutMs,
        50,
      );
    },
    waitForOutput,
    signal: (signal) => {
      if (!gone) child.kill(signal);
    },
    get running() {
      return !gone;
    },
    exited,
    stop() {
      stopping ??= (async () => {
        if (gone) return;
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
        await exited;
        clearTimeout(timer);
      })();
      return stopping;
    },
  };
}

/** Whether a process is alive (signal 0). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
