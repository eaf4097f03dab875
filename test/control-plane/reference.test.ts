// The resource reference (docs/resources.md, issue 14 §3): generated from the resource model by
// control-plane/resources/reference.ts, committed, and failing here while the committed copy is stale;
// its examples are valid resources that make one consistent mesh; every field of every kind has its
// row; and a `default` in the model documents, never changes, what validation accepts.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { TSchema } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { describe, expect, it } from "vitest";
import { EXAMPLE_CONTEXT, EXAMPLES } from "../../control-plane/resources/examples.ts";
import {
  KINDS,
  parseManifests,
  type Resource,
  resourceSchemas,
  validateReferences,
  validateResource,
} from "../../control-plane/resources/index.ts";
import { fieldRows, referenceMarkdown } from "../../control-plane/resources/reference.ts";
import { FilterConfig } from "../../schema/filter-config.ts";
import { REPO_ROOT } from "../support/envoy.ts";

const reference = referenceMarkdown();

describe("docs/resources.md", () => {
  it("is what the generator makes (npm run gen:reference rewrites it)", () => {
    const file = join(REPO_ROOT, "docs", "resources.md");
    expect(readFileSync(file, "utf8"), "docs/resources.md is stale: run npm run gen:reference").toBe(
      reference,
    );
  });

  it("has a section, a row for every field and an example for every kind", () => {
    for (const kind of KINDS) {
      expect(reference, kind).toContain(`\n## ${kind}\n`);
      expect(reference, kind).toContain(`\nkind: ${kind}\n`);
      const section = reference.slice(reference.indexOf(`\n## ${kind}\n`));
      for (const row of fieldRows(resourceSchemas[kind])) {
        expect(section, `${kind} ${row.path}`).toMatch(
          new RegExp(`\\n\\| \`${escapeRegExp(row.path)}\` +\\|`),
        );
      }
    }
    const mesh = reference.slice(reference.indexOf("\n## The built-in module's configuration\n"));
    for (const row of fieldRows(FilterConfig)) expect(mesh, row.path).toContain(`| \`${row.path}\` `);
  });

  it("shows examples that parse back, as YAML, to the examples", () => {
    const blocks = [...reference.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1] ?? "");
    expect(blocks).toHaveLength(KINDS.length);
    const parsed = parseManifests(blocks.join("---\n"));
    expect(parsed).toEqual({ ok: true, resources: KINDS.map((kind) => EXAMPLES[kind]) });
  });
});

describe("the examples", () => {
  for (const kind of KINDS) {
    it(`a valid ${kind}`, () => {
      expect(EXAMPLES[kind].kind).toBe(kind);
      expect(validateResource(EXAMPLES[kind])).toEqual({ ok: true, resource: EXAMPLES[kind] });
    });
  }

  it("make one consistent mesh: every reference resolves, every subset selects a workload", () => {
    for (const resource of EXAMPLE_CONTEXT) expect(validateResource(resource).ok).toBe(true);
    const all: Resource[] = [...KINDS.map((kind) => EXAMPLES[kind]), ...EXAMPLE_CONTEXT];
    expect(validateReferences(all)).toEqual({ errors: [], warnings: [] });
  });
});

describe("field rows", () => {
  const row = (kind: keyof typeof resourceSchemas, path: string) =>
    fieldRows(resourceSchemas[kind]).find((r) => r.path === path);

  it("name nested fields by path, with type, presence, limits and description", () => {
    expect(row("Route", "spec.rules[].destinations[].weight")).toEqual({
      path: "spec.rules[].destinations[].weight",
      type: "integer",
      presence: "optional",
      limits: "0 to 100",
      description: expect.stringContaining("add up to 100"),
    });
    expect(row("Service", "spec.ports")).toMatchObject({
      type: "list of objects",
      limits: "at least 1 item",
    });
    expect(row("Service", "spec.ports[].protocol")).toMatchObject({
      type: 'one of "http", "grpc", "tcp"',
      presence: "required",
    });
    expect(row("WasmPlugin", "spec.services")).toMatchObject({
      type: "list of strings",
      limits: expect.stringMatching(/^at least 1 item; each: length at most 127 characters; pattern /),
    });
    expect(row("Route", "spec.rules[].destinations[].subset")).toMatchObject({
      type: "map of string to string",
      limits:
        "at least 1 entry; keys: format [label key](#formats); values: length at most 63 characters; format [label value](#formats)",
    });
    expect(row("WasmPlugin", "spec.configuration")).toMatchObject({ type: "object (any JSON)" });
    expect(row("Service", "apiVersion")).toMatchObject({
      type: '"wasmesh.io/v1alpha1"',
      presence: "required",
    });
  });

  it("give an optional field's default, and none for a required field's", () => {
    expect(row("WasmPlugin", "spec.direction")?.presence).toBe("default `inbound`");
    expect(row("WasmPlugin", "spec.priority")?.presence).toBe("default `0`");
    expect(row("MeshPolicy", "spec.mtls")?.presence).toBe('default `{"mode":"permissive"}`');
    expect(row("Route", "spec.rules[].retries.on")?.presence).toBe("default `5xx,reset,connect-failure`");
    expect(row("Route", "spec.rules[].fault.abort.percent")?.presence).toBe("default `100`");
    expect(row("Workload", "spec.mtls")?.presence).toBe("default `false`");
    // The filter's default of 5 is no default here: a CircuitBreaker states its thresholds.
    expect(row("CircuitBreaker", "spec.consecutiveErrors")?.presence).toBe("required");
  });
});

describe("defaults in the model", () => {
  it("are valid values of their own field", () => {
    const schemas: TSchema[] = [...KINDS.map((kind) => resourceSchemas[kind]), FilterConfig];
    let defaults = 0;
    for (const schema of schemas) {
      for (const node of nodes(schema)) {
        if (node.default === undefined) continue;
        defaults++;
        expect(Value.Check(node as TSchema, node.default), JSON.stringify(node)).toBe(true);
      }
    }
    expect(defaults).toBeGreaterThan(5);
  });

  it("document, and never fill in: validation returns the document as it was given", () => {
    const plugin = structuredClone(EXAMPLES.WasmPlugin);
    delete plugin.spec.direction;
    delete plugin.spec.priority;
    const policy = { ...EXAMPLES.MeshPolicy, spec: { defaultAccess: "allow" as const } };
    for (const resource of [plugin, policy]) {
      const before = structuredClone(resource);
      expect(validateResource(resource)).toEqual({ ok: true, resource: before });
      expect(resource).toEqual(before);
    }
  });
});

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** Every schema node (properties, items, record values, union members). */
function* nodes(schema: unknown): Generator<Record<string, unknown>> {
  if (schema === null || typeof schema !== "object") return;
  const node = schema as Record<string, unknown>;
  yield node;
  for (const child of Object.values((node.properties ?? {}) as object)) yield* nodes(child);
  for (const child of Object.values((node.patternProperties ?? {}) as object)) yield* nodes(child);
  if (node.items !== undefined) yield* nodes(node.items);
  for (const child of (node.anyOf ?? []) as unknown[]) yield* nodes(child);
}
