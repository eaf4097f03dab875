// The memory ceiling of module validation, applied to the binary itself. JavaScript cannot cap a
// memory the module defines, nor see `memory.grow` happen inside a call, so the smoke run executes
// a copy of the module in which
// - the memory's declared maximum is at most the ceiling (the engine then refuses to grow past it,
//   so the control plane never holds more than the ceiling per validation), and
// - every `memory.grow` calls a small function added to the module, which traps when the memory
//   would go past the ceiling and first records the size asked for in an exported global, so that
//   the refusal can say what the module wanted.
// The stored and deployed bytes are the uploaded ones; only the smoke run sees the copy.

/** A WebAssembly page. */
export const PAGE_BYTES = 64 * 1024;

/**
 * The exported global (i64, pages) where the added grow function records a request past the
 * ceiling; 0 while there was none. A name no compiler emits (export names may be any UTF-8).
 */
export const MEMORY_REQUEST_EXPORT = "wasmesh:memory-request";

export interface DeclaredMemory {
  initialPages: number;
  maximumPages?: number;
  shared: boolean;
  /** A 64-bit memory (memory64), which the Proxy-Wasm ABI (32-bit pointers) has no use for. */
  memory64: boolean;
  /** A page size other than 64 KiB (custom-page-sizes), log2 of it. */
  pageSizeLog2?: number;
}

export type LimitedModule =
  /** observed: every memory.grow goes through the added function (else only the maximum is capped). */
  | { bytes: Uint8Array<ArrayBuffer>; observed: true }
  | { bytes: Uint8Array<ArrayBuffer>; observed: false; reason: string };

/** The memories a module defines in its memory section (imported ones are not included). */
export function declaredMemories(bytes: Uint8Array): DeclaredMemory[] {
  const section = sectionsOf(bytes).find((s) => s.id === MEMORY_SECTION);
  if (!section) return [];
  const r = new Reader(section.payload);
  const memories: DeclaredMemory[] = [];
  for (let n = r.u32(); n > 0; n--) memories.push(readLimits(r).memory);
  return memories;
}

/**
 * A copy of `bytes` whose single memory cannot grow past `limitPages` and reports what it asked
 * for past it (see the top of this file). The module must have been validated by the engine and
 * define exactly one 32-bit memory of at most `limitPages` initial pages. When its code uses
 * instructions this decoder does not know, only the maximum is capped (observed: false).
 */
export function limitMemory(bytes: Uint8Array, limitPages: number): LimitedModule {
  const sections = sectionsOf(bytes);
  const capped = sections.map((s) =>
    s.id === MEMORY_SECTION ? { id: s.id, payload: capMemory(s.payload, limitPages) } : s,
  );
  const cappedOnly = (reason: string): LimitedModule => ({
    bytes: assemble(capped),
    observed: false,
    reason,
  });
  try {
    const instrumented = instrumentGrowth(capped, limitPages);
    if (typeof instrumented === "string") return cappedOnly(instrumented);
    const out = assemble(instrumented);
    // Belt and braces: a copy the engine refuses would make a good module look broken.
    if (!WebAssembly.validate(out)) return cappedOnly("the instrumented copy did not validate");
    return { bytes: out, observed: true };
  } catch (error) {
    return cappedOnly(error instanceof Error ? error.message : String(error));
  }
}

/**
 * The module as Envoy is to run it: its memory's declared maximum at most `limitPages` (or its
 * initial size, if larger), so that V8 refuses to grow it past the ceiling, since Envoy has no
 * per-VM memory setting (see translate/extensions.ts). The same bytes when nothing needs capping,
 * or when the memory section is not one this rewrites (memory64, custom page sizes).
 */
export function capMemoryMaximum(bytes: Uint8Array, limitPages: number): Uint8Array {
  try {
    const sections = sectionsOf(bytes);
    const memories = declaredMemories(bytes);
    const capped = (m: DeclaredMemory) =>
      m.maximumPages !== undefined && m.maximumPages <= Math.max(limitPages, m.initialPages);
    if (memories.every(capped)) return bytes;
    const out = assemble(
      sections.map((s) =>
        s.id === MEMORY_SECTION ? { id: s.id, payload: capMemory(s.payload, limitPages) } : s,
      ),
    );
    return WebAssembly.validate(out) ? out : bytes;
  } catch {
    return bytes;
  }
}

// --- sections ------------------------------------------------------------------------------------

