// Kubernetes discovery's mapping (control-plane/kubernetes/discovery.ts), without an API server:
// Services, EndpointSlices and Pods as the API server returns them become wasmesh Service and Workload
// documents that pass the model's validation and references; what cannot be mapped is skipped with
// the object named and why. The watches run against a real API server in test/kubernetes/discovery.test.ts.
import type * as k8s from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import {
  type ClusterObjects,
  discoverResources,
  labelSelector,
  mapService,
  meshNamespaces,
  portProtocol,
} from "../../control-plane/kubernetes/discovery.ts";
import { type Resource, validateReferences, validateResource } from "../../control-plane/resources/index.ts";

const NS = "bookinfo";

function service(
  name: string,
  ports: k8s.V1ServicePort[],
  extra: Partial<k8s.V1ServiceSpec> = {},
): k8s.V1Service {
  return { metadata: { name, namespace: NS }, spec: { selector: { app: name }, ports, ...extra } };
}

function pod(
  name: string,
  labels: Record<string, string>,
  annotations: Record<string, string> = {},
  namespace = NS,
): k8s.V1Pod {
  return { metadata: { name, namespace, labels, annotations }, spec: { containers: [] } };
}

function slice(
  serviceName: string,
  ports: k8s.DiscoveryV1EndpointPort[],
  endpoints: { pod: string; ip: string; ready?: boolean; zone?: string }[],
  namespace = NS,
  name = `${serviceName}-abcde`,
): k8s.V1EndpointSlice {
  return {
    metadata: { name, namespace, labels: { "kubernetes.io/service-name": serviceName } },
    addressType: "IPv4",
    ports,
    endpoints: endpoints.map((e) => ({
      addresses: [e.ip],
      conditions: e.ready === undefined ? {} : { ready: e.ready },
      targetRef: { kind: "Pod", name: e.pod, namespace },
      ...(e.zone !== undefined ? { zone: e.zone } : {}),
    })),
  };
}

const SIDECAR = { "wasmesh.io/sidecar": "injected", "wasmesh.io/inbound-port": "15006" };
const REVIEWS_PORTS: k8s.V1ServicePort[] = [
  { name: "http", port: 9080, targetPort: 9080 },
  { name: "grpc", port: 9090, targetPort: 9090 },
];
const SLICE_PORTS: k8s.DiscoveryV1EndpointPort[] = [
  { name: "grpc", port: 19090, protocol: "TCP" },
  { name: "http", port: 19080, protocol: "TCP" },
];

function canary(): ClusterObjects {
  return {
    namespaces: new Set([NS]),
    services: [service("reviews", REVIEWS_PORTS)],
    endpointSlices: [
      slice("reviews", SLICE_PORTS, [
        { pod: "reviews-v1-7f9c-a1", ip: "10.1.0.11", zone: "zone-a" },
        { pod: "reviews-v2-5d8b-b2", ip: "10.1.0.12", ready: true },
      ]),
    ],
    pods: [
      {
        ...pod("reviews-v1-7f9c-a1", { app: "reviews", version: "v1", "pod-template-hash": "7f9c" }, SIDECAR),
        spec: { containers: [], serviceAccountName: "bookinfo-reviews" },
      },
      pod("reviews-v2-5d8b-b2", { app: "reviews", version: "v2", "pod-template-hash": "5d8b" }),
    ],
  };
}

