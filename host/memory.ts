// Access to a module's linear memory. Views are made afresh for every access because any call into
// the module (an allocation above all) may grow the memory and detach the previous ArrayBuffer.

const encoder = new TextEncoder();
const decoder = new TextDecoder();

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

export class WasmMemory {
  private readonly memory: WebAssembly.Memory;
  /** The module's allocator (`malloc` or `proxy_on_memory_allocate`); returns 0 on failure. */
  private readonly allocate: (size: number) => number;

  constructor(memory: WebAssembly.Memory, allocate: (size: number) => number) {
    this.memory = memory;
    this.allocate = allocate;
  }

  /** Current size of the linear memory. */
  byteLength(): number {
    return this.memory.buffer.byteLength;
  }

  private view(): Uint8Array {
    return new Uint8Array(this.memory.buffer);
  }

  private inBounds(ptr: number, size: number): boolean {
    return ptr >= 0 && size >= 0 && ptr + size <= this.memory.buffer.byteLength;
  }

  /** A copy of `size` bytes at `ptr`, or undefined when the range is outside the memory. */
  read(ptr: number, size: number): Uint8Array | undefined {
    if (!this.inBounds(ptr, size)) return undefined;
    return this.view().slice(ptr, ptr + size);
  }

  readString(ptr: number, size: number): string | undefined {
    const bytes = this.read(ptr, size);
    return bytes === undefined ? undefined : fromUtf8(bytes);
  }

  writeU32(ptr: number, value: number): boolean {
    if (!this.inBounds(ptr, 4)) return false;
    new DataView(this.memory.buffer).setUint32(ptr, value >>> 0, true);
    return true;
  }

  writeU64(ptr: number, value: bigint): boolean {
    if (!this.inBounds(ptr, 8)) return false;
    new DataView(this.memory.buffer).setBigUint64(ptr, BigInt.asUintN(64, value), true);
    return true;
  }

  write(ptr: number, data: Uint8Array): boolean {
    if (!this.inBounds(ptr, data.byteLength)) return false;
    this.view().set(data, ptr);
    return true;
  }

  /** Copies bytes into memory the module allocates; 0 for empty data, undefined on failure. */
  copyIn(data: Uint8Array): number | undefined {
    if (data.byteLength === 0) return 0;
    const ptr = this.allocate(data.byteLength) >>> 0;
    if (ptr === 0) return undefined;
    // write() makes a fresh view: the allocation may have grown the memory.
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
}
