// One instance of a module (Envoy: one VM per worker thread): its contexts, the current and
// effective context of a host call, deferred actions, failure, and the per-VM metric ids.
import {
  ABI_VERSION_EXPORTS,
  type AbiVersion,
  LOG_LEVEL_NAMES,
  LogLevel,
  type MetricType,
  Status,
} from "./abi.ts";
import type { Clock } from "./clock.ts";
import { VmContext } from "./context.ts";
import { buildImports, checkImports } from "./imports/index.ts";
import type { AbiContext, AbiVm, ContextVm, InvokeResult } from "./interfaces.ts";
import { WasmMemory } from "./memory.ts";
import type { MetricStore } from "./metrics.ts";
import type { PropertyTree } from "./properties.ts";
import type { SharedData } from "./shared-data.ts";
import type { ForeignFunction, HttpCallHandler, LogEntry, LogSink, VmFailure } from "./types.ts";

type ExportedFunction = (...args: (number | bigint)[]) => unknown;

export interface ModuleCheck {
  ok: boolean;
  abiVersion?: AbiVersion;
  /** Why the module cannot run in a Proxy-Wasm host. */
  errors: string[];
  /** Imports this host lacks (env.proxy_*, WASI): they answer "not implemented" if ever called. */
  stubbed: string[];
}

/** Checks a module's imports and exports without instantiating it. */
export function checkModule(module: WebAssembly.Module): ModuleCheck {
  const { errors, stubbed } = checkImports(WebAssembly.Module.imports(module));
  const exports = new Map(WebAssembly.Module.exports(module).map((e) => [e.name, e.kind]));
  const abiVersion = Object.entries(ABI_VERSION_EXPORTS).find(
    ([name]) => exports.get(name) === "function",
  )?.[1];
  if (!abiVersion) {
    errors.push("missing or unknown Proxy-Wasm ABI version: the module must export proxy_abi_version_0_2_1");
  }
  if (exports.get("memory") !== "memory") errors.push('the module must export its memory as "memory"');
  if (exports.get("malloc") !== "function" && exports.get("proxy_on_memory_allocate") !== "function") {
    errors.push("the module is missing its allocator: export proxy_on_memory_allocate(size) -> ptr");
  }
  return { ok: errors.length === 0, ...(abiVersion ? { abiVersion } : {}), errors, stubbed };
}

/** The module cannot be loaded (bad imports or exports, or instantiation failed). */
export class ModuleError extends Error {
  readonly errors: string[];

  constructor(errors: string[]) {
    super(`invalid Proxy-Wasm module: ${errors.join("; ")}`);
    this.name = "ModuleError";
    this.errors = errors;
  }
}

export interface VmConfig {
  module: WebAssembly.Module;
  clock: Clock;
  logLevel: LogLevel;
  logSink: LogSink | undefined;
  logs: LogEntry[];
  sharedData: SharedData;
  vmId: string;
  vmConfiguration: Uint8Array;
  properties: PropertyTree;
  foreignFunctions: Map<string, ForeignFunction>;
  httpCall: HttpCallHandler | undefined;
  memoryLimitBytes: number;
}

/**
 * The default ceiling of a module's linear memory: Envoy runs a VM per worker thread and module,
 * and a workerd isolate has 128 MB in all, so a filter needing more could not run at the edge.
 */
export const DEFAULT_MEMORY_LIMIT_BYTES = 128 * 1024 * 1024;

/** Logs kept in memory per host; older entries are dropped beyond this. */
export const MAX_LOG_ENTRIES = 10_000;

export class Vm implements AbiVm, ContextVm {
  readonly abiVersion: AbiVersion;
  readonly clock: Clock;
  readonly logLevel: LogLevel;
  readonly sharedData: SharedData;
  readonly metrics: MetricStore;
  readonly vmId: string;
  readonly vmConfiguration: Uint8Array;
  readonly properties: PropertyTree;
  readonly foreignFunctions: Map<string, ForeignFunction>;
  readonly httpCallHandler: HttpCallHandler | undefined;
  readonly memoryLimitBytes: number;
  readonly contexts = new Map<number, AbiContext>();
  failure: VmFailure | undefined;
  /** Set by proxy_send_local_response: the running callback's result becomes "stop". */
  stopNextIteration = false;

