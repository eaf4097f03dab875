// The HTTP API, in process (app.request) against a real SQLite store in a temp dir: CRUD for every
// kind, optimistic concurrency, apply (all or nothing, dry run, unchanged detection), validation and
// reference errors with field paths, the error shape for every 4xx/5xx, onChange, health, metrics,
// status and modules (with the real registry); the OpenAPI document is checked in openapi.test.ts. One test serves
// the app over real HTTP to check that an endless body is cut off with a 413.

import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { once } from "node:events";
import { chmodSync, chownSync, readFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { serve } from "@hono/node-server";
import type { Hono } from "hono";
import { afterEach, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { type ApiOptions, createApi, pluralOf } from "../../control-plane/api/index.ts";
import { MetricsRegistry } from "../../control-plane/metrics.ts";
import {
  createFileBlobStore,
  createMemoryBlobStore,
  createModuleRegistry,
  loadBuiltinModule,
} from "../../control-plane/modules/index.ts";
import { KINDS, type Kind, MAX_DEPTH } from "../../control-plane/resources/index.ts";
import { createTokens } from "../../control-plane/security/tokens.ts";
import {
  DATABASE_FILE,
  openSqliteStore,
  type ResourceStore,
  type StoredResource,
} from "../../control-plane/store/index.ts";
import { loadSqlite } from "../../control-plane/store/sqlite.ts";
import type { ProxyStatus } from "../../control-plane/xds/status.ts";
import { DEBUG_WASM, RELEASE_WASM } from "../support/artifacts.ts";
import { authorizedFetch, WASMESH_BIN } from "../support/control-plane.ts";
import { tempDir } from "../support/temp.ts";
import { canMountTmpfs, fill, mountTmpfs } from "../support/tmpfs.ts";

const API = "wasmesh.io/v1alpha1";
const { DatabaseSync } = loadSqlite();
type Doc = Record<string, unknown> & { kind: string; metadata: { name: string; resourceVersion?: string } };

const cleanups: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Harness {
  app: Hono;
  store: ResourceStore;
  metrics: MetricsRegistry;
  /** Revisions onChange was called with. */
  changes: number[];
  logs: unknown[][];
}

async function setup(options: Partial<ApiOptions> = {}): Promise<Harness> {
  const dataDir = tempDir("api");
  const store = await openSqliteStore({ dataDir });
  cleanups.push(() => store.close());
  const metrics = new MetricsRegistry();
  const changes: number[] = [];
  const logs: unknown[][] = [];
  const app = createApi({
    auth: "none",
    store,
    metrics,
    version: "1.2.3",
    onChange: (revision) => changes.push(revision),
    log: (...args) => logs.push(args),
    ...options,
  });
  return { app, store, metrics, changes, logs };
}

interface Reply {
  status: number;
  headers: Headers;
  // Parsed JSON answers are only read by assertions.
  // biome-ignore lint/suspicious/noExplicitAny: assertions navigate arbitrary JSON
  body: any;
  text: string;
}

async function call(
  app: Hono,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<Reply> {
  const init: RequestInit = { method, headers: { ...headers } };
  if (body !== undefined) {
    const raw = typeof body === "string" || body instanceof Uint8Array;
    init.body = raw ? (body as BodyInit) : JSON.stringify(body);
    init.headers = { "content-type": raw ? "application/yaml" : "application/json", ...headers };
  }
  const response = await app.request(path, init);
  const text = await response.text();
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  return { status: response.status, headers: response.headers, body: parsed, text };
}

/** Every error answer has the one shape. */
function expectError(reply: Reply, status: number, code: string) {
  expect(reply.status, reply.text).toBe(status);
  expect(reply.headers.get("content-type")).toMatch(/^application\/json/);
  expect(reply.body.error.code).toBe(code);
  expect(typeof reply.body.error.message).toBe("string");
  expect(Array.isArray(reply.body.error.details)).toBe(true);
  expect(reply.text).not.toMatch(/\n\s+at /); // no stack traces
}

// --- fixtures ---------------------------------------------------------------------------------

const service = (name: string, port = 9080): Doc => ({
  apiVersion: API,
  kind: "Service",
  metadata: { name },
  spec: { ports: [{ name: "http", port, protocol: "http" }] },
});

const workload = (name: string, version: string): Doc => ({
  apiVersion: API,
  kind: "Workload",
  metadata: { name },
  spec: { service: "reviews", address: "10.0.1.11", port: 9080, labels: { version } },
});

const route = (weights: number[], target = "reviews"): Doc => ({
  apiVersion: API,
  kind: "Route",
  metadata: { name: "reviews" },
  spec: {
    service: "reviews",
    rules: [
      {
        name: "split",
        destinations: weights.map((weight, i) => ({
          service: target,
          subset: { version: `v${i + 1}` },
          weight,
        })),
      },
    ],
  },
});

/** Service reviews with workloads v1 and v2, which every other kind's example refers to. */
const base = (): Doc[] => [service("reviews"), workload("reviews-v1", "v1"), workload("reviews-v2", "v2")];

const yamlOf = (docs: unknown[]) => docs.map((d) => stringify(d)).join("---\n");

async function seed(h: Harness, docs: Doc[] = base()) {
  const reply = await call(h.app, "POST", "/v1/apply", yamlOf(docs));
  expect(reply.status, reply.text).toBe(200);
  return reply;
}

/** For every kind writable through CRUD: one valid example and a valid change of it. */
const CRUD: { kind: Kind; doc: Doc; change: (d: Doc) => void }[] = [
  {
    kind: "Service",
    doc: service("ratings"),
    change: (d) => {
      (d.spec as { ports: { port: number }[] }).ports[0] = {
        name: "http",
        port: 9081,
        protocol: "http",
      } as never;
    },
  },
  {
    kind: "Workload",
    doc: workload("reviews-v3", "v3"),
    change: (d) => {
      (d.spec as { address: string }).address = "10.0.1.12";
    },
  },
  {
    kind: "Route",
    doc: route([90, 10]),
    change: (d) => {
      (d.spec as { rules: { destinations: { weight: number }[] }[] }).rules[0]?.destinations.forEach(
        (x, i) => {
          x.weight = i === 0 ? 50 : 50;
        },
      );
    },
  },
  {
    kind: "CircuitBreaker",
    doc: {
      apiVersion: API,
      kind: "CircuitBreaker",
      metadata: { name: "reviews-v2" },
      spec: {
        service: "reviews",
        subset: { version: "v2" },
        consecutiveErrors: 5,
        intervalMs: 10_000,
        baseEjectionMs: 30_000,
        fallback: { service: "reviews", subset: { version: "v1" } },
      },
    },
    change: (d) => {
      (d.spec as { consecutiveErrors: number }).consecutiveErrors = 7;
    },
  },
  {
    kind: "AccessRule",
    doc: {
      apiVersion: API,
      kind: "AccessRule",
      metadata: { name: "any-to-reviews" },
      spec: { source: "*", destination: "reviews", action: "allow" },
    },
    change: (d) => {
      (d.spec as { action: string }).action = "deny";
    },
  },
  {
    kind: "MeshPolicy",
    doc: {
      apiVersion: API,
      kind: "MeshPolicy",
      metadata: { name: "default" },
      spec: { defaultAccess: "deny" },
    },
    change: (d) => {
      (d.spec as { defaultAccess: string }).defaultAccess = "allow";
    },
  },
  {
    kind: "WasmPlugin",
    doc: {
      apiVersion: API,
      kind: "WasmPlugin",
      metadata: { name: "tagging" },
      spec: {
        module: "mesh",
        services: ["*"],
        configuration: {
          headerRules: [{ name: "tag", responseHeaders: { add: [{ name: "x-a", value: "1" }] } }],
        },
      },
    },
    change: (d) => {
      (d.spec as { priority?: number }).priority = 5;
    },
  },
  {
    kind: "Tracing",
    doc: {
      apiVersion: API,
      kind: "Tracing",
      metadata: { name: "mesh" },
      spec: { backend: { protocol: "otlp-http", url: "http://127.0.0.1:4318/v1/traces" } },
    },
    change: (d) => {
      (d.spec as { sampling?: unknown }).sampling = { randomPercent: 10 };
    },
  },
  {
    kind: "AccessLog",
    doc: {
      apiVersion: API,
      kind: "AccessLog",
      metadata: { name: "mesh" },
      spec: { backends: [{ stdout: {} }] },
    },
    change: (d) => {
      (d.spec as { format?: string }).format = "%RESPONSE_CODE% %UPSTREAM_CLUSTER%";
    },
  },
];

// --- CRUD -------------------------------------------------------------------------------------

describe("CRUD per kind", () => {
  it("covers every kind, with the plural paths of the contract", () => {
    expect(KINDS.map(pluralOf)).toEqual([
      "services",
      "workloads",
      "routes",
      "circuitbreakers",
      "accessrules",
      "meshpolicies",
      "wasmmodules",
      "wasmplugins",
      "tracings",
      "accesslogs",
      "importedresources",
    ]);
    // WasmModules are written by uploads, ImportedResources by applying originals (imports-apply.test.ts).
    expect([...CRUD.map((c) => c.kind), "WasmModule", "ImportedResource"].sort()).toEqual([...KINDS].sort());
  });

  it.each(CRUD)("$kind: create, get, list, replace, unchanged, delete", async ({ kind, doc, change }) => {
    const h = await setup();
    await seed(h);
    const base = `/v1/${pluralOf(kind)}`;
    const name = doc.metadata.name;
    const revision0 = (await h.store.revision()) as number;

    const created = await call(h.app, "POST", base, doc);
    expect(created.status, created.text).toBe(201);
    expect(created.headers.get("location")).toBe(`${base}/${name}`);
    expect(created.body.spec).toEqual(doc.spec);
    expect(created.body.metadata.resourceVersion).toBe(String(revision0 + 1));
    expect(created.headers.get("etag")).toBe(`"${revision0 + 1}"`);

    const got = await call(h.app, "GET", `${base}/${name}`);
    expect(got.status).toBe(200);
    expect(got.body).toEqual(created.body);

    const list = await call(h.app, "GET", base);
    expect(list.status).toBe(200);
    expect(list.body.items.map((r: StoredResource) => r.metadata.name)).toContain(name);

    // Read, modify, write back: the read's resourceVersion is the precondition.
    const modified = structuredClone(got.body) as Doc;
    change(modified);
    const replaced = await call(h.app, "PUT", `${base}/${name}`, modified);
    expect(replaced.status, replaced.text).toBe(200);
    expect(replaced.body.spec).toEqual(modified.spec);
    expect(replaced.body.metadata.resourceVersion).toBe(String(revision0 + 2));
    expect(replaced.body.metadata.createdAt).toBe(created.body.metadata.createdAt);

    // The same again changes nothing: same version, same revision, no onChange.
    const calls = h.changes.length;
    const again = await call(h.app, "PUT", `${base}/${name}`, { ...modified, metadata: { name } });
    expect(again.status).toBe(200);
    expect(again.body.metadata.resourceVersion).toBe(String(revision0 + 2));
    expect(await h.store.revision()).toBe(revision0 + 2);
    expect(h.changes.length).toBe(calls);

    const deleted = await call(h.app, "DELETE", `${base}/${name}`);
    expect(deleted.status, deleted.text).toBe(200);
    expect(deleted.body.revision).toBe(revision0 + 3);
    expect(deleted.body.deleted.metadata.name).toBe(name);
    expectError(await call(h.app, "GET", `${base}/${name}`), 404, "not_found");
    expectError(await call(h.app, "DELETE", `${base}/${name}`), 404, "not_found");
    expect(h.changes).toEqual([1, revision0 + 1, revision0 + 2, revision0 + 3]);
  });

  it("PUT creates (201) when absent", async () => {
    const h = await setup();
    const reply = await call(h.app, "PUT", "/v1/services/reviews", service("reviews"));
    expect(reply.status).toBe(201);
    expect((await h.store.get("Service", "reviews"))?.metadata.resourceVersion).toBe("1");
  });

  it("accepts a YAML body on single-resource writes", async () => {
    const h = await setup();
    const reply = await call(h.app, "PUT", "/v1/services/reviews", stringify(service("reviews")));
    expect(reply.status, reply.text).toBe(201);
  });

  it("POST of an existing name is a 409 and stores nothing", async () => {
    const h = await setup();
    expect((await call(h.app, "POST", "/v1/services", service("reviews"))).status).toBe(201);
    const reply = await call(h.app, "POST", "/v1/services", service("reviews", 8080));
    expectError(reply, 409, "conflict");
    expect(reply.body.error.message).toContain("already exists");
    expect((await h.store.get("Service", "reviews"))?.spec).toEqual(service("reviews").spec);
    expect(await h.store.revision()).toBe(1);
    expect(h.changes).toEqual([1]);
  });

  it("a stale PUT is a 409 and leaves the store unchanged", async () => {
    const h = await setup();
    const v1 = (await call(h.app, "POST", "/v1/services", service("reviews"))).body as Doc;
    const v2 = await call(h.app, "PUT", "/v1/services/reviews", {
      ...service("reviews", 8080),
      metadata: v1.metadata,
    });
    expect(v2.status).toBe(200);

    // Someone wrote in between: v1's version is stale, in the body or in If-Match.
    const stale = await call(h.app, "PUT", "/v1/services/reviews", {
      ...service("reviews", 7070),
      metadata: v1.metadata,
    });
    expectError(stale, 409, "conflict");
    expect(stale.body.error.details[0]).toMatchObject({ kind: "Service", name: "reviews" });
    const staleHeader = await call(h.app, "PUT", "/v1/services/reviews", service("reviews", 7070), {
      "if-match": `"${v1.metadata.resourceVersion}"`,
    });
    expectError(staleHeader, 409, "conflict");
    // Writing back the same content with a stale version is refused too.
    const staleSame = await call(h.app, "PUT", "/v1/services/reviews", {
      ...service("reviews", 8080),
      metadata: v1.metadata,
    });
    expectError(staleSame, 409, "conflict");

    const stored = await h.store.get("Service", "reviews");
    expect(stored?.spec).toEqual(service("reviews", 8080).spec);
    expect(stored?.metadata.resourceVersion).toBe("2");
    expect(await h.store.revision()).toBe(2);
    expect(h.changes).toEqual([1, 2]);

    const current = await call(h.app, "PUT", "/v1/services/reviews", service("reviews", 7070), {
      "if-match": '"2"',
    });
    expect(current.status).toBe(200);
    expect(current.headers.get("etag")).toBe('"3"');
    // If-Match and the body's version must not disagree.
    const disagree = await call(
      h.app,
      "PUT",
      "/v1/services/reviews",
      { ...service("reviews"), metadata: { name: "reviews", resourceVersion: "3" } },
      { "if-match": '"2"' },
    );
    expectError(disagree, 400, "bad_request");
  });

  it("DELETE honours If-Match and ?resourceVersion=", async () => {
    const h = await setup();
    await call(h.app, "POST", "/v1/services", service("reviews"));
    expectError(
      await call(h.app, "DELETE", "/v1/services/reviews", undefined, { "if-match": '"7"' }),
      409,
      "conflict",
    );
    expectError(await call(h.app, "DELETE", "/v1/services/reviews?resourceVersion=7"), 409, "conflict");
    expect(await h.store.get("Service", "reviews")).toBeDefined();
    expect((await call(h.app, "DELETE", "/v1/services/reviews?resourceVersion=1")).status).toBe(200);
    expect(h.changes).toEqual([1, 2]);
  });

  it("the URL decides kind and name", async () => {
    const h = await setup();
    const wrongName = await call(h.app, "PUT", "/v1/services/ratings", service("reviews"));
    expectError(wrongName, 400, "invalid");
    expect(wrongName.body.error.details[0]).toMatchObject({ path: "metadata.name" });
    const wrongKind = await call(h.app, "POST", "/v1/routes", service("reviews"));
    expectError(wrongKind, 400, "invalid");
    expect(wrongKind.body.error.details[0]).toMatchObject({ path: "kind" });
    expect(wrongKind.body.error.details[0].message).toContain('"Route"');
    const invalidField = await call(h.app, "POST", "/v1/services", service("reviews", 70_000));
    expectError(invalidField, 400, "invalid");
    expect(invalidField.body.error.details[0]).toMatchObject({
      kind: "Service",
      name: "reviews",
      path: "spec.ports[0].port",
    });
    expect(await h.store.revision()).toBe(0);
    expect(h.changes).toEqual([]);
  });

  it("refuses WasmModule writes through CRUD and apply", async () => {
    const h = await setup();
    const module: Doc = {
      apiVersion: API,
      kind: "WasmModule",
      metadata: { name: "tagger" },
      spec: { sha256: "ab".repeat(32), size: 100, abiVersion: "0.2.1" },
    };
    for (const [method, path] of [
      ["POST", "/v1/wasmmodules"],
      ["PUT", "/v1/wasmmodules/tagger"],
    ] as const) {
      const reply = await call(h.app, method, path, module);
      expectError(reply, 405, "method_not_allowed");
      expect(reply.body.error.message).toContain("POST /v1/modules/<name>");
    }
    const applied = await call(h.app, "POST", "/v1/apply", [module]);
    expectError(applied, 400, "invalid");
    expect(applied.body.error.message).toContain("POST /v1/modules/<name>");
    expect((await call(h.app, "GET", "/v1/wasmmodules")).body).toEqual({ items: [] });
    expect(await h.store.revision()).toBe(0);
  });
});

// --- apply ------------------------------------------------------------------------------------

describe("POST /v1/apply", () => {
  it("applies multi-document YAML, then reports unchanged and configured", async () => {
    const h = await setup();
    const docs = [...base(), route([90, 10])];
    const first = await seed(h, docs);
    expect(first.body).toEqual({
      revision: 1,
      dryRun: false,
      results: docs.map((d) => ({ kind: d.kind, name: d.metadata.name, action: "created" })),
      warnings: [],
    });
    expect(h.changes).toEqual([1]);

    // The same again: nothing written, the revision stays, no onChange.
    const same = await seed(h, docs);
    expect(same.body.revision).toBe(1);
    expect(same.body.results.map((r: { action: string }) => r.action)).toEqual(docs.map(() => "unchanged"));
    expect(h.changes).toEqual([1]);

    const changed = await seed(h, [...base(), route([50, 50])]);
    expect(changed.body.revision).toBe(2);
    expect(changed.body.results.at(-1)).toEqual({ kind: "Route", name: "reviews", action: "configured" });
    expect((await h.store.get("Service", "reviews"))?.metadata.resourceVersion).toBe("1");
    expect((await h.store.get("Route", "reviews"))?.metadata.resourceVersion).toBe("2");
    expect(h.changes).toEqual([1, 2]);
  });

  it("is all or nothing: one bad document stores nothing and names the document and field", async () => {
    const h = await setup();
    await seed(h, [service("productpage")]);
    const bad = service("ratings", 70_000);
    const reply = await call(h.app, "POST", "/v1/apply", yamlOf([...base(), bad, route([90, 10])]));
    expectError(reply, 400, "invalid");
    expect(reply.body.error.details).toEqual([
      expect.objectContaining({ document: 3, path: "spec.ports[0].port" }),
    ]);
    expect((await h.store.list()).map((r) => r.metadata.name)).toEqual(["productpage"]);
    expect(await h.store.revision()).toBe(1);
    expect(h.changes).toEqual([1]);
  });

  it("dryRun validates against the stored state and stores nothing", async () => {
    const h = await setup();
    const reply = await call(h.app, "POST", "/v1/apply?dryRun=true", yamlOf([...base(), route([90, 10])]));
    expect(reply.status, reply.text).toBe(200);
    expect(reply.body.dryRun).toBe(true);
    expect(reply.body.revision).toBe(0);
    expect(reply.body.results.every((r: { action: string }) => r.action === "created")).toBe(true);
    expect(await h.store.list()).toEqual([]);
    expect(await h.store.revision()).toBe(0);
    // A dry run of a broken reference fails as the real apply would.
    const broken = await call(h.app, "POST", "/v1/apply?dryRun=true", yamlOf([route([100])]));
    expectError(broken, 400, "invalid");
    expectError(await call(h.app, "POST", "/v1/apply?dryRun=maybe", yamlOf(base())), 400, "bad_request");
    expect(h.changes).toEqual([]);
  });

  it("refuses weights that do not add up to 100", async () => {
    const h = await setup();
    const reply = await call(h.app, "POST", "/v1/apply", yamlOf([...base(), route([60, 30])]));
    expectError(reply, 400, "invalid");
    expect(reply.body.error.details).toContainEqual(
      expect.objectContaining({ document: 3, path: "spec.rules[0].destinations" }),
    );
    expect(reply.body.error.details[0].message).toContain("100");
    expect(await h.store.revision()).toBe(0);
  });

  it("refuses references to services that do not exist (over stored + applied state)", async () => {
    const h = await setup();
    await seed(h);
    const reply = await call(h.app, "POST", "/v1/apply", yamlOf([route([100], "nope")]));
    expectError(reply, 400, "invalid");
    expect(reply.body.error.details).toContainEqual({
      kind: "Route",
      name: "reviews",
      path: "spec.rules[0].destinations[0].service",
      message: "Service 'nope' does not exist",
    });
    // The same route applied together with its service is fine.
    const together = await call(h.app, "POST", "/v1/apply", yamlOf([service("nope"), route([100], "nope")]));
    expect(together.status, together.text).toBe(200);
    expect(h.changes).toEqual([1, 2]);
  });

  it("returns reference warnings without failing", async () => {
    const h = await setup();
    const docs = [service("reviews"), workload("reviews-v1", "v1"), route([90, 10])];
    const reply = await seed(h, docs);
    expect(reply.body.warnings).toEqual([
      expect.objectContaining({
        kind: "Route",
        name: "reviews",
        path: "spec.rules[0].destinations[1].subset",
      }),
    ]);
  });

  it("names an unknown kind", async () => {
    const h = await setup();
    const reply = await call(h.app, "POST", "/v1/apply", yamlOf([{ ...service("x"), kind: "Gateway" }]));
    expectError(reply, 400, "invalid");
    expect(reply.body.error.details[0]).toMatchObject({ document: 0, path: "kind" });
    expect(reply.body.error.details[0].message).toContain("Gateway");
  });

  it("reports malformed YAML and JSON with their position", async () => {
    const h = await setup();
    const yaml = await call(h.app, "POST", "/v1/apply", `${yamlOf(base())}---\nkind: [Service\n`);
    expectError(yaml, 400, "bad_request");
    expect(yaml.body.error.details[0]).toMatchObject({ document: 3 });
    expect(yaml.body.error.details[0].line).toBeGreaterThan(1);

    const json = await call(h.app, "POST", "/v1/apply", '[\n  {"kind": "Service",,}\n]', {
      "content-type": "application/json",
    });
    expectError(json, 400, "bad_request");
    expect(json.body.error.details[0]).toMatchObject({ line: 2, column: expect.any(Number) });

    const single = await call(h.app, "PUT", "/v1/services/x", "kind: [\n", { "content-type": "text/yaml" });
    expectError(single, 400, "bad_request");
    expect(single.body.error.details[0]).toMatchObject({
      line: expect.any(Number),
      column: expect.any(Number),
    });

    expectError(await call(h.app, "POST", "/v1/apply", "# only a comment\n"), 400, "bad_request");
    expectError(
      await call(h.app, "POST", "/v1/apply", new Uint8Array([0xff, 0xfe, 0x00])),
      400,
      "bad_request",
    );
    // Where the bytes stop being UTF-8, past a U+FFFD the text really holds.
    const latin1 = await call(
      h.app,
      "POST",
      "/v1/apply",
      new Uint8Array([...new TextEncoder().encode("a: \uFFFD\nb: caf"), 0xe9, 0x0a]),
    );
    expectError(latin1, 400, "bad_request");
    expect(latin1.body.error).toEqual({
      code: "bad_request",
      message: "the request body is not valid UTF-8",
      details: [{ path: "(root)", message: "not UTF-8: byte 0xe9 at offset 13 (line 2)", line: 2 }],
    });
    expect(await h.store.revision()).toBe(0);
    expect(h.changes).toEqual([]);
  });

  it("refuses YAML tags, nesting past MAX_DEPTH and NUL characters, in YAML and JSON, naming where", async () => {
    const h = await setup();
    const yaml = (description: string) =>
      `apiVersion: ${API}\nkind: Service\nmetadata: { name: tagged }\nspec:\n  description: ${description}\n  ports: [{ name: http, port: 80, protocol: http }]\n`;
    const tag =
      "YAML tag !foo is not allowed: resources hold plain data (maps, lists, strings, numbers, booleans, null)";
    const tagged = { path: "spec.description", line: 5, column: 21, message: tag };
    const applied = await call(
      h.app,
      "POST",
      "/v1/apply",
      `${yamlOf([service("first")])}---\n${yaml("!foo bar")}`,
    );
    expectError(applied, 400, "invalid");
    expect(applied.body.error.details).toEqual([{ document: 1, ...tagged, line: 15 }]);
    const put = await call(h.app, "PUT", "/v1/services/tagged", yaml("!foo bar"));
    expectError(put, 400, "invalid");
    expect(put.body.error.details).toEqual([tagged]);

    // 100,000 levels: far past what the parsers' and JSON.stringify's recursion survive.
    const deep = (levels: number) =>
      `{"apiVersion":"${API}","kind":"WasmPlugin","metadata":{"name":"deep"},"spec":{"module":"request-id",` +
      `"services":["*"],"configuration":{"x":${"[".repeat(levels - 3)}${"]".repeat(levels - 3)}}}}`;
    const tooDeep = {
      path: `spec.configuration.x${"[0]".repeat(MAX_DEPTH - 3)}`,
      message: `nested more than ${MAX_DEPTH} levels deep (objects and arrays)`,
    };
    const json = { "content-type": "application/json" };
    for (const [method, path, body, headers, detail] of [
      [
        "POST",
        "/v1/apply",
        deep(100_000),
        json,
        { document: 0, kind: "WasmPlugin", name: "deep", ...tooDeep },
      ],
      ["PUT", "/v1/wasmplugins/deep", deep(100_000), json, { kind: "WasmPlugin", name: "deep", ...tooDeep }],
      [
        "POST",
        "/v1/apply",
        deep(100_000),
        {},
        { document: 0, line: 1, column: expect.any(Number), ...tooDeep },
      ],
      [
        "PUT",
        "/v1/wasmplugins/deep",
        deep(MAX_DEPTH + 1),
        {},
        { line: 1, column: expect.any(Number), ...tooDeep },
      ],
    ] as const) {
      const reply = await call(h.app, method, path, body, headers);
      expectError(reply, 400, "invalid");
      expect(reply.body.error.details, `${method} ${path} ${JSON.stringify(headers)}`).toEqual([detail]);
    }
    // At the limit, the document is fine: what stops it is the module it names.
    const atLimit = await call(h.app, "PUT", "/v1/wasmplugins/deep", deep(MAX_DEPTH));
    expect(atLimit.body.error.details).toEqual([
      expect.objectContaining({ path: "spec.module", message: "WasmModule 'request-id' does not exist" }),
    ]);

    const nul = { path: "spec.description", message: "contains a NUL character (\\u0000)" };
    const withNul = {
      ...service("nul"),
      spec: { ...(service("nul").spec as object), description: "a\u0000b" },
    };
    for (const reply of [
      await call(h.app, "POST", "/v1/apply", withNul),
      await call(h.app, "POST", "/v1/services", withNul),
      await call(h.app, "POST", "/v1/apply", yaml('"a\\0b"').replace("tagged", "nul")),
    ]) {
      expectError(reply, 400, "invalid");
      expect(reply.body.error.details).toEqual([expect.objectContaining(nul)]);
    }
    expect(await h.store.list()).toEqual([]);
    expect(h.logs).toEqual([]);
  });

  it("keeps what an older version stored, though today's input rules refuse it (a NUL character)", async () => {
    const h = await setup();
    const ports = [{ name: "http", port: 9080, protocol: "http" }];
    const spec = { ports, description: "a\u0000b" };
    await h.store.apply([
      { op: "put", resource: { apiVersion: API, kind: "Service", metadata: { name: "reviews" }, spec } },
    ]);
    // Still a Service that others may refer to, and that translation and the edge see.
    expect((await call(h.app, "POST", "/v1/workloads", workload("reviews-v1", "v1"))).status).toBe(201);
    expect(h.logs).toEqual([]);
  });

  it("takes JSON as one resource, an array or a list, and preconditions on resourceVersion", async () => {
    const h = await setup();
    expect((await call(h.app, "POST", "/v1/apply", service("reviews"))).status).toBe(200);
    expect((await call(h.app, "POST", "/v1/apply", base().slice(1))).status).toBe(200);
    expect((await call(h.app, "POST", "/v1/apply", { items: [route([50, 50])] })).status).toBe(200);

    // A list read back applies unchanged (each carries its current resourceVersion)...
    const list = (await call(h.app, "GET", "/v1/workloads")).body;
    const again = await call(h.app, "POST", "/v1/apply", list);
    expect(again.body.results.map((r: { action: string }) => r.action)).toEqual(["unchanged", "unchanged"]);

    // ...but after someone else's write, the stale document fails the whole apply.
    await call(h.app, "PUT", "/v1/workloads/reviews-v1", workload("reviews-v1", "v1b"));
    const items = list.items as { spec: { port: number } }[];
    if (items[1]) items[1].spec.port = 9999;
    const stale = await call(h.app, "POST", "/v1/apply", { items });
    expectError(stale, 409, "conflict");
    expect((await h.store.get("Workload", "reviews-v2"))?.spec).toMatchObject({ port: 9080 });
    expect(h.changes).toEqual([1, 2, 3, 4]);

    const badItem = await call(h.app, "POST", "/v1/apply", [service("a"), { ...service("b"), spec: {} }]);
    expectError(badItem, 400, "invalid");
    expect(badItem.body.error.details[0]).toMatchObject({
      document: 1,
      kind: "Service",
      name: "b",
      path: "spec.ports",
    });

    const duplicate = await call(h.app, "POST", "/v1/apply", [service("a"), service("a", 81)]);
    expectError(duplicate, 400, "invalid");
    expect(duplicate.body.error.details[0]).toMatchObject({ document: 1, path: "metadata.name" });
  });
});

describe("concurrent writes", () => {
  it("take turns: the reference check and the apply see the same state", async () => {
    const h = await setup();
    // A store that is slow to list, so that unserialised writes would both check the old state.
    const store = h.store;
    const slow: ResourceStore = {
      get: (kind, name) => store.get(kind, name),
      list: async (kind) => {
        const items = await store.list(kind);
        await new Promise((resolve) => setTimeout(resolve, 5));
        return items;
      },
      apply: (changes, options) => store.apply(changes, options),
      revision: () => store.revision(),
      checkWritable: () => store.checkWritable(),
      watch: (listener) => store.watch(listener),
      close: () => store.close(),
    };
    h.app = createApi({ auth: "none", store: slow, log: () => {} });
    const ratingsRoute: Doc = {
      apiVersion: API,
      kind: "Route",
      metadata: { name: "ratings" },
      spec: { service: "ratings", rules: [{ name: "all", destinations: [{ service: "ratings" }] }] },
    };
    for (let round = 0; round < 5; round++) {
      await call(h.app, "PUT", "/v1/services/ratings", service("ratings"));
      const [created, deleted] = await Promise.all([
        call(h.app, "PUT", "/v1/routes/ratings", ratingsRoute),
        call(h.app, "DELETE", "/v1/services/ratings"),
      ]);
      // Whichever went first, the other saw its effect: never a route to a deleted service.
      const route = await h.store.get("Route", "ratings");
      const svc = await h.store.get("Service", "ratings");
      expect(route === undefined || svc !== undefined).toBe(true);
      const routeFirst = created.status === 201 && deleted.status === 400;
      const deleteFirst = deleted.status === 200 && created.status === 400;
      expect(routeFirst || deleteFirst, `${created.text} ${deleted.text}`).toBe(true);
      await call(h.app, "DELETE", "/v1/routes/ratings");
    }
  });

  it("with one If-Match version, exactly one of many writers wins", async () => {
    const h = await setup();
    await call(h.app, "PUT", "/v1/services/reviews", service("reviews"));
    const replies = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        call(h.app, "PUT", "/v1/services/reviews", service("reviews", 8000 + i), { "if-match": '"1"' }),
      ),
    );
    expect(replies.filter((r) => r.status === 200)).toHaveLength(1);
    expect(replies.filter((r) => r.status === 409)).toHaveLength(9);
    expect(await h.store.revision()).toBe(2);
    expect(h.changes).toEqual([1, 2]);
  });
});

// --- limits, media types, references on delete, routing ----------------------------------------

describe("request edges", () => {
  it("413 for a body over the limit, even an endless stream", async () => {
    const h = await setup({ maxBodyBytes: 1024 });
    expectError(await call(h.app, "POST", "/v1/apply", `# ${"x".repeat(2000)}\n`), 413, "too_large");
    let pulled = 0;
    const endless = new ReadableStream<Uint8Array>({
      pull(controller) {
        pulled += 512;
        controller.enqueue(new Uint8Array(512).fill(0x23));
      },
    });
    const response = await h.app.request("/v1/apply", {
      method: "POST",
      body: endless,
      headers: { "content-type": "application/yaml" },
      duplex: "half",
    } as RequestInit);
    expect(response.status).toBe(413);
    expect(pulled).toBeLessThan(64 * 1024);
    expect(h.changes).toEqual([]);
  });

  it("415 for a body that is not JSON or YAML", async () => {
    const h = await setup();
    for (const type of ["text/plain", "application/xml"]) {
      const reply = await call(h.app, "POST", "/v1/apply", "x", { "content-type": type });
      expectError(reply, 415, "unsupported_media_type");
    }
    expectError(
      await call(h.app, "PUT", "/v1/services/a", "x", { "content-type": "" }),
      415,
      "unsupported_media_type",
    );
  });

  it("refuses to delete a service that a route references, naming each reference once", async () => {
    const h = await setup();
    await seed(h, [...base(), route([50, 50])]);
    const reply = await call(h.app, "DELETE", "/v1/services/reviews");
    expectError(reply, 400, "invalid");
    // The message sums up; the details list every reference, once each, as a reference (the
    // Service does exist: saying it does not would be wrong).
    expect(reply.body.error.message).toBe(
      "cannot delete Service 'reviews': still referenced by 3 resources (5 references); change or delete them first",
    );
    const refers = "refers to Service 'reviews'";
    expect(reply.body.error.details).toEqual([
      { kind: "Route", name: "reviews", path: "spec.service", message: refers },
      { kind: "Route", name: "reviews", path: "spec.rules[0].destinations[0].service", message: refers },
      { kind: "Route", name: "reviews", path: "spec.rules[0].destinations[1].service", message: refers },
      { kind: "Workload", name: "reviews-v1", path: "spec.service", message: refers },
      { kind: "Workload", name: "reviews-v2", path: "spec.service", message: refers },
    ]);
    expect(await h.store.get("Service", "reviews")).toBeDefined();
    expect(h.changes).toEqual([1]);
    // Once the route and workloads are gone, so can the service be.
    for (const path of ["/v1/routes/reviews", "/v1/workloads/reviews-v1", "/v1/workloads/reviews-v2"]) {
      expect((await call(h.app, "DELETE", path)).status).toBe(200);
    }
    expect((await call(h.app, "DELETE", "/v1/services/reviews")).status).toBe(200);
    expect(h.changes).toEqual([1, 2, 3, 4, 5]);
  });

  it("404 and 405 in the error shape", async () => {
    const h = await setup();
    expectError(await call(h.app, "GET", "/v1/gateways"), 404, "not_found");
    expectError(await call(h.app, "GET", "/nope"), 404, "not_found");
    const patch = await call(h.app, "PATCH", "/v1/services/reviews", {});
    expectError(patch, 405, "method_not_allowed");
    expect(patch.headers.get("allow")).toContain("PUT");
  });

  it("500 without internals for an unexpected failure, logged", async () => {
    const h = await setup();
    const broken: ResourceStore = {
      get: (kind, name) => h.store.get(kind, name),
      list: () => Promise.reject(new Error("disk on fire")),
      apply: (changes, options) => h.store.apply(changes, options),
      revision: () => h.store.revision(),
      checkWritable: () => h.store.checkWritable(),
      watch: (listener) => h.store.watch(listener),
      close: () => h.store.close(),
    };
    const logs: unknown[][] = [];
    const app = createApi({ auth: "none", store: broken, log: (...args) => logs.push(args) });
    const reply = await call(app, "GET", "/v1/services");
    expectError(reply, 500, "internal");
    expect(reply.text).not.toContain("disk on fire");
    expect(String(logs[0]?.[1])).toContain("disk on fire");
  });
});

// --- onChange, health, metrics, status, OpenAPI -------------------------------------------------

describe("system routes", () => {
  it("calls onChange once per committed write, never on a 4xx or a no-op", async () => {
    const h = await setup();
    await seed(h); // 1
    await call(h.app, "POST", "/v1/apply", yamlOf(base())); // unchanged
    await call(h.app, "POST", "/v1/apply?dryRun=1", yamlOf([service("other")])); // dry run
    await call(h.app, "POST", "/v1/services", service("reviews")); // 409
    await call(h.app, "POST", "/v1/apply", yamlOf([route([1, 2])])); // 400
    await call(h.app, "PUT", "/v1/services/ratings", service("ratings")); // 2
    await call(h.app, "DELETE", "/v1/services/ratings"); // 3
    await call(h.app, "DELETE", "/v1/services/ratings"); // 404
    expect(h.changes).toEqual([1, 2, 3]);
  });

  it("/healthz reports the revision and version; 503 once the store is closed", async () => {
    const h = await setup();
    await seed(h);
    const ok = await call(h.app, "GET", "/healthz");
    expect(ok.status).toBe(200);
    expect(ok.body).toEqual({ status: "ok", revision: 1, version: "1.2.3" });
    await h.store.close();
    expectError(await call(h.app, "GET", "/healthz"), 503, "unavailable");
    expectError(await call(h.app, "GET", "/v1/services"), 503, "unavailable");
  });

  it("/metrics serves the registry: resource counts, request counts and others' metrics", async () => {
    const h = await setup();
    h.metrics.counter("wasmesh_xds_pushes_total", "registered by someone else").inc({}, 3);
    await seed(h);
    await call(h.app, "GET", "/v1/services");
    await call(h.app, "GET", "/v1/services/nope");
    await call(h.app, "GET", "/nope");
    const response = await h.app.request("/metrics");
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
    const text = await response.text();
    expect(text).toContain("# TYPE wasmesh_resources gauge");
    expect(text).toContain('wasmesh_resources{kind="Service"} 1');
    expect(text).toContain('wasmesh_resources{kind="Workload"} 2');
    expect(text).toContain('wasmesh_resources{kind="Route"} 0');
    expect(text).toContain("# TYPE wasmesh_api_requests_total counter");
    expect(text).toContain('wasmesh_api_requests_total{method="POST",route="/v1/apply",status="200"} 1');
    expect(text).toContain('wasmesh_api_requests_total{method="GET",route="/v1/services",status="200"} 1');
    expect(text).toContain(
      'wasmesh_api_requests_total{method="GET",route="/v1/services/:name",status="404"} 1',
    );
    expect(text).toContain('wasmesh_api_requests_total{method="GET",route="unmatched",status="404"} 1');
    expect(text).toContain("wasmesh_xds_pushes_total 3");
  });

  it("/v1/status passes the xDS server's view through", async () => {
    const proxies: ProxyStatus[] = [
      {
        nodeId: "reviews-1",
        service: "reviews",
        labels: { version: "v1" },
        protocol: "delta",
        peer: "127.0.0.1:5000",
        connectedAt: "2025-01-01T00:00:00.000Z",
        sent: { lds: "3" },
        acked: { lds: "2" },
        lastRejection: { typeUrl: "lds", version: "3", message: "bad", at: "2025-01-01T00:00:01.000Z" },
        nacks: 1,
      },
    ];
    const h = await setup({ status: () => proxies });
    expect((await call(h.app, "GET", "/v1/status")).body).toEqual({ proxies, edges: [] });
    const none = await setup();
    expect((await call(none.app, "GET", "/v1/status")).body).toEqual({ proxies: [], edges: [] });
  });
});

// --- modules ------------------------------------------------------------------------------------

/** The built-in module, and another real Proxy-Wasm module to upload (the debug build of the filters). */
const builtin = () => loadBuiltinModule(RELEASE_WASM);
const UPLOAD = new Uint8Array(readFileSync(DEBUG_WASM));

async function withRegistry(h: Harness, options: Partial<ApiOptions> = {}): Promise<Hono> {
  const modules = createModuleRegistry({
    store: h.store,
    blobs: createMemoryBlobStore(),
    builtin: await builtin(),
  });
  return createApi({
    auth: "none",
    store: h.store,
    modules,
    onChange: (r) => h.changes.push(r),
    log: (...args) => h.logs.push(args),
    ...options,
  });
}

describe("modules", () => {
  it("push, fetch by sha256, reference from a plugin, delete only when unreferenced", async () => {
    const h = await setup();
    h.app = await withRegistry(h);
    const wasm = { "content-type": "application/wasm" };
    const sha = createHash("sha256").update(UPLOAD).digest("hex");

    const pushed = await call(h.app, "POST", "/v1/modules/tagger?description=tags", UPLOAD, wasm);
    expect(pushed.status, pushed.text).toBe(201);
    expect(pushed.body).toMatchObject({
      kind: "WasmModule",
      metadata: { name: "tagger" },
      spec: { sha256: sha, description: "tags" },
    });
    const again = await call(h.app, "POST", "/v1/modules/tagger?description=tags", UPLOAD, {
      "content-type": "application/octet-stream",
    });
    expect(again.status).toBe(200);
    expect(h.changes).toEqual([1]);

    const fetched = await h.app.request(`/v1/modules/tagger/${sha}.wasm`);
    expect(fetched.status).toBe(200);
    expect(fetched.headers.get("content-type")).toBe("application/wasm");
    expect(new Uint8Array(await fetched.arrayBuffer())).toEqual(UPLOAD);
    expectError(await call(h.app, "GET", `/v1/modules/other/${sha}.wasm`), 404, "not_found");
    expectError(await call(h.app, "GET", `/v1/modules/tagger/${"0".repeat(64)}.wasm`), 404, "not_found");
    expectError(await call(h.app, "GET", "/v1/modules/tagger/latest.wasm"), 404, "not_found");
    // The built-in has no WasmModule resource but is served under its reserved name; only its own
    // digest is.
    const mesh = await builtin();
    const builtinBytes = await h.app.request(`/v1/modules/mesh/${mesh.sha256}.wasm`);
    expect(builtinBytes.status).toBe(200);
    expect(new Uint8Array(await builtinBytes.arrayBuffer())).toEqual(mesh.bytes);
    expectError(await call(h.app, "GET", `/v1/modules/mesh/${sha}.wasm`), 404, "not_found");

    const rejected = await call(h.app, "POST", "/v1/modules/broken", new Uint8Array([1, 2, 3]), wasm);
    expectError(rejected, 400, "invalid");
    expect(rejected.body.error.details).toEqual([
      { path: "module", message: expect.stringContaining("magic") },
    ]);
    const empty = new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]);
    const notProxyWasm = await call(h.app, "POST", "/v1/modules/broken", empty, wasm);
    expectError(notProxyWasm, 400, "invalid");
    expect(notProxyWasm.body.error.details[0]).toMatchObject({ path: "module.exports" });
    // The smoke run uses ?configuration=; a module that refuses it is rejected.
    const refusedConfig = await call(
      h.app,
      "POST",
      `/v1/modules/other?configuration=${encodeURIComponent("{x")}`,
      UPLOAD,
      wasm,
    );
    expectError(refusedConfig, 400, "invalid");
    expect(refusedConfig.body.error.details[0]).toMatchObject({ path: "configuration" });
    expectError(await call(h.app, "POST", "/v1/modules/Bad_Name", UPLOAD, wasm), 400, "invalid");
    expectError(await call(h.app, "POST", "/v1/modules/mesh", UPLOAD, wasm), 400, "invalid");
    expectError(
      await call(h.app, "POST", "/v1/modules/tagger", UPLOAD, { "content-type": "text/plain" }),
      415,
      "unsupported_media_type",
    );

    await seed(h, [
      ...base(),
      {
        apiVersion: API,
        kind: "WasmPlugin",
        metadata: { name: "tagger" },
        spec: { module: "tagger", services: ["reviews"], configuration: {} },
      },
    ]);
    const refused = await call(h.app, "DELETE", "/v1/wasmmodules/tagger");
    expectError(refused, 400, "invalid");
    expect(refused.body.error.details).toContainEqual(
      expect.objectContaining({ kind: "WasmPlugin", name: "tagger", path: "spec.module" }),
    );
    // A WasmModule read back applies as unchanged (round trips of `wasmesh get -o yaml` work).
    const module = (await call(h.app, "GET", "/v1/wasmmodules/tagger")).body;
    expect((await call(h.app, "POST", "/v1/apply", [module])).body.results[0].action).toBe("unchanged");

    expect((await call(h.app, "DELETE", "/v1/wasmplugins/tagger")).status).toBe(200);
    expect((await call(h.app, "DELETE", "/v1/wasmmodules/tagger")).status).toBe(200);
    expectError(await call(h.app, "GET", `/v1/modules/tagger/${sha}.wasm`), 404, "not_found");
    expect(h.changes).toEqual([1, 2, 3, 4]);
  });

  it("answers 503 on module routes without a registry", async () => {
    const h = await setup();
    const reply = await call(h.app, "POST", "/v1/modules/tagger", UPLOAD, {
      "content-type": "application/wasm",
    });
    expectError(reply, 503, "unavailable");
    expect(reply.body.error.message).toContain("module registry");
    expectError(await call(h.app, "GET", `/v1/modules/tagger/${"0".repeat(64)}.wasm`), 503, "unavailable");
  });

  it("refuses a module over its own limit", async () => {
    const h = await setup();
    h.app = await withRegistry(h, { maxModuleBytes: 16 });
    const reply = await call(h.app, "POST", "/v1/modules/big", new Uint8Array(17), {
      "content-type": "application/wasm",
    });
    expectError(reply, 413, "too_large");
  });
});

