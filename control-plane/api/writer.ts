// Every write of the API goes through here: one at a time per store, so that the reference check
// and the apply see the same state; reference validation over the whole resulting state; unchanged
// documents skipped; the modules' check of what the proxies would load (revision/check.ts: the
// WasmPlugins' configurations before the lock, the routing filter under it); one store.apply per
// request (all or nothing); onChange after a real commit.
import {
  type Kind,
  MESH_MODULE,
  type ReferenceError as ReferenceProblem,
  type Resource,
  validateReferences,
  validateResource,
  type WasmPlugin,
} from "../resources/index.ts";
import type { ConfigurationCheck, ConfigurationProblem, PluginCheck } from "../revision/index.ts";
import type { AppliedChange, Change, ResourceStore, StoredResource } from "../store/index.ts";
import { ConflictError } from "../store/index.ts";
import { ApiError, type ErrorDetail, invalid, notFound } from "./errors.ts";

export type Desired =
  /**
   * expectedVersion: undefined writes unconditionally, null requires absence (create). imported:
   * planned by the apply of other meshes' originals (api/imports.ts), the one writer of
   * ImportedResources.
   */
  | { op: "put"; resource: Resource; expectedVersion?: string | null; document?: number; imported?: boolean }
  | { op: "delete"; kind: Kind; name: string; expectedVersion?: string; imported?: boolean };

export type Action = "created" | "configured" | "unchanged";

export type Outcome =
  | { op: "put"; kind: string; name: string; action: Action; resource: StoredResource }
  /** resource: what was stored before the delete. */
  | { op: "delete"; kind: string; name: string; resource: StoredResource };

export interface WriteResult {
  /** The store revision after the write (the current one for a dry run or a write that changed nothing). */
  revision: number;
  /** Something was stored (never for a dry run). */
  committed: boolean;
  outcomes: Outcome[];
  warnings: ErrorDetail[];
}

/**
 * Checks one change under the write lock, against what is stored then (throw to refuse the whole
 * write, nothing stored): who may write what (auth.ts workloadGuard).
 */
export type WriteGuard = (change: { name: string; before?: StoredResource; after?: Resource }) => void;

export interface WriteOptions {
  dryRun?: boolean;
  guard?: WriteGuard;
}

export interface Writer {
  write(desired: readonly Desired[], options?: WriteOptions): Promise<WriteResult>;
  /** Runs fn while holding the write lock (for writes that bypass write(), e.g. module pushes). */
  exclusive<T>(fn: () => Promise<T>): Promise<T>;
  /** Reports a commit made under exclusive() to onChange. */
  committed(revision: number): void;
}

// Keyed by store, not by app: two API instances over one store must still take turns.
const locks = new WeakMap<ResourceStore, { tail: Promise<unknown> }>();

function exclusive<T>(store: ResourceStore, fn: () => Promise<T>): Promise<T> {
  let lock = locks.get(store);
  if (!lock) {
    lock = { tail: Promise.resolve() };
    locks.set(store, lock);
  }
  const run = lock.tail.then(fn);
  lock.tail = run.catch(() => undefined);
  return run;
}

const keyOf = (kind: string, name: string) => `${kind}/${name}`;
const at = (document: number | undefined) => (document !== undefined ? { document } : {});

/** JSON with object keys sorted, so that equal documents compare equal whatever their key order. */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === "object" && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  );
}

/** Whether writing `resource` would store what is already stored (store-owned metadata aside). */
function unchanged(stored: StoredResource, resource: Resource): boolean {
  return (
    stored.apiVersion === resource.apiVersion &&
    canonical(stored.metadata.labels ?? {}) === canonical(resource.metadata.labels ?? {}) &&
    canonical(stored.spec) === canonical(resource.spec ?? null)
  );
}

