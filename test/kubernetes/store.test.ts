// The resource store on the Kubernetes API (control-plane/kubernetes/store.ts) against a real API
// server with wasmesh's CRDs: resources are custom objects in the control plane's namespace (internal
// records Secrets), the API server's resourceVersions are the optimistic concurrency, writes made by
// others (kubectl, another replica) reach every store through its watches, a refused apply leaves
// what was stored, and resources derived from the cluster are read-only.
import * as k8s from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { resourceOf } from "../../control-plane/kubernetes/crds.ts";
import {
  type DerivedResources,
  type KubernetesResourceStore,
  openKubernetesStore,
} from "../../control-plane/kubernetes/store.ts";
import {
  ConflictError,
  InvalidChangeError,
  type ResourceInput,
  type StoredResource,
  type WatchEvent,
} from "../../control-plane/store/index.ts";
import { type ApiServer, startApiServer } from "../support/kubernetes.ts";
import { freshNamespace, installCrds } from "../support/kubernetes-mesh.ts";
import { until } from "../support/wait.ts";

let server: ApiServer;
let custom: k8s.CustomObjectsApi;
const stores: KubernetesResourceStore[] = [];

beforeAll(async () => {
  server = await startApiServer();
  custom = server.kubeConfig.makeApiClient(k8s.CustomObjectsApi);
  await installCrds(server);
}, 120_000);

afterAll(async () => {
  for (const store of stores) await store.close();
  await server?.stop();
});

async function open(namespace: string, derived?: DerivedResources): Promise<KubernetesResourceStore> {
  const store = await openKubernetesStore({
    kubeConfig: server.kubeConfig,
    namespace,
    ...(derived ? { derived } : {}),
    log: () => undefined,
  });
  stores.push(store);
  await store.synced;
  return store;
}

const service = (name: string, port = 8080): ResourceInput => ({
  apiVersion: "wasmesh.io/v1alpha1",
  kind: "Service",
  metadata: { name, labels: { team: "checkout" } },
  spec: { ports: [{ name: "http", port, protocol: "http" }] },
});

const { group, version } = resourceOf("Service");

