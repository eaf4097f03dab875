// The resource model: valid examples of every kind pass; each invalid resource is refused naming the
// exact field; references across a set are checked; manifests report the document and field.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  formatManifestError,
  KINDS,
  type Kind,
  MAX_DEPTH,
  parseManifests,
  Resource,
  RouteRule,
  resourceSchemas,
  validateReferences,
  validateResource,
} from "../../control-plane/resources/index.ts";
import { Breaker, Route as FilterRoute, HeaderRule, nearestField } from "../../schema/filter-config.ts";

const api = "wasmesh.io/v1alpha1";
const examplePath = new URL("../../deploy/examples/mesh.yaml", import.meta.url);

/**
 * One valid resource of every kind (and a second workload, so that every subset selects one);
 * each invalid case below changes one thing in a fresh copy.
 */
function valid(): Record<Kind | "WorkloadV2", Record<string, unknown>> {
  return {
    Service: {
      apiVersion: api,
      kind: "Service",
      metadata: { name: "reviews", labels: { "app.kubernetes.io/part-of": "bookinfo" } },
      spec: { ports: [{ name: "http", port: 9080, protocol: "http" }], description: "Book reviews" },
    },
    Workload: {
      apiVersion: api,
      kind: "Workload",
      metadata: { name: "reviews-v1-a" },
      spec: { service: "reviews", address: "10.0.1.11", port: 9080, labels: { version: "v1" }, zone: "a" },
    },
    WorkloadV2: {
      apiVersion: api,
      kind: "Workload",
      metadata: { name: "reviews-v2-a" },
      spec: {
        service: "reviews",
        address: "fd00::12",
        port: 9080,
        labels: { version: "v2", tier: "canary" },
      },
    },
    Route: {
      apiVersion: api,
      kind: "Route",
      metadata: { name: "reviews" },
      spec: {
        service: "reviews",
        rules: [
          {
            name: "testers",
            match: { headers: [{ name: "x-user", exact: "tester" }] },
            destinations: [{ service: "reviews", subset: { version: "v2" } }],
            fault: { delay: { ms: 10, percent: 50 } },
          },
          {
            name: "canary",
            match: { path: { prefix: "/" }, methods: ["GET"], query: [{ name: "beta", absent: true }] },
            destinations: [
              { service: "reviews", subset: { version: "v1" }, weight: 90 },
              { service: "reviews", subset: { version: "v2" }, weight: 10 },
            ],
            sticky: { cookie: "session" },
            requestHeaders: { set: [{ name: "x-canary", value: "1" }], remove: ["x-debug"] },
            responseHeaders: { add: [{ name: "x-served-by", value: "mesh" }] },
            timeoutMs: 2000,
            retries: { attempts: 2, on: "5xx", perTryTimeoutMs: 500 },
          },
        ],
      },
    },
    CircuitBreaker: {
      apiVersion: api,
      kind: "CircuitBreaker",
      metadata: { name: "reviews-v2" },
      spec: {
        service: "reviews",
        subset: { version: "v2" },
        consecutiveErrors: 5,
        intervalMs: 10_000,
        baseEjectionMs: 30_000,
        maxEjectionMs: 300_000,
        maxEjectionPercent: 50,
        maxConcurrent: 100,
        fallback: { service: "reviews", subset: { version: "v1" } },
      },
    },
    AccessRule: {
      apiVersion: api,
      kind: "AccessRule",
      metadata: { name: "any-to-reviews" },
      spec: { source: "*", destination: "reviews", action: "allow" },
    },
    MeshPolicy: {
      apiVersion: api,
      kind: "MeshPolicy",
      metadata: { name: "default" },
      spec: { defaultAccess: "deny" },
    },
    WasmModule: {
      apiVersion: api,
      kind: "WasmModule",
      metadata: { name: "request-id" },
      spec: { sha256: "ab".repeat(32), size: 12_345, abiVersion: "0.2.1", description: "adds x-request-id" },
    },
    WasmPlugin: {
      apiVersion: api,
      kind: "WasmPlugin",
      metadata: { name: "mesh-tagging" },
      spec: {
        module: "mesh",
        services: ["*"],
        rootId: "mesh",
        priority: 10,
        configuration: {
          headerRules: [{ name: "tag", responseHeaders: { add: [{ name: "x-a", value: "1" }] } }],
        },
      },
    },
    Tracing: {
      apiVersion: api,
      kind: "Tracing",
      metadata: { name: "mesh" },
      spec: {
        backend: { protocol: "otlp-grpc", url: "http://127.0.0.1:4317" },
        sampling: { randomPercent: 10 },
        tags: [{ name: "user", header: "end-user" }],
      },
    },
    AccessLog: {
      apiVersion: api,
      kind: "AccessLog",
      metadata: { name: "mesh" },
      spec: { backends: [{ stdout: {} }] },
    },
    ImportedResource: {
      apiVersion: api,
      kind: "ImportedResource",
      metadata: { name: "virtualservice-reviews" },
      spec: {
        source: { apiVersion: "networking.istio.io/v1", kind: "VirtualService", name: "reviews" },
        document: {
          apiVersion: "networking.istio.io/v1",
          kind: "VirtualService",
          metadata: { name: "reviews" },
        },
        produced: [{ kind: "Route", name: "reviews" }],
      },
    },
  };
}

type Doc = Record<string, unknown>;
// biome-ignore lint/suspicious/noExplicitAny: the cases reach into fixtures by field names to break one thing
type Any = any;
const spec = (r: Doc): Any => r.spec;

/** A valid WasmPlugin of a module other than the built-in, whose configuration is not checked. */
function otherPlugin(configuration: unknown): Doc {
  const plugin = valid().WasmPlugin;
  spec(plugin).module = "request-id";
  spec(plugin).configuration = configuration;
  return plugin;
}

interface InvalidCase {
  name: string;
  kind: Kind;
  change: (r: Doc) => unknown;
  path: string;
  message?: RegExp;
}

