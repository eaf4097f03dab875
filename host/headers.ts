// Header maps with Envoy's semantics, and the Proxy-Wasm wire format for them (both directions):
//   u32 pair count, then per pair u32 key length and u32 value length (little-endian),
//   then per pair the key bytes, NUL, the value bytes, NUL.
import { fromUtf8, utf8Length, writeUtf8 } from "./memory.ts";

/**
 * A header as strings. Names and values are bytes in Envoy; a string carries them losslessly as
 * host/memory.ts converts: UTF-8 text, and each byte that is not valid UTF-8 as U+DC80 + (byte -
 * 0x80), so `"tester\udcff"` is the bytes of "tester" and then 0xff.
 */
export type HeaderPair = [name: string, value: string];
export type HeaderInput = Iterable<readonly [string, string]>;

const UPPER_ASCII = /[A-Z]/g;
const lower = (c: string): string => c.toLowerCase();

/** Envoy's LowerCaseString lowers ASCII only. */
export function lowerHeaderName(name: string): string {
  // Names almost always arrive lower case already. toLowerCase is the fastest way to find out
  // (V8 hands back the string itself when nothing changes); it also lowers non-ASCII letters,
  // so a name it changes is lowered again, ASCII only.
  return name.toLowerCase() === name ? name : name.replace(UPPER_ASCII, lower);
}

const isPseudo = (name: string): boolean => name.charCodeAt(0) === 58; // ":"

/** proxy-wasm-cpp-host's PROXY_WASM_HOST_PAIRS_MAX_COUNT and _MAX_BYTES. */
const MAX_PAIRS = 1024;
const MAX_PAIRS_BYTES = 1024 * 1024;

/** An ordered multimap of lower-case names, like Envoy's HeaderMapImpl. */
export class HeaderMap {
  // Names and values in two parallel lists rather than a list of pairs: a map is built for every
  // header block of every stream and read a few times, and pairs would be allocated twice (here
  // and in the copies pairs() hands out). Pseudo-headers always form a prefix of the names: only
  // add() inserts, and it keeps them so.
  private names: string[] = [];
  private values: string[] = [];

  constructor(pairs: HeaderInput = []) {
    this.addAll(pairs);
  }

  private addAll(pairs: HeaderInput): void {
    if (Array.isArray(pairs)) {
      // Indexing instead of for-of destructuring: the iterator protocol (per list and per pair)
      // costs more than the adds themselves.
      const list = pairs as readonly (readonly [string, string])[];
      for (let i = 0; i < list.length; i++) {
        const pair = list[i] as readonly [string, string];
        this.add(pair[0], pair[1]);
      }
    } else {
      for (const [name, value] of pairs) this.add(name, value);
    }
  }

  get size(): number {
    return this.names.length;
  }

  /** Sum of name and value lengths in bytes: what Envoy's byteSize() and get_header_map_size report. */
  byteSize(): number {
    let size = 0;
    for (let i = 0; i < this.names.length; i++) {
      size += utf8Length(this.names[i] as string) + utf8Length(this.values[i] as string);
    }
    return size;
  }

  private indexOf(key: string): number {
    const names = this.names;
    for (let i = 0; i < names.length; i++) if (names[i] === key) return i;
    return -1;
  }

  /** The first value for a name (Envoy returns only the first of repeated headers). */
  get(name: string): string | undefined {
    const at = this.indexOf(lowerHeaderName(name));
    return at < 0 ? undefined : this.values[at];
  }

  has(name: string): boolean {
    return this.get(name) !== undefined;
  }

  /** Appends a value; pseudo-headers stay ahead of regular ones as in Envoy. */
  add(name: string, value: string): void {
    const key = lowerHeaderName(name);
    const names = this.names;
    const count = names.length;
    // The common cases append: a regular header, or a pseudo-header while only those are present.
    if (!isPseudo(key) || count === 0 || isPseudo(names[count - 1] as string)) {
      names.push(key);
      this.values.push(value);
      return;
    }
    let at = 0;
    while (at < count && isPseudo(names[at] as string)) at++;
    names.splice(at, 0, key);
    this.values.splice(at, 0, value);
  }

  /** Envoy's setCopy: replaces the first occurrence, leaves later ones, or adds when absent. */
  replace(name: string, value: string): void {
    const key = lowerHeaderName(name);
    const at = this.indexOf(key);
    if (at >= 0) this.values[at] = value;
    else this.add(key, value);
  }

  /** Removes every value of a name. */
  remove(name: string): void {
    const key = lowerHeaderName(name);
    if (this.indexOf(key) < 0) return;
    const names: string[] = [];
    const values: string[] = [];
    for (let i = 0; i < this.names.length; i++) {
      if (this.names[i] === key) continue;
      names.push(this.names[i] as string);
      values.push(this.values[i] as string);
    }
    this.names = names;
    this.values = values;
  }

  /** Replaces the whole map (set_header_map_pairs). */
  setAll(pairs: HeaderInput): void {
    this.names = [];
    this.values = [];
    this.addAll(pairs);
  }

  /** New pairs: callers get the map as it stands now, which later edits do not change. */
  pairs(): HeaderPair[] {
    const out: HeaderPair[] = [];
    for (let i = 0; i < this.names.length; i++) out.push([this.names[i] as string, this.values[i] as string]);
    return out;
  }
}

/** Serializes pairs in the Proxy-Wasm wire format. */
export function encodePairs(
  pairs: readonly (readonly [string | Uint8Array, string | Uint8Array])[],
): Uint8Array {
  const count = pairs.length;
  // Byte lengths first (key, value per pair): the output is allocated once, at its final size.
  const lengths: number[] = new Array(count * 2);
  let size = 4 + count * 8;
  for (let i = 0; i < count; i++) {
    const [k, v] = pairs[i] as readonly [string | Uint8Array, string | Uint8Array];
    const keyLength = typeof k === "string" ? utf8Length(k) : k.byteLength;
    const valueLength = typeof v === "string" ? utf8Length(v) : v.byteLength;
    lengths[2 * i] = keyLength;
    lengths[2 * i + 1] = valueLength;
    size += keyLength + 1 + valueLength + 1;
  }
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  view.setUint32(0, count, true);
  for (let i = 0; i < 2 * count; i++) view.setUint32(4 + 4 * i, lengths[i] as number, true);
  let pos = 4 + count * 8;
  for (let i = 0; i < 2 * count; i++) {
    const part = (pairs[i >> 1] as readonly [string | Uint8Array, string | Uint8Array])[i & 1] as
      | string
      | Uint8Array;
    const length = lengths[i] as number;
    if (typeof part === "string") writeUtf8(out, pos, part, length);
    else out.set(part, pos);
    pos += length + 1; // the NUL is already there
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