export function createWriter(
  store: ResourceStore,
  onChange: ((revision: number) => void) | undefined,
  log: (message: string, error?: unknown) => void,
  check?: ConfigurationCheck,
): Writer {
  function notify(revision: number): void {
    try {
      onChange?.(revision);
    } catch (error) {
      // The write has committed; failing the request would invite a retry of a done write.
      log(`api: onChange(${revision}) threw; the write is committed`, error);
    }
  }

  /**
   * The configurations of the WasmPlugins `desired` puts, loaded into their modules as stored now:
   * before the write lock, so that a module spinning out its time limit holds up no other write.
   */
  async function checkPlugins(desired: readonly Desired[]): Promise<PluginCheck[]> {
    const plugins = desired.flatMap((d) =>
      d.op === "put" && d.resource.kind === "WasmPlugin" ? [d.resource as WasmPlugin] : [],
    );
    if (check === undefined || plugins.length === 0) return [];
    const digests = new Map<string, string>();
    for (const module of await store.list("WasmModule")) {
      const sha256 = (module.spec as { sha256?: unknown } | null)?.sha256;
      if (typeof sha256 === "string") digests.set(module.metadata.name, sha256);
    }
    return check.plugins(plugins, digests);
  }

  async function writeLocked(
    desired: readonly Desired[],
    options: WriteOptions = {},
    plugins: readonly PluginCheck[] = [],
  ): Promise<WriteResult> {
    const stored = new Map<string, StoredResource>();
    const state = new Map<string, Resource>();
    for (const s of await store.list()) {
      const key = keyOf(s.kind, s.metadata.name);
      stored.set(key, s);
      // Only validated resources take part in reference checks (as in translation); a row that
      // no longer validates (edited by hand, older schema) is left out, not fatal.
      const result = validateResource(s, { stored: true });
      if (result.ok) state.set(key, result.resource);
      else
        log(`api: stored ${key} is invalid and ignored for reference checks: ${result.errors[0]?.message}`);
    }
    const baseline = [...state.values()];

    /** The request document of each key written (apply), for error details. */
    const documents = new Map<string, number | undefined>();
    const puts = new Set<string>();
    desired.forEach((d) => {
      const [kind, name] = d.op === "put" ? [d.resource.kind, d.resource.metadata.name] : [d.kind, d.name];
      const key = keyOf(kind, name);
      const document = d.op === "put" ? d.document : undefined;
      if (documents.has(key)) {
        const first = documents.get(key);
        const message = first !== undefined ? `duplicate of document ${first}` : "appears more than once";
        throw invalid(`${key} appears more than once in the request`, [
          { ...at(document), kind, name, path: "metadata.name", message },
        ]);
      }
      documents.set(key, document);
      if (d.op === "put") puts.add(key);
    });

    if (options.guard !== undefined) {
      for (const d of desired) {
        const [kind, name] = d.op === "put" ? [d.resource.kind, d.resource.metadata.name] : [d.kind, d.name];
        const before = stored.get(keyOf(kind, name));
        options.guard({
          name,
          ...(before !== undefined ? { before } : {}),
          ...(d.op === "put" ? { after: d.resource } : {}),
        });
      }
    }

    // Preconditions first, against the snapshot (the store checks them again, atomically): a
    // stale write is a 409 whatever else is wrong with it, and an unchanged document is still
    // refused when its version is stale.
    for (const d of desired) {
      if (d.expectedVersion === undefined) continue;
      const [kind, name] = d.op === "put" ? [d.resource.kind, d.resource.metadata.name] : [d.kind, d.name];
      const actual = stored.get(keyOf(kind, name))?.metadata.resourceVersion ?? null;
      if (actual !== d.expectedVersion) throw new ConflictError(kind, name, d.expectedVersion, actual);
    }

    const changes: Change[] = [];
    /** For each desired change, its index in `changes`, or the stored resource it leaves as is. */
    const plan: ({ change: number } | { same: StoredResource })[] = [];
    for (const d of desired) {
      if (d.op === "put") {
        const { kind, metadata } = d.resource;
        const key = keyOf(kind, metadata.name);
        const before = stored.get(key);
        if (before && unchanged(before, d.resource)) {
          plan.push({ same: before });
          continue;
        }
        if (kind === "WasmModule") {
          // Its spec describes bytes in the module registry; only the registry may write it.
          throw invalid(`WasmModule '${metadata.name}' cannot be written here: use POST /v1/modules/<name>`, [
            {
              ...at(d.document),
              kind,
              name: metadata.name,
              path: "(root)",
              message: "WasmModule resources are created by uploading the module: POST /v1/modules/<name>",
            },
          ]);
        }
        if (kind === "ImportedResource" && d.imported !== true) {
          throw invalid(`ImportedResource '${metadata.name}' cannot be written here: apply the original`, [
            {
              ...at(d.document),
              kind,
              name: metadata.name,
              path: "(root)",
              message:
                "ImportedResources are written by applying another mesh's resource (POST /v1/apply, wasmesh apply -f)",
            },
          ]);
        }
        plan.push({ change: changes.length });
        changes.push({
          op: "put",
          resource: d.resource,
          ...(d.expectedVersion !== undefined ? { expectedVersion: d.expectedVersion } : {}),
        });
        state.set(key, d.resource);
      } else {
        const key = keyOf(d.kind, d.name);
        if (!stored.has(key)) throw notFound(`${d.kind} '${d.name}' does not exist`);
        plan.push({ change: changes.length });
        changes.push({
          op: "delete",
          kind: d.kind,
          name: d.name,
          ...(d.expectedVersion !== undefined ? { expectedVersion: d.expectedVersion } : {}),
        });
        state.delete(key);
      }
    }

    // References over the whole resulting state. A problem fails the write if it concerns a
    // resource being written, or if this write introduces it (e.g. deleting a Service a Route
    // uses); problems already in the stored state elsewhere don't block unrelated writes.
    const before = validateReferences(baseline);
    const after = validateReferences([...state.values()]);
    const signature = (e: ReferenceProblem) => `${e.kind}/${e.name}\0${e.path}\0${e.message}`;
    const relevantOf = (existing: readonly ReferenceProblem[], found: readonly ReferenceProblem[]) => {
      const known = new Set(existing.map(signature));
      return found.filter((e) => puts.has(keyOf(e.kind, e.name)) || !known.has(signature(e)));
    };
    const detailsOf = (problems: readonly ReferenceProblem[]) =>
      problems.map((e): ErrorDetail => {
        const document = puts.has(keyOf(e.kind, e.name)) ? documents.get(keyOf(e.kind, e.name)) : undefined;
        return { ...at(document), kind: e.kind, name: e.name, path: e.path, message: e.message };
      });
    const errors = relevantOf(before.errors, after.errors);
    if (errors.length > 0) {
      // A delete refused because others still refer to what it deletes: each reference is listed
      // once, as a reference ("… does not exist" would describe the state the delete would leave).
      const deleted = new Set(desired.flatMap((d) => (d.op === "delete" ? [keyOf(d.kind, d.name)] : [])));
      const references = errors.flatMap((e) =>
        e.target !== undefined &&
        deleted.has(keyOf(e.target.kind, e.target.name)) &&
        !puts.has(keyOf(e.kind, e.name))
          ? [{ ...e, target: e.target }]
          : [],
      );
      if (references.length === errors.length) {
        const targets = [...new Set(references.map((e) => `${e.target.kind} '${e.target.name}'`))];
        const holders = new Set(references.map((e) => keyOf(e.kind, e.name))).size;
        const count = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;
        throw invalid(
          `cannot delete ${targets.join(", ")}: still referenced by ${count(holders, "resource")} ` +
            `(${count(references.length, "reference")}); change or delete them first`,
          detailsOf(
            references.map((e) => ({ ...e, message: `refers to ${e.target.kind} '${e.target.name}'` })),
          ),
        );
      }
      throw invalid("the resources reference resources that do not exist", detailsOf(errors));
    }
    const warnings = detailsOf(relevantOf(before.warnings, after.warnings));

    if (changes.length === 0) {
      // Nothing to store: no transaction, no revision, no onChange.
      return { revision: await store.revision(), committed: false, outcomes: outcomesOf([]), warnings };
    }
    if (check !== undefined) {
      const found = await configurationProblems(check, plugins, [...state.values()], baseline, changes, puts);
      warnings.push(...found.warnings.map(detailOf));
      if (found.errors.length > 0) {
        throw invalid(
          "the modules refuse the configuration this write would give the proxies and the edge; nothing was stored",
          found.errors.map(detailOf),
        );
      }
    }
    const dryRun = options.dryRun === true;
    const result = await store.apply(changes, { dryRun });
    const committed = !dryRun && result.changes.some((c) => c.op === "put" || c.deleted);
    if (committed) notify(result.revision);
    const revision = dryRun ? await store.revision() : result.revision;
    return { revision, committed, outcomes: outcomesOf(result.changes), warnings };

    function detailOf(problem: ConfigurationProblem): ErrorDetail {
      const { kind, name, path, message } = problem;
      const key = kind !== undefined && name !== undefined ? keyOf(kind, name) : undefined;
      const document = key !== undefined && puts.has(key) ? documents.get(key) : undefined;
      return {
        ...at(document),
        ...(kind !== undefined ? { kind } : {}),
        ...(name !== undefined ? { name } : {}),
        path,
        message,
      };
    }

    function outcomesOf(applied: readonly AppliedChange[]): Outcome[] {
      return desired.map((d, i): Outcome => {
        const step = plan[i];
        if (step === undefined) throw new Error("writer: plan and changes out of step");
        if ("same" in step) {
          const { kind, metadata } = step.same;
          return { op: "put", kind, name: metadata.name, action: "unchanged", resource: step.same };
        }
        const change = applied[step.change];
        if (change?.op === "put") {
          return {
            op: "put",
            kind: change.kind,
            name: change.name,
            action: change.created ? "created" : "configured",
            resource: change.resource,
          };
        }
        if (d.op !== "delete") throw new Error("writer: a put was applied as a delete");
        const previous = stored.get(keyOf(d.kind, d.name));
        if (previous === undefined) throw new Error("writer: deleted a resource that was not stored");
        return { op: "delete", kind: d.kind, name: d.name, resource: previous };
      });
    }
  }

  return {
    write: async (desired, options) => {
      const plugins = await checkPlugins(desired);
      return exclusive(store, () => writeLocked(desired, options, plugins));
    },
    exclusive: (fn) => exclusive(store, fn),
    committed: notify,
  };
}

