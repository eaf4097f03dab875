// Linear-time regular expressions for header, path and authority matching (an RE2-like subset).
//
// A pattern compiles to an NFA program; matching runs a Pike VM (Thompson simulation): a set of
// threads advanced in lock step over the input, each program state at most once per position.
// Matching costs O(program size x input length) whatever the pattern and input, with no
// backtracking, and allocates nothing: each Regex owns its thread lists. Only match / no match is
// reported (no captures, no match positions).
//
// Syntax:
// - Literals: any character except the metacharacters \ . [ ] ( ) | * + ? { } ^ $
// - Escapes: \ followed by any ASCII punctuation or space is that character (\. \\ \* \/ \- ...);
//   \t \n \r \f \v are tab, newline, carriage return, form feed, vertical tab.
// - . matches any character except newline (\n).
// - Classes: [abc], ranges [a-z0-9], negation [^...], escapes inside classes ([\]\-\\]), shorthand
//   inside and outside classes. A '-' first, last or right after a range is literal; ']' and '['
//   inside a class must be escaped; [] is an error.
// - Shorthand: \d = [0-9], \w = [0-9A-Za-z_], \s = [\t\n\f\r ] (as RE2: not \v), and their
//   negations \D \W \S.
// - Grouping ( ) and non-capturing (?: ) (both only group: nothing is captured), alternation |.
//   Empty alternatives and groups are allowed: (a|) matches "a" or "".
// - Quantifiers * + ? {n} {n,} {n,m} with n, m <= 100 (expanded when compiling). Lazy forms *? +?
//   ?? {n,m}? are accepted and behave like the greedy ones (only match / no match is reported).
// - Anchors: ^ matches only at the start of the input, $ only at the end (no multi-line mode).
// Rejected, with a message and offset: backreferences (\1), lookahead and lookbehind ((?= (?!
// (?<= (?<!), atomic groups (?>, named groups, inline flags ((?i)), possessive quantifiers (*+ ++
// ?+ {n}+), other escapes (\b \B \A \z \x \u \p \0 ...), unbalanced ( ) [ ], unescaped ] or },
// malformed {..}, nothing to repeat (*a, a**, ^*), bad ranges ([z-a], [\d-z]), counts over 100,
// min > max in {n,m}, patterns longer than 1024 characters, programs over 2000 instructions
// (after counted repetitions are expanded) and groups nested deeper than 100.
//
// Characters are UTF-16 code units (AssemblyScript strings). The SDK decodes header bytes
// losslessly (assembly/sdk/memory.ts): ASCII is one unit per byte, and so is each byte that is not
// valid UTF-8 (U+DC80 + byte - 0x80, which only '.' and negated classes match, since a pattern has
// no lone surrogates). A character outside the BMP is two units: '.' or a negated class matches
// each half separately, and class ranges compare code units.
//
// compileRegex(pattern, ignoreCase = true) makes ASCII letters match in either case.
//
// fullMatch(s): the whole input must match (as Envoy's safe_regex; header and path rules use it).
// search(s): a match anywhere in the input.

export const MAX_PATTERN_LENGTH: i32 = 1024;
export const MAX_REPEAT: i32 = 100;
export const MAX_PROGRAM_SIZE: i32 = 2000;
const MAX_GROUP_DEPTH: i32 = 100;

// Instructions: three i32 each (op, x, y).
const OP_CHAR = 0; // x: code unit
const OP_ANY = 1; // any but \n
const OP_CLASS = 2; // x: offset of the class in the class table
const OP_SPLIT = 3; // continue at x and at y
const OP_JMP = 4; // continue at x
const OP_BOL = 5;
const OP_EOL = 6;
const OP_MATCH = 7;

// Syntax tree node kinds.
const N_EMPTY = 0;
const N_CHAR = 1;
const N_ANY = 2;
const N_CLASS = 3;
const N_BOL = 4;
const N_EOL = 5;
const N_CAT = 6;
const N_ALT = 7;
const N_REP = 8;

// Ranges of \d, \w, \s (inclusive pairs), and where each starts in the table.
const SHORTHAND: StaticArray<i32> = [
  0x30, 0x39, 0x30, 0x39, 0x41, 0x5a, 0x5f, 0x5f, 0x61, 0x7a, 0x09, 0x0a, 0x0c, 0x0d, 0x20, 0x20,
];

