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

/** Like takeBuffer, decoded by decodeText without an intermediate ArrayBuffer. */
export function takeString(): string {
  const ptr = load<usize>(RETURN_DATA);
  const size = load<u32>(RETURN_SIZE);
  const out = decodeText(ptr, size);
  if (ptr != 0) heap.free(ptr);
  return out;
}

/** Clears the out-parameters so a host that returns NotFound cannot leave a stale pointer behind. */
export function resetReturn(): void {
  store<usize>(RETURN_DATA, 0);
  store<u32>(RETURN_SIZE, 0);
}

/** The bytes of `s` for the host: see encodeText. */
export function utf8(s: string): ArrayBuffer {
  return encodeText(s);
}

// Bytes from the proxy, above all header names and values, are not always UTF-8: HTTP allows any
// byte from 0x80 in a header value, and Envoy passes them on as they came. Strings made of them
// must keep them: a rule `exact: tester` must not match `tester\xff`, which a lenient decoder
// (String.UTF8.decodeUnsafe drops a trailing lead byte) or a replacing one (U+FFFD for every bad
// byte) would let through. So bytes are decoded losslessly, as Python's "surrogateescape" does:
// valid UTF-8 as text, and each byte of an ill-formed sequence as the lone surrogate U+DC80 +
// (byte - 0x80), which no valid UTF-8 decodes to. Distinct bytes make distinct strings, and
// encodeText gives the bytes back. Text from a valid configuration (which has no lone surrogates)
// equals, starts, ends or occurs in such a string exactly when its UTF-8 does in the bytes.

/** A byte's escape: U+DC80 to U+DCFF. */
const ESCAPE: u32 = 0xdc00;

/** `size` bytes at `ptr` as a string, losslessly (see above). */
export function decodeText(ptr: usize, size: usize): string {
  if (size == 0) return "";
  // At most one code unit per byte (four bytes make two units).
  const out = __new(size << 1, idof<string>());
  let dst = out;
  let src = ptr;
  const end = ptr + size;
  while (src < end) {
    const b0 = <u32>load<u8>(src);
    if (b0 < 0x80) {
      store<u16>(dst, <u16>b0);
      src += 1;
      dst += 2;
      continue;
    }
    const left = end - src;
    // The ranges of well-formed UTF-8 (Unicode Table 3-7): no overlong forms, no surrogates,
    // nothing above U+10FFFF.
    if (b0 >= 0xc2 && b0 <= 0xdf && left >= 2) {
      const b1 = <u32>load<u8>(src, 1);
      if ((b1 & 0xc0) == 0x80) {
        store<u16>(dst, <u16>(((b0 & 0x1f) << 6) | (b1 & 0x3f)));
        src += 2;
        dst += 2;
        continue;
      }
    } else if (b0 >= 0xe0 && b0 <= 0xef && left >= 3) {
      const b1 = <u32>load<u8>(src, 1);
      const b2 = <u32>load<u8>(src, 2);
      const low: u32 = b0 == 0xe0 ? 0xa0 : 0x80;
      const high: u32 = b0 == 0xed ? 0x9f : 0xbf;
      if (b1 >= low && b1 <= high && (b2 & 0xc0) == 0x80) {
        store<u16>(dst, <u16>(((b0 & 0x0f) << 12) | ((b1 & 0x3f) << 6) | (b2 & 0x3f)));
        src += 3;
        dst += 2;
        continue;
      }
    } else if (b0 >= 0xf0 && b0 <= 0xf4 && left >= 4) {
      const b1 = <u32>load<u8>(src, 1);
      const b2 = <u32>load<u8>(src, 2);
      const b3 = <u32>load<u8>(src, 3);
      const low: u32 = b0 == 0xf0 ? 0x90 : 0x80;
      const high: u32 = b0 == 0xf4 ? 0x8f : 0xbf;
      if (b1 >= low && b1 <= high && (b2 & 0xc0) == 0x80 && (b3 & 0xc0) == 0x80) {
        const cp = (((b0 & 0x07) << 18) | ((b1 & 0x3f) << 12) | ((b2 & 0x3f) << 6) | (b3 & 0x3f)) - 0x10000;
        store<u16>(dst, <u16>(0xd800 | (cp >> 10)));
        store<u16>(dst, <u16>(0xdc00 | (cp & 0x3ff)), 2);
        src += 4;
        dst += 4;
        continue;
      }
    }
    // Ill-formed here: this byte alone is escaped, and decoding goes on at the next one.
    store<u16>(dst, <u16>(ESCAPE | b0));
    src += 1;
    dst += 2;
  }
  return changetype<string>(__renew(out, dst - out));
}

/**
 * The bytes decodeText made `s` from: UTF-8, with each lone U+DC80 to U+DCFF as its byte. Any
 * other lone surrogate (decodeText never makes one) is U+FFFD, as TextEncoder writes it.
 */
export function encodeText(s: string): ArrayBuffer {
  const units = <usize>s.length;
  const base = changetype<usize>(s);
  let size: usize = 0;
  for (let i: usize = 0; i < units; i++) {
    const c = <u32>load<u16>(base + (i << 1));
    if (c < 0x80 || (c >= 0xdc80 && c <= 0xdcff)) size += 1;
    else if (c < 0x800) size += 2;
    else if (isPairAt(base, i, units, c)) {
      size += 4;
      i++;
    } else size += 3;
  }
  const out = new ArrayBuffer(<i32>size);
  let dst = changetype<usize>(out);
  if (size == units) {
    // ASCII and escapes only (the usual case): the low byte of each unit is the byte.
    for (let i: usize = 0; i < units; i++) store<u8>(dst + i, <u8>load<u16>(base + (i << 1)));
    return out;
  }
  for (let i: usize = 0; i < units; i++) {
    let c = <u32>load<u16>(base + (i << 1));
    if (c < 0x80 || (c >= 0xdc80 && c <= 0xdcff)) {
      store<u8>(dst, <u8>c);
      dst += 1;
    } else if (c < 0x800) {
      store<u8>(dst, <u8>(0xc0 | (c >> 6)));
      store<u8>(dst, <u8>(0x80 | (c & 0x3f)), 1);
      dst += 2;
    } else if (isPairAt(base, i, units, c)) {
      const cp = 0x10000 + (((c & 0x3ff) << 10) | (<u32>load<u16>(base + ((i + 1) << 1)) & 0x3ff));
      store<u8>(dst, <u8>(0xf0 | (cp >> 18)));
      store<u8>(dst, <u8>(0x80 | ((cp >> 12) & 0x3f)), 1);
      store<u8>(dst, <u8>(0x80 | ((cp >> 6) & 0x3f)), 2);
      store<u8>(dst, <u8>(0x80 | (cp & 0x3f)), 3);
      dst += 4;
      i++;
    } else {
      if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd;
      store<u8>(dst, <u8>(0xe0 | (c >> 12)));
      store<u8>(dst, <u8>(0x80 | ((c >> 6) & 0x3f)), 1);
      store<u8>(dst, <u8>(0x80 | (c & 0x3f)), 2);
      dst += 3;
    }
  }
  return out;
}

/** Whether the unit `c` at `i` is a high surrogate followed by a low one. */
function isPairAt(base: usize, i: usize, units: usize, c: u32): bool {
  if (c < 0xd800 || c > 0xdbff || i + 1 >= units) return false;
  const next = <u32>load<u16>(base + ((i + 1) << 1));
  return next >= 0xdc00 && next <= 0xdfff;
}

export function ptrOf(buffer: ArrayBuffer): usize {
  return changetype<usize>(buffer);
}