/**
 * What the modules refuse of the state a write leaves: the WasmPlugins it changes (checked before
 * the lock, against the module digests then: a module pushed since makes the write a 409, to be
 * applied again) and the routing filter (checked now, over the whole state).
 */
async function configurationProblems(
  check: ConfigurationCheck,
  plugins: readonly PluginCheck[],
  candidate: readonly Resource[],
  baseline: readonly Resource[],
  changes: readonly Change[],
  written: ReadonlySet<string>,
): Promise<{ errors: ConfigurationProblem[]; warnings: ConfigurationProblem[] }> {
  const changed = new Set(
    changes.flatMap((c) => (c.op === "put" ? [keyOf(c.resource.kind, c.resource.metadata.name)] : [])),
  );
  const digests = new Map(
    candidate.flatMap((r) => (r.kind === "WasmModule" ? [[r.metadata.name, r.spec.sha256] as const] : [])),
  );
  const errors: ConfigurationProblem[] = [];
  for (const { plugin, sha256, problems } of plugins) {
    if (!changed.has(keyOf(plugin.kind, plugin.metadata.name))) continue; // as stored: not this write's
    const module = plugin.spec.module;
    if (module !== MESH_MODULE && digests.get(module) !== sha256) {
      throw new ApiError(
        409,
        "conflict",
        `WasmModule '${module}' changed while WasmPlugin '${plugin.metadata.name}' was being checked against it; apply again`,
        [
          {
            kind: "WasmPlugin",
            name: plugin.metadata.name,
            path: "spec.module",
            message: "its module changed during the check",
          },
        ],
      );
    }
    errors.push(...problems);
  }
  const routing = await check.routing(candidate, baseline, written);
  return { errors: [...errors, ...routing.errors], warnings: routing.warnings };
}
