// Public types shared by the host's parts.
import type { LogLevel, LogLevelName, Status } from "./abi.ts";
import type { Clock } from "./clock.ts";
import type { HeaderInput, HeaderPair } from "./headers.ts";
import type { PropertyTree } from "./properties.ts";
import type { SharedData } from "./shared-data.ts";

export interface LogEntry {
  level: LogLevel;
  levelName: LogLevelName;
  message: string;
  /** "module" for proxy_log (and WASI stdout/stderr), "host" for the host's own reports. */
  source: "module" | "host";
  /** The context the message was logged from (0 when none). */
  contextId: number;
  /** Name of the plugin whose context logged it, when known. */
  plugin?: string;
}

export type LogSink = (entry: LogEntry) => void;

/** A reply the plugin (or the host, for a failed VM) sent instead of the upstream's. */
export interface LocalResponse {
  status: number;
  /** Final headers including ":status", after the plugin's own response callbacks ran on them. */
  headers: HeaderPair[];
  body: Uint8Array;
  /** Envoy's response code details: what the module passed (spaces as "_"), or "wasm_fail_stream". */
  details: string;
  /** gRPC status when the module gave one in 0..16. */
  grpcStatus?: number;
}

/** Why a VM stopped: a trap (or a host-side error) in one of the module's functions. */
export interface VmFailure {
  /** The export that was running, e.g. "proxy_on_request_headers". */
  callback: string;
  contextId: number;
  /** The error, e.g. "RuntimeError: unreachable". */
  message: string;
  /** The last error or critical message the module logged during that call (an abort reason). */
  moduleMessage?: string;
  /** Set when the VM failed because its memory grew past the host's limit (memoryLimitBytes). */
  memory?: { bytes: number; limitBytes: number };
}

export interface ForeignCall {
  name: string;
  /** The context the module called from (its effective context). */
  contextId: number;
}

/**
 * A host function the module can call by name (proxy_call_foreign_function). Return the result
 * bytes (or nothing) for Ok, or an explicit status.
 */
export type ForeignFunction = (
  args: Uint8Array,
  call: ForeignCall,
) => Uint8Array | undefined | { status: Status; data?: Uint8Array };

export interface HttpCallRequest {
  /** The cluster (Envoy) or upstream the module named. */
  upstream: string;
  headers: HeaderPair[];
  body: Uint8Array;
  trailers: HeaderPair[];
  /** 0 means no timeout; the handler is responsible for enforcing it (the host owns no timers). */
  timeoutMs: number;
}

export interface HttpCallResponse {
  headers: HeaderInput;
  body?: Uint8Array | string;
  trailers?: HeaderInput;
}

/** Serves proxy_http_call. Throwing (or rejecting) reports a reset to the module, as Envoy does. */
export type HttpCallHandler = (request: HttpCallRequest) => HttpCallResponse | Promise<HttpCallResponse>;

export interface HostOptions {
  /** The compiled module. Workers cannot compile bytes; in Node use compileModule(bytes). */
  module: WebAssembly.Module;
  /** Share one store between hosts to simulate Envoy's worker VMs (shared data, queues, stats). */
  sharedData?: SharedData;
  /** Defaults to the system clock (Date.now). */
  clock?: Clock;
  /** Receives every log entry as it is recorded. */
  logSink?: LogSink;
  /** What proxy_get_log_level reports; messages below it are dropped, as Envoy drops them. Default Info. */
  logLevel?: LogLevel;
  /** Host-wide properties (node metadata and the like), the lowest layer of every lookup. */
  properties?: PropertyTree;
  /** Extra foreign functions; "clear_route_cache" is always registered (and can be overridden). */
  foreignFunctions?: Record<string, ForeignFunction>;
  /** The VM's vm_id: partitions shared data and queues (default ""). */
  vmId?: string;
  /** Bytes for BufferType.VmConfiguration (vm_config.configuration). */
  vmConfiguration?: string | Uint8Array;
  /** Serves proxy_http_call; without it the call returns Unimplemented. */
  httpCall?: HttpCallHandler;
  /**
   * The most linear memory the module may have (default DEFAULT_MEMORY_LIMIT_BYTES, 128 MiB). A
   * module that starts above it is refused; one that grows past it fails its VM when the callback
   * that grew it returns, as a trap does (JavaScript cannot stop a running callback, nor cap a
   * memory the module defines itself; workerd's isolate limit applies meanwhile).
   */
  memoryLimitBytes?: number;
}

export interface PluginOptions {
  configuration?: string | Uint8Array;
  /** Envoy's root_id: which root context of the module serves this plugin. Default "". */
  rootId?: string;
  /** Envoy's plugin name (property plugin_name). Defaults to the root id. */
  name?: string;
  /** Plugin-level properties, above the host's. */
  properties?: PropertyTree;
  /** Envoy's fail_open: after a VM failure, streams pass through instead of failing with 503. */
  failOpen?: boolean;
}

export interface StreamOptions {
  /** Stream-level properties, above everything else (e.g. { source: { address: "10.0.0.1:5555" } }). */
  properties?: PropertyTree;
}

export type StreamAction = "continue" | "pause";

export interface HeadersResult {
  /** "pause" when the plugin stopped the stream (including when it answered locally). */
  action: StreamAction;
  /** The headers as they stand after the callback (what goes on when the stream continues). */
  headers: HeaderPair[];
  /** Set once the stream has been answered locally (by the plugin, or 503 for a failed VM). */
  localResponse?: LocalResponse;
  /** The plugin reset the stream (proxy_close_stream). */
  reset?: boolean;
}

export interface BodyResult {
  action: StreamAction;
  /** The body bytes released downstream of the plugin by this call (empty while it buffers). */
  body: Uint8Array;
  localResponse?: LocalResponse;
  reset?: boolean;
}

export interface TrailersResult {
  action: StreamAction;
  trailers: HeaderPair[];
  localResponse?: LocalResponse;
  reset?: boolean;
}
