// JSON (RFC 8259) for plugin configuration: parses a document into a small tree of JsonValue
// nodes, and quotes strings for log and metric text.
//
// - Input: `parseJson(string)` or `parseJsonBytes(ArrayBuffer)` (UTF-8, validated strictly:
//   overlong forms, surrogates and code points above U+10FFFF are errors). A leading BOM is skipped.
// - Errors never trap. The result carries `error` ("" on success) in the form
//   `JSON.parse: <what> at offset <n>[, expected <what>]`, and `offset`: the position as a UTF-8
//   byte offset into the document (also for string input), -1 on success.
// - Strings: every escape including \uXXXX and surrogate pairs. Unpaired surrogates (escaped or
//   raw) and raw control characters (U+0000..U+001F) are errors.
// - Numbers: the RFC grammar exactly (no leading zeros, '+', '.5', NaN or Infinity), as f64;
//   a number whose magnitude overflows f64 is an error ("number out of range").
// - Objects keep key order. A duplicate key is an error: two parsers that resolve duplicates
//   differently read different policies from one document, so a policy must not contain any.
// - Arrays and objects may nest at most MAX_JSON_DEPTH (64) deep; deeper is an error.
// - Anything after the top-level value other than whitespace is an error.

/** Maximum nesting of arrays and objects; a document nested deeper is rejected. */
export const MAX_JSON_DEPTH: i32 = 64;

export enum JsonKind {
  Null,
  Bool,
  Number,
  String,
  Array,
  Object,
}

export abstract class JsonValue {
  constructor(readonly kind: JsonKind) {}

  isNull(): bool {
    return this.kind == JsonKind.Null;
  }
  isBool(): bool {
    return this.kind == JsonKind.Bool;
  }
  isNumber(): bool {
    return this.kind == JsonKind.Number;
  }
  isString(): bool {
    return this.kind == JsonKind.String;
  }
  isArray(): bool {
    return this.kind == JsonKind.Array;
  }
  isObject(): bool {
    return this.kind == JsonKind.Object;
  }
}

/** `null`. The parser returns one shared instance (JSON_NULL). */
export class JsonNull extends JsonValue {
  constructor() {
    super(JsonKind.Null);
  }
}

/** `true` / `false`. The parser returns shared instances (JSON_TRUE, JSON_FALSE). */
export class JsonBool extends JsonValue {
  constructor(readonly value: bool) {
    super(JsonKind.Bool);
  }
}

export class JsonNumber extends JsonValue {
  constructor(readonly value: f64) {
    super(JsonKind.Number);
  }
}

export class JsonString extends JsonValue {
  constructor(readonly value: string) {
    super(JsonKind.String);
  }
}

export class JsonArray extends JsonValue {
  items: JsonValue[] = [];
  constructor() {
    super(JsonKind.Array);
  }
}

/** Keys in document order. Lookups are linear: configuration objects have a handful of keys. */
export class JsonObject extends JsonValue {
  private names: string[] = [];
  private values: JsonValue[] = [];
  constructor() {
    super(JsonKind.Object);
  }

  /** The keys in document order. The array is the object's own: do not modify it. */
  keys(): string[] {
    return this.names;
  }

  /** The value of `key`, or null when the object has no such key. */
  get(key: string): JsonValue | null {
    const i = this.names.indexOf(key);
    return i < 0 ? null : unchecked(this.values[i]);
  }

  has(key: string): bool {
    return this.names.includes(key);
  }

  get size(): i32 {
    return this.names.length;
  }

  /** Adds or replaces `key` (for building objects in code; the parser never replaces). */
  set(key: string, value: JsonValue): void {
    const i = this.names.indexOf(key);
    if (i >= 0) {
      this.values[i] = value;
    } else {
      this.names.push(key);
      this.values.push(value);
    }
  }
}

export const JSON_NULL: JsonNull = new JsonNull();
export const JSON_TRUE: JsonBool = new JsonBool(true);
export const JSON_FALSE: JsonBool = new JsonBool(false);