// --- over real HTTP -----------------------------------------------------------------------------

describe("when the store cannot be written", () => {
  const unwritable = (reason: string) => ({
    error: { code: "unavailable", message: `the resource store cannot be written: ${reason}`, details: [] },
  });

  it("a lock another process holds: writes and /readyz answer 503 saying why; /healthz and reads stay 200", async () => {
    const dataDir = tempDir("api");
    const store = await openSqliteStore({ dataDir, busyTimeoutMs: 100 });
    cleanups.push(() => store.close());
    const app = createApi({ auth: "none", store, version: "1.2.3", log: () => {} });
    expect((await call(app, "POST", "/v1/services", service("reviews"))).status).toBe(201);
    expect((await call(app, "GET", "/readyz")).body).toEqual({ status: "ok", revision: 1, version: "1.2.3" });

    // What a second control plane on the same file does while it applies (for longer than a write waits).
    const other = new DatabaseSync(join(dataDir, DATABASE_FILE));
    cleanups.push(() => other.close());
    other.exec("BEGIN IMMEDIATE");
    for (const reply of [
      await call(app, "POST", "/v1/services", service("ratings")),
      await call(app, "DELETE", "/v1/services/reviews"),
      await call(app, "GET", "/readyz"),
    ]) {
      expectError(reply, 503, "unavailable");
      expect(reply.body).toEqual(unwritable("database is locked"));
    }
    expect((await call(app, "GET", "/healthz")).status).toBe(200);
    expect((await call(app, "GET", "/v1/services")).body.items).toHaveLength(1);

    other.exec("ROLLBACK");
    expect((await call(app, "GET", "/readyz")).status).toBe(200);
    expect((await call(app, "POST", "/v1/services", service("ratings"))).status).toBe(201);
  });

  it("a read-only wasmesh.db, as the issue found it: `wasmesh server` answers 503 with SQLite's reason", async () => {
    const dir = tempDir("api-ro");
    const dataDir = join(dir, "data");
    const seeded = await openSqliteStore({ dataDir });
    await call(createApi({ auth: "none", store: seeded }), "POST", "/v1/services", service("reviews"));
    // An admin token stored before: the server cannot create one in a database it cannot write.
    const { secret } = await createTokens(seeded).issue({ role: "admin" });
    await seeded.close();
    const user = unprivileged(dir, [dataDir, join(dataDir, DATABASE_FILE)]);
    chmodSync(join(dataDir, DATABASE_FILE), 0o444);
    const server = await startServer(dataDir, user);
    const fetch = authorizedFetch(secret);

    const post = await fetch(`${server.api}/v1/services`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(service("ratings")),
    });
    expect({ status: post.status, body: await post.json() }).toEqual({
      status: 503,
      body: unwritable("attempt to write a readonly database"),
    });
    const ready = await fetch(`${server.api}/readyz`);
    expect({ status: ready.status, body: await ready.json() }).toEqual({
      status: 503,
      body: unwritable("attempt to write a readonly database"),
    });
    expect((await fetch(`${server.api}/healthz`)).status).toBe(200);
    const list = (await (await fetch(`${server.api}/v1/services`)).json()) as { items: Doc[] };
    expect(list.items.map((r) => r.metadata.name)).toEqual(["reviews"]);
    expect(server.stderr()).toBe("");
  });

  it("a read-only data directory: `wasmesh server` refuses to start, naming the file and the directory", async () => {
    const dir = tempDir("api-ro");
    const dataDir = join(dir, "data");
    await (await openSqliteStore({ dataDir })).close();
    const user = unprivileged(dir, [dataDir, join(dataDir, DATABASE_FILE)]);
    chmodSync(dataDir, 0o555);
    const child = spawn(
      process.execPath,
      [WASMESH_BIN, "server", "--data", dataDir, "--http-port", "0", "--xds-port", "0"],
      { ...user, stdio: ["ignore", "pipe", "pipe"] },
    );
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const [code] = await once(child, "exit");
    expect({ code, stderr }).toEqual({
      code: 1,
      stderr:
        `wasmesh: cannot start the control plane: cannot open ${join(dataDir, DATABASE_FILE)}: attempt to write a ` +
        `readonly database (${dataDir} is not writable, and SQLite keeps wasmesh.db-wal and -shm there)\n`,
    });
  });

  // Skipped where no tmpfs can be mounted (test/support/tmpfs.ts).
  it.skipIf(!canMountTmpfs())(
    "a full disk: /readyz says so, a module push answers 503 naming ENOSPC",
    async () => {
      const dir = tempDir("api-full");
      const tmpfs = mountTmpfs(dir, 2 * 1024 * 1024);
      cleanups.push(tmpfs.unmount);
      const store = await openSqliteStore({ dataDir: tmpfs.dir });
      cleanups.push(() => store.close());
      const modules = createModuleRegistry({
        store,
        blobs: createFileBlobStore(tmpfs.dir),
        builtin: await builtin(),
      });
      const app = createApi({ auth: "none", store, modules, log: () => {} });
      expect((await call(app, "GET", "/readyz")).status).toBe(200);
      fill(join(tmpfs.dir, "filler"));

      const ready = await call(app, "GET", "/readyz");
      expectError(ready, 503, "unavailable");
      expect(ready.body.error.message).toMatch(
        /^the resource store cannot be written: database or disk is full \(\d+ bytes free in .*tmpfs\)$/,
      );
      const push = await call(app, "POST", "/v1/modules/tagger", UPLOAD, {
        "content-type": "application/wasm",
      });
      expectError(push, 503, "unavailable");
      expect(push.body.error.message).toBe(
        "the module store cannot be written: no space left on device (ENOSPC)",
      );
      expect(await store.list()).toEqual([]);
    },
  );
});

