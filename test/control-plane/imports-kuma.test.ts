// Kuma's (and Kong Mesh's) resources converted into wasmesh's (control-plane/imports/kuma.ts, issue
// 13): manifests modelled on Kuma's docs and its kuma-demo application, in the universal and the
// Kubernetes form, the exact native resources they become, their validity, a warning per field not
// carried and an error per field whose loss would change the meaning.
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { type ConvertResult, convert, type ImportProblem } from "../../control-plane/imports/index.ts";
import { FIELDS, kuma, serviceOfTag } from "../../control-plane/imports/kuma.ts";
import {
  parseManifests,
  type Resource,
  validateReferences,
  validateResource,
} from "../../control-plane/resources/index.ts";

const REPO = join(import.meta.dirname, "..", "..");
const DATA = join(import.meta.dirname, "testdata", "kuma");
const BIN = join(REPO, "bin", "wasmesh.js");

const yamlDocs = (text: string): unknown[] => parseAllDocuments(text).map((d) => d.toJS());
const fromFile = (name: string) => yamlDocs(readFileSync(join(DATA, name), "utf8"));
const run = (text: string) => convert(yamlDocs(text));

/** Problems without the message, to compare where they are. */
const where = (problems: ImportProblem[]) =>
  problems.map(({ document, kind, name, path }) => ({ document, kind, name, path }));
const paths = (problems: ImportProblem[]) => problems.map((p) => p.path);

const API = "wasmesh.io/v1alpha1";
const res = (kind: string, name: string, spec: unknown) => ({
  apiVersion: API,
  kind,
  metadata: { name },
  spec,
});

function expectEachValid(result: ConvertResult): void {
  for (const r of result.resources) expect(validateResource(r)).toEqual({ ok: true, resource: r });
}

const service = (name: string, port: number, protocol = "http"): Resource =>
  res("Service", name, { ports: [{ name: `${protocol}-${port}`, port, protocol }] }) as Resource;

describe("the kuma-demo application, universal form", () => {
  const result = convert(fromFile("kuma-demo-universal.yaml"));

  it("becomes Services and Workloads, a canary Route, a CircuitBreaker and the MeshPolicy", () => {
    expect(result.errors).toEqual([]);
    expect(result.resources).toEqual([
      service("frontend", 8080),
      res("Workload", "frontend-01", {
        service: "frontend",
        address: "192.168.0.1",
        port: 20001,
        labels: { "kuma.io/protocol": "http" },
        appPort: 8080,
      }),
      service("backend", 3001),
      res("Workload", "backend-v1", {
        service: "backend",
        address: "192.168.0.2",
        port: 20002,
        labels: { "kuma.io/protocol": "http", version: "v1" },
        appPort: 3001,
      }),
      res("Workload", "backend-v2", {
        service: "backend",
        address: "192.168.0.3",
        port: 20002,
        labels: { "kuma.io/protocol": "http", version: "v2", "kuma.io/zone": "zone-2" },
        zone: "zone-2",
        appPort: 3001,
      }),
      service("redis", 6379, "tcp"),
      res("Workload", "redis-01", { service: "redis", address: "192.168.0.4", port: 20003, appPort: 6379 }),
      res("Route", "backend-canary", {
        service: "backend",
        rules: [
          {
            name: "http-0",
            match: {
              path: { prefix: "/api/v2" },
              methods: ["GET"],
              headers: [{ name: "x-canary", exact: "on" }],
            },
            destinations: [{ service: "backend", subset: { version: "v2" } }],
          },
          {
            name: "default",
            destinations: [
              { service: "backend", subset: { version: "v1" }, weight: 90 },
              { service: "backend", subset: { version: "v2" }, weight: 10 },
            ],
          },
        ],
      }),
      res("CircuitBreaker", "backend-breaker", {
        service: "backend",
        consecutiveErrors: 20,
        intervalMs: 5000,
        baseEjectionMs: 90_000,
        maxEjectionPercent: 20,
        maxConcurrent: 100,
      }),
      // mTLS on with the allow-all permission in the input: strict, every call allowed.
      res("MeshPolicy", "default", { defaultAccess: "allow", mtls: { mode: "strict" } }),
    ]);
  });

  it("is valid, alone and together (every Workload's Service, every subset's workloads)", () => {
    expectEachValid(result);
    expect(validateReferences(result.resources)).toEqual({ errors: [], warnings: [] });
  });

  it("warns at each field not carried, with its path", () => {
    expect(where(result.warnings)).toEqual([
      { document: 0, kind: "Mesh", name: "default", path: "mtls.backends[0].type" },
      { document: 0, kind: "Mesh", name: "default", path: "mtls.backends[0].dpCert" },
      { document: 1, kind: "Dataplane", name: "frontend-01", path: "networking.outbound" },
      {
        document: 8,
        kind: "CircuitBreaker",
        name: "backend-breaker",
        path: "conf.splitExternalAndLocalErrors",
      },
      {
        document: 8,
        kind: "CircuitBreaker",
        name: "backend-breaker",
        path: "conf.thresholds.maxConnections",
      },
      { document: 8, kind: "CircuitBreaker", name: "backend-breaker", path: "conf.detectors.localErrors" },
      { document: 8, kind: "CircuitBreaker", name: "backend-breaker", path: "conf.detectors.gatewayErrors" },
      { document: 8, kind: "CircuitBreaker", name: "backend-breaker", path: "conf.detectors" },
    ]);
    expect(result.warnings[6]?.message).toBe("not carried: totalErrors is the breaker's threshold");
  });

  it("says what each original became; Kuma's default route and allow-all become nothing", () => {
    const produced = result.produced.map((p) => [
      `${p.source.kind}/${p.source.name}`,
      p.resources.map((r) => `${r.kind}/${r.name}`),
    ]);
    expect(produced).toEqual([
      ["Mesh/default", ["MeshPolicy/default"]],
      ["Dataplane/frontend-01", ["Service/frontend", "Workload/frontend-01"]],
      ["Dataplane/backend-v1", ["Service/backend", "Workload/backend-v1"]],
      ["Dataplane/backend-v2", ["Workload/backend-v2"]],
      ["Dataplane/redis-01", ["Service/redis", "Workload/redis-01"]],
      ["TrafficPermission/allow-all-default", []],
      ["TrafficRoute/route-all-default", []],
      ["TrafficRoute/backend-canary", ["Route/backend-canary"]],
      ["CircuitBreaker/backend-breaker", ["CircuitBreaker/backend-breaker"]],
    ]);
    // Universal documents have no apiVersion: the Kubernetes form's is recorded (the same resources).
    expect(result.produced[0]?.source.apiVersion).toBe("kuma.io/v1alpha1");
  });

  it("is deterministic: the same input twice gives the same output", () => {
    const all = [
      ...fromFile("kuma-demo-universal.yaml"),
      ...fromFile("kuma-demo-kubernetes.yaml").slice(2),
      ...fromFile("mesh-policies.yaml"),
    ];
    const first = convert(all);
    expect(convert(structuredClone(all))).toEqual(first);
    expect(first.resources.length).toBeGreaterThan(10);
  });
});

