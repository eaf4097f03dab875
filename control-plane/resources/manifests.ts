// Manifests as operators write them: multi-document YAML (documents separated by `---`) or JSON (one
// resource, or an array of resources). Parsing is all or nothing, as an apply is: any error in any
// document fails the whole text, and every error names its document and field.
import { isMap, isPair, isScalar, isSeq, LineCounter, parseAllDocuments } from "yaml";
import type { Resource } from "./schema.ts";
import { type FieldError, MAX_DEPTH, validateResource } from "./validate.ts";

export interface ManifestError extends FieldError {
  /** 0-based index of the document in the text (YAML documents are separated by `---`). */
  document: number;
  /** 1-based line (and column) of the problem in the text, when the parser knows it. */
  line?: number;
  column?: number;
}

export type ManifestResult =
  /** claimed: with ManifestOptions.claim only. */
  { ok: true; resources: Resource[]; claimed?: ClaimedDocument[] } | { ok: false; errors: ManifestError[] };

/** A document that ManifestOptions.claim took, not validated here (another mesh's resource). */
export interface ClaimedDocument {
  value: unknown;
  /** Its YAML document's index. */
  document: number;
}

export interface ManifestOptions {
  /** Documents this returns true for are handed back as they are instead of validated as native. */
  claim?: (value: unknown) => boolean;
}

/** Every document's value (null for one that holds nothing), or every problem in the text. */
export type YamlResult = { ok: true; values: unknown[] } | { ok: false; errors: ManifestError[] };

const CORE = "tag:yaml.org,2002:";
/**
 * The tags of plain data: YAML 1.2's core schema (what JSON holds) and the non-specific `!`. Any
 * other tag would be dropped (`!foo`, `!!js/function`) or turn into something JSON cannot carry
 * (`!!binary`, `!!set`, `!!timestamp`), so the value stored would not be the one written.
 */
const PLAIN_TAGS = new Set([
  "!",
  ...["str", "int", "float", "bool", "null", "map", "seq"].map((t) => CORE + t),
]);

/** A tag as it is written: `!!binary` for the YAML types, `!foo` for a local one. */
const written = (tag: string) =>
  tag.startsWith(CORE) ? `!!${tag.slice(CORE.length)}` : tag.startsWith("!") ? tag : `!<${tag}>`;

const TOO_DEEP = `nested more than ${MAX_DEPTH} levels deep (objects and arrays)`;

/**
 * Tags that are not plain data, and nesting past MAX_DEPTH, in one document's syntax tree, with
 * their lines. The tree of a document the parser gave up on (its own recursion overflows near a
 * thousand levels) is complete far beyond MAX_DEPTH, so a deep document gets this message.
 * Depth counts as validateResource counts it: a resource is level 1, also inside a list document.
 */
function treeErrors(
  root: unknown,
  lines: LineCounter,
): { errors: Omit<ManifestError, "document">[]; tooDeep: boolean } {
  const errors: Omit<ManifestError, "document">[] = [];
  let tooDeep = false;
  const where = (node: { range?: unknown }) => {
    const offset = Array.isArray(node.range) ? Number(node.range[0]) : undefined;
    if (offset === undefined) return {};
    const { line, col } = lines.linePos(offset);
    return { line, column: col };
  };
  const walk = (node: unknown, path: string, depth: number): void => {
    if (tooDeep || node === null || typeof node !== "object") return;
    const at = path === "" ? "(root)" : path;
    const tag = (node as { tag?: unknown }).tag;
    if (typeof tag === "string" && !PLAIN_TAGS.has(tag)) {
      errors.push({
        ...where(node as { range?: unknown }),
        path: at,
        message: `YAML tag ${written(tag)} is not allowed: resources hold plain data (maps, lists, strings, numbers, booleans, null)`,
      });
    }
    if (!isMap(node) && !isSeq(node)) return;
    if (depth > MAX_DEPTH) {
      tooDeep = true;
      errors.splice(0, errors.length, { ...where(node), path: at, message: TOO_DEEP });
      return;
    }
    for (const [i, item] of (node.items as unknown[]).entries()) {
      if (!isPair(item)) {
        walk(item, `${path}[${i}]`, depth + 1);
        continue;
      }
      const key = isScalar(item.key) ? String(item.key.value) : `[${i}]`;
      walk(item.key, path, depth + 1);
      walk(item.value, path === "" ? key : `${path}.${key}`, depth + 1);
    }
  };
  // A list document holds resources: each counts from itself.
  walk(root, "", isSeq(root) ? 0 : 1);
  return { errors, tooDeep };
}

/**
 * Parses YAML text (JSON is YAML 1.2) into one value per document, refusing what would not be stored
 * as written: syntax errors, duplicate keys, tags other than plain data's, nesting past MAX_DEPTH and
 * aliases that expand a small text into a huge value. YAML 1.2 core schema: no `yes` → true, no
 * timestamps. The one YAML reader of the control plane (manifests, and single-resource API bodies).
 */
export function parseYaml(text: string): YamlResult {
  const values: unknown[] = [];
  const errors: ManifestError[] = [];
  const lines = new LineCounter();
  const documents = parseAllDocuments(text, {
    uniqueKeys: true,
    prettyErrors: false,
    lineCounter: lines,
    // Else !!binary, !!set, !!omap, !!pairs and !!timestamp resolve to values JSON cannot hold.
    resolveKnownTags: false,
  });
  documents.forEach((doc, document) => {
    const tree = treeErrors(doc.contents, lines);
    const before = errors.length;
    for (const e of doc.errors) {
      // The parser's own "Maximum call stack size exceeded": already said better by the tree.
      if (tree.tooDeep && e instanceof Error && /call stack/i.test(e.message)) continue;
      const { line, col } = lines.linePos(e.pos[0]);
      errors.push({ document, path: "(root)", message: `invalid YAML: ${e.message}`, line, column: col });
    }
    for (const e of tree.errors) errors.push({ document, ...e });
    if (errors.length > before) return;
    try {
      // toJS throws (rather than reporting) when aliases expand past maxAliasCount.
      values.push(doc.toJS({ maxAliasCount: 100 }) ?? null);
    } catch (e) {
      errors.push({ document, path: "(root)", message: `invalid YAML: ${(e as Error).message}` });
    }
  });
  return errors.length > 0 ? { ok: false, errors } : { ok: true, values };
}

/** Parses and validates every resource in `text`; documents that hold nothing (only comments) are skipped. */
export function parseManifests(text: string, options: ManifestOptions = {}): ManifestResult {
  const parsed = parseYaml(text);
  if (!parsed.ok) return parsed;
  const resources: Resource[] = [];
  const claimed: ClaimedDocument[] = [];
  const errors: ManifestError[] = [];
  parsed.values.forEach((value, document) => {
    if (value === null || value === undefined) return;
    const items = Array.isArray(value) ? value : [value];
    items.forEach((item: unknown, i) => {
      if (options.claim?.(item) === true) {
        claimed.push({ value: item, document });
        return;
      }
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
  if (errors.length > 0) return { ok: false, errors };
  return options.claim !== undefined ? { ok: true, resources, claimed } : { ok: true, resources };
}

/** One line per error, for the CLI and API responses: `document 1: spec.ports[0].port: message`. */
export function formatManifestError(e: ManifestError): string {
  const where = e.line !== undefined ? `document ${e.document} (line ${e.line})` : `document ${e.document}`;
  return `${where}: ${e.path}: ${e.message}`;
}