const invalid: InvalidCase[] = [
  { name: "not an object", kind: "Service", change: () => ["Service"], path: "(root)" },
  { name: "unknown kind", kind: "Service", change: (r) => ({ ...r, kind: "Gateway" }), path: "kind" },
  { name: "missing kind", kind: "Service", change: (r) => ({ ...r, kind: undefined }), path: "kind" },
  {
    name: "other apiVersion",
    kind: "Service",
    change: (r) => ({ ...r, apiVersion: "v1" }),
    path: "apiVersion",
  },
  {
    name: "unknown top-level field",
    kind: "Service",
    change: (r) => ({ ...r, status: {} }),
    path: "status",
    message: /Unexpected property/,
  },
  {
    name: "unknown spec field",
    kind: "Service",
    change: (r) => {
      spec(r).replicas = 3;
    },
    path: "spec.replicas",
  },
  {
    name: "unknown metadata field",
    kind: "Workload",
    change: (r) => {
      (r.metadata as Any).namespace = "default";
    },
    path: "metadata.namespace",
  },
  {
    name: "unknown field deep in a matcher",
    kind: "Route",
    change: (r) => {
      spec(r).rules[1].match.path.glob = "/*";
    },
    path: "spec.rules[1].match.path.glob",
  },
  {
    name: "name with upper case and underscore",
    kind: "Service",
    change: (r) => {
      (r.metadata as Any).name = "Reviews_1";
    },
    path: "metadata.name",
  },
  {
    name: "name longer than 63",
    kind: "Service",
    change: (r) => {
      (r.metadata as Any).name = "a".repeat(64);
    },
    path: "metadata.name",
  },
  {
    name: "label key with a space",
    kind: "Service",
    change: (r) => {
      (r.metadata as Any).labels = { "bad key": "x" };
    },
    path: "metadata.labels.bad key",
    message: /key must match/,
  },
  {
    name: "resourceVersion that is not a string",
    kind: "Service",
    change: (r) => {
      (r.metadata as Any).resourceVersion = 7;
    },
    path: "metadata.resourceVersion",
  },
  {
    name: "negative port",
    kind: "Service",
    change: (r) => {
      spec(r).ports[0].port = -1;
    },
    path: "spec.ports[0].port",
  },
  {
    name: "port above 65535",
    kind: "Workload",
    change: (r) => {
      spec(r).port = 65_536;
    },
    path: "spec.port",
  },
  {
    name: "app port 0",
    kind: "Workload",
    change: (r) => {
      spec(r).appPort = 0;
    },
    path: "spec.appPort",
    message: /greater or equal to 1/,
  },
  {
    name: "app port equal to the sidecar's inbound port",
    kind: "Workload",
    change: (r) => {
      spec(r).appPort = 9080;
    },
    path: "spec.appPort",
    message: /must differ from spec.port \(9080\), the sidecar's inbound port/,
  },
  {
    name: "lease shorter than 5 seconds",
    kind: "Workload",
    change: (r) => {
      spec(r).leaseSeconds = 4;
    },
    path: "spec.leaseSeconds",
    message: /greater or equal to 5/,
  },
  {
    name: "lease longer than an hour",
    kind: "Workload",
    change: (r) => {
      spec(r).leaseSeconds = 3601;
    },
    path: "spec.leaseSeconds",
    message: /less or equal to 3600/,
  },
  {
    name: "lease in fractions of a second",
    kind: "Workload",
    change: (r) => {
      spec(r).leaseSeconds = 30.5;
    },
    path: "spec.leaseSeconds",
    message: /Expected integer/,
  },
  {
    name: "unknown protocol",
    kind: "Service",
    change: (r) => {
      spec(r).ports[0].protocol = "udp";
    },
    path: "spec.ports[0].protocol",
    message: /one of: "http", "grpc", "tcp"/,
  },
  {
    name: "no ports",
    kind: "Service",
    change: (r) => {
      spec(r).ports = [];
    },
    path: "spec.ports",
  },
  {
    name: "duplicate port number",
    kind: "Service",
    change: (r) => {
      spec(r).ports.push({ name: "admin", port: 9080, protocol: "tcp" });
    },
    path: "spec.ports[1].port",
  },
  {
    name: "IPv4 address out of range",
    kind: "Workload",
    change: (r) => {
      spec(r).address = "10.0.0.256";
    },
    path: "spec.address",
    message: /IPv4/,
  },
  {
    name: "malformed IPv6 address",
    kind: "Workload",
    change: (r) => {
      spec(r).address = "fe80::1::2";
    },
    path: "spec.address",
    message: /IPv6/,
  },
  {
    name: "host name starting with '-'",
    kind: "Workload",
    change: (r) => {
      spec(r).address = "-reviews.local";
    },
    path: "spec.address",
    message: /host name/,
  },
  {
    name: "weights that do not add up to 100",
    kind: "Route",
    change: (r) => {
      spec(r).rules[1].destinations[1].weight = 20;
    },
    path: "spec.rules[1].destinations",
    message: /add up to 100 \(they add up to 110\)/,
  },
  {
    name: "a split without a weight",
    kind: "Route",
    change: (r) => {
      delete spec(r).rules[1].destinations[1].weight;
    },
    path: "spec.rules[1].destinations[1].weight",
  },
  {
    name: "a single destination with weight 50",
    kind: "Route",
    change: (r) => {
      spec(r).rules[0].destinations[0].weight = 50;
    },
    path: "spec.rules[0].destinations",
  },
  {
    name: "weight above 100",
    kind: "Route",
    change: (r) => {
      spec(r).rules[1].destinations[0].weight = 101;
    },
    path: "spec.rules[1].destinations[0].weight",
  },
  {
    name: "the same destination twice",
    kind: "Route",
    change: (r) => {
      spec(r).rules[1].destinations[1].subset = { version: "v1" };
    },
    path: "spec.rules[1].destinations[1]",
  },
  {
    name: "two conditions in a path matcher",
    kind: "Route",
    change: (r) => {
      spec(r).rules[1].match.path = { prefix: "/", exact: "/a" };
    },
    path: "spec.rules[1].match.path",
    message: /exactly one of .* \(has exact and prefix\)/,
  },
  {
    name: "exact and present in a header matcher",
    kind: "Route",
    change: (r) => {
      spec(r).rules[0].match.headers[0].present = true;
    },
    path: "spec.rules[0].match.headers[0]",
  },
  {
    name: "no condition in a query matcher",
    kind: "Route",
    change: (r) => {
      spec(r).rules[1].match.query[0] = { name: "beta" };
    },
    path: "spec.rules[1].match.query[0]",
  },
  {
    name: "regex that is not a string",
    kind: "Route",
    change: (r) => {
      spec(r).rules[1].match.path = { regex: 5 };
    },
    path: "spec.rules[1].match.path.regex",
    message: /string/,
  },
  {
    name: "duplicate rule name",
    kind: "Route",
    change: (r) => {
      spec(r).rules[1].name = "testers";
    },
    path: "spec.rules[1].name",
  },
  {
    name: "rule name with a space",
    kind: "Route",
    change: (r) => {
      spec(r).rules[0].name = "two words";
    },
    path: "spec.rules[0].name",
  },
  {
    name: "sticky by header and cookie",
    kind: "Route",
    change: (r) => {
      spec(r).rules[1].sticky.header = "x-user";
    },
    path: "spec.rules[1].sticky",
  },
  {
    name: "fault with neither abort nor delay",
    kind: "Route",
    change: (r) => {
      spec(r).rules[0].fault = {};
    },
    path: "spec.rules[0].fault",
  },
  {
    name: "invalid header name in a header change",
    kind: "Route",
    change: (r) => {
      spec(r).rules[1].requestHeaders.set[0].name = "x canary";
    },
    path: "spec.rules[1].requestHeaders.set[0].name",
  },
  {
    name: "retries over the limit",
    kind: "Route",
    change: (r) => {
      spec(r).rules[1].retries.attempts = 11;
    },
    path: "spec.rules[1].retries.attempts",
  },
  {
    name: "route without rules",
    kind: "Route",
    change: (r) => {
      spec(r).rules = [];
    },
    path: "spec.rules",
  },
  {
    name: "breaker without consecutiveErrors",
    kind: "CircuitBreaker",
    change: (r) => {
      delete spec(r).consecutiveErrors;
    },
    path: "spec.consecutiveErrors",
    message: /^is required$/,
  },
  {
    name: "maxEjectionMs below baseEjectionMs",
    kind: "CircuitBreaker",
    change: (r) => {
      spec(r).maxEjectionMs = 1000;
    },
    path: "spec.maxEjectionMs",
  },
  {
    name: "maxEjectionPercent above 100",
    kind: "CircuitBreaker",
    change: (r) => {
      spec(r).maxEjectionPercent = 101;
    },
    path: "spec.maxEjectionPercent",
  },
  {
    name: "fallback to itself",
    kind: "CircuitBreaker",
    change: (r) => {
      spec(r).fallback.subset = { version: "v2" };
    },
    path: "spec.fallback",
  },
  {
    name: "empty subset",
    kind: "CircuitBreaker",
    change: (r) => {
      spec(r).subset = {};
    },
    path: "spec.subset",
  },
  {
    name: "access action other than allow or deny",
    kind: "AccessRule",
    change: (r) => {
      spec(r).action = "maybe";
    },
    path: "spec.action",
  },
  {
    name: "access source that is neither a name nor *",
    kind: "AccessRule",
    change: (r) => {
      spec(r).source = "**";
    },
    path: "spec.source",
  },
  {
    name: "MeshPolicy not named default",
    kind: "MeshPolicy",
    change: (r) => {
      (r.metadata as Any).name = "global";
    },
    path: "metadata.name",
  },
  {
    name: "sha256 in upper case",
    kind: "WasmModule",
    change: (r) => {
      spec(r).sha256 = "AB".repeat(32);
    },
    path: "spec.sha256",
  },
  {
    name: "unsupported ABI version",
    kind: "WasmModule",
    change: (r) => {
      spec(r).abiVersion = "0.1.0";
    },
    path: "spec.abiVersion",
  },
  {
    name: "mesh configuration the filter schema rejects",
    kind: "WasmPlugin",
    change: (r) => {
      spec(r).configuration = {
        routes: [{ name: "r", destinations: [{ cluster: "a", weight: 101 }] }],
      };
    },
    path: "spec.configuration.routes[0].destinations[0].weight",
  },
  {
    name: "unknown field in the mesh configuration",
    kind: "WasmPlugin",
    change: (r) => {
      spec(r).configuration = { headerRules: [], bogus: true };
    },
    path: "spec.configuration.bogus",
  },
  {
    name: "configuration that is not an object",
    kind: "WasmPlugin",
    change: (r) => {
      spec(r).configuration = ["a"];
    },
    path: "spec.configuration",
  },
  {
    name: "* together with a service",
    kind: "WasmPlugin",
    change: (r) => {
      spec(r).services = ["*", "reviews"];
    },
    path: "spec.services",
  },
];