export class RegexCompileResult {
  constructor(
    /** The compiled expression, or null when the pattern is rejected. */
    public regex: Regex | null,
    /** "" on success, else `<what> at offset <n>` (offset in the pattern, in characters). */
    public error: string,
    /** Offset of the error in the pattern, -1 on success. */
    public offset: i32,
  ) {}
}

/**
 * Compiles `pattern` (syntax above). Never traps. With `ignoreCase`, ASCII letters in literals and
 * classes match both cases (other characters are compared as they are).
 */
export function compileRegex(pattern: string, ignoreCase: bool = false): RegexCompileResult {
  const p = new Parser(pattern, ignoreCase);
  let root: Node | null = null;
  if (pattern.length > MAX_PATTERN_LENGTH) {
    p.fail("pattern longer than " + MAX_PATTERN_LENGTH.toString() + " characters", MAX_PATTERN_LENGTH);
  } else {
    root = p.alt();
    // alt() stops only at the end or at a ')' that no group opened.
    if (root !== null && p.i < pattern.length) root = p.fail("unmatched ')'", p.i);
  }
  if (root === null) return new RegexCompileResult(null, p.error, p.errorAt);
  const e = new Emitter(root.size + 1);
  e.emit(root);
  e.put(OP_MATCH, 0, 0);
  return new RegexCompileResult(new Regex(pattern, e.prog, StaticArray.fromArray<i32>(p.classes)), "", -1);
}

export class Regex {
  private clist: StaticArray<i32>;
  private nlist: StaticArray<i32>;
  private marks: StaticArray<i32>;
  private stack: StaticArray<i32>;
  private gen: i32 = 0;
  private anchored: bool;

  /** Use compileRegex. */
  constructor(
    readonly pattern: string,
    private prog: StaticArray<i32>,
    private classes: StaticArray<i32>,
  ) {
    const n = prog.length / 3;
    this.clist = new StaticArray<i32>(n);
    this.nlist = new StaticArray<i32>(n);
    this.marks = new StaticArray<i32>(n);
    this.stack = new StaticArray<i32>(2 * n + 2);
    this.anchored = prog[0] == OP_BOL;
  }

  /** Number of NFA instructions (states). */
  get programSize(): i32 {
    return this.prog.length / 3;
  }

  /** True when the whole of `s` matches. */
  fullMatch(s: string): bool {
    return this.run(s, true);
  }

  /** True when the pattern matches somewhere in `s`. */
  search(s: string): bool {
    return this.run(s, false);
  }

  private run(s: string, full: bool): bool {
    const len = s.length;
    const base = changetype<usize>(s);
    const prog = this.prog;
    const anchored = full || this.anchored;
    let clist = this.clist;
    let nlist = this.nlist;
    this.nextGen();
    let count = this.add(clist, 0, 0, 0, len, full);
    // Anchored (full match, or a pattern starting with ^): no thread left means no match.
    for (let pos = 0; pos < len && (count != 0 || !anchored); pos++) {
      if (count < 0) return true;
      const c = <i32>load<u16>(base + ((<usize>pos) << 1));
      this.nextGen();
      let next = 0;
      for (let t = 0; t < count; t++) {
        const pc = unchecked(clist[t]);
        const op = unchecked(prog[pc * 3]);
        const x = unchecked(prog[pc * 3 + 1]);
        let ok: bool;
        if (op == OP_CHAR) ok = c == x;
        else if (op == OP_ANY) ok = c != 0x0a;
        else ok = this.inClass(x, c);
        if (ok) {
          next = this.add(nlist, next, pc + 1, pos + 1, len, full);
          if (next < 0) return true;
        }
      }
      // Unanchored: a new thread starts at every position.
      if (!anchored) next = this.add(nlist, next, 0, pos + 1, len, full);
      const t = clist;
      clist = nlist;
      nlist = t;
      count = next;
    }
    return count < 0;
  }

  private nextGen(): void {
    if (this.gen == i32.MAX_VALUE) {
      const marks = this.marks;
      for (let i = 0; i < marks.length; i++) unchecked((marks[i] = 0));
      this.gen = 0;
    }
    this.gen++;
  }

