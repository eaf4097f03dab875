// Header maps (HeaderMap get/set/add/remove/pairs/setPairs/byteSize), the pair codec
// (serializeHeaders/deserializeHeaders), bodies through getBuffer/setBuffer, trailers, local replies.
import { beforeAll, describe, expect, it } from "vitest";
import { decodePairs, encodePairs, type HeaderPair, type Plugin } from "../../host/index.ts";
import {
  header,
  moduleMessages,
  opRequest,
  probeModule,
  probePlugin,
  results,
  runOp,
  text,
} from "./probe.ts";

beforeAll(async () => {
  await probeModule();
}, 120_000);

const utf8 = (s: string) => new TextEncoder().encode(s);
const KIB64 = `${"v".repeat(65_535)}é`; // 65,537 bytes of UTF-8

async function plugin(): Promise<Plugin> {
  return (await probePlugin({ rootId: "alpha" })).plugin;
}

describe("HeaderMap on the request headers", () => {
  it("get finds a value (the first of repeated ones), an empty value, and reports a missing name", async () => {
    const p = await plugin();
    const extra: HeaderPair[] = [
      ["x-multi", "first"],
      ["x-multi", "second"],
      ["x-empty", ""],
      ["x-utf8", "grüß ✓"],
    ];
    expect(runOp(p, "get", "x-multi", undefined, extra).r).toMatchObject({ found: "1", value: "first" });
    expect(runOp(p, "get", "x-empty", undefined, extra).r).toEqual({ found: "1", value: "" });
    expect(runOp(p, "get", "x-utf8", undefined, extra).r).toEqual({ found: "1", value: "grüß ✓" });
    expect(runOp(p, "get", "x-missing", undefined, extra).r).toEqual({ found: "0" });
    expect(runOp(p, "get", ":authority").r).toEqual({ found: "1", value: "probe" });
  });

  it("keeps bytes that are not UTF-8 in names and values, through get, set and pairs", async () => {
    const p = await plugin();
    // The host's strings carry such bytes as escapes, U+DC80 + (byte - 0x80) (host/memory.ts).
    const extra: HeaderPair[] = [
      ["x-bytes", "tester\udcff"],
      ["x-latin1", "t\udce9ster"],
      ["x-cut", "caf\udcc3"],
      ["x-\udcff", "by a name of bytes"],
    ];
    expect(runOp(p, "get", "x-bytes", undefined, extra).r).toEqual({ found: "1", value: "tester\udcff" });
    expect(runOp(p, "get", "x-latin1", undefined, extra).r).toEqual({ found: "1", value: "t\udce9ster" });
    expect(runOp(p, "get", "x-cut", undefined, extra).r).toEqual({ found: "1", value: "caf\udcc3" });
    expect(runOp(p, "get", "x-\udcff", undefined, extra).r).toEqual({
      found: "1",
      value: "by a name of bytes",
    });
    expect(runOp(p, "get", "x-\udcfe", undefined, extra).r).toEqual({ found: "0" });
    const set = runOp(p, "set", "x-out", "v\udcfe\udc80", extra);
    expect(header(set.headers, "x-out")).toBe("v\udcfe\udc80");
    // pairs() and setPairs() hand every pair back as it came.
    const copied = runOp(p, "copy", undefined, undefined, extra);
    for (const [name, value] of extra) expect(header(copied.headers, name)).toBe(value);
  });

  it("set replaces a value or adds the header; add appends; remove drops every value", async () => {
    const p = await plugin();
    const existing: HeaderPair[] = [["x-h", "old"]];
    const set = runOp(p, "set", "x-h", "new", existing);
    expect(set.r.status).toBe("0");
    expect(set.headers.filter(([n]) => n === "x-h")).toEqual([["x-h", "new"]]);

    const added = runOp(p, "set", "x-fresh", "ü");
    expect(header(added.headers, "x-fresh")).toBe("ü");

    const appended = runOp(p, "add", "x-h", "more", existing);
    expect(appended.r.status).toBe("0");
    expect(appended.headers.filter(([n]) => n === "x-h")).toEqual([
      ["x-h", "old"],
      ["x-h", "more"],
    ]);

    const removed = runOp(p, "remove", "x-h", undefined, [...existing, ["x-h", "again"], ["x-keep", "1"]]);
    expect(removed.r.status).toBe("0");
    expect(removed.headers.some(([n]) => n === "x-h")).toBe(false);
    expect(header(removed.headers, "x-keep")).toBe("1");
    expect(runOp(p, "remove", "x-never-there").r.status).toBe("0");
  });

  it("pairs returns every pair in order, including empty, non-ASCII and 64 KiB values", async () => {
    const p = await plugin();
    const extra: HeaderPair[] = [
      ["x-empty", ""],
      ["x-utf8", "日本語 ✓ \u{1F680}"],
      ["x-quote", 'a "quoted" \\ value'],
      ["x-big", KIB64],
      ["x-empty", "second"],
    ];
    const request = opRequest("pairs", undefined, undefined, extra);
    const r = results(p.newHttpStream().requestHeaders(request, true).headers);
    expect(r.count).toBe(String(request.length));
    expect(JSON.parse(r.pairs as string)).toEqual(request);
  });

  it("get on an empty map (trailers with no pairs) finds nothing", async () => {
    const p = await plugin();
    const stream = p.newHttpStream();
    stream.requestHeaders(opRequest("trailers", "x-none"), false);
    const trailers = stream.requestTrailers([]);
    expect(trailers.trailers).toEqual([["x-r-trailer", "<null>|0"]]);
  });

  it("setPairs replaces the whole map with exactly the given pairs", async () => {
    const p = await plugin();
    expect(runOp(p, "set-pairs", "a=1&b=&c=ü=2&d").headers).toEqual([
      ["a", "1"],
      ["b", ""],
      ["c", "ü=2"],
      ["d", ""],
    ]);
    expect(runOp(p, "set-pairs", "").headers).toEqual([]);
  });

  it("pairs then setPairs round-trips the map through the SDK codec unchanged", async () => {
    const p = await plugin();
    const request = opRequest("copy", undefined, undefined, [
      ["x-empty", ""],
      ["x-utf8", "ünïcödé \u{1F680}"],
      ["x-big", KIB64],
      ["x-nul-free", "a\tb"],
    ]);
    const stream = p.newHttpStream();
    const { headers } = stream.requestHeaders(request, true);
    expect(headers).toEqual([...request, ["x-r-copied", String(request.length)]]);
  });

  it("byteSize is the host's size of the map: name and value bytes", async () => {
    const p = await plugin();
    const request = opRequest("size", undefined, undefined, [
      ["x-utf8", "ü✓"],
      ["x-big", KIB64],
    ]);
    const expected = request.reduce((sum, [n, v]) => sum + utf8(n).byteLength + utf8(v).byteLength, 0);
    const stream = p.newHttpStream();
    const { headers } = stream.requestHeaders(request, true);
    expect(header(headers, "x-r-size")).toBe(String(expected));
  });
});

