// The resource store on the Kubernetes API (issue 12, §1): `wasmesh server --kubernetes`. Each native
// kind is a custom resource (crds.ts) in the control plane's namespace (MeshPolicy, cluster-scoped,
// outside any), as Kuma keeps mesh-wide policies in kuma-system; the control plane's own records
// (API tokens, the CA: internal kinds) are Secrets there. Every replica lists and watches them and
// serves reads from that cache, so the API, the xDS server and the edge see writes by anyone
// (`kubectl apply`, another replica) as they see their own.
//
// The store's contract (store/types.ts) asks more than Kubernetes gives, and here is how it is met:
// - resourceVersion is the object's own (an etcd revision, decimal), and optimistic concurrency is
//   the API server's: a replace carries the version expected, a delete its precondition.
// - revision() counts the changes this replica has seen (+1 per batch of watch events), so it only
//   moves forward and labels the xDS versions it pushes; replicas count apart, which proxies do
//   not mind (a version is a label of one stream's content, compared for equality only).
// - An apply is not one transaction: Kubernetes has none across objects. Every precondition is
//   checked against the cache first, then the writes go out one by one, and if one is refused the
//   ones before it are undone (best effort, logged when an undo fails) before the error is thrown,
//   so a refused apply leaves what was stored. What a concurrent writer does between two writes of
//   one apply can be seen by readers in between; the API's write lock keeps this replica's writes
//   in turn, and resourceVersions keep replicas from overwriting each other.
// - An apply returns once this replica's cache holds what it wrote, so a read after a write sees it.
// - dryRun sends dryRun=All: the API server runs its whole admission (the CRD's schema and the
//   validating webhook) and stores nothing.
// Resources derived from the cluster (discovery.ts: Services and Pods) are merged into reads,
// read-only: writing one is refused, naming where it comes from.
import { createHash } from "node:crypto";
import type * as k8s from "@kubernetes/client-node";
import { KINDS, type Kind } from "../resources/index.ts";
import { compareResources, planApply, Watchers } from "../store/core.ts";
import {
  type AppliedChange,
  type ApplyOptions,
  type ApplyResult,
  type Change,
  type ChangedKey,
  ConflictError,
  InvalidChangeError,
  isInternalKind,
  type ResourceInput,
  type ResourceStore,
  StoreClosedError,
  type StoredResource,
  StoreUnwritableError,
  type WatchListener,
} from "../store/index.ts";
import { createKubeClient, KubeApiError, type KubeClient, type KubeList, type KubeObject } from "./client.ts";
import { resourceOf } from "./crds.ts";

/** Label of the Secrets that hold the control plane's own records (internal kinds). */
export const INTERNAL_LABEL = "wasmesh.io/internal";
const KIND_ANNOTATION = "wasmesh.io/kind";
const NAME_ANNOTATION = "wasmesh.io/name";
/** The field manager our writes are recorded under (metadata.managedFields). */
export const FIELD_MANAGER = "wasmesh-control-plane";

/** Resources derived from the cluster rather than stored (discovery): read-only in the store. */
export interface DerivedResources {
  /** What they are now (documents as the store returns them). */
  current(): readonly StoredResource[];
  /** Where they come from, for the error a write to one gets (e.g. "Kubernetes Service reviews"). */
  origin(resource: StoredResource): string;
  /** Called after current() changed; returns the unsubscribe function. */
  subscribe(listener: () => void): () => void;
}

export interface KubernetesStoreOptions {
  kubeConfig: k8s.KubeConfig;
  /** The control plane's namespace: its namespaced resources and its Secrets live here. */
  namespace: string;
  derived?: DerivedResources;
  /** How long an apply waits for its own writes to come back through the watches (default 15 s). */
  settleTimeoutMs?: number;
  log?: (line: string) => void;
}

export interface KubernetesResourceStore extends ResourceStore {
  readonly namespace: string;
  /** Resolves once every kind has been listed once (reads before that see an empty mesh). */
  readonly synced: Promise<void>;
  /**
   * The same cache, with an apply that only plans: validation and preconditions against what this
   * replica has seen, nothing sent. The validating webhook runs the API's write checks on it, since
   * the real apply would ask the API server, which would call the webhook again.
   */
  planningView(): ResourceStore;
}

