// Access to a module's linear memory, and the UTF-8 conversions of the host calls.
//
// Any call into the module (an allocation above all) may grow the memory. Growing detaches the
// ArrayBuffer behind earlier views, which then have length 0 (a shared memory is not detached; it
// gets a larger buffer instead). Making views afresh on every access is correct but costs an
// allocation and the memory.buffer getter per access, so the views are cached and remade only when
// an access falls outside them: the first access after a growth always does, in either case.

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Up to this size, strings are converted in JavaScript: calling into the runtime's codec costs more. */
const SHORT_STRING = 64;

const EMPTY = new Uint8Array(0);

/** An imported function as the host implements it (arguments typed per function). */
export type HostFunction = (...args: never[]) => number | undefined;

/** Pointers and sizes arrive as i32; JavaScript sees them signed. */
export const u32 = (value: number): number => value >>> 0;

export function utf8(text: string): Uint8Array {
  return encoder.encode(text);
}

export function fromUtf8(bytes: Uint8Array): string {
  return decoder.decode(bytes);
}

/**
 * The length of `text` in UTF-8 as TextEncoder encodes it: a lone surrogate becomes U+FFFD (three
 * bytes). Equal to text.length exactly when the text is ASCII.
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
    length += 2;
  }
  return length;
}

/**
 * Writes `text` (whose UTF-8 length is `length`, from utf8Length) at `at`. ASCII is copied unit by
 * unit; anything else goes through TextEncoder, which writes exactly `length` bytes.
 */
export function writeUtf8(bytes: Uint8Array, at: number, text: string, length: number): void {
  if (length === text.length) {
    for (let i = 0; i < length; i++) bytes[at + i] = text.charCodeAt(i);
  } else {
    encoder.encodeInto(text, bytes.subarray(at, at + length));
  }
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

/** Decodes `size` (> 0) bytes at `at` as TextDecoder does (invalid sequences become U+FFFD). */
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
  return decoder.decode(copy ? bytes.slice(at, at + size) : bytes.subarray(at, at + size));
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

  /** returnBytes for the UTF-8 of `text`, encoded straight into the module's allocation. */
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