describe("HeaderMap on response headers and trailers", () => {
  it("reads and edits the response headers in on_response_headers", async () => {
    const p = await plugin();
    const stream = p.newHttpStream();
    stream.requestHeaders(opRequest("resp-headers"), true);
    const response = stream.responseHeaders(
      [
        [":status", "201"],
        ["server", "upstream"],
        ["x-up", "1"],
      ],
      true,
    );
    expect(response.action).toBe("continue");
    expect(response.headers).toEqual([
      [":status", "201"],
      ["x-up", "1"],
      ["x-sdk-root", "alpha"],
      ["x-r-status-seen", "201"],
      ["x-r-count", "3"],
      ["x-r-multi", "1"],
      ["x-r-multi", "2"],
    ]);
  });

  it("reads and edits request and response trailers", async () => {
    const p = await plugin();
    const stream = p.newHttpStream();
    stream.requestHeaders(opRequest("trailers", "x-checksum"), false);
    expect(stream.requestBody("body", false).action).toBe("continue");
    const requestTrailers = stream.requestTrailers([
      ["x-checksum", "abc"],
      ["x-other", "1"],
    ]);
    expect(requestTrailers.trailers).toEqual([
      ["x-checksum", "abc"],
      ["x-other", "1"],
      ["x-r-trailer", "abc|2"],
    ]);
    stream.responseHeaders([[":status", "200"]], false);
    const responseTrailers = stream.responseTrailers([["grpc-status", "0"]]);
    expect(responseTrailers.trailers).toEqual([
      ["grpc-status", "0"],
      ["x-r-resp-trailers", "1"],
    ]);
  });

  it("reads the final maps in on_log (access-log phase)", async () => {
    const { host, plugin: p } = await probePlugin();
    const stream = p.newHttpStream();
    stream.requestHeaders(opRequest("access-log"), true);
    stream.responseHeaders([[":status", "418"]], true);
    stream.complete();
    expect(moduleMessages(host)).toEqual(
      expect.arrayContaining([
        "sdk-probe: access-log status=418 path=/sdk",
        `sdk-probe: deleted ${stream.contextId}`,
      ]),
    );
  });
});

