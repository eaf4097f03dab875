// Applying other meshes' resources (issue 13): what the store must become when originals are
// applied or deleted. Every kept original (an ImportedResource) is converted again together with
// the incoming ones, as one input: a VirtualService applied today may name the subsets of a
// DestinationRule applied yesterday, and deleting that DestinationRule is refused while it does.
// The plan then puts what the originals produce now (unchanged documents are skipped by the API's
// writer, so applying the same file twice changes nothing), deletes what they produced before and
// no longer do, and keeps each original beside what it became. Every put and delete carries the
// version it was planned against: a concurrent write makes the whole apply a conflict, not a mix.
import { API_VERSION, type ImportedResource, type Kind, type Resource } from "../resources/index.ts";
import { convert, sourceOf } from "./convert.ts";
import { isObj } from "./fields.ts";
import { nativeName } from "./naming.ts";
import { formatProblem, type ImportProblem, type Produced } from "./types.ts";

/** A document of the request that is another mesh's resource. */
export interface IncomingDocument {
  doc: unknown;
  /** Its index in the request (problems name it). */
  document: number;
}

export interface PlannedPut {
  resource: Resource;
  /** The version planned against: null, absent then. */
  expectedVersion: string | null;
  /** The request document it comes from, if an incoming one. */
  document?: number;
}

export interface ImportPlan {
  puts: PlannedPut[];
  deletes: { kind: Kind; name: string; expectedVersion: string }[];
  /** The incoming documents' warnings (kept originals reported theirs when they were applied). */
  warnings: ImportProblem[];
  /**
   * Why the plan cannot be carried out. An incoming document's problem names its request index;
   * a kept original's (one this change breaks) has document -1 and its kind and name.
   */
  errors: ImportProblem[];
}

export interface PlanOptions {
  /** The namespace of incoming documents that name none (as `kubectl apply -n`). */
  namespace?: string;
  /** ImportedResources to delete, by name, with what they produced. */
  remove?: readonly string[];
  /**
   * Who applies the incoming documents (ImportedResource spec.origin; absent, none is written).
   * Kept originals keep their own.
   */
  origin?: "api" | "kubernetes";
}

/** The name of the ImportedResource that keeps an original: `<kind>-<name>[-<namespace>]`. */
export function importedName(source: Produced["source"]): string {
  return nativeName(source.kind.toLowerCase(), source.name, source.namespace);
}

const keyOf = (kind: string, name: string) => `${kind}/${name}`;

/**
 * What applying `incoming` (and removing `options.remove`) does to `stored`, the store's validated
 * resources with their versions.
 */
