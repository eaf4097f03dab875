// npm run gen:envoy-types — writes control-plane/envoy/types.generated.ts: TypeScript types for the
// Envoy messages wasmesh emits, read from the same protobufjs Root that encodes them (envoyProtos(),
// the protos the pinned @grpc/grpc-js-xds ships), so that translate/ is type-checked against the
// API version we speak. test/control-plane/envoy-types.test.ts regenerates in memory and fails
// while the committed file differs (a new pinned package without regeneration).
//
// Why our own generator rather than a maintained one (compared on these protos, December 2026):
// the objects translate/ writes are protobufjs fromObject input with keepCase, as in an Envoy YAML
// file: snake_case keys, a nested Any as `{ "@type": url, ...fields }`, wrappers as `{ value }`,
// Duration as `{ seconds, nanos }`, enums as numbers (what verify() takes). None of the maintained
// generators types that shape:
// - pbjs/pbts (protobufjs-cli) with --keep-case come closest, but type Any as `{ type_url, value }`
//   only (every `"@type"` object would be a type error), enums as TS enums, and need a generated
//   static module first (cluster.proto alone: 27,000 lines of JS and 19,000 of declarations);
// - protoc-gen-es (@bufbuild/protobuf) and ts-proto need protoc or buf, which refuse these protos
//   as shipped (envoy/config/core/v3/protocol.proto sets validate's `ignore_empty`, which the
//   bundled validate.proto lacks); patched, protoc-gen-es types camelCase messages with `$typeName`,
//   bigint int64 and Any as `{ typeUrl, value }` (its JSON types: camelCase, Duration as "5s",
//   wrappers unwrapped), and ts-proto (snakeToCamel=false) unwraps wrappers to plain numbers and
//   types Any as `{ type_url, value }`. Either would mean rewriting every generator and moving
//   encoding (xds/snapshot.ts) to another runtime.
// Walking the Root that encodes is short, and gives exactly the encoder's shape.
//
// The types, from the message types of TYPE_URL and EXTENSION_TYPE (protos.ts) and all they reach:
// - every field optional (proto3; presence is the encoder's business), named as in the proto;
// - oneof members as optional fields (the JSDoc names the oneof; verify() refuses two of one);
// - repeated fields as arrays, maps as records;
// - 32-bit numbers, float and double as number; 64-bit integers as number too, since verify()
//   refuses the decimal strings fromObject would take ("integer|Long expected");
// - enums as number (envoyEnum(), whose names are typed by EnvoyEnums); bytes as Uint8Array;
// - google.protobuf.Any as KnownAny: a union of the EXTENSION_TYPE messages, each with its
//   `"@type"` literal. No generic fallback: a new kind of Any is added to EXTENSION_TYPE first.
// Names: the message's name, nested names joined by "_" (Cluster_EdsClusterConfig). Where two
// messages share one, the package qualifies it (ConfigCore_RetryPolicy, ConfigRoute_RetryPolicy),
// except for a message of TYPE_URL or EXTENSION_TYPE, which keeps the short name.
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import protobuf from "protobufjs";
import { EXTENSION_TYPE, envoyProtos, TYPE_URL } from "../control-plane/envoy/protos.ts";

export const TYPES_FILE = fileURLToPath(
  new URL("../control-plane/envoy/types.generated.ts", import.meta.url),
);

const ANY = ".google.protobuf.Any";
/** Names the file declares or uses besides the messages'. */
const RESERVED = new Set([
  "KnownAny",
  "ResourceTypes",
  "ExtensionTypes",
  "EnvoyEnums",
  "Record",
  "Uint8Array",
]);

const SCALARS: Record<string, string> = {
  double: "number",
  float: "number",
  int32: "number",
  uint32: "number",
  sint32: "number",
  fixed32: "number",
  sfixed32: "number",
  int64: "number",
  uint64: "number",
  sint64: "number",
  fixed64: "number",
  sfixed64: "number",
  bool: "boolean",
  string: "string",
  bytes: "Uint8Array",
};

const noDot = (fullName: string) => fullName.replace(/^\./, "");
const typeName = (typeUrl: string) => typeUrl.slice(typeUrl.lastIndexOf("/") + 1);
const pascal = (segment: string) => segment.charAt(0).toUpperCase() + segment.slice(1);

/** The message's name within its package, nested names joined by "_", and the package. */
function split(type: protobuf.Type): { local: string; pkg: string[] } {
  const nested: string[] = [];
  let at: protobuf.ReflectionObject | null = type;
  while (at instanceof protobuf.Type) {
    nested.unshift(at.name);
    at = at.parent;
  }
  const pkg: string[] = [];
  while (at !== null && at.name !== "") {
    pkg.unshift(at.name);
    at = at.parent;
  }
  return { local: nested.join("_"), pkg };
}

/** The package as a prefix: without "envoy" and version segments (xds.core.v3 → XdsCore). */
const qualifier = (pkg: string[]) =>
  pkg
    .filter((s, i) => !(i === 0 && s === "envoy") && !/^v\d+(alpha|beta)?\d*$/.test(s))
    .map(pascal)
    .join("");