interface Collection {
  /** "kind" for a model kind; undefined for the Secrets holding every internal kind. */
  kind: Kind | undefined;
  path: string;
  labelSelector?: string;
}

interface Entry {
  resource: StoredResource;
  object: KubeObject;
}

const keyOf = (kind: string, name: string) => `${kind}\0${name}`;

/** A write of an apply: the version it stored, or (a delete) the version it deleted. */
interface Written {
  kind: string;
  name: string;
  version?: string;
  deleted?: string;
}

/** A Secret's name for an internal record: DNS-safe whatever the record's name. */
function secretName(kind: string, name: string): string {
  const slug = kind
    .slice(kind.indexOf(":") + 1)
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .slice(0, 40);
  const digest = createHash("sha256").update(`${kind}\0${name}`).digest("hex").slice(0, 24);
  return `wasmesh-${slug}-${digest}`;
}

/** The last write's time: the newest managedFields entry, else the creation. */
function updatedAt(object: KubeObject): string {
  const created = object.metadata?.creationTimestamp ?? new Date(0).toISOString();
  const fields = object.metadata?.managedFields;
  if (!Array.isArray(fields)) return created;
  let latest = created;
  for (const field of fields as { time?: unknown }[]) {
    if (typeof field.time === "string" && field.time > latest) latest = field.time;
  }
  return latest;
}

function storedOf(kind: string, object: KubeObject): StoredResource | undefined {
  const metadata = object.metadata ?? {};
  const resourceVersion = metadata.resourceVersion ?? "0";
  const createdAt = metadata.creationTimestamp ?? new Date(0).toISOString();
  if (isInternalKind(kind)) {
    const name = metadata.annotations?.[NAME_ANNOTATION];
    const data = (object.data as Record<string, string> | undefined)?.document;
    if (name === undefined || data === undefined) return undefined;
    const document = JSON.parse(Buffer.from(data, "base64").toString("utf8")) as Omit<ResourceInput, "kind">;
    return {
      apiVersion: document.apiVersion,
      kind,
      metadata: {
        name,
        ...(document.metadata?.labels !== undefined ? { labels: document.metadata.labels } : {}),
        resourceVersion,
        createdAt,
        updatedAt: updatedAt(object),
      },
      spec: document.spec ?? null,
    };
  }
  if (metadata.name === undefined) return undefined;
  const labels = metadata.labels;
  return {
    apiVersion: object.apiVersion ?? "",
    kind,
    metadata: {
      name: metadata.name,
      ...(labels !== undefined && Object.keys(labels).length > 0 ? { labels } : {}),
      resourceVersion,
      createdAt,
      updatedAt: updatedAt(object),
    },
    spec: object.spec ?? null,
  };
}

/** Numeric order of resourceVersions where both are numbers (etcd's are), else equality. */
function atLeast(seen: string | undefined, wrote: string): boolean {
  if (seen === undefined) return false;
  if (/^\d+$/.test(seen) && /^\d+$/.test(wrote)) return BigInt(seen) >= BigInt(wrote);
  return seen === wrote;
}

/** What the API server said, in the words a user needs (the webhook's message names the field). */
function reasonOf(error: KubeApiError): string {
  const causes = error.body?.details?.causes ?? [];
  const listed = causes
    .map((c) => [c.field, c.message].filter(Boolean).join(": "))
    .filter((c) => c !== "" && !(error.body?.message ?? "").includes(c));
  return [error.body?.message ?? error.message, ...listed].join("; ");
}

class KubernetesStore implements KubernetesResourceStore {
  readonly namespace: string;
  readonly synced: Promise<void>;
  readonly #client: KubeClient;
  readonly #derived: DerivedResources | undefined;
  readonly #log: (line: string) => void;
  readonly #settleTimeoutMs: number;
  readonly #watchers = new Watchers();
  readonly #entries = new Map<string, Entry>();
  readonly #abort = new AbortController();
  readonly #collections: Collection[];
  /** Keys changed since the last flush, in order, with what happened last to each. */
  #pending = new Map<string, ChangedKey>();
  #flushScheduled = false;
  #revision = 0;
  #closed = false;
  /** Checks run after each flush: an apply waiting for its writes to come back. */
  readonly #settleWaiters = new Set<() => boolean>();
  /** Derived resources as last seen, by key, as JSON to spot changes. */
  #derivedSeen = new Map<string, { resource: StoredResource; json: string }>();
  readonly #unsubscribeDerived: (() => void) | undefined;
  /** Whether the last list or watch of each collection reached the API server. */
  readonly #connected = new Map<string, string | undefined>();
  readonly #loops: Promise<void>[] = [];

