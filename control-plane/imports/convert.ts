// Other meshes' resources as wasmesh's (issue 13): `convert` takes parsed documents (Istio's, Kuma's,
// Consul's, and native ones, which pass through validated) and returns the native resources they become, with a
// warning per field not carried and an error per field whose loss would change the meaning.
import {
  API_VERSION,
  type MeshPolicy,
  type MtlsMode,
  type Resource,
  validateResource,
} from "../resources/index.ts";
import { consul } from "./consul.ts";
import { type Context, isObj, type Obj } from "./fields.ts";
import { istio } from "./istio.ts";
import { kubernetes } from "./kubernetes.ts";
import { kuma } from "./kuma.ts";
import { isDnsLabel, nativeName } from "./naming.ts";
import type {
  ConvertOptions,
  ConvertResult,
  ImportProblem,
  Produced,
  SourceDocument,
  SourceMesh,
} from "./types.ts";

/** The meshes whose resources are converted, each asked in turn whether a document is its own. */
// A SourceMesh's Index is its own business: the list holds them with it erased.
export const MESHES: readonly SourceMesh<unknown>[] = [
  istio as SourceMesh<unknown>,
  consul as SourceMesh<unknown>,
  kuma as SourceMesh<unknown>,
  // Kubernetes' own v1 Service (universal mode: `wasmesh apply -f svc.yaml`).
  kubernetes as SourceMesh<unknown>,
];

/** Every converted kind's support matrix, by kind (kinds are unique across the meshes). */
export const FIELDS = Object.fromEntries(MESHES.flatMap((m) => Object.entries(m.fields)));

/** A document one of the meshes claims: which mesh, and the original as Produced names it. */
interface Recognised {
  mesh: SourceMesh<unknown>;
  source: Produced["source"];
  /** The mesh's, but not converted (an unknown kind or version): the error. */
  error?: { path: string; message: string };
}

/** The mesh that claims `value`, if any, with `namespace` taken when the document names none. */
function recognise(value: unknown, namespace: string | undefined): Recognised | undefined {
  if (!isObj(value) || value.apiVersion === API_VERSION) return undefined;
  for (const mesh of MESHES) {
    const id = mesh.identify(value);
    if (id === undefined) continue;
    const ns = "namespace" in id && id.namespace !== undefined ? id.namespace : namespace;
    const source: Produced["source"] = {
      apiVersion: typeof value.apiVersion === "string" ? value.apiVersion : (mesh.universalApiVersion ?? ""),
      kind: id.kind,
      ...(ns !== undefined ? { namespace: ns } : {}),
      name: id.name,
    };
    return { mesh, source, ...("error" in id ? { error: id.error } : {}) };
  }
  return undefined;
}

/** Whether `value` is one of the converted meshes' documents (a kind converted or not). */
export const isForeign = (value: unknown): boolean => recognise(value, undefined) !== undefined;

/** Which original `value` is (as Produced names it), if one of the converted meshes' documents. */
export const sourceOf = (value: unknown, namespace?: string): Produced["source"] | undefined =>
  recognise(value, namespace)?.source;