/**
 * Root writes any file whatever its mode: as root, a child that must meet file modes runs as an
 * unprivileged user (nobody), who is given `paths` and may enter `dir`. Spawn options for the child.
 */
function unprivileged(dir: string, paths: string[]): { uid?: number; gid?: number } {
  if (process.getuid?.() !== 0) return {};
  const user = { uid: 65_534, gid: 65_534 };
  chmodSync(dir, 0o755);
  for (const path of paths) chownSync(path, user.uid, user.gid);
  return user;
}

/** `wasmesh server` on `dataDir` in a child process (as `user`, if given), stopped after the test. */
async function startServer(dataDir: string, user: { uid?: number; gid?: number }) {
  const child = spawn(
    process.execPath,
    [WASMESH_BIN, "server", "--data", dataDir, "--http-port", "0", "--xds-port", "0"],
    { ...user, stdio: ["ignore", "pipe", "pipe"] },
  );
  const exited = once(child, "exit");
  cleanups.push(async () => {
    child.kill("SIGTERM");
    await exited;
  });
  let stdout = "";
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const port = await new Promise<string>((resolve, reject) => {
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
      const started = /API http:\/\/127\.0\.0\.1:(\d+)/.exec(stdout);
      if (started?.[1]) resolve(started[1]);
    });
    exited.then(() => reject(new Error(`wasmesh server exited before it started:\n${stdout}${stderr}`)));
  });
  return { api: `http://127.0.0.1:${port}`, stderr: () => stderr };
}

