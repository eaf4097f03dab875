// Manifests as operators write them: multi-document YAML (documents separated by `---`) or JSON (one
// resource, or an array of resources). Parsing is all or nothing, as an apply is: any error in any
// document fails the whole text, and every error names its document and field.
import { LineCounter, parseAllDocuments } from "yaml";
import type { Resource } from "./schema.ts";
import { type FieldError, validateResource } from "./validate.ts";

export interface ManifestError extends FieldError {
  /** 0-based index of the document in the text (YAML documents are separated by `---`). */
  document: number;
  /** 1-based line of a syntax error, when the parser knows it. */
  line?: number;
}

export type ManifestResult = { ok: true; resources: Resource[] } | { ok: false; errors: ManifestError[] };

/** Parses and validates every resource in `text`; documents that hold nothing (only comments) are skipped. */
export function parseManifests(text: string): ManifestResult {
  const resources: Resource[] = [];
  const errors: ManifestError[] = [];
  // YAML 1.2 core schema (no `yes` → true, no timestamps); JSON is valid YAML 1.2. Duplicate keys
  // are errors, and alias expansion is bounded so a small text cannot expand into a huge one.
  const lines = new LineCounter();
  const documents = parseAllDocuments(text, { uniqueKeys: true, prettyErrors: false, lineCounter: lines });
  documents.forEach((doc, document) => {
    if (doc.errors.length > 0) {
      for (const e of doc.errors) {
        const line = lines.linePos(e.pos[0]).line;
        errors.push({
          document,
          path: "(root)",
          message: `invalid YAML: ${e.message}`,
          line,
        });
      }
      return;
    }
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: 100 });
    } catch (e) {
      // toJS throws (rather than reporting) when aliases expand past maxAliasCount.
      errors.push({ document, path: "(root)", message: `invalid YAML: ${(e as Error).message}` });
      return;
    }
    if (value === null || value === undefined) return;
    const items = Array.isArray(value) ? value : [value];
    items.forEach((item: unknown, i) => {
      const result = validateResource(item);
      if (result.ok) {
        resources.push(result.resource);
        return;
      }
      const prefix = Array.isArray(value) ? `[${i}]` : "";
      for (const e of result.errors) {
        const path = prefix === "" ? e.path : e.path === "(root)" ? prefix : `${prefix}.${e.path}`;
        errors.push({ document, path, message: e.message });
      }
    });
  });
  return errors.length > 0 ? { ok: false, errors } : { ok: true, resources };
}

/** One line per error, for the CLI and API responses: `document 1: spec.ports[0].port: message`. */
export function formatManifestError(e: ManifestError): string {
  const where = e.line !== undefined ? `document ${e.document} (line ${e.line})` : `document ${e.document}`;
  return `${where}: ${e.path}: ${e.message}`;
}