export class JsonParseResult {
  constructor(
    /** The document's value, or null when it is not valid JSON. */
    public value: JsonValue | null,
    /** "" on success, else `JSON.parse: <what> at offset <n>...`. */
    public error: string,
    /** UTF-8 byte offset of the error, -1 on success. */
    public offset: i32,
  ) {}
}

/** Parses a JSON document. Never traps; see the result's `error`. */
export function parseJson(text: string): JsonParseResult {
  const p = new Parser(text);
  let value = p.value(0);
  if (value !== null) {
    p.ws();
    if (p.pos < text.length) {
      p.unexpected("end of input");
      value = null;
    }
  }
  if (value === null) return new JsonParseResult(null, p.error, p.errorOffset);
  return new JsonParseResult(value, "", -1);
}

/** Parses a JSON document given as UTF-8 bytes (rejecting malformed UTF-8). Never traps. */
export function parseJsonBytes(bytes: ArrayBuffer): JsonParseResult {
  const bad = invalidUtf8At(changetype<usize>(bytes), bytes.byteLength);
  if (bad >= 0) {
    return new JsonParseResult(null, "JSON.parse: invalid UTF-8 at offset " + bad.toString(), bad);
  }
  return parseJson(String.UTF8.decode(bytes));
}

/** `s` as a JSON string literal, with its quotes: escapes `"`, `\`, control characters and unpaired surrogates. */
export function jsonQuote(s: string): string {
  const n = s.length;
  const src = changetype<usize>(s);
  let size = n + 2;
  for (let i = 0; i < n; i++) size += quotedExtra(load<u16>(src + ((<usize>i) << 1)), s, i);
  const out = changetype<string>(__new((<usize>size) << 1, idof<string>()));
  let dst = changetype<usize>(out);
  store<u16>(dst, 0x22);
  dst += 2;
  for (let i = 0; i < n; i++) {
    const c = <u32>load<u16>(src + ((<usize>i) << 1));
    const extra = quotedExtra(c, s, i);
    if (extra == 0) {
      store<u16>(dst, c);
      dst += 2;
    } else if (extra == 1) {
      store<u16>(dst, 0x5c);
      store<u16>(dst, shortEscape(c), 2);
      dst += 4;
    } else {
      store<u64>(dst, 0x0075005c); // \u
      for (let k = 0; k < 4; k++) store<u16>(dst + 4 + ((<usize>k) << 1), hexDigit((c >> (12 - 4 * k)) & 15));
      dst += 12;
    }
  }
  store<u16>(dst, 0x22);
  return out;
}

// ---------------------------------------------------------------------------------------------

/** Characters jsonQuote adds for the code unit at `i`: 0 (as is), 1 (\n etc.) or 5 (\uXXXX). */
function quotedExtra(c: u32, s: string, i: i32): i32 {
  if (c == 0x22 || c == 0x5c) return 1;
  if (c < 0x20) return shortEscape(c) != 0 ? 1 : 5;
  if ((c & 0xf800) == 0xd800) {
    // Keep a well-formed pair; escape a lone half so the output stays valid UTF-8 when encoded.
    if (c < 0xdc00) return i + 1 < s.length && (<u32>s.charCodeAt(i + 1) & 0xfc00) == 0xdc00 ? 0 : 5;
    return i > 0 && (<u32>s.charCodeAt(i - 1) & 0xfc00) == 0xd800 ? 0 : 5;
  }
  return 0;
}

function shortEscape(c: u32): u32 {
  if (c == 0x22 || c == 0x5c) return c;
  if (c == 0x08) return 0x62; // b
  if (c == 0x0c) return 0x66; // f
  if (c == 0x0a) return 0x6e; // n
  if (c == 0x0d) return 0x72; // r
  if (c == 0x09) return 0x74; // t
  return 0;
}