describe("validateResource", () => {
  const examples = valid();

  for (const kind of KINDS) {
    it(`accepts a valid ${kind}`, () => {
      const result = validateResource(examples[kind]);
      expect(result).toEqual({ ok: true, resource: examples[kind] });
    });
  }

  it("accepts the store's metadata, so a resource read back can be applied again", () => {
    const metadata = { name: "reviews", resourceVersion: "42", createdAt: "2025-01-01T00:00:00.000Z" };
    const result = validateResource({ ...examples.Service, metadata: { ...metadata, updatedAt: "x" } });
    expect(result.ok && result.resource.metadata.resourceVersion).toBe("42");
  });

  it("takes <name>.<namespace> for a Service and every reference to one, and a subdomain for a Workload only", () => {
    // What Kubernetes discovery makes (control-plane/kubernetes/discovery.ts).
    const dotted = "reviews.bookinfo";
    const service = { ...valid().Service, metadata: { name: dotted } };
    expect(validateResource(service)).toEqual({ ok: true, resource: service });
    const workload = { ...valid().Workload, metadata: { name: "reviews-v1-5d8f7b9c4-x2x9z.bookinfo" } };
    spec(workload).service = dotted;
    expect(validateResource(workload)).toEqual({ ok: true, resource: workload });
    const route = valid().Route;
    spec(route).service = dotted;
    spec(route).rules[0].destinations[0].service = dotted;
    expect(validateResource(route).ok).toBe(true);
    const breaker = valid().CircuitBreaker;
    spec(breaker).service = dotted;
    expect(validateResource(breaker).ok).toBe(true);
    const access = valid().AccessRule;
    Object.assign(spec(access), { source: "productpage.bookinfo", destination: dotted });
    expect(validateResource(access).ok).toBe(true);
    const plugin = valid().WasmPlugin;
    spec(plugin).services = [dotted];
    expect(validateResource(plugin).ok).toBe(true);

    // One dot at most, labels of 63 at most, and other kinds' names stay DNS labels.
    const refused: [Record<string, unknown>, string][] = [
      [{ ...valid().Service, metadata: { name: "reviews.bookinfo.svc" } }, "metadata.name"],
      [{ ...valid().Service, metadata: { name: `${"a".repeat(64)}.bookinfo` } }, "metadata.name"],
      [{ ...valid().Service, metadata: { name: "reviews..bookinfo" } }, "metadata.name"],
      [{ ...valid().Route, metadata: { name: "reviews.bookinfo" } }, "metadata.name"],
      [{ ...valid().AccessRule, metadata: { name: "a.b" } }, "metadata.name"],
      [{ ...valid().Workload, metadata: { name: Array(4).fill("a".repeat(63)).join(".") } }, "metadata.name"],
    ];
    for (const [doc, path] of refused) {
      const result = validateResource(doc);
      expect(result.ok, JSON.stringify(doc.metadata)).toBe(false);
      if (!result.ok) expect(result.errors.map((e) => e.path)).toContain(path);
    }
  });

  it("refuses a service name whose routing filter names would pass the filter's 128 characters", () => {
    // default-deny:<service> is the longest: 13 + 115 = 128.
    const fits = { ...valid().Service, metadata: { name: `${"a".repeat(63)}.${"b".repeat(51)}` } };
    expect(validateResource(fits).ok).toBe(true);
    const long = { ...valid().Service, metadata: { name: `${"a".repeat(63)}.${"b".repeat(52)}` } };
    expect(validateResource(long)).toEqual({
      ok: false,
      errors: [
        {
          path: "metadata.name",
          message: expect.stringMatching(
            /^too long: the routing filter's 'default-deny:a+\.b+' must be at most 128 characters \(a service name of at most 115\)$/,
          ),
        },
      ],
    });
  });

  it("accepts an IPv6 address and a host name for a workload", () => {
    for (const address of ["fd00::1", "reviews-0.bookinfo.svc.cluster.local"]) {
      const w = valid().Workload;
      spec(w).address = address;
      expect(validateResource(w).ok, address).toBe(true);
    }
  });

  it("accepts a workload's app port and lease, as the data-plane agent registers it", () => {
    const w = valid().Workload;
    Object.assign(spec(w), { port: 15006, appPort: 9080, leaseSeconds: 30 });
    expect(validateResource(w)).toEqual({ ok: true, resource: w });
    for (const leaseSeconds of [5, 3600]) {
      spec(w).leaseSeconds = leaseSeconds;
      expect(validateResource(w).ok, String(leaseSeconds)).toBe(true);
    }
  });

  it("takes an mTLS mode on MeshPolicy and Service, and a workload's mtls flag, naming a bad field", () => {
    const policy = { ...valid().MeshPolicy, spec: { defaultAccess: "allow", mtls: { mode: "strict" } } };
    expect(validateResource(policy)).toEqual({ ok: true, resource: policy });
    const service = valid().Service;
    spec(service).mtls = { mode: "disabled" };
    expect(validateResource(service)).toEqual({ ok: true, resource: service });
    const workload = valid().Workload;
    spec(workload).mtls = true;
    expect(validateResource(workload)).toEqual({ ok: true, resource: workload });

    expect(
      validateResource({ ...policy, spec: { defaultAccess: "allow", mtls: { mode: "strikt" } } }),
    ).toEqual({
      ok: false,
      errors: [{ path: "spec.mtls.mode", message: 'Expected one of: "disabled", "permissive", "strict"' }],
    });
    spec(service).mtls = { mode: "strict", peers: "all" };
    expect(validateResource(service)).toEqual({
      ok: false,
      errors: [{ path: "spec.mtls.peers", message: "Unexpected property" }],
    });
    spec(workload).mtls = "yes";
    expect(validateResource(workload)).toEqual({
      ok: false,
      errors: [{ path: "spec.mtls", message: "Expected boolean" }],
    });
  });

  it("does not check another module's configuration against the filter schema", () => {
    expect(validateResource(otherPlugin({ anything: ["goes"] })).ok).toBe(true);
  });

  it("refuses a NUL character in any string or key, naming each field", () => {
    const service = valid().Service;
    spec(service).description = "Book\u0000reviews";
    const plugin = otherPlugin({ headers: ["x-a", "x-\u0000b"], "k\u0000": 1 });
    expect(validateResource(service)).toEqual({
      ok: false,
      errors: [{ path: "spec.description", message: "contains a NUL character (\\u0000)" }],
    });
    expect(validateResource(plugin)).toEqual({
      ok: false,
      errors: [
        { path: "spec.configuration.headers[1]", message: "contains a NUL character (\\u0000)" },
        { path: "spec.configuration", message: 'key "k\\u0000" contains a NUL character (\\u0000)' },
      ],
    });
  });

  it(`refuses objects and arrays nested more than MAX_DEPTH (${MAX_DEPTH}) levels, and a value inside itself`, () => {
    // The resource is level 1, spec 2, configuration 3, configuration.x 4, ...
    const plugin = (levels: number) => otherPlugin({ x: nested(levels - 3) });
    expect(validateResource(plugin(MAX_DEPTH)).ok).toBe(true);
    expect(validateResource(plugin(MAX_DEPTH + 1))).toEqual({
      ok: false,
      errors: [
        {
          path: `spec.configuration.x${"[0]".repeat(MAX_DEPTH - 3)}`,
          message: `nested more than ${MAX_DEPTH} levels deep (objects and arrays)`,
        },
      ],
    });
    // Far deeper than the stack allows JSON.stringify to go: still this one error.
    const deep = validateResource(plugin(200_000));
    expect(deep.ok === false && deep.errors.map((e) => e.message)).toEqual([
      `nested more than ${MAX_DEPTH} levels deep (objects and arrays)`,
    ]);
    // What a YAML alias can build (`&a [*a]`), and a tree that shares one value many times over.
    const loop: unknown[] = [];
    loop.push(loop, loop);
    const refused = validateResource(otherPlugin({ loop }));
    expect(refused.ok === false && refused.errors.map((e) => e.message)).toEqual([
      `nested more than ${MAX_DEPTH} levels deep (objects and arrays)`,
    ]);
    let shared: unknown = ["leaf"];
    for (let i = 0; i < 50; i++) shared = [shared, shared];
    expect(validateResource(otherPlugin({ shared })).ok).toBe(true);
  });

  it("checks a stored document without the plain-data rules added since, so an upgrade drops nothing", () => {
    const service = valid().Service;
    spec(service).description = "Book\u0000reviews";
    const plugin = otherPlugin({ x: nested(MAX_DEPTH) });
    for (const doc of [service, plugin]) {
      expect(validateResource(doc).ok).toBe(false);
      expect(validateResource(doc, { stored: true })).toEqual({ ok: true, resource: doc });
    }
    // The rest is checked as always.
    spec(service).ports = [];
    expect(validateResource(service, { stored: true }).ok).toBe(false);
  });

  for (const c of invalid) {
    it(`refuses ${c.name} at ${c.path}`, () => {
      const base = valid()[c.kind];
      const value = c.change(base) ?? base;
      const result = validateResource(value);
      expect(result.ok).toBe(false);
      if (result.ok) return;
      expect(result.errors.map((e) => e.path)).toEqual([c.path]);
      if (c.message !== undefined) expect(result.errors[0]?.message).toMatch(c.message);
    });
  }
});

