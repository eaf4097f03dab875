// Access to a module's linear memory, and the conversions between strings and bytes of the host
// calls.
//
// Any call into the module (an allocation above all) may grow the memory. Growing detaches the
// ArrayBuffer behind earlier views, which then have length 0 (a shared memory is not detached; it
// gets a larger buffer instead). Making views afresh on every access is correct but costs an
// allocation and the memory.buffer getter per access, so the views are cached and remade only when
// an access falls outside them: the first access after a growth always does, in either case.

// Strings and bytes convert losslessly, the way the SDK's decodeText and encodeText do
// (assembly/sdk/memory.ts): valid UTF-8 is text, and each byte of an ill-formed sequence is the
// lone surrogate U+DC80 + (byte - 0x80) (Python's "surrogateescape"), which no valid UTF-8 decodes
// to. Header values are bytes, and HTTP allows any from 0x80: `tester\xff` must stay apart from
// `tester`, and from `tester\xfe`, which U+FFFD for every bad byte would merge. Text without such
// escapes encodes exactly as TextEncoder encodes it; a leading BOM is kept.
const encoder = new TextEncoder();
/** Fails on ill-formed input, which is then decoded with escapes. */
const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
/** A lone escape (with the u flag a class of surrogates matches only unpaired ones). */
const LONE_ESCAPE = /[\udc80-\udcff]/u;
const ESCAPE = 0xdc00;

/** Up to this size, strings are converted in JavaScript: calling into the runtime's codec costs more. */
const SHORT_STRING = 64;

const EMPTY = new Uint8Array(0);

/** An imported function as the host implements it (arguments typed per function). */
export type HostFunction = (...args: never[]) => number | undefined;

/** Pointers and sizes arrive as i32; JavaScript sees them signed. */
export const u32 = (value: number): number => value >>> 0;

/** The bytes of `text` (see the top of this file). */
export function utf8(text: string): Uint8Array {
  if (!LONE_ESCAPE.test(text)) return encoder.encode(text);
  const length = utf8Length(text);
  const bytes = new Uint8Array(length);
  writeUtf8(bytes, 0, text, length);
  return bytes;
}

/** `bytes` as text, escapes for ill-formed sequences (see the top of this file). */
export function fromUtf8(bytes: Uint8Array): string {
  if (bytes.byteLength === 0) return "";
  try {
    return decoder.decode(bytes);
  } catch {
    return decodeEscaping(bytes);
  }
}

/**
 * The length of `text` in bytes: UTF-8, one byte for an escape, and U+FFFD (three bytes) for any
 * other lone surrogate, as TextEncoder writes it. Equal to text.length exactly when the text is
 * ASCII and escapes.
 */
export function utf8Length(text: string): number {
  const units = text.length;
  let length = units;
  for (let i = 0; i < units; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) {
      length += 1;
      continue;
    }
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < units) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        length += 2; // two code units, four bytes
        i++;
        continue;
      }
    }
    if (c >= 0xdc80 && c <= 0xdcff) continue; // an escape: its byte
    length += 2;
  }
  return length;
}

/**
 * Writes `text` (whose length in bytes is `length`, from utf8Length) at `at`. ASCII and escapes
 * are copied unit by unit (a Uint8Array keeps a unit's low byte, which is an escape's byte); other
 * text goes through TextEncoder, which writes exactly `length` bytes, unless it has escapes too.
 */
export function writeUtf8(bytes: Uint8Array, at: number, text: string, length: number): void {
  if (length === text.length) {
    for (let i = 0; i < length; i++) bytes[at + i] = text.charCodeAt(i);
  } else if (!LONE_ESCAPE.test(text)) {
    encoder.encodeInto(text, bytes.subarray(at, at + length));
  } else {
    writeEscaping(bytes, at, text);
  }
}

/** UTF-8 of text with escapes in it: each escape as its byte, in a JavaScript loop (rare). */
function writeEscaping(bytes: Uint8Array, at: number, text: string): void {
  let pos = at;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit >= 0xdc80 && unit <= 0xdcff) {
      bytes[pos++] = unit; // the low byte
      continue;
    }
    const cp = text.codePointAt(i) as number;
    if (cp > 0xffff) i++;
    pos += encoder.encodeInto(String.fromCodePoint(cp), bytes.subarray(pos)).written;
  }
}

