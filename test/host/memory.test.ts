// Linear memory access and the UTF-8 conversions of host calls. The host caches its views of the
// memory and decoded strings; these pin down that the caches never show stale or wrong data.
import { describe, expect, it } from "vitest";
import { encodePairs, HeaderMap, MetricStore, MetricType, systemClock } from "../../host/index.ts";
import { utf8Length, WasmMemory } from "../../host/memory.ts";

const PAGE = 65536;
const encoder = new TextEncoder();

/** A memory with a bump allocator; `growEvery` > 0 grows the memory on every n-th allocation. */
function setup(options: { pages?: number; growEvery?: number; shared?: boolean } = {}) {
  const memory = new WebAssembly.Memory({
    initial: options.pages ?? 1,
    maximum: 64,
    ...(options.shared ? { shared: true } : {}),
  });
  let next = 1024;
  let allocations = 0;
  const allocate = (size: number): number => {
    allocations++;
    if (options.growEvery && allocations % options.growEvery === 0) memory.grow(1);
    const ptr = next;
    next += (size + 7) & ~7;
    return ptr;
  };
  return { memory, wasm: new WasmMemory(memory, allocate) };
}

const u8 = (memory: WebAssembly.Memory) => new Uint8Array(memory.buffer);
const u32At = (memory: WebAssembly.Memory, ptr: number) => new DataView(memory.buffer).getUint32(ptr, true);

function put(memory: WebAssembly.Memory, ptr: number, text: string): number {
  const bytes = encoder.encode(text);
  u8(memory).set(bytes, ptr);
  return bytes.byteLength;
}

/** Reads what returnBytes/returnString handed over through the two return addresses. */
function returned(memory: WebAssembly.Memory, ptrPtr: number, sizePtr: number): Uint8Array {
  const ptr = u32At(memory, ptrPtr);
  return u8(memory).slice(ptr, ptr + u32At(memory, sizePtr));
}

