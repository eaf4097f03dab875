// The CRDs generated from the resource model (control-plane/kubernetes/crds.ts): the structural
// conversion handles every construct the model uses and fails loudly on any other, and
// deploy/kubernetes/crds.yaml is what the generator makes (test/kubernetes/crds.test.ts has the
// real API server accept them).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { type TSchema, Type } from "@sinclair/typebox";
import { describe, expect, it } from "vitest";
import { FIELDS, MESHES } from "../../control-plane/imports/index.ts";
import {
  crds,
  crdsYaml,
  FOREIGN_KINDS,
  foreignCrds,
  foreignCrdsYaml,
  structural,
  UnsupportedSchema,
} from "../../control-plane/kubernetes/crds.ts";
import { KINDS, resourceSchemas } from "../../control-plane/resources/index.ts";
import { REPO_ROOT } from "../support/envoy.ts";

/** Every node of a schema, with its path. */
function* nodes(schema: unknown, path = "$"): Generator<[string, Record<string, unknown>]> {
  if (schema === null || typeof schema !== "object") return;
  const node = schema as Record<string, unknown>;
  yield [path, node];
  for (const [key, value] of Object.entries(node)) {
    if (key === "properties") {
      for (const [name, child] of Object.entries(value as object)) yield* nodes(child, `${path}.${name}`);
    } else if (key === "patternProperties") {
      // A record's values: `[]` in the model as in the CRD's additionalProperties.
      for (const child of Object.values(value as object)) yield* nodes(child, `${path}[]`);
    } else if (key === "items" || key === "additionalProperties") yield* nodes(value, `${path}[]`);
    else if (key === "anyOf")
      for (const [i, child] of (value as unknown[]).entries()) yield* nodes(child, `${path}|${i}`);
  }
}

describe("CRDs from the resource model", () => {
  it("makes one CRD per kind, group wasmesh.io, v1alpha1, MeshPolicy cluster-scoped", () => {
    const all = crds();
    expect(all.map((c) => c.spec.names.kind)).toEqual(KINDS);
    for (const crd of all) {
      expect(crd.metadata.name).toBe(`${crd.spec.names.plural}.wasmesh.io`);
      expect(crd.spec.versions.map((v) => v.name)).toEqual(["v1alpha1"]);
      expect(crd.spec.scope).toBe(crd.spec.names.kind === "MeshPolicy" ? "Cluster" : "Namespaced");
    }
    // Short names are kubectl's: none may collide.
    const shortNames = all.flatMap((c) => c.spec.names.shortNames);
    expect(new Set(shortNames).size).toBe(shortNames.length);
  });

  it("writes structural schemas: every node typed, no $ref, anyOf, const or patternProperties", () => {
    for (const crd of crds()) {
      for (const [path, node] of nodes(crd.spec.versions[0]?.schema.openAPIV3Schema)) {
        const where = `${crd.spec.names.kind} ${path}`;
        expect(typeof node.type, where).toBe("string");
        for (const key of [
          "$ref",
          "$defs",
          "$id",
          "anyOf",
          "oneOf",
          "allOf",
          "not",
          "const",
          "patternProperties",
          "default",
          "title",
        ]) {
          expect(node[key], `${where} ${key}`).toBeUndefined();
        }
        if (node.type === "object" && node["x-kubernetes-preserve-unknown-fields"] === undefined) {
          expect(node.properties !== undefined || node.additionalProperties !== undefined, where).toBe(true);
        }
      }
    }
  });

  it("keeps every constraint of the model's spec: patterns, bounds, enums, required", () => {
    const kept = [
      "pattern",
      "minLength",
      "maxLength",
      "minimum",
      "maximum",
      "minItems",
      "minProperties",
      "required",
    ];
    for (const kind of KINDS) {
      const converted = new Map(nodes(structural(resourceSchemas[kind].properties.spec)));
      for (const [path, node] of nodes(resourceSchemas[kind].properties.spec)) {
        // Literals become the enum checked below; `{}` (free-form JSON) has nothing to keep.
        if (path.includes("|") || Object.keys(node).length === 0) continue;
        const target = converted.get(path);
        expect(target, `${kind} ${path}`).toBeDefined();
        for (const key of kept) {
          if (node[key] !== undefined)
            expect((target as Record<string, unknown>)[key], `${kind} ${path} ${key}`).toEqual(node[key]);
        }
        if (Array.isArray(node.anyOf)) {
          expect(target?.enum, `${kind} ${path} enum`).toEqual(
            node.anyOf.map((o: { const: unknown }) => o.const),
          );
        }
      }
    }
  });

  it("turns a record of anything into preserved free-form JSON, and a record of strings into a map", () => {
    expect(structural(Type.Record(Type.String(), Type.Unknown()))).toEqual({
      type: "object",
      "x-kubernetes-preserve-unknown-fields": true,
    });
    expect(structural(Type.Record(Type.String({ pattern: "^a" }), Type.String({ maxLength: 3 })))).toEqual({
      type: "object",
      additionalProperties: { type: "string", maxLength: 3 },
    });
    expect(structural(Type.Union([Type.Literal(1), Type.Literal(2)]))).toEqual({
      type: "integer",
      enum: [1, 2],
    });
  });

  const unsupported: [string, TSchema, RegExp][] = [
    [
      "a union of objects",
      Type.Union([Type.Object({ a: Type.String() }), Type.Object({ b: Type.String() })]),
      /only a union of literals/,
    ],
    ["literals of two types", Type.Union([Type.Literal("a"), Type.Literal(1)]), /one type only/],
    ["a reference", Type.Object({ a: Type.Ref("Other") }), /\$\.a: unsupported keyword\(s\) \$ref/],
    [
      "an intersection",
      Type.Intersect([Type.Object({ a: Type.String() }), Type.Object({ b: Type.String() })]),
      /allOf/,
    ],
    ["an untyped node", Type.Object({ a: Type.Unknown() }), /\$\.a: no supported type/],
    ["a format", Type.String({ format: "uri" }), /unsupported keyword\(s\) format/],
    ["a tuple", Type.Tuple([Type.String(), Type.Number()]), /unsupported keyword/],
  ];
  it.each(unsupported)("fails loudly on %s, naming the path", (_, schema, message) => {
    expect(() => structural(schema)).toThrow(UnsupportedSchema);
    expect(() => structural(schema)).toThrow(message);
  });

  it("deploy/kubernetes/crds.yaml is what the generator makes (npm run gen:crds rewrites it)", () => {
    const file = join(REPO_ROOT, "deploy", "kubernetes", "crds.yaml");
    expect(readFileSync(file, "utf8"), "deploy/kubernetes/crds.yaml is stale: run npm run gen:crds").toBe(
      crdsYaml(),
    );
  });
});

