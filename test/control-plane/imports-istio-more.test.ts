// The rest of Istio's kinds converted (control-plane/imports/istio.ts, issue 13): ServiceEntry and
// WorkloadEntry become Services and static Workloads, a Gateway produces nothing but warnings, and
// extensions.istio.io's WasmPlugin runs a module of the registry. Manifests modelled on Istio's
// docs (the WorkloadEntry and ServiceEntry references, "Accessing External Services", the bookinfo
// gateway, the basic-auth WasmPlugin); exact native resources, warnings and errors by path.

import { describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import {
  type ConvertOptions,
  type ConvertResult,
  convert,
  type ImportProblem,
  serviceOfHost,
} from "../../control-plane/imports/index.ts";
import { moduleNameOfUrl } from "../../control-plane/imports/istio.ts";
import { validateReferences, validateResource } from "../../control-plane/resources/index.ts";

const yamlDocs = (text: string): unknown[] => parseAllDocuments(text).map((d) => d.toJS());
const BASIC_AUTH = "a1".repeat(32);
const MODULES: ConvertOptions["modules"] = [
  { name: "basic-auth", sha256: BASIC_AUTH },
  { name: "header-stamp", sha256: "b2".repeat(32) },
];
const run = (text: string, options: ConvertOptions = {}) =>
  convert(yamlDocs(text), { modules: MODULES, ...options });

/** Problems without the message, to compare where they are. */
const where = (problems: ImportProblem[]) =>
  problems.map(({ document, kind, name, path }) => ({ document, kind, name, path }));

function expectValid(result: ConvertResult): void {
  for (const r of result.resources) expect(validateResource(r)).toEqual({ ok: true, resource: r });
}

// The WorkloadEntry reference's example: a VM service declared by a ServiceEntry whose
// workloadSelector picks the WorkloadEntries, routed by a VirtualService and a DestinationRule of
// the same input that name its host.
const VM_SERVICE = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: details-svc
spec:
  hosts:
  - details.bookinfo.com
  location: MESH_INTERNAL
  ports:
  - number: 80
    name: http
    protocol: HTTP
    targetPort: 8080
  resolution: STATIC
  workloadSelector:
    labels:
      app: details-legacy
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: details-vm1
spec:
  serviceAccount: details-legacy
  address: 2.2.2.2
  labels:
    app: details-legacy
    instance-id: vm1
  locality: us-east1/us-east1-b
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: details-vm2
spec:
  serviceAccount: details-legacy
  address: vm2.example.internal
  ports:
    http: 9080
  labels:
    app: details-legacy
    instance-id: vm2
  network: vm-network
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: details
spec:
  host: details.bookinfo.com
  subsets:
  - name: vm1
    labels: {instance-id: vm1}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: details
spec:
  hosts: [details.bookinfo.com]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: details.bookinfo.com, subset: vm1}}]
  - route: [{destination: {host: details.bookinfo.com}}]
    timeout: 3s
