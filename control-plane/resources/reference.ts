// docs/resources.md, generated from the one resource model (schema.ts, with the pieces it shares with
// schema/filter-config.ts) and the examples (examples.ts): every kind, every field with its type,
// whether it is required or its default, its limits and its description. `npm run gen:reference`
// writes it; test/control-plane/reference.test.ts fails while the committed copy differs.
//
// Pure: schema in, Markdown out. The tables are written already aligned, as `biome format` (which
// `npm run lint` runs over .md too) would lay them out, so that the formatter leaves the file alone.
import type { TSchema } from "@sinclair/typebox";
import { stringify } from "yaml";
import { FilterConfig } from "../../schema/filter-config.ts";
import { EXAMPLES } from "./examples.ts";
import {
  API_VERSION,
  KINDS,
  Labels,
  MESH_MODULE,
  ResourceName,
  resourceSchemas,
  ServiceName,
  WorkloadName,
} from "./schema.ts";

/**
 * Patterns that recur, shown by name in the tables and spelled out once (under Formats): the
 * model's own, read from the schemas that hold them.
 */
const [[LABEL_KEY, LABEL_VALUE_SCHEMA] = ["", {}]] = Object.entries(Labels.patternProperties) as [
  string,
  { pattern?: string },
][];
export const FORMATS: { name: string; pattern: string; meaning: string }[] = [
  {
    name: "DNS label",
    pattern: ResourceName.pattern ?? "",
    meaning: "lower-case letters, digits and '-', starting and ending with a letter or digit",
  },
  {
    name: "service name",
    pattern: ServiceName.pattern ?? "",
    meaning:
      "a DNS label of at most 63, or two joined by '.' (<name>.<namespace>: a service discovered on Kubernetes)",
  },
  {
    name: "DNS subdomain",
    pattern: WorkloadName.pattern ?? "",
    meaning: "DNS labels of at most 63 joined by '.'",
  },
  {
    name: "label key",
    pattern: LABEL_KEY,
    meaning: "a Kubernetes label key: an optional DNS-subdomain prefix and '/', then a name of at most 63",
  },
  {
    name: "label value",
    pattern: LABEL_VALUE_SCHEMA.pattern ?? "",
    meaning: "a Kubernetes label value: empty, or a name of at most 63",
  },
];

/** Any key: a record of free-form JSON, as TypeBox writes Type.Record(Type.String(), …). */
const ANY_KEY = new Set(["^(.*)$", "^.*$"]);

/** One field of a kind: its path from the document's root, e.g. `spec.rules[].destinations[].weight`. */
export interface FieldRow {
  path: string;
  type: string;
  /** "required", "optional", or the default (optional fields only). */
  presence: string;
  limits: string;
  description: string;
}

type Node = Record<string, unknown>;

/** Every field of an object schema, depth first in declaration order. */
export function fieldRows(schema: TSchema, prefix = ""): FieldRow[] {
  const rows: FieldRow[] = [];
  const walk = (node: Node, at: string) => {
    const properties = (node.properties ?? {}) as Record<string, Node>;
    const required = new Set((node.required ?? []) as string[]);
    for (const [name, property] of Object.entries(properties)) {
      const path = at === "" ? name : `${at}.${name}`;
      rows.push({
        path,
        type: typeOf(property),
        presence: required.has(name)
          ? "required"
          : property.default !== undefined
            ? `default ${code(show(property.default))}`
            : "optional",
        limits: limitsOf(property),
        description: descriptionOf(property),
      });
      if (property.properties !== undefined) walk(property, path);
      const items = property.items as Node | undefined;
      if (items?.properties !== undefined) walk(items, `${path}[]`);
    }
  };
  walk(schema as Node, prefix);
  return rows;
}

function isLiterals(node: Node): node is Node & { anyOf: Node[] } {
  return Array.isArray(node.anyOf) && (node.anyOf as Node[]).every((o) => o.const !== undefined);
}

function typeOf(node: Node): string {
  if (isLiterals(node)) return `one of ${node.anyOf.map((o) => JSON.stringify(o.const)).join(", ")}`;
  if (node.const !== undefined) return JSON.stringify(node.const);
  if (node.type === "array") {
    const items = typeOf(node.items as Node);
    return /^(?:string|integer|number|boolean|object)$/.test(items)
      ? `list of ${items}s`
      : `list of (${items})`;
  }
  if (node.type === "object" && node.patternProperties !== undefined) {
    const [value] = Object.values(node.patternProperties as Record<string, Node>);
    if (value === undefined || Object.keys(value).length === 0) return "object (any JSON)";
    return `map of string to ${typeOf(value)}`;
  }
  if (typeof node.type === "string") return node.type;
  return "any";
}

/** The limits of a node (and of its items, or a map's keys and values). */
function limitsOf(node: Node): string {
  const own: string[] = [];
  const range = (min: unknown, max: unknown, unit: (n: number) => string, what = "") => {
    const lo = typeof min === "number" ? min : undefined;
    const hi = typeof max === "number" ? max : undefined;
    if (lo !== undefined && hi !== undefined) own.push(`${what}${lo} to ${hi}${unit(hi)}`);
    else if (hi !== undefined) own.push(`${what}at most ${hi}${unit(hi)}`);
    else if (lo !== undefined && lo > 0) own.push(`${what}at least ${lo}${unit(lo)}`);
  };
  range(node.minimum, node.maximum, () => "");
  range(node.minLength, node.maxLength, (n) => (n === 1 ? " character" : " characters"), "length ");
  range(node.minItems, node.maxItems, (n) => (n === 1 ? " item" : " items"));
  range(node.minProperties, node.maxProperties, (n) => (n === 1 ? " entry" : " entries"));
  if (typeof node.pattern === "string") own.push(patternOf(node.pattern));
  if (node.type === "array") {
    const items = limitsOf(node.items as Node);
    if (items !== "") own.push(`each: ${items}`);
  }
  if (node.type === "object" && node.patternProperties !== undefined) {
    const [[key, value] = []] = Object.entries(node.patternProperties as Record<string, Node>);
    if (key !== undefined && !ANY_KEY.has(key)) own.push(`keys: ${patternOf(key)}`);
    const values = value === undefined ? "" : limitsOf(value);
    if (values !== "") own.push(`values: ${values}`);
  }
  return own.join("; ");
}

