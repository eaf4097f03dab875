// Other meshes' YAML on Kubernetes (issue 13): `kubectl apply` of Istio's, Kuma's or Consul's
// resources in Kubernetes mode. Their objects live in the cluster, under the other mesh's own CRDs
// when it is installed, or under the ones wasmesh generates (crds.ts FOREIGN_KINDS,
// deploy/other-meshes/crds.yaml). Two pieces:
//
// - The validating webhook of those kinds (createImportAdmission): a dry run of planImports over
//   the store with the object as incoming (or, for a DELETE, without its kept original), then of the
//   API's writer over the store's cache; what wasmesh cannot carry is refused naming the field, what
//   it does not carry comes back as warnings (kubectl prints them), and a DELETE that would break a
//   kept original is refused naming it. Its failure policy is Ignore (webhooks.ts), so the next piece
//   must cope with objects nobody checked.
//
// - The reconciler (createImportReconciler; the leader runs it): finds which of those kinds the API
//   server serves (discovery, asked again every rediscoverMs, so CRDs installed later are picked up),
//   lists and watches them in every namespace, and, level-triggered and debounced, makes the store's
//   ImportedResources of origin "kubernetes" match the objects: the objects that differ from their
//   kept original are applied, the originals whose object is gone are removed, through the API's
//   writer (references checked, proxies pushed). ImportedResources written through the API (origin
//   "api") are never removed by it; an object of the same kind, name and namespace takes one over.
//   Every namespace, not only the mesh's: Istio's mesh-wide policies live in istio-system, which is
//   no mesh namespace, and an original in any namespace names its hosts by namespace anyway.
//   An object the conversion (or the writer) refuses keeps what is stored for it as it is; the
//   reason is logged and recorded as a Warning Event on the object (`kubectl describe`, `kubectl
//   get events`): Events work with the other mesh's own CRDs too, whose status belongs to it. The
//   rest is converted. A change that breaks an original converted before (kept, document -1) is
//   found by trying the changes one at a time, in order, and refusing the ones that break.
import { toApiError } from "../api/errors.ts";
import { desiredOf, validStored } from "../api/imports.ts";
import type { Writer } from "../api/writer.ts";
import {
  type ImportPlan,
  type ImportProblem,
  type IncomingDocument,
  importedName,
  MESHES,
  planImports,
  sourceOf,
} from "../imports/index.ts";
import type { ImportedResource, Resource } from "../resources/index.ts";
import type { ConfigurationCheck } from "../revision/index.ts";
import { type AdmissionHandler, answer, deny, planningWriter } from "./admission.ts";
import { KubeApiError, type KubeClient, type KubeList, type KubeObject } from "./client.ts";
import { FOREIGN_GROUPS, FOREIGN_KINDS, type ForeignKind } from "./crds.ts";
import type { KubernetesResourceStore } from "./store.ts";

const LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration";
/** What the API server owns of an object's metadata: not part of what was applied. */
const SERVER_METADATA = [
  "uid",
  "resourceVersion",
  "generation",
  "creationTimestamp",
  "managedFields",
  "selfLink",
  "deletionTimestamp",
  "deletionGracePeriodSeconds",
];

/** An object as it was applied: without its status, server-owned metadata and kubectl's copy. */
export function documentOf(object: KubeObject): Record<string, unknown> {
  const { status: _status, metadata: given, ...rest } = object;
  const metadata: Record<string, unknown> = { ...(given ?? {}) };
  for (const key of SERVER_METADATA) delete metadata[key];
  const annotations = given?.annotations;
  if (annotations !== undefined) {
    const { [LAST_APPLIED]: _applied, ...others } = annotations;
    if (Object.keys(others).length > 0) metadata.annotations = others;
    else delete metadata.annotations;
  }
  return { ...rest, metadata };
}

/** JSON with object keys sorted: equal documents compare equal whatever their key order. */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === "object" && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  );
}

const describeProblem = (p: { kind?: string; name?: string; path: string; message: string }) =>
  `${[p.kind, p.name].filter(Boolean).join(" ")}: ${p.path}: ${p.message}`;

