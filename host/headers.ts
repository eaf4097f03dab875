// Header maps with Envoy's semantics, and the Proxy-Wasm wire format for them (both directions):
//   u32 pair count, then per pair u32 key length and u32 value length (little-endian),
//   then per pair the key bytes, NUL, the value bytes, NUL.
import { fromUtf8, utf8 } from "./memory.ts";

export type HeaderPair = [name: string, value: string];
export type HeaderInput = Iterable<readonly [string, string]>;

/** Envoy's LowerCaseString lowers ASCII only. */
export function lowerHeaderName(name: string): string {
  return name.replace(/[A-Z]/g, (c) => c.toLowerCase());
}

/** proxy-wasm-cpp-host's PROXY_WASM_HOST_PAIRS_MAX_COUNT and _MAX_BYTES. */
const MAX_PAIRS = 1024;
const MAX_PAIRS_BYTES = 1024 * 1024;

/** An ordered multimap of lower-case names, like Envoy's HeaderMapImpl. */
export class HeaderMap {
  private entries: HeaderPair[] = [];

  constructor(pairs: HeaderInput = []) {
    for (const [name, value] of pairs) this.add(name, value);
  }

  get size(): number {
    return this.entries.length;
  }

  /** Sum of name and value lengths in bytes: what Envoy's byteSize() and get_header_map_size report. */
  byteSize(): number {
    let size = 0;
    for (const [name, value] of this.entries) size += utf8(name).byteLength + utf8(value).byteLength;
    return size;
  }

  /** The first value for a name (Envoy returns only the first of repeated headers). */
  get(name: string): string | undefined {
    const key = lowerHeaderName(name);
    return this.entries.find(([n]) => n === key)?.[1];
  }

  has(name: string): boolean {
    return this.get(name) !== undefined;
  }

  /** Appends a value; pseudo-headers stay ahead of regular ones as in Envoy. */
  add(name: string, value: string): void {
    const key = lowerHeaderName(name);
    if (key.startsWith(":")) {
      let at = 0;
      while (at < this.entries.length && (this.entries[at] as HeaderPair)[0].startsWith(":")) at++;
      this.entries.splice(at, 0, [key, value]);
    } else {
      this.entries.push([key, value]);
    }
  }

  /** Envoy's setCopy: replaces the first occurrence, leaves later ones, or adds when absent. */
  replace(name: string, value: string): void {
    const key = lowerHeaderName(name);
    const entry = this.entries.find(([n]) => n === key);
    if (entry) entry[1] = value;
    else this.add(key, value);
  }

  /** Removes every value of a name. */
  remove(name: string): void {
    const key = lowerHeaderName(name);
    this.entries = this.entries.filter(([n]) => n !== key);
  }

  /** Replaces the whole map (set_header_map_pairs). */
  setAll(pairs: HeaderInput): void {
    this.entries = [];
    for (const [name, value] of pairs) this.add(name, value);
  }

  pairs(): HeaderPair[] {
    return this.entries.map(([n, v]) => [n, v]);
  }
}

/** Serializes pairs in the Proxy-Wasm wire format. */
export function encodePairs(
  pairs: readonly (readonly [string | Uint8Array, string | Uint8Array])[],
): Uint8Array {
  const encoded = pairs.map(([k, v]) => [
    typeof k === "string" ? utf8(k) : k,
    typeof v === "string" ? utf8(v) : v,
  ]);
  let size = 4;
  for (const [k, v] of encoded)
    size += 8 + (k as Uint8Array).byteLength + 1 + (v as Uint8Array).byteLength + 1;
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  view.setUint32(0, encoded.length, true);
  let pos = 4;
  for (const [k, v] of encoded) {
    view.setUint32(pos, (k as Uint8Array).byteLength, true);
    view.setUint32(pos + 4, (v as Uint8Array).byteLength, true);
    pos += 8;
  }
  for (const [k, v] of encoded) {
    out.set(k as Uint8Array, pos);
    pos += (k as Uint8Array).byteLength + 1; // the NUL is already there
    out.set(v as Uint8Array, pos);
    pos += (v as Uint8Array).byteLength + 1;
  }
  return out;
}

/**
 * Parses the wire format. Like proxy-wasm-cpp-host's PairsUtil::toPairs, malformed input (short,
 * missing NULs, trailing bytes, too many pairs) yields undefined; callers decide what that means.
 */
export function decodePairs(data: Uint8Array): HeaderPair[] | undefined {
  if (data.byteLength > MAX_PAIRS_BYTES || data.byteLength < 4) return undefined;
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const count = view.getUint32(0, true);
  if (count > MAX_PAIRS || 4 + count * 8 > data.byteLength) return undefined;
  const sizes: [number, number][] = [];
  for (let i = 0; i < count; i++)
    sizes.push([view.getUint32(4 + i * 8, true), view.getUint32(8 + i * 8, true)]);
  let pos = 4 + count * 8;
  const pairs: HeaderPair[] = [];
  const take = (length: number): string | undefined => {
    if (pos + length + 1 > data.byteLength || data[pos + length] !== 0) return undefined;
    const text = fromUtf8(data.subarray(pos, pos + length));
    pos += length + 1;
    return text;
  };
  for (const [keySize, valueSize] of sizes) {
    const key = take(keySize);
    if (key === undefined) return undefined;
    const value = take(valueSize);
    if (value === undefined) return undefined;
    pairs.push([key, value]);
  }
  return pos === data.byteLength ? pairs : undefined;
}
