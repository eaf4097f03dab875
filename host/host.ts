// ProxyWasmHost: one VM of a module, its plugins, time and observability. Web-standard APIs only
// (it runs in Node and in workerd).
import { LogLevel } from "./abi.ts";
import { type Clock, systemClock } from "./clock.ts";
import { utf8 } from "./memory.ts";
import type { MetricSnapshot } from "./metrics.ts";
import { explainFailure, Plugin } from "./plugin.ts";
import { RootContext } from "./root-context.ts";
import { SharedData } from "./shared-data.ts";
import type { ForeignFunction, HostOptions, LogEntry, PluginOptions, VmFailure } from "./types.ts";
import { checkModule, DEFAULT_MEMORY_LIMIT_BYTES, type ModuleCheck, Vm } from "./vm.ts";

/** Why a plugin could not be created. */
export type PluginFailureReason =
  | "module" // the module cannot be loaded (imports, exports, instantiation)
  | "vm_failed" // the VM failed earlier (or in _initialize)
  | "vm_start" // proxy_on_vm_start returned false
  | "configure" // proxy_on_configure returned false: Envoy refuses the filter
  | "trap"; // the module trapped while starting or configuring

export type CreatePluginResult =
  | { ok: true; plugin: Plugin }
  | { ok: false; reason: PluginFailureReason; error: string; logs: LogEntry[] };

export class PluginError extends Error {
  readonly reason: PluginFailureReason;
  readonly logs: LogEntry[];

  constructor(reason: PluginFailureReason, error: string, logs: LogEntry[]) {
    super(error);
    this.name = "PluginError";
    this.reason = reason;
    this.logs = logs;
  }
}

/** Envoy's clear_route_cache: the call itself is the effect (streams count their calls). */
const clearRouteCache: ForeignFunction = () => undefined;

export class ProxyWasmHost {
  /** Everything logged by the module and the host (newest last, at most MAX_LOG_ENTRIES). */
  readonly logs: LogEntry[] = [];
  readonly sharedData: SharedData;
  readonly clock: Clock;
  readonly #options: HostOptions;
  #vm: Promise<Vm> | undefined;
  #ready: Vm | undefined;
  readonly #plugins: Plugin[] = [];

  constructor(options: HostOptions) {
    this.#options = options;
    this.sharedData = options.sharedData ?? new SharedData();
    this.clock = options.clock ?? systemClock;
  }