`;

describe("ServiceEntry and WorkloadEntry", () => {
  it("a VM service: one Service, a static Workload per selected WorkloadEntry, and the host resolves for VirtualService and DestinationRule", () => {
    const result = run(VM_SERVICE);
    expect(result.errors).toEqual([]);
    expect(result.resources).toEqual([
      {
        apiVersion: "wasmesh.io/v1alpha1",
        kind: "Service",
        metadata: { name: "details-bookinfo-com" },
        spec: { ports: [{ name: "http", port: 80, protocol: "http" }] },
      },
      {
        apiVersion: "wasmesh.io/v1alpha1",
        kind: "Workload",
        metadata: { name: "details-vm1" },
        spec: {
          service: "details-bookinfo-com",
          address: "2.2.2.2",
          port: 8080, // the ServiceEntry port's targetPort
          labels: { app: "details-legacy", "instance-id": "vm1" },
          zone: "us-east1-b",
          serviceAccount: "details-legacy",
        },
      },
      {
        apiVersion: "wasmesh.io/v1alpha1",
        kind: "Workload",
        metadata: { name: "details-vm2" },
        spec: {
          service: "details-bookinfo-com",
          address: "vm2.example.internal",
          port: 9080, // the entry's own port of that name
          labels: { app: "details-legacy", "instance-id": "vm2" },
          serviceAccount: "details-legacy",
        },
      },
      {
        apiVersion: "wasmesh.io/v1alpha1",
        kind: "Route",
        metadata: { name: "details" },
        spec: {
          service: "details-bookinfo-com",
          rules: [
            {
              name: "http-0",
              match: { headers: [{ name: "end-user", exact: "jason" }] },
              destinations: [{ service: "details-bookinfo-com", subset: { "instance-id": "vm1" } }],
            },
            { name: "http-1", destinations: [{ service: "details-bookinfo-com" }], timeoutMs: 3000 },
          ],
        },
      },
    ]);
    expectValid(result);
    // The produced set holds together: the Route's service and subset exist, with a Workload.
    expect(validateReferences(result.resources)).toEqual({ errors: [], warnings: [] });
    expect(where(result.warnings)).toEqual([
      { document: 0, kind: "ServiceEntry", name: "details-svc", path: "spec.hosts[0]" },
      { document: 0, kind: "ServiceEntry", name: "details-svc", path: "spec.workloadSelector" },
      { document: 1, kind: "WorkloadEntry", name: "details-vm1", path: "spec.serviceAccount" },
      { document: 2, kind: "WorkloadEntry", name: "details-vm2", path: "spec.network" },
      { document: 2, kind: "WorkloadEntry", name: "details-vm2", path: "spec.serviceAccount" },
    ]);
    expect(result.warnings[0]?.message).toContain("callers must send Host 'details-bookinfo-com'");
    expect(result.produced.map((p) => p.resources)).toEqual([
      [{ kind: "Service", name: "details-bookinfo-com" }],
      [{ kind: "Workload", name: "details-vm1" }],
      [{ kind: "Workload", name: "details-vm2" }],
      [],
      [{ kind: "Route", name: "details" }],
    ]);
  });

  it("converting the same input twice gives identical output, whatever the order of the ServiceEntry", () => {
    expect(run(VM_SERVICE)).toEqual(run(VM_SERVICE));
    // The index is built before any document is translated: a VirtualService before the entry.
    const docs = VM_SERVICE.split(/^---$/m);
    const reversed = run([...docs].reverse().join("---\n"));
    expect(reversed.errors).toEqual([]);
    expect(reversed.resources.map((r) => `${r.kind}/${r.metadata.name}`).sort()).toEqual(
      run(VM_SERVICE)
        .resources.map((r) => `${r.kind}/${r.metadata.name}`)
        .sort(),
    );
  });

  it("endpoints: a static Workload each (no lease), on the endpoint's port; labels and locality carried, weight a warning", () => {
    const result = run(
      `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: legacy-api
  namespace: shop
spec:
  hosts: [legacy-api]
  location: MESH_INTERNAL
  ports:
  - {number: 8080, name: http-api}
  - {number: 9090, name: grpc, protocol: GRPC}
  resolution: STATIC
  endpoints:
  - address: 10.1.0.5
    labels: {version: v1}
    locality: europe-west1/europe-west1-c/rack-7
    ports: {http-api: 8000, grpc: 8000}
  - address: 10.1.0.6
    weight: 2
    ports: {http-api: 8000, grpc: 8000}
