// The contract of the converters from other meshes' resources (Istio now; Kuma and Consul later)
// into wasmesh's native resources. A converter never drops what it cannot carry in silence: a field
// without effect in wasmesh is a warning naming it; a field whose absence would change what the
// resource does (a match wasmesh cannot express, a TLS mode it does not run) is an error naming it.
import type { Kind, Resource } from "../resources/index.ts";

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
  source: { apiVersion: string; kind: string; namespace?: string; name: string };
  resources: { kind: Kind; name: string }[];
}

export interface ConvertOptions {
  /**
   * The namespace of documents that name none (as `kubectl apply -n`). Without it and without
   * metadata.namespace, a document is universal: its short host names are wasmesh service names.
   */
  namespace?: string;
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
