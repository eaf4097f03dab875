// Istio's resources converted into wasmesh's (control-plane/imports/istio.ts, issue 13): manifests
// modelled on Istio's bookinfo tasks, the exact native resources they become, their validity, a
// warning per field not carried and an error per field whose loss would change the meaning, and the
// `wasmesh convert` command.
import { execFile } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse, parseAllDocuments } from "yaml";
import {
  type ConvertResult,
  convert,
  FIELDS,
  type ImportProblem,
  nativeName,
  serviceOfHost,
  serviceOfPrincipal,
} from "../../control-plane/imports/index.ts";
import {
  parseManifests,
  type Resource,
  validateReferences,
  validateResource,
  type Workload,
} from "../../control-plane/resources/index.ts";
import { tempDir } from "../support/temp.ts";

const REPO = join(import.meta.dirname, "..", "..");
const DATA = join(import.meta.dirname, "testdata", "istio");
const BIN = join(REPO, "bin", "wasmesh.js");

const yamlDocs = (text: string): unknown[] => parseAllDocuments(text).map((d) => d.toJS());
const fromFile = (name: string) => yamlDocs(readFileSync(join(DATA, name), "utf8"));
const run = (text: string, namespace?: string) =>
  convert(yamlDocs(text), namespace !== undefined ? { namespace } : {});

/** Problems without the message, to compare where they are. */
const where = (problems: ImportProblem[]) =>
  problems.map(({ document, kind, name, path }) => ({ document, kind, name, path }));

const SERVICES = parseManifests(readFileSync(join(DATA, "services.yaml"), "utf8"));

function workload(service: string, version: string): Workload {
  return {
    apiVersion: "wasmesh.io/v1alpha1",
    kind: "Workload",
    metadata: { name: `${service}-${version}` },
    spec: { service, address: "10.0.0.1", port: 9080, labels: { version } },
  };
}
const WORKLOADS = [
  workload("reviews", "v1"),
  workload("reviews", "v2"),
  workload("reviews", "v3"),
  workload("ratings", "v1"),
];

/** Every resource valid alone, and with the services and workloads, no dangling reference. */
function expectValid(result: ConvertResult): void {
  for (const r of result.resources) expect(validateResource(r)).toEqual({ ok: true, resource: r });
  if (!SERVICES.ok) throw new Error("services.yaml must be valid");
  const refs = validateReferences([...SERVICES.resources, ...WORKLOADS, ...result.resources]);
  expect(refs).toEqual({ errors: [], warnings: [] });
}