  constructor(options: KubernetesStoreOptions) {
    this.namespace = options.namespace;
    this.#client = createKubeClient(options.kubeConfig);
    this.#derived = options.derived;
    this.#log = options.log ?? ((line) => console.log(line));
    this.#settleTimeoutMs = options.settleTimeoutMs ?? 15_000;
    this.#collections = [
      ...KINDS.map((kind): Collection => ({ kind, path: this.#collectionPath(kind) })),
      {
        kind: undefined,
        path: `/api/v1/namespaces/${this.namespace}/secrets`,
        labelSelector: `${INTERNAL_LABEL}=true`,
      },
    ];
    const syncs = this.#collections.map(
      (collection) =>
        new Promise<void>((resolve) => {
          this.#loops.push(this.#syncLoop(collection, resolve));
        }),
    );
    this.synced = Promise.all(syncs).then(() => undefined);
    if (this.#derived) {
      this.#unsubscribeDerived = this.#derived.subscribe(() => this.#refreshDerived());
      this.#refreshDerived();
    }
  }

  #collectionPath(kind: Kind): string {
    const { group, version, plural, namespaced } = resourceOf(kind);
    return namespaced
      ? `/apis/${group}/${version}/namespaces/${this.namespace}/${plural}`
      : `/apis/${group}/${version}/${plural}`;
  }