describe("the Kubernetes resource store", () => {
  it("stores resources as custom objects in its namespace, with the API server's resourceVersion", async () => {
    const namespace = await freshNamespace(server, "store");
    const store = await open(namespace);
    const before = await store.revision();
    const result = await store.apply([{ op: "put", resource: service("reviews") }]);
    const applied = result.changes[0];
    expect(applied).toMatchObject({ op: "put", kind: "Service", name: "reviews", created: true });
    expect(result.revision).toBeGreaterThan(before);

    const object = (await custom.getNamespacedCustomObject({
      group,
      version,
      namespace,
      plural: "services",
      name: "reviews",
    })) as { metadata: { resourceVersion: string; labels: Record<string, string> }; spec: unknown };
    expect(object.spec).toEqual(service("reviews").spec);
    expect(object.metadata.labels).toEqual({ team: "checkout" });
    // Read back at once: the apply returned after its own watch saw the write.
    const read = await store.get("Service", "reviews");
    expect(read?.metadata.resourceVersion).toBe(object.metadata.resourceVersion);
    expect(read?.spec).toEqual(service("reviews").spec);
    expect((await store.list()).map((r) => `${r.kind}/${r.metadata.name}`)).toEqual(["Service/reviews"]);

    const updated = await store.apply([{ op: "put", resource: service("reviews", 9080) }]);
    expect(updated.changes[0]).toMatchObject({ op: "put", created: false });
    expect(Number((await store.get("Service", "reviews"))?.metadata.resourceVersion)).toBeGreaterThan(
      Number(object.metadata.resourceVersion),
    );
    const deleted = await store.apply([{ op: "delete", kind: "Service", name: "reviews" }]);
    expect(deleted.changes[0]).toEqual({ op: "delete", kind: "Service", name: "reviews", deleted: true });
    expect(await store.get("Service", "reviews")).toBeUndefined();
  });

  it("sees writes made by others (kubectl, another replica) through its watch, and tells its watchers", async () => {
    const namespace = await freshNamespace(server, "store");
    const first = await open(namespace);
    const second = await open(namespace);
    const events: WatchEvent[] = [];
    second.watch((event) => events.push(event));

    await custom.createNamespacedCustomObject({
      group,
      version,
      namespace,
      plural: "services",
      body: { ...service("ratings"), metadata: { name: "ratings" } },
    });
    await until("both stores to see the kubectl write", async () =>
      (await Promise.all([first.get("Service", "ratings"), second.get("Service", "ratings")])).every(Boolean),
    );
    await first.apply([{ op: "put", resource: service("details") }]);
    const changed = () => events.flatMap((e) => e.changes.map((c) => `${c.op} ${c.kind}/${c.name}`));
    await until("the second replica to announce the first's write", () => changed().length === 2);
    expect(await second.get("Service", "details")).toBeDefined();
    expect(changed()).toEqual(["put Service/ratings", "put Service/details"]);
    // Revisions only move forward.
    expect(events.map((e) => e.revision)).toEqual([...events.map((e) => e.revision)].sort((a, b) => a - b));
  });

  it("refuses stale writes with a ConflictError, checked by the API server's resourceVersion", async () => {
    const namespace = await freshNamespace(server, "store");
    const store = await open(namespace);
    const created = await store.apply([{ op: "put", resource: service("reviews"), expectedVersion: null }]);
    const held = (created.changes[0] as { resource: StoredResource }).resource.metadata.resourceVersion;

    await expect(
      store.apply([{ op: "put", resource: service("reviews"), expectedVersion: null }]),
    ).rejects.toBeInstanceOf(ConflictError);

    // Someone else changes it: the version this writer holds is stale at the API server.
    const object = (await custom.getNamespacedCustomObject({
      group,
      version,
      namespace,
      plural: "services",
      name: "reviews",
    })) as Record<string, unknown>;
    await custom.replaceNamespacedCustomObject({
      group,
      version,
      namespace,
      plural: "services",
      name: "reviews",
      body: { ...object, spec: { ports: [{ name: "http", port: 7070, protocol: "http" }] } },
    });
    const stale = store.apply([{ op: "put", resource: service("reviews", 9090), expectedVersion: held }]);
    await expect(stale).rejects.toBeInstanceOf(ConflictError);
    await expect(stale).rejects.toThrow(/Service\/reviews/);
    await until("the other writer's change to arrive", async () =>
      JSON.stringify((await store.get("Service", "reviews"))?.spec).includes("7070"),
    );
    await expect(
      store.apply([{ op: "delete", kind: "Service", name: "reviews", expectedVersion: held }]),
    ).rejects.toBeInstanceOf(ConflictError);
    expect(await store.get("Service", "reviews")).toBeDefined();
  });

  it("undoes the writes an apply made when a later one is refused, and names the field", async () => {
    const namespace = await freshNamespace(server, "store");
    const store = await open(namespace);
    await store.apply([{ op: "put", resource: service("reviews") }]);
    const kept = await store.get("Service", "reviews");

    const bad: ResourceInput = { ...service("broken"), spec: { ports: "all of them" } };
    const refused = store.apply([
      { op: "put", resource: service("reviews", 9999) },
      { op: "put", resource: service("ratings") },
      { op: "put", resource: bad },
    ]);
    await expect(refused).rejects.toBeInstanceOf(InvalidChangeError);
    await expect(refused).rejects.toThrow(/change 2: .*spec\.ports/);
    // The first two were written, then undone: the mesh is as it was.
    await until("the undo to come back through the watch", async () => {
      const reviews = await store.get("Service", "reviews");
      return (
        JSON.stringify(reviews?.spec) === JSON.stringify(kept?.spec) &&
        !(await store.get("Service", "ratings"))
      );
    });
    const listed = (await custom.listNamespacedCustomObject({
      group,
      version,
      namespace,
      plural: "services",
    })) as {
      items: { metadata: { name: string }; spec: unknown }[];
    };
    expect(listed.items.map((i) => i.metadata.name)).toEqual(["reviews"]);
    expect(listed.items[0]?.spec).toEqual(service("reviews").spec);
  });

  it("dry-runs through the API server's admission: nothing is stored, a bad object is refused", async () => {
    const namespace = await freshNamespace(server, "store");
    const store = await open(namespace);
    const result = await store.apply([{ op: "put", resource: service("reviews") }], { dryRun: true });
    expect(result.changes[0]).toMatchObject({ op: "put", created: true });
    await expect(
      store.apply([{ op: "put", resource: { ...service("x"), spec: { ports: [] } } }], { dryRun: true }),
    ).rejects.toThrow(/spec\.ports/);
    const listed = (await custom.listNamespacedCustomObject({
      group,
      version,
      namespace,
      plural: "services",
    })) as {
      items: unknown[];
    };
    expect(listed.items).toEqual([]);
    expect(await store.get("Service", "reviews")).toBeUndefined();
  });

  it("keeps internal records in Secrets: read by kind, never listed with the mesh, no revision", async () => {
    const namespace = await freshNamespace(server, "store");
    const store = await open(namespace);
    const events: WatchEvent[] = [];
    store.watch((event) => events.push(event));
    const revision = await store.revision();
    const token: ResourceInput = {
      apiVersion: "wasmesh.io/internal",
      kind: "internal:ApiToken",
      metadata: { name: "Tok_3n/with:odd chars" },
      spec: { hash: "abc", role: "admin" },
    };
    await store.apply([{ op: "put", resource: token }]);
    expect((await store.get("internal:ApiToken", "Tok_3n/with:odd chars"))?.spec).toEqual(token.spec);
    expect((await store.list("internal:ApiToken")).length).toBe(1);
    expect(await store.list()).toEqual([]);
    expect(await store.revision()).toBe(revision);
    expect(events).toEqual([]);
    const secrets = await server.kubeConfig
      .makeApiClient(k8s.CoreV1Api)
      .listNamespacedSecret({ namespace, labelSelector: "wasmesh.io/internal=true" });
    expect(secrets.items.length).toBe(1);
    // A second replica reads the record (the admin token works on every replica).
    const second = await open(namespace);
    expect((await second.get("internal:ApiToken", "Tok_3n/with:odd chars"))?.spec).toEqual(token.spec);
  });

  it("merges derived resources into reads, read-only", async () => {
    const namespace = await freshNamespace(server, "store");
    let current: StoredResource[] = [];
    const listeners = new Set<() => void>();
    const derived: DerivedResources = {
      current: () => current,
      origin: (r) => `Kubernetes Service ${r.metadata.name}`,
      subscribe(listener) {
        listeners.add(listener);
        return () => listeners.delete(listener);
      },
    };
    const store = await open(namespace, derived);
    const events: WatchEvent[] = [];
    store.watch((event) => events.push(event));
    const now = new Date().toISOString();
    current = [
      {
        ...(service("productpage") as StoredResource),
        metadata: { name: "productpage", resourceVersion: "", createdAt: now, updatedAt: now },
      },
    ];
    for (const listener of listeners) listener();
    await until("the derived change to be announced", () => events.length > 0);
    expect(events[0]?.changes).toEqual([{ op: "put", kind: "Service", name: "productpage" }]);
    expect((await store.list("Service")).map((s) => s.metadata.name)).toEqual(["productpage"]);
    await expect(store.apply([{ op: "put", resource: service("productpage") }])).rejects.toThrow(
      /discovered from Kubernetes Service productpage/,
    );
  });
});