describe("unknown fields", () => {
  const errors = (r: Doc) => {
    const result = validateResource(r);
    return result.ok ? [] : result.errors;
  };

  it("name the field and suggest the nearest known one: timeout, did you mean timeoutMs?", () => {
    const route = valid().Route;
    spec(route).rules[1].timeout = 2000;
    expect(errors(route)).toEqual([
      { path: "spec.rules[1].timeout", message: "Unexpected property (did you mean timeoutMs?)" },
    ]);
  });

  it("suggest across typos, case, plurals and truncations, at any depth", () => {
    // The kind, the object that gets the unknown field, its path there, and the suggestion.
    const cases: [Kind, (r: Doc) => Any, string, string][] = [
      ["Route", (r) => spec(r).rules[1].destinations[0], "spec.rules[1].destinations[0].wieght", "weight"],
      ["Route", (r) => spec(r).rules[0].destinations[0], "spec.rules[0].destinations[0].subsets", "subset"],
      ["Route", (r) => spec(r).rules[1].retries, "spec.rules[1].retries.perTryTimeout", "perTryTimeoutMs"],
      ["Route", (r) => spec(r).rules[1].match.path, "spec.rules[1].match.path.ignorecase", "ignoreCase"],
      ["CircuitBreaker", spec, "spec.interval", "intervalMs"],
      ["WasmPlugin", spec, "spec.Priority", "priority"],
      ["Workload", (r) => r.metadata, "metadata.lables", "labels"],
      ["Service", (r) => r, "specs", "spec"],
    ];
    for (const [kind, parent, path, suggestion] of cases) {
      const r = valid()[kind];
      parent(r)[path.slice(path.lastIndexOf(".") + 1)] = 1;
      expect(errors(r), path).toEqual([
        { path, message: `Unexpected property (did you mean ${suggestion}?)` },
      ]);
    }
  });

  it("suggest nothing when no known field is close", () => {
    const service = valid().Service;
    spec(service).replicas = 3;
    (service.metadata as Any).namespace = "default";
    expect(errors(service)).toEqual([
      { path: "metadata.namespace", message: "Unexpected property" },
      { path: "spec.replicas", message: "Unexpected property" },
    ]);
  });

  it("are named by their own path when their value is an object", () => {
    const route = valid().Route;
    spec(route).rules[1].retry = { attempts: 2 };
    expect(errors(route)).toEqual([{ path: "spec.rules[1].retry", message: "Unexpected property" }]);
  });

  it("in the built-in module's configuration too", () => {
    const plugin = valid().WasmPlugin;
    spec(plugin).configuration = { rotues: [] };
    expect(errors(plugin)).toEqual([
      { path: "spec.configuration.rotues", message: "Unexpected property (did you mean routes?)" },
    ]);
  });

  it("reach manifests with the document and line", () => {
    const route = valid().Route;
    spec(route).rules[1].timeout = 2000;
    const result = parseManifests(JSON.stringify(route));
    expect(result.ok === false && result.errors.map(formatManifestError)).toEqual([
      expect.stringMatching(/spec\.rules\[1\]\.timeout: Unexpected property \(did you mean timeoutMs\?\)$/),
    ]);
  });
});

