// Applying other meshes' YAML through the API (issue 13), in process against a real SQLite store:
// the originals are kept as ImportedResources beside what they became, each apply converts every
// kept original again (so a VirtualService may name the subsets of a DestinationRule applied
// earlier), the same file applied twice changes nothing and pushes nothing, what an original no
// longer produces is deleted, and deleting an original deletes what it produced.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Hono } from "hono";
import { afterEach, describe, expect, it } from "vitest";
import { createApi } from "../../control-plane/api/index.ts";
import { MetricsRegistry } from "../../control-plane/metrics.ts";
import { openSqliteStore, type ResourceStore } from "../../control-plane/store/index.ts";
import { tempDir } from "../support/temp.ts";

const DATA = join(import.meta.dirname, "testdata", "istio");
const SERVICES = readFileSync(join(DATA, "services.yaml"), "utf8");
const BOOKINFO = readFileSync(join(DATA, "bookinfo-routing.yaml"), "utf8");

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Harness {
  app: Hono;
  store: ResourceStore;
  /** Revisions onChange was called with: one per committed write, each a push to the proxies. */
  changes: number[];
}

async function setup(): Promise<Harness> {
  const store = await openSqliteStore({ dataDir: tempDir("imports-apply") });
  cleanups.push(() => store.close());
  const changes: number[] = [];
  const app = createApi({
    auth: "none",
    store,
    metrics: new MetricsRegistry(),
    version: "test",
    onChange: (revision) => changes.push(revision),
    log: () => undefined,
  });
  return { app, store, changes };
}

// biome-ignore lint/suspicious/noExplicitAny: assertions navigate arbitrary JSON answers
type Json = any;

async function call(
  app: Hono,
  method: string,
  path: string,
  yaml?: string,
): Promise<{ status: number; body: Json }> {
  const response = await app.request(path, {
    method,
    ...(yaml !== undefined ? { body: yaml, headers: { "content-type": "application/yaml" } } : {}),
  });
  return { status: response.status, body: await response.json() };
}

const apply = (app: Hono, yaml: string, query = "") => call(app, "POST", `/v1/apply${query}`, yaml);
const names = async (app: Hono, plural: string): Promise<string[]> =>
  (await call(app, "GET", `/v1/${plural}`)).body.items.map((r: Json) => r.metadata.name);

/** The request's results as `kind/name action`. */
const actions = (body: Json): string[] => body.results.map((r: Json) => `${r.kind}/${r.name} ${r.action}`);

const REVIEWS_RULE = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
`;
const reviewsSplit = (v1: number, v2: number) => `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - {destination: {host: reviews, subset: v1}, weight: ${v1}}
    - {destination: {host: reviews, subset: v2}, weight: ${v2}}
