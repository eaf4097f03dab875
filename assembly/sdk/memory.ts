// Memory the host writes into, and the conversions between host bytes and AssemblyScript values.

// Out-parameter slots for host calls. Calls never nest (the host is single-threaded per VM and
// does not call back into the module while a host call runs), so one static set is enough.
export const RETURN_DATA: usize = memory.data(8);
export const RETURN_SIZE: usize = memory.data(8);
export const RETURN_U32: usize = memory.data(8);
export const RETURN_U64: usize = memory.data(8);

/**
 * Called by the host to obtain memory for the data it returns. The block is unmanaged (outside the
 * GC) so a collection between the host's copy and our read cannot free it; `takeBuffer` frees it.
 */
export function proxy_on_memory_allocate(size: usize): usize {
  return heap.alloc(size == 0 ? 1 : size);
}

/** Moves the block the host just returned (RETURN_DATA/RETURN_SIZE) into a managed ArrayBuffer. */
export function takeBuffer(): ArrayBuffer {
  const ptr = load<usize>(RETURN_DATA);
  const size = load<u32>(RETURN_SIZE);
  const out = new ArrayBuffer(size);
  if (size > 0) memory.copy(changetype<usize>(out), ptr, size);
  if (ptr != 0) heap.free(ptr);
  return out;
}

/** Like takeBuffer, decoded as UTF-8 without an intermediate ArrayBuffer. */
export function takeString(): string {
  const ptr = load<usize>(RETURN_DATA);
  const size = load<u32>(RETURN_SIZE);
  const out = size > 0 ? String.UTF8.decodeUnsafe(ptr, size) : "";
  if (ptr != 0) heap.free(ptr);
  return out;
}

/** Clears the out-parameters so a host that returns NotFound cannot leave a stale pointer behind. */
export function resetReturn(): void {
  store<usize>(RETURN_DATA, 0);
  store<u32>(RETURN_SIZE, 0);
}

export function utf8(s: string): ArrayBuffer {
  return String.UTF8.encode(s);
}

export function ptrOf(buffer: ArrayBuffer): usize {
  return changetype<usize>(buffer);
}