describe("the kuma-demo policies, Kubernetes form", () => {
  const result = convert(fromFile("kuma-demo-kubernetes.yaml"));

  it("names Kubernetes services <name>.<namespace>, as wasmesh's discovery does", () => {
    expect(result.errors).toEqual([]);
    expect(result.resources).toEqual([
      service("backend.kuma-demo", 3001),
      res("Workload", "kuma-demo-backend-v1-6bd8c7f8d-2xk9p-kuma-demo", {
        service: "backend.kuma-demo",
        address: "10.244.0.12",
        port: 3001,
        labels: { "kuma.io/protocol": "http", app: "kuma-demo-backend", version: "v1" },
      }),
      res("AccessRule", "frontend-to-backend-frontend-kuma-demo-ff6413d3", {
        source: "frontend.kuma-demo",
        destination: "backend.kuma-demo",
        action: "allow",
      }),
      res("AccessRule", "backend-to-databases-backend-kuma-demo-postgres-kuma-d-6da5f876", {
        source: "backend.kuma-demo",
        destination: "postgres.kuma-demo",
        action: "allow",
      }),
      res("AccessRule", "backend-to-databases-backend-kuma-demo-redis-kuma-demo-047b1fea", {
        source: "backend.kuma-demo",
        destination: "redis.kuma-demo",
        action: "allow",
      }),
      res("Route", "backend-canary", {
        service: "backend.kuma-demo",
        rules: [
          {
            name: "default",
            destinations: [
              { service: "backend.kuma-demo", subset: { version: "v1" }, weight: 90 },
              { service: "backend.kuma-demo", subset: { version: "v2" }, weight: 10 },
            ],
          },
        ],
      }),
      res("CircuitBreaker", "backend-v2-breaker", {
        service: "backend.kuma-demo",
        subset: { version: "v2" },
        consecutiveErrors: 3,
        intervalMs: 10_000,
        baseEjectionMs: 30_000,
        maxEjectionPercent: 10,
      }),
      // mTLS on, PERMISSIVE, and no allow-all permission: Kuma denies what no permission allows.
      res("MeshPolicy", "default", { defaultAccess: "deny", mtls: { mode: "permissive" } }),
    ]);
    expectEachValid(result);
  });

  it("reports the body's fields under spec", () => {
    expect(paths(result.warnings)).toEqual([
      "spec.mtls.backends[0].type",
      "spec.mtls.enabledBackend",
      "spec.networking.transparentProxying",
      "spec.conf.detectors.gatewayErrors",
      "spec.conf.detectors",
    ]);
    expect(result.warnings[1]?.message).toContain("Kuma denies every call no traffic permission allows");
    expect(result.warnings[3]?.message).toBe("counted over every 5xx, not only 502, 503 and 504");
  });

  it("universal and Kubernetes forms of one policy give the same resources", () => {
    const universal = run(`
type: TrafficRoute
mesh: default
name: backend-canary
sources: [{match: {kuma.io/service: '*'}}]
destinations: [{match: {kuma.io/service: backend_kuma-demo_svc_3001}}]
conf:
  split:
  - {weight: 90, destination: {kuma.io/service: backend_kuma-demo_svc_3001, version: v1}}
  - {weight: 10, destination: {kuma.io/service: backend_kuma-demo_svc_3001, version: v2}}
`);
    expect(universal.errors).toEqual([]);
    expect(universal.resources).toEqual(result.resources.filter((r) => r.kind === "Route"));
  });
});