describe("WasmMemory", () => {
  it("keeps working when the memory grows (the old buffer is detached)", () => {
    const { memory, wasm } = setup();
    const size = put(memory, 100, "before");
    expect(wasm.readString(100, size)).toBe("before");
    expect(wasm.writeU32(PAGE + 8, 1)).toBe(false); // outside one page
    const old = memory.buffer;
    memory.grow(1);
    expect(old.byteLength).toBe(0); // detached: views over it are now empty
    expect(wasm.readString(100, size)).toBe("before");
    expect(wasm.writeU32(PAGE + 8, 0xdeadbeef)).toBe(true);
    expect(u32At(memory, PAGE + 8)).toBe(0xdeadbeef);
    memory.grow(1);
    expect(wasm.write(16, Uint8Array.of(1, 2, 3))).toBe(true);
    expect([...u8(memory).slice(16, 19)]).toEqual([1, 2, 3]);
    memory.grow(1);
    expect(wasm.writeU64(24, 2n ** 64n + 5n)).toBe(true);
    expect(new DataView(memory.buffer).getBigUint64(24, true)).toBe(5n);
    memory.grow(1);
    expect(wasm.read(100, size)).toEqual(encoder.encode("before"));
    expect(wasm.byteLength()).toBe(5 * PAGE);
    // Empty accesses right after a growth (the cached view is detached and has length 0).
    memory.grow(1);
    expect(wasm.write(0, new Uint8Array(0))).toBe(true);
    expect(wasm.read(0, 0)).toEqual(new Uint8Array(0));
    expect(wasm.readString(0, 0)).toBe("");
    expect(wasm.write(6 * PAGE, new Uint8Array(0))).toBe(true);
    expect(wasm.write(6 * PAGE + 1, new Uint8Array(0))).toBe(false);
  });

  it("writes into the grown memory when the module's allocator grows it", () => {
    const { memory, wasm } = setup({ growEvery: 1 });
    expect(wasm.returnString("x-grown-ü", 0, 4)).toBe(true);
    expect(returned(memory, 0, 4)).toEqual(encoder.encode("x-grown-ü"));
    expect(wasm.returnBytes(Uint8Array.of(9, 8, 7), 8, 12)).toBe(true);
    expect([...returned(memory, 8, 12)]).toEqual([9, 8, 7]);
    expect(wasm.copyIn(Uint8Array.of(5))).toBeGreaterThan(0);
    expect(memory.buffer.byteLength).toBe(4 * PAGE);
  });

  it("sees a shared memory grow (its buffer is replaced, not detached)", () => {
    const { memory, wasm } = setup({ shared: true });
    expect(wasm.writeU32(PAGE + 4, 7)).toBe(false);
    memory.grow(1);
    expect(wasm.writeU32(PAGE + 4, 7)).toBe(true);
    expect(u32At(memory, PAGE + 4)).toBe(7);
    const size = put(memory, PAGE + 16, "shared ✓");
    expect(wasm.readString(PAGE + 16, size)).toBe("shared ✓");
  });

  it("refuses ranges outside the memory and negative values", () => {
    const { wasm } = setup();
    expect(wasm.read(PAGE - 2, 3)).toBeUndefined();
    expect(wasm.readString(PAGE, 1)).toBeUndefined();
    expect(wasm.readString(-1, 1)).toBeUndefined();
    expect(wasm.readString(0, -1)).toBeUndefined();
    expect(wasm.writeU32(PAGE - 3, 0)).toBe(false);
    expect(wasm.writeU64(PAGE - 7, 0n)).toBe(false);
    expect(wasm.write(PAGE - 1, Uint8Array.of(1, 2))).toBe(false);
    expect(wasm.returnString("x", PAGE, 0)).toBe(false);
    expect(wasm.read(PAGE, 0)).toEqual(new Uint8Array(0));
    expect(wasm.readString(PAGE, 0)).toBe("");
  });

  it("hands empty data over as a null pointer without allocating", () => {
    let allocations = 0;
    const memory = new WebAssembly.Memory({ initial: 1 });
    const wasm = new WasmMemory(memory, () => {
      allocations++;
      return 64;
    });
    new DataView(memory.buffer).setUint32(0, 99, true);
    expect(wasm.returnString("", 0, 4)).toBe(true);
    expect(wasm.returnBytes(new Uint8Array(0), 0, 4)).toBe(true);
    expect([u32At(memory, 0), u32At(memory, 4), allocations]).toEqual([0, 0, 0]);
  });

  it("fails when the module's allocator returns 0", () => {
    const memory = new WebAssembly.Memory({ initial: 1 });
    const wasm = new WasmMemory(memory, () => 0);
    expect(wasm.returnString("x", 0, 4)).toBe(false);
    expect(wasm.returnBytes(Uint8Array.of(1), 0, 4)).toBe(false);
  });

  it("reads what is in memory now, not what was there when the same bytes were last read", () => {
    const { memory, wasm } = setup();
    for (const text of ["x-user", "x-usEr", "x-usex", "y-user", "x-user", "", "x-userx"]) {
      const size = put(memory, 200, text);
      expect(wasm.readString(200, size)).toBe(text);
      // The same text at another address reads the same.
      put(memory, 4000, text);
      expect(wasm.readString(4000, size)).toBe(text);
    }
    // Many different strings of the same length (they share cache slots).
    for (let i = 0; i < 2000; i++) {
      const text = `k${String(i).padStart(5, "0")}`;
      expect(wasm.readString(300, put(memory, 300, text))).toBe(text);
    }
  });

  it("decodes valid UTF-8 like TextDecoder, and every ill-formed byte as its own escape", () => {
    const { memory, wasm } = setup();
    const decoder = new TextDecoder("utf-8", { ignoreBOM: true });
    const valid: number[][] = [
      [...encoder.encode("grüße ✓ 日本 \u{1F680}")],
      [0x00, 0x41, 0x00], // NULs are characters too
      [0xef, 0xbb, 0xbf, 0x41], // a BOM is kept
      [...encoder.encode(`${"a".repeat(63)}é`)], // around the short-string bound
      [...encoder.encode("b".repeat(200))],
      [...encoder.encode(`${"c".repeat(100)}ü`)],
    ];
    for (const bytes of valid) {
      u8(memory).set(bytes, 500);
      expect(wasm.readString(500, bytes.length)).toBe(decoder.decode(Uint8Array.from(bytes)));
    }
    // U+DC80 + (byte - 0x80) for each byte of an ill-formed sequence, which encodes back to it.
    const illFormed: [number[], string][] = [
      [[0x61, 0xff, 0x62], "a\udcffb"], // invalid byte
      [[0x74, 0xe9], "t\udce9"], // a Latin-1 é at the end
      [[0xe2, 0x82], "\udce2\udc82"], // truncated sequence
      [[0xed, 0xa0, 0x80], "\udced\udca0\udc80"], // an encoded surrogate
      [[0xc0, 0xaf], "\udcc0\udcaf"], // overlong
      [[0xf4, 0x90, 0x80, 0x80], "\udcf4\udc90\udc80\udc80"], // above U+10FFFF
      [[...encoder.encode("ü"), 0xff, ...encoder.encode("\u{1F680}")], "ü\udcff\u{1F680}"],
      [[...encoder.encode("d".repeat(100)), 0x80], `${"d".repeat(100)}\udc80`],
    ];
    for (const [bytes, text] of illFormed) {
      u8(memory).set(bytes, 500);
      expect(wasm.readString(500, bytes.length)).toBe(text);
      expect(utf8Length(text)).toBe(bytes.length);
      expect(wasm.returnString(text, 0, 4)).toBe(true);
      expect(returned(memory, 0, 4)).toEqual(Uint8Array.from(bytes));
    }
  });

  it("encodes strings without escapes exactly as TextEncoder does, other lone surrogates included", () => {
    const { memory, wasm } = setup();
    const samples = [
      "",
      "ascii",
      "ü",
      "✓",
      "\u{1F680}",
      "a\uD800b", // lone high surrogate
      "\uDC00", // lone low surrogate
      "\uD83D", // high surrogate at the end
      "\uDC00\uD800", // reversed pair: two lone surrogates
      "mixed ü ✓ \u{1F680} \uD800 end",
      "x".repeat(300),
    ];
    let at = 0;
    for (const text of samples) {
      const expected = encoder.encode(text);
      expect(utf8Length(text)).toBe(expected.byteLength);
      expect(wasm.returnString(text, at, at + 4)).toBe(true);
      expect(returned(memory, at, at + 4)).toEqual(expected);
      at += 8;
    }
  });
});

