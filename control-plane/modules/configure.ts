// Loading plugin configurations into a module, as Envoy does before it takes a filter: the check a
// write goes through before it is committed (revision/check.ts), so that a configuration the module
// refuses is a 400 at the API rather than a NACK from every sidecar. It runs in the validation
// pool's worker threads (isolate.ts), which bound its time, its JavaScript heap and its priority;
// the module runs as the memory-limited copy the smoke run uses (memory-limit.ts) under the host's
// memory ceiling. A worker keeps a few modules warm: compiled, with a VM in which each check is one
// more root context (proxy_on_context_create, proxy_on_vm_start, proxy_on_configure), shut down
// after its verdict, so a check costs the configure call, not a compile and an instantiation.
import { LogLevel, ProxyWasmHost } from "../../host/index.ts";
import { limitMemory, PAGE_BYTES } from "./memory-limit.ts";
import { memoryError, trapped } from "./validate.ts";

/**
 * The module's verdict on one configuration; `error` is what it said (or how it failed).
 * `transient`: no verdict of the module's, but of the pool (a time limit, a crash, shutting down).
 */
export type ConfigureVerdict = { ok: true } | { ok: false; error: string; transient?: true };

export interface ConfigureJob {
  /** The module's digest: what the worker keeps it warm under. */
  sha256: string;
  /** Its bytes, unless the worker has this digest warm already. */
  bytes?: Uint8Array;
  rootId: string;
  configurations: readonly string[];
  memoryLimitBytes: number;
}

export interface ConfigureResult {
  verdicts: ConfigureVerdict[];
  /** The digests the worker now keeps warm (the pool sends their bytes no more). */
  warm: string[];
}

/** Modules a worker keeps warm, least recently used out first. */
export const MAX_WARM_MODULES = 4;
/**
 * Checks one VM takes before it is replaced by a fresh one: whatever a module keeps across root
 * contexts (shared data, metrics, leaks) stays bounded, beyond the memory ceiling that holds anyway.
 */
const MAX_CHECKS_PER_VM = 1000;

interface Warm {
  module: WebAssembly.Module;
  host: ProxyWasmHost | undefined;
  checks: number;
}

/** One worker's warm modules and the checks it runs with them, one job at a time. */
export class ConfigureSession {
  readonly #warm = new Map<string, Warm>();

  async run(job: ConfigureJob): Promise<ConfigureResult> {
    const verdicts: ConfigureVerdict[] = [];
    try {
      const warm = await this.#module(job);
      for (const configuration of job.configurations) {
        verdicts.push(warm === undefined ? lost : await this.#check(warm, job, configuration));
      }
    } catch (error) {
      // The host throws only on misuse or a bug of its own; say so rather than blame the module.
      this.#warm.delete(job.sha256);
      const message = `the check failed in the host: ${error instanceof Error ? error.message : String(error)}`;
      while (verdicts.length < job.configurations.length) verdicts.push({ ok: false, error: message });
    }
    return { verdicts, warm: [...this.#warm.keys()] };
  }

  async #module(job: ConfigureJob): Promise<Warm | undefined> {
    let warm = this.#warm.get(job.sha256);
    if (warm !== undefined) {
      this.#warm.delete(job.sha256); // re-inserted last: most recently used
    } else {
      if (job.bytes === undefined) return undefined;
      // The smoke run's copy: its memory cannot grow past the ceiling, and says what it asked for.
      const limited = limitMemory(job.bytes, Math.floor(job.memoryLimitBytes / PAGE_BYTES));
      warm = { module: await WebAssembly.compile(limited.bytes), host: undefined, checks: 0 };
    }
    this.#warm.set(job.sha256, warm);
    for (const digest of this.#warm.keys()) {
      if (this.#warm.size <= MAX_WARM_MODULES) break;
      this.#warm.delete(digest);
    }
    return warm;
  }

  async #check(warm: Warm, job: ConfigureJob, configuration: string): Promise<ConfigureVerdict> {
    if (warm.host === undefined || warm.checks >= MAX_CHECKS_PER_VM) {
      warm.host = new ProxyWasmHost({
        module: warm.module,
        memoryLimitBytes: job.memoryLimitBytes,
        // A refusal says why at warn or error; nothing else is kept.
        logLevel: LogLevel.Warn,
      });
      warm.checks = 0;
    }
    const host = warm.host;
    warm.checks++;
    host.clearLogs();
    const created = await host.tryCreatePlugin({ configuration, rootId: job.rootId, name: "wasmesh-check" });
    if (created.ok) {
      created.plugin.shutdown();
      if (!host.failure) return { ok: true };
    }
    // A failed VM cannot take another check (Envoy would make a new one too).
    if (host.failure) warm.host = undefined;
    const memory = memoryError(host, job.memoryLimitBytes);
    if (memory) return { ok: false, error: memory.message };
    if (created.ok) return { ok: false, error: "the VM failed while the plugin was shut down" };
    const failure = host.failure;
    switch (created.reason) {
      case "configure":
        return { ok: false, error: created.error };
      case "vm_failed":
      case "trap":
        return { ok: false, error: failure ? trapped(failure) : created.error };
      case "vm_start":
        return { ok: false, error: `refused to start: ${created.error}` };
      case "module":
        return { ok: false, error: `could not be instantiated: ${created.error}` };
    }
  }
}

const lost: ConfigureVerdict = {
  ok: false,
  error: "the check lost the module's bytes (a bug of the control plane): try again",
};