describe("over HTTP (@hono/node-server)", () => {
  it("answers 413 to an endless streamed body without reading it all", async () => {
    const h = await setup({ maxBodyBytes: 64 * 1024 });
    const server = serve({ fetch: h.app.fetch, port: 0, hostname: "127.0.0.1" });
    cleanups.push(
      () =>
        new Promise<void>((resolve) => {
          server.close(() => resolve());
          (server as http.Server).closeAllConnections?.();
        }),
    );
    if (!server.listening) await once(server, "listening");
    const { port } = server.address() as AddressInfo;

    const CAP = 256 * 1024 * 1024; // a safety net; the server must answer long before
    const result = await new Promise<{ status: number; body: string; sent: number }>((resolve, reject) => {
      // No Content-Length: chunked, so only counting while reading can stop it.
      const req = http.request({
        host: "127.0.0.1",
        port,
        method: "POST",
        path: "/v1/apply",
        headers: { "content-type": "application/yaml" },
      });
      const chunk = Buffer.alloc(16 * 1024, "#");
      let sent = 0;
      let answered = false;
      const pump = () => {
        while (!answered && sent < CAP) {
          sent += chunk.length;
          if (!req.write(chunk)) {
            req.once("drain", pump);
            return;
          }
        }
      };
      req.on("response", (res) => {
        answered = true;
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (d: string) => {
          body += d;
        });
        res.on("end", () => {
          req.destroy();
          resolve({ status: res.statusCode ?? 0, body, sent });
        });
      });
      // After the answer the server may cut the connection while we still write: expected.
      req.on("error", (error) => {
        if (!answered) reject(error);
      });
      pump();
    });
    expect(result.status).toBe(413);
    expect(JSON.parse(result.body).error.code).toBe("too_large");
    expect(result.sent).toBeLessThan(CAP);
    expect(await h.store.revision()).toBe(0);
    expect(h.changes).toEqual([]);
  });
});

// The example manifest shipped in deploy/ applies cleanly.
it("applies deploy/examples/mesh.yaml", async () => {
  const h = await setup();
  const text = readFileSync(new URL("../../deploy/examples/mesh.yaml", import.meta.url), "utf8");
  const reply = await call(h.app, "POST", "/v1/apply", text);
  expect(reply.status, reply.text).toBe(200);
  expect(reply.body.results.length).toBeGreaterThan(3);
});