/** The code unit a one-character escape `\e` stands for, or 0 if `e` is not an escape. */
function escapedUnit(e: u32): u32 {
  if (e == 0x22 || e == 0x5c || e == 0x2f) return e;
  if (e == 0x62) return 0x08; // b
  if (e == 0x66) return 0x0c; // f
  if (e == 0x6e) return 0x0a; // n
  if (e == 0x72) return 0x0d; // r
  if (e == 0x74) return 0x09; // t
  return 0;
}

function hexDigit(d: u32): u32 {
  return d < 10 ? 0x30 + d : 0x61 - 10 + d;
}

function hexValue(c: u32): i32 {
  if (c - 0x30 < 10) return <i32>(c - 0x30);
  c |= 0x20;
  if (c - 0x61 < 6) return <i32>(c - 0x61 + 10);
  return -1;
}

/** Offset of the first byte of a malformed UTF-8 sequence (RFC 3629), or -1. */
function invalidUtf8At(ptr: usize, len: i32): i32 {
  let i = 0;
  while (i < len) {
    const b = <u32>load<u8>(ptr + i);
    if (b < 0x80) {
      i++;
      continue;
    }
    let n = 0;
    let min: u32 = 0;
    let cp: u32 = 0;
    if ((b & 0xe0) == 0xc0) {
      n = 1;
      min = 0x80;
      cp = b & 0x1f;
    } else if ((b & 0xf0) == 0xe0) {
      n = 2;
      min = 0x800;
      cp = b & 0x0f;
    } else if ((b & 0xf8) == 0xf0) {
      n = 3;
      min = 0x10000;
      cp = b & 0x07;
    } else {
      return i;
    }
    if (i + n >= len) return i;
    for (let k = 1; k <= n; k++) {
      const cb = <u32>load<u8>(ptr + i + k);
      if ((cb & 0xc0) != 0x80) return i;
      cp = (cp << 6) | (cb & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp & 0xfffff800) == 0xd800) return i;
    i += n + 1;
  }
  return -1;
}

/** UTF-8 length of the first `end` code units of `s` (for error offsets). */
function utf8Offset(s: string, end: i32): i32 {
  let bytes = 0;
  for (let i = 0; i < end; i++) {
    const c = <u32>s.charCodeAt(i);
    if (c < 0x80) bytes += 1;
    else if (c < 0x800) bytes += 2;
    else if ((c & 0xfc00) == 0xd800 && i + 1 < end && (<u32>s.charCodeAt(i + 1) & 0xfc00) == 0xdc00) {
      bytes += 4;
      i++;
    } else bytes += 3;
  }
  return bytes;
}

/** How a character appears in an error: 'x' when printable ASCII, else U+XXXX. */
function describe(c: u32): string {
  if (c > 0x20 && c < 0x7f) return "'" + String.fromCharCode(c) + "'";
  let hex = "U+";
  for (let k = 0; k < 4; k++) hex += "0123456789ABCDEF".charAt((c >> (12 - 4 * k)) & 15);
  return hex;
}

// Decimal to f64, correctly rounded (round half to even) for every input. The grammar has been
// checked already. Fast path (Clinger): a significand below 2^53 scaled by an exact power of ten
// is one correctly rounded operation; that covers every number a configuration plausibly holds.
// Otherwise the digits are scaled by powers of two in decimal until 53 bits can be read off
// (the "simple decimal conversion" of Go's strconv and Wuffs). AssemblyScript's parseFloat is not
// used: it misreads numbers such as 2.7631001713203617e53 (as 2.76...e38).

const POW10: StaticArray<f64> = [
  1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19,
  1e20, 1e21, 1e22,
];
/** Binary shifts that keep a decimal with `dp` integer digits in range, by dp (Go's powtab). */
const POWTAB: StaticArray<i32> = [1, 3, 6, 9, 13, 16, 19, 23, 26];
const DEC_MAX: i32 = 800;
/** The decimal's digits (0..9, most significant first), with room for a left shift's new digits. */
const DEC: usize = memory.data(DEC_MAX + 20);
let decN: i32 = 0; // digits in DEC
let decDp: i32 = 0; // value = 0.DEC[0..decN) x 10^decDp
let decTrunc: bool = false; // nonzero digits were dropped beyond DEC_MAX