/** Whether the converter takes `kind` at `group/version` (imports/: each mesh's identify). */
function converts(group: string, version: string, kind: string): boolean {
  const probe = { apiVersion: `${group}/${version}`, kind, metadata: { name: "probe" } };
  return MESHES.some((mesh) => {
    const id = mesh.identify(probe);
    return id !== undefined && !("error" in id);
  });
}

const foreignKindOf = (group: string, kind: string): ForeignKind | undefined =>
  FOREIGN_KINDS.find((k) => k.group === group && k.kind === kind);

/** The dry run of a plan over the store's cache: what the API's writer would refuse, with warnings. */
type Checked =
  | {
      ok: true;
      plan: ImportPlan;
      warnings: { document?: number; kind?: string; name?: string; path: string; message: string }[];
    }
  | {
      ok: false;
      /** Busy (a conflict, the API server away): try again later, nobody is to blame. */
      retry: boolean;
      problems: { document?: number; kind?: string; name?: string; path: string; message: string }[];
    };

async function dryRun(planner: Writer, plan: ImportPlan): Promise<Checked> {
  if (plan.errors.length > 0)
    return {
      ok: false,
      retry: false,
      problems: plan.errors.map((e) => ({
        ...(e.document >= 0 ? { document: e.document } : {}),
        kind: e.kind,
        name: e.name,
        path: e.path,
        message: e.message,
      })),
    };
  try {
    const result = await planner.write(desiredOf(plan), { dryRun: true });
    return { ok: true, plan, warnings: [...plan.warnings, ...result.warnings] };
  } catch (error) {
    const apiError = toApiError(error);
    if (apiError === undefined) throw error;
    const retry = apiError.status === 409 || apiError.status >= 500;
    const problems =
      apiError.details.length > 0 ? apiError.details : [{ path: "(root)", message: apiError.message }];
    return { ok: false, retry, problems };
  }
}

/** A foreign kind the API server serves, at the version read (the preferred one the converter takes). */
interface Served {
  foreign: ForeignKind;
  version: string;
  plural: string;
}

/** Which converted kinds the API server serves (discovery), by `group/kind`. */
async function servedKinds(client: KubeClient): Promise<Map<string, Served>> {
  const served = new Map<string, Served>();
  for (const group of FOREIGN_GROUPS) {
    const info = await client.find<{
      versions?: { version: string }[];
      preferredVersion?: { version: string };
    }>(`/apis/${group}`);
    if (info === undefined) continue;
    const versions = (info.versions ?? []).map((v) => v.version);
    const preferred = info.preferredVersion?.version;
    // The preferred version first, then the others newest first (as the API server lists them).
    const order = [
      ...(preferred !== undefined ? [preferred] : []),
      ...versions.filter((v) => v !== preferred),
    ];
    for (const version of order) {
      const resources = await client.find<{ resources?: { name: string; kind: string }[] }>(
        `/apis/${group}/${version}`,
      );
      for (const resource of resources?.resources ?? []) {
        if (resource.name.includes("/")) continue; // a subresource
        const foreign = foreignKindOf(group, resource.kind);
        const key = `${group}/${resource.kind}`;
        if (foreign === undefined || served.has(key) || !converts(group, version, resource.kind)) continue;
        served.set(key, { foreign, version, plural: resource.name });
      }
    }
  }
  return served;
}

/** Every object of the served foreign kinds, in every namespace, as applied (live, not cached). */
async function clusterDocuments(client: KubeClient): Promise<Record<string, unknown>[]> {
  const documents: Record<string, unknown>[] = [];
  for (const s of (await servedKinds(client)).values()) {
    const listed = await client.find<KubeList>(`/apis/${s.foreign.group}/${s.version}/${s.plural}`);
    for (const item of listed?.items ?? []) documents.push(documentOf(item));
  }
  return documents;
}

