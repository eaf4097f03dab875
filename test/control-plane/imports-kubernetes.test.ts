// A plain Kubernetes v1 Service converted into wasmesh's native Service (control-plane/imports/
// kubernetes.ts, issue 13): named as discovery names it, ports and protocols as discovery reads them
// (the same document in both modes), a warning per field a wasmesh Service does not hold, errors for
// what it cannot be; other v1 kinds not claimed; and `POST /v1/apply` of it, kept as an
// ImportedResource beside the Service it became.
import type * as k8s from "@kubernetes/client-node";
import type { Hono } from "hono";
import { afterEach, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { createApi } from "../../control-plane/api/index.ts";
import { convert, type ImportProblem, isForeign, sourceOf } from "../../control-plane/imports/index.ts";
import { mapService } from "../../control-plane/kubernetes/discovery.ts";
import { MetricsRegistry } from "../../control-plane/metrics.ts";
import { validateResource } from "../../control-plane/resources/index.ts";
import { openSqliteStore } from "../../control-plane/store/index.ts";
import { tempDir } from "../support/temp.ts";

const V = "wasmesh.io/v1alpha1";
const docs = (text: string): unknown[] => parseAllDocuments(text).map((d) => d.toJS());
const run = (text: string, namespace?: string) =>
  convert(docs(text), namespace !== undefined ? { namespace } : {});
const where = (problems: ImportProblem[]) => problems.map((p) => `${p.kind}/${p.name} ${p.path}`);

// What `kubectl get svc reviews -o yaml` prints, status and server-set fields included.
const REVIEWS = `apiVersion: v1
kind: Service
metadata:
  name: reviews
  namespace: bookinfo
  labels: {app: reviews, service: reviews}
  uid: 6b1d-4c1e
  resourceVersion: "1234"
spec:
  type: ClusterIP
  clusterIP: 10.96.12.7
  clusterIPs: [10.96.12.7]
  ipFamilies: [IPv4]
  ipFamilyPolicy: SingleStack
  internalTrafficPolicy: Cluster
  sessionAffinity: None
  selector: {app: reviews}
  ports:
  - {name: http, port: 9080, protocol: TCP, targetPort: 9080}
status:
  loadBalancer: {}
`;

describe("a Kubernetes v1 Service", () => {
  it("becomes the Service discovery would make, named <name>.<namespace>; what it does not hold is a warning", () => {
    const result = run(REVIEWS);
    expect(result.errors).toEqual([]);
    expect(result.resources).toEqual([
      {
        apiVersion: V,
        kind: "Service",
        metadata: { name: "reviews.bookinfo" },
        spec: { ports: [{ name: "http", port: 9080, protocol: "http" }] },
      },
    ]);
    for (const r of result.resources) expect(validateResource(r)).toEqual({ ok: true, resource: r });
    // Discovery's document for the same object, in Kubernetes mode.
    const service = docs(REVIEWS)[0] as k8s.V1Service;
    expect(mapService(service)).toEqual({ ok: true, resource: result.resources[0] });
    expect(result.produced).toEqual([
      {
        document: 0,
        source: { apiVersion: "v1", kind: "Service", namespace: "bookinfo", name: "reviews" },
        resources: [{ kind: "Service", name: "reviews.bookinfo" }],
      },
    ]);
    expect(where(result.warnings).sort()).toEqual(
      [
        "spec.clusterIP",
        "spec.clusterIPs",
        "spec.ipFamilies",
        "spec.ipFamilyPolicy",
        "spec.internalTrafficPolicy",
        "spec.sessionAffinity",
        "spec.selector",
        "spec.ports[0].targetPort",
      ]
        .map((p) => `Service/reviews ${p}`)
        .sort(),
    );
    expect(result.warnings.find((w) => w.path === "spec.selector")?.message).toMatch(
      /not supported, ignored: selects pods, which a wasmesh Service does not list/,
    );
  });

  it("universal without a namespace, <name>.<namespace> with --namespace, as Istio's hosts are named", () => {
    const bare = `apiVersion: v1
kind: Service
metadata: {name: ratings}
spec:
  ports: [{name: http-api, port: 9080}]
`;
    expect(run(bare).resources.map((r) => r.metadata.name)).toEqual(["ratings"]);
    expect(run(bare, "prod").resources.map((r) => r.metadata.name)).toEqual(["ratings.prod"]);
    expect(run(bare, "prod").produced[0]?.source).toEqual({
      apiVersion: "v1",
      kind: "Service",
      namespace: "prod",
      name: "ratings",
    });
  });

  it("takes each port's protocol from its appProtocol, else its name; keeps non-HTTP ports as tcp with a warning", () => {
    const result = run(`apiVersion: v1
kind: Service
metadata: {name: shop, namespace: web}
spec:
  ports:
  - {name: web, port: 80, appProtocol: http}
  - {name: api, port: 8080, appProtocol: kubernetes.io/h2c}
  - {name: grpc-orders, port: 9090}
  - {name: tcp-db, port: 5432}
  - {name: tls, port: 443, appProtocol: https}
  - {name: metrics, port: 9100}
  - {name: cache, port: 6379, appProtocol: memcache}
  - {name: dns, port: 53, protocol: UDP}
`);
    expect(result.errors).toEqual([]);
    expect(result.resources[0]?.spec).toEqual({
      ports: [
        { name: "web", port: 80, protocol: "http" },
        { name: "api", port: 8080, protocol: "grpc" },
        { name: "grpc-orders", port: 9090, protocol: "grpc" },
        { name: "tcp-db", port: 5432, protocol: "tcp" },
        { name: "tls", port: 443, protocol: "tcp" },
        { name: "metrics", port: 9100, protocol: "http" },
        { name: "cache", port: 6379, protocol: "http" },
      ],
    });
    const warned = Object.fromEntries(result.warnings.map((w) => [w.path, w.message]));
    expect(warned["spec.ports[3].name"]).toMatch(
      /kept as a tcp port, which the Service declares but no sidecar routes/,
    );
    expect(warned["spec.ports[4].appProtocol"]).toMatch(/kept as a tcp port/);
    expect(warned["spec.ports[5].name"]).toMatch(/taken as http/);
    expect(warned["spec.ports[6].appProtocol"]).toMatch(/'memcache' is no protocol wasmesh knows/);
    expect(warned["spec.ports[7].protocol"]).toMatch(/UDP: left out, the mesh carries TCP only/);
    // The same ports as discovery's.
    const service = docs(`apiVersion: v1
kind: Service
metadata: {name: shop, namespace: web}
spec:
  ports:
  - {name: tcp-db, port: 5432}
  - {name: metrics, port: 9100}
  - {name: dns, port: 53, protocol: UDP}
`)[0] as k8s.V1Service;
    const mapped = mapService(service);
    expect(mapped.ok && mapped.resource.spec.ports).toEqual([
      { name: "tcp-db", port: 5432, protocol: "tcp" },
      { name: "metrics", port: 9100, protocol: "http" },
    ]);
  });

  it("names an unnamed port port-<number>; NodePort and LoadBalancer convert with a warning", () => {
    const result = run(`apiVersion: v1
kind: Service
metadata: {name: front}
spec:
  type: LoadBalancer
  loadBalancerSourceRanges: [10.0.0.0/8]
  externalTrafficPolicy: Local
  ports: [{port: 8080, nodePort: 30080, appProtocol: http}]
`);
    expect(result.errors).toEqual([]);
    expect(result.resources[0]?.spec).toEqual({
      ports: [{ name: "port-8080", port: 8080, protocol: "http" }],
    });
    expect(where(result.warnings).sort()).toEqual(
      ["spec.type", "spec.loadBalancerSourceRanges", "spec.externalTrafficPolicy", "spec.ports[0].nodePort"]
        .map((p) => `Service/front ${p}`)
        .sort(),
    );
  });

  it("refuses an ExternalName service, one without TCP ports, and a bad port, producing nothing", () => {
    const result = run(`apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  type: ExternalName
  externalName: db.example.com
---
apiVersion: v1
kind: Service
metadata: {name: headless}
spec:
  clusterIP: None
  selector: {app: headless}
---
apiVersion: v1
kind: Service
metadata: {name: dns}
spec:
  ports: [{name: dns, port: 53, protocol: UDP}]
---
apiVersion: v1
kind: Service
metadata: {name: twice}
spec:
  ports: [{name: http, port: 80}, {name: http, port: 8080}]
`);
    expect(result.resources).toEqual([]);
    expect(where(result.errors)).toEqual([
      "Service/db spec.externalName",
      "Service/db spec.type",
      "Service/headless spec.ports",
      "Service/dns spec.ports",
      "Service/twice spec.ports[1].name",
    ]);
  });

  it("claims no other v1 kind: a ConfigMap is not converted, and apply's parser leaves it to Kubernetes", () => {
    const configMap = { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "settings" }, data: {} };
    const service = { apiVersion: "v1", kind: "Service", metadata: { name: "a" }, spec: {} };
    expect(isForeign(configMap)).toBe(false);
    expect(isForeign(service)).toBe(true);
    expect(isForeign({ ...service, apiVersion: "apps/v1" })).toBe(false);
    expect(sourceOf(service, "ns")).toEqual({
      apiVersion: "v1",
      kind: "Service",
      namespace: "ns",
      name: "a",
    });
    const result = convert([configMap]);
    expect(where(result.errors)).toEqual(["ConfigMap/settings apiVersion"]);
  });

  it("collides with an Istio ServiceEntry of the same service: one Service per name", () => {
    const result = run(`${REVIEWS}---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews]
  location: MESH_INTERNAL
  resolution: DNS
  ports: [{name: http, number: 9080, protocol: HTTP}]
`);
    expect(result.errors.map((e) => `${e.kind}/${e.name} ${e.path}: ${e.message}`)).toEqual([
      expect.stringMatching(
        /^ServiceEntry\/reviews metadata.name: produces Service\/reviews.bookinfo, which document 0 produces too/,
      ),
    ]);
  });
});