/** Magnitude of the number whose digits (no sign) are s[start, end); Infinity when it overflows. */
function decimalToF64(s: string, start: i32, end: i32): f64 {
  let mant: u64 = 0;
  let sig = 0; // significant digits (after leading zeros), all counted
  let dp = -1; // sig at the decimal point, -1 before it
  let lead = 0; // leading zeros after the point
  decN = 0;
  decTrunc = false;
  let i = start;
  for (; i < end; i++) {
    const c = <u32>s.charCodeAt(i);
    if (c == 0x2e) {
      dp = sig;
      continue;
    }
    const d = c - 0x30;
    if (d >= 10) break;
    if (d == 0 && sig == 0) {
      if (dp >= 0) lead++;
      continue;
    }
    if (sig < 19) mant = mant * 10 + d;
    sig++;
    if (decN < DEC_MAX) store<u8>(DEC + decN++, <u8>d);
    else if (d != 0) decTrunc = true;
  }
  if (sig == 0) return 0;
  let exp = 0;
  if (i < end) {
    // Exponent: 'e', optional sign, digits (capped: anything beyond overflows or underflows).
    const neg = s.charCodeAt(i + 1) == 0x2d;
    for (i += neg || s.charCodeAt(i + 1) == 0x2b ? 2 : 1; i < end; i++) {
      if (exp < 100_000) exp = exp * 10 + s.charCodeAt(i) - 0x30;
    }
    if (neg) exp = -exp;
  }
  decDp = (dp < 0 ? sig : dp - lead) + exp;
  const e10 = decDp - sig; // value = mant x 10^e10 when sig <= 19
  if (sig <= 19 && mant >> 53 == 0) {
    let f = <f64>mant;
    if (e10 == 0) return f;
    if (e10 > 0 && e10 <= 15 + 22) {
      let k = e10;
      if (k > 22) {
        f *= unchecked(POW10[k - 22]);
        k = 22;
      }
      if (f <= 1e15) return f * unchecked(POW10[k]);
    } else if (e10 < 0 && e10 >= -22) {
      return f / unchecked(POW10[-e10]);
    }
  }
  return decimalSlow();
}

function decimalSlow(): f64 {
  if (decDp > 310) return Infinity;
  if (decDp < -330) return 0;
  // Scale into [0.5, 1) by powers of two, then read off 53 bits.
  let exp = 0;
  while (decDp > 0) {
    const n = decDp >= 9 ? 27 : unchecked(POWTAB[decDp]);
    decShift(-n);
    exp += n;
  }
  while (decDp < 0 || (decDp == 0 && load<u8>(DEC) < 5)) {
    const n = -decDp >= 9 ? 27 : unchecked(POWTAB[-decDp]);
    decShift(n);
    exp -= n;
  }
  exp--; // [0.5, 1) to [1, 2)
  if (exp < -1022) {
    // Subnormal: fewer significant bits.
    const n = -1022 - exp;
    decShift(-n);
    exp += n;
  }
  if (exp > 1023) return Infinity;
  decShift(53);
  let mant = decRounded();
  if (mant == (<u64>1) << 53) {
    mant >>= 1;
    exp++;
    if (exp > 1023) return Infinity;
  }
  if ((mant & ((<u64>1) << 52)) == 0) exp = -1023;
  return reinterpret<f64>((mant & (((<u64>1) << 52) - 1)) | ((<u64>((exp + 1023) & 0x7ff)) << 52));
}

function decShift(k: i32): void {
  if (decN == 0) return;
  while (k > 60) {
    decLeftShift(60);
    k -= 60;
  }
  while (k < -60) {
    decRightShift(60);
    k += 60;
  }
  if (k > 0) decLeftShift(<u64>k);
  else if (k < 0) decRightShift(<u64>-k);
}