describe("mapService", () => {
  it("names a Service <name>.<namespace> with its ports by name and number", () => {
    const mapped = mapService(
      service("reviews", [
        ...REVIEWS_PORTS,
        { port: 9100, appProtocol: "kubernetes.io/h2c" },
        { name: "tcp-db", port: 5432 },
        { name: "dns", port: 53, protocol: "UDP" },
      ]),
    );
    expect(mapped).toEqual({
      ok: true,
      resource: {
        apiVersion: "wasmesh.io/v1alpha1",
        kind: "Service",
        metadata: { name: "reviews.bookinfo" },
        spec: {
          ports: [
            { name: "http", port: 9080, protocol: "http" },
            { name: "grpc", port: 9090, protocol: "grpc" },
            { name: "port-9100", port: 9100, protocol: "grpc" },
            { name: "tcp-db", port: 5432, protocol: "tcp" },
          ],
        },
      },
    });
    if (mapped.ok) expect(validateResource(mapped.resource).ok).toBe(true);
  });

  it("reads the protocol from appProtocol first, then the name's prefix, as Istio; http by default", () => {
    const cases: [k8s.V1ServicePort, string][] = [
      [{ port: 1, appProtocol: "grpc", name: "http-x" }, "grpc"],
      [{ port: 1, appProtocol: "kubernetes.io/h2c" }, "grpc"],
      [{ port: 1, appProtocol: "HTTP" }, "http"],
      [{ port: 1, appProtocol: "tcp", name: "http" }, "tcp"],
      [{ port: 1, appProtocol: "https" }, "tcp"],
      [{ port: 1, name: "grpc-api" }, "grpc"],
      [{ port: 1, name: "http2-web" }, "grpc"],
      [{ port: 1, name: "tcp-mysql" }, "tcp"],
      [{ port: 1, name: "tls" }, "tcp"],
      [{ port: 1, name: "web" }, "http"],
      [{ port: 1, name: "grpcish" }, "http"],
      [{ port: 1, appProtocol: "example.com/custom", name: "grpc-x" }, "grpc"],
      [{ port: 1 }, "http"],
    ];
    for (const [port, protocol] of cases) expect(portProtocol(port), JSON.stringify(port)).toBe(protocol);
  });

  it("says why a Service is not the mesh's", () => {
    expect(mapService(service("ext", [], { type: "ExternalName", externalName: "example.com" }))).toEqual({
      ok: false,
      reason: "an ExternalName service has no endpoints of the mesh",
    });
    expect(mapService(service("headless", [], { clusterIP: "None" }))).toEqual({
      ok: false,
      reason: "it has no ports (a headless service without ports has nothing to route to)",
    });
    expect(mapService(service("dns", [{ name: "dns", port: 53, protocol: "UDP" }]))).toEqual({
      ok: false,
      reason: "it has no TCP port (the mesh serves TCP only)",
    });
    // 63 + 1 + 52: within Kubernetes' limits, past what the routing filter's names allow.
    const long = {
      ...service("a".repeat(63), REVIEWS_PORTS),
      metadata: { name: "a".repeat(63), namespace: "b".repeat(52) },
    };
    const refused = mapService(long);
    expect(refused.ok).toBe(false);
    if (!refused.ok)
      expect(refused.reason).toMatch(/^its wasmesh document would be invalid: metadata\.name: too long/);
  });
});