`;

describe("POST /v1/apply of other meshes' resources", () => {
  it("keeps each original beside what it became; applying the same file again changes and pushes nothing", async () => {
    const { app, changes } = await setup();
    expect((await apply(app, SERVICES)).status).toBe(200);
    const first = await apply(app, BOOKINFO);
    expect(first.status).toBe(200);
    expect(actions(first.body)).toEqual(
      expect.arrayContaining([
        "Route/reviews created",
        "Route/ratings created",
        "CircuitBreaker/ratings-v1 created",
        "ImportedResource/destinationrule-reviews created",
        "ImportedResource/virtualservice-reviews created",
      ]),
    );
    expect(await names(app, "importedresources")).toEqual([
      "destinationrule-ratings",
      "destinationrule-reviews",
      "virtualservice-ratings",
      "virtualservice-reviews",
    ]);
    const kept = (await call(app, "GET", "/v1/importedresources/virtualservice-reviews")).body;
    expect(kept.spec.source).toEqual({
      apiVersion: "networking.istio.io/v1beta1",
      kind: "VirtualService",
      name: "reviews",
    });
    expect(kept.spec.document.spec.hosts).toEqual(["reviews"]);
    expect(kept.spec.produced).toEqual([{ kind: "Route", name: "reviews" }]);
    const route = (await call(app, "GET", "/v1/routes/reviews")).body;
    expect(route.spec.rules[0].destinations).toEqual([{ service: "reviews", subset: { version: "v2" } }]);

    const pushes = changes.length;
    const again = await apply(app, BOOKINFO);
    expect(again.status).toBe(200);
    expect(again.body.revision).toBe(first.body.revision);
    expect(new Set(again.body.results.map((r: Json) => r.action))).toEqual(new Set(["unchanged"]));
    expect(changes.length).toBe(pushes);
  });

  it("converts kept originals with the new ones: a VirtualService names the subsets of a DestinationRule applied before", async () => {
    const { app } = await setup();
    await apply(app, SERVICES);
    expect((await apply(app, REVIEWS_RULE)).status).toBe(200);
    // Nothing to produce for a DestinationRule without policies: kept, producing nothing.
    expect(await names(app, "routes")).toEqual([]);
    const split = await apply(app, reviewsSplit(90, 10));
    expect(split.status).toBe(200);
    const route = (await call(app, "GET", "/v1/routes/reviews")).body;
    expect(route.spec.rules[0].destinations).toEqual([
      { service: "reviews", subset: { version: "v1" }, weight: 90 },
      { service: "reviews", subset: { version: "v2" }, weight: 10 },
    ]);
    // Changing the weights configures the one Route.
    const shift = await apply(app, reviewsSplit(0, 100));
    expect(actions(shift.body)).toEqual(
      expect.arrayContaining([
        "Route/reviews configured",
        "ImportedResource/virtualservice-reviews configured",
      ]),
    );

    // The subsets the route needs cannot go away under it: the kept VirtualService is named.
    const without = await apply(
      app,
      `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
`,
    );
    expect(without.status).toBe(400);
    const detail = without.body.error.details.find((d: Json) => d.kind === "VirtualService");
    expect(detail).toMatchObject({ name: "reviews", path: "spec.http[0].route[1].destination.subset" });
    expect(detail.document).toBeUndefined();
    expect(detail.message).toMatch(/kept from an earlier apply/);
    expect(
      (await call(app, "GET", "/v1/importedresources/destinationrule-reviews")).body.spec.document.spec
        .subsets,
    ).toHaveLength(2);
  });

  it("deletes what an original no longer produces, and everything it produced with it", async () => {
    const { app } = await setup();
    await apply(app, SERVICES);
    await apply(app, BOOKINFO);
    expect(await names(app, "circuitbreakers")).toEqual(["ratings", "ratings-v1"]);
    // The ratings rule without its outlier detection: the breaker it made goes.
    const ratings = `apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: ratings}
spec:
  host: ratings
  subsets:
  - {name: v1, labels: {version: v1}}
`;
    const changed = await apply(app, ratings);
    expect(changed.status).toBe(200);
    expect(actions(changed.body)).toEqual(
      expect.arrayContaining(["CircuitBreaker/ratings deleted", "CircuitBreaker/ratings-v1 deleted"]),
    );
    expect(await names(app, "circuitbreakers")).toEqual([]);
    // The kept VirtualService's Route (whose subsets select no workload here) is no news of this apply.
    expect(changed.body.warnings.filter((w: Json) => w.kind === "Route")).toEqual([]);

    // A produced resource cannot be deleted on its own: its original still says it exists.
    const alone = await call(app, "DELETE", "/v1/routes/reviews");
    expect(alone.status).toBe(400);
    expect(alone.body.error.details[0]).toMatchObject({
      kind: "ImportedResource",
      name: "virtualservice-reviews",
      path: "spec.produced[0]",
    });

    const deleted = await call(app, "DELETE", "/v1/importedresources/virtualservice-reviews");
    expect(deleted.status).toBe(200);
    expect(deleted.body.deleted.metadata.name).toBe("virtualservice-reviews");
    expect(actions(deleted.body)).toEqual([
      "Route/reviews deleted",
      "ImportedResource/virtualservice-reviews deleted",
    ]);
    expect(await names(app, "routes")).toEqual(["ratings"]);
    expect(await names(app, "importedresources")).not.toContain("virtualservice-reviews");
    expect((await call(app, "DELETE", "/v1/importedresources/virtualservice-reviews")).status).toBe(404);
  });

  it("refuses, naming the field, what it cannot carry, and stores nothing of the request", async () => {
    const { app, store } = await setup();
    await apply(app, SERVICES);
    const before = await store.revision();
    const bad = await apply(
      app,
      `${REVIEWS_RULE}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /api}}]
    redirect: {uri: /v2}