/** Multiplies the decimal by 2^k (k <= 60). */
function decLeftShift(k: u64): void {
  let w = decN + 19; // at most 19 new digits (the carry is below 2^60)
  let n: u64 = 0;
  for (let r = decN - 1; r >= 0; r--) {
    n += (<u64>load<u8>(DEC + r)) << k;
    const q = n / 10;
    store<u8>(DEC + --w, <u8>(n - q * 10));
    n = q;
  }
  while (n > 0) {
    const q = n / 10;
    store<u8>(DEC + --w, <u8>(n - q * 10));
    n = q;
  }
  const len = decN + 19 - w;
  decDp += len - decN;
  memory.copy(DEC, DEC + w, len);
  for (let j = DEC_MAX; j < len; j++) if (load<u8>(DEC + j) != 0) decTrunc = true;
  decN = min(len, DEC_MAX);
  decTrim();
}

/** Divides the decimal by 2^k (k <= 60). */
function decRightShift(k: u64): void {
  let r = 0;
  let w = 0;
  let n: u64 = 0;
  for (; n >> k == 0; r++) {
    if (r >= decN) {
      if (n == 0) {
        decN = 0;
        return;
      }
      while (n >> k == 0) {
        n *= 10;
        r++;
      }
      break;
    }
    n = n * 10 + load<u8>(DEC + r);
  }
  decDp -= r - 1;
  const mask: u64 = ((<u64>1) << k) - 1;
  for (; r < decN; r++) {
    const c = load<u8>(DEC + r);
    store<u8>(DEC + w++, <u8>(n >> k));
    n = (n & mask) * 10 + c;
  }
  while (n > 0) {
    const d = n >> k;
    n = (n & mask) * 10;
    if (w < DEC_MAX) store<u8>(DEC + w++, <u8>d);
    else if (d > 0) decTrunc = true;
  }
  decN = w;
  decTrim();
}

function decTrim(): void {
  while (decN > 0 && load<u8>(DEC + decN - 1) == 0) decN--;
  if (decN == 0) decDp = 0;
}

/** The integer part, rounded half to even (digits dropped beyond DEC_MAX count as "above half"). */
function decRounded(): u64 {
  if (decDp > 20) return u64.MAX_VALUE;
  let n: u64 = 0;
  let i = 0;
  for (; i < decDp && i < decN; i++) n = n * 10 + load<u8>(DEC + i);
  for (; i < decDp; i++) n *= 10;
  if (decDp >= 0 && decDp < decN) {
    const d = load<u8>(DEC + decDp);
    let up = d >= 5;
    if (d == 5 && decDp + 1 == decN && !decTrunc) up = decDp > 0 && (load<u8>(DEC + decDp - 1) & 1) != 0;
    if (up) n++;
  }
  return n;
}

class Parser {
  pos: i32 = 0;
  error: string = "";
  errorOffset: i32 = -1;
  /** Unescaped string contents, allocated on the first escape and reused. */
  private scratch: ArrayBuffer | null = null;

  constructor(private s: string) {
    if (s.length > 0 && s.charCodeAt(0) == 0xfeff) this.pos = 1;
  }

  private at(i: i32): u32 {
    return <u32>load<u16>(changetype<usize>(this.s) + ((<usize>i) << 1));
  }

  fail(what: string, at: i32, suffix: string = ""): void {
    if (this.error.length > 0) return;
    this.errorOffset = utf8Offset(this.s, at);
    this.error = "JSON.parse: " + what + " at offset " + this.errorOffset.toString() + suffix;
  }

  /** Reports the character at `pos` (or the end of input) where `expected` was due. */
  unexpected(expected: string): void {
    const what =
      this.pos < this.s.length ? "unexpected " + describe(this.at(this.pos)) : "unexpected end of input";
    this.fail(what, this.pos, ", expected " + expected);
  }