  private readonly logs: LogEntry[];
  private readonly logSink: LogSink | undefined;
  private readonly collectors = new Set<LogEntry[]>();
  private readonly vmContext: VmContext;
  private exports: Record<string, ExportedFunction> = {};
  private globals: Record<string, WebAssembly.Global> = {};
  private memoryAccess: WasmMemory | undefined;
  private memoryObject: WebAssembly.Memory | undefined;
  /** The memory's buffer and size as last seen, for the check after every callback. */
  private seenBuffer: ArrayBufferLike = new ArrayBuffer(0);
  private seenBytes = 0;
  private sharedMemory = false;
  private nextContextId = 1;
  private current: AbiContext | null = null;
  private effectiveId = 0;
  private running = false;
  private deferred: (() => void)[] = [];
  private lastModuleError: string | undefined;
  private readonly metricIds = new Map<number, { type: MetricType; name: string }>();
  private readonly metricIdsByKey = new Map<string, number>();
  /** Envoy encodes the metric type in the id's two low bits and steps ids by 4. */
  private readonly lastMetricId = [0, 1, 2];
  private nextHttpCall = 1;
  private readonly pending = new Set<Promise<void>>();
  private readonly warnedStubs = new Set<string>();

  private constructor(config: VmConfig, abiVersion: AbiVersion) {
    this.abiVersion = abiVersion;
    this.clock = config.clock;
    this.logLevel = config.logLevel;
    this.logSink = config.logSink;
    this.logs = config.logs;
    this.sharedData = config.sharedData;
    this.metrics = config.sharedData.metrics;
    this.vmId = config.vmId;
    this.vmConfiguration = config.vmConfiguration;
    this.properties = config.properties;
    this.foreignFunctions = config.foreignFunctions;
    this.httpCallHandler = config.httpCall;
    this.memoryLimitBytes = config.memoryLimitBytes;
    this.vmContext = new VmContext(this, 0);
  }

  /** Checks, instantiates and initializes (_initialize, else _start) the module. */
  static async create(config: VmConfig): Promise<Vm> {
    const check = checkModule(config.module);
    if (!check.ok || !check.abiVersion) throw new ModuleError(check.errors);
    const vm = new Vm(config, check.abiVersion);
    let instance: WebAssembly.Instance;
    try {
      instance = await WebAssembly.instantiate(
        config.module,
        buildImports(vm, WebAssembly.Module.imports(config.module)),
      );
    } catch (error) {
      throw new ModuleError([`instantiation failed: ${describe(error)}`]);
    }
    vm.attach(instance);
    const initial = vm.memoryBytes();
    if (initial > vm.memoryLimitBytes) {
      throw new ModuleError([
        `its memory starts at ${mib(initial)}, more than the limit of ${mib(vm.memoryLimitBytes)}`,
      ]);
    }
    vm.initialize();
    return vm;
  }

  private attach(instance: WebAssembly.Instance): void {
    for (const [name, value] of Object.entries(instance.exports)) {
      if (typeof value === "function") this.exports[name] = value as ExportedFunction;
      else if (value instanceof WebAssembly.Global) this.globals[name] = value;
    }
    const memory = instance.exports.memory as WebAssembly.Memory;
    this.memoryObject = memory;
    this.sharedMemory = !(memory.buffer instanceof ArrayBuffer);
    const allocate = this.exports.malloc ?? (this.exports.proxy_on_memory_allocate as ExportedFunction);
    this.memoryAccess = new WasmMemory(memory, (size) => {
      // Envoy's SaveRestoreContext: the allocator runs without an effective context.
      const saved = this.effectiveId;
      this.effectiveId = 0;
      try {
        return toU32(allocate(size));
      } finally {
        this.effectiveId = saved;
      }
    });
  }