describe("nearestField", () => {
  it("takes the nearest within a third of the length, a field the name begins, or the same name in another case", () => {
    const known = ["name", "match", "destinations", "timeoutMs", "retries"];
    expect(nearestField("timeout", known)).toBe("timeoutMs");
    expect(nearestField("destination", known)).toBe("destinations");
    expect(nearestField("NAME", known)).toBe("name");
    expect(nearestField("mtach", known)).toBe("match");
    expect(nearestField("dest", known)).toBe("destinations");
    expect(nearestField("de", known)).toBeUndefined();
    expect(nearestField("weight", known)).toBeUndefined();
    expect(nearestField("x", [])).toBeUndefined();
    // A tie goes to the field declared first.
    expect(nearestField("ab", ["aa", "bb"])).toBe("aa");
  });
});

describe("schemas", () => {
  it("take the pieces the filter configuration shares from schema/filter-config.ts", () => {
    const rule = RouteRule.properties;
    expect(rule.match).toEqual(FilterRoute.properties.match);
    expect(rule.retries).toEqual(FilterRoute.properties.retries);
    expect(rule.sticky).toEqual(FilterRoute.properties.sticky);
    expect(rule.fault).toEqual(HeaderRule.properties.fault);
    expect(rule.requestHeaders).toEqual(HeaderRule.properties.requestHeaders);
    const breaker = resourceSchemas.CircuitBreaker.properties.spec.properties;
    expect(breaker.intervalMs.maximum).toBe(Breaker.properties.intervalMs.maximum);
  });

  it("are plain JSON Schema documents, one per kind", () => {
    const schema = JSON.parse(JSON.stringify(Resource)) as { anyOf: { title: string; $id: string }[] };
    expect(schema.anyOf.map((s) => s.title)).toEqual(KINDS);
    expect(new Set(schema.anyOf.map((s) => s.$id)).size).toBe(KINDS.length);
  });
});