  /** Node helper (workers cannot compile bytes): compiles, then makes a host. */
  static async fromBytes(
    bytes: ArrayBuffer | ArrayBufferView,
    options: Omit<HostOptions, "module">,
  ): Promise<ProxyWasmHost> {
    const own =
      bytes instanceof ArrayBuffer
        ? bytes
        : new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength).slice();
    return new ProxyWasmHost({ ...options, module: await WebAssembly.compile(own) });
  }

  /** Checks a module's imports and exports without running it (the control plane's validator). */
  static check(module: WebAssembly.Module): ModuleCheck {
    return checkModule(module);
  }

  /** Set once the VM has failed (a trap): every stream of every plugin then fails closed. */
  get failure(): VmFailure | undefined {
    return this.#ready?.failure;
  }

  #instantiate(): Promise<Vm> {
    this.#vm ??= (async () => {
      const o = this.#options;
      const foreign = new Map<string, ForeignFunction>([["clear_route_cache", clearRouteCache]]);
      for (const [name, fn] of Object.entries(o.foreignFunctions ?? {})) foreign.set(name, fn);
      const vmConfiguration = o.vmConfiguration ?? "";
      const vm = await Vm.create({
        module: o.module,
        clock: this.clock,
        logLevel: o.logLevel ?? LogLevel.Info,
        logSink: o.logSink,
        logs: this.logs,
        sharedData: this.sharedData,
        vmId: o.vmId ?? "",
        vmConfiguration: typeof vmConfiguration === "string" ? utf8(vmConfiguration) : vmConfiguration,
        properties: o.properties ?? {},
        foreignFunctions: foreign,
        httpCall: o.httpCall,
        memoryLimitBytes: o.memoryLimitBytes ?? DEFAULT_MEMORY_LIMIT_BYTES,
      });
      this.#ready = vm;
      return vm;
    })();
    return this.#vm;
  }

  /** Creates a plugin, or throws a PluginError carrying the logs that explain why not. */
  async createPlugin(options: PluginOptions = {}): Promise<Plugin> {
    const result = await this.tryCreatePlugin(options);
    if (!result.ok) {
      throw new PluginError(result.reason, `plugin ${describePlugin(options)}: ${result.error}`, result.logs);
    }
    return result.plugin;
  }

  /**
   * Envoy's sequence for a new plugin in this VM: a new root context, proxy_on_context_create,
   * proxy_on_vm_start, proxy_on_configure. The VM is instantiated on first use (_initialize).
   */
  async tryCreatePlugin(options: PluginOptions = {}): Promise<CreatePluginResult> {
    let vm: Vm;
    try {
      vm = await this.#instantiate();
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      return { ok: false, reason: "module", error: message, logs: [...this.logs] };
    }
    if (vm.failure) {
      const failure = vm.failure;
      return {
        ok: false,
        reason: "vm_failed",
        error: explainFailure(failure.callback, { ok: false, failure }, []),
        logs: [...this.logs],
      };
    }
    const { result, logs } = vm.captureLogs(() => {
      const root = new RootContext(vm, vm.allocContextId(), options);
      const started = root.start();
      if (!started.ok || started.value === 0) return { root, stage: "proxy_on_vm_start", outcome: started };
      return { root, stage: "proxy_on_configure", outcome: root.configure(root.configuration) };
    });
    const { root, stage, outcome } = result;
    if (outcome.ok && outcome.value !== 0) {
      const plugin = new Plugin(vm, root);
      this.#plugins.push(plugin);
      return { ok: true, plugin };
    }
    // Envoy throws the refused plugin's VM away; here the root context goes, the VM stays.
    if (outcome.ok) root.shutdown();
    const reason: PluginFailureReason = !outcome.ok
      ? "trap"
      : stage === "proxy_on_vm_start"
        ? "vm_start"
        : "configure";
    return { ok: false, reason, error: explainFailure(stage, outcome, logs), logs };
  }

  /** Plugins not yet deleted (including those waiting to call proxy_done). */
  plugins(): Plugin[] {
    return this.#plugins.filter((p) => p.state !== "deleted");
  }

  /**
   * Moves a manual clock forward by `ms`, firing every tick that falls due on the way at its due
   * time (in order). Returns how many ticks fired. Needs a clock with advance(ms).
   */
  advanceTime(ms: number): number {
    const clock = this.clock;
    if (!clock.advance) throw new Error("advanceTime needs a clock with advance(ms), such as ManualClock");
    const target = clock.now() + BigInt(Math.round(ms * 1_000_000));
    let fired = 0;
    for (;;) {
      const due = this.#nextDue();
      if (!due || due.at > target) break;
      const now = clock.now();
      if (due.at > now) clock.advance(Number(due.at - now) / 1_000_000);
      if (due.plugin.tick()) fired++;
      if (fired > 10_000_000) throw new Error("advanceTime: runaway ticks");
    }
    const now = clock.now();
    if (target > now) clock.advance(Number(target - now) / 1_000_000);
    return fired;
  }

  /** Fires the ticks that are due now (for runtimes that wake up with setTimeout). */
  runDueTicks(): number {
    const now = this.clock.now();
    let fired = 0;
    for (const plugin of this.plugins()) {
      const at = plugin.nextTickAt();
      if (at !== undefined && at <= now && plugin.tick()) fired++;
    }
    return fired;
  }

  /** Milliseconds until the next tick of any plugin is due, or undefined when none is scheduled. */
  nextTickDelayMs(): number | undefined {
    let best: number | undefined;
    for (const plugin of this.plugins()) {
      const delay = plugin.nextTickDelayMs();
      if (delay !== undefined && (best === undefined || delay < best)) best = delay;
    }
    return best;
  }

  #nextDue(): { plugin: Plugin; at: bigint } | undefined {
    let best: { plugin: Plugin; at: bigint } | undefined;
    for (const plugin of this.plugins()) {
      const at = plugin.nextTickAt();
      if (at !== undefined && (!best || at < best.at)) best = { plugin, at };
    }
    return best;
  }

  /** All metrics of the stats store (shared with the hosts sharing this SharedData). */
  metrics(): MetricSnapshot[] {
    return this.sharedData.metrics.snapshot();
  }

  /** A counter's or gauge's value, or undefined when no module defined it. */
  metric(name: string): number | undefined {
    return this.sharedData.metrics.value(name);
  }

  prometheus(): string {
    return this.sharedData.metrics.prometheus();
  }

  /** Size of the VM's linear memory in bytes (0 before the first plugin instantiated it). */
  memoryBytes(): number {
    return this.#ready?.memoryBytes() ?? 0;
  }

  /**
   * The value of a global the module exports (undefined before the VM is instantiated, or without
   * one of that name): for tools that instrument modules, like the control plane's validation.
   */
  exportedGlobal(name: string): unknown {
    return this.#ready?.global(name);
  }

  /** Resolves once every outstanding proxy_http_call has been answered to the module. */
  async settle(): Promise<void> {
    await this.#ready?.settle();
  }

  clearLogs(): void {
    this.logs.length = 0;
  }
}

function describePlugin(options: PluginOptions): string {
  return JSON.stringify(options.name ?? options.rootId ?? "");
}
