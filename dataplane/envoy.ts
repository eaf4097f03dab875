// The agent's Envoy: started on the agent's bootstrap, watched, restarted with back-off when it
// dies, drained and stopped on shutdown. A first start that fails (no binary, a bootstrap Envoy
// refuses, an admin port in use) is an error for the user, not a reason to try again.
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { envoyFlags } from "../control-plane/envoy/bootstrap.ts";
import { statValues } from "./admin-stats.ts";
import { failureOf, httpRequest } from "./http.ts";

/** Envoy could not start at all: what the user must fix, with Envoy's own words. */
export class EnvoyStartError extends Error {
  override name = "EnvoyStartError";
}

export interface EnvoyOptions {
  /** The Envoy binary (a path, or a name looked up on PATH). */
  bin: string;
  bootstrapPath: string;
  /** Envoy's working directory (the agent's data directory: modules/ is relative to it). */
  cwd: string;
  adminPort: number;
  drainSeconds: number;
  /** More Envoy flags (after the agent's own). */
  extraArgs: readonly string[];
  /** The agent's own log lines. */
  log: (line: string) => void;
  /** Envoy's stdout and stderr, as they come. */
  output: (chunk: Buffer) => void;
  /** After a restarted Envoy opened its admin interface. */
  onRestart?: () => void;
  /** Restart back-off: from minMs doubling to maxMs, back to minMs after a run of resetAfterMs. */
  backoff?: { minMs: number; maxMs: number; resetAfterMs: number };
  /** How long a start may take to open the admin interface (default 60 s). */
  startTimeoutMs?: number;
}

const DEFAULT_BACKOFF = { minMs: 200, maxMs: 10_000, resetAfterMs: 30_000 };
/** What Envoy said last, kept for the message of a failed start. */
const TAIL_BYTES = 16 * 1024;

type Launch = { ok: true } | { ok: false; message: string };

export class Envoy {
  private readonly options: EnvoyOptions;
  private readonly adminAddressPath: string;
  private child: ChildProcess | undefined;
  private watchdog: ChildProcess | undefined;
  /** Resolves when the current process is gone. */
  private gone: Promise<void> = Promise.resolve();
  private adminUp = false;
  private stopping = false;
  /** Shutting down: an Envoy that dies now stays down. */
  private noRestart = false;
  private restartTimer: NodeJS.Timeout | undefined;
  private delayMs: number;
  private restarts = 0;

  constructor(options: EnvoyOptions) {
    this.options = options;
    this.adminAddressPath = join(options.cwd, "envoy-admin-address");
    this.delayMs = this.backoff.minMs;
  }

  private get backoff() {
    return this.options.backoff ?? DEFAULT_BACKOFF;
  }

  /** The running Envoy's pid; undefined while it is down. */
  get pid(): number | undefined {
    return this.adminUp ? this.child?.pid : undefined;
  }

  /** How many times Envoy was started again after it died. */
  get restartCount(): number {
    return this.restarts;
  }

  /** Starts Envoy; resolves once its admin interface is up. A start that fails is an EnvoyStartError. */
  async start(): Promise<void> {
    const outcome = await this.launch();
    if (!outcome.ok) throw new EnvoyStartError(outcome.message);
  }

  /** From now on, an Envoy that dies is not started again (the agent is shutting down). */
  stopRestarting(): void {
    this.noRestart = true;
    clearTimeout(this.restartTimer);
  }

  /** Envoy's admin /ready: LIVE once its first configuration is in place. */
  async live(): Promise<{ live: boolean; state: string }> {
    if (!this.adminUp) return { live: false, state: "Envoy is not running" };
    try {
      const response = await this.admin("/ready", "GET", 1_000);
      return { live: response.status === 200, state: `Envoy is ${response.text.trim() || response.status}` };
    } catch (error) {
      return { live: false, state: `Envoy's admin does not answer (${(error as Error).message})` };
    }
  }