const TYPE_SECTION = 1;
const IMPORT_SECTION = 2;
const FUNCTION_SECTION = 3;
const MEMORY_SECTION = 5;
const GLOBAL_SECTION = 6;
const EXPORT_SECTION = 7;
const CODE_SECTION = 10;

/** Where each known section goes (custom sections, id 0, may go anywhere). */
const SECTION_ORDER: Record<number, number> = {
  1: 1,
  2: 2,
  3: 3,
  4: 4,
  5: 5,
  13: 6,
  6: 7,
  7: 8,
  8: 9,
  9: 10,
  12: 11,
  10: 12,
  11: 13,
};

interface Section {
  id: number;
  payload: Uint8Array;
}

function sectionsOf(bytes: Uint8Array): Section[] {
  const r = new Reader(bytes);
  r.at = 8; // magic and version
  const sections: Section[] = [];
  while (!r.done()) {
    const id = r.byte();
    const size = r.u32();
    sections.push({ id, payload: r.take(size) });
  }
  return sections;
}

function assemble(sections: readonly Section[]): Uint8Array<ArrayBuffer> {
  const w = new Writer();
  w.raw(Uint8Array.of(0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00));
  for (const s of sections) {
    w.byte(s.id);
    w.u32(s.payload.byteLength);
    w.raw(s.payload);
  }
  return w.bytes();
}

// --- limits --------------------------------------------------------------------------------------

function readLimits(r: Reader): { memory: DeclaredMemory; flags: number } {
  const flags = r.byte();
  const initialPages = r.u64();
  const maximumPages = flags & 0x01 ? r.u64() : undefined;
  const pageSizeLog2 = flags & 0x08 ? r.u32() : undefined;
  return {
    flags,
    memory: {
      initialPages,
      ...(maximumPages !== undefined ? { maximumPages } : {}),
      shared: (flags & 0x02) !== 0,
      memory64: (flags & 0x04) !== 0,
      ...(pageSizeLog2 !== undefined ? { pageSizeLog2 } : {}),
    },
  };
}

/** The memory section with each memory's maximum at most `limitPages` (or its initial size). */
function capMemory(payload: Uint8Array, limitPages: number): Uint8Array {
  const r = new Reader(payload);
  const w = new Writer();
  const count = r.u32();
  w.u32(count);
  for (let i = 0; i < count; i++) {
    const { memory, flags } = readLimits(r);
    if (memory.memory64 || memory.pageSizeLog2 !== undefined) throw new Error("unsupported memory type");
    // Never below the initial size, which would make the module invalid (validation refuses such
    // a module, but one stored before the ceiling was lowered may have it).
    const cap = Math.max(limitPages, memory.initialPages);
    w.byte(flags | 0x01);
    w.u32(memory.initialPages);
    w.u32(Math.min(memory.maximumPages ?? cap, cap));
  }
  return w.bytes();
}

// --- instrumentation -----------------------------------------------------------------------------

/**
 * Adds the grow function, its type and the request global (exported), and makes every
 * `memory.grow` call the function; a string says why the module cannot be instrumented.
 */