/** A problem as it reads whether its original is incoming or kept (then its message says so). */
const signature = (p: ImportProblem) =>
  `${p.kind}\0${p.name}\0${p.path}\0${p.message.replace(/^\(kept from an earlier apply\) /, "")}`;

/**
 * The plan of a change (`doc` applied, document 0, or the kept original `removed` removed) over the
 * cluster's other objects of the converted kinds (documents 1…; the kept originals of the objects
 * gone removed), with as errors only those the change brings: undefined when it brings none while
 * the others have some of their own (then nothing can be dry-run, and it is not this change's to
 * answer for).
 */
async function widened(
  client: KubeClient,
  stored: readonly Resource[],
  doc: Record<string, unknown> | undefined,
  removed: string | undefined,
): Promise<ImportPlan | undefined> {
  const own = doc !== undefined ? sourceOf(doc) : undefined;
  const self = own !== undefined ? importedName(own) : removed;
  const others = (await clusterDocuments(client)).filter((other) => {
    const s = sourceOf(other);
    return s !== undefined && importedName(s) !== self;
  });
  const present = new Set(
    others.flatMap((o) => {
      const s = sourceOf(o);
      return s !== undefined ? [importedName(s)] : [];
    }),
  );
  const gone = stored.flatMap((r) =>
    r.kind === "ImportedResource" &&
    r.spec.origin === "kubernetes" &&
    r.metadata.name !== self &&
    !present.has(r.metadata.name)
      ? [r.metadata.name]
      : [],
  );
  const incoming = others.map((d, i) => ({ doc: d, document: i + 1 }));
  const before = planImports(stored, incoming, { remove: gone, origin: "kubernetes" });
  const after = planImports(stored, [...(doc !== undefined ? [{ doc, document: 0 }] : []), ...incoming], {
    remove: [...gone, ...(removed !== undefined ? [removed] : [])],
    origin: "kubernetes",
  });
  const known = new Set(before.errors.map(signature));
  const brought = after.errors.filter((e) => e.document === 0 || !known.has(signature(e)));
  if (brought.length > 0) return { ...after, errors: brought };
  return after.errors.length === 0 ? after : undefined;
}

// --- The webhook -----------------------------------------------------------------------------------

export interface ImportAdmissionOptions {
  store: KubernetesResourceStore;
  /**
   * To read the cluster's other foreign objects when the object alone does not convert: the one it
   * needs may be in the cluster and not converted yet (kubectl applies a file's DestinationRule and
   * VirtualService one after the other, faster than the reconciler converts the first).
   */
  client?: KubeClient;
  check?: ConfigurationCheck;
  log: (line: string) => void;
}