describe("POST /v1/apply of a Kubernetes Service (universal mode)", () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  // biome-ignore lint/suspicious/noExplicitAny: assertions navigate arbitrary JSON answers
  type Json = any;
  const call = async (app: Hono, method: string, path: string, yaml?: string) => {
    const response = await app.request(path, {
      method,
      ...(yaml !== undefined ? { body: yaml, headers: { "content-type": "application/yaml" } } : {}),
    });
    return { status: response.status, body: (await response.json()) as Json };
  };

  it("stores the Service it becomes beside the original; applying it again changes nothing; delete removes both", async () => {
    const store = await openSqliteStore({ dataDir: tempDir("imports-kubernetes") });
    cleanups.push(() => store.close());
    const app = createApi({
      auth: "none",
      store,
      metrics: new MetricsRegistry(),
      version: "test",
      log: () => {},
    });
    const first = await call(app, "POST", "/v1/apply", REVIEWS);
    expect(first.status).toBe(200);
    expect(first.body.results.map((r: Json) => `${r.kind}/${r.name} ${r.action}`).sort()).toEqual([
      "ImportedResource/service-reviews-bookinfo created",
      "Service/reviews.bookinfo created",
    ]);
    expect(first.body.warnings.length).toBeGreaterThan(0);
    const kept = (await call(app, "GET", "/v1/importedresources/service-reviews-bookinfo")).body;
    expect(kept.spec.source).toEqual({
      apiVersion: "v1",
      kind: "Service",
      namespace: "bookinfo",
      name: "reviews",
    });
    expect(kept.spec.produced).toEqual([{ kind: "Service", name: "reviews.bookinfo" }]);
    const again = await call(app, "POST", "/v1/apply", REVIEWS);
    expect(again.body.results.map((r: Json) => r.action)).toEqual(["unchanged", "unchanged"]);
    expect((await call(app, "DELETE", "/v1/importedresources/service-reviews-bookinfo")).status).toBeLessThan(
      300,
    );
    expect((await call(app, "GET", "/v1/services/reviews.bookinfo")).status).toBe(404);
  });
});