describe("validateReferences", () => {
  const set = () => Object.values(valid()) as Resource[];

  it("accepts a complete set without warnings", () => {
    expect(validateReferences(set())).toEqual({ errors: [], warnings: [] });
  });

  it("reports a reference to a missing service with the resource and field", () => {
    const resources = set();
    const route = resources.find((r) => r.kind === "Route");
    if (route?.kind !== "Route") throw new Error("no route");
    route.spec.rules[1]?.destinations.push({ service: "ratings" });
    const { errors, warnings } = validateReferences(resources);
    expect(errors).toEqual([
      {
        kind: "Route",
        name: "reviews",
        path: "spec.rules[1].destinations[2].service",
        message: "Service 'ratings' does not exist",
        target: { kind: "Service", name: "ratings" },
      },
    ]);
    expect(warnings).toEqual([]);
  });

  it("reports every kind of missing reference", () => {
    const resources = set().filter((r) => r.kind !== "Service");
    const paths = validateReferences(resources).errors.map((e) => `${e.kind} ${e.path}`);
    expect(paths).toEqual([
      "Workload spec.service",
      "Workload spec.service",
      "Route spec.service",
      "Route spec.rules[0].destinations[0].service",
      "Route spec.rules[1].destinations[0].service",
      "Route spec.rules[1].destinations[1].service",
      "CircuitBreaker spec.service",
      "CircuitBreaker spec.fallback.service",
      "AccessRule spec.destination",
    ]);
  });

  it("reports a plugin of a missing module; the built-in mesh module always exists", () => {
    const resources = set();
    const plugin = resources.find((r) => r.kind === "WasmPlugin");
    if (plugin?.kind !== "WasmPlugin") throw new Error("no plugin");
    expect(validateReferences(resources).errors).toEqual([]);
    plugin.spec.module = "rate-limit";
    plugin.spec.services = ["reviews", "details"];
    expect(validateReferences(resources).errors.map((e) => e.path)).toEqual([
      "spec.module",
      "spec.services[1]",
    ]);
  });

  it("refuses a second CircuitBreaker on the same service and subset, naming the first", () => {
    const resources = set();
    const breaker = resources.find((r) => r.kind === "CircuitBreaker");
    if (breaker?.kind !== "CircuitBreaker") throw new Error("no breaker");
    const second = structuredClone(breaker);
    second.metadata.name = "reviews-v2-again";
    // Same selector written in another key order is the same subset.
    second.spec.subset = Object.fromEntries(Object.entries(breaker.spec.subset ?? {}).reverse());
    const { errors } = validateReferences([...resources, second]);
    expect(errors).toEqual([
      {
        kind: "CircuitBreaker",
        name: "reviews-v2-again",
        path: "spec.subset",
        message: "CircuitBreaker 'reviews-v2' already covers this service and subset; one breaker per subset",
      },
    ]);
    second.spec.subset = { version: "v1" };
    expect(validateReferences([...resources, second]).errors).toEqual([]);
  });

  it("warns, without failing, about a subset that selects no workload", () => {
    const resources = set();
    const breaker = resources.find((r) => r.kind === "CircuitBreaker");
    if (breaker?.kind !== "CircuitBreaker") throw new Error("no breaker");
    breaker.spec.subset = { version: "v3" };
    const { errors, warnings } = validateReferences(resources);
    expect(errors).toEqual([]);
    expect(warnings).toEqual([
      {
        kind: "CircuitBreaker",
        name: "reviews-v2",
        path: "spec.subset",
        message: "selects no workload of Service 'reviews'",
      },
    ]);
  });

  it("selects by label inclusion: a subset needs every label, a workload may have more", () => {
    const resources = set();
    const breaker = resources.find((r) => r.kind === "CircuitBreaker");
    if (breaker?.kind !== "CircuitBreaker") throw new Error("no breaker");
    breaker.spec.subset = { tier: "canary" };
    expect(validateReferences(resources).warnings).toEqual([]);
    breaker.spec.subset = { tier: "canary", version: "v1" };
    expect(validateReferences(resources).warnings.map((w) => w.path)).toEqual(["spec.subset"]);
  });

  it("reports two resources of the same kind and name", () => {
    const resources = [...set(), valid().Service as Resource];
    expect(validateReferences(resources).errors).toEqual([
      { kind: "Service", name: "reviews", path: "metadata.name", message: "duplicate Service 'reviews'" },
    ]);
  });
});

