// Other meshes' resources at the API's edge (issue 13): the writes that applying originals (or
// deleting one) comes to, planned by imports/apply.ts over what is stored now. The writer carries
// them out like any apply: all or nothing, unchanged documents skipped, references checked.
import { type ImportPlan, type ImportProblem, type IncomingDocument, planImports } from "../imports/index.ts";
import { type Resource, validateResource } from "../resources/index.ts";
import type { ResourceStore } from "../store/index.ts";
import { type ErrorDetail, invalid } from "./errors.ts";
import type { Desired } from "./writer.ts";

export interface ImportOptions {
  /** The namespace of documents that name none. */
  namespace?: string;
  /** ImportedResources to delete, with what they produced. */
  remove?: readonly string[];
  /** Warnings fail the write. */
  strict?: boolean;
  /** Who applies them (ImportedResource spec.origin): the API unless said otherwise. */
  origin?: "api" | "kubernetes";
}

function detailOf(p: ImportProblem): ErrorDetail {
  return {
    ...(p.document >= 0 ? { document: p.document } : {}),
    ...(p.kind !== "" ? { kind: p.kind } : {}),
    ...(p.name !== "" ? { name: p.name } : {}),
    path: p.path,
    message: p.message,
  };
}

/** The writes that apply `incoming` and remove `options.remove`; throws (400) naming each problem. */
export async function importChanges(
  store: ResourceStore,
  incoming: readonly IncomingDocument[],
  options: ImportOptions = {},
): Promise<{ desired: Desired[]; warnings: ErrorDetail[] }> {
  const stored = await validStored(store);
  const plan = planImports(stored, incoming, {
    ...(options.namespace !== undefined ? { namespace: options.namespace } : {}),
    ...(options.remove !== undefined ? { remove: options.remove } : {}),
    origin: options.origin ?? "api",
  });
  if (plan.errors.length > 0) {
    const count = plan.errors.length;
    throw invalid(
      `${count} problem${count === 1 ? "" : "s"} converting the other meshes' resources; nothing was applied`,
      plan.errors.map(detailOf),
    );
  }
  const warnings = plan.warnings.map(detailOf);
  if (options.strict === true && warnings.length > 0) {
    throw invalid(
      `${warnings.length} field${warnings.length === 1 ? "" : "s"} not carried, and strict was asked; nothing was applied`,
      warnings,
    );
  }
  return { desired: desiredOf(plan), warnings };
}

/** What is stored and valid: the state a plan is made over (an invalid row takes no part). */
export async function validStored(store: ResourceStore): Promise<Resource[]> {
  const stored: Resource[] = [];
  for (const s of await store.list()) {
    const result = validateResource(s, { stored: true });
    if (result.ok) stored.push(result.resource);
  }
  return stored;
}

/** A plan's writes, for the API's writer (which alone writes ImportedResources: imported). */
export function desiredOf(plan: ImportPlan): Desired[] {
  return [
    ...plan.puts.map(
      (p): Desired => ({
        op: "put",
        resource: p.resource,
        expectedVersion: p.expectedVersion,
        imported: true,
        ...(p.document !== undefined ? { document: p.document } : {}),
      }),
    ),
    ...plan.deletes.map(
      (d): Desired => ({
        op: "delete",
        kind: d.kind,
        name: d.name,
        expectedVersion: d.expectedVersion,
        imported: true,
      }),
    ),
  ];
}
