// assembly/lib/regex.ts through the AssemblyScript probe module (test/fixtures/lib-probe).
import { beforeAll, describe, expect, it } from "vitest";
import { type LibProbe, loadLibProbe } from "../fixtures/lib-probe/load.ts";

let probe: LibProbe;

beforeAll(async () => {
  probe = await loadLibProbe();
});

type Matcher = ReturnType<LibProbe["regex"]>;
const compiled = new Map<string, Matcher>();

/** One compiled Regex per pattern, reused for every input (as the filters do). */
function re(pattern: string): Matcher {
  let m = compiled.get(pattern);
  if (!m) {
    m = probe.regex(pattern);
    compiled.set(pattern, m);
  }
  return m;
}

/** JavaScript's answer for the same question (no flags: UTF-16 code units, like ours). */
function jsFull(pattern: string, input: string): boolean {
  return new RegExp(`^(?:${pattern})$`).test(input);
}

function jsSearch(pattern: string, input: string): boolean {
  return new RegExp(pattern).test(input);
}

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

describe("supported constructs (fullMatch)", () => {
  // [pattern, inputs that match the whole, inputs that do not]
  const cases: [string, string[], string[]][] = [
    ["", [""], ["a"]],
    ["abc", ["abc"], ["", "ab", "abcd", "xabc", "ABC"]],
    ["a.c", ["abc", "a.c", "a c", "a\rc"], ["ac", "a\nc", "abbc"]],
    ["\\.\\\\\\*", [".\\*"], ["a\\*", ".\\"]],
    ["\\/api\\/v1\\-x\\_\\ ", ["/api/v1-x_ "], ["/api/v1-x_"]],
    ["\\.\\*\\+\\?\\(\\)\\[\\]\\{\\}\\|\\^\\$\\\\", [".*+?()[]{}|^$\\"], [""]],
    ["a\\tb\\nc\\rd\\fe\\vf", ["a\tb\nc\rd\fe\vf"], ["atbncrdfevf"]],
    ["[abc]", ["a", "b", "c"], ["", "d", "ab"]],
    ["[a-z0-9]+", ["abc123", "z", "0"], ["", "A", "a-b", "a b"]],
    ["[^a-z]", ["A", "0", "-", "\n", "é"], ["a", "z", ""]],
    ["[-a]+", ["-a-", "a"], ["b"]],
    ["[a-]+", ["-a-", "a"], ["b"]],
    ["[a-c-e]+", ["abc-e", "-"], ["d"]],
    ["[\\]\\[\\\\\\-\\^]+", ["][\\-^"], ["a"]],
    ["[.*+?(){}|$^]+", [".*+?(){}|$^"], ["a", "\\"]],
    ["[\\t\\n]", ["\t", "\n"], [" ", "t"]],
    ["\\d+", ["0123456789"], ["", "a", "١"]],
    ["\\D+", ["abc -"], ["a1"]],
    ["\\w+", ["azAZ09_"], ["-", "é", " "]],
    ["\\W+", ["- .é"], ["a", "_"]],
    ["\\s+", [" \t\n\r\f"], ["\v", "\u00a0", "a"]],
    ["\\S+", ["ab\v\u00a0"], [" ", "a b"]],
    ["[\\d.]+", ["1.2.3"], ["1,2"]],
    ["[^\\d\\s]+", ["abc-"], ["a1", "a b"]],
    ["[\\D]", ["a"], ["1"]],
    ["[^\\D]", ["7"], ["a"]],
    ["[\\w-]+\\.example\\.com", ["api-1.example.com"], ["api.example.org", ".example.com"]],
    ["(ab)+", ["ab", "abab"], ["", "aba"]],
    ["(?:ab)+c", ["abc", "ababc"], ["c", "abac"]],
    ["(a|b)*c", ["c", "abbac"], ["abd"]],
    ["a|b|", ["a", "b", ""], ["ab"]],
    ["(|x)y", ["y", "xy"], ["xxy"]],
    ["()", [""], ["a"]],
    ["(?:)*a", ["a"], [""]],
    ["(a|ab)(c|bcd)(d*)", ["abcd", "acd", "abbcd"], ["abd"]],
    ["a*", ["", "aaa"], ["b"]],
    ["a+", ["a", "aaa"], [""]],
    ["a?", ["", "a"], ["aa"]],
    ["a{3}", ["aaa"], ["aa", "aaaa"]],
    ["a{2,}", ["aa", "aaaaaaa"], ["a"]],
    ["a{2,4}", ["aa", "aaa", "aaaa"], ["a", "aaaaa"]],
    ["a{0}b", ["b"], ["ab"]],
    ["a{0,0}", [""], ["a"]],
    ["a{0,2}", ["", "a", "aa"], ["aaa"]],
    ["(ab){1,2}c", ["abc", "ababc"], ["c", "abababc"]],
    ["[0-9]{1,100}", ["1", "9".repeat(100)], ["", "9".repeat(101)]],
    ["a{100}", ["a".repeat(100)], ["a".repeat(99), "a".repeat(101)]],
    ["a{100,}", ["a".repeat(100), "a".repeat(1000)], ["a".repeat(99)]],
    ["a*?b", ["b", "aab"], ["a"]],
    ["a+?", ["a", "aa"], [""]],
    ["a??b", ["b", "ab"], ["aab"]],
    ["a{2,3}?", ["aa", "aaa"], ["a"]],
    ["^abc$", ["abc"], ["abcabc"]],
    ["^", [""], ["a"]],
    ["$", [""], ["a"]],
    ["a^b", [], ["ab", "a^b"]],
    ["a$b", [], ["ab", "a$b"]],
    ["(^a|b)+", ["a", "ab", "abb"], ["ba", "aa"]],
    ["(a$|b)+", ["a", "ba", "bba"], ["ab"]],
    ["é+", ["éé"], ["e"]],
    ["[à-ÿ]+", ["àéÿ"], ["a", "Ā"]],
    ["(?:😀)+", ["😀😀"], ["😀\ud83d"]],
    ["😀+", ["😀\ude00"], ["😀😀"]], // code units: + repeats the low surrogate
    ["..", ["😀", "ab"], ["a"]],
  ];

  it.each(cases)("%j", (pattern, yes, no) => {
    const m = re(pattern);
    for (const s of yes) expect(m.fullMatch(s), `${pattern} should match ${JSON.stringify(s)}`).toBe(true);
    for (const s of no)
      expect(m.fullMatch(s), `${pattern} should not match ${JSON.stringify(s)}`).toBe(false);
  });
});