export function generateEnvoyTypes(
  root: protobuf.Root = envoyProtos(),
  resourceUrls: readonly string[] = Object.values(TYPE_URL),
  extensionUrls: readonly string[] = Object.values(EXTENSION_TYPE),
): string {
  const starts = [...resourceUrls, ...extensionUrls].map((url) => root.lookupType(typeName(url)));
  const messages = new Map<string, protobuf.Type>();
  const enums = new Map<string, protobuf.Enum>();
  const reach = (type: protobuf.Type) => {
    if (type.fullName === ANY || messages.has(type.fullName)) return;
    messages.set(type.fullName, type);
    for (const field of type.fieldsArray) {
      const resolved = field.resolve().resolvedType;
      if (resolved instanceof protobuf.Type) reach(resolved);
      else if (resolved instanceof protobuf.Enum) enums.set(resolved.fullName, resolved);
    }
  };
  for (const type of starts) reach(type);

  // TypeScript names: short where unique (or for a starting message), else package-qualified.
  const names = new Map<string, string>();
  const byLocal = new Map<string, protobuf.Type[]>();
  for (const type of messages.values()) {
    const { local } = split(type);
    byLocal.set(local, [...(byLocal.get(local) ?? []), type]);
  }
  const startNames = new Set(starts.map((t) => t.fullName));
  for (const [local, types] of byLocal) {
    for (const type of types) {
      const keep =
        types.length === 1 ||
        (startNames.has(type.fullName) && !types.some((t) => t !== type && startNames.has(t.fullName)));
      names.set(type.fullName, keep ? local : `${qualifier(split(type).pkg)}_${local}`);
    }
  }
  const taken = new Map<string, string>();
  for (const [fullName, name] of names) {
    const other = taken.get(name);
    if (other !== undefined || RESERVED.has(name)) {
      throw new Error(
        `two Envoy messages would be typed ${name}: ${noDot(other ?? "a reserved name")}, ${noDot(fullName)}`,
      );
    }
    taken.set(name, fullName);
  }

  const tsType = (field: protobuf.Field): string => {
    const resolved = field.resolvedType;
    if (resolved instanceof protobuf.Type)
      return resolved.fullName === ANY ? "KnownAny" : (names.get(resolved.fullName) as string);
    if (resolved instanceof protobuf.Enum) return "number";
    const scalar = SCALARS[field.type];
    if (scalar === undefined)
      throw new Error(`${noDot(field.fullName)}: no TypeScript type for ${field.type}`);
    return scalar;
  };

  const out: string[] = [
    "// Generated by scripts/gen-envoy-types.ts (npm run gen:envoy-types) from the Envoy API protos of",
    "// the pinned @grpc/grpc-js-xds: do not edit. test/control-plane/envoy-types.test.ts fails while",
    "// this file differs from what the script would write.",
    "//",
    "// The plain objects encodeMessage() (protos.ts) encodes: snake_case fields, all optional; oneof",
    "// members as optional fields; enums as numbers (envoyEnum()); 64-bit integers as numbers; Any as",
    '// KnownAny, `{ "@type": url, ...fields }` of one of the EXTENSION_TYPE messages.',
    "",
  ];

  const urlMap = (title: string, doc: string, urls: readonly string[]) => {
    out.push(`/** ${doc} */`, `export interface ${title} {`);
    for (const url of urls) out.push(`  "${url}": ${names.get(root.lookupType(typeName(url)).fullName)};`);
    out.push("}", "");
  };
  urlMap("ResourceTypes", "The message of each resource type URL (TYPE_URL).", resourceUrls);
  urlMap("ExtensionTypes", "The message of each extension type URL (EXTENSION_TYPE).", extensionUrls);
  out.push(
    "/** google.protobuf.Any: one of the EXTENSION_TYPE messages, with its type URL. */",
    "export type KnownAny = {",
    '  [U in keyof ExtensionTypes]: { "@type": U } & ExtensionTypes[U];',
    "}[keyof ExtensionTypes];",
    "",
  );

  out.push("/** The value names of each enum these messages use, by full name (envoyEnum()). */");
  out.push("export interface EnvoyEnums {");
  for (const e of [...enums.values()].sort((a, b) => (a.fullName < b.fullName ? -1 : 1))) {
    const values = Object.keys(e.values).map((v) => `"${v}"`);
    const line = `  "${noDot(e.fullName)}": ${values.join(" | ")};`;
    if (line.length <= 110) out.push(line);
    else
      out.push(
        `  "${noDot(e.fullName)}":`,
        ...values.map((v, i) => `    | ${v}${i === values.length - 1 ? ";" : ""}`),
      );
  }
  out.push("}");

  for (const type of [...messages.values()].sort((a, b) => (a.fullName < b.fullName ? -1 : 1))) {
    const name = names.get(type.fullName) as string;
    out.push("", `/** ${noDot(type.fullName)} */`);
    if (type.fieldsArray.length === 0) {
      out.push(`export type ${name} = Record<string, never>;`);
      continue;
    }
    out.push(`export interface ${name} {`);
    for (const field of type.fieldsArray) {
      const notes: string[] = [];
      if (field.resolvedType instanceof protobuf.Enum)
        notes.push(`enum ${noDot(field.resolvedType.fullName)}`);
      // proto3 `optional` is a synthetic oneof named _<field>: nothing to say.
      if (field.partOf !== null && field.partOf.name !== `_${field.name}`)
        notes.push(`oneof ${field.partOf.name}`);
      const deprecated = field.options?.deprecated === true;
      if (deprecated && notes.length > 0)
        out.push("  /**", `   * ${notes.join("; ")}`, "   * @deprecated", "   */");
      else if (deprecated) out.push("  /** @deprecated */");
      else if (notes.length > 0) out.push(`  /** ${notes.join("; ")} */`);
      const value = tsType(field);
      const typed = field.map ? `Record<string, ${value}>` : field.repeated ? `${value}[]` : value;
      out.push(`  ${field.name}?: ${typed};`);
    }
    out.push("}");
  }
  return `${out.join("\n")}\n`;
}

if (import.meta.main) {
  writeFileSync(TYPES_FILE, generateEnvoyTypes());
  console.log(`wrote ${TYPES_FILE}`);
}