describe("Istio's bookinfo tasks", () => {
  it("request routing, fault injection, timeouts, retries and outlier detection become Routes and CircuitBreakers", () => {
    const result = convert(fromFile("bookinfo-routing.yaml"));
    expect(result.errors).toEqual([]);
    expect(result.resources).toEqual([
      {
        apiVersion: "wasmesh.io/v1alpha1",
        kind: "CircuitBreaker",
        metadata: { name: "ratings" },
        spec: {
          service: "ratings",
          consecutiveErrors: 3,
          intervalMs: 1000,
          baseEjectionMs: 180_000,
          maxEjectionPercent: 100,
        },
      },
      {
        apiVersion: "wasmesh.io/v1alpha1",
        kind: "CircuitBreaker",
        metadata: { name: "ratings-v1" },
        spec: {
          service: "ratings",
          subset: { version: "v1" },
          consecutiveErrors: 3,
          intervalMs: 1000,
          baseEjectionMs: 180_000,
          maxEjectionPercent: 100,
        },
      },
      {
        apiVersion: "wasmesh.io/v1alpha1",
        kind: "Route",
        metadata: { name: "reviews" },
        spec: {
          service: "reviews",
          rules: [
            {
              name: "http-0",
              match: { headers: [{ name: "end-user", exact: "jason" }] },
              destinations: [{ service: "reviews", subset: { version: "v2" } }],
            },
            { name: "http-1", destinations: [{ service: "reviews", subset: { version: "v1" } }] },
          ],
        },
      },
      {
        apiVersion: "wasmesh.io/v1alpha1",
        kind: "Route",
        metadata: { name: "ratings" },
        spec: {
          service: "ratings",
          rules: [
            {
              name: "http-0",
              match: { headers: [{ name: "end-user", exact: "jason" }] },
              destinations: [{ service: "ratings", subset: { version: "v1" } }],
              fault: { delay: { ms: 7000, percent: 100 } },
            },
            {
              name: "http-1",
              destinations: [{ service: "ratings", subset: { version: "v1" } }],
              timeoutMs: 500,
              retries: { attempts: 3, perTryTimeoutMs: 2000, on: "5xx,connect-failure" },
            },
          ],
        },
      },
    ]);
    expectValid(result);
    // The one difference of meaning the breaker has, said where it is written.
    expect(where(result.warnings)).toEqual([
      { document: 1, kind: "DestinationRule", name: "ratings", path: "spec.trafficPolicy.outlierDetection" },
    ]);
    expect(result.produced.map(({ document: _, ...p }) => p)).toEqual([
      {
        source: { apiVersion: "networking.istio.io/v1", kind: "DestinationRule", name: "reviews" },
        resources: [],
      },
      {
        source: { apiVersion: "networking.istio.io/v1alpha3", kind: "DestinationRule", name: "ratings" },
        resources: [
          { kind: "CircuitBreaker", name: "ratings" },
          { kind: "CircuitBreaker", name: "ratings-v1" },
        ],
      },
      {
        source: { apiVersion: "networking.istio.io/v1beta1", kind: "VirtualService", name: "reviews" },
        resources: [{ kind: "Route", name: "reviews" }],
      },
      {
        source: { apiVersion: "networking.istio.io/v1", kind: "VirtualService", name: "ratings" },
        resources: [{ kind: "Route", name: "ratings" }],
      },
    ]);
  });

  it("in a namespace, short hosts are the namespace's services, as discovery names them", () => {
    const result = convert(fromFile("bookinfo-routing.yaml"), { namespace: "bookinfo" });
    expect(result.errors).toEqual([]);
    const reviews = result.resources.find((r) => r.kind === "Route" && r.spec.service === "reviews.bookinfo");
    expect(reviews?.metadata.name).toBe("reviews-bookinfo");
    expect(reviews?.kind === "Route" && reviews.spec.rules.map((r) => r.destinations)).toEqual([
      [{ service: "reviews.bookinfo", subset: { version: "v2" } }],
      [{ service: "reviews.bookinfo", subset: { version: "v1" } }],
    ]);
    expect(result.resources.map((r) => `${r.kind}/${r.metadata.name}`)).toEqual([
      "CircuitBreaker/ratings-bookinfo",
      "CircuitBreaker/ratings-bookinfo-v1",
      "Route/reviews-bookinfo",
      "Route/ratings-bookinfo",
    ]);
  });

  it("traffic shifting: 90/10 and 50/50 weights; relative weights are scaled to percentages, with a warning", () => {
    const shift = (a: number, b: number) => `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: ${a}
    - destination: {host: reviews, subset: v3}
      weight: ${b}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v3, labels: {version: v3}}
`;
    const destinations = (result: ConvertResult) =>
      result.resources.flatMap((r) =>
        r.kind === "Route" ? r.spec.rules.map((rule) => rule.destinations) : [],
      );
    const ninety = run(shift(90, 10));
    expect(destinations(ninety)).toEqual([
      [
        { service: "reviews", subset: { version: "v1" }, weight: 90 },
        { service: "reviews", subset: { version: "v3" }, weight: 10 },
      ],
    ]);
    expect(ninety.warnings).toEqual([]);
    expectValid(ninety);
    expect(destinations(run(shift(50, 50)))[0]?.map((d) => d.weight)).toEqual([50, 50]);
    const relative = run(shift(1, 2));
    expect(destinations(relative)[0]?.map((d) => d.weight)).toEqual([33, 67]);
    expect(where(relative.warnings)).toEqual([
      { document: 0, kind: "VirtualService", name: "reviews", path: "spec.http[0].route" },
    ]);
    expectValid(relative);
  });

  it("timeout 0s (Istio: none) is the longest wasmesh allows, with a warning (without one, Envoy's 15s would apply)", () => {
    const result = run(`
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
  - route: [{destination: {host: ratings}}]
    timeout: 0s
`);
    expect(result.resources[0]?.kind === "Route" && result.resources[0].spec.rules[0]?.timeoutMs).toBe(
      3_600_000,
    );
    expect(where(result.warnings)).toEqual([
      { document: 0, kind: "VirtualService", name: "ratings", path: "spec.http[0].timeout" },
    ]);
  });

  it("fault injection: an abort of 500 for jason, with its percentage", () => {
    const result = run(`
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
  - match:
    - headers:
        end-user: {exact: jason}
    fault:
      abort:
        percentage: {value: 100.0}
        httpStatus: 500
    route:
    - destination: {host: ratings}
  - route:
    - destination: {host: ratings}
`);
    expect(result.errors).toEqual([]);
    expect(result.resources[0]?.kind === "Route" && result.resources[0].spec.rules).toEqual([
      {
        name: "http-0",
        match: { headers: [{ name: "end-user", exact: "jason" }] },
        destinations: [{ service: "ratings" }],
        fault: { abort: { status: 500, percent: 100 } },
      },
      { name: "http-1", destinations: [{ service: "ratings" }] },
    ]);
  });
});

