// Issue 14 §2 through the installed bin against `wasmesh server` (a process): `wasmesh analyze`
// (findings, exit status), `wasmesh describe` (what a resource selects, what selects it, its
// problems), `wasmesh apply --dry-run` (a diff against what is stored, for native documents and
// what Istio's produce, storing nothing) and `wasmesh inspect proxy` without a proxy. With real
// sidecars: test/envoy/inspect-proxy.test.ts.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type ControlPlaneProcess,
  revisionOf,
  startControlPlaneProcess,
  wasmesh,
} from "../support/control-plane.ts";

let cp: ControlPlaneProcess;

const run = (args: string[], input?: string, token?: string) =>
  wasmesh(args, { api: cp.api, ...(input !== undefined ? { input } : {}), ...(token ? { token } : {}) });

async function apply(yaml: string): Promise<void> {
  const result = await run(["apply", "-f", "-"], yaml);
  expect(result.code, result.stderr).toBe(0);
}

const SERVICES = ["productpage", "reviews", "ratings"]
  .map(
    (name) => `apiVersion: wasmesh.io/v1alpha1
kind: Service
metadata: { name: ${name} }
spec: { ports: [{ name: http, port: 9080, protocol: http }] }`,
  )
  .join("\n---\n");

const WORKLOADS = `apiVersion: wasmesh.io/v1alpha1
kind: Workload
metadata: { name: productpage-1 }
spec: { service: productpage, address: 10.0.0.1, port: 9080 }
---
apiVersion: wasmesh.io/v1alpha1
kind: Workload
metadata: { name: reviews-v1 }
spec: { service: reviews, address: 10.0.0.2, port: 9080, labels: { version: v1 } }
---
apiVersion: wasmesh.io/v1alpha1
kind: Workload
metadata: { name: ratings-1 }
spec: { service: ratings, address: 10.0.0.3, port: 9080 }`;

const CLEAN_ROUTE = `apiVersion: wasmesh.io/v1alpha1
kind: Route
metadata: { name: reviews }
spec:
  service: reviews
  rules:
    - name: all
      destinations: [{ service: reviews, subset: { version: v1 } }]
---
apiVersion: wasmesh.io/v1alpha1
kind: Route
metadata: { name: ratings }
spec:
  service: ratings
  rules:
    - name: all
      destinations: [{ service: ratings }]`;

// A split to a subset nothing runs, a rule an earlier one shadows, one after a catch-all, a breaker
// on an empty subset, and ratings refused to every service with workloads.
const MISTAKES = `apiVersion: wasmesh.io/v1alpha1
kind: Route
metadata: { name: reviews }
spec:
  service: reviews
  rules:
    - name: testers
      match: { headers: [{ name: end-user, prefix: jas }] }
      destinations: [{ service: reviews, subset: { version: v1 } }]
    - name: jason
      match: { path: { prefix: /api }, headers: [{ name: end-user, exact: jason }] }
      destinations: [{ service: reviews, subset: { version: v1 } }]
    - name: canary
      destinations:
        - { service: reviews, subset: { version: v1 }, weight: 90 }
        - { service: reviews, subset: { version: v2 }, weight: 10 }
    - name: never
      match: { path: { exact: /x } }
      destinations: [{ service: reviews }]
---
apiVersion: wasmesh.io/v1alpha1
kind: CircuitBreaker
metadata: { name: reviews-v3 }
spec: { service: reviews, subset: { version: v3 }, consecutiveErrors: 3, intervalMs: 1000, baseEjectionMs: 30000 }
---
apiVersion: wasmesh.io/v1alpha1
kind: AccessRule
metadata: { name: ratings-deny-productpage }
spec: { source: productpage, destination: ratings, action: deny }
---
apiVersion: wasmesh.io/v1alpha1
kind: AccessRule
metadata: { name: ratings-deny-reviews }
spec: { source: reviews, destination: ratings, action: deny }`;

beforeAll(async () => {
  cp = await startControlPlaneProcess();
  await apply(`${SERVICES}\n---\n${WORKLOADS}\n---\n${CLEAN_ROUTE}`);
});

afterAll(async () => {
  await cp?.stop();
});

const lines = (text: string) => text.split("\n").filter((l) => l !== "");
/** A finding line's columns (severity, kind/name, path, message), as analyze aligns them. */
const columns = (line: string) => line.split(/ {2,}/);