export function createImportAdmission(options: ImportAdmissionOptions): AdmissionHandler {
  const view = options.store.planningView();
  const planner = planningWriter(options.store, options.check, options.log);
  return async (review) => {
    const request = review.request;
    if (request === undefined) throw new Error("an AdmissionReview without a request");
    if (foreignKindOf(request.kind.group, request.kind.kind) === undefined)
      return answer(review, { allowed: true });
    const name = request.name ?? request.object?.metadata?.name ?? "";
    const what = `${request.kind.kind} ${request.namespace ? `${request.namespace}/` : ""}${name}`;
    const stored = await validStored(view);
    let plan: ImportPlan;
    let doc: Record<string, unknown> | undefined;
    let removed: string | undefined;
    if (request.operation === "DELETE") {
      const source = request.oldObject ? sourceOf(documentOf(request.oldObject)) : undefined;
      const kept =
        source &&
        stored.find((r) => r.kind === "ImportedResource" && r.metadata.name === importedName(source));
      // Never converted, or the API's (which the reconciler does not remove): nothing to check.
      if (kept?.kind !== "ImportedResource" || kept.spec.origin !== "kubernetes")
        return answer(review, { allowed: true });
      removed = kept.metadata.name;
      plan = planImports(stored, [], { remove: [removed] });
    } else if (request.operation === "CREATE" || request.operation === "UPDATE") {
      if (request.object == null) return deny(review, `${request.operation} without an object`, 400);
      doc = documentOf(request.object);
      plan = planImports(stored, [{ doc, document: 0 }], { origin: "kubernetes" });
    } else {
      return answer(review, { allowed: true });
    }
    if (plan.errors.length > 0 && options.client !== undefined) {
      // The store may lag behind the cluster (kubectl applies a file's DestinationRule and
      // VirtualService, or deletes them, one after the other, faster than the reconciler follows):
      // planned again over the cluster's objects as the reconciler will see them, the change is
      // refused only for the problems it brings (another object's are reported on that one).
      const wider = await widened(options.client, stored, doc, removed);
      if (wider === undefined) return answer(review, { allowed: true });
      plan = wider;
    }
    // The plan's errors are the change's own (a widened plan keeps only those).
    const checked: Checked =
      plan.errors.length > 0
        ? { ok: false, retry: false, problems: plan.errors.map((e) => ({ ...e, document: 0 })) }
        : await dryRun(planner, plan);
    // Problems of this object (document 0) or of none in particular: those of the cluster's others
    // (a widened plan) are theirs.
    const mine = <T extends { document?: number }>(p: T) => p.document === undefined || p.document === 0;
    if (checked.ok) {
      const warnings = checked.warnings.filter(mine).map(describeProblem);
      return answer(review, { allowed: true, ...(warnings.length > 0 ? { warnings } : {}) });
    }
    const problems = checked.problems.filter(mine);
    if (problems.length === 0) return answer(review, { allowed: true });
    const details = problems.map(describeProblem).join("; ");
    // Not the object's fault (a concurrent write, the store away): the reconciler converts it later.
    if (checked.retry)
      return answer(review, { allowed: true, warnings: [`wasmesh could not check ${what} now: ${details}`] });
    return deny(
      review,
      request.operation === "DELETE"
        ? `deleting ${what} would break what wasmesh converted from other objects: ${details}`
        : `wasmesh cannot convert ${what}: ${details}`,
    );
  };
}

// --- The reconciler --------------------------------------------------------------------------------

export interface ImportReconcilerOptions {
  client: KubeClient;
  /** The store (Kubernetes mode's), written through `writer`. */
  store: KubernetesResourceStore;
  /** The API's writer over `store` (api/writer.ts): references checked, proxies pushed. */
  writer: Writer;
  check?: ConfigurationCheck;
  /** This replica (the Events' reportingInstance). */
  identity: string;
  log: (line: string) => void;
  /** How long changes are gathered before a pass (default 200 ms). */
  debounceMs?: number;
  /** How often discovery is asked again for kinds served since, and a pass made anyway (default 30 s). */
  rediscoverMs?: number;
}

export interface ImportReconciler {
  /** Begins (the leader's): discovery, lists and watches, passes. */
  start(): void;
  /** Ends them, and forgets what was seen (a later start lists again). */
  stop(): Promise<void>;
}

interface Watched {
  foreign: ForeignKind;
  version: string;
  path: string;
  /** Listed at least once since it was started: its objects are all known. */
  synced: boolean;
  objects: Map<string, KubeObject>;
  abort: AbortController;
  loop: Promise<void>;
}

/** A change a pass makes: an object applied, or a kept original whose object is gone removed. */
type Change =
  | { op: "apply"; key: string; name: string; object: KubeObject; doc: Record<string, unknown> }
  | { op: "remove"; key: string; name: string; record: ImportedResource };

const EVENT_MESSAGE_MAX = 1024;