describe("header maps (fast paths)", () => {
  it("lowers ASCII letters only, as Envoy's LowerCaseString", () => {
    const map = new HeaderMap([
      ["X-Ä-Header", "1"],
      ["ÀB", "2"],
      ["already-lower", "3"],
    ]);
    expect(map.pairs().map(([n]) => n)).toEqual(["x-Ä-header", "Àb", "already-lower"]);
    expect(map.get("X-Ä-HEADER")).toBe("1");
    expect(map.get("x-ä-header")).toBeUndefined();
  });

  it("keeps pseudo-headers ahead of regular ones however they arrive", () => {
    const map = new HeaderMap(
      new Map([
        [":method", "GET"],
        ["a", "1"],
        [":path", "/"],
        ["b", "2"],
        [":authority", "h"],
      ]),
    );
    map.replace(":scheme", "https"); // absent: added among the pseudo-headers
    map.add(":method", "POST");
    expect(map.pairs()).toEqual([
      [":method", "GET"],
      [":path", "/"],
      [":authority", "h"],
      [":scheme", "https"],
      [":method", "POST"],
      ["a", "1"],
      ["b", "2"],
    ]);
    map.remove(":METHOD");
    map.setAll([
      ["z", "1"],
      [":status", "200"],
    ]);
    expect(map.pairs()).toEqual([
      [":status", "200"],
      ["z", "1"],
    ]);
  });

  it("hands out copies that later edits do not change", () => {
    const map = new HeaderMap([["a", "1"]]);
    const before = map.pairs();
    map.replace("a", "2");
    map.add("b", "3");
    (before[0] as [string, string])[1] = "mutated";
    expect(before).toEqual([["a", "mutated"]]);
    expect(map.pairs()).toEqual([
      ["a", "2"],
      ["b", "3"],
    ]);
    map.remove("missing");
    expect(map.size).toBe(2);
  });

  it("counts the map's size in UTF-8 bytes", () => {
    const map = new HeaderMap([
      ["x-ü", "✓"],
      ["x", "\u{1F680}"],
    ]);
    expect(map.byteSize()).toBe(encoder.encode("x-ü✓x\u{1F680}").byteLength);
  });

  it("encodes pairs of strings and bytes in the wire format", () => {
    const bytes = encodePairs([
      ["ü", Uint8Array.of(1, 2)],
      [Uint8Array.of(65), "\uD800"],
    ]);
    expect([...bytes]).toEqual([
      ...[2, 0, 0, 0],
      ...[2, 0, 0, 0, 2, 0, 0, 0],
      ...[1, 0, 0, 0, 3, 0, 0, 0],
      ...[0xc3, 0xbc, 0, 1, 2, 0],
      ...[65, 0, 0xef, 0xbf, 0xbd, 0],
    ]);
  });
});

describe("metric store lookups", () => {
  it("keeps a counter and a gauge of the same name apart, counters first by name", () => {
    const store = new MetricStore();
    store.define(MetricType.Gauge, "m");
    store.set(MetricType.Gauge, "m", 5n);
    expect(store.value("m")).toBe(5);
    store.define(MetricType.Counter, "m");
    store.add(MetricType.Counter, "m", 2n);
    store.define(MetricType.Counter, "m"); // redefinition keeps the value
    expect(store.value("m")).toBe(2);
    expect(store.read(MetricType.Gauge, "m")).toBe(5n);
    expect(store.snapshot().map((m) => [m.name, m.type, m.value])).toEqual([
      ["m", "counter", 2],
      ["m", "gauge", 5],
    ]);
    expect(() => store.add(MetricType.Counter, "nope", 1n)).toThrow(/not defined/);
    expect(store.value("nope")).toBeUndefined();
  });
});

describe("system clock", () => {
  it("answers Date.now in nanoseconds", () => {
    const before = BigInt(Date.now()) * 1_000_000n;
    const now = systemClock.now();
    const after = BigInt(Date.now()) * 1_000_000n;
    expect(now >= before && now <= after).toBe(true);
    expect(now % 1_000_000n).toBe(0n);
  });
});