function instrumentGrowth(sections: Section[], limitPages: number): Section[] | string {
  const find = (id: number) => sections.find((s) => s.id === id);
  const types = find(TYPE_SECTION);
  const functions = find(FUNCTION_SECTION);
  const exports = find(EXPORT_SECTION);
  const code = find(CODE_SECTION);
  if (!types || !functions || !exports || !code) return "the module has no code to instrument";

  // Type indices: every entry must be a plain function type (GC's recursion groups hold several).
  const typeReader = new Reader(types.payload);
  const typeCount = typeReader.u32();
  for (let i = 0; i < typeCount; i++) {
    if (typeReader.byte() !== 0x60) return "its type section uses GC type definitions";
    for (let n = typeReader.u32(); n > 0; n--) skipValType(typeReader);
    for (let n = typeReader.u32(); n > 0; n--) skipValType(typeReader);
  }

  let importedFunctions = 0;
  let importedGlobals = 0;
  const imports = find(IMPORT_SECTION);
  if (imports) {
    const r = new Reader(imports.payload);
    for (let n = r.u32(); n > 0; n--) {
      r.name();
      r.name();
      const kind = r.byte();
      if (kind === 0x00) {
        r.u32();
        importedFunctions++;
      } else if (kind === 0x01) {
        skipValType(r);
        readLimits(r);
      } else if (kind === 0x02) {
        readLimits(r);
      } else if (kind === 0x03) {
        skipValType(r);
        r.byte();
        importedGlobals++;
      } else if (kind === 0x04) {
        r.byte();
        r.u32();
      } else {
        return `unknown import kind ${kind}`;
      }
    }
  }

  const functionReader = new Reader(functions.payload);
  const definedFunctions = functionReader.u32();
  const growFunction = importedFunctions + definedFunctions;
  const global = find(GLOBAL_SECTION);
  const definedGlobals = global ? new Reader(global.payload).u32() : 0;
  const requestGlobal = importedGlobals + definedGlobals;

  const exportReader = new Reader(exports.payload);
  const exportCount = exportReader.u32();
  for (let i = 0; i < exportCount; i++) {
    if (exportReader.name() === MEMORY_REQUEST_EXPORT)
      return `the module exports ${MEMORY_REQUEST_EXPORT} itself`;
    exportReader.byte();
    exportReader.u32();
  }

  const codeReader = new Reader(code.payload);
  const bodyCount = codeReader.u32();
  const newCode = new Writer();
  newCode.u32(bodyCount + 1);
  for (let i = 0; i < bodyCount; i++) {
    const body = rewriteBody(codeReader.take(codeReader.u32()), growFunction);
    if (typeof body === "string") return body;
    newCode.u32(body.byteLength);
    newCode.raw(body);
  }
  const grow = growBody(limitPages, requestGlobal);
  newCode.u32(grow.byteLength);
  newCode.raw(grow);

  // (i32) -> i32, as memory.grow.
  const newTypes = appendEntry(types.payload, Uint8Array.of(0x60, 0x01, 0x7f, 0x01, 0x7f));
  const newFunctions = appendEntry(functions.payload, new Writer().u32(typeCount).bytes());
  // (global (mut i64) (i64.const 0))
  const globalEntry = Uint8Array.of(0x7e, 0x01, 0x42, 0x00, 0x0b);
  const newGlobals = global
    ? appendEntry(global.payload, globalEntry)
    : concat(Uint8Array.of(1), globalEntry);
  const exportEntry = new Writer().name(MEMORY_REQUEST_EXPORT).byte(0x03).u32(requestGlobal).bytes();
  const newExports = appendEntry(exports.payload, exportEntry);

  const replaced = new Map<number, Uint8Array>([
    [TYPE_SECTION, newTypes],
    [FUNCTION_SECTION, newFunctions],
    [EXPORT_SECTION, newExports],
    [CODE_SECTION, newCode.bytes()],
  ]);
  if (global) replaced.set(GLOBAL_SECTION, newGlobals);
  const out = sections.map((s) => ({ id: s.id, payload: replaced.get(s.id) ?? s.payload }));
  if (!global) {
    const rank = SECTION_ORDER[GLOBAL_SECTION] as number;
    const at = out.findIndex((s) => s.id !== 0 && (SECTION_ORDER[s.id] ?? 0) > rank);
    out.splice(at < 0 ? out.length : at, 0, { id: GLOBAL_SECTION, payload: newGlobals });
  }
  return out;
}

/**
 * The added function: (param $pages i32) (result i32) (local $want i64)
 *   if memory.size + $pages > limit: record it in the global, then trap
 *   else memory.grow $pages
 */
function growBody(limitPages: number, requestGlobal: number): Uint8Array {
  const w = new Writer();
  w.raw(Uint8Array.of(0x01, 0x01, 0x7e)); // one local, i64
  w.raw(Uint8Array.of(0x20, 0x00, 0xad)); // local.get 0, i64.extend_i32_u
  w.raw(Uint8Array.of(0x3f, 0x00, 0xad)); // memory.size 0, i64.extend_i32_u
  w.raw(Uint8Array.of(0x7c, 0x22, 0x01)); // i64.add, local.tee 1
  w.byte(0x42).s64(limitPages); // i64.const limit
  w.raw(Uint8Array.of(0x56, 0x04, 0x40)); // i64.gt_u, if
  w.raw(Uint8Array.of(0x20, 0x01, 0x24)).u32(requestGlobal); // local.get 1, global.set
  w.raw(Uint8Array.of(0x00, 0x0b)); // unreachable, end
  w.raw(Uint8Array.of(0x20, 0x00, 0x40, 0x00, 0x0b)); // local.get 0, memory.grow 0, end
  return w.bytes();
}