  private initialize(): void {
    if (this.exports._initialize) {
      const result = this.invoke(this.vmContext, "_initialize", []);
      if (!result.ok) return;
      // Like Envoy, a reactor may also export main (C/C++, Go) to finish its set-up.
      if (this.exports.main) this.invoke(this.vmContext, "main", [0, 0]);
      else if (this.exports.__main_void) this.invoke(this.vmContext, "__main_void", []);
    } else if (this.exports._start) {
      this.invoke(this.vmContext, "_start", []);
    }
  }

  get memory(): WasmMemory {
    return this.memoryAccess as WasmMemory;
  }

  memoryBytes(): number {
    return this.memoryAccess?.byteLength() ?? 0;
  }

  /**
   * memoryBytes() for the check after each callback. Growing a non-shared memory detaches its old
   * buffer (length 0), so while the buffer last seen keeps its length nothing grew, and the
   * memory.buffer getter (a call into the runtime) is skipped; a shared one is always asked.
   */
  private grownMemoryBytes(): number {
    const seen = this.seenBuffer;
    if (seen.byteLength === this.seenBytes && this.seenBytes > 0 && !this.sharedMemory) {
      return this.seenBytes;
    }
    const buffer = this.memoryObject?.buffer;
    if (!buffer) return 0;
    this.seenBuffer = buffer;
    this.seenBytes = buffer.byteLength;
    return this.seenBytes;
  }

  /** The value of a global the module exports, if it exports one by that name. */
  global(name: string): unknown {
    return this.globals[name]?.value;
  }

  allocContextId(): number {
    while (this.contexts.has(this.nextContextId)) this.nextContextId++;
    return this.nextContextId++;
  }

  /** The context host calls act on: the effective one if the module set one, else the current. */
  contextOrEffective(): AbiContext {
    const current = this.current ?? this.vmContext;
    if (this.effectiveId === 0) return current;
    return this.contexts.get(this.effectiveId) ?? current;
  }

  setEffectiveContext(id: number): Status {
    if (!this.contexts.has(id)) return Status.BadArgument;
    this.effectiveId = id;
    return Status.Ok;
  }

  /** Runs after the current callback returns (Envoy's addAfterVmCallAction), or now if idle. */
  afterCall(action: () => void): void {
    this.deferred.push(action);
    if (!this.running) this.drain();
  }

  private drain(): void {
    while (this.deferred.length > 0) {
      if (this.failure) {
        this.deferred = [];
        return;
      }
      (this.deferred.shift() as () => void)();
    }
  }

  /**
   * Calls an export for a context. A trap (or any exception) fails the VM, as Envoy does: the
   * failure is reported and the VM is not called again. `onReturn` sees the result (and whether
   * a local reply forced a stop) before the deferred actions run, as in Envoy.
   */
  invoke(
    context: AbiContext,
    name: string,
    args: (number | bigint)[],
    fallback = 0,
    onReturn?: (value: number, stopped: boolean) => void,
  ): InvokeResult {
    if (this.failure) return { ok: false, failure: this.failure };
    if (this.running) throw new Error(`wasm host: ${name} called while the module is running`);
    const fn = this.exports[name];
    let value = fallback;
    if (fn) {
      this.current = context;
      this.effectiveId = 0;
      this.running = true;
      this.lastModuleError = undefined;
      let thrown: { error: unknown } | undefined;
      try {
        value = toU32(fn(...args));
      } catch (error) {
        thrown = { error };
      } finally {
        this.running = false;
        this.current = null;
        this.effectiveId = 0;
      }
      // Only now can the host see what the callback (or an allocation it asked for) grew; past the
      // limit, that is the failure to report, whether or not the module trapped afterwards.
      const bytes = this.grownMemoryBytes();
      if (bytes > this.memoryLimitBytes) {
        const memory = { bytes, limitBytes: this.memoryLimitBytes };
        const error = new Error(
          `memory limit exceeded: the module's memory grew to ${mib(bytes)}, more than the limit of ${mib(memory.limitBytes)}`,
        );
        return { ok: false, failure: this.fail(name, context, error, memory) };
      }
      if (thrown) return { ok: false, failure: this.fail(name, context, thrown.error) };
    }
    const stopped = this.stopNextIteration;
    this.stopNextIteration = false;
    onReturn?.(value, stopped);
    this.drain();
    return { ok: true, value, stopped };
  }