  /**
   * Adds the thread at `pc0` and every state reachable from it without consuming input to `list`
   * (from `count`), each state once per generation. Returns the new count, or -1 when MATCH is
   * reached (at the end of the input for a full match).
   */
  private add(list: StaticArray<i32>, count: i32, pc0: i32, pos: i32, len: i32, full: bool): i32 {
    const prog = this.prog;
    const marks = this.marks;
    const stack = this.stack;
    const gen = this.gen;
    let sp = 0;
    unchecked((stack[sp++] = pc0));
    while (sp > 0) {
      const pc = unchecked(stack[--sp]);
      if (unchecked(marks[pc]) == gen) continue;
      unchecked((marks[pc] = gen));
      const op = unchecked(prog[pc * 3]);
      if (op == OP_JMP) {
        unchecked((stack[sp++] = prog[pc * 3 + 1]));
      } else if (op == OP_SPLIT) {
        unchecked((stack[sp++] = prog[pc * 3 + 2]));
        unchecked((stack[sp++] = prog[pc * 3 + 1]));
      } else if (op == OP_BOL) {
        if (pos == 0) unchecked((stack[sp++] = pc + 1));
      } else if (op == OP_EOL) {
        if (pos == len) unchecked((stack[sp++] = pc + 1));
      } else if (op == OP_MATCH) {
        if (!full || pos == len) return -1;
      } else {
        unchecked((list[count++] = pc));
      }
    }
    return count;
  }

  private inClass(off: i32, c: i32): bool {
    const cls = this.classes;
    let hit = false;
    if (c < 128) {
      hit = ((unchecked(cls[off + 1 + (c >> 5)]) >>> (c & 31)) & 1) != 0;
    } else {
      const end = off + 6 + 2 * unchecked(cls[off + 5]);
      for (let k = off + 6; k < end; k += 2) {
        if (c >= unchecked(cls[k]) && c <= unchecked(cls[k + 1])) {
          hit = true;
          break;
        }
      }
    }
    return hit != (unchecked(cls[off]) != 0);
  }
}

// ---------------------------------------------------------------------------------------------

class Node {
  subs: Node[] = [];
  min: i32 = 0;
  max: i32 = 0;
  /** Instructions this node compiles to. */
  constructor(
    public kind: i32,
    public value: i32,
    public size: i32,
  ) {}
}

function isQuantifier(c: i32): bool {
  return c == 0x2a || c == 0x2b || c == 0x3f || c == 0x7b;
}

function isAlnum(c: i32): bool {
  return <u32>(c - 0x30) < 10 || <u32>((c | 0x20) - 0x61) < 26;
}

/** Index of \d, \w, \s in SHORTHAND (the start of its pairs) and its pair count, or 0. */
function shorthand(c: i32): i32 {
  const l = c | 0x20;
  if (l == 0x64) return (0 << 8) | 1;
  if (l == 0x77) return (2 << 8) | 4;
  if (l == 0x73) return (10 << 8) | 3;
  return 0;
}

class Parser {
  i: i32 = 0;
  error: string = "";
  errorAt: i32 = -1;
  depth: i32 = 0;
  /** Result of counts(). */
  private repMin: i32 = 0;
  private repMax: i32 = 0;
  /** Class table: per class [negated, 4 words of ASCII bitmap, n, n pairs of ranges >= 128]. */
  classes: i32[] = [];

  constructor(
    private p: string,
    private fold: bool,
  ) {}

  fail(what: string, at: i32): Node | null {
    if (this.error.length == 0) {
      this.error = what + " at offset " + at.toString();
      this.errorAt = at;
    }
    return null;
  }

  private tooBig(at: i32): Node | null {
    return this.fail("program larger than " + MAX_PROGRAM_SIZE.toString() + " instructions", at);
  }

  private peek(): i32 {
    return this.i < this.p.length ? this.p.charCodeAt(this.i) : -1;
  }

  private text(from: i32, to: i32): string {
    return "'" + this.p.substring(from, to) + "'";
  }

  alt(): Node | null {
    const first = this.cat();
    if (first === null || this.peek() != 0x7c) return first;
    const node = new Node(N_ALT, 0, first.size);
    node.subs.push(first);
    while (this.peek() == 0x7c) {
      const at = this.i++;
      const next = this.cat();
      if (next === null) return null;
      node.subs.push(next);
      node.size += next.size + 2;
      if (node.size >= MAX_PROGRAM_SIZE) return this.tooBig(at);
    }
    return node;
  }

  private cat(): Node | null {
    const node = new Node(N_CAT, 0, 0);
    while (this.i < this.p.length) {
      const c = this.peek();
      if (c == 0x7c || c == 0x29) break;
      const at = this.i;
      const item = this.repeat();
      if (item === null) return null;
      node.subs.push(item);
      node.size += item.size;
      if (node.size >= MAX_PROGRAM_SIZE) return this.tooBig(at);
    }
    if (node.subs.length == 0) return new Node(N_EMPTY, 0, 0);
    return node.subs.length == 1 ? node.subs[0] : node;
  }