`,
    );
    expect(result.errors).toEqual([]);
    expect(result.resources).toEqual([
      {
        apiVersion: "wasmesh.io/v1alpha1",
        kind: "Service",
        metadata: { name: "legacy-api.shop" },
        spec: {
          ports: [
            { name: "http-api", port: 8080, protocol: "http" }, // the protocol from the port's name
            { name: "grpc", port: 9090, protocol: "grpc" },
          ],
        },
      },
      {
        apiVersion: "wasmesh.io/v1alpha1",
        kind: "Workload",
        metadata: { name: "legacy-api-shop-0" },
        spec: {
          service: "legacy-api.shop",
          address: "10.1.0.5",
          port: 8000,
          labels: { version: "v1" },
          zone: "europe-west1-c",
        },
      },
      {
        apiVersion: "wasmesh.io/v1alpha1",
        kind: "Workload",
        metadata: { name: "legacy-api-shop-1" },
        spec: { service: "legacy-api.shop", address: "10.1.0.6", port: 8000 },
      },
    ]);
    expectValid(result);
    expect(result.warnings.map((w) => w.path)).toEqual([
      "spec.endpoints[1].weight", // the field audit first
      "spec.endpoints[0].locality",
    ]);
  });

  it("an external API over plain HTTP with DNS resolution (Accessing External Services): the host is the Workload's address, with a warning at spec.location", () => {
    const result = run(`
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: httpbin-ext
spec:
  hosts:
  - httpbin.org
  ports:
  - number: 80
    name: http
    protocol: HTTP
  resolution: DNS
  location: MESH_EXTERNAL
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: httpbin-ext
spec:
  hosts:
    - httpbin.org
  http:
  - timeout: 3s
    route:
      - destination:
          host: httpbin.org
        weight: 100
`);
    expect(result.errors).toEqual([]);
    expect(result.resources).toEqual([
      {
        apiVersion: "wasmesh.io/v1alpha1",
        kind: "Service",
        metadata: { name: "httpbin.org" },
        spec: { ports: [{ name: "http", port: 80, protocol: "http" }] },
      },
      {
        apiVersion: "wasmesh.io/v1alpha1",
        kind: "Workload",
        metadata: { name: "httpbin-ext" },
        // No mtls: callers' sidecars send it plain text, as to any Workload without a sidecar.
        spec: { service: "httpbin.org", address: "httpbin.org", port: 80 },
      },
      {
        apiVersion: "wasmesh.io/v1alpha1",
        kind: "Route",
        metadata: { name: "httpbin-ext" },
        spec: {
          service: "httpbin.org",
          rules: [{ name: "http-0", destinations: [{ service: "httpbin.org" }], timeoutMs: 3000 }],
        },
      },
    ]);
    expectValid(result);
    expect(validateReferences(result.resources)).toEqual({ errors: [], warnings: [] });
    expect(where(result.warnings)).toEqual([
      { document: 0, kind: "ServiceEntry", name: "httpbin-ext", path: "spec.location" },
    ]);
    expect(result.warnings[0]?.message).toContain("plain HTTP");
  });

  it("an external HTTPS API (www.google.com:443) is an error at the host and at the port's protocol: no egress, no TLS origination", () => {
    const result = run(`
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: google
spec:
  hosts:
  - www.google.com
  ports:
  - number: 443
    name: https
    protocol: HTTPS
  resolution: DNS
  location: MESH_EXTERNAL
`);
    expect(where(result.errors)).toEqual([
      { document: 0, kind: "ServiceEntry", name: "google", path: "spec.hosts[0]" },
      { document: 0, kind: "ServiceEntry", name: "google", path: "spec.ports[0].protocol" },
    ]);
    expect(result.errors[0]?.message).toContain("cannot be a wasmesh service name");
    expect(result.errors[1]?.message).toContain("HTTPS: the mesh routes HTTP only");
    expect(result.resources).toEqual([]);
    expect(result.warnings).toEqual([]);
  });

  it("without a ServiceEntry in the input, an external host stays an error in a VirtualService", () => {
    const result = run(`
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api}
spec:
  hosts: [api.example.com]
  http: [{route: [{destination: {host: api.example.com}}]}]