describe("serializeHeaders / deserializeHeaders", () => {
  /** Sends `bytes` as the request body through the "codec" operation: decode, encode again. */
  function codec(p: Plugin, bytes: Uint8Array, op = "codec"): Uint8Array {
    const stream = p.newHttpStream();
    stream.requestHeaders(opRequest(op), false);
    const result = stream.requestBody(bytes, true);
    expect(result.action).toBe("continue");
    expect(stream.failure).toBeUndefined();
    return result.body;
  }
  const decoded = (p: Plugin, bytes: Uint8Array): HeaderPair[] =>
    JSON.parse(text(codec(p, bytes, "codec-json")));

  const cases: [string, HeaderPair[]][] = [
    ["no pairs", []],
    ["one pair", [["a", "1"]]],
    [
      "empty names and values",
      [
        ["", ""],
        ["x", ""],
        ["", "y"],
      ],
    ],
    [
      "non-ASCII",
      [
        ["grüße", "✓ ünïcödé"],
        ["emoji", "\u{1F680}\u{1F30D}"],
        ["日本", "語"],
      ],
    ],
    ["a 64 KiB value", [["x-big", KIB64]]],
    ["a 64 KiB name", [[KIB64, "v"]]],
    ["many pairs", Array.from({ length: 500 }, (_, i): HeaderPair => [`x-${i}`, `value-${i}`])],
  ];

  it.each(cases)("round-trips %s byte for byte, in the host's wire format", async (_, pairs) => {
    const p = await plugin();
    const wire = encodePairs(pairs);
    expect(Buffer.from(codec(p, wire)).equals(Buffer.from(wire))).toBe(true);
    expect(decoded(p, wire)).toEqual(pairs);
  });

  it("round-trips bytes that are not UTF-8 byte for byte", async () => {
    const p = await plugin();
    const wire = encodePairs([
      ["x-bytes", "tester\udcff"],
      ["x-\udce9", "caf\udce9"],
      ["x-cut", "\udce2\udc82"],
      ["x-surrogate", "\udced\udca0\udc80"],
      ["x-bom", "\ufeffbom"],
      ["x-mixed", "ü\udcff\u{1F680}\udc80"],
    ]);
    expect(Buffer.from(wire).includes(Buffer.from([0x72, 0xff, 0]))).toBe(true);
    expect(Buffer.from(codec(p, wire)).equals(Buffer.from(wire))).toBe(true);
  });

  /** Little-endian u32 words followed by raw bytes. */
  const words = (values: number[], tail: number[] = []) => {
    const out = new Uint8Array(values.length * 4 + tail.length);
    const view = new DataView(out.buffer);
    values.forEach((v, i) => {
      view.setUint32(i * 4, v >>> 0, true);
    });
    out.set(tail, values.length * 4);
    return out;
  };
  const ascii = (s: string) => [...utf8(s)];

  const malformed: [string, Uint8Array, HeaderPair[]][] = [
    ["an empty buffer", new Uint8Array(0), []],
    ["a buffer shorter than the count", Uint8Array.of(1, 0, 0), []],
    ["a count with no room for its lengths", words([2, 1, 1]), []],
    [
      "a second pair cut short",
      words([2, 1, 1, 1, 5], [...ascii("a"), 0, ...ascii("b"), 0, ...ascii("c"), 0, ...ascii("de")]),
      [["a", "b"]],
    ],
    [
      "trailing bytes after the pairs",
      words([1, 1, 1], [...ascii("a"), 0, ...ascii("b"), 0, 9, 9, 9]),
      [["a", "b"]],
    ],
    ["a count whose lengths table overflows 32 bits (2^29)", words([0x2000_0000, 1, 1]), []],
    ["a count of 2^32-1", words([0xffff_ffff, 1, 1]), []],
    ["a name length of 2^32-1", words([1, 0xffff_ffff, 0], [0, 0, 0, 0]), []],
    ["name and value lengths summing to 2^32", words([1, 0x8000_0000, 0x8000_0000], [0, 0, 0, 0]), []],
    ["a value length past the end", words([1, 1, 100], [...ascii("a"), 0, ...ascii("b"), 0]), []],
  ];

  it.each(malformed)("decodes %s into the complete pairs, without trapping", async (_, bytes, expected) => {
    const p = await plugin();
    expect(decoded(p, bytes)).toEqual(expected);
    expect(decodePairs(codec(p, bytes))).toEqual(expected);
  });
});

