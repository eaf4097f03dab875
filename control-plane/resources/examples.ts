// One example resource of every kind, as docs/resources.md shows them (reference.ts): together they
// are one consistent mesh (every reference resolves, every subset selects a workload), which
// test/control-plane/reference.test.ts checks with validateResource and validateReferences.
import { API_VERSION, type Kind, type Resource } from "./schema.ts";

const apiVersion = API_VERSION;

/** The example of each kind, typed as that kind. */
export type Examples = { [K in Kind]: Extract<Resource, { kind: K }> };

export const EXAMPLES: Examples = {
  Service: {
    apiVersion,
    kind: "Service",
    metadata: { name: "reviews", labels: { "app.kubernetes.io/part-of": "bookinfo" } },
    spec: {
      description: "Book reviews",
      ports: [{ name: "http", port: 9080, protocol: "http" }],
      mtls: { mode: "strict" },
    },
  },
  Workload: {
    apiVersion,
    kind: "Workload",
    metadata: { name: "reviews-v1-a" },
    spec: {
      service: "reviews",
      address: "10.0.1.11",
      port: 9080,
      labels: { version: "v1" },
      zone: "zone-a",
      appPort: 9081,
      leaseSeconds: 30,
      mtls: true,
    },
  },
  Route: {
    apiVersion,
    kind: "Route",
    metadata: { name: "reviews" },
    spec: {
      service: "reviews",
      rules: [
        {
          name: "testers",
          match: { headers: [{ name: "x-user", exact: "tester" }] },
          destinations: [{ service: "reviews", subset: { version: "v2" } }],
          fault: { delay: { ms: 100, percent: 10 } },
        },
        {
          name: "canary",
          match: { path: { prefix: "/" }, methods: ["GET", "HEAD"] },
          destinations: [
            { service: "reviews", subset: { version: "v1" }, weight: 90 },
            { service: "reviews", subset: { version: "v2" }, weight: 10 },
          ],
          sticky: { header: "x-user" },
          requestHeaders: { remove: ["x-debug"] },
          responseHeaders: { set: [{ name: "x-served-by", value: "wasmesh" }] },
          timeoutMs: 2000,
          retries: { attempts: 2, on: "5xx,reset", perTryTimeoutMs: 500 },
        },
      ],
    },
  },
  CircuitBreaker: {
    apiVersion,
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
    apiVersion,
    kind: "AccessRule",
    metadata: { name: "productpage-to-reviews" },
    spec: { source: "productpage", destination: "reviews", action: "allow" },
  },
  MeshPolicy: {
    apiVersion,
    kind: "MeshPolicy",
    metadata: { name: "default" },
    spec: { defaultAccess: "deny", mtls: { mode: "permissive" } },
  },
  WasmModule: {
    apiVersion,
    kind: "WasmModule",
    metadata: { name: "request-id" },
    spec: {
      sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
      size: 48_213,
      abiVersion: "0.2.1",
      description: "adds x-request-id to requests without one",
    },
  },
  WasmPlugin: {
    apiVersion,
    kind: "WasmPlugin",
    metadata: { name: "reviews-tagging" },
    spec: {
      module: "mesh",
      services: ["reviews"],
      direction: "inbound",
      priority: 10,
      configuration: {
        headerRules: [{ name: "tag", responseHeaders: { add: [{ name: "x-mesh", value: "wasmesh" }] } }],
      },
    },
  },
  Tracing: {
    apiVersion,
    kind: "Tracing",
    metadata: { name: "mesh" },
    spec: {
      backend: { protocol: "otlp-grpc", url: "http://jaeger-collector.observability:4317" },
      sampling: { randomPercent: 1, clientPercent: 100, overallPercent: 100 },
      tags: [
        { name: "user", header: "end-user", default: "anonymous" },
        { name: "env", literal: "production" },
      ],
      edge: { url: "https://otel.example.com/v1/traces" },
    },
  },
  AccessLog: {
    apiVersion,
    kind: "AccessLog",
    metadata: { name: "reviews" },
    spec: {
      service: "reviews",
      backends: [{ stdout: {} }, { file: { path: "/var/log/wasmesh/reviews.log" } }],
      format: "%START_TIME% %REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE% %UPSTREAM_CLUSTER% %DURATION%ms\n",
    },
  },
  ImportedResource: {
    apiVersion,
    kind: "ImportedResource",
    metadata: { name: "virtualservice-reviews" },
    spec: {
      source: { apiVersion: "networking.istio.io/v1", kind: "VirtualService", name: "reviews" },
      document: {
        apiVersion: "networking.istio.io/v1",
        kind: "VirtualService",
        metadata: { name: "reviews" },
        spec: { hosts: ["reviews"], http: [{ route: [{ destination: { host: "reviews", subset: "v1" } }] }] },
      },
      produced: [{ kind: "Route", name: "reviews" }],
      origin: "api",
    },
  },
};

/**
 * What the examples refer to besides each other: the calling service, a workload of it, and a second
 * workload of reviews (so that every subset selects one).
 */
export const EXAMPLE_CONTEXT: Resource[] = [
  {
    apiVersion,
    kind: "Service",
    metadata: { name: "productpage" },
    spec: { ports: [{ name: "http", port: 9080, protocol: "http" }] },
  },
  {
    apiVersion,
    kind: "Workload",
    metadata: { name: "reviews-v2-a" },
    spec: { service: "reviews", address: "10.0.1.12", port: 9080, labels: { version: "v2" } },
  },
];
