// The header wire format, header map semantics, shared data CAS and the metric store, without Wasm.
import { describe, expect, it } from "vitest";
import {
  decodePairs,
  encodePairs,
  HeaderMap,
  MetricStore,
  MetricType,
  SharedData,
  Status,
} from "../../host/index.ts";

describe("header pairs wire format", () => {
  it("lays out count, sizes, then NUL-terminated keys and values (little-endian)", () => {
    const bytes = encodePairs([
      [":path", "/x"],
      ["k", ""],
    ]);
    const expected = [
      ...[2, 0, 0, 0],
      ...[5, 0, 0, 0, 2, 0, 0, 0],
      ...[1, 0, 0, 0, 0, 0, 0, 0],
      ...new TextEncoder().encode(":path\0/x\0k\0\0"),
    ];
    expect([...bytes]).toEqual(expected);
  });

  it("round-trips UTF-8 and empty maps", () => {
    const pairs: [string, string][] = [
      ["x-ünï", "välue"],
      ["a", "b"],
      ["a", "c"],
    ];
    expect(decodePairs(encodePairs(pairs))).toEqual(pairs);
    expect(decodePairs(encodePairs([]))).toEqual([]);
  });

  it("refuses malformed data like proxy-wasm-cpp-host's toPairs", () => {
    const good = encodePairs([["a", "b"]]);
    expect(decodePairs(new Uint8Array(0))).toBeUndefined();
    expect(decodePairs(good.subarray(0, good.byteLength - 1))).toBeUndefined(); // truncated
    const extra = new Uint8Array(good.byteLength + 1);
    extra.set(good);
    expect(decodePairs(extra)).toBeUndefined(); // trailing bytes
    const noNul = good.slice();
    noNul[good.byteLength - 1] = 0x41;
    expect(decodePairs(noNul)).toBeUndefined();
    const tooMany = new Uint8Array(4);
    new DataView(tooMany.buffer).setUint32(0, 5000, true);
    expect(decodePairs(tooMany)).toBeUndefined();
  });
});

describe("HeaderMap (Envoy semantics)", () => {
  it("lower-cases names and looks them up case-insensitively", () => {
    const map = new HeaderMap([["X-User", "tester"]]);
    expect(map.pairs()).toEqual([["x-user", "tester"]]);
    expect(map.get("X-USER")).toBe("tester");
  });

  it("replace changes the first value only, or adds", () => {
    const map = new HeaderMap([
      ["a", "1"],
      ["a", "2"],
    ]);
    map.replace("A", "x");
    map.replace("b", "y");
    expect(map.pairs()).toEqual([
      ["a", "x"],
      ["a", "2"],
      ["b", "y"],
    ]);
  });

  it("remove drops every value; add keeps pseudo-headers first", () => {
    const map = new HeaderMap([
      [":method", "GET"],
      ["a", "1"],
      ["a", "2"],
    ]);
    map.remove("a");
    map.add("b", "1");
    map.add(":path", "/");
    expect(map.pairs()).toEqual([
      [":method", "GET"],
      [":path", "/"],
      ["b", "1"],
    ]);
    expect(map.byteSize()).toBe(":methodGET:path/b1".length);
  });
});

describe("SharedData", () => {
  it("implements Envoy's CAS rules with a process-wide counter", () => {
    const store = new SharedData();
    expect(store.get("k")).toBeUndefined();
    expect(store.set("k", "v1")).toBe(Status.Ok);
    const first = store.get("k");
    expect(first?.cas).toBeGreaterThan(0);
    expect(store.set("k", "v2", first?.cas)).toBe(Status.Ok);
    expect(store.set("k", "v3", first?.cas)).toBe(Status.CasMismatch);
    expect(new TextDecoder().decode(store.get("k")?.value)).toBe("v2");
    expect(store.set("k", "v4", 0)).toBe(Status.Ok); // cas 0 always writes
    expect(store.set("fresh", "x", 12345)).toBe(Status.Ok); // a missing key ignores the cas
    const cases = [store.get("k")?.cas, store.get("fresh")?.cas];
    expect(new Set(cases).size).toBe(2);
  });

  it("partitions keys by vm_id", () => {
    const store = new SharedData();
    store.set("k", "a", 0, "vm1");
    expect(store.get("k", "vm2")).toBeUndefined();
    expect(store.keys("vm1")).toEqual(["k"]);
  });
});

describe("MetricStore", () => {
  it("renders counters, gauges and histograms in Prometheus text format", () => {
    const store = new MetricStore();
    store.define(MetricType.Counter, "wasmesh.rule.deny-admin.denied");
    store.add(MetricType.Counter, "wasmesh.rule.deny-admin.denied", 3n);
    store.define(MetricType.Gauge, "inflight");
    store.set(MetricType.Gauge, "inflight", 2n);
    store.define(MetricType.Histogram, "latency");
    store.record("latency", 7n);
    store.record("latency", 700n);
    const text = store.prometheus();
    expect(text).toContain(
      "# TYPE wasmesh_rule_deny_admin_denied counter\nwasmesh_rule_deny_admin_denied 3\n",
    );
    expect(text).toContain("# TYPE inflight gauge\ninflight 2\n");
    expect(text).toContain('latency_bucket{le="5"} 0\n');
    expect(text).toContain('latency_bucket{le="10"} 1\n');
    expect(text).toContain('latency_bucket{le="1000"} 2\n');
    expect(text).toContain('latency_bucket{le="+Inf"} 2\nlatency_sum 707\nlatency_count 2\n');
    expect(store.value("inflight")).toBe(2);
    expect(store.snapshot().find((m) => m.name === "latency")?.histogram).toMatchObject({
      count: 2,
      sum: 707,
    });
  });
});
