// GET /v1/openapi.json, generated from the operation each route declares: it holds exactly the routes
// the Hono app serves (a route registered without one is missing, and the comparison fails), it is
// valid OpenAPI 3.1 with every $ref resolving, every error answer is in the one error shape, and the
// operation ids clients generate their methods from stay what they were.
import { Validator } from "@seriousme/openapi-schema-validator";
import type { Hono } from "hono";
import { describe, expect, it } from "vitest";
import { createApi, openApiPath, pluralOf } from "../../control-plane/api/index.ts";
import { KINDS } from "../../control-plane/resources/index.ts";
import { createMemoryStore } from "../../control-plane/store/index.ts";

interface Response {
  description: string;
  headers?: Record<string, unknown>;
  content?: Record<string, { schema: unknown }>;
}
interface Operation {
  operationId: string;
  parameters?: { name: string; in: string; required?: boolean; description?: string }[];
  requestBody?: { required?: boolean; content: Record<string, { schema: unknown }> };
  responses: Record<string, Response>;
}
interface Document {
  openapi: string;
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, { $id?: string }> };
}

const api = () => createApi({ auth: "none", store: createMemoryStore(), version: "1.2.3" });

async function documentOf(app: Hono): Promise<{ doc: Document; text: string }> {
  const response = await app.request("/v1/openapi.json");
  expect(response.status).toBe(200);
  expect(response.headers.get("content-type")).toBe("application/json");
  const text = await response.text();
  return { doc: JSON.parse(text) as Document, text };
}

/** "get /v1/services/{name}" for each route the app holds; middleware for every method left out. */
const served = (app: Hono) =>
  [
    ...new Set(
      app.routes
        .filter((r) => r.method !== "ALL")
        .map((r) => `${r.method.toLowerCase()} ${openApiPath(r.path)}`),
    ),
  ].sort();

const documented = (doc: Document) =>
  Object.entries(doc.paths)
    .flatMap(([path, item]) => Object.keys(item).map((method) => `${method} ${path}`))
    .sort();

const operations = (doc: Document) =>
  Object.entries(doc.paths).flatMap(([path, item]) =>
    Object.entries(item).map(([method, operation]) => ({ route: `${method} ${path}`, path, operation })),
  );

describe("GET /v1/openapi.json", () => {
  it("documents exactly the routes the app serves, with the resource schemas", async () => {
    const app = api();
    const { doc, text } = await documentOf(app);
    expect(doc.openapi).toBe("3.1.0");
    expect(documented(doc)).toEqual(served(app));
    for (const kind of KINDS) {
      expect(documented(doc)).toContain(`get /v1/${pluralOf(kind)}/{name}`);
      expect(doc.components.schemas[kind]?.$id).toBe(`https://wasmesh.io/schemas/v1alpha1/${kind}.json`);
    }
    // Every $ref resolves within the document.
    for (const [, name] of text.matchAll(/"\$ref":"#\/components\/schemas\/([^"]+)"/g)) {
      expect(doc.components.schemas, name).toHaveProperty(name as string);
    }
  });

  it("leaves out a route registered without an operation, so the comparison above fails for it", async () => {
    const app = api();
    app.get("/v1/undocumented", (c) => c.text("no operation declared"));
    const { doc } = await documentOf(app);
    expect(served(app)).toContain("get /v1/undocumented");
    expect(documented(doc)).not.toContain("get /v1/undocumented");
  });

  it("is valid OpenAPI 3.1", async () => {
    const { doc } = await documentOf(api());
    const validator = new Validator();
    const result = await validator.validate(doc as unknown as Record<string, unknown>);
    expect(result.errors).toBeUndefined();
    expect(result.valid).toBe(true);
    expect(validator.version).toBe("3.1");
  });

  it("answers every error in the one error shape, and describes each path parameter and write body", async () => {
    const { doc } = await documentOf(api());
    const errorSchema = { $ref: "#/components/schemas/Error" };
    for (const { route, path, operation } of operations(doc)) {
      for (const [status, response] of Object.entries(operation.responses)) {
        if (Number(status) < 400) continue;
        expect(response.content, `${route} ${status}`).toEqual({
          "application/json": { schema: errorSchema },
        });
      }
      for (const [, name] of path.matchAll(/\{([^}]+)\}/g)) {
        const parameter = operation.parameters?.find((p) => p.in === "path" && p.name === name);
        expect(parameter?.description, `${route}: path parameter ${name}`).toBeTruthy();
      }
      if (route.startsWith("post ") || route.startsWith("put ")) {
        expect(operation.requestBody?.required, route).toBe(true);
      }
    }
    expect(doc.components.schemas.Error).toMatchObject({
      required: ["error"],
      properties: { error: { required: ["code", "message", "details"] } },
    });
  });

  it("declares bearer authentication: every operation but /healthz and /readyz needs a token and may answer 401 and 403; every one 421", async () => {
    const { doc } = await documentOf(api());
    const raw = doc as unknown as {
      security: unknown;
      components: { securitySchemes: Record<string, unknown> };
      paths: Record<string, Record<string, { security?: unknown[] }>>;
    };
    expect(raw.components.securitySchemes).toEqual({
      bearer: { type: "http", scheme: "bearer", description: expect.stringContaining("wsm_") },
    });
    expect(raw.security).toEqual([{ bearer: [] }]);
    for (const { route, path, operation } of operations(doc)) {
      const open = path === "/healthz" || path === "/readyz";
      expect(raw.paths[path]?.[route.split(" ")[0] as string]?.security, route).toEqual(
        open ? [] : undefined,
      );
      const statuses = Object.keys(operation.responses);
      expect(statuses, route).toContain("421");
      if (!open) expect(statuses, route).toEqual(expect.arrayContaining(["401", "403"]));
      else expect(statuses, route).not.toContain("401");
    }
    // Tokens are documented as the API serves them: never a hash, a secret only when issued.
    const schemas = doc.components.schemas as Record<string, { properties?: Record<string, unknown> }>;
    expect(Object.keys(schemas.Token?.properties ?? {})).not.toContain("secret");
    expect(Object.keys(schemas.Token?.properties ?? {})).not.toContain("sha256");
    expect(Object.keys(schemas.IssuedToken?.properties ?? {})).toContain("secret");
  });

  it("keeps the operation ids clients name their methods after", async () => {
    const { doc } = await documentOf(api());
    const ids = operations(doc).map(({ operation }) => operation.operationId);
    const expected = [
      ...KINDS.flatMap((kind) => [
        `list${kind}`,
        `get${kind}`,
        `delete${kind}`,
        // WasmModules are written by uploading the module.
        ...(kind === "WasmModule" ? [] : [`create${kind}`, `put${kind}`]),
      ]),
      ...["apply", "pushModule", "getModuleBytes", "getEdgeConfig", "renewWorkloadLease"],
      ...["status", "proxyConfig", "health", "ready", "metrics", "openapi"],
      ...["listTokens", "createToken", "getToken", "revokeToken"],
      ...["issueCertificate", "getTrustBundle"],
      ...["getCa", "rotateCa"],
      ...["reportProxyStats", "traffic"],
    ];
    expect([...ids].sort()).toEqual(expected.sort());
  });
});