describe("fullMatch vs search, anchors", () => {
  it("fullMatch needs the whole input; search finds a match anywhere", () => {
    const m = re("b+");
    expect(m.fullMatch("bbb")).toBe(true);
    expect(m.fullMatch("abbbc")).toBe(false);
    expect(m.search("abbbc")).toBe(true);
    expect(m.search("ac")).toBe(false);
    expect(m.search("")).toBe(false);
    expect(re("x*").search("")).toBe(true);
    expect(re("x*").search("abc")).toBe(true);
    expect(re("").search("anything")).toBe(true);
    expect(re("/orders/[0-9]+").fullMatch("/orders/42")).toBe(true);
    expect(re("/orders/[0-9]+").fullMatch("/orders/42/items")).toBe(false);
    expect(re("/orders/[0-9]+").search("/v1/orders/42/items")).toBe(true);
  });

  it("^ and $ anchor search to the start and the end of the input only", () => {
    expect(re("^ab").search("abc")).toBe(true);
    expect(re("^ab").search("cab")).toBe(false);
    expect(re("bc$").search("abc")).toBe(true);
    expect(re("bc$").search("bca")).toBe(false);
    expect(re("^abc$").search("abc")).toBe(true);
    expect(re("^abc$").search("abc\n")).toBe(false); // no Perl-style "before a final newline"
    expect(re("^b").search("a\nb")).toBe(false); // no multi-line mode
    expect(re("a$").search("a\nb")).toBe(false);
    expect(re("^$").search("")).toBe(true);
    expect(re("^$").search("a")).toBe(false);
    expect(re("x|^a").search("ba")).toBe(false);
    expect(re("x|^a").search("ab")).toBe(true);
    expect(re("a$|x").search("ab")).toBe(false);
    expect(re("(^|/)admin($|/)").search("/api/admin/users")).toBe(true);
    expect(re("(^|/)admin($|/)").search("/api/administrator")).toBe(false);
    expect(re("(^|/)admin($|/)").search("admin")).toBe(true);
  });

  it("a compiled Regex is reusable: many calls on one instance keep answering correctly", () => {
    const m = re("(a|b)*abb");
    for (let i = 0; i < 2000; i++) {
      const input = i.toString(2).replaceAll("0", "a").replaceAll("1", "b");
      expect(m.fullMatch(input)).toBe(input.endsWith("abb"));
      expect(m.search(input)).toBe(input.includes("abb"));
    }
  });
});