export function convert(documents: readonly unknown[], options: ConvertOptions = {}): ConvertResult {
  const result: ConvertResult = { resources: [], warnings: [], errors: [], produced: [] };
  const fallbackNamespace = (document: number) =>
    options.namespaces !== undefined && document < options.namespaces.length
      ? options.namespaces[document]
      : options.namespace;
  const recognised = new Map<number, Recognised & { doc: Obj }>();
  documents.forEach((doc, document) => {
    const found = recognise(doc, fallbackNamespace(document));
    if (found !== undefined) recognised.set(document, { ...found, doc: doc as Obj });
  });
  const indexes = new Map(
    MESHES.map((mesh) => [
      mesh,
      mesh.index(
        [...recognised.entries()]
          .filter(([, r]) => r.mesh === mesh && !r.error)
          .map(
            ([document, r]): SourceDocument => ({
              doc: r.doc,
              document,
              kind: r.source.kind,
              name: r.source.name,
              namespace: r.source.namespace,
            }),
          ),
        options,
      ),
    ]),
  );
  // What the originals say for the whole mesh: one MeshPolicy.
  const mesh: { mtls?: MtlsMode; mtlsDocument?: number; deny: boolean; sources: Produced[] } = {
    deny: false,
    sources: [],
  };
  const taken = new Map<string, number>();
  const routed = new Map<string, number>();
  let firstMeshDocument = -1;
  const deniedToAll: { destination: string; ctx: Context }[] = [];

  documents.forEach((doc, document) => {
    if (doc === null || doc === undefined) return;
    const found = recognised.get(document);
    const metadata = isObj(doc) && isObj(doc.metadata) ? doc.metadata : {};
    const kind = found?.source.kind ?? (isObj(doc) && typeof doc.kind === "string" ? doc.kind : "");
    const name = found?.source.name ?? (typeof metadata.name === "string" ? metadata.name : "");
    const namespace =
      found?.source.namespace ??
      (typeof metadata.namespace === "string" ? metadata.namespace : fallbackNamespace(document));
    const problem = (path: string, message: string): ImportProblem => ({
      document,
      kind,
      name,
      path,
      message,
    });
    const errorsBefore = result.errors.length;
    const ctx: Context = {
      document,
      kind,
      name,
      namespace,
      warn: (path, message) => result.warnings.push(problem(path, message)),
      error: (path, message) => result.errors.push(problem(path, message)),
    };
    if (!isObj(doc)) {
      ctx.error("(root)", "must be an object (a resource)");
      return;
    }
    const source: Produced["source"] = found?.source ?? {
      apiVersion: String(doc.apiVersion),
      kind,
      ...(namespace !== undefined ? { namespace } : {}),
      name,
    };
    if (doc.apiVersion === API_VERSION) {
      const valid = validateResource(doc);
      if (!valid.ok) for (const e of valid.errors) ctx.error(e.path, e.message);
      else if (add(valid.resource, document)) {
        result.produced.push({
          document,
          source,
          resources: [{ kind: valid.resource.kind, name: valid.resource.metadata.name }],
        });
      }
      return;
    }
    if (found === undefined) {
      ctx.error(
        "apiVersion",
        `${JSON.stringify(doc.apiVersion)}: not a kind wasmesh converts (${MESHES.map((m) => m.name).join(", ")}'s, or ${API_VERSION})`,
      );
      return;
    }
    if (found.error !== undefined) {
      ctx.error(found.error.path, found.error.message);
      return;
    }
    if (!isDnsLabel(name)) {
      ctx.error("metadata.name", "is required: a DNS label, as Kubernetes names resources");
      return;
    }
    if (namespace !== undefined && !isDnsLabel(namespace)) {
      ctx.error("metadata.namespace", `'${namespace}' is no DNS label`);
      return;
    }
    const base = nativeName(name, namespace);
    const produced: Produced = { document, source, resources: [] };
    const made = found.mesh.translate(ctx, doc, indexes.get(found.mesh), base);
    // A document with an error produces nothing: half of a resource's meaning is worse than none.
    if (result.errors.length > errorsBefore) return;
    // One mTLS mode for the mesh: two originals that say different ones cannot both hold.
    if (made.mtls !== undefined && mesh.mtls !== undefined && made.mtls !== mesh.mtls) {
      ctx.error(
        "(root)",
        `sets the mesh's mTLS mode to ${made.mtls}, where document ${mesh.mtlsDocument} sets ${mesh.mtls}: the mesh has one mode`,
      );
      return;
    }
    for (const r of made.resources) {
      if (r.kind !== "Route") continue;
      // Istio merges no two VirtualServices of one host for sidecars, Kuma and Consul have one
      // route per service too: a second would silently lose to the first.
      const other = routed.get(r.spec.service);
      if (other !== undefined) {
        ctx.error(
          kind === "VirtualService" ? "spec.hosts" : "(root)",
          `'${r.spec.service}' is routed by document ${other} too: one route per destination service`,
        );
        return;
      }
    }
    for (const r of made.resources) {
      const valid = validateResource(r);
      if (!valid.ok) {
        for (const e of valid.errors)
          ctx.error("(produced)", `${r.kind}/${r.metadata.name}: ${e.path}: ${e.message}`);
        continue;
      }
      if (!add(r, document)) continue;
      if (r.kind === "Route") routed.set(r.spec.service, document);
      produced.resources.push({ kind: r.kind, name: r.metadata.name });
    }
    for (const destination of made.deniedToAll ?? []) deniedToAll.push({ destination, ctx });
    if (made.mtls !== undefined || made.denyByDefault === true) {
      if (made.mtls !== undefined && mesh.mtls === undefined) {
        mesh.mtls = made.mtls;
        mesh.mtlsDocument = document;
      }
      if (made.denyByDefault === true) mesh.deny = true;
      if (mesh.sources.length === 0) firstMeshDocument = document;
      mesh.sources.push(produced);
    }
    result.produced.push(produced);
  });

  // A source's own allow rule wins over "*" in wasmesh; in Istio, DENY policies are evaluated first.
  for (const { destination, ctx } of deniedToAll) {
    const allowed = result.resources.filter(
      (r) => r.kind === "AccessRule" && r.spec.destination === destination && r.spec.action === "allow",
    );
    if (allowed.length > 0) {
      ctx.error(
        "spec.rules",
        `denies every caller of '${destination}', but AccessRules ${allowed.map((r) => r.metadata.name).join(", ")} allow some: in wasmesh a source's own rule wins over "*", so they would still be allowed`,
      );
    }
  }

  if (mesh.sources.length > 0) {
    // Istio's default without an ALLOW policy for the whole mesh: every call is allowed.
    const policy: MeshPolicy = {
      apiVersion: API_VERSION,
      kind: "MeshPolicy",
      metadata: { name: "default" },
      spec: {
        defaultAccess: mesh.deny ? "deny" : "allow",
        ...(mesh.mtls ? { mtls: { mode: mesh.mtls } } : {}),
      },
    };
    if (add(policy, firstMeshDocument)) {
      for (const s of mesh.sources) s.resources.push({ kind: "MeshPolicy", name: "default" });
    }
  }
  return result;

  /** Adds a resource unless one of its kind and name is there already (an error at `document`). */
  function add(r: Resource, document: number): boolean {
    const key = `${r.kind}/${r.metadata.name}`;
    const earlier = taken.get(key);
    if (earlier !== undefined) {
      const d = documents[document];
      const found = recognised.get(document)?.source;
      const metadata = isObj(d) && isObj(d.metadata) ? d.metadata : {};
      result.errors.push({
        document,
        kind: found?.kind ?? (isObj(d) && typeof d.kind === "string" ? d.kind : r.kind),
        name: found?.name ?? (typeof metadata.name === "string" ? metadata.name : r.metadata.name),
        path: "metadata.name",
        message: `produces ${key}, which document ${earlier} produces too`,
      });
      return false;
    }
    taken.set(key, document);
    result.resources.push(r);
    return true;
  }
}