describe("Kuma's targetRef policies (MeshHTTPRoute, MeshTrafficPermission, MeshCircuitBreaker)", () => {
  const result = convert(fromFile("mesh-policies.yaml"));

  it("become a Route in Kuma's order of matches, AccessRules and a CircuitBreaker", () => {
    expect(result.errors).toEqual([]);
    expect(result.resources).toEqual([
      res("Route", "backend-routes-kuma-system", {
        service: "backend.kuma-demo",
        rules: [
          {
            name: "rule-1-m1",
            match: { path: { exact: "/api/version" }, headers: [{ name: "x-version", exact: "v2" }] },
            destinations: [{ service: "backend-v2.kuma-demo" }],
          },
          {
            name: "rule-1-m0",
            match: { path: { prefix: "/v2" } },
            destinations: [{ service: "backend-v2.kuma-demo" }],
          },
          {
            name: "rule-0",
            match: { path: { prefix: "/" } },
            destinations: [
              { service: "backend.kuma-demo", subset: { version: "v1" }, weight: 90 },
              { service: "backend.kuma-demo", subset: { version: "v2" }, weight: 10 },
            ],
          },
        ],
      }),
      // Deny from the whole mesh, allow from frontend: in wasmesh too a caller's own rule wins over "*".
      res("AccessRule", "backend-callers-kuma-system-any", {
        source: "*",
        destination: "backend.kuma-demo",
        action: "deny",
      }),
      res("AccessRule", "backend-callers-kuma-system-frontend-kuma-demo-4b1cc900", {
        source: "frontend.kuma-demo",
        destination: "backend.kuma-demo",
        action: "allow",
      }),
      res("CircuitBreaker", "backend-breaker-kuma-system", {
        service: "backend.kuma-demo",
        consecutiveErrors: 10,
        intervalMs: 5000,
        baseEjectionMs: 30_000,
        maxEjectionPercent: 20,
        maxConcurrent: 256,
      }),
    ]);
    expectEachValid(result);
  });

  it("warns at the reordering and at each field not carried", () => {
    expect(where(result.warnings)).toEqual([
      {
        document: 0,
        kind: "MeshHTTPRoute",
        name: "backend-routes",
        path: "spec.to[0].rules[1].default.backendRefs[0].port",
      },
      { document: 0, kind: "MeshHTTPRoute", name: "backend-routes", path: "spec.to[0].rules" },
      {
        document: 2,
        kind: "MeshCircuitBreaker",
        name: "backend-breaker",
        path: "spec.to[0].default.connectionLimits.maxConnections",
      },
      {
        document: 2,
        kind: "MeshCircuitBreaker",
        name: "backend-breaker",
        path: "spec.to[0].default.outlierDetection.splitExternalAndLocalErrors",
      },
      {
        document: 2,
        kind: "MeshCircuitBreaker",
        name: "backend-breaker",
        path: "spec.to[0].default.outlierDetection.detectors.localOriginFailures",
      },
      {
        document: 2,
        kind: "MeshCircuitBreaker",
        name: "backend-breaker",
        path: "spec.to[0].default.outlierDetection",
      },
    ]);
    expect(result.warnings[1]?.message).toContain("reordered as Kuma applies them");
  });

  it("universal form: no targetRef is the whole mesh; MeshService by Kuma's labels; relative weights", () => {
    const r = run(`
type: MeshHTTPRoute
name: split
mesh: default
spec:
  to:
  - targetRef:
      kind: MeshService
      labels: {kuma.io/display-name: backend, k8s.kuma.io/namespace: kuma-demo}
    rules:
    - matches:
      - {path: {type: RegularExpression, value: "/items/[0-9]+"}, method: PUT}
      - {queryParams: [{type: Exact, name: debug, value: "1"}], headers: [{type: Present, name: X-Debug}]}
      default:
        backendRefs:
        - {kind: MeshServiceSubset, name: backend.kuma-demo.svc.3001.mesh, tags: {version: v1}}
        - {kind: MeshServiceSubset, name: backend_kuma-demo_svc_3001, tags: {version: v2}, weight: 2}
`);
    expect(r.errors).toEqual([]);
    expect(r.resources).toEqual([
      res("Route", "split", {
        service: "backend.kuma-demo",
        rules: [
          {
            name: "rule-0-m0",
            match: { path: { regex: "/items/[0-9]+" }, methods: ["PUT"] },
            destinations: [
              { service: "backend.kuma-demo", subset: { version: "v1" }, weight: 33 },
              { service: "backend.kuma-demo", subset: { version: "v2" }, weight: 67 },
            ],
          },
          {
            name: "rule-0-m1",
            match: {
              headers: [{ name: "x-debug", present: true }],
              query: [{ name: "debug", exact: "1" }],
            },
            destinations: [
              { service: "backend.kuma-demo", subset: { version: "v1" }, weight: 33 },
              { service: "backend.kuma-demo", subset: { version: "v2" }, weight: 67 },
            ],
          },
        ],
      }),
    ]);
    expect(paths(r.warnings)).toEqual([
      "spec.to[0].rules[0].default.backendRefs[0].weight",
      "spec.to[0].rules[0].default.backendRefs[1].weight",
    ]);
    expect(r.warnings[0]?.message).toBe("1 of 3 is 33.33%: rounded to 33%");
    expectEachValid(r);
  });

  it("MeshTrafficPermission: Deny from the mesh to the mesh is defaultAccess deny; Mesh to Mesh Allow is allow-all", () => {
    const policy = (action: string) => `
type: Mesh
name: default
mtls: {enabledBackend: ca-1, backends: [{name: ca-1, type: builtin}]}
---
type: MeshTrafficPermission
name: mesh-wide
mesh: default
spec:
  targetRef: {kind: Mesh}
  from: [{targetRef: {kind: Mesh}, default: {action: ${action}}}]
`;
    const deny = run(policy("Deny"));
    expect(deny.errors).toEqual([]);
    expect(deny.resources).toEqual([
      res("MeshPolicy", "default", { defaultAccess: "deny", mtls: { mode: "strict" } }),
    ]);
    const allow = run(policy("Allow"));
    expect(allow.errors).toEqual([]);
    expect(allow.warnings).toEqual([expect.objectContaining({ path: "mtls.backends[0].type" })]);
    expect(allow.resources).toEqual([
      res("MeshPolicy", "default", { defaultAccess: "allow", mtls: { mode: "strict" } }),
    ]);
    const shadow = run(policy("AllowWithShadowDeny"));
    expect(shadow.resources).toEqual(allow.resources);
    expect(paths(shadow.warnings)).toContain("spec.from[0].default.action");
  });
});