describe("wasmesh analyze", () => {
  it("a mesh without mistakes exits 0; what the control plane knows of no caller is an info", async () => {
    const result = await run(["analyze"]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toBe("");
    expect(lines(result.stdout).map(columns)).toEqual([
      [
        "info",
        "service/productpage",
        "metadata.name",
        "no Route, AccessRule or CircuitBreaker names it as a destination: the control plane knows of no caller",
      ],
    ]);
  });

  it("reports each mistake on one line with kind/name, field path and message, and exits 1", async () => {
    await apply(MISTAKES);
    const result = await run(["analyze"]);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe("wasmesh: analyze: found 5 warnings\n");
    expect(lines(result.stdout).map(columns)).toEqual([
      [
        "warning",
        "circuitbreaker/reviews-v3",
        "spec.subset",
        "selects no workload of Service 'reviews': the breaker protects no endpoint",
      ],
      [
        "warning",
        "route/reviews",
        "spec.rules[1]",
        "unreachable: the earlier rules[0] ('testers') matches every request this rule matches",
      ],
      [
        "warning",
        "route/reviews",
        "spec.rules[2].destinations[1].subset",
        "selects no workload of Service 'reviews': 10% of rule 'canary' gets 503 (no healthy upstream)",
      ],
      [
        "warning",
        "route/reviews",
        "spec.rules[3]",
        "unreachable: the earlier rules[2] ('canary') has no match and takes every request",
      ],
      [
        "info",
        "service/productpage",
        "metadata.name",
        "no Route, AccessRule or CircuitBreaker names it as a destination: the control plane knows of no caller",
      ],
      [
        "warning",
        "service/ratings",
        "metadata.name",
        "no workload of another service may call it: AccessRules 'ratings-deny-productpage', 'ratings-deny-reviews' refuse every one; only callers no rule names may (the edge, clients outside the mesh)",
      ],
    ]);
    const json = await run(["analyze", "-o", "json"]);
    expect(json.code).toBe(1);
    const { findings } = JSON.parse(json.stdout) as { findings: { severity: string; path: string }[] };
    expect(findings.filter((f) => f.severity === "warning").map((f) => f.path)).toContain("spec.rules[1]");
  });
});

describe("wasmesh describe", () => {
  it("a Route: its rules, the workloads each subset selects, the proxies that have it, its problems", async () => {
    const result = await run(["describe", "route", "reviews"]);
    expect(result.code, result.stderr).toBe(0);
    const out = result.stdout;
    expect(out).toMatch(/^Route: reviews\n/);
    expect(out).toContain(
      [
        "  [2] canary: every request",
        "      reviews{version=v1} 90% → reviews-v1",
        "      reviews{version=v2} 10% → <no workload>",
      ].join("\n"),
    );
    expect(out).toContain('  [1] jason: path prefix "/api"; header end-user exact "jason"');
    // No proxy is connected: none has it.
    expect(out).toMatch(/Proxies \(acknowledged revision \d+ or later: 0 of 0\):\n {2}<none>/);
    expect(out).toMatch(/Problems:\n(?: {2}warning {2}route\/reviews .*\n){3}/);
  });

  it("a Service: workloads, routes, breakers, access rules in and out, who may call it, its problems", async () => {
    const reviews = await run(["describe", "service", "reviews"]);
    expect(reviews.code, reviews.stderr).toBe(0);
    expect(reviews.stdout).toMatch(
      /Workloads:\n {2}NAME +ADDRESS +LABELS\n {2}reviews-v1 +10\.0\.0\.2:9080 +version=v1\n/,
    );
    expect(reviews.stdout).toContain(
      "  route/reviews rules[2] 'canary' (every request): reviews{version=v1} 90% → reviews-v1, reviews{version=v2} 10% → <no workload>",
    );
    expect(reviews.stdout).toContain(
      "CircuitBreakers:\n  circuitbreaker/reviews-v3 on reviews{version=v3} → <no workload>",
    );
    expect(reviews.stdout).toContain("AccessRules out:\n  accessrule/ratings-deny-reviews: deny to ratings");
    expect(reviews.stdout).toContain("May call it (services with workloads):\n  productpage, ratings");
    expect(reviews.stdout).toContain("circuitbreaker/reviews-v3  spec.subset");

    const ratings = await run(["describe", "services", "ratings"]);
    expect(ratings.code, ratings.stderr).toBe(0);
    expect(ratings.stdout).toContain(
      "AccessRules in:\n  accessrule/ratings-deny-productpage: deny from productpage\n  accessrule/ratings-deny-reviews: deny from reviews",
    );
    expect(ratings.stdout).toContain("May call it (services with workloads):\n  <none>");
    expect(ratings.stdout).toContain("no workload of another service may call it");
  });

  it("a Service's tracing and access log: its own over the mesh's, and wasmesh get lists them", async () => {
    await apply(
      [
        "apiVersion: wasmesh.io/v1alpha1",
        "kind: Tracing",
        "metadata: { name: mesh }",
        "spec: { backend: { protocol: otlp-grpc, url: 'http://jaeger:4317' }, sampling: { randomPercent: 5 } }",
        "---",
        "apiVersion: wasmesh.io/v1alpha1",
        "kind: Tracing",
        "metadata: { name: reviews }",
        "spec: { service: reviews, sampling: { randomPercent: 100 } }",
        "---",
        "apiVersion: wasmesh.io/v1alpha1",
        "kind: AccessLog",
        "metadata: { name: reviews }",
        "spec: { service: reviews, backends: [{ stdout: {} }] }",
      ].join("\n"),
    );
    try {
      const reviews = await run(["describe", "service", "reviews"]);
      expect(reviews.stdout).toContain(
        "Tracing and access logs:\n  traced: 100% to otlp-grpc http://jaeger:4317, from tracing/reviews (its own) over tracing/mesh (the mesh's)\n  access log: stdout, from accesslog/reviews (its own)",
      );
      const ratings = await run(["describe", "service", "ratings"]);
      expect(ratings.stdout).toContain(
        "Tracing and access logs:\n  traced: 5% to otlp-grpc http://jaeger:4317, from tracing/mesh (the mesh's)\n",
      );
      const listed = await run(["get", "tracings"]);
      expect(listed.stdout).toMatch(/^mesh +<mesh> +otlp-grpc http:\/\/jaeger:4317 +5%/m);
      expect(listed.stdout).toMatch(/^reviews +reviews +<mesh's> +100%/m);
      const logs = await run(["get", "accesslog"]);
      expect(logs.stdout).toMatch(/^reviews +reviews +stdout +default/m);
    } finally {
      for (const [kind, name] of [
        ["tracing", "reviews"],
        ["tracing", "mesh"],
        ["accesslog", "reviews"],
      ] as const) {
        expect((await run(["delete", kind, name])).code).toBe(0);
      }
    }
  });

  it("other kinds: what they refer to, what refers to them, what their subset selects", async () => {
    const breaker = await run(["describe", "CircuitBreaker", "reviews-v3"]);
    expect(breaker.code, breaker.stderr).toBe(0);
    expect(breaker.stdout).toContain("Refers to:\n  service/reviews (spec.service)");
    expect(breaker.stdout).toContain("Selects:\n  reviews{version=v3} → <no workload>");
    const workload = await run(["describe", "workload", "reviews-v1"]);
    expect(workload.stdout).toContain("route/reviews rule 'canary' reviews{version=v1}");
    const rule = await run(["describe", "accessrule", "ratings-deny-reviews"]);
    expect(rule.stdout).toContain("Decision:\n  reviews → ratings: deny (accessrule/ratings-deny-reviews)");
  });

  it("a resource that does not exist is an error, a missing NAME a usage error", async () => {
    const missing = await run(["describe", "route", "nope"]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe("wasmesh: Route 'nope' does not exist\n");
    const usage = await run(["describe", "route"]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain("describe: KIND and NAME are required");
  });
});

describe("wasmesh apply --dry-run", () => {
  it("prints created documents, a unified diff of configured ones, unchanged ones, and stores nothing", async () => {
    const before = await revisionOf(cp.api);
    const result = await run(
      ["apply", "--dry-run", "-f", "-"],
      `apiVersion: wasmesh.io/v1alpha1
kind: Route
metadata: { name: reviews }
spec:
  service: reviews
  rules:
    - name: testers
      match: { headers: [{ name: end-user, prefix: jas }] }
      destinations: [{ service: reviews, subset: { version: v1 } }]
    - name: jason
      match: { path: { prefix: /api }, headers: [{ name: end-user, exact: jason }] }
      destinations: [{ service: reviews, subset: { version: v1 } }]
    - name: canary
      destinations:
        - { service: reviews, subset: { version: v1 }, weight: 80 }
        - { service: reviews, subset: { version: v2 }, weight: 20 }
    - name: never
      match: { path: { exact: /x } }
      destinations: [{ service: reviews }]
---
apiVersion: wasmesh.io/v1alpha1
kind: Service
metadata: { name: details }
spec: { ports: [{ name: http, port: 9080, protocol: http }] }
---
apiVersion: wasmesh.io/v1alpha1
kind: Service
metadata: { name: ratings }
spec: { ports: [{ name: http, port: 9080, protocol: http }] }`,
    );
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toBe(
      [
        "route/reviews configured (dry run)",
        "--- route/reviews (stored)",
        "+++ route/reviews (applied)",
        "@@ -30,11 +30,11 @@",
        "         - service: reviews",
        "           subset:",
        "             version: v1",
        "-          weight: 90",
        "+          weight: 80",
        "         - service: reviews",
        "           subset:",
        "             version: v2",
        "-          weight: 10",
        "+          weight: 20",
        "     - name: never",
        "       match:",
        "         path:",
        "service/details created (dry run)",
        "--- /dev/null",
        "+++ service/details (applied)",
        "@@ -0,0 +1,9 @@",
        "+apiVersion: wasmesh.io/v1alpha1",
        "+kind: Service",
        "+metadata:",
        "+  name: details",
        "+spec:",
        "+  ports:",
        "+    - name: http",
        "+      port: 9080",
        "+      protocol: http",
        "service/ratings unchanged (dry run)",
        "",
      ].join("\n"),
    );
    expect(await revisionOf(cp.api)).toBe(before);
    expect((await cp.request("GET", "/v1/services/details")).status).toBe(404);
  });

  it("covers what another mesh's documents produce: the converted Route and the kept original", async () => {
    await apply(`apiVersion: wasmesh.io/v1alpha1
kind: Service
metadata: { name: details }
spec: { ports: [{ name: http, port: 9080, protocol: http }] }`);
    const virtualService = (subset: string) => `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: details }
spec:
  hosts: [details]
  http:
    - route:
        - destination: { host: details${subset} }`;
    await apply(virtualService(""));
    const before = await revisionOf(cp.api);
    const result = await run(["apply", "--dry-run", "-f", "-"], virtualService(", port: { number: 9080 }"));
    expect(result.code, result.stderr).toBe(0);
    const out = result.stdout;
    expect(out).toContain(
      "importedresource/virtualservice-details configured (dry run)\n--- importedresource/virtualservice-details (stored)\n+++ importedresource/virtualservice-details (applied)\n",
    );
    expect(out).toMatch(/\n\+ +port:\n\+ +number: 9080\n/);
    expect(await revisionOf(cp.api)).toBe(before);
  });

  it("without --dry-run, apply prints what it did, one line each, as before", async () => {
    const result = await run(
      ["apply", "-f", "-"],
      `apiVersion: wasmesh.io/v1alpha1
kind: Service
metadata: { name: ratings }
spec: { ports: [{ name: http, port: 9080, protocol: http }] }`,
    );
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toBe("service/ratings unchanged\n");
  });
});

describe("wasmesh inspect proxy", () => {
  it("a proxy that is not connected: 404 from the API (a read-only token may ask), exit 1 from the CLI", async () => {
    const created = await run(["token", "create", "--role", "read-only"]);
    expect(created.code, created.stderr).toBe(0);
    const reader = created.stdout.trim();
    const reply = await fetch(`${cp.api}/v1/proxies/nope/config`, {
      headers: { authorization: `Bearer ${reader}` },
    });
    expect(reply.status).toBe(404);
    const bad = await fetch(`${cp.api}/v1/proxies/nope/config?type=secrets`, {
      headers: { authorization: `Bearer ${reader}` },
    });
    expect(bad.status).toBe(400);
    const cli = await run(["inspect", "proxy", "nope"], undefined, reader);
    expect(cli.code).toBe(1);
    expect(cli.stderr).toBe(
      "wasmesh: no proxy 'nope' is connected (wasmesh status lists the connected proxies)\n",
    );
    const usage = await run(["inspect", "proxy", "nope", "--type", "secrets"]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain(
      "--type: expected one of clusters, listeners, routes, endpoints, extensions",
    );
  });
});
