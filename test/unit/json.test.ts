// assembly/lib/json.ts through the AssemblyScript probe module (test/fixtures/lib-probe).
import { beforeAll, describe, expect, it } from "vitest";
import { type LibProbe, loadLibProbe } from "../fixtures/lib-probe/load.ts";

let probe: LibProbe;

beforeAll(async () => {
  probe = await loadLibProbe();
});

function parse(text: string): unknown {
  const r = probe.jsonParse(text);
  if (r.error !== undefined) throw new Error(`unexpected parse error: ${r.error}`);
  return r.value;
}

function error(text: string): { error: string; offset: number } {
  const r = probe.jsonParse(text);
  if (r.error === undefined) throw new Error(`expected an error for ${JSON.stringify(text)}`);
  return r;
}

/** A deterministic pseudo-random generator (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe("parseJson: valid documents agree with JSON.parse", () => {
  const documents = [
    "null",
    "true",
    "false",
    "0",
    '""',
    "[]",
    "{}",
    " \t\r\n[ \t\r\n1 \t\r\n, \t\r\n2 \t\r\n] \t\r\n",
    '{"a":1,"b":[true,false,null],"c":{"d":"e"}}',
    '[[[[[]]]],{},[{}],{"a":{}}]',
    '{"routes":[{"name":"canary","destinations":[{"cluster":"v1","weight":90},{"cluster":"v2","weight":10}]}]}',
    '"plain ascii / with slash"',
    '"\\"\\\\\\/\\b\\f\\n\\r\\t"',
    '"\\u0000\\u001f\\u0041\\u00e9\\u00E9\\u20AC\\uffff"',
    '"\\ud83d\\ude00 \\uD834\\uDD1E"',
    '"raw é € 😀 中文"',
    '"mixed \\n raw é then \\u00e9 then 😀 \\ud83d\\ude00 end"',
    '{"":"empty key","é":"non-ascii key","a\\nb":"escaped key"}',
    '["\\u0022", "\\u005c"]',
    `"${"x".repeat(10000)}"`,
    `[${Array.from({ length: 1000 }, (_, i) => i).join(",")}]`,
  ];
  const named = documents.map((d) => [d.length > 60 ? `${d.slice(0, 60)}... (${d.length} chars)` : d, d]);
  it.each(named)("%s", (_, text) => {
    expect(parse(text)).toEqual(JSON.parse(text));
  });

  it("numbers: every form of the grammar, bit for bit", () => {
    const numbers = [
      "0",
      "-0",
      "1",
      "-1",
      "42",
      "100",
      "123456789012345",
      "999999999999999",
      "1234567890123456",
      "9007199254740992",
      "9007199254740993",
      "18446744073709551616",
      "123456789012345678901234567890",
      "0.5",
      "-0.0",
      "0.1",
      "0.2",
      "0.30000000000000004",
      "3.141592653589793",
      "10.25",
      "1e0",
      "1e10",
      "1E10",
      "1e+10",
      "1e-7",
      "1E-7",
      "-2.5e-3",
      "123.456e-7",
      "6.02214076e23",
      "1.5e300",
      "1.7976931348623157e308",
      "2.2250738585072014e-308",
      "4.9e-324",
      "5e-324",
      "1e-400",
      "0e0",
      "0.000001",
      "99.99",
    ];
    for (const text of numbers) {
      expect(Object.is(parse(text), JSON.parse(text)), `${text}: got ${parse(text)}`).toBe(true);
    }
  });

  it("numbers: correctly rounded in the hard cases (halfway, long, subnormal, near overflow)", () => {
    const half = "1.00000000000000011102230246251565404236316680908203125"; // exactly 1 + 2^-53
    const numbers = [
      "9007199254740993", // halfway between 2^53 and 2^53 + 2: ties to even
      "9007199254740995",
      "9007199254740993.0000000000000000001",
      half,
      `${half}1`,
      `${half}${"0".repeat(900)}1`, // the digit that breaks the tie is beyond the 800 kept
      `${half}${"0".repeat(900)}`,
      `1${"0".repeat(900)}e-900`,
      `0.${"0".repeat(400)}1`,
      `0.${"0".repeat(300)}1e300`,
      "2.4703282292062327e-324", // just under half the smallest subnormal: 0
      "2.4703282292062328e-324", // just over: the smallest subnormal
      "2.2250738585072011e-308", // largest subnormal region
      "2.2250738585072012e-308",
      "1.7976931348623158e308", // rounds down to the largest finite double
      "1.7976931348623157081e308",
      "4.35679556489e-310",
      "123456789012345678901234567890e-30",
      "0.000000000000000000000000000000000000000000001e45",
      "7.2057594037927933e16",
      "1e23",
      "8.98846567431158e307",
      "3.0e-44",
    ];
    for (const text of numbers) {
      expect(Object.is(parse(text), JSON.parse(text)), `${text.slice(0, 60)}: got ${parse(text)}`).toBe(true);
    }
    expect(error("1.7976931348623159e308").error).toBe("JSON.parse: number out of range at offset 0");
    expect(error(`1${"0".repeat(400)}`).error).toBe("JSON.parse: number out of range at offset 0");
    expect(error("1e99999999999999999999").error).toBe("JSON.parse: number out of range at offset 0");
    expect(Object.is(parse("-1e-99999999999999999999"), -0)).toBe(true);
  });

  it("numbers: random doubles round-trip bit for bit (shortest, 17+ digit and long forms)", () => {
    const random = rng(42);
    const view = new DataView(new ArrayBuffer(8));
    const texts: string[] = [];
    while (texts.length < 6000) {
      view.setUint32(0, Math.floor(random() * 2 ** 32));
      view.setUint32(4, Math.floor(random() * 2 ** 32));
      const x = Math.abs(view.getFloat64(0));
      const y = random() * 10 ** Math.floor(random() * 40 - 20);
      if (Number.isFinite(x)) texts.push(String(x), x.toPrecision(21));
      texts.push(String(y), y.toPrecision(18), y.toExponential(25));
    }
    const doc = `[${texts.join(",")}]`;
    const ours = parse(doc) as number[];
    const expected = JSON.parse(doc) as number[];
    const wrong = texts.filter((_, i) => !Object.is(ours[i], expected[i]));
    expect(wrong).toEqual([]);
  });

  it("keeps keys in document order (JsonObject.keys), including integer-like keys", () => {
    expect(probe.jsonLookup('{"b":1,"a":2,"10":3,"2":4}', "a")).toBe(
      'has|["num","4000000000000000"]|b,a,10,2',
    );
    expect(probe.jsonLookup('{"b":1}', "zz")).toBe("missing|null|b");
    expect(probe.jsonLookup("{}", "")).toBe("missing|null|");
    expect(probe.jsonLookup('{"":null}', "")).toBe('has|["null"]|');
    expect(probe.jsonLookup("[1]", "a")).toBe("not an object");
  });

  it("skips a leading byte order mark (JSON.parse does not)", () => {
    expect(parse("\ufeff[1]")).toEqual([1]);
    expect(error("\ufeff[1,]")).toEqual({
      error: "JSON.parse: unexpected ']' at offset 6, expected a value",
      offset: 6,
    });
  });
});

describe("parseJson: errors say what and where (UTF-8 byte offset)", () => {
  const cases: [string, string][] = [
    ["", "unexpected end of input at offset 0, expected a value"],
    ["   ", "unexpected end of input at offset 3, expected a value"],
    ["{routes: [", "unexpected 'r' at offset 1, expected a string key"],
    ['{"a":1,}', "unexpected '}' at offset 7, expected a string key"],
    ["[1,]", "unexpected ']' at offset 3, expected a value"],
    ["[1 2]", "unexpected '2' at offset 3, expected ',' or ']'"],
    ['{"a" 1}', "unexpected '1' at offset 5, expected ':'"],
    ['{"a":1 "b":2}', "unexpected '\"' at offset 7, expected ',' or '}'"],
    ['{"a":1]', "unexpected ']' at offset 6, expected ',' or '}'"],
    ["[1}", "unexpected '}' at offset 2, expected ',' or ']'"],
    ["[", "unexpected end of input at offset 1, expected a value"],
    ['{"a":', "unexpected end of input at offset 5, expected a value"],
    ["{", "unexpected end of input at offset 1, expected a string key"],
    ["[1", "unexpected end of input at offset 2, expected ',' or ']'"],
    ["{1:2}", "unexpected '1' at offset 1, expected a string key"],
    ["{'a':1}", "unexpected ''' at offset 1, expected a string key"],
    ["[1] x", "unexpected 'x' at offset 4, expected end of input"],
    ["[1]]", "unexpected ']' at offset 3, expected end of input"],
    ["1 2", "unexpected '2' at offset 2, expected end of input"],
    ["{}{}", "unexpected '{' at offset 2, expected end of input"],
    ["nul", "unexpected end of input at offset 3, expected 'null'"],
    ["nulL", "unexpected 'L' at offset 3, expected 'null'"],
    ["tru", "unexpected end of input at offset 3, expected 'true'"],
    ["True", "unexpected 'T' at offset 0, expected a value"],
    ["falsey", "unexpected 'y' at offset 5, expected end of input"],
    ["undefined", "unexpected 'u' at offset 0, expected a value"],
    ["NaN", "unexpected 'N' at offset 0, expected a value"],
    ["Infinity", "unexpected 'I' at offset 0, expected a value"],
    ["-Infinity", "unexpected 'I' at offset 1, expected a digit"],
    ["+1", "unexpected '+' at offset 0, expected a value"],
    [".5", "unexpected '.' at offset 0, expected a value"],
    ["-", "unexpected end of input at offset 1, expected a digit"],
    ["01", "leading zero in number at offset 0"],
    ["-012", "leading zero in number at offset 1"],
    ["1.", "unexpected end of input at offset 2, expected a digit"],
    ["1.e5", "unexpected 'e' at offset 2, expected a digit"],
    ["1e", "unexpected end of input at offset 2, expected a digit"],
    ["1e+", "unexpected end of input at offset 3, expected a digit"],
    ["[1ex]", "unexpected 'x' at offset 3, expected a digit"],
    ["0x10", "unexpected 'x' at offset 1, expected end of input"],
    ["1e400", "number out of range at offset 0"],
    ["[-1.8e308]", "number out of range at offset 1"],
    ['"abc', "unterminated string at offset 0"],
    ['["ok", "abc\\"]', "unterminated string at offset 7"],
    ['"ab\\', "unterminated string at offset 0"],
    ['"a\\x"', "invalid escape '\\x' at offset 2"],
    ['"a\\U0041"', "invalid escape '\\U' at offset 2"],
    ['"a\\\'"', "invalid escape '\\'' at offset 2"],
    ['"\\u12G4"', "invalid \\u escape (expected 4 hex digits) at offset 1"],
    ['"\\u12"', "invalid \\u escape (expected 4 hex digits) at offset 1"],
    ['"\\u', "invalid \\u escape (expected 4 hex digits) at offset 1"],
    ['"a\nb"', "control character U+000A in string at offset 2"],
    ['"\t"', "control character U+0009 in string at offset 1"],
    ['"\u0000"', "control character U+0000 in string at offset 1"],
    ['"\\ud800"', "unpaired surrogate U+D800 in string at offset 1"],
    ['"\\udc00\\ud800"', "unpaired surrogate U+DC00 in string at offset 1"],
    ['"\\ud83d\\u0041"', "unpaired surrogate U+D83D in string at offset 1"],
    ['"\\ud83dx"', "unpaired surrogate U+D83D in string at offset 1"],
    ['"\\ud83d\\ud83d"', "unpaired surrogate U+D83D in string at offset 1"],
    ['"\\ud83d\\uZZZZ"', "invalid \\u escape (expected 4 hex digits) at offset 7"],
    ['"x\ud800y"', "unpaired surrogate U+D800 in string at offset 2"],
    ['"x\udc00"', "unpaired surrogate U+DC00 in string at offset 2"],
    ['{"a":1,"b":2,"a":3}', 'duplicate key "a" at offset 13'],
    ['{"a":{"x":1,"x":1}}', 'duplicate key "x" at offset 12'],
    ['{"\\u0061":1,"a":2}', 'duplicate key "a" at offset 12'],
    ["\u00a0[]", "unexpected U+00A0 at offset 0, expected a value"],
    ["[\u000b]", "unexpected U+000B at offset 1, expected a value"],
    ["[1,\u2028]", "unexpected U+2028 at offset 3, expected a value"],
    // Offsets count UTF-8 bytes: é is 2 bytes, € 3, 😀 4.
    ['["é", x]', "unexpected 'x' at offset 7, expected a value"],
    ['["€😀", x]', "unexpected 'x' at offset 12, expected a value"],
    ['{"é":1,"é":2}', 'duplicate key "é" at offset 8'],
  ];
  it.each(cases)("%j", (text, message) => {
    const r = error(text);
    expect(r.error).toBe(`JSON.parse: ${message}`);
    expect(r.offset).toBe(Number(/at offset (\d+)/.exec(message)?.[1]));
    expect(r.offset).toBeLessThanOrEqual(Buffer.byteLength(text));
  });

  it("JSON.parse rejects these too, except for our deliberate limits", () => {
    for (const [text, message] of cases) {
      // Duplicate keys, numbers that overflow to Infinity and unpaired surrogates: JSON.parse accepts them.
      if (/duplicate key|out of range|unpaired surrogate/.test(message))
        expect(() => JSON.parse(text), text).not.toThrow();
      else expect(() => JSON.parse(text), text).toThrow();
    }
  });
});

describe("parseJson: nesting limit", () => {
  it("accepts 64 nested arrays or objects and rejects 65, at the offending bracket", () => {
    expect(parse(`${"[".repeat(64)}${"]".repeat(64)}`)).toEqual(
      JSON.parse(`${"[".repeat(64)}${"]".repeat(64)}`),
    );
    expect(error(`${"[".repeat(65)}${"]".repeat(65)}`)).toEqual({
      error: "JSON.parse: nesting deeper than 64 levels at offset 64",
      offset: 64,
    });
    const objects = (n: number) => `${'{"a":'.repeat(n)}1${"}".repeat(n)}`;
    expect(parse(objects(64))).toEqual(JSON.parse(objects(64)));
    expect(error(objects(65)).error).toBe("JSON.parse: nesting deeper than 64 levels at offset 320");
    const mixed = `${'[{"a":'.repeat(32)}0${"}]".repeat(32)}`;
    expect(parse(mixed)).toEqual(JSON.parse(mixed));
    expect(error(`[${mixed}]`).error).toBe("JSON.parse: nesting deeper than 64 levels at offset 188");
  });

  it("does not trap on hostile depth or size", () => {
    expect(error("[".repeat(200_000)).offset).toBe(64);
    expect(error('{"a":'.repeat(100_000)).offset).toBe(320);
    const wide = `[${"[],".repeat(50_000)}[]]`;
    expect((parse(wide) as unknown[]).length).toBe(50_001);
  });
});

describe("parseJsonBytes: UTF-8 input", () => {
  const bytes = (...b: number[]) => new Uint8Array(b);
  const utf8 = (s: string) => new TextEncoder().encode(s);

  it("parses valid UTF-8, multi-byte characters included", () => {
    const text = '{"é":"€😀","k":[1,"中"]}';
    expect(probe.jsonParseBytes(utf8(text))).toEqual({ value: JSON.parse(text) });
    expect(probe.jsonParseBytes(bytes(0xef, 0xbb, 0xbf, 0x5b, 0x5d))).toEqual({ value: [] });
  });

  it("rejects malformed UTF-8 at the offending byte", () => {
    const q = 0x22;
    const cases: [Uint8Array, number][] = [
      [bytes(q, 0x80, q), 1], // stray continuation byte
      [bytes(q, 0xc0, 0x80, q), 1], // overlong NUL
      [bytes(q, 0xc1, 0xbf, q), 1], // overlong
      [bytes(q, 0xe0, 0x80, 0x80, q), 1], // overlong 3-byte
      [bytes(q, 0xf0, 0x80, 0x80, 0x80, q), 1], // overlong 4-byte
      [bytes(q, 0xed, 0xa0, 0x80, q), 1], // encoded surrogate U+D800
      [bytes(q, 0xf4, 0x90, 0x80, 0x80, q), 1], // above U+10FFFF
      [bytes(q, 0xf8, 0x88, 0x80, 0x80, 0x80, q), 1], // 5-byte form
      [bytes(q, 0x61, 0xe2, 0x82, q), 2], // truncated €
      [bytes(q, 0x61, 0xe2, 0x82), 2], // truncated at end of input
      [bytes(q, 0xc3, 0xa9, 0xff, q), 3], // 0xff after a valid é
    ];
    for (const [input, offset] of cases) {
      expect(probe.jsonParseBytes(input), Buffer.from(input).toString("hex")).toEqual({
        error: `JSON.parse: invalid UTF-8 at offset ${offset}`,
        offset,
      });
    }
  });

  it("reports parse errors as byte offsets", () => {
    expect(probe.jsonParseBytes(utf8('["é€", }'))).toEqual({
      error: "JSON.parse: unexpected '}' at offset 10, expected a value",
      offset: 10,
    });
  });
});

describe("jsonQuote", () => {
  it("matches JSON.stringify for strings", () => {
    const strings = [
      "",
      "plain",
      'quote " and backslash \\ and slash /',
      "tab\there\nnewline\rcr\bbs\fff",
      Array.from({ length: 32 }, (_, i) => String.fromCharCode(i)).join(""),
      "\u007f del is not escaped",
      "é € 😀 中文",
      "\ud83d\ude00 pair",
      "lone high \ud800 end",
      "lone low \udc00 end",
      "\udc00\ud800 reversed",
      "\ud800",
      "ends with high \ud83d",
      "\u2028\u2029",
      "x".repeat(5000),
    ];
    for (const s of strings) expect(probe.jsonQuote(s)).toBe(JSON.stringify(s));
  });

  it("round-trips through parseJson", () => {
    const s = 'a"b\\c\u0001\n😀€';
    expect(parse(probe.jsonQuote(s))).toBe(s);
  });
});

describe("parseJson: differential against JSON.parse on random inputs", () => {
  it("accepts exactly what JSON.parse accepts (except duplicate keys and overflow) and agrees on values", () => {
    const random = rng(0x5eed);
    const pieces = [
      "{",
      "}",
      "[",
      "]",
      ",",
      ":",
      '"',
      '"a"',
      '"b"',
      '"\\n"',
      '"\\u00e9"',
      "\\",
      "0",
      "1",
      "-",
      ".",
      "e",
      "+",
      "12",
      "true",
      "false",
      "null",
      "tru",
      " ",
      "\n",
      "é",
      "\u0001",
      "1e999",
    ];
    const grammar = (depth: number): string => {
      const r = random();
      if (depth > 4 || r < 0.35) {
        const atoms = ["0", "-1.5e3", "12", '"s"', '"\\u00e9\\n"', "true", "false", "null", '""', "1e999"];
        return atoms[Math.floor(random() * atoms.length)] ?? "0";
      }
      const n = Math.floor(random() * 4);
      const items = Array.from({ length: n }, () => grammar(depth + 1));
      if (r < 0.7) return `[${items.join(",")}]`;
      return `{${items.map((v) => `"${"abc"[Math.floor(random() * 3)]}":${v}`).join(",")}}`;
    };
    let accepted = 0;
    for (let i = 0; i < 3000; i++) {
      let text = grammar(0);
      // Mutate half of the documents: insert, delete or replace a piece at a random place.
      if (i % 2 === 1) {
        const at = Math.floor(random() * (text.length + 1));
        const piece = pieces[Math.floor(random() * pieces.length)] ?? "";
        const op = Math.floor(random() * 3);
        text = text.slice(0, at) + (op === 1 ? "" : piece) + text.slice(op === 0 ? at : at + 1);
      }
      let expected: unknown;
      let jsOk = true;
      try {
        expected = JSON.parse(text);
      } catch {
        jsOk = false;
      }
      const ours = probe.jsonParse(text);
      if (ours.error === undefined) {
        accepted++;
        expect(jsOk, text).toBe(true);
        expect(ours.value, text).toEqual(expected);
      } else {
        expect(ours.error, text).toMatch(/^JSON\.parse: .+ at offset \d+/);
        expect(ours.offset).toBeGreaterThanOrEqual(0);
        expect(ours.offset).toBeLessThanOrEqual(Buffer.byteLength(text));
        if (jsOk) expect(ours.error, text).toMatch(/duplicate key|number out of range/);
      }
    }
    expect(accepted).toBeGreaterThan(1000);
  });
});
