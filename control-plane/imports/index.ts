// Other meshes' resources as wasmesh's (issue 13): `convert` takes parsed documents (Istio's, and
// native ones, which pass through validated) and returns the native resources they become, with a
// warning per field not carried and an error per field whose loss would change the meaning.
import {
  API_VERSION,
  type MeshPolicy,
  type MtlsMode,
  type Resource,
  validateResource,
} from "../resources/index.ts";
import {
  auditFields,
  type Context,
  convertAuthorizationPolicy,
  convertDestinationRule,
  convertPeerAuthentication,
  convertVirtualService,
  indexSubsets,
  isObj,
  istioKind,
  type Obj,
} from "./istio.ts";
import { isDnsLabel, nativeName } from "./naming.ts";
import type { ConvertOptions, ConvertResult, ImportProblem, Produced } from "./types.ts";

export { parseDuration, wholeMillis } from "./durations.ts";
export { FIELDS, serviceOfHost, serviceOfPrincipal } from "./istio.ts";
export { isDnsLabel, nativeName } from "./naming.ts";
export * from "./types.ts";

export function convert(documents: readonly unknown[], options: ConvertOptions = {}): ConvertResult {
  const result: ConvertResult = { resources: [], warnings: [], errors: [], produced: [] };
  const docs = documents.map((doc, document) => {
    const metadata = isObj(doc) && isObj(doc.metadata) ? doc.metadata : {};
    const ns = typeof metadata.namespace === "string" ? metadata.namespace : options.namespace;
    return { doc, document, namespace: ns, name: typeof metadata.name === "string" ? metadata.name : "" };
  });
  const istio = docs.filter((d): d is typeof d & { doc: Obj } => isObj(d.doc) && istioKind(d.doc).known);
  const subsets = indexSubsets(istio);
  // What PeerAuthentication and AuthorizationPolicy say for the whole mesh: one MeshPolicy.
  const mesh: { mtls?: MtlsMode; deny: boolean; sources: Produced[] } = { deny: false, sources: [] };
  const taken = new Map<string, number>();
  const routed = new Map<string, number>();
  let firstMeshDocument = -1;
  const deniedToAll: { destination: string; ctx: Context }[] = [];

  for (const { doc, document, namespace, name } of docs) {
    if (doc === null || doc === undefined) continue;
    const kind = isObj(doc) && typeof doc.kind === "string" ? doc.kind : "";
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
      continue;
    }
    const source: Produced["source"] = {
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
          source,
          resources: [{ kind: valid.resource.kind, name: valid.resource.metadata.name }],
        });
      }
      continue;
    }
    const known = istioKind(doc);
    if (!known.known || known.message !== undefined) {
      ctx.error(
        known.known ? "kind" : "apiVersion",
        known.message ??
          `${JSON.stringify(doc.apiVersion)}: not a kind wasmesh converts (Istio's networking.istio.io and security.istio.io, or ${API_VERSION})`,
      );
      continue;
    }
    if (!isDnsLabel(name)) {
      ctx.error("metadata.name", "is required: a DNS label, as Kubernetes names resources");
      continue;
    }
    if (namespace !== undefined && !isDnsLabel(namespace)) {
      ctx.error("metadata.namespace", `'${namespace}' is no DNS label`);
      continue;
    }
    auditFields(doc, ctx);
    const base = nativeName(name, namespace);
    const produced: Produced = { source, resources: [] };
    let made: Resource[] = [];
    let meshWide = false;
    switch (kind) {
      case "VirtualService": {
        const routes = convertVirtualService(ctx, doc, subsets, base);
        made = routes;
        // Istio merges no two VirtualServices of one host for sidecars: one of them would hold.
        for (const r of routes) {
          const other = routed.get(r.spec.service);
          if (other !== undefined) {
            ctx.error(
              "spec.hosts",
              `'${r.spec.service}' is routed by document ${other} too: Istio applies one VirtualService per host to sidecars`,
            );
          }
        }
        break;
      }
      case "DestinationRule":
        made = convertDestinationRule(ctx, doc, base);
        break;
      case "PeerAuthentication": {
        const mode = convertPeerAuthentication(ctx, doc);
        if (mode !== undefined) {
          mesh.mtls = mode;
          meshWide = true;
        }
        break;
      }
      case "AuthorizationPolicy": {
        const access = convertAuthorizationPolicy(ctx, doc, base);
        made = access.rules;
        if (access.denyByDefault) {
          mesh.deny = true;
          meshWide = true;
        }
        for (const destination of access.deniedToAll) deniedToAll.push({ destination, ctx });
        break;
      }
    }
    // A document with an error produces nothing: half of a resource's meaning is worse than none.
    if (result.errors.length > errorsBefore) continue;
    for (const r of made) {
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
    if (meshWide) {
      if (mesh.sources.length === 0) firstMeshDocument = document;
      mesh.sources.push(produced);
    }
    result.produced.push(produced);
  }

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
      const d = docs[document];
      const kind = isObj(d?.doc) && typeof d.doc.kind === "string" ? d.doc.kind : r.kind;
      result.errors.push({
        document,
        kind,
        name: d?.name ?? r.metadata.name,
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