describe("agrees with JavaScript's RegExp on the supported subset", () => {
  const patterns = [
    "",
    "a",
    "abc",
    "a.c",
    "a*",
    "a+b+",
    "ab?c",
    "a|b",
    "ab|cd",
    "a|",
    "|a",
    "(a|b)*c",
    "(?:ab)+",
    "(a|ab)(c|bcd)(d*)",
    "((a))",
    "(a*)*",
    "(a*)+b",
    "(a|aa)*b",
    "a{3}",
    "a{2,}",
    "a{2,4}",
    "a{0}",
    "a{0,0}b",
    "(ab){2,3}",
    "[ab]{1,3}c",
    "x{1,2}?y",
    "a*?b",
    "a??b",
    "[abc]",
    "[a-z]+",
    "[a-z0-9_-]+",
    "[^a-z]",
    "[^abc]+",
    "[\\]\\[]+",
    "[\\\\]",
    "[.]",
    "[*+?{}()|^$]+",
    "[\\^a]",
    "[a\\-z]",
    "\\d+",
    "\\D+",
    "\\w+",
    "\\W",
    "\\S+",
    "[\\d.]+",
    "[^\\d]+",
    "[\\w-]+",
    "[^\\W]",
    "\\.\\*\\+\\?\\(\\)\\[\\]\\{\\}\\|\\^\\$\\\\",
    "\\/api\\/v1",
    "a\\tb",
    "^abc",
    "abc$",
    "^$",
    "^",
    "$",
    "a^b",
    "a$b",
    "(^a|b$)",
    "^(a|b)*$",
    "x*$",
    "(a$)|b",
    "/orders/[0-9]+",
    "v2\\.reviews(:\\d+)?",
    "/api/v[12]/users/\\d{1,6}",
    "(GET|HEAD|POST)",
    "[a-z0-9-]+\\.example\\.com",
    "Bearer [A-Za-z0-9._~+/-]+=*",
    "(\\d{1,3}\\.){3}\\d{1,3}",
    ".*",
    ".+",
    "a.*b",
    ".*foo.*",
    "(.)(.)(.)",
    "é+",
    "[à-ÿ]+",
    "😀",
    "..",
    "(a|b)*abb",
    "(x+x+)+y",
    "([a-z]+.)+[A-Z][a-z]+",
  ];
  const inputs = [
    "",
    "a",
    "b",
    "c",
    "ab",
    "abc",
    "aab",
    "aaab",
    "abcd",
    "abd",
    "acd",
    "abbcd",
    "xyz",
    "xxy",
    "aaa",
    "aaaa",
    "abab",
    "ababab",
    "cd",
    "a-b",
    "A_9",
    "12",
    "123.45",
    "1.2.3.4",
    "256.1.1.1",
    "1.2.3",
    " ",
    "\t",
    "a\tb",
    "a\nb",
    "\n",
    "x y",
    "/orders/42",
    "/orders/",
    "/orders/4a",
    "/v1/orders/42/x",
    "v2.reviews",
    "v2.reviews:8080",
    "v2xreviews",
    "/api/v1/users/123456",
    "/api/v1/users/1234567",
    "/api/v3/users/1",
    "GET",
    "HEAD",
    "PUT",
    "foo.example.com",
    "a.example.org",
    "Bearer abc.DEF-123=",
    "Bearer ",
    "[]",
    "][",
    "\\",
    ".*+?",
    ".*+?()[]{}|^$\\",
    "^$",
    "é",
    "ééé",
    "😀",
    "x😀",
    "foo",
    "xfooy",
    "ba",
    "bab",
    "aabb",
    "babb",
    "aaabbabb",
    "bcd",
    "abcbcd",
    "xxxxxxxxxxxx",
    "abc.Def",
    "abc.def",
  ];

  it(`${patterns.length} patterns x ${inputs.length} inputs, fullMatch and search`, () => {
    const mismatches: string[] = [];
    for (const p of patterns) {
      const m = re(p);
      for (const s of inputs) {
        if (m.fullMatch(s) !== jsFull(p, s)) mismatches.push(`fullMatch ${p} ${JSON.stringify(s)}`);
        if (m.search(s) !== jsSearch(p, s)) mismatches.push(`search ${p} ${JSON.stringify(s)}`);
      }
    }
    expect(mismatches).toEqual([]);
  });

  it("random patterns and inputs", () => {
    const random = rng(20_240_601);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)] as T;
    const atoms = ["a", "b", "1", ".", "[ab]", "[^a]", "[a1]", "\\d", "\\w", "\\D", "[b-z]"];
    const quantifiers = ["*", "+", "?", "{2}", "{0,2}", "{1,3}", "{2,}", "*?", "+?", "{0,1}?"];
    const gen = (depth: number): string => {
      const parts: string[] = [];
      const n = 1 + Math.floor(random() * 3);
      for (let i = 0; i < n; i++) {
        const r = random();
        let atom: string;
        if (depth < 3 && r < 0.25) atom = `(${random() < 0.5 ? "" : "?:"}${gen(depth + 1)})`;
        else if (r < 0.3) atom = pick(["^", "$"]);
        else atom = pick(atoms);
        if (atom !== "^" && atom !== "$" && random() < 0.4) atom += pick(quantifiers);
        parts.push(atom);
      }
      const s = parts.join("");
      return random() < 0.25 ? `${s}|${gen(depth + 1)}` : s;
    };
    const mismatches: string[] = [];
    let matched = 0;
    for (let i = 0; i < 400; i++) {
      const p = gen(0);
      const m = probe.regex(p);
      for (let j = 0; j < 40; j++) {
        const len = Math.floor(random() * 9);
        let s = "";
        for (let k = 0; k < len; k++) s += pick(["a", "b", "1", "c"]);
        const full = m.fullMatch(s);
        if (full) matched++;
        if (full !== jsFull(p, s)) mismatches.push(`fullMatch /${p}/ ${JSON.stringify(s)}`);
        if (m.search(s) !== jsSearch(p, s)) mismatches.push(`search /${p}/ ${JSON.stringify(s)}`);
      }
    }
    expect(mismatches).toEqual([]);
    expect(matched).toBeGreaterThan(500);
  });

  it("differs from JavaScript only where documented (RE2 semantics)", () => {
    // '.' excludes only \n (JavaScript also excludes \r, U+2028, U+2029).
    expect(re(".").fullMatch("\r")).toBe(true);
    expect(jsFull(".", "\r")).toBe(false);
    expect(re(".").fullMatch("\u2028")).toBe(true);
    // \s is [\t\n\f\r ] (JavaScript adds \v and Unicode spaces).
    expect(re("\\s").fullMatch("\v")).toBe(false);
    expect(jsFull("\\s", "\v")).toBe(true);
    expect(re("\\s").fullMatch("\u00a0")).toBe(false);
    expect(re("\\S").fullMatch("\u00a0")).toBe(true);
  });
});