  private repeat(): Node | null {
    const at = this.i;
    const atom = this.atom();
    if (atom === null || !isQuantifier(this.peek())) return atom;
    const q = this.i;
    const c = this.peek();
    let min = 0;
    let max = -1;
    this.i++;
    if (c == 0x2b) min = 1;
    else if (c == 0x3f) max = 1;
    else if (c == 0x7b) {
      if (!this.counts(q)) return null;
      min = this.repMin;
      max = this.repMax;
    }
    const a = this.p.charCodeAt(at);
    if (a == 0x5e || a == 0x24) return this.fail(this.text(q, this.i) + " has nothing to repeat", q);
    if (this.peek() == 0x3f) {
      this.i++; // lazy: same match / no match as greedy
    } else if (this.peek() == 0x2b) {
      return this.fail("possessive quantifier " + this.text(q, this.i + 1) + " is not supported", q);
    }
    if (isQuantifier(this.peek()))
      return this.fail(this.text(this.i, this.i + 1) + " has nothing to repeat", this.i);
    const s = atom.size;
    let size: i32;
    if (max < 0) size = min == 0 ? s + 2 : s * min + 1;
    else size = s * min + (max - min) * (s + 1);
    if (size >= MAX_PROGRAM_SIZE) return this.tooBig(q);
    const node = new Node(N_REP, 0, size);
    node.subs.push(atom);
    node.min = min;
    node.max = max;
    return node;
  }

  /** Parses {n} {n,} {n,m} at `q` (its '{' already consumed) into min / max (-1: no limit). */
  private counts(q: i32): bool {
    let min = this.number();
    let max = min;
    if (this.peek() == 0x2c) {
      this.i++;
      max = this.peek() == 0x7d ? -1 : this.number();
      if (max == -2) min = -2;
    }
    if (min == -2 || this.peek() != 0x7d) {
      this.fail("malformed repetition (escape a literal '{' as '\\{')", q);
      return false;
    }
    this.i++;
    if (min > MAX_REPEAT || max > MAX_REPEAT) {
      this.fail("repetition count above " + MAX_REPEAT.toString() + " in " + this.text(q, this.i), q);
      return false;
    }
    if (max >= 0 && max < min) {
      this.fail("invalid repetition range " + this.text(q, this.i) + " (min > max)", q);
      return false;
    }
    this.repMin = min;
    this.repMax = max;
    return true;
  }

  /** Decimal digits (capped at 1000), or -2 when there are none. */
  private number(): i32 {
    let n = -2;
    while (<u32>(this.peek() - 0x30) < 10) {
      n = min(max(n, 0) * 10 + this.peek() - 0x30, 1000);
      this.i++;
    }
    return n;
  }

  private atom(): Node | null {
    const at = this.i;
    const c = this.peek();
    if (c == 0x28) return this.group();
    if (c == 0x5b) return this.charClass();
    if (c == 0x5c) {
      const ranges = new Array<i32>();
      const unit = this.escape(ranges, false);
      if (unit == -1) return null;
      if (unit == -2) return new Node(N_CLASS, this.build(ranges, false), 1);
      return new Node(N_CHAR, unit, 1);
    }
    if (isQuantifier(c)) return this.fail(this.text(at, at + 1) + " has nothing to repeat", at);
    if (c == 0x5d || c == 0x7d) {
      const t = this.text(at, at + 1);
      return this.fail(
        "unmatched " + t + " (escape a literal " + t + " as '\\" + this.p.charAt(at) + "')",
        at,
      );
    }
    this.i++;
    if (c == 0x2e) return new Node(N_ANY, 0, 1);
    if (c == 0x5e) return new Node(N_BOL, 0, 1);
    if (c == 0x24) return new Node(N_EOL, 0, 1);
    if (this.fold && <u32>((c | 0x20) - 0x61) < 26) {
      const ranges: i32[] = [c, c];
      return new Node(N_CLASS, this.build(ranges, false), 1);
    }
    return new Node(N_CHAR, c, 1);
  }