`);
    expect(result.errors.map((e) => e.path)).toEqual([
      "spec.http[0].route[0].destination.host",
      "spec.hosts[0]",
    ]);
    expect(result.errors[0]?.message).toContain("no ServiceEntry of the input declares it");
    // serviceOfHost, for other callers, is unchanged: no FQDN is a service of the mesh.
    expect(serviceOfHost("api.example.com", undefined).ok).toBe(false);
  });

  it.each([
    [
      "a MONGO port (the ServiceEntry reference's mongocluster)",
      "hosts: [mymongodb.somedomain]\n  addresses: [192.192.192.192/24]\n  ports: [{number: 27018, name: mongodb, protocol: MONGO}]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  endpoints: [{address: 2.2.2.2}, {address: 3.3.3.3}]",
      ["spec.ports[0].protocol"],
    ],
    [
      "a port without protocol whose name says none",
      "hosts: [legacy]\n  ports: [{number: 80, name: web}]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  endpoints: [{address: 10.0.0.1}]",
      ["spec.ports[0].protocol"],
    ],
    [
      "STATIC resolution without endpoints",
      "hosts: [legacy]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  location: MESH_INTERNAL\n  resolution: STATIC",
      ["spec.endpoints"],
    ],
    [
      "NONE resolution without endpoints (Istio's default)",
      "hosts: [legacy]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  location: MESH_INTERNAL",
      ["spec.resolution"],
    ],
    [
      "an endpoint reached on two ports",
      "hosts: [legacy]\n  ports: [{number: 80, name: http, protocol: HTTP}, {number: 81, name: http-admin, protocol: HTTP}]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  endpoints: [{address: 10.0.0.1, ports: {http: 8080, http-admin: 9090}}]",
      ["spec.endpoints[0].ports"],
    ],
    [
      "a Unix socket endpoint",
      "hosts: [legacy]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  endpoints: [{address: 'unix:///var/run/legacy.sock'}]",
      ["spec.endpoints[0].address"],
    ],
    [
      "a wildcard host",
      "hosts: ['*.example.com']\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  location: MESH_INTERNAL\n  resolution: DNS",
      ["spec.hosts[0]"],
    ],
    [
      "both endpoints and a workloadSelector",
      "hosts: [legacy]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  endpoints: [{address: 10.0.0.1}]\n  workloadSelector: {labels: {app: legacy}}",
      ["spec.workloadSelector"],
    ],
  ])("a ServiceEntry with %s is an error naming the field, and produces nothing", (_, spec, paths) => {
    const result = run(`
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: entry}
spec:
  ${spec}
`);
    expect(result.errors.map((e) => e.path)).toEqual(paths);
    expect(result.errors[0]).toMatchObject({ document: 0, kind: "ServiceEntry", name: "entry" });
    expect(result.resources).toEqual([]);
  });

  it("a WorkloadEntry no ServiceEntry selects joins the service its app label names (a Kubernetes Service selecting it), with a warning", () => {
    const result = run(`
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: ratings-vm
  namespace: bookinfo
spec:
  address: 10.128.0.7
  ports: {http: 9080}
  labels: {app: ratings, version: v3}
  weight: 5
`);
    expect(result.errors).toEqual([]);
    expect(result.resources).toEqual([
      {
        apiVersion: "wasmesh.io/v1alpha1",
        kind: "Workload",
        metadata: { name: "ratings-vm-bookinfo" },
        spec: {
          service: "ratings.bookinfo",
          address: "10.128.0.7",
          port: 9080,
          labels: { app: "ratings", version: "v3" },
        },
      },
    ]);
    expectValid(result);
    expect(result.warnings.map((w) => w.path)).toEqual(["spec.weight", "spec.labels.app"]);
  });

  it("a WorkloadEntry whose service cannot be told is an error at spec.labels; one without a port for its app, at spec.ports", () => {
    const entry = (labels: string, ports = "") => `
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm}
spec:
  address: 10.0.0.9
  labels: ${labels}
  ${ports}
`;
    expect(where(run(entry("{role: db}")).errors)).toEqual([
      { document: 0, kind: "WorkloadEntry", name: "vm", path: "spec.labels" },
    ]);
    expect(run(entry("{app: ratings}")).errors.map((e) => e.path)).toEqual(["spec.ports"]);
    expect(run(entry("{app: ratings}", "ports: {http: 80, admin: 81}")).errors.map((e) => e.path)).toEqual([
      "spec.ports",
    ]);
    // A ServiceEntry of another namespace does not select it (Istio's selectors are namespaced).
    const other = run(
      `${VM_SERVICE.split(/^---$/m)[0]}---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm, namespace: elsewhere}
spec:
  address: 10.0.0.9
  labels: {instance-id: vm9}