describe("ignoreCase (ASCII letters only)", () => {
  it("agrees with JavaScript's i flag on ASCII inputs", () => {
    const patterns = [
      "abc",
      "[a-c]+",
      "[^a]",
      "[^A-Z]+",
      "[X-c]+",
      "v2\\.reviews(:\\d+)?",
      "\\D+",
      "\\W",
      "\\S+",
      "\\w+",
      "[\\D]",
      "(GET|head)",
      "[^\\Wa]",
    ];
    const inputs = [
      "abc",
      "ABC",
      "aBc",
      "a",
      "A",
      "b",
      "B",
      "Z",
      "z",
      "[",
      "`",
      "_",
      "x",
      "XYZ",
      "ab",
      "1",
      "V2.Reviews:80",
      "Get",
      "HEAD",
      "a b",
      "A1",
    ];
    const mismatches: string[] = [];
    for (const p of patterns) {
      const m = probe.regex(p, true);
      for (const s of inputs) {
        if (m.fullMatch(s) !== new RegExp(`^(?:${p})$`, "i").test(s))
          mismatches.push(`${p} ${JSON.stringify(s)}`);
      }
    }
    expect(mismatches).toEqual([]);
  });

  it("does not fold non-ASCII letters; without the flag, case matters", () => {
    expect(probe.regex("é", true).fullMatch("É")).toBe(false);
    expect(probe.regex("abc", false).fullMatch("ABC")).toBe(false);
    expect(probe.regex("[^\\D]", true).fullMatch("5")).toBe(true);
  });
});

