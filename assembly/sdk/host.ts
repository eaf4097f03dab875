// Typed wrappers over the ABI: logging, time, buffers, properties, foreign functions.
import {
  BufferType,
  LogLevel,
  proxy_call_foreign_function,
  proxy_get_buffer_bytes,
  proxy_get_current_time_nanoseconds,
  proxy_get_log_level,
  proxy_get_property,
  proxy_log,
  proxy_set_buffer_bytes,
  proxy_set_property,
  WasmResult,
} from "./abi";
import {
  ptrOf,
  RETURN_DATA,
  RETURN_SIZE,
  RETURN_U32,
  RETURN_U64,
  resetReturn,
  takeBuffer,
  utf8,
} from "./memory";

export function log(level: LogLevel, message: string): void {
  const bytes = utf8(message);
  proxy_log(level, ptrOf(bytes), bytes.byteLength);
}

export function logTrace(message: string): void {
  log(LogLevel.Trace, message);
}
export function logDebug(message: string): void {
  log(LogLevel.Debug, message);
}
export function logInfo(message: string): void {
  log(LogLevel.Info, message);
}
export function logWarn(message: string): void {
  log(LogLevel.Warn, message);
}
export function logError(message: string): void {
  log(LogLevel.Error, message);
}

/** The proxy's current log level, so expensive debug text can be skipped when nobody reads it. */
export function logLevel(): LogLevel {
  if (proxy_get_log_level(RETURN_U32) != WasmResult.Ok) return LogLevel.Info;
  return load<u32>(RETURN_U32) as LogLevel;
}

/** Wall-clock time in nanoseconds since the Unix epoch, as the proxy sees it. */
export function nowNanos(): u64 {
  proxy_get_current_time_nanoseconds(RETURN_U64);
  return load<u64>(RETURN_U64);
}

export function nowMillis(): u64 {
  return nowNanos() / 1_000_000;
}

/** Reads `size` bytes from a host buffer (plugin configuration, a body, foreign call data). */
export function getBuffer(type: BufferType, start: u32, size: u32): ArrayBuffer | null {
  resetReturn();
  const result = proxy_get_buffer_bytes(type, start, size, RETURN_DATA, RETURN_SIZE);
  if (result != WasmResult.Ok) return null;
  return takeBuffer();
}

/** Replaces `size` bytes at `start` of a host buffer with `data`. */
export function setBuffer(type: BufferType, start: u32, size: u32, data: ArrayBuffer): WasmResult {
  return proxy_set_buffer_bytes(type, start, size, ptrOf(data), data.byteLength) as WasmResult;
}

/** Property paths travel as their segments joined by NUL bytes. */
export function encodePath(path: string[]): ArrayBuffer {
  return utf8(path.join("\0"));
}

export function getProperty(path: string[]): ArrayBuffer | null {
  const encoded = encodePath(path);
  resetReturn();
  const result = proxy_get_property(ptrOf(encoded), encoded.byteLength, RETURN_DATA, RETURN_SIZE);
  if (result != WasmResult.Ok) return null;
  return takeBuffer();
}

export function getPropertyString(path: string[]): string | null {
  const value = getProperty(path);
  return value === null ? null : String.UTF8.decode(value);
}

export function setProperty(path: string[], value: ArrayBuffer): WasmResult {
  return setPropertyEncoded(encodePath(path), value);
}

/** setProperty with a path encoded once (encodePath), for a property set on every request. */
export function setPropertyEncoded(path: ArrayBuffer, value: ArrayBuffer): WasmResult {
  return proxy_set_property(ptrOf(path), path.byteLength, ptrOf(value), value.byteLength) as WasmResult;
}

export class ForeignResult {
  constructor(
    public status: WasmResult,
    public data: ArrayBuffer | null,
  ) {}
}

/** Calls a host extension registered under `name` (Envoy: clear_route_cache, compress, ...). */
export function callForeignFunction(name: string, args: ArrayBuffer): ForeignResult {
  return callEncodedForeignFunction(utf8(name), args);
}

function callEncodedForeignFunction(encodedName: ArrayBuffer, args: ArrayBuffer): ForeignResult {
  resetReturn();
  const status = proxy_call_foreign_function(
    ptrOf(encodedName),
    encodedName.byteLength,
    ptrOf(args),
    args.byteLength,
    RETURN_DATA,
    RETURN_SIZE,
  ) as WasmResult;
  if (status != WasmResult.Ok) return new ForeignResult(status, null);
  return new ForeignResult(status, takeBuffer());
}

const EMPTY = new ArrayBuffer(0);
const CLEAR_ROUTE_CACHE = utf8("clear_route_cache");

/**
 * Makes Envoy pick the route again after a filter changed the headers routing depends on. Envoy
 * does not promise to do this by itself when a Wasm filter modifies request headers.
 */
export function clearRouteCache(): WasmResult {
  return callEncodedForeignFunction(CLEAR_ROUTE_CACHE, EMPTY).status;
}