  #objectPath(kind: string, name: string): string {
    if (isInternalKind(kind)) return `/api/v1/namespaces/${this.namespace}/secrets/${secretName(kind, name)}`;
    return `${this.#collectionPath(kind as Kind)}/${encodeURIComponent(name)}`;
  }

  #kindOf(collection: Collection, object: KubeObject): string | undefined {
    return collection.kind ?? object.metadata?.annotations?.[KIND_ANNOTATION];
  }

  // --- the cache ----------------------------------------------------------------------------------

  #record(kind: string, name: string, op: "put" | "delete"): void {
    // Internal records move no revision and wake no watcher (nothing a proxy gets depends on them),
    // but an apply may be waiting for them.
    if (!isInternalKind(kind)) {
      const key = keyOf(kind, name);
      this.#pending.delete(key); // keep the order of the last change
      this.#pending.set(key, { op, kind, name });
    }
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    // One revision for the events of one read from the stream (an apply's writes usually arrive so).
    setImmediate(() => this.#flush());
  }

  #flush(): void {
    this.#flushScheduled = false;
    if (this.#closed) return;
    if (this.#pending.size > 0) {
      const changes = [...this.#pending.values()];
      this.#pending = new Map();
      this.#revision += 1;
      this.#watchers.notify({ revision: this.#revision, changes });
    }
    for (const check of [...this.#settleWaiters]) if (check()) this.#settleWaiters.delete(check);
  }

  #upsert(collection: Collection, object: KubeObject): string | undefined {
    const kind = this.#kindOf(collection, object);
    if (kind === undefined) return undefined;
    let resource: StoredResource | undefined;
    try {
      resource = storedOf(kind, object);
    } catch (error) {
      this.#log(
        `wasmesh kubernetes: ignoring ${collection.path}/${object.metadata?.name}: ${(error as Error).message}`,
      );
    }
    if (resource === undefined) return undefined;
    const key = keyOf(kind, resource.metadata.name);
    const before = this.#entries.get(key);
    if (before?.resource.metadata.resourceVersion === resource.metadata.resourceVersion) return key;
    this.#entries.set(key, { resource, object });
    this.#record(kind, resource.metadata.name, "put");
    return key;
  }

  #remove(collection: Collection, object: KubeObject): void {
    const kind = this.#kindOf(collection, object);
    const name = isInternalKind(kind ?? "")
      ? object.metadata?.annotations?.[NAME_ANNOTATION]
      : object.metadata?.name;
    if (kind === undefined || name === undefined) return;
    if (this.#entries.delete(keyOf(kind, name))) this.#record(kind, name, "delete");
  }

  /** A fresh list replaces what the cache held for the collection: what vanished was deleted. */
  #replaceCollection(collection: Collection, items: readonly KubeObject[]): void {
    const kept = new Set<string>();
    for (const item of items) {
      const key = this.#upsert(collection, item);
      if (key !== undefined) kept.add(key);
    }
    for (const [key, entry] of [...this.#entries]) {
      const inCollection =
        collection.kind === undefined
          ? isInternalKind(entry.resource.kind)
          : entry.resource.kind === collection.kind;
      if (inCollection && !kept.has(key)) this.#remove(collection, entry.object);
    }
  }

  async #syncLoop(collection: Collection, synced: () => void): Promise<void> {
    let backoffMs = 200;
    while (!this.#closed) {
      try {
        const listed = await this.#client.request<KubeList>("GET", collection.path, {
          query: { labelSelector: collection.labelSelector },
        });
        this.#replaceCollection(collection, listed.body.items);
        this.#connected.set(collection.path, undefined);
        synced();
        let resourceVersion = listed.body.metadata.resourceVersion;
        backoffMs = 200;
        // Watch from the list's version; a watch the server ends is resumed from the last event's,
        // and only a 410 Gone (history compacted) or an error needs a new list.
        while (!this.#closed) {
          await this.#client.watch(
            collection.path,
            {
              resourceVersion,
              allowWatchBookmarks: "true",
              labelSelector: collection.labelSelector,
              timeoutSeconds: "300",
            },
            (type, object) => {
              resourceVersion = object.metadata?.resourceVersion ?? resourceVersion;
              if (type === "ADDED" || type === "MODIFIED") this.#upsert(collection, object);
              else if (type === "DELETED") this.#remove(collection, object);
            },
            this.#abort.signal,
          );
        }
      } catch (error) {
        if (this.#closed) return;
        const message = (error as Error).message;
        this.#connected.set(collection.path, message);
        if (!(error instanceof KubeApiError && error.status === 410))
          this.#log(`wasmesh kubernetes: watching ${collection.path} failed, listing again: ${message}`);
        await new Promise((resolve) => setTimeout(resolve, backoffMs));
        backoffMs = Math.min(backoffMs * 2, 10_000);
      }
    }
  }

  #refreshDerived(): void {
    if (this.#derived === undefined || this.#closed) return;
    const next = new Map<string, { resource: StoredResource; json: string }>();
    for (const resource of this.#derived.current()) {
      const key = keyOf(resource.kind, resource.metadata.name);
      const { resourceVersion: _ignored, ...metadata } = resource.metadata;
      const json = JSON.stringify([resource.apiVersion, metadata, resource.spec]);
      const before = this.#derivedSeen.get(key);
      if (before?.json === json) {
        next.set(key, before);
        continue;
      }
      // Its own version: the revision it changed at (decimal and increasing, as the contract says).
      const version = String(this.#revision + 1);
      next.set(key, {
        resource: { ...resource, metadata: { ...resource.metadata, resourceVersion: version } },
        json,
      });
      this.#record(resource.kind, resource.metadata.name, "put");
    }
    for (const [key, before] of this.#derivedSeen)
      if (!next.has(key)) this.#record(before.resource.kind, before.resource.metadata.name, "delete");
    this.#derivedSeen = next;
  }

  #assertOpen(): void {
    if (this.#closed) throw new StoreClosedError();
  }

  #lookup(kind: string, name: string): StoredResource | undefined {
    const key = keyOf(kind, name);
    return this.#derivedSeen.get(key)?.resource ?? this.#entries.get(key)?.resource;
  }

  // --- ResourceStore ------------------------------------------------------------------------------

  async get(kind: string, name: string): Promise<StoredResource | undefined> {
    this.#assertOpen();
    const found = this.#lookup(kind, name);
    return found === undefined ? undefined : structuredClone(found);
  }

  async list(kind?: string): Promise<StoredResource[]> {
    this.#assertOpen();
    const all = [
      ...[...this.#entries.values()].map((e) => e.resource),
      ...[...this.#derivedSeen.values()].map((d) => d.resource),
    ];
    return all
      .filter((r) => (kind === undefined ? !isInternalKind(r.kind) : r.kind === kind))
      .map((r) => structuredClone(r))
      .sort(compareResources);
  }

  async revision(): Promise<number> {
    this.#assertOpen();
    return this.#revision;
  }

  async checkWritable(): Promise<void> {
    this.#assertOpen();
    const failing = [...this.#connected].filter(([, error]) => error !== undefined);
    if (failing.length > 0)
      throw new StoreUnwritableError(`the Kubernetes API is not reachable: ${failing[0]?.[1]}`);
    if (this.#connected.size < this.#collections.length)
      throw new StoreUnwritableError("the Kubernetes API has not been listed yet");
  }

  watch(listener: WatchListener): () => void {
    this.#assertOpen();
    return this.#watchers.add(listener);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#abort.abort();
    this.#unsubscribeDerived?.();
    this.#watchers.clear();
    for (const check of this.#settleWaiters) check();
    this.#settleWaiters.clear();
    await Promise.allSettled(this.#loops);
  }

  planningView(): ResourceStore {
    const store = this;
    return {
      get: (kind, name) => store.get(kind, name),
      list: (kind) => store.list(kind),
      revision: () => store.revision(),
      checkWritable: async () => undefined,
      watch: (listener) => store.watch(listener),
      close: async () => undefined,
      async apply(changes) {
        store.#assertOpen();
        store.#refuseUnstorable(changes);
        return planApply(changes, (kind, name) => store.#existing(kind, name), store.#revision, new Date())
          .result;
      },
    };
  }

  #existing(kind: string, name: string) {
    const found = this.#lookup(kind, name);
    return found && { version: found.metadata.resourceVersion, createdAt: found.metadata.createdAt };
  }

  /** Kinds without a home here and derived resources cannot be written. */
  #refuseUnstorable(changes: readonly Change[]): void {
    changes.forEach((change, index) => {
      const kind = change?.op === "put" ? change.resource?.kind : change?.kind;
      const name = change?.op === "put" ? change.resource?.metadata?.name : change?.name;
      if (typeof kind !== "string" || typeof name !== "string") return; // planApply says what is wrong
      if (!isInternalKind(kind) && !(KINDS as string[]).includes(kind))
        throw new InvalidChangeError(
          index,
          `kind ${kind} has no CustomResourceDefinition in Kubernetes mode`,
        );
      const derived = this.#derivedSeen.get(keyOf(kind, name));
      if (derived !== undefined)
        throw new InvalidChangeError(
          index,
          `${kind} ${name} is discovered from ${this.#derived?.origin(derived.resource) ?? "Kubernetes"}; change it there`,
        );
    });
  }

  async apply(changes: readonly Change[], options: ApplyOptions = {}): Promise<ApplyResult> {
    this.#assertOpen();
    this.#refuseUnstorable(changes);
    // Validation, duplicate keys, internal kinds apart, and the preconditions against the cache: a
    // stale write fails here before anything is sent (the API server checks again, atomically).
    const plan = planApply(changes, (kind, name) => this.#existing(kind, name), this.#revision, new Date());
    if (plan.writes.length === 0) return plan.result;
    const dryRun = options.dryRun === true;

    const done: { undo: () => Promise<void>; describe: string }[] = [];
    const applied: AppliedChange[] = [];
    const written: Written[] = [];
    let index = 0;
    try {
      for (; index < changes.length; index++) {
        const change = changes[index] as Change;
        const planned = plan.result.changes[index];
        if (planned === undefined) throw new Error("kubernetes store: plan and changes out of step");
        if (change.op === "delete" && planned.op === "delete" && !planned.deleted) {
          applied.push(planned);
          continue;
        }
        applied.push(await this.#write(change, dryRun, done, written));
      }
    } catch (error) {
      if (!dryRun) await this.#undo(done);
      throw this.#storeError(error, changes, index);
    }
    if (dryRun) return { revision: this.#revision, changes: applied };
    await this.#settle(written);
    return { revision: this.#revision, changes: applied };
  }

  /** Waits until the watches have brought back what this apply wrote (bounded: then logged). */
  async #settle(written: readonly Written[]): Promise<void> {
    const settled = () =>
      written.every(({ kind, name, version, deleted }) => {
        const seen = this.#entries.get(keyOf(kind, name))?.resource.metadata.resourceVersion;
        // A delete is back when the object is gone (or was made again since: another version).
        return deleted !== undefined ? seen === undefined || seen !== deleted : atLeast(seen, version ?? "");
      }) && this.#pending.size === 0;
    if (settled()) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.#settleWaiters.delete(check);
        this.#log(
          `wasmesh kubernetes: writes not seen back through the watches after ${this.#settleTimeoutMs} ms; reads may lag`,
        );
        resolve();
      }, this.#settleTimeoutMs);
      const check = () => {
        if (!this.#closed && !settled()) return false;
        clearTimeout(timer);
        resolve();
        return true;
      };
      this.#settleWaiters.add(check);
    });
  }

  /** One change sent to the API server; records how to undo it. */
  async #write(
    change: Change,
    dryRun: boolean,
    done: { undo: () => Promise<void>; describe: string }[],
    written: Written[],
  ): Promise<AppliedChange> {
    const query = { dryRun: dryRun ? "All" : undefined, fieldManager: FIELD_MANAGER };
    if (change.op === "delete") {
      const { kind, name } = change;
      const before = this.#entries.get(keyOf(kind, name));
      const expected = change.expectedVersion ?? before?.resource.metadata.resourceVersion;
      const path = this.#objectPath(kind, name);
      try {
        await this.#client.request("DELETE", path, {
          query: { dryRun: query.dryRun },
          body: {
            apiVersion: "v1",
            kind: "DeleteOptions",
            ...(expected ? { preconditions: { resourceVersion: expected } } : {}),
            ...(dryRun ? { dryRun: ["All"] } : {}),
          },
        });
      } catch (error) {
        // Gone already (the cache had not heard yet): what an unconditional delete wanted.
        if (error instanceof KubeApiError && error.status === 404 && change.expectedVersion === undefined)
          return { op: "delete", kind, name, deleted: false };
        throw error;
      }
      if (before !== undefined) {
        done.push({ describe: `recreate ${kind}/${name}`, undo: () => this.#recreate(kind, before.object) });
      }
      written.push({ kind, name, deleted: expected ?? "" });
      return { op: "delete", kind, name, deleted: true };
    }

    const { resource } = change;
    const kind = resource.kind;
    const name = resource.metadata.name;
    const before = this.#entries.get(keyOf(kind, name));
    const body = this.#objectOf(resource);
    let response: { status: number; body: KubeObject };
    const expected = change.expectedVersion;
    const replace = (version: string | undefined) =>
      this.#client.request<KubeObject>("PUT", this.#objectPath(kind, name), {
        query,
        body: { ...body, metadata: { ...body.metadata, resourceVersion: version } },
      });
    try {
      response =
        expected === null || (expected === undefined && before === undefined)
          ? await this.#client.request("POST", this.#collectionPathOf(kind), { query, body })
          : await replace(expected ?? before?.resource.metadata.resourceVersion);
    } catch (error) {
      // An unconditional write raced a writer this replica has not heard of yet: write over what is
      // there now, once (a second conflict is a busy object: the caller hears of it).
      if (!(expected === undefined && error instanceof KubeApiError && error.status === 409)) throw error;
      const current = await this.#client.find(this.#objectPath(kind, name));
      response =
        current === undefined
          ? await this.#client.request("POST", this.#collectionPathOf(kind), { query, body })
          : await replace(current.metadata?.resourceVersion);
    }
    const stored = storedOf(kind, response.body);
    if (stored === undefined) throw new Error(`the API server returned no ${kind} ${name}`);
    const created = response.status === 201;
    if (created) {
      done.push({
        describe: `delete ${kind}/${name}`,
        undo: () => this.#deleteExactly(kind, name, stored.metadata.resourceVersion),
      });
    } else if (before !== undefined) {
      done.push({
        describe: `restore ${kind}/${name}`,
        undo: () => this.#restore(kind, before.object, stored.metadata.resourceVersion),
      });
    }
    written.push({ kind, name, version: stored.metadata.resourceVersion });
    return { op: "put", kind, name, created, resource: stored };
  }

  #collectionPathOf(kind: string): string {
    return isInternalKind(kind)
      ? `/api/v1/namespaces/${this.namespace}/secrets`
      : this.#collectionPath(kind as Kind);
  }

  /** The Kubernetes object a resource is stored as. */
  #objectOf(resource: ResourceInput): KubeObject {
    const { kind } = resource;
    const name = resource.metadata.name;
    const labels = resource.metadata.labels;
    if (isInternalKind(kind)) {
      const document = {
        apiVersion: resource.apiVersion,
        metadata: { ...(labels !== undefined ? { labels } : {}) },
        spec: resource.spec ?? null,
      };
      return {
        apiVersion: "v1",
        kind: "Secret",
        type: "Opaque",
        metadata: {
          name: secretName(kind, name),
          namespace: this.namespace,
          labels: { [INTERNAL_LABEL]: "true", "app.kubernetes.io/part-of": "wasmesh" },
          annotations: { [KIND_ANNOTATION]: kind, [NAME_ANNOTATION]: name },
        },
        data: { document: Buffer.from(JSON.stringify(document)).toString("base64") },
      };
    }
    const namespaced = resourceOf(kind as Kind).namespaced;
    return {
      apiVersion: resource.apiVersion,
      kind,
      metadata: {
        name,
        ...(namespaced ? { namespace: this.namespace } : {}),
        ...(labels !== undefined ? { labels } : {}),
      },
      spec: resource.spec ?? null,
    };
  }

  async #deleteExactly(kind: string, name: string, version: string): Promise<void> {
    await this.#client.request("DELETE", this.#objectPath(kind, name), {
      body: { apiVersion: "v1", kind: "DeleteOptions", preconditions: { resourceVersion: version } },
    });
  }

  async #restore(kind: string, previous: KubeObject, version: string): Promise<void> {
    const body = {
      ...this.#clean(previous),
      metadata: { ...this.#clean(previous).metadata, resourceVersion: version },
    };
    const name =
      (isInternalKind(kind) ? previous.metadata?.annotations?.[NAME_ANNOTATION] : previous.metadata?.name) ??
      "";
    await this.#client.request("PUT", this.#objectPath(kind, name), {
      query: { fieldManager: FIELD_MANAGER },
      body,
    });
  }

  async #recreate(kind: string, previous: KubeObject): Promise<void> {
    await this.#client.request("POST", this.#collectionPathOf(kind), {
      query: { fieldManager: FIELD_MANAGER },
      body: this.#clean(previous),
    });
  }

  /** An object read back, without what the server owns, to write it again. */
  #clean(object: KubeObject): KubeObject {
    const { metadata = {}, status: _status, ...rest } = object;
    const {
      uid: _u,
      resourceVersion: _r,
      creationTimestamp: _c,
      managedFields: _m,
      generation: _g,
      ...kept
    } = metadata;
    return { ...rest, metadata: kept };
  }

  async #undo(done: readonly { undo: () => Promise<void>; describe: string }[]): Promise<void> {
    for (const step of [...done].reverse()) {
      try {
        await step.undo();
      } catch (error) {
        this.#log(
          `wasmesh kubernetes: could not undo a write of a refused apply (${step.describe}): ${(error as Error).message}`,
        );
      }
    }
  }

  /** The store's errors for what the API server answered. */
  #storeError(error: unknown, changes: readonly Change[], index: number): unknown {
    if (!(error instanceof KubeApiError)) return error;
    const change = changes[index];
    const [kind, name] =
      change === undefined
        ? ["", ""]
        : change.op === "put"
          ? [change.resource.kind, change.resource.metadata.name]
          : [change.kind, change.name];
    if (error.status === 409) {
      const actual = this.#entries.get(keyOf(kind, name))?.resource.metadata.resourceVersion ?? null;
      const expected = change?.expectedVersion ?? null;
      return new ConflictError(kind, name, expected, actual);
    }
    if (error.status === 404 && change?.op === "put") {
      return new ConflictError(kind, name, change.expectedVersion ?? null, null);
    }
    if (error.status === 400 || error.status === 422) return new InvalidChangeError(index, reasonOf(error));
    if (error.status === 403)
      return new StoreUnwritableError(
        `the control plane may not write ${kind} ${name} (check its RBAC): ${reasonOf(error)}`,
        { cause: error },
      );
    return new StoreUnwritableError(reasonOf(error), { cause: error });
  }
}

export async function openKubernetesStore(options: KubernetesStoreOptions): Promise<KubernetesResourceStore> {
  return new KubernetesStore(options);
}