describe("rejected patterns: message and offset", () => {
  const cases: [string, string][] = [
    ["(a)\\1", "backreference '\\1' is not supported at offset 3"],
    ["\\9", "backreference '\\9' is not supported at offset 0"],
    ["[\\1]", "backreference '\\1' is not supported at offset 1"],
    ["(?=a)a", "lookahead '(?=' is not supported at offset 0"],
    ["a(?!b)", "lookahead '(?!' is not supported at offset 1"],
    ["(?<=a)b", "lookbehind '(?<=' is not supported at offset 0"],
    ["(?<!a)b", "lookbehind '(?<!' is not supported at offset 0"],
    ["(?>a+)b", "atomic group '(?>' is not supported at offset 0"],
    ["(?<name>a)", "named group '(?<' is not supported at offset 0"],
    ["(?P<name>a)", "named group '(?P' is not supported at offset 0"],
    ["(?i)abc", "unsupported group syntax '(?i' at offset 0"],
    ["(?#c)", "unsupported group syntax '(?#' at offset 0"],
    ["(?", "unsupported group syntax '(?' at offset 0"],
    ["a*+", "possessive quantifier '*+' is not supported at offset 1"],
    ["a++", "possessive quantifier '++' is not supported at offset 1"],
    ["a?+", "possessive quantifier '?+' is not supported at offset 1"],
    ["a{2}+", "possessive quantifier '{2}+' is not supported at offset 1"],
    ["(a", "missing ')' to close '(' at offset 0"],
    ["((a)", "missing ')' to close '(' at offset 0"],
    ["a(b(c)", "missing ')' to close '(' at offset 1"],
    ["a)", "unmatched ')' at offset 1"],
    ["(a))", "unmatched ')' at offset 3"],
    [")", "unmatched ')' at offset 0"],
    ["[a", "missing ']' to close '[' at offset 0"],
    ["x[^", "missing ']' to close '[' at offset 1"],
    ["[a\\]", "missing ']' to close '[' at offset 0"],
    ["a]", "unmatched ']' (escape a literal ']' as '\\]') at offset 1"],
    ["a}", "unmatched '}' (escape a literal '}' as '\\}') at offset 1"],
    ["[]a]", "empty class '[]' (escape a literal ']' as '\\]') at offset 0"],
    ["[^]", "empty class '[^]' (escape a literal ']' as '\\]') at offset 0"],
    ["[[:alpha:]]", "unescaped '[' in class (escape it as '\\[') at offset 1"],
    ["*a", "'*' has nothing to repeat at offset 0"],
    ["+", "'+' has nothing to repeat at offset 0"],
    ["?", "'?' has nothing to repeat at offset 0"],
    ["{2}", "'{' has nothing to repeat at offset 0"],
    ["a|*", "'*' has nothing to repeat at offset 2"],
    ["(*)", "'*' has nothing to repeat at offset 1"],
    ["a**", "'*' has nothing to repeat at offset 2"],
    ["a*?*", "'*' has nothing to repeat at offset 3"],
    ["a{2}{3}", "'{' has nothing to repeat at offset 4"],
    ["^*", "'*' has nothing to repeat at offset 1"],
    ["a$+", "'+' has nothing to repeat at offset 2"],
    ["^{2}", "'{2}' has nothing to repeat at offset 1"],
    ["[z-a]", "invalid range 'z-a' at offset 1"],
    ["[a-c9-0]", "invalid range '9-0' at offset 4"],
    ["[\\d-z]", "invalid range starting with '\\d' at offset 1"],
    ["[a-\\w]", "invalid range ending in '\\w' at offset 3"],
    ["a{101}", "repetition count above 100 in '{101}' at offset 1"],
    ["a{1,101}", "repetition count above 100 in '{1,101}' at offset 1"],
    ["a{99999999999}", "repetition count above 100 in '{99999999999}' at offset 1"],
    ["a{3,2}", "invalid repetition range '{3,2}' (min > max) at offset 1"],
    ["a{", "malformed repetition (escape a literal '{' as '\\{') at offset 1"],
    ["a{x}", "malformed repetition (escape a literal '{' as '\\{') at offset 1"],
    ["a{,3}", "malformed repetition (escape a literal '{' as '\\{') at offset 1"],
    ["a{1", "malformed repetition (escape a literal '{' as '\\{') at offset 1"],
    ["a{1,2", "malformed repetition (escape a literal '{' as '\\{') at offset 1"],
    ["a{1 }", "malformed repetition (escape a literal '{' as '\\{') at offset 1"],
    ["\\b", "unsupported escape '\\b' at offset 0"],
    ["a\\B", "unsupported escape '\\B' at offset 1"],
    ["\\A", "unsupported escape '\\A' at offset 0"],
    ["\\z", "unsupported escape '\\z' at offset 0"],
    ["\\x41", "unsupported escape '\\x' at offset 0"],
    ["\\u0041", "unsupported escape '\\u' at offset 0"],
    ["\\p{L}", "unsupported escape '\\p' at offset 0"],
    ["\\0", "unsupported escape '\\0' at offset 0"],
    ["\\é", "unsupported escape '\\é' at offset 0"],
    ["[\\b]", "unsupported escape '\\b' at offset 1"],
    ["a\\", "trailing '\\' at offset 1"],
    ["[a\\", "trailing '\\' at offset 2"],
  ];

  it.each(cases)("%j", (pattern, message) => {
    expect(probe.regexCompile(pattern)).toEqual({
      error: message,
      offset: Number(/at offset (\d+)$/.exec(message)?.[1]),
    });
  });
});