describe("Mesh", () => {
  it("without mTLS: disabled (Kuma sends plain text), every call allowed", () => {
    const r = run("type: Mesh\nname: default\nmetrics: {enabledBackend: prometheus-1}\n");
    expect(r.errors).toEqual([]);
    expect(r.resources).toEqual([
      res("MeshPolicy", "default", { defaultAccess: "allow", mtls: { mode: "disabled" } }),
    ]);
    expect(paths(r.warnings)).toEqual(["metrics"]);
  });

  it("without mTLS, Kuma enforces no traffic permission: they are not carried (a warning)", () => {
    const r = run(`
type: Mesh
name: default
---
type: TrafficPermission
mesh: default
name: web-to-api
sources: [{match: {kuma.io/service: web}}]
destinations: [{match: {kuma.io/service: api}}]
---
type: MeshTrafficPermission
mesh: default
name: deny-web
spec:
  targetRef: {kind: MeshService, name: api}
  from: [{targetRef: {kind: MeshService, name: web}, default: {action: Deny}}]
`);
    expect(r.errors).toEqual([]);
    expect(where(r.warnings)).toEqual([
      { document: 1, kind: "TrafficPermission", name: "web-to-api", path: "sources" },
      { document: 2, kind: "MeshTrafficPermission", name: "deny-web", path: "spec.from" },
    ]);
    expect(r.warnings[0]?.message).toBe(
      "not carried: Kuma enforces traffic permissions only with mTLS on, which the Mesh (document 0) has off",
    );
    expect(r.resources).toEqual([
      res("MeshPolicy", "default", { defaultAccess: "allow", mtls: { mode: "disabled" } }),
    ]);
  });

  it("a permission dropped for an error decides nothing for later ones", () => {
    const r = run(`
type: MeshTrafficPermission
mesh: default
name: broken
spec:
  targetRef: {kind: MeshService, name: api}
  from: [{targetRef: {kind: MeshService, name: web}, default: {action: Allow}}]
  rules: [{default: {allow: [{spiffeID: {type: Exact, value: x}}]}}]
---
type: MeshTrafficPermission
mesh: default
name: deny-web
spec:
  targetRef: {kind: MeshService, name: api}
  from: [{targetRef: {kind: MeshService, name: web}, default: {action: Deny}}]
`);
    expect(where(r.errors)).toEqual([
      { document: 0, kind: "MeshTrafficPermission", name: "broken", path: "spec.rules" },
    ]);
    expect(r.resources).toEqual([
      res("AccessRule", "deny-web-web", { source: "web", destination: "api", action: "deny" }),
    ]);
  });

  it("an enabledBackend that names no backend, or an unknown mode, is an error", () => {
    const r = run(`
type: Mesh
name: default
mtls: {enabledBackend: ca-2, backends: [{name: ca-1, type: builtin}]}
`);
    expect(paths(r.errors)).toEqual(["mtls.enabledBackend"]);
    const mode = run(`
apiVersion: kuma.io/v1alpha1
kind: Mesh
metadata: {name: default}
spec:
  mtls: {enabledBackend: ca-1, backends: [{name: ca-1, type: builtin, mode: OFF}]}
`);
    expect(paths(mode.errors)).toEqual(["spec.mtls.backends[0].mode"]);
    expect(mode.resources).toEqual([]);
  });
});