describe("parseManifests", () => {
  const yamlOf = (docs: string[]) => docs.join("\n---\n");

  it("reads the example mesh: every kind but those written by the registry and by imports, and telemetry's, consistent and without warnings", () => {
    const result = parseManifests(readFileSync(examplePath, "utf8"));
    if (!result.ok) throw new Error(result.errors.map(formatManifestError).join("\n"));
    const kinds = new Set(result.resources.map((r) => r.kind));
    expect([...kinds].sort()).toEqual(
      KINDS.filter((k) => !["WasmModule", "ImportedResource", "Tracing", "AccessLog"].includes(k)).sort(),
    );
    const route = result.resources.find((r) => r.kind === "Route");
    if (route?.kind !== "Route") throw new Error("no route");
    expect(route.spec.rules[1]?.destinations.map((d) => [d.subset?.version, d.weight])).toEqual([
      ["v1", 90],
      ["v2", 10],
    ]);
    expect(validateReferences(result.resources)).toEqual({ errors: [], warnings: [] });
  });

  it("reads the example telemetry beside the example mesh, consistent", () => {
    const parse = (url: URL) => {
      const result = parseManifests(readFileSync(url, "utf8"));
      if (!result.ok) throw new Error(result.errors.map(formatManifestError).join("\n"));
      return result.resources;
    };
    const telemetry = parse(new URL("../../deploy/examples/telemetry.yaml", import.meta.url));
    expect(telemetry.map((r) => r.kind).sort()).toEqual(["AccessLog", "Tracing", "Tracing"]);
    expect(validateReferences([...parse(examplePath), ...telemetry])).toEqual({ errors: [], warnings: [] });
  });

  it("reads JSON: one resource, or an array of them", () => {
    const { Service, AccessRule } = valid();
    expect(parseManifests(JSON.stringify(Service))).toEqual({ ok: true, resources: [Service] });
    expect(parseManifests(JSON.stringify([Service, AccessRule]))).toEqual({
      ok: true,
      resources: [Service, AccessRule],
    });
  });

  it("names the array item of an invalid resource in a JSON array", () => {
    const { Service } = valid();
    const result = parseManifests(JSON.stringify([Service, { ...Service, kind: "Gateway" }]));
    expect(result.ok === false && result.errors.map((e) => [e.document, e.path])).toEqual([[0, "[1].kind"]]);
  });

  it("skips empty documents", () => {
    expect(parseManifests("")).toEqual({ ok: true, resources: [] });
    const text = `---\n# nothing here\n---\n${JSON.stringify(valid().MeshPolicy)}\n---\n`;
    expect(parseManifests(text)).toEqual({ ok: true, resources: [valid().MeshPolicy] });
  });

  it("names the document and line of malformed YAML, and stores nothing", () => {
    const text = yamlOf([
      JSON.stringify(valid().Service),
      JSON.stringify(valid().MeshPolicy),
      "apiVersion: wasmesh.io/v1alpha1\nkind: Service\nmetadata: { name: [unclosed\n",
    ]);
    const result = parseManifests(text);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.errors.length).toBeGreaterThan(0);
    expect(result.errors.every((e) => e.document === 2)).toBe(true);
    expect(result.errors[0]?.message).toMatch(/^invalid YAML: /);
    expect(result.errors[0]?.line).toBeGreaterThanOrEqual(6);
    const first = result.errors[0];
    if (first === undefined) throw new Error("no error");
    expect(formatManifestError(first)).toMatch(/^document 2 \(line \d+\): \(root\): /);
  });

  it("refuses YAML tags other than plain data's, naming the document, line and field", () => {
    const plugin = (configuration: string) => `apiVersion: wasmesh.io/v1alpha1
kind: WasmPlugin
metadata: { name: p }
spec:
  module: request-id
  services: ["*"]
  configuration:
${configuration}`;
    const text = [
      plugin("    port: !!int '80'\n    name: !!str 80\n    plain: ! text\n"),
      "apiVersion: wasmesh.io/v1alpha1\nkind: Service\nmetadata: { name: a }\nspec:\n  description: !foo bar\n  ports: [{ name: http, port: 80, protocol: http }]\n",
      plugin("    f: !!js/function 'function () {}'\n    b: !!binary aGVsbG8=\n    s: !!set { a }\n"),
    ].join("---\n");
    const result = parseManifests(text);
    expect(result.ok === false && result.errors).toEqual([
      {
        document: 1,
        line: 16,
        column: 21, // the tagged value's
        path: "spec.description",
        message:
          "YAML tag !foo is not allowed: resources hold plain data (maps, lists, strings, numbers, booleans, null)",
      },
      ...[
        [26, 22, "spec.configuration.f", "!!js/function"],
        [27, 17, "spec.configuration.b", "!!binary"],
        [28, 14, "spec.configuration.s", "!!set"],
      ].map(([line, column, path, tag]) => ({
        document: 2,
        line,
        column,
        path,
        message: `YAML tag ${tag} is not allowed: resources hold plain data (maps, lists, strings, numbers, booleans, null)`,
      })),
    ]);
    // A YAML 1.1 document's timestamps are Dates, which JSON would turn into other text.
    const yaml11 = parseManifests(`%YAML 1.1\n---\n${plugin("    when: 2001-12-14\n")}`);
    expect(yaml11.ok === false && yaml11.errors).toEqual([
      {
        document: 0,
        path: "spec.configuration.when",
        message: "is a Date, not plain data: quote it to keep it as text",
      },
    ]);
    // The core schema's own tags are plain data.
    const first = parseManifests(plugin("    port: !!int '80'\n    name: !!str 80\n    plain: ! text\n"));
    expect(first.ok && first.resources[0]?.spec).toMatchObject({
      configuration: { port: 80, name: "80", plain: "text" },
    });
  });

  it(`refuses nesting deeper than MAX_DEPTH (${MAX_DEPTH}) with the line, however deep, and alias loops`, () => {
    // JSON text (JSON is YAML), written out: JSON.stringify itself cannot go 100,000 levels deep.
    const plugin = (levels: number) =>
      `{"apiVersion":"wasmesh.io/v1alpha1","kind":"WasmPlugin","metadata":{"name":"p"},` +
      `"spec":{"module":"request-id","services":["*"],"configuration":{"x":${brackets(levels - 3)}}}}`;
    const message = `nested more than ${MAX_DEPTH} levels deep (objects and arrays)`;
    expect(parseManifests(plugin(MAX_DEPTH)).ok).toBe(true);
    for (const levels of [MAX_DEPTH + 1, 5000, 100_000]) {
      const line = plugin(levels);
      const result = parseManifests(`# a comment line\n${line}`);
      // x's value is level 4: level MAX_DEPTH + 1 is the (MAX_DEPTH - 2)th of its "[".
      const column = line.indexOf('"x":[') + '"x":'.length + (MAX_DEPTH - 3) + 1;
      expect(result.ok === false && result.errors, String(levels)).toEqual([
        { document: 0, line: 2, column, path: `spec.configuration.x${"[0]".repeat(MAX_DEPTH - 3)}`, message },
      ]);
    }
    // A list document of resources: each resource counts from itself, as in a JSON array body.
    expect(parseManifests(`[${plugin(MAX_DEPTH)}]`).ok).toBe(true);
    const loop = parseManifests(
      "apiVersion: wasmesh.io/v1alpha1\nkind: WasmPlugin\nmetadata: { name: p }\nspec:\n  module: request-id\n  services: ['*']\n  configuration: { loop: &a [*a] }\n",
    );
    expect(loop.ok === false && loop.errors.map((e) => [e.document, e.message])).toEqual([[0, message]]);
  });

  it("refuses duplicate keys", () => {
    const result = parseManifests("apiVersion: wasmesh.io/v1alpha1\nkind: Service\nkind: Route\n");
    expect(result.ok === false && result.errors[0]?.document).toBe(0);
    expect(result.ok === false && result.errors[0]?.message).toMatch(/unique/i);
  });

  it("reports the invalid field of every bad document by index", () => {
    const badPort = valid().Service;
    spec(badPort).ports[0].port = -1;
    const badWeights = valid().Route;
    spec(badWeights).rules[1].destinations[0].weight = 80;
    const text = yamlOf([
      JSON.stringify(valid().MeshPolicy),
      JSON.stringify(badPort),
      JSON.stringify(badWeights),
    ]);
    const result = parseManifests(text);
    expect(result.ok === false && result.errors.map((e) => `${e.document} ${e.path}`)).toEqual([
      "1 spec.ports[0].port",
      "2 spec.rules[1].destinations",
    ]);
    const second = result.ok ? undefined : result.errors[1];
    if (second === undefined) throw new Error("expected a second error");
    expect(formatManifestError(second)).toBe(
      "document 2: spec.rules[1].destinations: weights must add up to 100 (they add up to 90)",
    );
  });
});