`,
    );
    expect(bad.status).toBe(400);
    expect(bad.body.error.details).toEqual([
      expect.objectContaining({
        document: 1,
        kind: "VirtualService",
        name: "reviews",
        path: "spec.http[0].redirect",
      }),
    ]);
    expect(await store.revision()).toBe(before);
    expect(await names(app, "importedresources")).toEqual([]);
  });

  it("reports the fields it does not carry as warnings, and fails on them with strict", async () => {
    const { app } = await setup();
    await apply(app, SERVICES);
    const mirrored = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
  - route: [{destination: {host: ratings}}]
    mirror: {host: ratings}
`;
    const strict = await apply(app, mirrored, "?strict=true");
    expect(strict.status).toBe(400);
    expect(strict.body.error.details).toEqual([
      expect.objectContaining({ document: 0, path: "spec.http[0].mirror" }),
    ]);
    expect(await names(app, "routes")).toEqual([]);

    const lenient = await apply(app, mirrored);
    expect(lenient.status).toBe(200);
    expect(lenient.body.warnings).toEqual([
      expect.objectContaining({
        document: 0,
        kind: "VirtualService",
        name: "ratings",
        path: "spec.http[0].mirror",
      }),
    ]);
    const kept = (await call(app, "GET", "/v1/importedresources/virtualservice-ratings")).body;
    expect(kept.spec.warnings).toEqual([
      expect.stringMatching(/^VirtualService\/ratings: spec\.http\[0\]\.mirror: /),
    ]);
  });

  it("resolves short hosts in the namespace given, and keeps it for later conversions", async () => {
    const { app } = await setup();
    await apply(
      app,
      `apiVersion: wasmesh.io/v1alpha1
kind: Service
metadata: {name: reviews.bookinfo}
spec: {ports: [{name: http, port: 9080, protocol: http}]}
`,
    );
    expect((await apply(app, REVIEWS_RULE, "?namespace=bookinfo")).status).toBe(200);
    const split = await apply(app, reviewsSplit(50, 50), "?namespace=bookinfo");
    expect(split.status).toBe(200);
    expect(await names(app, "routes")).toEqual(["reviews-bookinfo"]);
    const route = (await call(app, "GET", "/v1/routes/reviews-bookinfo")).body;
    expect(route.spec.service).toBe("reviews.bookinfo");
    const kept = (await call(app, "GET", "/v1/importedresources/destinationrule-reviews-bookinfo")).body;
    expect(kept.spec.source.namespace).toBe("bookinfo");
    expect((await apply(app, REVIEWS_RULE, "?namespace=Not_A_Label")).status).toBe(400);
  });

  it("will not overwrite a native resource, nor take writes of ImportedResources from anyone but apply", async () => {
    const { app } = await setup();
    await apply(app, SERVICES);
    await apply(
      app,
      `apiVersion: wasmesh.io/v1alpha1
kind: Route
metadata: {name: reviews}
spec:
  service: reviews
  rules: [{name: all, destinations: [{service: reviews}]}]
`,
    );
    const clash = await apply(app, `${REVIEWS_RULE}---\n${reviewsSplit(90, 10)}`);
    expect(clash.status).toBe(400);
    expect(clash.body.error.details[0]).toMatchObject({
      document: 1,
      kind: "VirtualService",
      name: "reviews",
      path: "metadata.name",
    });
    expect(clash.body.error.details[0].message).toMatch(/Route\/reviews, which exists and was not imported/);

    const direct = await apply(
      app,
      `apiVersion: wasmesh.io/v1alpha1
kind: ImportedResource
metadata: {name: forged}
spec:
  source: {apiVersion: networking.istio.io/v1, kind: VirtualService, name: forged}
  document: {}
  produced: []
`,
    );
    expect(direct.status).toBe(400);
    expect(direct.body.error.details[0].message).toMatch(/written by applying another mesh's resource/);
  });
});