describe("CRDs of the other meshes' kinds (kubectl apply of their YAML, issue 13)", () => {
  it("one per converted kind, at versions the converter takes", () => {
    // Kubernetes' own kinds (a v1 Service) have their CRD-less home already: discovery reads them.
    const core = (kind: string) =>
      MESHES.some((m) => m.identify({ apiVersion: "v1", kind, metadata: { name: "x" } }) !== undefined);
    expect(FOREIGN_KINDS.map((k) => k.kind).sort()).toEqual(
      Object.keys(FIELDS)
        .filter((kind) => !core(kind))
        .sort(),
    );
    for (const foreign of FOREIGN_KINDS) {
      expect(foreign.versions, foreign.kind).toContain(foreign.storage);
      for (const version of foreign.versions) {
        const probe = {
          apiVersion: `${foreign.group}/${version}`,
          kind: foreign.kind,
          metadata: { name: "x" },
        };
        const ids = MESHES.map((m) => m.identify(probe)).filter((id) => id !== undefined);
        expect(ids, `${foreign.group}/${version} ${foreign.kind}`).toEqual([
          { kind: foreign.kind, name: "x" },
        ]);
      }
    }
  });

  it("keep every field, one storage version each, and Kuma's older kinds cluster-scoped as Kuma's own", () => {
    for (const crd of foreignCrds()) {
      expect(crd.spec.versions.filter((v) => v.storage)).toHaveLength(1);
      for (const v of crd.spec.versions)
        expect(v.schema.openAPIV3Schema).toEqual({
          type: "object",
          "x-kubernetes-preserve-unknown-fields": true,
        });
    }
    const scope = (name: string) => foreignCrds().find((c) => c.metadata.name === name)?.spec.scope;
    expect(scope("trafficroutes.kuma.io")).toBe("Cluster");
    expect(scope("meshes.kuma.io")).toBe("Cluster");
    expect(scope("dataplanes.kuma.io")).toBe("Namespaced");
    expect(scope("meshhttproutes.kuma.io")).toBe("Namespaced");
    expect(scope("virtualservices.networking.istio.io")).toBe("Namespaced");
  });

  it("deploy/other-meshes/crds.yaml is what the generator makes (npm run gen:crds rewrites it)", () => {
    const file = join(REPO_ROOT, "deploy", "other-meshes", "crds.yaml");
    expect(readFileSync(file, "utf8"), "deploy/other-meshes/crds.yaml is stale: run npm run gen:crds").toBe(
      foreignCrdsYaml(),
    );
  });
});