/** `levels` arrays, each the only element of the one before: `[[[...]]]`. */
function nested(levels: number): unknown {
  let value: unknown[] = [];
  for (let i = 1; i < levels; i++) value = [value];
  return value;
}

/** `[[[...]]]`, `levels` deep, as text. */
const brackets = (levels: number) => "[".repeat(levels) + "]".repeat(levels);

describe("Tracing and AccessLog", () => {
  const tracing = (spec: Record<string, unknown>, name = "t") => ({
    apiVersion: api,
    kind: "Tracing",
    metadata: { name },
    spec,
  });
  const accessLog = (spec: Record<string, unknown>, name = "a") => ({
    apiVersion: api,
    kind: "AccessLog",
    metadata: { name },
    spec,
  });
  const errorsOf = (value: unknown) => {
    const result = validateResource(value);
    return result.ok ? [] : result.errors.map((e) => `${e.path}: ${e.message}`);
  };
  const backend = { protocol: "otlp-grpc", url: "http://jaeger:4317" };

  it.each([
    [tracing({ sampling: { randomPercent: 5 } }), "spec.backend: is required for the mesh's Tracing"],
    [tracing({ backend, sampling: { randomPercent: 101 } }), "spec.sampling.randomPercent"],
    [tracing({ backend: { protocol: "jaeger", url: "http://j:4317" } }), "spec.backend.protocol"],
    [tracing({ backend: { protocol: "otlp-grpc", url: "http://jaeger" } }), "spec.backend.url: needs a port"],
    [
      tracing({ backend: { protocol: "otlp-grpc", url: "http://j:4317/v1" } }),
      "spec.backend.url: must have no path",
    ],
    [tracing({ backend: { protocol: "zipkin", url: "ftp://z:9411" } }), "spec.backend.url"],
    [
      tracing({ backend: { protocol: "otlp-http", url: "http://[::1/v1/traces" } }),
      "spec.backend.url: is not a URL",
    ],
    [tracing({ backend, edge: { url: "http://[::1/v1/traces" } }), "spec.edge.url: is not a URL"],
    [
      tracing({ service: "reviews", edge: { url: "http://otel:4318/v1/traces" } }),
      "spec.edge: is for the mesh's Tracing (one without spec.service)",
    ],
    [tracing({ backend, tags: [{ name: "a" }] }), "spec.tags[0]: must have exactly one of header, literal"],
    [
      tracing({ backend, tags: [{ name: "a", literal: "x", header: "y" }] }),
      "spec.tags[0]: must have exactly one",
    ],
    [tracing({ backend, tags: [{ name: "a", literal: "x", default: "y" }] }), "spec.tags[0].default"],
    [
      tracing({
        backend,
        tags: [
          { name: "a", literal: "x" },
          { name: "a", header: "h" },
        ],
      }),
      "spec.tags[1].name: duplicate tag 'a'",
    ],
    [
      tracing({ backend, sampling: { randomPercent: 10, overallPercent: 5 } }),
      "spec.sampling.overallPercent: must not be less than randomPercent",
    ],
    [tracing({ backend, samplng: {} }), "spec.samplng: Unexpected property (did you mean sampling?)"],
    [accessLog({ backends: [{}] }), "spec.backends[0]: must have exactly one of file, stdout"],
    [accessLog({ backends: [{ file: { path: "relative.log" } }] }), "spec.backends[0].file.path"],
    [
      accessLog({ backends: [{ file: { path: "/var/../etc/passwd" } }] }),
      "spec.backends[0].file.path: must not contain '..'",
    ],
    [accessLog({ backends: [{ stdout: {} }, { stdout: {} }] }), "spec.backends: has stdout more than once"],
    [
      accessLog({ backends: [{ stdout: {} }], format: "%RESPONSE_CODE" }),
      "spec.format: '%RESPONSE_CODE' at offset 0",
    ],
    [
      accessLog({ backends: [{ stdout: {} }], format: "%START_TIME% %response_code%\n" }),
      "spec.format: '%response_code%' at offset 13",
    ],
  ])("refuses %j naming the field", (doc, expected) => {
    expect(errorsOf(doc).join("\n")).toContain(expected);
  });

  it("accepts an override that inherits the mesh's backend, and Envoy's operators with arguments", () => {
    expect(errorsOf(tracing({ service: "reviews", sampling: { randomPercent: 100 } }))).toEqual([]);
    expect(
      errorsOf(
        accessLog({
          backends: [{ file: { path: "/tmp/a.log" } }],
          format: "%REQ(X-WASMESH-RULE)% %REQ(:PATH):64% %START_TIME(%s)%\n",
        }),
      ),
    ).toEqual([]);
    expect(errorsOf(accessLog({ service: "reviews", backends: [] }))).toEqual([]);
  });

  it("allows one per service and one for the mesh, and an override needs a backend to inherit", () => {
    const base = [valid().Service] as Resource[];
    const meshWide = tracing({ backend }, "mesh") as Resource;
    const twice = validateReferences([...base, meshWide, tracing({ backend }, "other") as Resource]);
    expect(twice.errors.map((e) => `${e.name} ${e.path}: ${e.message}`)).toEqual([
      "other spec: Tracing 'mesh' already applies to the mesh; one per service and one for the mesh",
    ]);
    const orphan = validateReferences([...base, tracing({ service: "reviews" }, "r") as Resource]);
    expect(orphan.errors.map((e) => `${e.path}: ${e.message}`)).toEqual([
      "spec.backend: is required: there is no mesh Tracing (one without spec.service) to inherit it from",
    ]);
    const inherits = validateReferences([
      ...base,
      meshWide,
      tracing({ service: "reviews" }, "r") as Resource,
    ]);
    expect(inherits.errors).toEqual([]);
    const unknown = validateReferences([
      ...base,
      accessLog({ service: "ratings", backends: [] }) as Resource,
    ]);
    expect(unknown.errors.map((e) => `${e.path}: ${e.message}`)).toEqual([
      "spec.service: Service 'ratings' does not exist",
    ]);
  });
});
