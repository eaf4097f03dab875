// Golden files, as Kuma's testdata/*.golden.yaml: a test compares what it made with a committed
// file, and `UPDATE_GOLDEN=1` (npm run test:golden) rewrites the file instead, for review in the
// diff. Here for proxies' xDS resources, written as Envoy receives them.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { relative } from "node:path";
import { expect } from "vitest";
import { Document, isScalar, type Node, visit } from "yaml";
import { encodeMessage, messageType, type ProxyConfig, TYPE_URL } from "../../control-plane/envoy/index.ts";
import { REPO_ROOT } from "./envoy.ts";

export const UPDATE_GOLDEN = process.env.UPDATE_GOLDEN === "1";

/**
 * Expects `actual` to be the content of `file`, or with UPDATE_GOLDEN writes it there. Compared as
 * text, so key order counts too (the JSON a module is given is compared to the byte).
 */
export function expectGolden(file: string, actual: string): void {
  const name = relative(REPO_ROOT, file);
  if (UPDATE_GOLDEN) writeFileSync(file, actual);
  else if (!existsSync(file)) throw new Error(`${name} does not exist: write it with npm run test:golden`);
  expect(actual, `${name} (npm run test:golden rewrites it)`).toBe(readFileSync(file, "utf8"));
}

/**
 * A section per resource type, in the order Envoy takes them (CDS, EDS, LDS, RDS, ECDS); a new
 * type in TYPE_URL does not compile until it has one.
 */
const SECTIONS: Record<keyof typeof TYPE_URL, string> = {
  cluster: "clusters",
  endpoint: "endpoints",
  listener: "listeners",
  route: "routes",
  extensionConfig: "extension_configs",
};

const STRING_VALUE = "type.googleapis.com/google.protobuf.StringValue";

/**
 * A proxy's configuration as Envoy receives it, as YAML: each resource encoded (encodeMessage, so
 * strictly checked) and decoded into Envoy's JSON form, as in an Envoy config dump or a Kuma
 * golden file: enums by name, each Any unpacked with its `@type` first, bytes in base64, only the
 * fields on the wire. A StringValue holding JSON (a Wasm filter's configuration) is written as
 * that JSON under the tag `!json`, when the string is exactly that JSON's JSON.stringify (so the
 * text stands for one string and its key order shows).
 */
export function proxyConfigYaml(config: ProxyConfig, header: string): string {
  const sections: Record<string, unknown[]> = {};
  for (const [key, section] of Object.entries(SECTIONS)) {
    const typeUrl = TYPE_URL[key as keyof typeof TYPE_URL];
    const type = messageType(typeUrl);
    sections[section] = config[typeUrl].map(({ resource }) =>
      envoyJson(
        type.toObject(type.decode(encodeMessage(typeUrl, resource)), {
          json: true,
          enums: String,
          longs: Number,
          bytes: String,
          defaults: false,
          oneofs: false,
        }),
      ),
    );
  }
  // Strings YAML 1.1 would read otherwise (on, yes, 1:20) quoted: any YAML reader sees the same.
  const doc = new Document(sections, { version: "1.1" });
  visit(doc, {
    Map(_, map) {
      const type = map.get("@type");
      const value = map.get("value", true);
      if (type === STRING_VALUE && value !== undefined && !isScalar(value)) (value as Node).tag = "!json";
    },
  });
  doc.commentBefore = header;
  return doc.toString({ lineWidth: 0 });
}

/** `@type` first; a StringValue's JSON text as the value it spells (see proxyConfigYaml). */
function envoyJson(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(envoyJson);
  if (value === null || typeof value !== "object") return value;
  const object = value as Record<string, unknown>;
  const { "@type": type, ...fields } = object;
  const out: Record<string, unknown> = type === undefined ? {} : { "@type": type };
  for (const [k, v] of Object.entries(fields)) out[k] = envoyJson(v);
  if (type === STRING_VALUE && typeof fields.value === "string") {
    const json = parseJson(fields.value);
    if (typeof json === "object" && json !== null && JSON.stringify(json) === fields.value) out.value = json;
  }
  return out;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