export function planImports(
  stored: readonly Resource[],
  incoming: readonly IncomingDocument[],
  options: PlanOptions = {},
): ImportPlan {
  const plan: ImportPlan = { puts: [], deletes: [], warnings: [], errors: [] };
  const byKey = new Map(stored.map((r) => [keyOf(r.kind, r.metadata.name), r]));
  const kept = stored.filter((r): r is ImportedResource => r.kind === "ImportedResource");
  const owned = new Set(kept.flatMap((r) => r.spec.produced.map((p) => keyOf(p.kind, p.name))));
  const removed = new Set(options.remove ?? []);

  // The input: incoming documents first (their indexes stay the request's), then the kept originals
  // they neither replace nor remove (by the ImportedResource's name).
  const incomingNames = new Set(
    incoming.flatMap((i) => {
      const source = sourceOf(i.doc, options.namespace);
      return source !== undefined ? [importedName(source)] : [];
    }),
  );
  const others = kept.filter((r) => !removed.has(r.metadata.name) && !incomingNames.has(r.metadata.name));
  const documents = [...incoming.map((i) => i.doc), ...others.map((r) => r.spec.document)];
  const namespaces = [
    ...incoming.map(() => options.namespace),
    ...others.map((r) => r.spec.source.namespace),
  ];
  // What the module registry holds, for WasmPlugins that name a module by digest or URL.
  const modules = stored.flatMap((r) =>
    r.kind === "WasmModule" ? [{ name: r.metadata.name, sha256: r.spec.sha256 }] : [],
  );
  const result = convert(documents, { namespaces, modules });
  const requestIndex = (document: number) => incoming[document]?.document;
  const located = (p: ImportProblem): ImportProblem => {
    const at = requestIndex(p.document);
    return at !== undefined
      ? { ...p, document: at }
      : { ...p, document: -1, message: `(kept from an earlier apply) ${p.message}` };
  };
  plan.errors.push(...result.errors.map(located));
  plan.warnings.push(...result.warnings.filter((w) => requestIndex(w.document) !== undefined).map(located));
  // A native document here is the caller's mistake: the API sends those down its own path.
  for (const p of result.produced) {
    if (p.source.apiVersion === API_VERSION) {
      throw new Error(`planImports: ${p.source.kind}/${p.source.name} is native, not an import`);
    }
  }
  if (plan.errors.length > 0) return plan;

  const producedBy = new Map<string, number>();
  for (const r of result.resources) {
    const key = keyOf(r.kind, r.metadata.name);
    const source = result.produced.findIndex((p) => p.resources.some((x) => keyOf(x.kind, x.name) === key));
    producedBy.set(key, source);
    const before = byKey.get(key);
    const document = requestIndex(result.produced[source]?.document ?? -1);
    if (before !== undefined && !owned.has(key)) {
      const origin = result.produced[source]?.source;
      plan.errors.push({
        document: document ?? -1,
        kind: origin?.kind ?? r.kind,
        name: origin?.name ?? r.metadata.name,
        path: "metadata.name",
        message: `produces ${key}, which exists and was not imported (applied natively, or discovered): delete or rename it first`,
      });
      continue;
    }
    plan.puts.push({
      resource: r,
      expectedVersion: before?.metadata.resourceVersion ?? null,
      ...(document !== undefined ? { document } : {}),
    });
  }
  if (plan.errors.length > 0) return plan;

  // Each original, kept beside what it became, with what it reported.
  const records = new Set<string>();
  for (const p of result.produced) {
    const name = importedName(p.source);
    records.add(name);
    const doc = documents[p.document];
    if (!isObj(doc)) continue;
    const warnings = result.warnings.filter((w) => w.document === p.document);
    const origin =
      p.document < incoming.length ? options.origin : others[p.document - incoming.length]?.spec.origin;
    const record: ImportedResource = {
      apiVersion: API_VERSION,
      kind: "ImportedResource",
      metadata: { name },
      spec: {
        source: {
          apiVersion: p.source.apiVersion,
          kind: p.source.kind,
          name: p.source.name,
          ...(p.source.namespace !== undefined ? { namespace: p.source.namespace } : {}),
        },
        document: doc,
        produced: p.resources.map((x) => ({
          kind: x.kind as ImportedResource["spec"]["produced"][number]["kind"],
          name: x.name,
        })),
        ...(warnings.length > 0
          ? {
              warnings: warnings.map((w) =>
                formatProblem({ ...w, document: 0 }).replace(/^document 0: /, ""),
              ),
            }
          : {}),
        ...(origin !== undefined ? { origin } : {}),
      },
    };
    const document = requestIndex(p.document);
    plan.puts.push({
      resource: record,
      expectedVersion: byKey.get(keyOf("ImportedResource", name))?.metadata.resourceVersion ?? null,
      ...(document !== undefined ? { document } : {}),
    });
  }

  // What was produced before and is not now, and the originals no longer kept.
  for (const key of owned) {
    if (producedBy.has(key)) continue;
    const before = byKey.get(key);
    if (before === undefined) continue;
    plan.deletes.push({
      kind: before.kind,
      name: before.metadata.name,
      expectedVersion: before.metadata.resourceVersion ?? "",
    });
  }
  for (const r of kept) {
    if (records.has(r.metadata.name)) continue;
    plan.deletes.push({
      kind: "ImportedResource",
      name: r.metadata.name,
      expectedVersion: r.metadata.resourceVersion ?? "",
    });
  }
  return plan;
}