describe("discoverResources", () => {
  it("makes a Workload of each ready pod endpoint, with the pod's labels, sidecar port and address", () => {
    const { resources, skipped } = discoverResources(canary());
    expect(skipped).toEqual([]);
    expect(resources.services.map((s) => s.metadata.name)).toEqual(["reviews.bookinfo"]);
    expect(resources.workloads).toEqual([
      {
        apiVersion: "wasmesh.io/v1alpha1",
        kind: "Workload",
        metadata: { name: "reviews-v1-7f9c-a1.bookinfo" },
        // The sidecar's inbound port; the endpoint port of the Service's first port ("http") behind it.
        spec: {
          service: "reviews.bookinfo",
          address: "10.1.0.11",
          port: 15006,
          appPort: 19080,
          mtls: true,
          // The pod's service account: the identity its certificate names.
          serviceAccount: "bookinfo-reviews",
          labels: { app: "reviews", version: "v1" },
          zone: "zone-a",
        },
      },
      {
        apiVersion: "wasmesh.io/v1alpha1",
        kind: "Workload",
        metadata: { name: "reviews-v2-5d8b-b2.bookinfo" },
        // No sidecar: called on the app's own port.
        spec: {
          service: "reviews.bookinfo",
          address: "10.1.0.12",
          port: 19080,
          // A pod that names none runs as the namespace's "default".
          serviceAccount: "default",
          labels: { app: "reviews", version: "v2" },
        },
      },
    ]);
    const all = [...resources.services, ...resources.workloads] as Resource[];
    for (const r of all) expect(validateResource(r).ok, r.metadata.name).toBe(true);
    // A v2 subset of the canary's selects the v2 pod: no warning, no error.
    const route = validateResource({
      apiVersion: "wasmesh.io/v1alpha1",
      kind: "Route",
      metadata: { name: "reviews" },
      spec: {
        service: "reviews.bookinfo",
        rules: [
          {
            name: "canary",
            destinations: [
              { service: "reviews.bookinfo", subset: { version: "v1" }, weight: 90 },
              { service: "reviews.bookinfo", subset: { version: "v2" }, weight: 10 },
            ],
          },
        ],
      },
    });
    if (!route.ok) throw new Error(JSON.stringify(route.errors));
    expect(validateReferences([...all, route.resource])).toEqual({ errors: [], warnings: [] });
  });

  it("ignores the namespaces outside the mesh, and endpoints that are not ready", () => {
    const objects = canary();
    const other = {
      ...objects,
      services: [
        ...objects.services,
        { ...service("ratings", REVIEWS_PORTS), metadata: { name: "ratings", namespace: "default" } },
      ],
      endpointSlices: [
        slice("reviews", SLICE_PORTS, [
          { pod: "reviews-v1-7f9c-a1", ip: "10.1.0.11", ready: false },
          { pod: "reviews-v2-5d8b-b2", ip: "10.1.0.12" },
        ]),
        slice("ratings", SLICE_PORTS, [{ pod: "ratings-1", ip: "10.2.0.1" }], "default"),
      ],
      pods: [...objects.pods, pod("ratings-1", { app: "ratings" }, {}, "default")],
    };
    const { resources, skipped } = discoverResources(other);
    expect(skipped).toEqual([]);
    expect(resources.services.map((s) => s.metadata.name)).toEqual(["reviews.bookinfo"]);
    expect(resources.workloads.map((w) => w.metadata.name)).toEqual(["reviews-v2-5d8b-b2.bookinfo"]);
    expect(discoverResources({ ...objects, namespaces: new Set() }).resources).toEqual({
      services: [],
      workloads: [],
    });
  });

  it("makes one Workload per Service of a pod, named after the pod for the service its labels name", () => {
    const objects: ClusterObjects = {
      namespaces: new Set([NS]),
      services: [
        service("reviews", REVIEWS_PORTS),
        service("all", [{ name: "http", port: 80 }]),
        service("ratings", [{ name: "http", port: 9080 }]),
      ],
      endpointSlices: [
        slice("reviews", SLICE_PORTS, [{ pod: "reviews-1", ip: "10.1.0.1" }]),
        slice(
          "all",
          [{ name: "http", port: 19080 }],
          [
            { pod: "reviews-1", ip: "10.1.0.1" },
            { pod: "other-1", ip: "10.1.0.2" },
            { pod: "ratings-1", ip: "10.1.0.3" },
          ],
        ),
        // ratings-1's own service by its app label, as its token's (token-review.ts podService).
        slice("ratings", [{ name: "http", port: 19080 }], [{ pod: "ratings-1", ip: "10.1.0.3" }]),
        // The same endpoint in a second slice of the Service (slices overlap while they churn): once.
        slice("reviews", SLICE_PORTS, [{ pod: "reviews-1", ip: "10.1.0.1" }], NS, "reviews-fghij"),
      ],
      pods: [
        pod("reviews-1", { app: "reviews", "wasmesh.io/service": "reviews" }, SIDECAR),
        pod("other-1", { app: "other" }),
        pod("ratings-1", { app: "ratings" }),
      ],
    };
    const { resources, skipped } = discoverResources(objects);
    expect(skipped).toEqual([]);
    expect(resources.workloads.map((w) => [w.metadata.name, w.spec.service])).toEqual([
      ["other-1.bookinfo", "all.bookinfo"],
      ["ratings-1.all.bookinfo", "all.bookinfo"],
      ["ratings-1.bookinfo", "ratings.bookinfo"],
      ["reviews-1.all.bookinfo", "all.bookinfo"],
      ["reviews-1.bookinfo", "reviews.bookinfo"],
    ]);
    expect(validateReferences([...resources.services, ...resources.workloads]).errors).toEqual([]);
  });

  it("skips what it cannot map, naming the object and why, and keeps the rest", () => {
    const objects: ClusterObjects = {
      namespaces: new Set([NS]),
      services: [
        service("reviews", REVIEWS_PORTS),
        service("ext", [], { type: "ExternalName", externalName: "x.example" }),
      ],
      endpointSlices: [
        {
          ...slice("reviews", SLICE_PORTS, [
            { pod: "good", ip: "10.1.0.1" },
            { pod: "bad-port", ip: "10.1.0.2" },
            { pod: "unknown", ip: "10.1.0.3" },
          ]),
          endpoints: [
            ...(slice("reviews", SLICE_PORTS, [
              { pod: "good", ip: "10.1.0.1" },
              { pod: "bad-port", ip: "10.1.0.2" },
              { pod: "unknown", ip: "10.1.0.3" },
            ]).endpoints ?? []),
            { addresses: ["192.0.2.1"], conditions: {} },
          ],
        },
        slice(
          "reviews",
          [
            { name: "metrics", port: 9102 },
            { name: "admin", port: 9103 },
          ],
          [{ pod: "good", ip: "10.1.0.1" }],
          NS,
          "reviews-other",
        ),
      ],
      pods: [
        pod("good", { app: "reviews" }),
        pod(
          "bad-port",
          { app: "reviews" },
          { "wasmesh.io/sidecar": "injected", "wasmesh.io/inbound-port": "99999" },
        ),
      ],
    };
    const { resources, skipped } = discoverResources(objects);
    expect(resources.workloads.map((w) => w.metadata.name)).toEqual(["good.bookinfo"]);
    expect(skipped).toEqual([
      { object: "Service bookinfo/ext", reason: "an ExternalName service has no endpoints of the mesh" },
      {
        object: "Pod bookinfo/unknown (Service bookinfo/reviews)",
        reason: "the Pod is not known (yet) in a mesh namespace",
      },
      {
        object: "EndpointSlice bookinfo/reviews-abcde endpoint 192.0.2.1",
        reason: "its target is not a Pod",
      },
      {
        object: "EndpointSlice bookinfo/reviews-other",
        reason: 'it has no port for the Service\'s port "http"',
      },
      {
        object: "Pod bookinfo/bad-port (Service bookinfo/reviews)",
        reason: 'its wasmesh.io/inbound-port annotation "99999" is no port number',
      },
    ]);
  });
});