`,
    );
    expect(where(other.errors)).toEqual([
      { document: 1, kind: "WorkloadEntry", name: "vm", path: "spec.labels" },
    ]);
  });
});

// The bookinfo gateway, with the VirtualService bound to it and to the mesh.
const GATEWAY = `
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: bookinfo-gateway
  namespace: bookinfo
spec:
  selector:
    istio: ingressgateway
  servers:
  - port:
      number: 8080
      name: http
      protocol: HTTP
    hosts:
    - "bookinfo.example.com"
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["bookinfo.example.com"]
    tls: {mode: SIMPLE, credentialName: bookinfo-credential}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: bookinfo
  namespace: bookinfo
spec:
  hosts: [productpage]
  gateways: [bookinfo-gateway, mesh]
  http:
  - match:
    - uri: {exact: /productpage}
    - uri: {prefix: /static}
    route:
    - destination: {host: productpage, port: {number: 9080}}
  - route: [{destination: {host: productpage}}]
`;

describe("Gateway", () => {
  it("produces nothing: its selector, ports and hosts are warnings (the edge serves north-south traffic), and the VirtualService's gateway a warning", () => {
    const result = run(GATEWAY);
    expect(result.errors).toEqual([]);
    expect(result.resources).toEqual([
      {
        apiVersion: "wasmesh.io/v1alpha1",
        kind: "Route",
        metadata: { name: "bookinfo-bookinfo" },
        spec: {
          service: "productpage.bookinfo",
          rules: [
            {
              name: "http-0-m0",
              match: { path: { exact: "/productpage" } },
              destinations: [{ service: "productpage.bookinfo" }],
            },
            {
              name: "http-0-m1",
              match: { path: { prefix: "/static" } },
              destinations: [{ service: "productpage.bookinfo" }],
            },
            { name: "http-1", destinations: [{ service: "productpage.bookinfo" }] },
          ],
        },
      },
    ]);
    expectValid(result);
    const gw = { document: 0, kind: "Gateway", name: "bookinfo-gateway" };
    const vs = { document: 1, kind: "VirtualService", name: "bookinfo" };
    expect(where(result.warnings)).toEqual([
      { ...gw, path: "spec.selector" },
      { ...gw, path: "spec.servers[0].port.number" },
      { ...gw, path: "spec.servers[1].port.number" },
      { ...gw, path: "spec.servers[0].hosts" },
      { ...gw, path: "spec.servers[1].hosts" },
      { ...gw, path: "spec.servers[1].tls" },
      { ...vs, path: "spec.http[0].route[0].destination.port" },
      { ...vs, path: "spec.gateways[0]" },
    ]);
    expect(result.warnings[7]?.message).toContain("a Gateway of the input");
    expect(result.warnings[7]?.message).toContain("the edge worker applies the service's Route");
    expect(result.produced.map((p) => p.resources)).toEqual([
      [],
      [{ kind: "Route", name: "bookinfo-bookinfo" }],
    ]);
  });

  it.each([
    [
      "a TCP server",
      "- port: {number: 27017, name: mongo, protocol: MONGO}\n    hosts: ['*']",
      "spec.servers[0].port.protocol",
    ],
    [
      "TLS passthrough (Istio's default mode)",
      "- port: {number: 443, name: https, protocol: HTTPS}\n    hosts: ['*']\n    tls: {}",
      "spec.servers[0].tls.mode",
    ],
    [
      "mutual TLS with client certificates",
      "- port: {number: 443, name: https, protocol: HTTPS}\n    hosts: ['*']\n    tls: {mode: MUTUAL, credentialName: cred}",
      "spec.servers[0].tls.mode",
    ],
    [
      "HTTPS without tls",
      "- port: {number: 443, name: https, protocol: HTTPS}\n    hosts: ['*']",
      "spec.servers[0].tls",
    ],
    [
      "a default endpoint",
      "- port: {number: 80, name: http, protocol: HTTP}\n    hosts: ['*']\n    defaultEndpoint: 127.0.0.1:8080",
      "spec.servers[0].defaultEndpoint",
    ],
  ])("a Gateway with %s is an error naming the field", (_, servers, path) => {
    const result = run(`
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  servers:
  ${servers}
