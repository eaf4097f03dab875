// GET /v1/openapi.json: an OpenAPI 3.1 document assembled from the operation each router declares
// next to the route it registers, with the resource model's TypeBox definitions (which are JSON
// Schema) as components. A test checks the document against the routes Hono actually holds.
import { EdgeConfig } from "../../schema/edge-config.ts";
import { KINDS, type Kind, resourceSchemas } from "../resources/index.ts";
import type { ErrorCode } from "./errors.ts";

export type Method = "get" | "post" | "put" | "delete";

/** An OpenAPI operation object; loosely typed since it is only ever serialised. */
export type Operation = { operationId: string; summary: string; responses: Record<string, unknown> } & Record<
  string,
  unknown
>;

/** One route as documented; `path` in Hono's syntax (`/v1/services/:name`), relative to its router. */
export interface RouteDoc {
  method: Method;
  path: string;
  operation: Operation;
}

/** A router and the documentation of each route it registers. */
export interface Documented<R> {
  router: R;
  docs: RouteDoc[];
}

/** Hono's `:param` (optionally `:param{regex}`) to OpenAPI's `{param}`. */
export function openApiPath(honoPath: string): string {
  return honoPath.replace(/:([A-Za-z0-9_]+)(\{[^/]*\})?/g, "{$1}");
}

export const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });

export const json = (schema: unknown) => ({ "application/json": { schema } });

export const errorResponse = (description: string) => ({ description, content: json(ref("Error")) });

export const pathParam = (name: string, description: string, schema: unknown = { type: "string" }) => ({
  name,
  in: "path",
  required: true,
  description,
  schema,
});

export const ifMatchHeader = {
  name: "If-Match",
  in: "header",
  required: false,
  description: 'Precondition: the resourceVersion the resource must have, e.g. "5" (409 otherwise)',
  schema: { type: "string" },
};

const ERROR_CODES: ErrorCode[] = [
  "invalid",
  "not_found",
  "conflict",
  "too_large",
  "unsupported_media_type",
  "bad_request",
  "method_not_allowed",
  "too_many_requests",
  "unavailable",
  "internal",
];

/** A TypeBox schema as plain JSON Schema (TypeBox marks its objects with symbol keys). */
export const plain = (schema: unknown): Record<string, unknown> => JSON.parse(JSON.stringify(schema));

function components() {
  const schemas: Record<string, unknown> = {};
  for (const kind of KINDS) {
    schemas[kind] = plain(resourceSchemas[kind as Kind]);
    schemas[`${kind}List`] = {
      type: "object",
      required: ["items"],
      properties: { items: { type: "array", items: ref(kind) } },
    };
  }
  schemas.Resource = {
    title: "wasmesh resource",
    oneOf: KINDS.map((k) => ref(k)),
    discriminator: {
      propertyName: "kind",
      mapping: Object.fromEntries(KINDS.map((k) => [k, `#/components/schemas/${k}`])),
    },
  };
  schemas.ErrorDetail = {
    type: "object",
    required: ["path", "message"],
    properties: {
      kind: { type: "string" },
      name: { type: "string" },
      document: { type: "integer", minimum: 0, description: "0-based index of the document in the body" },
      path: { type: "string", description: 'field path, e.g. "spec.rules[0].destinations[1].weight"' },
      message: { type: "string" },
      line: { type: "integer", minimum: 1 },
      column: { type: "integer", minimum: 1 },
    },
  };
  schemas.Error = {
    type: "object",
    required: ["error"],
    properties: {
      error: {
        type: "object",
        required: ["code", "message", "details"],
        properties: {
          code: { enum: ERROR_CODES },
          message: { type: "string" },
          details: { type: "array", items: ref("ErrorDetail") },
        },
      },
    },
  };
  schemas.ApplyResult = {
    type: "object",
    required: ["revision", "dryRun", "results", "warnings"],
    properties: {
      revision: {
        type: "integer",
        description: "store revision after the apply (the current one for a dry run or when nothing changed)",
      },
      dryRun: { type: "boolean" },
      results: {
        type: "array",
        items: {
          type: "object",
          required: ["kind", "name", "action"],
          properties: {
            kind: { type: "string" },
            name: { type: "string" },
            action: { enum: ["created", "configured", "unchanged"] },
          },
        },
      },
      warnings: { type: "array", items: ref("ErrorDetail") },
    },
  };
  // POST /v1/modules/<name>: the WasmModule as stored, and what validation could not check.
  const wasmModule = plain(resourceSchemas.WasmModule) as {
    properties: Record<string, unknown>;
    required: string[];
  };
  schemas.ModulePushResult = {
    type: "object",
    title: "ModulePushResult",
    description:
      "The WasmModule resource as stored, plus `warnings`: what validation could not check (each also " +
      "sent as a Wasmesh-Warning header); empty when the smoke run checked everything",
    required: [...wasmModule.required, "warnings"],
    properties: { ...wasmModule.properties, warnings: { type: "array", items: ref("ErrorDetail") } },
    additionalProperties: false,
  };
  schemas.DeleteResult = {
    type: "object",
    required: ["revision", "deleted"],
    properties: { revision: { type: "integer" }, deleted: ref("Resource") },
  };
  const versions = { type: "object", additionalProperties: { type: "string" } };
  schemas.ProxyStatus = {
    type: "object",
    required: ["nodeId", "service", "labels", "protocol", "peer", "connectedAt", "sent", "acked", "nacks"],
    properties: {
      nodeId: { type: "string" },
      service: { type: "string" },
      labels: { type: "object", additionalProperties: { type: "string" } },
      protocol: { enum: ["sotw", "delta"] },
      peer: { type: "string" },
      connectedAt: { type: "string", format: "date-time" },
      sent: { ...versions, description: "version last sent, by type URL" },
      acked: { ...versions, description: "version last acknowledged, by type URL" },
      syncedVersion: {
        type: "string",
        description: "newest snapshot version the proxy runs for every type it subscribes to",
      },
      lastRejection: {
        type: "object",
        required: ["typeUrl", "version", "message", "at"],
        properties: {
          typeUrl: { type: "string" },
          version: { type: "string" },
          message: { type: "string" },
          at: { type: "string", format: "date-time" },
        },
      },
      nacks: { type: "integer", minimum: 0 },
    },
  };
  schemas.Status = {
    type: "object",
    required: ["proxies"],
    properties: { proxies: { type: "array", items: ref("ProxyStatus") } },
  };
  schemas.Health = {
    type: "object",
    required: ["status", "revision", "version"],
    properties: { status: { const: "ok" }, revision: { type: "integer" }, version: { type: "string" } },
  };
  schemas.EdgeConfig = plain(EdgeConfig);
  return { schemas };
}

export function buildOpenApi(docs: readonly RouteDoc[], version: string): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const doc of docs) {
    const path = openApiPath(doc.path);
    const item = paths[path] ?? {};
    if (item[doc.method] !== undefined) throw new Error(`openapi: ${doc.method} ${path} is documented twice`);
    item[doc.method] = doc.operation;
    paths[path] = item;
  }
  return {
    openapi: "3.1.0",
    jsonSchemaDialect: "https://json-schema.org/draft/2020-12/schema",
    info: {
      title: "wasmesh control plane API",
      version,
      description:
        "Resources (wasmesh.io/v1alpha1), manifests, Wasm modules, proxy status and the edge workers' " +
        "configuration. Every error answers " +
        "{ error: { code, message, details } }.",
    },
    paths,
    components: components(),
  };
}