  private group(): Node | null {
    const at = this.i++;
    if (this.peek() == 0x3f) {
      const c = this.i + 1 < this.p.length ? this.p.charCodeAt(this.i + 1) : -1;
      const c2 = this.i + 2 < this.p.length ? this.p.charCodeAt(this.i + 2) : -1;
      if (c == 0x3a) {
        this.i += 2;
      } else if (c == 0x3d || c == 0x21) {
        return this.fail("lookahead " + this.text(at, at + 3) + " is not supported", at);
      } else if (c == 0x3c && (c2 == 0x3d || c2 == 0x21)) {
        return this.fail("lookbehind " + this.text(at, at + 4) + " is not supported", at);
      } else if (c == 0x3e) {
        return this.fail("atomic group " + this.text(at, at + 3) + " is not supported", at);
      } else if (c == 0x3c || c == 0x50) {
        return this.fail("named group " + this.text(at, at + 3) + " is not supported", at);
      } else {
        return this.fail("unsupported group syntax " + this.text(at, at + 3), at);
      }
    }
    if (++this.depth > MAX_GROUP_DEPTH) {
      return this.fail("groups nested deeper than " + MAX_GROUP_DEPTH.toString(), at);
    }
    const inner = this.alt();
    this.depth--;
    if (inner === null) return null;
    if (this.peek() != 0x29) return this.fail("missing ')' to close '('", at);
    this.i++;
    return inner;
  }

  /**
   * The escape at `i` (a backslash): returns its code unit, or -2 after appending the ranges of a
   * shorthand class (\d ...) to `ranges`, or -1 after an error. A shorthand is an error when
   * `rangeEnd` (it would end a range).
   */
  private escape(ranges: i32[], rangeEnd: bool): i32 {
    const at = this.i++;
    const e = this.peek();
    if (e < 0) {
      this.fail("trailing '\\'", at);
      return -1;
    }
    this.i++;
    const sh = shorthand(e);
    if (sh != 0) {
      if (rangeEnd) {
        this.fail("invalid range ending in " + this.text(at, at + 2), at);
        return -1;
      }
      addShorthand(ranges, sh, e < 0x61);
      return -2;
    }
    if (e == 0x74) return 0x09;
    if (e == 0x6e) return 0x0a;
    if (e == 0x72) return 0x0d;
    if (e == 0x66) return 0x0c;
    if (e == 0x76) return 0x0b;
    if (e >= 0x20 && e < 0x7f && !isAlnum(e)) return e;
    if (e > 0x30 && e <= 0x39) {
      this.fail("backreference " + this.text(at, at + 2) + " is not supported", at);
    } else {
      this.fail("unsupported escape " + this.text(at, at + 2), at);
    }
    return -1;
  }

  private charClass(): Node | null {
    const at = this.i++;
    let negated = false;
    if (this.peek() == 0x5e) {
      negated = true;
      this.i++;
    }
    if (this.peek() == 0x5d) {
      return this.fail("empty class " + this.text(at, this.i + 1) + " (escape a literal ']' as '\\]')", at);
    }
    const ranges = new Array<i32>();
    while (true) {
      const c = this.peek();
      if (c < 0) return this.fail("missing ']' to close '['", at);
      if (c == 0x5d) break;
      if (c == 0x5b) return this.fail("unescaped '[' in class (escape it as '\\[')", this.i);
      const item = this.i;
      const lo = this.classChar(ranges, false);
      if (lo == -1) return null;
      const n = this.p.length;
      if (this.peek() == 0x2d && this.i + 1 < n && this.p.charCodeAt(this.i + 1) != 0x5d) {
        if (lo == -2) return this.fail("invalid range starting with " + this.text(item, this.i), item);
        this.i++;
        const hi = this.classChar(ranges, true);
        if (hi == -1) return null;
        if (hi < lo) return this.fail("invalid range " + this.text(item, this.i), item);
        ranges.push(lo);
        ranges.push(hi);
      } else if (lo >= 0) {
        ranges.push(lo);
        ranges.push(lo);
      }
    }
    this.i++;
    return new Node(N_CLASS, this.build(ranges, negated), 1);
  }

  private classChar(ranges: i32[], rangeEnd: bool): i32 {
    const c = this.peek();
    if (c == 0x5c) return this.escape(ranges, rangeEnd);
    this.i++;
    return c;
  }