describe("the mesh's namespaces", () => {
  const namespace = (
    name: string,
    labels: Record<string, string> = {},
    annotations?: Record<string, string>,
  ) => ({
    metadata: { name, labels, ...(annotations ? { annotations } : {}) },
  });

  it("evaluates a label selector as the API server does", () => {
    const s = labelSelector("a=b,c!=d,e in (x, y),f notin (z),g,!h");
    expect(s({ a: "b", e: "x", g: "" })).toBe(true);
    expect(s({ a: "b", c: "d", e: "x", g: "" })).toBe(false);
    expect(s({ a: "b", e: "w", g: "" })).toBe(false);
    expect(s({ a: "b", e: "y", f: "z", g: "" })).toBe(false);
    expect(s({ a: "b", e: "y", g: "", h: "1" })).toBe(false);
    expect(s({ a: "b", e: "y" })).toBe(false);
    expect(
      labelSelector("wasmesh.io/sidecar-injection==enabled")({ "wasmesh.io/sidecar-injection": "enabled" }),
    ).toBe(true);
    expect(labelSelector("")({})).toBe(true);
    expect(() => labelSelector("a in b")).toThrow(/is no label selector/);
  });

  it("are those the selector selects, then, without a wasmesh label, other meshes' and those with injected pods", () => {
    const injected = (ns: string, annotations: Record<string, string> = {}): k8s.V1Pod => ({
      metadata: {
        name: "p",
        namespace: ns,
        annotations: { "wasmesh.io/sidecar": "injected", ...annotations },
      },
    });
    const consul = { "consul.hashicorp.com/connect-inject": "true" };
    const found = meshNamespaces(
      [
        namespace("bookinfo", { "wasmesh.io/sidecar-injection": "enabled" }),
        namespace("istio", { "istio-injection": "enabled" }),
        namespace("canary", { "istio.io/rev": "canary" }),
        namespace("kuma", { "kuma.io/sidecar-injection": "enabled" }),
        namespace("kuma-old", {}, { "kuma.io/sidecar-injection": "enabled" }),
        namespace("consul"),
        namespace("plain"),
        namespace("off", { "wasmesh.io/sidecar-injection": "disabled", "istio-injection": "enabled" }),
        namespace("closed", { "istio-injection": "disabled", "kuma.io/sidecar-injection": "enabled" }),
        namespace("kube-system", { "istio-injection": "enabled" }),
      ],
      [
        injected("consul", consul),
        injected("off", consul),
        // Injected once (its namespace was labelled), with no marker now: not a reason.
        injected("plain"),
      ],
    );
    expect(Object.fromEntries(found)).toEqual({
      bookinfo: "selected by wasmesh.io/sidecar-injection=enabled",
      istio: "another mesh's marker: Istio's namespace label istio-injection=enabled",
      canary: "another mesh's marker: Istio's namespace label istio.io/rev=canary",
      kuma: "another mesh's marker: Kuma's namespace label kuma.io/sidecar-injection=enabled",
      "kuma-old": "another mesh's marker: Kuma's namespace annotation kuma.io/sidecar-injection: \"enabled\"",
      consul:
        "pod p has the sidecar for another mesh's marker: Consul's pod annotation consul.hashicorp.com/connect-inject: \"true\"",
    });
    // Another selector replaces wasmesh's label; other meshes' markers still count.
    expect([
      ...meshNamespaces(
        [namespace("a", { team: "x" }), namespace("istio", { "istio-injection": "enabled" })],
        [],
        "team=x",
      ).keys(),
    ]).toEqual(["a", "istio"]);
  });
});