  private fail(name: string, context: AbiContext, error: unknown, memory?: VmFailure["memory"]): VmFailure {
    const message = describe(error);
    const moduleMessage = this.lastModuleError;
    this.failure = {
      callback: name,
      contextId: context.id,
      message,
      ...(moduleMessage !== undefined ? { moduleMessage } : {}),
      ...(memory ? { memory } : {}),
    };
    this.deferred = [];
    this.stopNextIteration = false;
    const reason = moduleMessage !== undefined ? ` (module said: ${moduleMessage})` : "";
    this.log(
      LogLevel.Critical,
      `wasm VM failed in ${name}(${context.id}): ${message}${reason}; streams now fail closed`,
      "host",
      context,
    );
    return this.failure;
  }

  log(level: LogLevel, message: string, source: "module" | "host", context: AbiContext | null): void {
    if (source === "module" && level >= LogLevel.Error) this.lastModuleError = message;
    if (level < this.logLevel) return;
    const plugin = context?.pluginName;
    const entry: LogEntry = {
      level,
      levelName: LOG_LEVEL_NAMES[level],
      message,
      source,
      contextId: context?.id ?? 0,
      ...(plugin !== undefined ? { plugin } : {}),
    };
    this.logs.push(entry);
    if (this.logs.length > MAX_LOG_ENTRIES) this.logs.splice(0, this.logs.length - MAX_LOG_ENTRIES);
    for (const collector of this.collectors) collector.push(entry);
    try {
      this.logSink?.(entry);
    } catch {
      // A failing sink must not surface in the module as a trap.
    }
  }

  /** Runs fn and returns what it returned with the log entries recorded meanwhile. */
  captureLogs<T>(fn: () => T): { result: T; logs: LogEntry[] } {
    const logs: LogEntry[] = [];
    this.collectors.add(logs);
    try {
      return { result: fn(), logs };
    } finally {
      this.collectors.delete(logs);
    }
  }

  /** A stubbed import was called: say so once per name. */
  warnStub(name: string): void {
    if (this.warnedStubs.has(name)) return;
    this.warnedStubs.add(name);
    this.log(
      LogLevel.Warn,
      `the module called ${name}, which this host does not implement`,
      "host",
      this.contextOrEffective(),
    );
  }

  defineMetric(type: MetricType, name: string): number {
    const key = `${type}\0${name}`;
    const known = this.metricIdsByKey.get(key);
    if (known !== undefined) return known;
    this.metrics.define(type, name);
    const id = ((this.lastMetricId[type] as number) + 4) >>> 0;
    this.lastMetricId[type] = id;
    this.metricIds.set(id, { type, name });
    this.metricIdsByKey.set(key, id);
    return id;
  }

  metric(id: number): { type: MetricType; name: string } | undefined {
    return this.metricIds.get(id);
  }

  nextHttpCallId(): number {
    return this.nextHttpCall++;
  }

  trackPending(promise: Promise<void>): void {
    this.pending.add(promise);
    void promise.finally(() => this.pending.delete(promise));
  }

  /** Waits until no http call is outstanding. */
  async settle(): Promise<void> {
    while (this.pending.size > 0) await Promise.all([...this.pending]);
  }

  /** QueueListener: Envoy posts on_queue_ready to the registering VM's thread. */
  queueReady(contextId: number, token: number): void {
    this.afterCall(() => {
      const context = this.contexts.get(contextId);
      if (context) this.invoke(context, "proxy_on_queue_ready", [contextId, token]);
    });
  }
}

function toU32(value: unknown): number {
  if (typeof value === "number") return value >>> 0;
  if (typeof value === "bigint") return Number(BigInt.asUintN(32, value));
  return 0;
}

/** Bytes as MiB, with a decimal only when needed ("128 MiB", "4096.1 MiB"). */
export function mib(bytes: number): string {
  const value = bytes / (1024 * 1024);
  return `${Number.isInteger(value) ? value : value.toFixed(1)} MiB`;
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