describe("Dataplane", () => {
  it("one Workload per inbound; the Service gathers the ports of every dataplane of the service", () => {
    const r = run(`
type: Dataplane
mesh: default
name: web-1
networking:
  address: 10.0.0.1
  advertisedAddress: 203.0.113.7
  inbound:
  - {port: 10001, servicePort: 8080, tags: {kuma.io/service: web, kuma.io/protocol: http}}
  - {port: 10002, servicePort: 9090, address: 10.0.0.9, tags: {kuma.io/service: web, kuma.io/protocol: grpc}}
---
type: Dataplane
mesh: default
name: web-2
networking:
  address: 10.0.0.2
  inbound:
  - {port: 8443, tags: {kuma.io/service: web.mesh, kuma.io/protocol: http2}}
`);
    expect(r.errors).toEqual([]);
    expect(r.resources).toEqual([
      res("Service", "web", {
        ports: [
          { name: "http-8080", port: 8080, protocol: "http" },
          { name: "http-8443", port: 8443, protocol: "http" },
          { name: "grpc-9090", port: 9090, protocol: "grpc" },
        ],
      }),
      res("Workload", "web-1-0", {
        service: "web",
        address: "203.0.113.7",
        port: 10001,
        labels: { "kuma.io/protocol": "http" },
        appPort: 8080,
      }),
      res("Workload", "web-1-1", {
        service: "web",
        address: "10.0.0.9",
        port: 10002,
        labels: { "kuma.io/protocol": "grpc" },
        appPort: 9090,
      }),
      res("Workload", "web-2", {
        service: "web",
        address: "10.0.0.2",
        port: 8443,
        labels: { "kuma.io/protocol": "http2" },
      }),
    ]);
    expect(where(r.warnings)).toEqual([
      {
        document: 1,
        kind: "Dataplane",
        name: "web-2",
        path: 'networking.inbound[0].tags["kuma.io/protocol"]',
      },
    ]);
    expectEachValid(r);
    expect(validateReferences(r.resources).errors).toEqual([]);
  });

  it("errors: a port served with another protocol, no address, a gateway, an unknown protocol", () => {
    const r = run(`
type: Dataplane
mesh: default
name: a
networking:
  address: 10.0.0.1
  inbound: [{port: 10001, servicePort: 8080, tags: {kuma.io/service: api, kuma.io/protocol: http}}]
---
type: Dataplane
mesh: default
name: b
networking:
  address: 10.0.0.2
  inbound: [{port: 10001, servicePort: 8080, tags: {kuma.io/service: api}}]
---
type: Dataplane
mesh: default
name: c
networking:
  inbound: [{port: 10001, tags: {kuma.io/service: api, kuma.io/protocol: http}}]
---
type: Dataplane
mesh: default
name: gw
networking:
  address: 10.0.0.4
  gateway: {tags: {kuma.io/service: edge}}
---
type: Dataplane
mesh: default
name: d
networking:
  address: 10.0.0.5
  inbound: [{port: 10001, tags: {kuma.io/service: api, kuma.io/protocol: thrift}}]
`);
    expect(where(r.errors)).toEqual([
      { document: 1, kind: "Dataplane", name: "b", path: 'networking.inbound[0].tags["kuma.io/protocol"]' },
      { document: 2, kind: "Dataplane", name: "c", path: "networking.address" },
      { document: 3, kind: "Dataplane", name: "gw", path: "networking.gateway" },
      { document: 4, kind: "Dataplane", name: "d", path: 'networking.inbound[0].tags["kuma.io/protocol"]' },
    ]);
    expect(r.errors[0]?.message).toBe("tcp on port 8080 of 'api', which document 0 serves as http");
  });
});

