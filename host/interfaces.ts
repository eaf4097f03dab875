// What the host's parts see of each other. The VM (vm.ts) is handed to the ABI functions
// (imports/) as an AbiVm and to the contexts as a ContextVm, and sees its contexts as AbiContexts,
// so neither the functions nor the contexts import vm.ts and the host's imports point one way:
// host → plugin → vm → (imports/, contexts) → this file → leaves (abi, memory, headers, ...).
import type { AbiVersion, LogLevel, MetricType, Status } from "./abi.ts";
import type { HostBuffer } from "./buffers.ts";
import type { Clock } from "./clock.ts";
import type { HeaderMap, HeaderPair } from "./headers.ts";
import type { WasmMemory } from "./memory.ts";
import type { MetricStore } from "./metrics.ts";
import type { PropertyTree } from "./properties.ts";
import type { QueueListener, SharedData } from "./shared-data.ts";
import type { ForeignFunction, HttpCallHandler, HttpCallRequest, VmFailure } from "./types.ts";

/** What calling one of the module's exports for a context came to. */
export type InvokeResult = { ok: true; value: number; stopped: boolean } | { ok: false; failure: VmFailure };

/** The local reply proxy_send_local_response asks for. */
export interface LocalReplyRequest {
  status: number;
  details: string;
  body: Uint8Array;
  headers: HeaderPair[];
  grpcStatus?: number;
}

/** The response proxy_on_http_call_response is delivering. */
export interface HttpCallData {
  headers: HeaderMap;
  body: Uint8Array;
  trailers: HeaderMap;
}

/** A plugin's root context, as the ABI functions and the contexts of its streams use it. */
export interface AbiRoot {
  readonly id: number;
  /** What proxy_get_status reports. */
  readonly status: { code: number; message: string };
  /** The response being delivered by proxy_on_http_call_response. */
  readonly httpCallResponse: HttpCallData | null;
  /** The plugin's layer of properties. */
  pluginLayer(): PropertyTree;
  setTickPeriod(periodMs: number): void;
  /** Starts an http call; answers its token. */
  startHttpCall(request: HttpCallRequest): number;
  /** proxy_done: finishes a shutdown that proxy_on_done deferred. */
  done(): Status;
}

/** A context as the ABI functions see it: what a host call made "from" it can see and do. */
export interface AbiContext {
  readonly id: number;
  /** The root context whose tick and http calls this context uses (null for the VM context). */
  readonly root: AbiRoot | null;
  readonly pluginName: string | undefined;
  /** True during proxy_on_log, when header maps are read-only and absent ones mean NotFound. */
  readonly accessLogPhase: boolean;
  /** Maps readable now (Envoy's getConstMap); null means "not available in this callback". */
  constMap(type: number): HeaderMap | null;
  /** Maps writable now (Envoy's getMap). */
  mutableMap(type: number): HeaderMap | null;
  buffer(type: number): HostBuffer | null;
  property(path: readonly string[]): Uint8Array | undefined;
  setProperty(path: string, value: Uint8Array): Status;
  continueStream(type: number): Status;
  closeStream(type: number): Status;
  sendLocalResponse(reply: LocalReplyRequest): void;
  countForeignCall(name: string): void;
}

/** The VM as the ABI functions use it: its memory, its state, and the context a call acts on. */
export interface AbiVm extends QueueListener {
  readonly abiVersion: AbiVersion;
  readonly memory: WasmMemory;
  readonly clock: Clock;
  readonly logLevel: LogLevel;
  readonly sharedData: SharedData;
  readonly metrics: MetricStore;
  readonly vmId: string;
  readonly foreignFunctions: ReadonlyMap<string, ForeignFunction>;
  readonly httpCallHandler: HttpCallHandler | undefined;
  /** Set by proxy_send_local_response: the running callback's result becomes "stop". */
  stopNextIteration: boolean;
  /** The context host calls act on: the effective one if the module set one, else the current. */
  contextOrEffective(): AbiContext;
  setEffectiveContext(id: number): Status;
  log(level: LogLevel, message: string, source: "module" | "host", context: AbiContext | null): void;
  /** A stubbed import was called. */
  warnStub(name: string): void;
  defineMetric(type: MetricType, name: string): number;
  metric(id: number): { type: MetricType; name: string } | undefined;
}

/** The VM as its contexts use it: to register, call the module, and defer work. */
export interface ContextVm {
  readonly clock: Clock;
  readonly vmId: string;
  readonly vmConfiguration: Uint8Array;
  readonly properties: PropertyTree;
  readonly httpCallHandler: HttpCallHandler | undefined;
  readonly failure: VmFailure | undefined;
  /** The live contexts by id (proxy_set_effective_context and queues find them here). */
  readonly contexts: Map<number, AbiContext>;
  invoke(
    context: AbiContext,
    name: string,
    args: (number | bigint)[],
    fallback?: number,
    onReturn?: (value: number, stopped: boolean) => void,
  ): InvokeResult;
  /** Runs after the current callback returns, or now if idle. */
  afterCall(action: () => void): void;
  nextHttpCallId(): number;
  /** Keeps an outstanding http call until it settles. */
  trackPending(promise: Promise<void>): void;
}