/** Ill-formed UTF-8 as text with escapes: the algorithm of the SDK's decodeText. */
function decodeEscaping(bytes: Uint8Array): string {
  const units: number[] = [];
  const end = bytes.byteLength;
  const cont = (i: number) => i < end && ((bytes[i] as number) & 0xc0) === 0x80;
  for (let i = 0; i < end; ) {
    const b0 = bytes[i] as number;
    const b1 = i + 1 < end ? (bytes[i + 1] as number) : -1;
    let size = 0;
    // The ranges of well-formed UTF-8 (Unicode Table 3-7).
    if (b0 < 0x80) size = 1;
    else if (b0 >= 0xc2 && b0 <= 0xdf && cont(i + 1)) size = 2;
    else if (b0 >= 0xe0 && b0 <= 0xef && cont(i + 2)) {
      const low = b0 === 0xe0 ? 0xa0 : 0x80;
      const high = b0 === 0xed ? 0x9f : 0xbf;
      if (b1 >= low && b1 <= high) size = 3;
    } else if (b0 >= 0xf0 && b0 <= 0xf4 && cont(i + 2) && cont(i + 3)) {
      const low = b0 === 0xf0 ? 0x90 : 0x80;
      const high = b0 === 0xf4 ? 0x8f : 0xbf;
      if (b1 >= low && b1 <= high) size = 4;
    }
    const tail = (k: number) => (bytes[i + k] as number) & 0x3f;
    if (size === 0) units.push(ESCAPE | b0);
    else if (size === 1) units.push(b0);
    else if (size === 2) units.push(((b0 & 0x1f) << 6) | tail(1));
    else if (size === 3) units.push(((b0 & 0x0f) << 12) | (tail(1) << 6) | tail(2));
    else {
      const cp = (((b0 & 0x07) << 18) | (tail(1) << 12) | (tail(2) << 6) | tail(3)) - 0x10000;
      units.push(0xd800 | (cp >> 10), 0xdc00 | (cp & 0x3ff));
    }
    i += Math.max(size, 1);
  }
  let out = "";
  // fromCharCode takes its arguments on the stack: in slices.
  for (let i = 0; i < units.length; i += 8192) out += String.fromCharCode(...units.slice(i, i + 8192));
  return out;
}

/**
 * Strings the module passes are mostly the same few (header names, shared-data keys, foreign
 * function names). A small direct-mapped cache of recently decoded ASCII strings turns those into
 * a byte comparison, and hands back the same flat string each time, whose hash the Maps and
 * comparisons downstream have already computed.
 */
const CACHE_SLOTS = 256; // a power of two
const cached: (string | undefined)[] = new Array(CACHE_SLOTS).fill(undefined);

function cacheSlot(bytes: Uint8Array, at: number, size: number): number {
  const first = bytes[at] as number;
  const middle = bytes[at + (size >> 1)] as number;
  const last = bytes[at + size - 1] as number;
  return (size * 31 + first * 7 + middle * 3 + last) & (CACHE_SLOTS - 1);
}

function sameAscii(text: string, bytes: Uint8Array, at: number): boolean {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) !== bytes[at + i]) return false;
  return true;
}

/** Decodes `size` (> 0) bytes at `at` as fromUtf8 does. */
function decodeUtf8(bytes: Uint8Array, at: number, size: number, copy: boolean): string {
  if (size > SHORT_STRING) return decodeCopy(bytes, at, size, copy);
  const slot = cacheSlot(bytes, at, size);
  const hit = cached[slot];
  if (hit !== undefined && hit.length === size && sameAscii(hit, bytes, at)) return hit;
  for (let i = at; i < at + size; i++) {
    if ((bytes[i] as number) >= 0x80) return decodeCopy(bytes, at, size, copy);
  }
  // One call makes a flat string (appending char by char would make a rope). apply takes any
  // array-like; its declared type only names arrays, hence the cast.
  const text = String.fromCharCode.apply(null, bytes.subarray(at, at + size) as unknown as number[]);
  cached[slot] = text;
  return text;
}