/** A function body with each `memory.grow 0` replaced by `call growFunction`. */
function rewriteBody(body: Uint8Array, growFunction: number): Uint8Array | string {
  const r = new Reader(body);
  for (let n = r.u32(); n > 0; n--) {
    r.u32();
    skipValType(r);
  }
  const w = new Writer();
  let copied = 0;
  while (!r.done()) {
    const start = r.at;
    const op = r.byte();
    if (op === 0x40) {
      const memory = r.u32();
      if (memory !== 0) return "it grows a memory other than its first";
      w.raw(body.subarray(copied, start));
      w.byte(0x10).u32(growFunction);
      copied = r.at;
      continue;
    }
    const problem = skipImmediates(r, op);
    if (problem) return problem;
  }
  w.raw(body.subarray(copied));
  return w.bytes();
}

/** Skips the immediates of instruction `op`; a string names an instruction this decoder lacks. */
function skipImmediates(r: Reader, op: number): string | undefined {
  if ((op >= 0x45 && op <= 0xc4) || NO_IMMEDIATES.has(op)) return;
  if (ONE_INDEX.has(op)) {
    r.u32();
    return;
  }
  if (op >= 0x28 && op <= 0x3e) {
    skipMemarg(r);
    return;
  }
  switch (op) {
    case 0x02: // block
    case 0x03: // loop
    case 0x04: // if
    case 0x06: // try (legacy exceptions)
      skipBlockType(r);
      return;
    case 0x0e: // br_table
      for (let n = r.u32() + 1; n > 0; n--) r.u32();
      return;
    case 0x11: // call_indirect
    case 0x13: // return_call_indirect
      r.u32();
      r.u32();
      return;
    case 0x1c: // select t*
      for (let n = r.u32(); n > 0; n--) skipValType(r);
      return;
    case 0x1f: // try_table
      skipBlockType(r);
      for (let n = r.u32(); n > 0; n--) {
        const kind = r.byte();
        if (kind <= 0x01) r.u32(); // catch, catch_ref: a tag
        r.u32(); // the label
      }
      return;
    case 0x41:
    case 0x42:
      r.sleb();
      return;
    case 0x43:
      r.take(4);
      return;
    case 0x44:
      r.take(8);
      return;
    case 0xd0: // ref.null
      skipHeapType(r);
      return;
    case 0xfb:
      return skipGc(r, r.u32());
    case 0xfc:
      return skipMisc(r, r.u32());
    case 0xfd:
      return skipSimd(r, r.u32());
    case 0xfe:
      return skipAtomic(r, r.u32());
  }
  return `instruction 0x${op.toString(16)} is unknown to the validator`;
}

/** unreachable, nop, else, throw_ref, end, return, catch_all, drop, select, ref.is_null, ref.as_non_null, ref.eq. */
const NO_IMMEDIATES = new Set([0x00, 0x01, 0x05, 0x0a, 0x0b, 0x0f, 0x19, 0x1a, 0x1b, 0xd1, 0xd3, 0xd6]);
/**
 * One index or label: catch, throw, rethrow, br, br_if, call, return_call, call_ref,
 * return_call_ref, delegate, local.*, global.*, table.get/set, memory.size, ref.func,
 * br_on_null, br_on_non_null.
 */
const ONE_INDEX = new Set([
  0x07, 0x08, 0x09, 0x0c, 0x0d, 0x10, 0x12, 0x14, 0x15, 0x18, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x3f,
  0xd2, 0xd4, 0xd5,
]);

function skipGc(r: Reader, sub: number): string | undefined {
  if (sub === 15 || (sub >= 26 && sub <= 30)) return; // array.len, conversions, i31
  if ([0, 1, 6, 7, 11, 12, 13, 14, 16].includes(sub)) {
    r.u32();
    return;
  }
  if ([2, 3, 4, 5, 8, 9, 10, 17, 18, 19].includes(sub)) {
    r.u32();
    r.u32();
    return;
  }
  if (sub >= 20 && sub <= 23) {
    skipHeapType(r);
    return;
  }
  if (sub === 24 || sub === 25) {
    r.byte();
    r.u32();
    skipHeapType(r);
    skipHeapType(r);
    return;
  }
  return `instruction 0xfb ${sub} is unknown to the validator`;
}

function skipMisc(r: Reader, sub: number): string | undefined {
  if (sub <= 7) return; // saturating truncations
  if ([8, 10, 12, 14].includes(sub)) {
    r.u32();
    r.u32();
    return;
  }
  if ([9, 11, 13, 15, 16, 17].includes(sub)) {
    r.u32();
    return;
  }
  return `instruction 0xfc ${sub} is unknown to the validator`;
}