describe("matches", () => {
  it("uri, headers, method, query parameters and header changes; a list of matches is one rule each, in order", () => {
    const result = run(`
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: productpage}
spec:
  hosts: [productpage.prod.svc.cluster.local:9080]
  http:
  - name: api
    match:
    - uri: {prefix: /api/v1/products}
      method: {exact: GET}
      ignoreUriCase: true
    - uri: {regex: "/login|/logout"}
      headers:
        x-canary: {}
        Cookie: {regex: "^(.*?;)?(user=jason)(;.*)?$"}
      queryParams:
        debug: {exact: "1"}
      withoutHeaders:
        x-legacy: {}
    headers:
      request:
        set: {x-route: api}
        remove: [x-debug]
      response:
        add: {x-served-by: wasmesh}
    route:
    - destination: {host: productpage.prod}
  - route:
    - destination: {host: productpage.prod.svc}
`);
    expect(result.errors).toEqual([]);
    expect(result.warnings).toEqual([]);
    const common = {
      destinations: [{ service: "productpage.prod" }],
      requestHeaders: { set: [{ name: "x-route", value: "api" }], remove: ["x-debug"] },
      responseHeaders: { add: [{ name: "x-served-by", value: "wasmesh" }] },
    };
    expect(result.resources).toEqual([
      {
        apiVersion: "wasmesh.io/v1alpha1",
        kind: "Route",
        metadata: { name: "productpage" },
        spec: {
          service: "productpage.prod",
          rules: [
            {
              name: "api-m0",
              match: { path: { prefix: "/api/v1/products", ignoreCase: true }, methods: ["GET"] },
              ...common,
            },
            {
              name: "api-m1",
              match: {
                path: { regex: "/login|/logout" },
                headers: [
                  { name: "x-canary", present: true },
                  { name: "cookie", regex: "^(.*?;)?(user=jason)(;.*)?$" },
                  { name: "x-legacy", absent: true },
                ],
                query: [{ name: "debug", exact: "1" }],
              },
              ...common,
            },
            { name: "http-1", destinations: [{ service: "productpage.prod" }] },
          ],
        },
      },
    ]);
  });

  it("warns when the last route has a match: wasmesh sends the rest to the whole service, Istio answers 404", () => {
    const result = run(`
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /a}}]
    route: [{destination: {host: reviews}}]
`);
    expect(result.resources).toHaveLength(1);
    expect(where(result.warnings)).toEqual([
      { document: 0, kind: "VirtualService", name: "reviews", path: "spec.http[0].match" },
    ]);
    expect(result.warnings[0]?.message).toContain("404");
  });
});

