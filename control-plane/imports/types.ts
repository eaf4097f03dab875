// The contract of the converters from other meshes' resources (Istio, Kuma, Consul) into wasmesh's
// native resources. A converter never drops what it cannot carry in silence: a field
// without effect in wasmesh is a warning naming it; a field whose absence would change what the
// resource does (a match wasmesh cannot express, a TLS mode it does not run) is an error naming it.
import type { Kind, MtlsMode, Resource } from "../resources/index.ts";
import type { Context, FieldTable, Obj } from "./fields.ts";

/** One problem, at one field of one input document. */
export interface ImportProblem {
  /** 0-based index of the document in the input. */
  document: number;
  /** The input document's kind and name (metadata.name), as written. */
  kind: string;
  name: string;
  /** Dotted path in the input document, e.g. `spec.http[0].mirror`. */
  path: string;
  message: string;
}

/** What one input document became. */
export interface Produced {
  /** The input document's index. */
  document: number;
  source: { apiVersion: string; kind: string; namespace?: string; name: string };
  resources: { kind: Kind; name: string }[];
}

export interface ConvertOptions {
  /**
   * The namespace of documents that name none (as `kubectl apply -n`). Without it and without
   * metadata.namespace, a document is universal: its short host names are wasmesh service names.
   */
  namespace?: string;
  /** Per document (by index), the namespace to take when it names none; over `namespace`. */
  namespaces?: readonly (string | undefined)[];
  /**
   * The Wasm modules the registry holds (WasmModule names and digests): an Istio WasmPlugin's
   * sha256 or url names one of them. Without it, no WasmPlugin converts.
   */
  modules?: readonly { name: string; sha256: string }[];
}

export interface ConvertResult {
  /** Native resources, each valid on its own (validateResource), in a deterministic order. */
  resources: Resource[];
  warnings: ImportProblem[];
  errors: ImportProblem[];
  produced: Produced[];
}

export type Convert = (documents: readonly unknown[], options?: ConvertOptions) => ConvertResult;

/** Formats a problem as the CLI prints it: `document 0: VirtualService/reviews: spec.http[0].mirror: …`. */
export function formatProblem(p: ImportProblem): string {
  return `document ${p.document}: ${p.kind}/${p.name}: ${p.path}: ${p.message}`;
}

/** A document of the input a mesh has recognised as its own. */
export interface SourceDocument {
  doc: Obj;
  /** 0-based index in the input. */
  document: number;
  kind: string;
  name: string;
  namespace: string | undefined;
}

/** What one original becomes. */
export interface Translation {
  resources: Resource[];
  /** A mesh-wide mTLS mode (Istio's PeerAuthentication in the root namespace, Kuma's Mesh). */
  mtls?: MtlsMode;
  /** Every call not allowed by a rule is denied (MeshPolicy defaultAccess: deny). */
  denyByDefault?: boolean;
  /**
   * Destinations this original closes to every source ("*" deny). In wasmesh a source's own allow
   * rule wins over "*", so an allow from another original would be an error where the source mesh
   * evaluates denials first (Istio); a mesh whose "*" loses to a specific source (Consul) leaves it out.
   */
  deniedToAll?: string[];
}

/** One source mesh: how its documents are recognised, audited and translated. */
export interface SourceMesh<Index = unknown> {
  /** As users know it: "Istio", "Kuma", "Consul". */
  readonly name: string;
  /**
   * The apiVersion recorded for its documents written without one (Kuma's universal form, whose
   * resources are the same as its Kubernetes form's).
   */
  readonly universalApiVersion?: string;
  /** The support matrix, kind by kind (docs/imports.md prints it; a test compares them). */
  readonly fields: Readonly<Record<string, FieldTable>>;
  /**
   * undefined: not this mesh's document. Otherwise its kind, name and namespace (undefined when it
   * names none), or, for one of the mesh's documents that is not converted (an unknown kind or
   * version, no name), the error at `path`.
   */
  identify(
    doc: Obj,
  ):
    | { kind: string; name: string; namespace?: string }
    | { kind: string; name: string; error: { path: string; message: string } }
    | undefined;
  /** What documents need to know of each other (Istio: DestinationRule subsets), over the input. */
  index(documents: readonly SourceDocument[], options: ConvertOptions): Index;
  /**
   * The native resources one document becomes, named from `base` (a DNS label unique to this
   * original). Reports its problems (the field audit included) to ctx; any error and nothing of
   * the document is kept.
   */
  translate(ctx: Context, doc: Obj, index: Index, base: string): Translation;
}