export function createImportReconciler(options: ImportReconcilerOptions): ImportReconciler {
  const { client, store, writer, log } = options;
  const debounceMs = options.debounceMs ?? 200;
  const rediscoverMs = options.rediscoverMs ?? 30_000;
  const planner = planningWriter(store, options.check, log);
  const watched = new Map<string, Watched>();
  /** What was last reported of each refused object (key), so a pass repeats no Event. */
  const reported = new Map<string, string>();
  let running = false;
  let timer: NodeJS.Timeout | undefined;
  let rediscover: NodeJS.Timeout | undefined;
  let unwatchStore: (() => void) | undefined;
  let pass: Promise<void> = Promise.resolve();
  let again = false;
  let failures = 0;

  const kindKey = (group: string, kind: string) => `${group}/${kind}`;
  const objectKey = (w: Watched, o: KubeObject) =>
    `${kindKey(w.foreign.group, w.foreign.kind)}/${o.metadata?.namespace ?? ""}/${o.metadata?.name ?? ""}`;

  /** A pass after `delayMs`, unless one is due already (changes arriving meanwhile join it). */
  function schedule(delayMs = debounceMs): void {
    if (!running || timer !== undefined) return;
    timer = setTimeout(() => {
      timer = undefined;
      pass = pass.then(runPass);
    }, delayMs);
  }

  async function runPass(): Promise<void> {
    if (!running) return;
    again = false;
    try {
      await reconcile();
    } catch (error) {
      // A conflict (another writer in between) or a refusal of the store: planned again, later.
      const known = toApiError(error) !== undefined;
      log(
        `wasmesh imports: a pass failed, trying again: ${known ? (error as Error).message : ((error as Error).stack ?? String(error))}`,
      );
      again = true;
    }
    failures = again ? failures + 1 : 0;
    if (again) schedule(Math.min(debounceMs * 2 ** failures, 30_000));
  }

  // --- discovery, lists and watches ------------------------------------------------------------------

  async function discover(): Promise<void> {
    const served = await servedKinds(client);
    for (const [key, w] of [...watched]) {
      const now = served.get(key);
      if (now !== undefined && now.version === w.version) continue;
      // No longer served (its CRD removed), or served at another version: stop, and start again below.
      w.abort.abort();
      watched.delete(key);
      log(`wasmesh imports: ${w.foreign.kind} (${w.foreign.group}/${w.version}) is no longer watched`);
    }
    for (const [key, s] of served) {
      if (watched.has(key) || !running) continue;
      const w: Watched = {
        foreign: s.foreign,
        version: s.version,
        // Every namespace (see the top of this file).
        path: `/apis/${s.foreign.group}/${s.version}/${s.plural}`,
        synced: false,
        objects: new Map(),
        abort: new AbortController(),
        loop: Promise.resolve(),
      };
      watched.set(key, w);
      w.loop = syncLoop(w);
      log(`wasmesh imports: watching ${s.foreign.kind} (${s.foreign.group}/${s.version}) in every namespace`);
    }
  }

  async function syncLoop(w: Watched): Promise<void> {
    let backoffMs = 200;
    const { signal } = w.abort;
    while (!signal.aborted) {
      try {
        const listed = await client.request<KubeList>("GET", w.path);
        if (signal.aborted) return;
        w.objects = new Map(listed.body.items.map((o) => [objectKey(w, o), o]));
        w.synced = true;
        schedule();
        let resourceVersion = listed.body.metadata.resourceVersion;
        backoffMs = 200;
        while (!signal.aborted) {
          await client.watch(
            w.path,
            { resourceVersion, allowWatchBookmarks: "true", timeoutSeconds: "300" },
            (type, object) => {
              resourceVersion = object.metadata?.resourceVersion ?? resourceVersion;
              if (type === "ADDED" || type === "MODIFIED") w.objects.set(objectKey(w, object), object);
              else if (type === "DELETED") w.objects.delete(objectKey(w, object));
              else return;
              schedule();
            },
            signal,
          );
        }
      } catch (error) {
        if (signal.aborted) return;
        if (!(error instanceof KubeApiError && error.status === 410))
          log(`wasmesh imports: watching ${w.path} failed, listing again: ${(error as Error).message}`);
        await new Promise((resolve) => setTimeout(resolve, backoffMs));
        backoffMs = Math.min(backoffMs * 2, 10_000);
      }
    }
  }

  // --- a pass --------------------------------------------------------------------------------------

  async function reconcile(): Promise<void> {
    // A pass sees the whole cluster: until every kind watched is listed, a VirtualService would be
    // refused for a DestinationRule not listed yet (each list schedules a pass).
    const watching = [...watched.values()];
    if (watching.some((w) => !w.synced)) return;
    const stored = await validStored(store);
    const records = new Map(
      stored.flatMap((r): [string, ImportedResource][] =>
        r.kind === "ImportedResource" ? [[r.metadata.name, r]] : [],
      ),
    );
    const changes: Change[] = [];
    const present = new Set<string>();
    for (const w of watching) {
      for (const [key, object] of w.objects) {
        const doc = documentOf(object);
        const source = sourceOf(doc);
        if (source === undefined) continue;
        const name = importedName(source);
        present.add(name);
        const record = records.get(name);
        // Kept as it is already: nothing to write (the same manifest applied again writes nothing).
        if (record?.spec.origin === "kubernetes" && canonical(record.spec.document) === canonical(doc))
          continue;
        changes.push({ op: "apply", key, name, object, doc });
      }
    }
    const listedKinds = new Set(watching.map((w) => kindKey(w.foreign.group, w.foreign.kind)));
    for (const record of records.values()) {
      const { apiVersion, kind } = record.spec.source;
      const group = apiVersion.split("/")[0] ?? "";
      if (record.spec.origin !== "kubernetes" || present.has(record.metadata.name)) continue;
      // Only kinds listed now: a kind not (yet) watched says nothing about its objects.
      if (!listedKinds.has(kindKey(group, kind))) continue;
      changes.push({
        op: "remove",
        key: `record/${record.metadata.name}`,
        name: record.metadata.name,
        record,
      });
    }
    // What was reported of objects since converted, changed back or deleted is forgotten.
    const pending = new Set(changes.map((c) => c.key));
    for (const key of [...reported.keys()]) if (!pending.has(key)) reported.delete(key);
    if (changes.length === 0) return;

    const planOf = (chosen: readonly Change[]) => {
      const applied = chosen.filter((c): c is Extract<Change, { op: "apply" }> => c.op === "apply");
      const incoming: IncomingDocument[] = applied.map((c, document) => ({ doc: c.doc, document }));
      return {
        applied,
        plan: planImports(stored, incoming, {
          remove: chosen.flatMap((c) => (c.op === "remove" ? [c.name] : [])),
          origin: "kubernetes",
        }),
      };
    };

    // All at once; the changes with problems of their own are refused and the rest tried again.
    let chosen = [...changes];
    let accepted: { chosen: Change[]; plan: ImportPlan } | undefined;
    for (let round = 0; round <= changes.length && chosen.length > 0; round++) {
      const { applied, plan } = planOf(chosen);
      const checked = await dryRun(planner, plan);
      if (checked.ok) {
        accepted = { chosen, plan };
        break;
      }
      if (checked.retry) {
        again = true;
        log(
          `wasmesh imports: cannot check now, trying again: ${checked.problems.map(describeProblem).join("; ")}`,
        );
        return;
      }
      const blamed = new Map<Change, typeof checked.problems>();
      for (const p of checked.problems) {
        const change = p.document !== undefined ? applied[p.document] : undefined;
        if (change !== undefined) blamed.set(change, [...(blamed.get(change) ?? []), p]);
      }
      if (blamed.size === 0) {
        accepted = await oneByOne(chosen, planOf);
        break;
      }
      for (const [change, problems] of blamed) await refuse(change, problems);
      chosen = chosen.filter((c) => !blamed.has(c));
    }
    // A replica that stopped leading meanwhile leaves the write to the new leader.
    if (accepted === undefined || accepted.chosen.length === 0 || !running) return;
    const result = await writer.write(desiredOf(accepted.plan));
    for (const c of accepted.chosen) reported.delete(c.key);
    if (result.committed) {
      const applied = accepted.chosen.filter((c) => c.op === "apply").length;
      const removed = accepted.chosen.length - applied;
      log(`wasmesh imports: applied ${applied} object(s) of the cluster, removed ${removed} gone`);
    }
  }

  /** The changes tried one at a time, in order, each over the ones accepted before it. */
  async function oneByOne(
    changes: readonly Change[],
    planOf: (chosen: readonly Change[]) => { plan: ImportPlan },
  ): Promise<{ chosen: Change[]; plan: ImportPlan } | undefined> {
    let accepted: { chosen: Change[]; plan: ImportPlan } | undefined;
    for (const change of changes) {
      const chosen = [...(accepted?.chosen ?? []), change];
      const { plan } = planOf(chosen);
      const checked = await dryRun(planner, plan);
      if (checked.ok) accepted = { chosen, plan };
      else if (checked.retry) {
        again = true;
        return accepted;
      } else await refuse(change, checked.problems);
    }
    return accepted;
  }

  /** Logs why a change is not made, and records it on the object as a Warning Event (once). */
  async function refuse(
    change: Change,
    problems: readonly { kind?: string; name?: string; path: string; message: string }[],
  ): Promise<void> {
    const reason = problems.map(describeProblem).join("; ");
    const involved =
      change.op === "apply"
        ? {
            apiVersion: change.object.apiVersion,
            kind: change.object.kind,
            name: change.object.metadata?.name,
            namespace: change.object.metadata?.namespace,
            uid: change.object.metadata?.uid,
            resourceVersion: change.object.metadata?.resourceVersion,
          }
        : {
            apiVersion: change.record.spec.source.apiVersion,
            kind: change.record.spec.source.kind,
            name: change.record.spec.source.name,
            namespace: change.record.spec.source.namespace,
          };
    const what = `${involved.kind} ${involved.namespace ? `${involved.namespace}/` : ""}${involved.name}`;
    const message =
      change.op === "apply"
        ? `not converted; wasmesh keeps what it had of it: ${reason}`
        : `deleted, but what wasmesh converted from it is kept: removing it would break: ${reason}`;
    if (reported.get(change.key) === message) return;
    reported.set(change.key, message);
    log(`wasmesh imports: ${what}: ${message}`);
    const now = new Date().toISOString();
    const namespace = involved.namespace ?? "default";
    try {
      await client.request("POST", `/api/v1/namespaces/${encodeURIComponent(namespace)}/events`, {
        body: {
          apiVersion: "v1",
          kind: "Event",
          metadata: { generateName: `${involved.name ?? "object"}.`, namespace },
          involvedObject: Object.fromEntries(Object.entries(involved).filter(([, v]) => v !== undefined)),
          type: "Warning",
          reason: change.op === "apply" ? "NotConverted" : "RemovalRefused",
          message:
            message.length > EVENT_MESSAGE_MAX ? `${message.slice(0, EVENT_MESSAGE_MAX - 1)}…` : message,
          source: { component: "wasmesh-control-plane" },
          reportingComponent: "wasmesh.io/control-plane",
          reportingInstance: options.identity,
          action: "Convert",
          firstTimestamp: now,
          lastTimestamp: now,
          count: 1,
        },
      });
    } catch (error) {
      log(`wasmesh imports: cannot record an Event on ${what}: ${(error as Error).message}`);
    }
  }

  function rediscoverNow(): void {
    discover().then(
      () => schedule(),
      (error: unknown) => log(`wasmesh imports: discovery failed: ${(error as Error).message}`),
    );
  }

  return {
    start() {
      if (running) return;
      running = true;
      unwatchStore = store.watch(() => schedule());
      rediscoverNow();
      rediscover = setInterval(rediscoverNow, rediscoverMs);
    },
    async stop() {
      if (!running) return;
      running = false;
      if (timer !== undefined) clearTimeout(timer);
      if (rediscover !== undefined) clearInterval(rediscover);
      timer = undefined;
      rediscover = undefined;
      unwatchStore?.();
      const loops = [...watched.values()].map((w) => {
        w.abort.abort();
        return w.loop;
      });
      watched.clear();
      reported.clear();
      await Promise.allSettled([...loops, pass]);
    },
  };
}