describe("what is not carried", () => {
  it("warns once per unsupported field, with its path: mirror, corsPolicy, connectionPool.tcp, loadBalancer, unknown fields", () => {
    const result = run(`
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  exportTo: ["."]
  http:
  - route:
    - destination: {host: reviews, port: {number: 9080}}
    mirror: {host: reviews}
    mirrorPercentage: {value: 50}
    corsPolicy:
      allowOrigins: [{exact: "https://example.com"}]
    retries:
      attempts: 2
      retryRemoteLocalities: true
    frobnicate: 1
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: LEAST_REQUEST}
    connectionPool:
      tcp: {maxConnections: 1}
      http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 1, http2MaxRequests: 10}
    outlierDetection:
      consecutiveGatewayErrors: 2
      minHealthPercent: 50
    tls: {mode: ISTIO_MUTUAL}
`);
    expect(result.errors).toEqual([]);
    const vs = { document: 0, kind: "VirtualService", name: "reviews" };
    const dr = { document: 1, kind: "DestinationRule", name: "reviews" };
    expect(where(result.warnings)).toEqual([
      { ...vs, path: "spec.exportTo" },
      { ...vs, path: "spec.http[0].route[0].destination.port" },
      { ...vs, path: "spec.http[0].mirror" },
      { ...vs, path: "spec.http[0].mirrorPercentage" },
      { ...vs, path: "spec.http[0].corsPolicy" },
      { ...vs, path: "spec.http[0].retries.retryRemoteLocalities" },
      { ...vs, path: "spec.http[0].frobnicate" },
      { ...dr, path: "spec.trafficPolicy.loadBalancer" },
      { ...dr, path: "spec.trafficPolicy.connectionPool.tcp" },
      { ...dr, path: "spec.trafficPolicy.connectionPool.http.http1MaxPendingRequests" },
      { ...dr, path: "spec.trafficPolicy.connectionPool.http.maxRequestsPerConnection" },
      { ...dr, path: "spec.trafficPolicy.outlierDetection.minHealthPercent" },
      { ...dr, path: "spec.trafficPolicy.tls.mode" },
      { ...dr, path: "spec.trafficPolicy.outlierDetection" },
      { ...dr, path: "spec.trafficPolicy.outlierDetection.consecutiveGatewayErrors" },
    ]);
    expect(result.warnings.find((w) => w.path === "spec.http[0].frobnicate")?.message).toBe(
      "unknown field: ignored",
    );
    // What is carried still is: Istio's defaults for the thresholds not written, the request limit.
    expect(result.resources.find((r) => r.kind === "CircuitBreaker")?.spec).toEqual({
      service: "reviews",
      consecutiveErrors: 2,
      intervalMs: 10_000,
      baseEjectionMs: 30_000,
      maxEjectionPercent: 10,
      maxConcurrent: 10,
    });
  });

  it.each([
    ["a mutual TLS mode", "trafficPolicy: {tls: {mode: MUTUAL}}", "spec.trafficPolicy.tls.mode"],
    [
      "a subset's SIMPLE TLS",
      "subsets: [{name: v1, labels: {version: v1}, trafficPolicy: {tls: {mode: SIMPLE}}}]",
      "spec.subsets[0].trafficPolicy.tls.mode",
    ],
    ["a workload selector", "workloadSelector: {matchLabels: {app: productpage}}", "spec.workloadSelector"],
    ["a subset without labels", "subsets: [{name: v1}]", "spec.subsets[0].labels"],
    [
      "a zero interval",
      "trafficPolicy: {outlierDetection: {interval: 0s}}",
      "spec.trafficPolicy.outlierDetection.interval",
    ],
    [
      "a bad duration",
      "trafficPolicy: {outlierDetection: {baseEjectionTime: 30}}",
      "spec.trafficPolicy.outlierDetection.baseEjectionTime",
    ],
  ])("a DestinationRule with %s is an error naming the field, and produces nothing", (_, spec, path) => {
    const result = run(`
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  ${spec}
`);
    expect(result.errors.map((e) => e.path)).toEqual([path]);
    expect(result.resources).toEqual([]);
  });

  it.each([
    ["a redirect", "- redirect: {uri: /v1}", "spec.http[0].redirect"],
    [
      "a rewrite",
      "- rewrite: {uri: /v1}\n    route: [{destination: {host: reviews}}]",
      "spec.http[0].rewrite",
    ],
    [
      "a match on the caller's labels",
      "- match: [{sourceLabels: {app: productpage}}]\n    route: [{destination: {host: reviews}}]\n  - route: [{destination: {host: reviews}}]",
      "spec.http[0].match[0].sourceLabels",
    ],
    [
      "a method regex",
      "- match: [{method: {regex: 'GET|HEAD'}}]\n    route: [{destination: {host: reviews}}]\n  - route: [{destination: {host: reviews}}]",
      "spec.http[0].match[0].method",
    ],
    [
      "an unknown subset",
      "- route: [{destination: {host: reviews, subset: v9}}]",
      "spec.http[0].route[0].destination.subset",
    ],
    [
      "retries on a status code",
      "- route: [{destination: {host: reviews}}]\n    retries: {attempts: 2, retryOn: '503,reset'}",
      "spec.http[0].retries.retryOn",
    ],
    [
      "more attempts than wasmesh allows",
      "- route: [{destination: {host: reviews}}]\n    retries: {attempts: 11}",
      "spec.http[0].retries.attempts",
    ],
    [
      "an external host",
      "- route: [{destination: {host: www.example.com}}]",
      "spec.http[0].route[0].destination.host",
    ],
    [
      "a gRPC abort",
      "- route: [{destination: {host: reviews}}]\n    fault: {abort: {grpcStatus: UNAVAILABLE}}",
      "spec.http[0].fault.abort.grpcStatus",
    ],
    [
      "weights adding up to 0",
      "- route: [{destination: {host: reviews}, weight: 0}, {destination: {host: ratings}, weight: 0}]",
      "spec.http[0].route",
    ],
    [
      "a timeout of two days",
      "- route: [{destination: {host: reviews}}]\n    timeout: 48h",
      "spec.http[0].timeout",
    ],
    ["a route that is no mapping", "- just-a-string", "spec.http[0]"],
  ])("a VirtualService with %s is an error naming the field, and produces nothing", (_, http, path) => {
    const result = run(`
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  ${http}
`);
    expect(result.errors.map((e) => e.path)).toEqual([path]);
    expect(result.errors[0]).toMatchObject({ document: 0, kind: "VirtualService", name: "reviews" });
    expect(result.resources).toEqual([]);
  });

  it("a VirtualService bound to gateways only is an error (wasmesh would serve it to sidecars); with mesh, a warning per gateway", () => {
    const vs = (gateways: string) => `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  gateways: ${gateways}
  http: [{route: [{destination: {host: reviews}}]}]
`;
    const gatewayOnly = run(vs("[bookinfo-gateway]"));
    expect(gatewayOnly.errors.map((e) => e.path)).toEqual(["spec.gateways"]);
    expect(gatewayOnly.resources).toEqual([]);
    const both = run(vs("[mesh, bookinfo-gateway]"));
    expect(both.errors).toEqual([]);
    expect(both.warnings.map((w) => w.path)).toEqual(["spec.gateways[1]"]);
    expect(both.resources).toHaveLength(1);
  });

  it("two VirtualServices for one host: the second is an error (Istio applies one per host to sidecars)", () => {
    const vs = (name: string) => `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ${name}}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews}}]}]
`;
    const result = run(`${vs("a")}---\n${vs("b")}`);
    expect(where(result.errors)).toEqual([
      { document: 1, kind: "VirtualService", name: "b", path: "spec.hosts" },
    ]);
    expect(result.resources.map((r) => r.metadata.name)).toEqual(["a"]);
  });

  it("unknown kinds and versions are errors naming apiVersion or kind", () => {
    const result = convert([
      { apiVersion: "networking.istio.io/v1", kind: "Sidecar", metadata: { name: "gw" }, spec: {} },
      { apiVersion: "networking.istio.io/v2", kind: "VirtualService", metadata: { name: "x" }, spec: {} },
      { apiVersion: "getambassador.io/v3alpha1", kind: "Mapping", metadata: { name: "y" } },
      { apiVersion: "constructor/v1", kind: "toString", metadata: { name: "z" } },
      { apiVersion: "security.istio.io/v1", kind: "constructor", metadata: { name: "z" } },
    ]);
    expect(result.errors.map((e) => [e.document, e.path])).toEqual([
      [0, "kind"],
      [1, "kind"],
      [2, "apiVersion"],
      [3, "apiVersion"],
      [4, "kind"],
    ]);
  });
});