`);
    expect(result.errors.map((e) => e.path)).toEqual([path]);
    expect(result.produced).toEqual([]);
  });

  it("an HTTP server's httpsRedirect is a warning", () => {
    const result = run(`
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [bookinfo.example.com]
    tls: {httpsRedirect: true}
`);
    expect(result.errors).toEqual([]);
    expect(result.warnings.map((w) => w.path)).toEqual([
      "spec.servers[0].port.number",
      "spec.servers[0].hosts",
      "spec.servers[0].tls.httpsRedirect",
    ]);
  });
});

// The basic-auth plugin of Istio's WasmPlugin docs, for the productpage service.
const BASIC_AUTH_PLUGIN = `
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata:
  name: basic-auth
  namespace: bookinfo
spec:
  selector:
    matchLabels:
      app: productpage
  url: oci://ghcr.io/istio-ecosystem/wasm-extensions/basic_auth:1.12.0
  imagePullPolicy: IfNotPresent
  phase: AUTHN
  pluginConfig:
    basic_auth_rules:
      - prefix: "/productpage"
        request_methods:
          - "GET"
          - "POST"
        credentials:
          - "ok:test"
          - "YWRtaW4zOmFkbWluMw=="
`;

const plugin = (spec: string, namespace = "bookinfo") => `
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: stamp, namespace: ${namespace}}
spec:
  ${spec}