  /** Appends a class to the class table; returns its offset. */
  private build(ranges: i32[], negated: bool): i32 {
    if (this.fold) {
      // Add the other case of every ASCII letter in the class.
      const n = ranges.length;
      for (let r = 0; r < n; r += 2) {
        for (let base = 0x41; base <= 0x61; base += 0x20) {
          const lo = max(ranges[r], base);
          const hi = min(ranges[r + 1], base + 25);
          if (lo <= hi) {
            ranges.push(lo ^ 0x20);
            ranges.push(hi ^ 0x20);
          }
        }
      }
    }
    const t = this.classes;
    const off = t.length;
    t.push(negated ? 1 : 0);
    for (let k = 0; k < 5; k++) t.push(0);
    for (let r = 0; r < ranges.length; r += 2) {
      const lo = ranges[r];
      const hi = ranges[r + 1];
      for (let c = lo; c <= min(hi, 127); c++) t[off + 1 + (c >> 5)] |= 1 << (c & 31);
      if (hi >= 128) {
        t.push(max(lo, 128));
        t.push(hi);
        t[off + 5]++;
      }
    }
    return off;
  }
}

/** Appends the ranges of the shorthand `sh` (see shorthand()), or of its complement. */
function addShorthand(ranges: i32[], sh: i32, negated: bool): void {
  const start = sh >> 8;
  const end = start + 2 * (sh & 0xff);
  let next = 0;
  for (let k = start; k < end; k += 2) {
    const lo = SHORTHAND[k];
    const hi = SHORTHAND[k + 1];
    if (!negated) {
      ranges.push(lo);
      ranges.push(hi);
    } else if (lo > next) {
      ranges.push(next);
      ranges.push(lo - 1);
    }
    next = hi + 1;
  }
  if (negated) {
    ranges.push(next);
    ranges.push(0xffff);
  }
}

class Emitter {
  prog: StaticArray<i32>;
  n: i32 = 0;

  constructor(size: i32) {
    this.prog = new StaticArray<i32>(size * 3);
  }

  put(op: i32, x: i32, y: i32): i32 {
    const pc = this.n++;
    this.prog[pc * 3] = op;
    this.prog[pc * 3 + 1] = x;
    this.prog[pc * 3 + 2] = y;
    return pc;
  }

  private patchY(pc: i32): void {
    this.prog[pc * 3 + 2] = this.n;
  }

  emit(node: Node): void {
    const k = node.kind;
    if (k == N_CHAR) this.put(OP_CHAR, node.value, 0);
    else if (k == N_ANY) this.put(OP_ANY, 0, 0);
    else if (k == N_CLASS) this.put(OP_CLASS, node.value, 0);
    else if (k == N_BOL) this.put(OP_BOL, 0, 0);
    else if (k == N_EOL) this.put(OP_EOL, 0, 0);
    else if (k == N_CAT) {
      for (let i = 0; i < node.subs.length; i++) this.emit(node.subs[i]);
    } else if (k == N_ALT) {
      // SPLIT next-branch; branch; JMP end ... last branch. `jumps` chains the JMPs to patch.
      const last = node.subs.length - 1;
      const jumps = new Array<i32>();
      for (let i = 0; i < last; i++) {
        const split = this.put(OP_SPLIT, this.n + 1, 0);
        this.emit(node.subs[i]);
        jumps.push(this.put(OP_JMP, 0, 0));
        this.patchY(split);
      }
      this.emit(node.subs[last]);
      for (let i = 0; i < jumps.length; i++) this.prog[jumps[i] * 3 + 1] = this.n;
    } else if (k == N_REP) {
      const sub = node.subs[0];
      const min = node.min;
      const max = node.max;
      if (max < 0 && min == 0) {
        // L: SPLIT body, out; body; JMP L
        const loop = this.put(OP_SPLIT, this.n + 1, 0);
        this.emit(sub);
        this.put(OP_JMP, loop, 0);
        this.patchY(loop);
      } else if (max < 0) {
        // body x (min-1); L: body; SPLIT L, out
        for (let i = 1; i < min; i++) this.emit(sub);
        const loop = this.n;
        this.emit(sub);
        this.put(OP_SPLIT, loop, this.n + 1);
      } else {
        // body x min, then (body(body(...)?)?)? for the optional copies, all exiting to the end.
        for (let i = 0; i < min; i++) this.emit(sub);
        const splits = new Array<i32>();
        for (let i = min; i < max; i++) {
          splits.push(this.put(OP_SPLIT, this.n + 1, 0));
          this.emit(sub);
        }
        for (let i = 0; i < splits.length; i++) this.patchY(splits[i]);
      }
    }
  }
}