describe("security.istio.io", () => {
  it("AuthorizationPolicy ALLOW by principal: each source allowed, every other caller denied", () => {
    const result = run(
      `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews-viewer}
spec:
  selector:
    matchLabels: {app: reviews}
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/default/sa/productpage"]
`,
    );
    expect(result.errors).toEqual([]);
    expect(result.resources).toEqual([
      {
        apiVersion: "wasmesh.io/v1alpha1",
        kind: "AccessRule",
        metadata: { name: "reviews-viewer-productpage" },
        spec: { source: "productpage", destination: "reviews", action: "allow" },
      },
      {
        apiVersion: "wasmesh.io/v1alpha1",
        kind: "AccessRule",
        metadata: { name: "reviews-viewer-any" },
        spec: { source: "*", destination: "reviews", action: "deny" },
      },
    ]);
    expectValid(result);
    expect(result.warnings).toEqual([]);
  });

  it("in a namespace, a principal is the service of its name there, with a warning that its workloads must run as that account", () => {
    const result = run(
      `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-ratings, namespace: bookinfo}
spec:
  selector:
    matchLabels: {app: ratings}
  action: DENY
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/bookinfo/sa/reviews"]
`,
    );
    expect(result.errors).toEqual([]);
    expect(result.resources.map((r) => r.spec)).toEqual([
      { source: "reviews.bookinfo", destination: "ratings.bookinfo", action: "deny" },
    ]);
    // The source's '.' is cleaned to '-', so a hash keeps the name apart from a service "reviews-bookinfo"'s.
    expect(result.resources[0]?.metadata.name).toMatch(
      /^deny-ratings-bookinfo-reviews-bookinfo-[0-9a-f]{8}$/,
    );
    expect(where(result.warnings)).toEqual([
      {
        document: 0,
        kind: "AuthorizationPolicy",
        name: "deny-ratings",
        path: "spec.rules[0].from[0].source.principals[0]",
      },
    ]);
  });

  it("allow-nothing in the root namespace and STRICT PeerAuthentication become one MeshPolicy", () => {
    const result = run(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-nothing, namespace: istio-system}
spec: {}
---
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: STRICT}
`);
    expect(result.errors).toEqual([]);
    expect(result.resources).toEqual([
      {
        apiVersion: "wasmesh.io/v1alpha1",
        kind: "MeshPolicy",
        metadata: { name: "default" },
        spec: { defaultAccess: "deny", mtls: { mode: "strict" } },
      },
    ]);
    expect(result.produced.map((p) => p.resources)).toEqual([
      [{ kind: "MeshPolicy", name: "default" }],
      [{ kind: "MeshPolicy", name: "default" }],
    ]);
  });

  it.each([
    [
      "PeerAuthentication",
      "metadata: {name: default, namespace: bookinfo}\nspec: {mtls: {mode: STRICT}}",
      "metadata.namespace",
    ],
    [
      "PeerAuthentication",
      "metadata: {name: d}\nspec: {selector: {matchLabels: {app: reviews}}, mtls: {mode: STRICT}}",
      "spec.selector",
    ],
    [
      "AuthorizationPolicy",
      "metadata: {name: p}\nspec: {selector: {matchLabels: {app: reviews}}, rules: [{from: [{source: {namespaces: [bookinfo]}}]}]}",
      "spec.rules[0].from[0].source.namespaces",
    ],
    [
      "AuthorizationPolicy",
      "metadata: {name: p}\nspec: {selector: {matchLabels: {app: reviews}}, rules: [{to: [{operation: {methods: [GET]}}]}]}",
      "spec.rules[0].to",
    ],
    [
      "AuthorizationPolicy",
      "metadata: {name: p}\nspec: {selector: {matchLabels: {version: v1}}}",
      "spec.selector.matchLabels",
    ],
    [
      "AuthorizationPolicy",
      "metadata: {name: p, namespace: bookinfo}\nspec: {action: DENY, rules: [{}]}",
      "spec.selector",
    ],
    [
      "AuthorizationPolicy",
      "metadata: {name: p}\nspec: {action: AUDIT, selector: {matchLabels: {app: reviews}}}",
      "spec.action",
    ],
    [
      "AuthorizationPolicy",
      "metadata: {name: p}\nspec: {selector: {matchLabels: {app: reviews}}, rules: [{from: [{source: {principals: ['*/ns/default/sa/*']}}]}]}",
      "spec.rules[0].from[0].source.principals[0]",
    ],
  ])("%s that does not map is an error naming the field (%#)", (kind, body, path) => {
    const result = run(`apiVersion: security.istio.io/v1\nkind: ${kind}\n${body}\n`);
    expect(result.errors.map((e) => e.path)).toEqual([path]);
    expect(result.resources).toEqual([]);
  });

  it("a DENY for every caller next to an ALLOW for some is an error: in wasmesh a source's own rule would win", () => {
    const result = run(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-pp}
spec:
  selector: {matchLabels: {app: reviews}}
  rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/productpage]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-all}
spec:
  selector: {matchLabels: {app: reviews}}
  action: DENY
  rules: [{}]
`);
    expect(where(result.errors)).toEqual([
      { document: 1, kind: "AuthorizationPolicy", name: "deny-all", path: "spec.rules" },
    ]);
  });
});