/** A pattern, by its name under Formats if it has one. */
function patternOf(pattern: string): string {
  const format = FORMATS.find((f) => f.pattern === pattern);
  return format !== undefined ? `format [${format.name}](#formats)` : `pattern ${code(pattern)}`;
}

function descriptionOf(node: Node): string {
  if (typeof node.description === "string") return node.description;
  const items = node.items as Node | undefined;
  return typeof items?.description === "string" ? items.description : "";
}

function show(value: unknown): string {
  return typeof value === "string" ? value : JSON.stringify(value);
}

/** A code span holding `text` whatever backticks it contains. */
function code(text: string): string {
  const longest = Math.max(0, ...[...text.matchAll(/`+/g)].map((m) => m[0].length));
  const fence = "`".repeat(longest + 1);
  // A space on each side (which the code span drops) only where a backtick would touch the fence.
  const pad = text.startsWith("`") || text.endsWith("`") ? " " : "";
  return `${fence}${pad}${text}${pad}${fence}`;
}

/** Prose from a schema's description, safe in a table cell: no HTML, emphasis or cell breaks. */
function prose(text: string): string {
  return text.replace(/[\\<>*_|[\]]/g, (c) => `\\${c}`);
}

/** A table cell: a pipe inside a code span still ends the cell unless escaped. */
function cell(text: string): string {
  return text.replaceAll("|", "\\|");
}

/** A Markdown table laid out as biome formats one: every column padded to its widest cell. */
function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, 3, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(" | ")} |`;
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n");
}

function fieldTable(rows: FieldRow[]): string {
  return table(
    ["Field", "Type", "Required", "Limits", "Description"],
    rows.map((r) => [
      cell(code(r.path)),
      cell(r.type.replace(/"[^"]*"/g, (literal) => code(literal))),
      cell(r.presence),
      cell(r.limits),
      cell(prose(r.description)),
    ]),
  );
}

function anchor(kind: string): string {
  return `#${kind.toLowerCase()}`;
}

/** The whole of docs/resources.md. */
export function referenceMarkdown(): string {
  const parts: string[] = [
    "# Resource reference",
    "",
    "<!-- Generated from the resource model (control-plane/resources/schema.ts) by control-plane/resources/reference.ts: do not edit. Regenerate with `npm run gen:reference`. -->",
    "",
    `Every native resource has \`apiVersion: ${API_VERSION}\`, a \`kind\`, \`metadata\` (its name and labels) and a \`spec\`. Apply them with \`wasmesh apply -f FILE\` (YAML, several documents separated by \`---\`, or JSON), \`POST /v1/apply\`, or \`kubectl apply\` where the CRDs are installed (deploy/kubernetes/crds.yaml). An invalid resource is refused whole, each error naming its field by path (\`spec.rules[0].destinations[1].weight\`); an unknown field is refused too, with the nearest known field when one is close (\`spec.rules[0].timeout: Unexpected property (did you mean timeoutMs?)\`).`,
    "",
    "In the tables, `a.b` is field `b` of object `a` and `a[].b` is field `b` of each item of list `a`. _Required_ gives the default of an optional field where it has one. Besides the limits shown, validation checks what a schema cannot say (weights that add up to 100, one condition per matcher, unique names, addresses' shape) and, across resources, that every name referred to exists.",
    "",
    ...KINDS.map((kind) => `- [${kind}](${anchor(kind)}): ${prose(resourceSchemas[kind].description ?? "")}`),
    "- [Formats](#formats): the patterns of names and labels",
    `- [The built-in module's configuration](#the-built-in-modules-configuration): \`spec.configuration\` of a WasmPlugin of module \`${MESH_MODULE}\``,
  ];
  for (const kind of KINDS) {
    const schema = resourceSchemas[kind];
    parts.push(
      "",
      `## ${kind}`,
      "",
      `${prose(schema.description ?? "")}.`,
      "",
      fieldTable(fieldRows(schema)),
      "",
      "Example:",
      "",
      "```yaml",
      stringify(EXAMPLES[kind], { lineWidth: 0 }).trimEnd(),
      "```",
    );
  }
  parts.push(
    "",
    "## Formats",
    "",
    "Names and labels follow Kubernetes' syntax, so that resources discovered on Kubernetes and imported from other meshes keep theirs. The tables name these patterns:",
    "",
    table(
      ["Format", "Pattern", "Meaning"],
      FORMATS.map((f) => [f.name, cell(code(f.pattern)), cell(prose(f.meaning))]),
    ),
    "",
    "## The built-in module's configuration",
    "",
    `The \`spec.configuration\` of a WasmPlugin of module \`${MESH_MODULE}\` is the filters' configuration, checked against this schema when the plugin is applied (docs/filters.md says how the filter applies each part). The configuration of any other module is the module's own business.`,
    "",
    fieldTable(fieldRows(FilterConfig)),
    "",
  );
  return parts.join("\n");
}