describe("limits", () => {
  it("pattern length: 1024 characters", () => {
    expect(probe.regexCompile("a".repeat(1024))).toEqual({ size: 1025 });
    expect(probe.regexCompile("a".repeat(1025))).toEqual({
      error: "pattern longer than 1024 characters at offset 1024",
      offset: 1024,
    });
  });

  it("program size counts expanded repetitions, up to 2000 instructions", () => {
    const sizes: [string, number][] = [
      ["", 1],
      ["abc", 4],
      ["a*", 4],
      ["a+", 3],
      ["a?", 3],
      ["a{3}", 4],
      ["a{2,4}", 7],
      ["a{2,}", 4],
      ["a|b|c", 8],
      ["[0-9]{1,100}", 200],
      ["(?:a{100}){19}b{99}", 2000],
    ];
    for (const [pattern, size] of sizes) expect(probe.regexCompile(pattern), pattern).toEqual({ size });
    expect(probe.regexCompile("(?:a{100}){19}b{99}c")).toEqual({
      error: "program larger than 2000 instructions at offset 19",
      offset: 19,
    });
    expect(probe.regexCompile("(a{100}){20}")).toEqual({
      error: "program larger than 2000 instructions at offset 8",
      offset: 8,
    });
    expect(probe.regexCompile("((a{100}){100}){100}")).toEqual({
      error: "program larger than 2000 instructions at offset 9",
      offset: 9,
    });
    expect(probe.regexCompile(`${"a{100}".repeat(20)}`).error).toBe(
      "program larger than 2000 instructions at offset 114",
    );
  });

  it("group nesting: 100 levels", () => {
    expect(probe.regexCompile(`${"(".repeat(100)}a${")".repeat(100)}`)).toEqual({ size: 2 });
    expect(probe.regexCompile(`${"(".repeat(101)}a${")".repeat(101)}`)).toEqual({
      error: "groups nested deeper than 100 at offset 100",
      offset: 100,
    });
  });
});