describe("addressing and names", () => {
  it.each([
    ["ratings", undefined, "ratings"],
    ["ratings", "prod", "ratings.prod"],
    ["ratings:9080", "prod", "ratings.prod"],
    ["ratings.prod", undefined, "ratings.prod"],
    ["ratings.prod", "other", "ratings.prod"],
    ["ratings.prod.svc", undefined, "ratings.prod"],
    ["ratings.prod.svc.cluster.local", undefined, "ratings.prod"],
    ["ratings.prod.svc.cluster.local:9080", "x", "ratings.prod"],
    ["ratings.default.svc.cluster.local", undefined, "ratings"],
    ["ratings.default", undefined, "ratings"],
    ["ratings.default.svc.cluster.local", "default", "ratings.default"],
  ])("host %s (namespace %s) is service %s", (host, namespace, service) => {
    expect(serviceOfHost(host, namespace)).toEqual({ ok: true, service });
  });

  it.each(["*.example.com", "www.example.com", "ratings.prod.svc.other.domain", "", "Ratings"])(
    "host %j is no service of the mesh",
    (host) => {
      expect(serviceOfHost(host, undefined).ok).toBe(false);
    },
  );

  it("principals: universal services are ns/default, namespaced ones <sa>.<ns>", () => {
    expect(serviceOfPrincipal("cluster.local/ns/default/sa/productpage", false)).toEqual({
      ok: true,
      service: "productpage",
    });
    expect(serviceOfPrincipal("cluster.local/ns/prod/sa/productpage", false)).toEqual({
      ok: true,
      service: "productpage.prod",
    });
    expect(serviceOfPrincipal("cluster.local/ns/default/sa/productpage", true)).toEqual({
      ok: true,
      service: "productpage.default",
    });
    expect(serviceOfPrincipal("*", true)).toEqual({ ok: true, service: "*" });
    expect(serviceOfPrincipal("cluster.local/ns/prod/sa/*", true).ok).toBe(false);
  });

  it("native names are DNS labels, bounded, hashed when cut or cleaned, and the same every time", () => {
    expect(nativeName("reviews", undefined)).toBe("reviews");
    expect(nativeName("reviews", "bookinfo")).toBe("reviews-bookinfo");
    const long = nativeName("a".repeat(60), "bookinfo");
    expect(long).toMatch(/^a{54}-[0-9a-f]{8}$/);
    expect(nativeName("a".repeat(60), "bookinfo")).toBe(long);
    expect(nativeName("a".repeat(60), "bookinfo2")).not.toBe(long);
    // Cleaning could make two originals meet: the hash keeps them apart.
    expect(nativeName("reviews", "v1.2")).not.toBe(nativeName("reviews", "v1-2"));
    expect(nativeName("reviews", "v1.2")).toMatch(/^reviews-v1-2-[0-9a-f]{8}$/);
  });

  it("converting the same input twice gives identical output", () => {
    const text = readFileSync(join(DATA, "bookinfo-routing.yaml"), "utf8");
    const a = run(text, "bookinfo");
    const b = run(text, "bookinfo");
    expect(JSON.stringify(b)).toBe(JSON.stringify(a));
    expect(a.resources.length).toBeGreaterThan(0);
  });

  it("a VirtualService of several hosts is one Route per host, named after each", () => {
    const result = run(`
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shared}
spec:
  hosts: [reviews, ratings]
  http: [{route: [{destination: {host: reviews}}]}]
`);
    expect(result.resources.map((r) => [r.metadata.name, r.kind === "Route" && r.spec.service])).toEqual([
      ["shared-reviews", "reviews"],
      ["shared-ratings", "ratings"],
    ]);
  });
});