`;

describe("WasmPlugin", () => {
  it("the basic-auth plugin: the registry's module named by the url, pluginConfig as configuration, AUTHN as a priority offset", () => {
    const result = run(BASIC_AUTH_PLUGIN);
    expect(result.errors).toEqual([]);
    expect(result.resources).toEqual([
      {
        apiVersion: "wasmesh.io/v1alpha1",
        kind: "WasmPlugin",
        metadata: { name: "basic-auth-bookinfo" },
        spec: {
          module: "basic-auth",
          services: ["productpage.bookinfo"],
          configuration: {
            basic_auth_rules: [
              {
                prefix: "/productpage",
                request_methods: ["GET", "POST"],
                credentials: ["ok:test", "YWRtaW4zOmFkbWluMw=="],
              },
            ],
          },
          direction: "inbound",
          priority: 3_000_000,
        },
      },
    ]);
    expectValid(result);
    expect(result.warnings.map((w) => w.path)).toEqual(["spec.imagePullPolicy", "spec.phase"]);
    expect(result.warnings[1]?.message).toContain("after wasmesh's access check");
    expect(run(BASIC_AUTH_PLUGIN)).toEqual(result);
  });

  it("sha256 picks the module with that digest; without selector in the root namespace every service; CLIENT is outbound; pluginName is the root ID", () => {
    const result = run(
      plugin(
        `url: https://example.com/plugins/stamp.wasm
  sha256: ${"b2".repeat(32)}
  pluginName: stamp_root
  phase: STATS
  priority: -5
  match: [{mode: CLIENT}]
  failStrategy: FAIL_OPEN
  pluginConfig: {header: x-stamp}`,
        "istio-system",
      ),
    );
    expect(result.errors).toEqual([]);
    expect(result.resources).toEqual([
      {
        apiVersion: "wasmesh.io/v1alpha1",
        kind: "WasmPlugin",
        metadata: { name: "stamp-istio-system" },
        spec: {
          module: "header-stamp",
          services: ["*"],
          rootId: "stamp_root",
          configuration: { header: "x-stamp" },
          direction: "outbound",
          priority: 999_995, // STATS (1000000) + -5: after AUTHN and AUTHZ plugins, before unphased ones
        },
      },
    ]);
    expectValid(result);
    expect(result.warnings.map((w) => w.path)).toEqual(["spec.failStrategy"]);
  });

  it("a plugin without phase or priority has wasmesh's default order (no priority); an image digest in the url is a warning", () => {
    const result = run(
      plugin(`selector: {matchLabels: {app: reviews}}
  url: oci://ghcr.io/acme/header-stamp@sha256:${"c3".repeat(32)}`),
    );
    expect(result.errors).toEqual([]);
    expect(result.resources).toEqual([
      {
        apiVersion: "wasmesh.io/v1alpha1",
        kind: "WasmPlugin",
        metadata: { name: "stamp-bookinfo" },
        spec: {
          module: "header-stamp",
          services: ["reviews.bookinfo"],
          configuration: {},
          direction: "inbound",
        },
      },
    ]);
    expectValid(result);
    expect(result.warnings.map((w) => w.path)).toEqual(["spec.url"]);
  });

  it.each([
    [
      "a url naming no module of the registry",
      "selector: {matchLabels: {app: reviews}}\n  url: oci://ghcr.io/acme/rate-limit:1.0",
      "spec.url",
    ],
    [
      "a digest no module has",
      `selector: {matchLabels: {app: reviews}}\n  url: https://example.com/stamp.wasm\n  sha256: ${"d4".repeat(32)}`,
      "spec.sha256",
    ],
    ["no url", "selector: {matchLabels: {app: reviews}}\n  pluginConfig: {a: 1}", "spec.url"],
    [
      "a NETWORK plugin",
      "selector: {matchLabels: {app: reviews}}\n  url: oci://ghcr.io/acme/header-stamp:1\n  type: NETWORK",
      "spec.type",
    ],
    [
      "a gateway's selector",
      "selector: {matchLabels: {istio: ingressgateway}}\n  url: oci://ghcr.io/acme/header-stamp:1",
      "spec.selector.matchLabels",
    ],
    ["no selector outside the root namespace", "url: oci://ghcr.io/acme/header-stamp:1", "spec.selector"],
    [
      "targetRefs",
      "targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: bookinfo-gateway}]\n  url: oci://ghcr.io/acme/header-stamp:1",
      "spec.targetRefs",
    ],
    [
      "vmConfig",
      "selector: {matchLabels: {app: reviews}}\n  url: oci://ghcr.io/acme/header-stamp:1\n  vmConfig: {env: [{name: KEY, value: x}]}",
      "spec.vmConfig",
    ],
    [
      "both directions",
      "selector: {matchLabels: {app: reviews}}\n  url: oci://ghcr.io/acme/header-stamp:1\n  match: [{mode: CLIENT_AND_SERVER}]",
      "spec.match[0].mode",
    ],
    [
      "ports",
      "selector: {matchLabels: {app: reviews}}\n  url: oci://ghcr.io/acme/header-stamp:1\n  match: [{mode: SERVER, ports: [{number: 8080}]}]",
      "spec.match[0].ports",
    ],
    [
      "a priority beyond a phase's range",
      "selector: {matchLabels: {app: reviews}}\n  url: oci://ghcr.io/acme/header-stamp:1\n  priority: 2000000",
      "spec.priority",
    ],
  ])("a WasmPlugin with %s is an error naming the field, and produces nothing", (_, spec, path) => {
    const result = run(plugin(spec));
    expect(result.errors.map((e) => e.path)).toEqual([path]);
    expect(result.errors[0]).toMatchObject({ document: 0, kind: "WasmPlugin", name: "stamp" });
    expect(result.resources).toEqual([]);
  });

  it("the error for a module not in the registry says to push it, under the name the url gives", () => {
    const result = run(
      plugin("selector: {matchLabels: {app: reviews}}\n  url: oci://ghcr.io/acme/rate_limit:1.0"),
    );
    expect(result.errors[0]?.message).toContain("wasmesh modules push FILE --name rate-limit");
    // Without ConvertOptions.modules (the offline command), no WasmPlugin converts.
    expect(convert(yamlDocs(BASIC_AUTH_PLUGIN)).errors.map((e) => e.path)).toEqual(["spec.url"]);
  });

  it.each([
    ["oci://ghcr.io/istio-ecosystem/wasm-extensions/basic_auth:1.12.0", "basic-auth"],
    ["https://example.com/plugins/Header_Stamp.wasm", "header-stamp"],
    ["file:///opt/filters/stamp.wasm", "stamp"],
    [`ghcr.io/acme/stamp@sha256:${"e5".repeat(32)}`, "stamp"],
    ["localhost:5000/stamp", "stamp"],
  ])("the url %s names module %s", (url, name) => {
    expect(moduleNameOfUrl(url)).toBe(name);
  });
});