describe("linear time on hostile patterns and inputs", () => {
  const many = (n: number) => probe.repeat("a", n, "");

  it("(a*)*b and (a|a)*c against 50,000 'a's", () => {
    const input = many(50_000);
    expect(re("(a*)*b").fullMatch(input)).toBe(false);
    expect(re("(a*)*b").search(input)).toBe(false);
    expect(re("(a|a)*c").fullMatch(input)).toBe(false);
    expect(re("(a|a)*c").search(input)).toBe(false);
    expect(re("(a*)*").fullMatch(input)).toBe(true);
    expect(re("(a|a)*").fullMatch(input)).toBe(true);
  });

  it("(a|aa)*b against a 100 KiB header value", () => {
    const value = many(100 * 1024);
    expect(re("(a|aa)*b").fullMatch(value)).toBe(false);
    expect(re("(a|aa)*b").fullMatch(`${value}b`)).toBe(true);
    expect(re("(a|aa)*b").search(`${value}b`)).toBe(true);
    expect(re("(a|aa)*b").search(value)).toBe(false);
  });

  it("classic ReDoS patterns", () => {
    const xs = probe.repeat("x", 50_000, "");
    expect(re("(x+x+)+y").fullMatch(xs)).toBe(false);
    expect(re("(x+x+)+y").search(xs)).toBe(false);
    expect(re("(a?){25}a{25}").fullMatch(many(25))).toBe(true);
    expect(re("(a?){100}a{100}").fullMatch(many(100))).toBe(true);
    expect(re("(a?){100}a{100}").fullMatch(many(99))).toBe(false);
    expect(re("^(([a-z])+.)+[A-Z]([a-z])+$").search(probe.repeat("a", 30_000, "!"))).toBe(false);
    expect(re("(\\w+\\s?)*").fullMatch(probe.repeat("word ", 10_000, "!"))).toBe(false);
    expect(re("(.*a){20}").fullMatch(many(20_000))).toBe(true);
    expect(re("(.*a){20}").fullMatch(probe.repeat("a", 20_000, "b"))).toBe(false);
  });

  it("the largest program against a long input", () => {
    const m = re("[a-z0-9]{1,100}[a-z0-9]{1,100}(?:[a-z]|[0-9]){0,100}b");
    expect(m.fullMatch(probe.repeat("a", 10_000, ""))).toBe(false);
    expect(m.search(probe.repeat("a", 10_000, "b"))).toBe(true);
  });
});