  ws(): void {
    const n = this.s.length;
    let i = this.pos;
    while (i < n) {
      const c = this.at(i);
      if (c != 0x20 && c != 0x0a && c != 0x0d && c != 0x09) break;
      i++;
    }
    this.pos = i;
  }

  /** Consumes `c` after whitespace, or returns false (consuming nothing). */
  private eat(c: u32): bool {
    this.ws();
    if (this.pos < this.s.length && this.at(this.pos) == c) {
      this.pos++;
      return true;
    }
    return false;
  }

  /** A value after optional whitespace; null after an error. `depth` counts enclosing containers. */
  value(depth: i32): JsonValue | null {
    this.ws();
    if (this.pos >= this.s.length) {
      this.unexpected("a value");
      return null;
    }
    const c = this.at(this.pos);
    if (c == 0x7b || c == 0x5b) {
      if (depth >= MAX_JSON_DEPTH) {
        this.fail("nesting deeper than " + MAX_JSON_DEPTH.toString() + " levels", this.pos);
        return null;
      }
      this.pos++;
      return c == 0x7b ? this.object(depth + 1) : this.array(depth + 1);
    }
    if (c == 0x22) {
      const str = this.string();
      return str === null ? null : new JsonString(str);
    }
    if (c == 0x74) return this.literal("true", JSON_TRUE);
    if (c == 0x66) return this.literal("false", JSON_FALSE);
    if (c == 0x6e) return this.literal("null", JSON_NULL);
    if (c == 0x2d || c - 0x30 < 10) return this.number();
    this.unexpected("a value");
    return null;
  }

  private literal(word: string, value: JsonValue): JsonValue | null {
    for (let k = 0; k < word.length; k++) {
      if (this.pos >= this.s.length || this.at(this.pos) != <u32>word.charCodeAt(k)) {
        this.unexpected("'" + word + "'");
        return null;
      }
      this.pos++;
    }
    return value;
  }

  private digits(): bool {
    const start = this.pos;
    while (this.pos < this.s.length && this.at(this.pos) - 0x30 < 10) this.pos++;
    if (this.pos > start) return true;
    this.unexpected("a digit");
    return false;
  }

  private number(): JsonValue | null {
    const s = this.s;
    const start = this.pos;
    if (this.at(this.pos) == 0x2d) this.pos++;
    const intStart = this.pos;
    if (!this.digits()) return null;
    if (this.at(intStart) == 0x30 && this.pos - intStart > 1) {
      this.fail("leading zero in number", intStart);
      return null;
    }
    if (this.pos < s.length && this.at(this.pos) == 0x2e) {
      this.pos++;
      if (!this.digits()) return null;
    }
    if (this.pos < s.length && (this.at(this.pos) | 0x20) == 0x65) {
      this.pos++;
      if (this.pos < s.length && (this.at(this.pos) == 0x2b || this.at(this.pos) == 0x2d)) this.pos++;
      if (!this.digits()) return null;
    }
    const v = decimalToF64(s, intStart, this.pos);
    if (v == Infinity) {
      this.fail("number out of range", start);
      return null;
    }
    return new JsonNumber(intStart > start ? -v : v);
  }