describe("errors name the field whose loss would change the meaning", () => {
  it("a TrafficRoute for some callers only (wasmesh routes per destination, for every caller)", () => {
    const text = (form: "universal" | "kubernetes") => {
      const body = `sources: [{match: {kuma.io/service: frontend}}]
destinations: [{match: {kuma.io/service: backend}}]
conf: {destination: {kuma.io/service: backend, version: v2}}`;
      return form === "universal"
        ? `type: TrafficRoute\nmesh: default\nname: r\n${body}\n`
        : `apiVersion: kuma.io/v1alpha1\nkind: TrafficRoute\nmesh: default\nmetadata: {name: r}\nspec:\n${body.replace(/^/gm, "  ")}\n`;
    };
    const u = run(text("universal"));
    expect(paths(u.errors)).toEqual(["sources[0].match"]);
    expect(u.errors[0]?.message).toContain("applies to every caller");
    expect(u.resources).toEqual([]);
    expect(paths(run(text("kubernetes")).errors)).toEqual(["spec.sources[0].match"]);
  });

  it("route changes (modify) and MeshHTTPRoute filters are refused; wildcard routes and breakers", () => {
    const r = run(`
type: TrafficRoute
mesh: default
name: r
sources: [{match: {kuma.io/service: '*'}}]
destinations: [{match: {kuma.io/service: backend}}]
conf:
  http:
  - match: {path: {prefix: /}}
    modify: {path: {rewritePrefix: /v2}}
    destination: {kuma.io/service: backend}
  destination: {kuma.io/service: backend}
---
type: MeshHTTPRoute
mesh: default
name: h
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: MeshService, name: backend}
    rules:
    - matches: [{path: {type: PathPrefix, value: /}}]
      default:
        filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x, value: y}]}}]
---
type: TrafficRoute
mesh: default
name: everything
sources: [{match: {kuma.io/service: '*'}}]
destinations: [{match: {kuma.io/service: '*'}}]
conf: {destination: {kuma.io/service: backend}}
---
type: CircuitBreaker
mesh: default
name: all
sources: [{match: {kuma.io/service: '*'}}]
destinations: [{match: {kuma.io/service: '*'}}]
conf: {detectors: {totalErrors: {consecutive: 5}}}
`);
    expect(where(r.errors)).toEqual([
      { document: 0, kind: "TrafficRoute", name: "r", path: "conf.http[0].modify" },
      { document: 1, kind: "MeshHTTPRoute", name: "h", path: "spec.to[0].rules[0].default.filters" },
      { document: 2, kind: "TrafficRoute", name: "everything", path: "destinations[0].match" },
      { document: 3, kind: "CircuitBreaker", name: "all", path: "destinations[0].match" },
    ]);
    expect(r.resources).toEqual([]);
  });

  it("targetRefs wasmesh cannot express: per-caller routes and breakers, subsets of callers", () => {
    const r = run(`
apiVersion: kuma.io/v1alpha1
kind: MeshHTTPRoute
metadata: {name: from-frontend, namespace: kuma-demo, labels: {kuma.io/mesh: default}}
spec:
  targetRef: {kind: Dataplane, labels: {app: frontend}}
  to:
  - targetRef: {kind: MeshService, name: backend}
    rules: [{matches: [{path: {type: PathPrefix, value: /}}], default: {}}]
---
apiVersion: kuma.io/v1alpha1
kind: MeshCircuitBreaker
metadata: {name: inbound, namespace: kuma-system}
spec:
  targetRef: {kind: MeshService, name: backend}
  from: [{targetRef: {kind: Mesh}, default: {outlierDetection: {detectors: {totalFailures: {consecutive: 3}}}}}]
---
apiVersion: kuma.io/v1alpha1
kind: MeshTrafficPermission
metadata: {name: some, namespace: kuma-system}
spec:
  targetRef: {kind: MeshService, name: backend}
  from: [{targetRef: {kind: MeshSubset, tags: {team: a}}, default: {action: Allow}}]
`);
    expect(where(r.errors)).toEqual([
      { document: 0, kind: "MeshHTTPRoute", name: "from-frontend", path: "spec.targetRef.kind" },
      { document: 1, kind: "MeshCircuitBreaker", name: "inbound", path: "spec.from" },
      { document: 1, kind: "MeshCircuitBreaker", name: "inbound", path: "spec.targetRef.kind" },
      { document: 2, kind: "MeshTrafficPermission", name: "some", path: "spec.from[0].targetRef.kind" },
    ]);
  });

  it("TrafficPermission: sources by other tags, some callers to every service", () => {
    const r = run(`
type: TrafficPermission
mesh: default
name: by-tags
sources: [{match: {kuma.io/service: frontend, version: v1}}]
destinations: [{match: {kuma.io/service: backend}}]
---
type: TrafficPermission
mesh: default
name: to-all
sources: [{match: {kuma.io/service: frontend}}]
destinations: [{match: {kuma.io/service: '*'}}]
`);
    expect(where(r.errors)).toEqual([
      { document: 0, kind: "TrafficPermission", name: "by-tags", path: "sources[0].match" },
      { document: 1, kind: "TrafficPermission", name: "to-all", path: "destinations[0].match" },
    ]);
  });

  it("precedence: one route per destination; an allow and a deny of the same call in two policies", () => {
    const r = run(`
type: TrafficRoute
mesh: default
name: first
sources: [{match: {kuma.io/service: '*'}}]
destinations: [{match: {kuma.io/service: backend}}]
conf: {destination: {kuma.io/service: backend, version: v1}}
---
type: TrafficRoute
mesh: default
name: second
sources: [{match: {kuma.io/service: '*'}}]
destinations: [{match: {kuma.io/service: backend.mesh}}]
conf: {destination: {kuma.io/service: backend, version: v2}}
---
type: TrafficPermission
mesh: default
name: allow-frontend
sources: [{match: {kuma.io/service: frontend}}]
destinations: [{match: {kuma.io/service: backend}}]
---
type: MeshTrafficPermission
mesh: default
name: deny-frontend
spec:
  targetRef: {kind: MeshService, name: backend}
  from: [{targetRef: {kind: MeshService, name: frontend}, default: {action: Deny}}]
`);
    expect(where(r.errors)).toEqual([
      { document: 1, kind: "TrafficRoute", name: "second", path: "(root)" },
      { document: 3, kind: "MeshTrafficPermission", name: "deny-frontend", path: "spec.from" },
    ]);
    expect(r.errors[1]?.message).toBe(
      "denies 'frontend' to 'backend', which document 2 allows: wasmesh's deny wins between AccessRules of one caller, where Kuma picks by the policies' targetRefs and names; keep one",
    );
    expect(r.resources.map((x) => `${x.kind}/${x.metadata.name}`)).toEqual([
      "Route/first",
      "AccessRule/allow-frontend-frontend",
    ]);
  });

  it("wasmesh runs one mesh: documents of another Kuma mesh than the input's first are errors", () => {
    const r = run(`
type: TrafficPermission
mesh: demo
name: a
sources: [{match: {kuma.io/service: web}}]
destinations: [{match: {kuma.io/service: api}}]
---
type: TrafficPermission
mesh: default
name: b
sources: [{match: {kuma.io/service: web}}]
destinations: [{match: {kuma.io/service: api}}]
---
apiVersion: kuma.io/v1alpha1
kind: MeshTrafficPermission
metadata: {name: c, namespace: kuma-system, labels: {kuma.io/mesh: other}}
spec:
  targetRef: {kind: MeshService, name: api}
  from: [{targetRef: {kind: Mesh}, default: {action: Allow}}]
`);
    expect(where(r.errors)).toEqual([
      { document: 1, kind: "TrafficPermission", name: "b", path: "mesh" },
      { document: 2, kind: "MeshTrafficPermission", name: "c", path: 'metadata.labels["kuma.io/mesh"]' },
    ]);
    // A mesh other than default is fine on its own: its name is not part of wasmesh's.
    expect(r.resources).toEqual([
      res("AccessRule", "a-web", { source: "web", destination: "api", action: "allow" }),
    ]);
  });
});

