// The mesh-wide checks of control-plane/resources/analyze.ts as pure functions (wasmesh analyze and
// describe run them through the bin in inspect.test.ts), and the diff apply --dry-run prints.
import { describe, expect, it } from "vitest";
import { unifiedDiff } from "../../control-plane/cli/diff.ts";
import {
  accessOf,
  analyzeMesh,
  matchCovers,
  shadowedRules,
  stringImplies,
} from "../../control-plane/resources/analyze.ts";
import type { Resource, Route } from "../../control-plane/resources/index.ts";

const doc = (kind: string, name: string, spec: unknown) =>
  ({ apiVersion: "wasmesh.io/v1alpha1", kind, metadata: { name }, spec }) as Resource;

const route = (name: string, matches: (Route["spec"]["rules"][number]["match"] | undefined)[]) =>
  doc("Route", name, {
    service: "reviews",
    rules: matches.map((match, i) => ({
      name: `r${i}`,
      ...(match ? { match } : {}),
      destinations: [{ service: "reviews" }],
    })),
  }) as Route;

describe("which match covers which", () => {
  it("string conditions: equal, prefix of a prefix or exact, suffix, contains, case", () => {
    expect(stringImplies({ exact: "/api/v1" }, { prefix: "/api" })).toBe(true);
    expect(stringImplies({ prefix: "/api/v1" }, { prefix: "/api" })).toBe(true);
    expect(stringImplies({ prefix: "/api" }, { prefix: "/api/v1" })).toBe(false);
    expect(stringImplies({ exact: "jason" }, { contains: "aso" })).toBe(true);
    expect(stringImplies({ suffix: ".json" }, { suffix: "json" })).toBe(true);
    expect(stringImplies({ regex: "a.*" }, { regex: "a.*" })).toBe(true);
    expect(stringImplies({ regex: "a.*" }, { prefix: "a" })).toBe(false);
    expect(stringImplies({ exact: "Jason" }, { exact: "jason", ignoreCase: true })).toBe(true);
    expect(stringImplies({ exact: "jason", ignoreCase: true }, { exact: "jason" })).toBe(false);
    expect(stringImplies({ exact: "x" }, { regex: ".*" })).toBe(true);
  });

  it("requests: every condition of the earlier match must follow from the later one's", () => {
    expect(matchCovers(undefined, { path: { prefix: "/" } })).toBe(true);
    expect(matchCovers({}, undefined)).toBe(true);
    expect(matchCovers({ path: { prefix: "/api" } }, undefined)).toBe(false);
    expect(
      matchCovers(
        { headers: [{ name: "End-User", present: true }] },
        { headers: [{ name: "end-user", exact: "jason" }], path: { exact: "/" } },
      ),
    ).toBe(true);
    expect(
      matchCovers({ headers: [{ name: "x", absent: true }] }, { headers: [{ name: "x", exact: "1" }] }),
    ).toBe(false);
    expect(matchCovers({ methods: ["GET", "HEAD"] }, { methods: ["GET"] })).toBe(true);
    expect(matchCovers({ methods: ["GET"] }, { methods: ["GET", "POST"] })).toBe(false);
    expect(
      matchCovers({ query: [{ name: "beta", exact: "1" }] }, { query: [{ name: "Beta", exact: "1" }] }),
    ).toBe(false);
  });

  it("shadowed rules: across a service's Routes in name order, naming the rule that takes them", () => {
    const findings = shadowedRules([
      route("a", [
        { path: { prefix: "/api" } },
        { path: { prefix: "/api/v1" } },
        { path: { prefix: "/web" } },
      ]),
      route("b", [{ path: { exact: "/web/x" } }, undefined, { path: { exact: "/" } }]),
    ]);
    expect(findings.map((f) => [f.name, f.path, f.message])).toEqual([
      [
        "a",
        "spec.rules[1]",
        "unreachable: the earlier rules[0] ('r0') matches every request this rule matches",
      ],
      [
        "b",
        "spec.rules[0]",
        "unreachable: the earlier Route 'a' rules[2] ('r2') matches every request this rule matches",
      ],
      ["b", "spec.rules[2]", "unreachable: the earlier rules[1] ('r1') has no match and takes every request"],
    ]);
  });
});

describe("analyzeMesh", () => {
  const service = (name: string) =>
    doc("Service", name, { ports: [{ name: "http", port: 80, protocol: "http" }] });
  const workload = (name: string, service: string) =>
    doc("Workload", name, { service, address: "10.0.0.1", port: 80 });

  it("a service no workload may call under a default deny; access as the sidecars decide it", () => {
    const mesh = [
      service("a"),
      service("b"),
      workload("a-1", "a"),
      workload("b-1", "b"),
      doc("MeshPolicy", "default", { defaultAccess: "deny" }),
      doc("AccessRule", "a-to-b", { source: "a", destination: "b", action: "allow" }),
    ];
    expect(accessOf(mesh, "a", "b").allow).toBe(true);
    expect(accessOf(mesh, "b", "a")).toEqual({ allow: false, byDefault: true });
    expect(analyzeMesh(mesh).map((f) => [f.severity, `${f.kind}/${f.name}`, f.message])).toEqual([
      [
        "warning",
        "Service/a",
        "no workload of another service may call it: MeshPolicy 'default' (defaultAccess: deny) refuses every one",
      ],
    ]);
  });

  it("an AccessRule for a service that is gone is an error (a store changed behind the writes)", () => {
    const findings = analyzeMesh([
      service("a"),
      doc("AccessRule", "x", { source: "gone", destination: "a", action: "deny" }),
    ]);
    expect(findings[0]).toEqual({
      severity: "error",
      kind: "AccessRule",
      name: "x",
      path: "spec.source",
      message: "Service 'gone' does not exist",
    });
  });
});

describe("unifiedDiff", () => {
  it("hunks with three lines of context, removals before additions", () => {
    const before = "a\nb\nc\nd\ne\nf\ng\nh\ni\n";
    const after = "a\nb\nc\nd\nE\nf\ng\nh\ni\nj\n";
    expect(unifiedDiff(before, after)).toBe(
      ["@@ -2,8 +2,9 @@", " b", " c", " d", "-e", "+E", " f", " g", " h", " i", "+j"].join("\n"),
    );
    expect(unifiedDiff("x\n", "x\n")).toBe("");
    expect(unifiedDiff("", "x\n")).toBe("@@ -0,0 +1,1 @@\n+x");
    expect(unifiedDiff("x\n", "")).toBe("@@ -1,1 +0,0 @@\n-x");
    // Past the table's bound (a huge ImportedResource), the differing middle: removed, then added.
    const many = (p: string) => Array.from({ length: 2100 }, (_, i) => `${p}${i}`).join("\n");
    const big = unifiedDiff(`head\n${many("a")}\ntail\n`, `head\n${many("b")}\ntail\n`).split("\n");
    expect(big[0]).toBe("@@ -1,2102 +1,2102 @@");
    expect(big.slice(1, 3)).toEqual([" head", "-a0"]);
    expect(big[2102]).toBe("+b0");
    expect(big.at(-1)).toBe(" tail");
  });
});