describe("docs/imports.md", () => {
  it("lists every field the converter handles or warns about, with the same support", () => {
    const doc = readFileSync(join(REPO, "docs", "imports.md"), "utf8");
    // Rows of the matrix: | Kind | `field` | support | why |
    const rows = new Map<string, string>();
    for (const m of doc.matchAll(/^\|\s*(\w+)\s*\|\s*`([^`]+)`\s*\|\s*(\w+)\s*\|/gm)) {
      rows.set(`${m[1]} ${m[2]}`, m[3] as string);
    }
    const expected = new Map(
      Object.entries(FIELDS).flatMap(([kind, fields]) =>
        Object.entries(fields).map(([field, s]) => [`${kind} ${field}`, s.support] as const),
      ),
    );
    expect(Object.fromEntries(rows)).toEqual(Object.fromEntries(expected));
  });
});

describe("wasmesh convert", () => {
  const cli = (args: string[]) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, [BIN, ...args], { timeout: 30_000 }, (error, stdout, stderr) => {
        resolve({ code: error ? (typeof error.code === "number" ? error.code : -1) : 0, stdout, stderr });
      });
    });
  const work = tempDir("convert");

  it("prints the native resources as a YAML stream that apply's parser reads back; warnings go to stderr", async () => {
    const file = join(work, "bookinfo.yaml");
    writeFileSync(
      file,
      `${readFileSync(join(DATA, "bookinfo-routing.yaml"), "utf8")}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: details}
spec:
  hosts: [details]
  http:
  - route: [{destination: {host: details}}]
    mirror: {host: details}
`,
    );
    const result = await cli(["convert", "-f", file, "--namespace", "bookinfo"]);
    expect(result.code).toBe(0);
    const parsed = parseManifests(result.stdout);
    const expected = convert(
      parseAllDocuments(readFileSync(file, "utf8")).map((d) => d.toJS()),
      { namespace: "bookinfo" },
    ).resources;
    expect(parsed).toEqual({ ok: true, resources: expected });
    expect(expected.map((r: Resource) => r.metadata.name)).toContain("details-bookinfo");
    expect(result.stderr).toContain(
      `warning: ${file}: document 4: VirtualService/details: spec.http[0].mirror: not supported, ignored`,
    );
    expect(result.stderr).toContain(
      "document 1: DestinationRule/ratings: spec.trafficPolicy.outlierDetection:",
    );

    const strict = await cli(["convert", "-f", file, "--strict"]);
    expect(strict.code).toBe(1);
    expect(strict.stdout).toBe("");
    expect(strict.stderr).toContain("with --strict: nothing converted");
  });

  it("reads several files as one input (a VirtualService may name another file's subsets)", async () => {
    const dr = join(work, "dr.yaml");
    const vs = join(work, "vs.yaml");
    writeFileSync(
      dr,
      "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews}\nspec:\n  host: reviews\n  subsets: [{name: v2, labels: {version: v2}}]\n",
    );
    writeFileSync(
      vs,
      "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\nspec:\n  hosts: [reviews]\n  http: [{route: [{destination: {host: reviews, subset: v2}}]}]\n",
    );
    const result = await cli(["convert", "-f", dr, "-f", vs]);
    expect(result).toMatchObject({ code: 0, stderr: "" });
    expect(parse(result.stdout)).toMatchObject({
      kind: "Route",
      spec: { rules: [{ destinations: [{ subset: { version: "v2" } }] }] },
    });
  });

  it("exits 1 on an error, printing nothing on stdout and the error with its file, document and path", async () => {
    const file = join(work, "bad.yaml");
    writeFileSync(
      file,
      "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\nspec:\n  hosts: [reviews]\n  http: [{redirect: {uri: /x}}]\n",
    );
    const result = await cli(["convert", "-f", file]);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe("");
    expect(result.stderr).toContain(
      `error: ${file}: document 0: VirtualService/reviews: spec.http[0].redirect: not supported`,
    );
  });

  it("exits 2 on usage errors", async () => {
    expect((await cli(["convert"])).code).toBe(2);
    expect((await cli(["convert", "-f", "x.yaml", "--namespace", "Not_A_Label"])).code).toBe(2);
    expect((await cli(["convert", "-f", "x.yaml", "--frobnicate"])).code).toBe(2);
  });
});

describe("DestinationRule subsets' own traffic policies", () => {
  it("a subset's outlierDetection replaces the top one for it; a subset's connectionPool keeps the top outlierDetection, reported once", () => {
    const result = run(`
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 5, interval: 30s}
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      outlierDetection: {consecutive5xxErrors: 1, baseEjectionTime: 1m}
  - name: v3
    labels: {version: v3}
    trafficPolicy:
      connectionPool:
        http: {http2MaxRequests: 50}
`);
    expect(result.errors).toEqual([]);
    const top = { consecutiveErrors: 5, intervalMs: 30_000, baseEjectionMs: 30_000, maxEjectionPercent: 10 };
    expect(result.resources.map((r) => [r.metadata.name, r.spec])).toEqual([
      ["reviews", { service: "reviews", ...top }],
      ["reviews-v1", { service: "reviews", subset: { version: "v1" }, ...top }],
      [
        "reviews-v2",
        {
          service: "reviews",
          subset: { version: "v2" },
          consecutiveErrors: 1,
          intervalMs: 10_000,
          baseEjectionMs: 60_000,
          maxEjectionPercent: 10,
        },
      ],
      ["reviews-v3", { service: "reviews", subset: { version: "v3" }, ...top, maxConcurrent: 50 }],
    ]);
    expect(result.warnings.map((w) => w.path)).toEqual([
      "spec.trafficPolicy.outlierDetection",
      "spec.subsets[1].trafficPolicy.outlierDetection",
    ]);
    expectValid(result);
  });
});

describe("DestinationRule tls", () => {
  it("without a mode is Istio's DISABLE: a warning at tls.mode, the rule still converted", () => {
    const result = run(`
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    tls: {}
    outlierDetection: {consecutive5xxErrors: 2}
`);
    expect(result.errors).toEqual([]);
    expect(result.warnings.map((w) => w.path)).toEqual([
      "spec.trafficPolicy.tls.mode",
      "spec.trafficPolicy.outlierDetection",
    ]);
    expect(result.warnings[0]?.message).toMatch(/^DISABLE is not carried/);
    expect(result.resources.map((r) => r.metadata.name)).toEqual(["reviews"]);
  });
});