  /** A string literal starting at the '"' at `pos`; null after an error. */
  string(): string | null {
    const s = this.s;
    const n = s.length;
    const open = this.pos;
    let i = open + 1;
    let segment = i;
    let out: usize = 0; // write position in scratch, 0 while the string has no escape
    let outStart: usize = 0;
    while (true) {
      if (i >= n) {
        this.fail("unterminated string", open);
        return null;
      }
      const c = this.at(i);
      if (c == 0x22) break;
      if (c < 0x20) {
        this.fail("control character " + describe(c) + " in string", i);
        return null;
      }
      if ((c & 0xf800) == 0xd800) {
        if (c >= 0xdc00 || i + 1 >= n || (this.at(i + 1) & 0xfc00) != 0xdc00) {
          this.fail("unpaired surrogate " + describe(c) + " in string", i);
          return null;
        }
        i += 2;
        continue;
      }
      if (c != 0x5c) {
        i++;
        continue;
      }
      // An escape: flush the plain segment before it into scratch, then the unescaped unit(s).
      if (out == 0) {
        // Sized for the rest of the input, so it also fits every later string.
        let scratch = this.scratch;
        if (scratch === null) this.scratch = scratch = new ArrayBuffer((n - open) << 1);
        out = outStart = changetype<usize>(scratch);
      }
      const plain = (<usize>(i - segment)) << 1;
      memory.copy(out, changetype<usize>(s) + ((<usize>segment) << 1), plain);
      out += plain;
      if (i + 1 >= n) {
        this.fail("unterminated string", open);
        return null;
      }
      const e = this.at(i + 1);
      let unit: u32 = 0;
      if (e == 0x75) {
        unit = this.hex4(i);
        if (unit > 0xffff) return null;
        if ((unit & 0xf800) == 0xd800) {
          // A high surrogate must be followed by an escaped low one.
          let low: u32 = 0x10000;
          if (unit < 0xdc00 && i + 7 < n && this.at(i + 6) == 0x5c && this.at(i + 7) == 0x75) {
            low = this.hex4(i + 6);
            if (low > 0xffff) return null;
          }
          if ((low & 0xfc00) != 0xdc00) {
            this.fail("unpaired surrogate " + describe(unit) + " in string", i);
            return null;
          }
          store<u16>(out, unit);
          out += 2;
          unit = low;
          i += 6;
        }
        i += 6;
      } else {
        unit = escapedUnit(e);
        if (unit == 0) {
          this.fail(
            "invalid escape '\\" + (e > 0x20 && e < 0x7f ? String.fromCharCode(e) : describe(e)) + "'",
            i,
          );
          return null;
        }
        i += 2;
      }
      store<u16>(out, unit);
      out += 2;
      segment = i;
    }
    this.pos = i + 1;
    if (out == 0) return s.substring(segment, i);
    const plain = (<usize>(i - segment)) << 1;
    memory.copy(out, changetype<usize>(s) + ((<usize>segment) << 1), plain);
    return String.UTF16.decodeUnsafe(outStart, out + plain - outStart);
  }

  /** The value of the \uXXXX escape at `i`, or 0x10000 after reporting an error. */
  private hex4(i: i32): u32 {
    let v: u32 = 0;
    for (let k = 2; k < 6; k++) {
      const d = i + k < this.s.length ? hexValue(this.at(i + k)) : -1;
      if (d < 0) {
        this.fail("invalid \\u escape (expected 4 hex digits)", i);
        return 0x10000;
      }
      v = (v << 4) | <u32>d;
    }
    return v;
  }

  private array(depth: i32): JsonValue | null {
    const arr = new JsonArray();
    if (this.eat(0x5d)) return arr;
    while (true) {
      const item = this.value(depth);
      if (item === null) return null;
      arr.items.push(item);
      if (this.eat(0x2c)) continue;
      if (this.eat(0x5d)) return arr;
      this.unexpected("',' or ']'");
      return null;
    }
  }

  private object(depth: i32): JsonValue | null {
    const obj = new JsonObject();
    if (this.eat(0x7d)) return obj;
    while (true) {
      this.ws();
      if (this.pos >= this.s.length || this.at(this.pos) != 0x22) {
        this.unexpected("a string key");
        return null;
      }
      const keyAt = this.pos;
      const key = this.string();
      if (key === null) return null;
      if (obj.has(key)) {
        this.fail("duplicate key " + jsonQuote(key), keyAt);
        return null;
      }
      if (!this.eat(0x3a)) {
        this.unexpected("':'");
        return null;
      }
      const value = this.value(depth);
      if (value === null) return null;
      obj.set(key, value);
      if (this.eat(0x2c)) continue;
      if (this.eat(0x7d)) return obj;
      this.unexpected("',' or '}'");
      return null;
    }
  }
}