function skipSimd(r: Reader, sub: number): string | undefined {
  if (sub <= 11 || sub === 92 || sub === 93) {
    skipMemarg(r);
  } else if (sub === 12 || sub === 13) {
    r.take(16);
  } else if (sub >= 21 && sub <= 34) {
    r.byte();
  } else if (sub >= 84 && sub <= 91) {
    skipMemarg(r);
    r.byte();
  } else if (sub > 0x113) {
    return `instruction 0xfd ${sub} is unknown to the validator`;
  }
  return;
}

function skipAtomic(r: Reader, sub: number): string | undefined {
  if (sub === 0x03) {
    r.byte(); // atomic.fence
    return;
  }
  if (sub > 0x4e) return `instruction 0xfe ${sub} is unknown to the validator`;
  skipMemarg(r);
  return;
}

function skipMemarg(r: Reader): void {
  const align = r.u32();
  if (align & 0x40) r.u32(); // multi-memory: the memory index
  r.u64(); // offset (64-bit for memory64)
}

/** A value type: one byte, or (ref null? heaptype). */
function skipValType(r: Reader): void {
  const b = r.byte();
  if (b === 0x63 || b === 0x64) skipHeapType(r);
}

function skipHeapType(r: Reader): void {
  r.sleb();
}

function skipBlockType(r: Reader): void {
  const b = r.peek();
  if (b === 0x63 || b === 0x64) {
    r.byte();
    skipHeapType(r);
  } else {
    r.sleb(); // 0x40, a one-byte value type, or a type index
  }
}

/** A vector's payload with one more entry. */
function appendEntry(payload: Uint8Array, entry: Uint8Array): Uint8Array {
  const r = new Reader(payload);
  const count = r.u32();
  return concat(new Writer().u32(count + 1).bytes(), payload.subarray(r.at), entry);
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const w = new Writer();
  for (const part of parts) w.raw(part);
  return w.bytes();
}

// --- bytes ---------------------------------------------------------------------------------------

class Reader {
  at = 0;
  private readonly buf: Uint8Array;

  constructor(buf: Uint8Array) {
    this.buf = buf;
  }

  done(): boolean {
    return this.at >= this.buf.byteLength;
  }

  peek(): number {
    if (this.done()) throw new Error("unexpected end of the module");
    return this.buf[this.at] as number;
  }

  byte(): number {
    const b = this.peek();
    this.at++;
    return b;
  }

  take(n: number): Uint8Array {
    if (this.at + n > this.buf.byteLength) throw new Error("unexpected end of the module");
    const part = this.buf.subarray(this.at, this.at + n);
    this.at += n;
    return part;
  }

  /** An unsigned LEB128 of up to 64 bits, as a number (exact up to 2^53). */
  u64(): number {
    let result = 0;
    let scale = 1;
    for (;;) {
      const b = this.byte();
      result += (b & 0x7f) * scale;
      if ((b & 0x80) === 0) return result;
      scale *= 128;
    }
  }

  u32(): number {
    return this.u64();
  }

  /** Skips a signed LEB128 (its value is never needed). */
  sleb(): void {
    while (this.byte() & 0x80);
  }

  name(): string {
    return new TextDecoder().decode(this.take(this.u32()));
  }
}

class Writer {
  private buf = new Uint8Array(64);
  private length = 0;

  private room(n: number): void {
    if (this.length + n <= this.buf.byteLength) return;
    const next = new Uint8Array(Math.max(this.buf.byteLength * 2, this.length + n));
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
  }

  byte(b: number): this {
    this.room(1);
    this.buf[this.length++] = b & 0xff;
    return this;
  }

  u32(value: number): this {
    let v = value;
    do {
      const b = v % 128;
      v = Math.floor(v / 128);
      this.byte(v > 0 ? b | 0x80 : b);
    } while (v > 0);
    return this;
  }

  /** A signed LEB128 of a non-negative value. */
  s64(value: number): this {
    let v = value;
    for (;;) {
      const b = v % 128;
      v = Math.floor(v / 128);
      // Done once the rest is zero and the sign bit (0x40) of this byte is clear.
      if (v === 0 && (b & 0x40) === 0) return this.byte(b);
      this.byte(b | 0x80);
    }
  }

  name(text: string): this {
    const bytes = new TextEncoder().encode(text);
    this.u32(bytes.byteLength);
    return this.raw(bytes);
  }

  raw(bytes: Uint8Array): this {
    this.room(bytes.byteLength);
    this.buf.set(bytes, this.length);
    this.length += bytes.byteLength;
    return this;
  }

  bytes(): Uint8Array<ArrayBuffer> {
    return this.buf.slice(0, this.length);
  }
}