  /**
   * Envoy's graceful drain: its listeners tell clients to close their connections (HTTP/1
   * `Connection: close`, HTTP/2 GOAWAY) for the drain time; this waits (at most the drain time and
   * a second) until no connection is left, then stops Envoy. No restart after this.
   */
  async drainAndStop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    if (this.adminUp) {
      const { log, drainSeconds } = this.options;
      try {
        const response = await this.admin("/drain_listeners?graceful", "POST", 2_000);
        if (response.status !== 200) log(`Envoy refused to drain: ${failureOf(response)}`);
        const deadline = Date.now() + drainSeconds * 1000 + 1_000;
        let open = await this.openConnections();
        while (open > 0 && Date.now() < deadline && this.adminUp) {
          await new Promise((resolve) => setTimeout(resolve, 100));
          open = await this.openConnections();
        }
        log(open > 0 ? `stopping Envoy with ${open} connection(s) still open` : "Envoy drained");
      } catch (error) {
        log(`draining Envoy: ${(error as Error).message}`);
      }
    }
    await this.stop();
  }

  /** Stops Envoy now (SIGTERM, SIGKILL after 5 s) and does not restart it. */
  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const killer = setTimeout(() => child.kill("SIGKILL"), 5_000);
      await this.gone;
      clearTimeout(killer);
    }
    this.stopWatchdog();
  }

  private admin(path: string, method: string, timeoutMs: number) {
    return httpRequest(`http://127.0.0.1:${this.options.adminPort}${path}`, { method, timeoutMs });
  }

  /** Downstream connections open on Envoy's listeners (the admin's own left out). */
  private async openConnections(): Promise<number> {
    const response = await this.admin(
      `/stats?format=json&filter=${encodeURIComponent("^listener\\..*downstream_cx_active$")}`,
      "GET",
      2_000,
    );
    return [...statValues(response.text)]
      .filter(([name]) => name.startsWith("listener.") && !name.startsWith("listener.admin."))
      .filter(([name]) => !/\.worker_\d+\./.test(name)) // per-worker copies of the same count
      .reduce((sum, [, value]) => sum + value, 0);
  }

  /** One Envoy process, until its admin interface is up (ok) or it failed to get there. */
  private launch(): Promise<Launch> {
    const { bin, bootstrapPath, cwd, drainSeconds, extraArgs, output } = this.options;
    rmSync(this.adminAddressPath, { force: true });
    const args = [
      "-c",
      bootstrapPath,
      ...envoyFlags(drainSeconds),
      // Written once the admin listener is bound: the sign that Envoy took its bootstrap.
      "--admin-address-path",
      this.adminAddressPath,
      ...extraArgs,
    ];
    let tail = Buffer.alloc(0);
    // A process group of its own: Ctrl-C in a terminal (SIGINT to the whole foreground group) or a
    // signal to the agent's group must reach the agent only, which then drains Envoy in order.
    const child = spawn(bin, args, { cwd, stdio: ["ignore", "pipe", "pipe"], detached: true });
    this.child = child;
    this.adminUp = false;
    const startedAt = Date.now();
    const onData = (chunk: Buffer) => {
      output(chunk);
      tail = Buffer.concat([tail, chunk]);
      if (tail.length > TAIL_BYTES) tail = tail.subarray(tail.length - TAIL_BYTES);
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);

    return new Promise<Launch>((resolve) => {
      let settled = false;
      const settle = (launch: Launch) => {
        if (settled) return;
        settled = true;
        clearInterval(poll);
        clearTimeout(timeout);
        resolve(launch);
      };
      this.gone = new Promise<void>((resolveGone) => {
        child.once("error", (error: NodeJS.ErrnoException) => {
          settle({ ok: false, message: `cannot run Envoy '${bin}' (--envoy): ${error.message}` });
          resolveGone();
        });
        // "close", not "exit": it comes after Envoy's last words on stdout and stderr.
        child.once("close", (code, signal) => {
          const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
          const wasUp = this.adminUp;
          this.adminUp = false;
          this.stopWatchdog();
          resolveGone();
          if (!settled) {
            settle({ ok: false, message: `Envoy ${how} before it started:\n${reasonOf(tail)}` });
          } else if (wasUp && this.noRestart && !this.stopping) {
            this.options.log(`Envoy (pid ${child.pid}) ${how} during the shutdown`);
          } else if (wasUp && !this.stopping) {
            this.restartLater(`Envoy (pid ${child.pid}) ${how}`, Date.now() - startedAt);
          }
        });
      });
      const poll = setInterval(() => {
        let address = "";
        try {
          address = readFileSync(this.adminAddressPath, "utf8");
        } catch {
          return; // not yet
        }
        if (!address.trim()) return;
        this.adminUp = true;
        if (child.pid !== undefined) this.startWatchdog(child.pid);
        settle({ ok: true });
      }, 50);
      const timeout = setTimeout(() => {
        child.kill("SIGKILL");
        settle({
          ok: false,
          message: `Envoy did not open its admin interface within ${(this.options.startTimeoutMs ?? 60_000) / 1000} s:\n${reasonOf(tail)}`,
        });
      }, this.options.startTimeoutMs ?? 60_000);
    });
  }

  private restartLater(why: string, ranMs: number): void {
    const { minMs, maxMs, resetAfterMs } = this.backoff;
    if (ranMs >= resetAfterMs) this.delayMs = minMs;
    const delay = this.delayMs;
    this.delayMs = Math.min(maxMs, this.delayMs * 2);
    this.options.log(`${why}; starting it again in ${(delay / 1000).toFixed(1)} s`);
    this.restartTimer = setTimeout(async () => {
      if (this.stopping || this.noRestart) return;
      this.restarts++;
      const outcome = await this.launch();
      if (this.stopping) {
        if (outcome.ok) await this.stop();
        return;
      }
      if (outcome.ok) {
        this.options.log(`Envoy started again (pid ${this.child?.pid})`);
        this.options.onRestart?.();
      } else {
        this.restartLater(outcome.message, 0);
      }
    }, delay);
  }

  /**
   * Node cannot ask the kernel to end a child with its parent, so a small shell does: when the
   * agent is gone (killed with SIGKILL, crashed), it stops Envoy, which would otherwise go on
   * serving a configuration nobody updates and hold the sidecar's ports.
   */
  private startWatchdog(envoyPid: number): void {
    this.stopWatchdog();
    if (process.platform === "win32") return;
    const script =
      'while kill -0 "$1" 2>/dev/null && kill -0 "$2" 2>/dev/null; do sleep 1; done; kill -TERM "$2" 2>/dev/null; exit 0';
    try {
      const watchdog = spawn(
        "/bin/sh",
        ["-c", script, "wasmesh-dataplane-watchdog", String(process.pid), String(envoyPid)],
        // Out of the agent's process group too, so that a signal to the group leaves it watching.
        { stdio: "ignore", detached: true },
      );
      watchdog.on("error", () => {});
      watchdog.unref();
      this.watchdog = watchdog;
    } catch {
      // No shell: Envoy then outlives an agent that is killed, as it would without the watchdog.
    }
  }

  private stopWatchdog(): void {
    const watchdog = this.watchdog;
    this.watchdog = undefined;
    if (watchdog && watchdog.exitCode === null && watchdog.signalCode === null) watchdog.kill("SIGKILL");
  }
}

/** Envoy's reason for giving up: its critical and error lines, else the last lines it wrote. */
function reasonOf(tail: Buffer): string {
  const lines = tail
    .toString("utf8")
    .split("\n")
    .filter((line) => line.trim() !== "");
  const errors = lines.filter((line) => /\]\[(?:critical|error)\]/.test(line));
  const picked = (errors.length > 0 ? errors : lines).slice(-10);
  return picked.length > 0 ? picked.map((line) => `  ${line}`).join("\n") : "  (Envoy wrote nothing)";
}