describe("bodies through getBuffer / setBuffer", () => {
  async function requestBody(op: string, arg: string, chunks: string[]) {
    const p = await plugin();
    const stream = p.newHttpStream();
    stream.requestHeaders(opRequest(op, arg), false);
    const released: string[] = [];
    const actions: string[] = [];
    chunks.forEach((chunk, i) => {
      const result = stream.requestBody(chunk, i === chunks.length - 1);
      actions.push(result.action);
      released.push(text(result.body));
    });
    return { stream, released, actions, total: text(stream.releasedBody("request")) };
  }

  it("replaces, prepends and appends", async () => {
    expect((await requestBody("body-replace", "new ✓", ["old body"])).total).toBe("new ✓");
    expect((await requestBody("body-prepend", "<<", ["body"])).total).toBe("<<body");
    expect((await requestBody("body-append", ">>", ["body"])).total).toBe("body>>");
  });

  it.each([
    ["2,3", "cde"],
    ["0,7", "abcdefg"],
    ["5,100", "fg"], // clipped to the end
    ["7,2", ""], // at the end: empty, not an error
  ])("reads the range %s of the body", async (range, expected) => {
    expect((await requestBody("body-slice", range, ["abcdefg"])).total).toBe(expected);
  });

  it("buffers chunks by pausing, then rewrites the whole body", async () => {
    const { actions, released, total } = await requestBody("body-buffer", "", ["ab", "cd", "ef"]);
    expect(actions).toEqual(["pause", "pause", "continue"]);
    expect(released).toEqual(["", "", "[abcdef]"]);
    expect(total).toBe("[abcdef]");
  });

  it("rewrites a 64 KiB body", async () => {
    const big = "b".repeat(70_000);
    expect((await requestBody("body-buffer", "", [big.slice(0, 30_000), big.slice(30_000)])).total).toBe(
      `[${big}]`,
    );
  });

  it("rewrites the response body", async () => {
    const p = await plugin();
    const stream = p.newHttpStream();
    stream.requestHeaders(opRequest("resp-body"), true);
    stream.responseHeaders([[":status", "200"]], false);
    expect(stream.responseBody("up", false).action).toBe("pause");
    const last = stream.responseBody("stream", true);
    expect([last.action, text(last.body)]).toEqual(["continue", "resp:upstream"]);
  });
});

describe("sendLocalResponse", () => {
  it("answers with status, body, headers (repeated, empty, non-ASCII) and details", async () => {
    const { host, plugin: p } = await probePlugin({ rootId: "alpha" });
    const stream = p.newHttpStream();
    const result = stream.requestHeaders(opRequest("local-reply", "451", "nope ✓"), true);
    expect(result.action).toBe("pause");
    expect(result.localResponse).toEqual({
      status: 451,
      details: "sdk_probe_denied", // Envoy's details are one token: the host turns spaces into "_"
      body: utf8("nope ✓"),
      headers: [
        [":status", "451"],
        ["x-r-local", "1"],
        ["x-r-unicode", "grüß ✓"],
        ["x-r-multi", "a"],
        ["x-r-multi", "b"],
        ["x-r-empty", ""],
        ["content-length", String(utf8("nope ✓").byteLength)],
        ["content-type", "text/plain"],
        ["x-sdk-root", "alpha"], // the plugin's on_response_headers ran on the reply
      ],
    });
    expect(moduleMessages(host)).toContain("sdk-probe: local reply sent, status 0");
    // the upstream never sees it
    expect(stream.paused).toBe(false);
    expect(stream.responseHeaders([[":status", "200"]], true).localResponse?.status).toBe(451);
  });

  it("answers with no body, no headers and no details", async () => {
    const p = await plugin();
    const reply = runOp(p, "local-reply-bare").stream.localResponse;
    expect(reply).toEqual({
      status: 204,
      details: "",
      body: new Uint8Array(0),
      headers: [
        [":status", "204"],
        ["x-sdk-root", "alpha"],
      ],
    });
  });
});