describe("durations and thresholds", () => {
  const breaker = (conf: string) =>
    run(`
type: CircuitBreaker
mesh: default
name: b
sources: [{match: {kuma.io/service: '*'}}]
destinations: [{match: {kuma.io/service: backend}}]
conf: ${conf}
`);

  it("reads Kuma's durations in every form: 30ms, 4s, 5m, 1h30m, 1.5s", () => {
    const cases: [string, string, number, number][] = [
      ["30ms", "4s", 30, 4000],
      ["5m", "1h30m", 300_000, 5_400_000],
      ["1.5s", "0.25s", 1500, 250],
    ];
    for (const [interval, base, intervalMs, baseEjectionMs] of cases) {
      const r = breaker(
        `{interval: ${interval}, baseEjectionTime: ${base}, detectors: {totalErrors: {consecutive: 2}}}`,
      );
      expect(r.errors).toEqual([]);
      expect(r.resources).toEqual([
        res("CircuitBreaker", "b", {
          service: "backend",
          consecutiveErrors: 2,
          intervalMs,
          baseEjectionMs,
          maxEjectionPercent: 10,
        }),
      ]);
    }
  });

  it("a bare number, a zero, a negative duration and missing detectors are errors", () => {
    expect(paths(breaker("{interval: 5, detectors: {totalErrors: {consecutive: 2}}}").errors)).toEqual([
      "conf.interval",
    ]);
    expect(paths(breaker("{interval: 0s, detectors: {totalErrors: {consecutive: 2}}}").errors)).toEqual([
      "conf.interval",
    ]);
    expect(
      paths(breaker("{baseEjectionTime: -1s, detectors: {totalErrors: {consecutive: 2}}}").errors),
    ).toEqual(["conf.baseEjectionTime"]);
    const none = breaker("{interval: 5s, detectors: {standardDeviation: {factor: 1.9}}}");
    expect(paths(none.errors)).toEqual(["conf.detectors"]);
    expect(paths(none.warnings)).toEqual(["conf.detectors.standardDeviation"]);
  });

  it("weights: all 0 is an error; one destination needs no weight", () => {
    const r = run(`
type: TrafficRoute
mesh: default
name: r
sources: [{match: {kuma.io/service: '*'}}]
destinations: [{match: {kuma.io/service: backend}}]
conf:
  split:
  - {weight: 0, destination: {kuma.io/service: backend, version: v1}}
  - {weight: 0, destination: {kuma.io/service: backend, version: v2}}
`);
    expect(paths(r.errors)).toEqual(["conf.split"]);
  });
});