function decodeCopy(bytes: Uint8Array, at: number, size: number, copy: boolean): string {
  // TextDecoder refuses views of a SharedArrayBuffer in browsers and workerd: decode a copy.
  return fromUtf8(copy ? bytes.slice(at, at + size) : bytes.subarray(at, at + size));
}

export class WasmMemory {
  private readonly memory: WebAssembly.Memory;
  /** The module's allocator (`malloc` or `proxy_on_memory_allocate`); returns 0 on failure. */
  private readonly allocate: (size: number) => number;
  /** Views over memory.buffer as last seen (see the top of this file). */
  private bytes: Uint8Array = EMPTY;
  private data: DataView = new DataView(EMPTY.buffer);
  private shared = false;

  constructor(memory: WebAssembly.Memory, allocate: (size: number) => number) {
    this.memory = memory;
    this.allocate = allocate;
    this.refresh();
  }

  private refresh(): void {
    const buffer = this.memory.buffer;
    if (buffer === this.bytes.buffer) return;
    this.bytes = new Uint8Array(buffer);
    this.data = new DataView(buffer);
    this.shared = !(buffer instanceof ArrayBuffer);
  }

  /** Current size of the linear memory. */
  byteLength(): number {
    return this.memory.buffer.byteLength;
  }

  private inBounds(ptr: number, size: number): boolean {
    if (ptr < 0 || size < 0) return false;
    if (ptr + size <= this.bytes.length) return true;
    this.refresh();
    return ptr + size <= this.bytes.length;
  }

  /** A copy of `size` bytes at `ptr`, or undefined when the range is outside the memory. */
  read(ptr: number, size: number): Uint8Array | undefined {
    if (!this.inBounds(ptr, size)) return undefined;
    // Making a zero-length typed array costs V8 more than a small copy does, and an empty array
    // cannot be written to, so every empty read shares one.
    return size === 0 ? EMPTY : this.bytes.slice(ptr, ptr + size);
  }

  readString(ptr: number, size: number): string | undefined {
    if (!this.inBounds(ptr, size)) return undefined;
    return size === 0 ? "" : decodeUtf8(this.bytes, ptr, size, this.shared);
  }

  writeU32(ptr: number, value: number): boolean {
    if (!this.inBounds(ptr, 4)) return false;
    this.data.setUint32(ptr, value >>> 0, true);
    return true;
  }

  writeU64(ptr: number, value: bigint): boolean {
    if (!this.inBounds(ptr, 8)) return false;
    this.data.setBigUint64(ptr, BigInt.asUintN(64, value), true);
    return true;
  }

  write(ptr: number, data: Uint8Array): boolean {
    if (!this.inBounds(ptr, data.byteLength)) return false;
    // Nothing to copy; the cached view may also be a detached one, which set() would refuse.
    if (data.byteLength > 0) this.bytes.set(data, ptr);
    return true;
  }

  /** Copies bytes into memory the module allocates; 0 for empty data, undefined on failure. */
  copyIn(data: Uint8Array): number | undefined {
    if (data.byteLength === 0) return 0;
    const ptr = this.allocate(data.byteLength) >>> 0;
    if (ptr === 0) return undefined;
    // write() checks the bounds again: the allocation may have grown the memory.
    return this.write(ptr, data) ? ptr : undefined;
  }

  /**
   * Hands bytes to the module as Envoy does (copyToPointerSize): allocate in the module, copy,
   * then store the pointer and the size at the two return addresses. Empty data allocates nothing
   * and returns a null pointer.
   */
  returnBytes(data: Uint8Array, ptrPtr: number, sizePtr: number): boolean {
    const ptr = this.copyIn(data);
    return ptr !== undefined && this.writeU32(ptrPtr, ptr) && this.writeU32(sizePtr, data.byteLength);
  }

  /** returnBytes for the bytes of `text` (utf8), encoded straight into the module's allocation. */
  returnString(text: string, ptrPtr: number, sizePtr: number): boolean {
    const length = utf8Length(text);
    let ptr = 0;
    if (length > 0) {
      ptr = this.allocate(length) >>> 0;
      if (ptr === 0 || !this.inBounds(ptr, length)) return false;
      writeUtf8(this.bytes, ptr, text, length);
    }
    return this.writeU32(ptrPtr, ptr) && this.writeU32(sizePtr, length);
  }
}
