// wasmesh's Proxy-Wasm host (ABI v0.2.1), for Node and workerd.
export {
  Action,
  BufferType,
  LogLevel,
  type LogLevelName,
  MapType,
  MetricType,
  Status,
  StreamType,
} from "./abi.ts";
export { type Clock, ManualClock, systemClock } from "./clock.ts";
export { decodePairs, encodePairs, type HeaderInput, HeaderMap, type HeaderPair } from "./headers.ts";
export {
  type CreatePluginResult,
  PluginError,
  type PluginFailureReason,
  ProxyWasmHost,
} from "./host.ts";
export { HISTOGRAM_BUCKETS, type MetricKind, type MetricSnapshot, MetricStore } from "./metrics.ts";
export { type ConfigureResult, Plugin } from "./plugin.ts";
export type { PropertyTree, PropertyValue } from "./properties.ts";
export { SharedData, type SharedValue } from "./shared-data.ts";
export { HttpStream } from "./stream.ts";
export type { Direction } from "./stream-context.ts";
export type {
  BodyResult,
  ForeignCall,
  ForeignFunction,
  HeadersResult,
  HostOptions,
  HttpCallHandler,
  HttpCallRequest,
  HttpCallResponse,
  LocalResponse,
  LogEntry,
  LogSink,
  PluginOptions,
  StreamAction,
  StreamOptions,
  TrailersResult,
  VmFailure,
} from "./types.ts";
export { DEFAULT_MEMORY_LIMIT_BYTES, MAX_LOG_ENTRIES, type ModuleCheck, ModuleError, mib } from "./vm.ts";

/** Compiles module bytes (Node; workerd only accepts modules compiled at deploy time). */
export function compileModule(bytes: ArrayBuffer | ArrayBufferView): Promise<WebAssembly.Module> {
  return WebAssembly.compile(ownBytes(bytes));
}

/** A copy backed by a plain ArrayBuffer (Node's Buffer may sit on a shared pool). */
function ownBytes(bytes: ArrayBuffer | ArrayBufferView): ArrayBuffer | Uint8Array<ArrayBuffer> {
  if (bytes instanceof ArrayBuffer) return bytes;
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength).slice();
}