describe("addressing and recognition", () => {
  it("a kuma.io/service value names the same wasmesh service in each of its forms", () => {
    expect(serviceOfTag("backend")).toEqual({ ok: true, service: "backend" });
    expect(serviceOfTag("backend.mesh")).toEqual({ ok: true, service: "backend" });
    expect(serviceOfTag("backend_kuma-demo_svc_8080")).toEqual({
      ok: true,
      service: "backend.kuma-demo",
      port: 8080,
    });
    expect(serviceOfTag("backend.kuma-demo.svc.8080.mesh")).toEqual({
      ok: true,
      service: "backend.kuma-demo",
      port: 8080,
    });
    expect(serviceOfTag("*")).toEqual({ ok: true, service: "*" });
    expect(serviceOfTag("Backend_Service").ok).toBe(false);
    expect(serviceOfTag("").ok).toBe(false);
  });

  it("claims only Kuma's documents", () => {
    expect(kuma.identify({ type: "TrafficRoute", mesh: "default", name: "r" })).toEqual({
      kind: "TrafficRoute",
      name: "r",
    });
    expect(kuma.identify({ type: "Mesh", name: "default" })).toEqual({ kind: "Mesh", name: "default" });
    // Consul's config entries (Kind, Name), Istio's and native documents, a universal doc with no mesh.
    expect(kuma.identify({ Kind: "service-defaults", Name: "web" })).toBeUndefined();
    expect(
      kuma.identify({
        apiVersion: "networking.istio.io/v1",
        kind: "VirtualService",
        metadata: { name: "x" },
      }),
    ).toBeUndefined();
    expect(
      kuma.identify({ apiVersion: API, kind: "CircuitBreaker", metadata: { name: "x" } }),
    ).toBeUndefined();
    expect(kuma.identify({ type: "TrafficRoute", name: "r" })).toBeUndefined();
    expect(
      kuma.identify({
        apiVersion: "kuma.io/v1alpha1",
        kind: "MeshHTTPRoute",
        metadata: { name: "r", namespace: "kuma-system" },
      }),
    ).toEqual({ kind: "MeshHTTPRoute", name: "r", namespace: "kuma-system" });
  });

  it("an unconverted Kuma kind is an error naming it", () => {
    const r = run(`
type: HealthCheck
mesh: default
name: hc
---
apiVersion: kuma.io/v1alpha1
kind: MeshRetry
metadata: {name: retry, namespace: kuma-system}
spec: {}
`);
    expect(where(r.errors)).toEqual([
      { document: 0, kind: "HealthCheck", name: "hc", path: "type" },
      { document: 1, kind: "MeshRetry", name: "retry", path: "kind" },
    ]);
  });
});

describe("docs/imports.md", () => {
  it("lists Kuma's support matrix as the converter runs it", () => {
    const doc = readFileSync(join(REPO, "docs", "imports.md"), "utf8");
    const section = doc.slice(doc.indexOf("## Kuma: field by field"));
    const end = section.indexOf("\n## ", 3);
    const rows = new Map<string, string>();
    for (const m of (end < 0 ? section : section.slice(0, end)).matchAll(
      /^\|\s*(\w+)\s*\|\s*`([^`]+)`\s*\|\s*(\w+)\s*\|/gm,
    )) {
      rows.set(`${m[1]} ${m[2]}`, m[3] as string);
    }
    const expected = Object.entries(FIELDS).flatMap(([kind, fields]) =>
      Object.entries(fields).map(([field, s]) => [`${kind} ${field}`, s.support] as const),
    );
    expect(Object.fromEntries(rows)).toEqual(Object.fromEntries(expected));
  });
});

describe("wasmesh convert", () => {
  it("prints a Kuma file's native resources, which apply's parser reads back; warnings go to stderr", async () => {
    const file = join(DATA, "kuma-demo-universal.yaml");
    const result = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(
        process.execPath,
        [BIN, "convert", "-f", file],
        { timeout: 30_000 },
        (error, stdout, stderr) => {
          resolve({ code: error ? (typeof error.code === "number" ? error.code : -1) : 0, stdout, stderr });
        },
      );
    });
    expect(result.code).toBe(0);
    expect(parseManifests(result.stdout)).toEqual({
      ok: true,
      resources: convert(fromFile("kuma-demo-universal.yaml")).resources,
    });
    expect(result.stderr).toContain(
      `warning: ${file}: document 1: Dataplane/frontend-01: networking.outbound: not supported, ignored`,
    );
  });
});
