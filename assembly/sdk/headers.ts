// Header maps (request/response headers and trailers) of the current HTTP context.
import {
  MapType,
  proxy_add_header_map_value,
  proxy_get_header_map_pairs,
  proxy_get_header_map_size,
  proxy_get_header_map_value,
  proxy_remove_header_map_value,
  proxy_replace_header_map_value,
  proxy_set_header_map_pairs,
  WasmResult,
} from "./abi";
import {
  decodeText,
  ptrOf,
  RETURN_DATA,
  RETURN_SIZE,
  RETURN_U32,
  resetReturn,
  takeBuffer,
  takeString,
  utf8,
} from "./memory";

/**
 * A header as strings, decoded from the proxy's bytes by decodeText (memory.ts): bytes that are not
 * valid UTF-8 are kept as escapes, so equal strings are equal bytes, and set/add send them back.
 */
export class HeaderPair {
  constructor(
    public name: string,
    public value: string,
  ) {}
}

/**
 * Serialises pairs in the ABI's map format: u32 count, then (u32 name length, u32 value length)
 * per pair, then every name and value followed by a NUL byte.
 */
export function serializeHeaders(pairs: HeaderPair[]): ArrayBuffer {
  const names = new Array<ArrayBuffer>(pairs.length);
  const values = new Array<ArrayBuffer>(pairs.length);
  let size = 4 + 8 * pairs.length;
  for (let i = 0; i < pairs.length; i++) {
    const name = utf8(pairs[i].name);
    const value = utf8(pairs[i].value);
    names[i] = name;
    values[i] = value;
    size += name.byteLength + value.byteLength + 2;
  }
  const out = new ArrayBuffer(size);
  const base = changetype<usize>(out);
  store<u32>(base, pairs.length);
  let lengths = base + 4;
  let data = base + 4 + 8 * pairs.length;
  for (let i = 0; i < pairs.length; i++) {
    const name = names[i];
    const value = values[i];
    store<u32>(lengths, name.byteLength);
    store<u32>(lengths + 4, value.byteLength);
    lengths += 8;
    memory.copy(data, changetype<usize>(name), name.byteLength);
    data += name.byteLength;
    store<u8>(data, 0);
    data += 1;
    memory.copy(data, changetype<usize>(value), value.byteLength);
    data += value.byteLength;
    store<u8>(data, 0);
    data += 1;
  }
  return out;
}

/** Parses the ABI's map format; a malformed buffer yields the pairs that were complete. */
export function deserializeHeaders(buffer: ArrayBuffer): HeaderPair[] {
  const out = new Array<HeaderPair>();
  const size = <usize>buffer.byteLength;
  if (size < 4) return out;
  const base = changetype<usize>(buffer);
  const count = <usize>load<u32>(base);
  // Divided rather than multiplied: 8 * count wraps around (usize is 32 bits) from 2^29 on.
  if (count > (size - 4) / 8) return out;
  let lengths = base + 4;
  let data = base + 4 + 8 * count;
  const end = base + size;
  for (let i: usize = 0; i < count; i++) {
    const nameSize = <usize>load<u32>(lengths);
    const valueSize = <usize>load<u32>(lengths + 4);
    lengths += 8;
    // Each length is checked against what is left on its own, so that their sum cannot wrap.
    const left = end - data;
    if (left < 2 || nameSize > left - 2 || valueSize > left - 2 - nameSize) break;
    const name = decodeText(data, nameSize);
    data += nameSize + 1;
    const value = decodeText(data, valueSize);
    data += valueSize + 1;
    out.push(new HeaderPair(name, value));
  }
  return out;
}

/** One of the host's header maps. Names are lower case, as Envoy stores them. */
export class HeaderMap {
  constructor(public readonly type: MapType) {}

  get(name: string): string | null {
    return this.getEncoded(utf8(name));
  }

  /** Like get, with the name already UTF-8 encoded (hot paths encode constant names once). */
  getEncoded(key: ArrayBuffer): string | null {
    resetReturn();
    const result = proxy_get_header_map_value(
      this.type,
      ptrOf(key),
      key.byteLength,
      RETURN_DATA,
      RETURN_SIZE,
    );
    if (result != WasmResult.Ok) return null;
    return takeString();
  }

  pairs(): HeaderPair[] {
    resetReturn();
    if (proxy_get_header_map_pairs(this.type, RETURN_DATA, RETURN_SIZE) != WasmResult.Ok) {
      return new Array<HeaderPair>();
    }
    return deserializeHeaders(takeBuffer());
  }

  setPairs(pairs: HeaderPair[]): WasmResult {
    const data = serializeHeaders(pairs);
    return proxy_set_header_map_pairs(this.type, ptrOf(data), data.byteLength) as WasmResult;
  }

  /** Replaces every value of `name` with `value` (adds it when absent). */
  set(name: string, value: string): WasmResult {
    return this.setEncoded(utf8(name), utf8(value));
  }

  setEncoded(key: ArrayBuffer, bytes: ArrayBuffer): WasmResult {
    return proxy_replace_header_map_value(
      this.type,
      ptrOf(key),
      key.byteLength,
      ptrOf(bytes),
      bytes.byteLength,
    ) as WasmResult;
  }

  /** Appends a value, keeping the existing ones. */
  add(name: string, value: string): WasmResult {
    const key = utf8(name);
    const bytes = utf8(value);
    return proxy_add_header_map_value(
      this.type,
      ptrOf(key),
      key.byteLength,
      ptrOf(bytes),
      bytes.byteLength,
    ) as WasmResult;
  }

  remove(name: string): WasmResult {
    return this.removeEncoded(utf8(name));
  }

  removeEncoded(key: ArrayBuffer): WasmResult {
    return proxy_remove_header_map_value(this.type, ptrOf(key), key.byteLength) as WasmResult;
  }

  /** Serialised size in bytes, as the host reports it. */
  byteSize(): u32 {
    if (proxy_get_header_map_size(this.type, RETURN_U32) != WasmResult.Ok) return 0;
    return load<u32>(RETURN_U32);
  }
}

export const requestHeaders = new HeaderMap(MapType.RequestHeaders);
export const requestTrailers = new HeaderMap(MapType.RequestTrailers);
export const responseHeaders = new HeaderMap(MapType.ResponseHeaders);
export const responseTrailers = new HeaderMap(MapType.ResponseTrailers);
