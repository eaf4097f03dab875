// The modules as the authority on what a write may configure (revision/check.ts): a real
// `startControlPlane` on a real SQLite file, writes over HTTP, the built-in build/mesh.wasm and
// user modules pushed through the registry, loaded in the validation workers. A configuration a
// module refuses is a 400 naming the resource field it came from, with nothing stored; what was
// stored before the check does not block unrelated writes; a module that spins in
// proxy_on_configure is stopped by the time limit without holding up other writes.
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { createApi, type ErrorBody, type ErrorDetail } from "../../control-plane/api/index.ts";
import type { ConfigureVerdict } from "../../control-plane/modules/configure.ts";
import { ConfigureSession } from "../../control-plane/modules/configure.ts";
import { API_VERSION, type Resource, validateResource } from "../../control-plane/resources/index.ts";
import { createConfigurationCheck } from "../../control-plane/revision/index.ts";
import { type ControlPlane, startControlPlane } from "../../control-plane/server.ts";
import { openSqliteStore } from "../../control-plane/store/index.ts";
import { indexMesh } from "../../control-plane/translate/mesh.ts";
import { routingSuperset } from "../../control-plane/translate/routing-check.ts";
import { denialsFor } from "../../control-plane/translate/routing-filter.ts";
import { RELEASE_WASM } from "../support/artifacts.ts";
import { compileAssemblyScript } from "../support/asc.ts";
import { apiFetch, apiOf } from "../support/control-plane.ts";
import { tagModule } from "../support/tag-module.ts";
import { tempDir } from "../support/temp.ts";

const ROOT = new URL("../..", import.meta.url).pathname;
const EXAMPLE = readFileSync(new URL("../../deploy/examples/mesh.yaml", import.meta.url), "utf8");
/** The time limit of a check (and a validation) in these tests: a spinning module is given up on after it. */
const TIME_LIMIT_MS = 3000;

type Doc = { kind: string; metadata: { name: string }; spec: unknown };
const doc = (kind: string, name: string, spec: unknown): Doc => ({ kind, metadata: { name }, spec });
const yaml = (...docs: Doc[]) => docs.map((d) => stringify({ apiVersion: API_VERSION, ...d })).join("---\n");

/** A Route on reviews with one rule, `rule` merged over a plain one. */
function route(name: string, rule: Record<string, unknown>): Doc {
  return doc("Route", name, {
    service: "reviews",
    rules: [{ name: "r", destinations: [{ service: "reviews", subset: { version: "v1" } }], ...rule }],
  });
}

let plane: ControlPlane;
let api: string;
let spinner: Uint8Array<ArrayBuffer>;
let refuser: Uint8Array<ArrayBuffer>;

beforeAll(async () => {
  spinner = await compileAssemblyScript(
    "test/fixtures/modules/spin-on-config.ts",
    ["--config", "asconfig.json", "--target", "release"],
    { baseDir: ROOT },
  );
  refuser = await compileAssemblyScript(
    "test/fixtures/modules/refuse-config.ts",
    ["--config", "asconfig.json", "--target", "release"],
    { baseDir: ROOT },
  );
  plane = await startControlPlane({
    dataDir: tempDir("config-check"),
    httpPort: 0,
    xdsPort: 0,
    builtinModule: RELEASE_WASM,
    validation: { timeoutMs: TIME_LIMIT_MS },
    log: () => {},
  });
  api = apiOf(plane).api;
  await apply(EXAMPLE);
  await push("tag", await tagModule(1));
  await push("spinner", spinner);
}, 60_000);
afterAll(async () => {
  await plane?.close();
});

async function apply(body: string, query = ""): Promise<{ status: number; body: unknown }> {
  const response = await apiFetch(`${api}/v1/apply${query}`, {
    method: "POST",
    headers: { "content-type": "application/yaml" },
    body,
  });
  return { status: response.status, body: await response.json() };
}

async function push(name: string, bytes: Uint8Array<ArrayBuffer>): Promise<void> {
  const response = await apiFetch(`${api}/v1/modules/${name}`, {
    method: "POST",
    headers: { "content-type": "application/wasm" },
    body: bytes,
  });
  expect(response.status, await response.text()).toBeLessThan(300);
}

const revision = async () =>
  ((await (await apiFetch(`${api}/healthz`)).json()) as { revision: number }).revision;
const details = (body: unknown) => (body as ErrorBody).error.details;

/** Applies `docs`, expects the 400 of a refused configuration with nothing stored, returns its details. */
async function refused(docs: Doc[], query = ""): Promise<ErrorDetail[]> {
  const before = await revision();
  const answer = await apply(yaml(...docs), query);
  expect(answer.status, JSON.stringify(answer.body)).toBe(400);
  expect((answer.body as ErrorBody).error.code).toBe("invalid");
  expect(await revision(), "nothing stored").toBe(before);
  return details(answer.body);
}

describe("the routing filter, loaded into the built-in module before a write is committed", () => {
  it("refuses a Route whose header regex is (a)\\1, naming the field, and stores nothing", async () => {
    const before = await revision();
    const answer = await apply(
      yaml(route("backref", { match: { headers: [{ name: "x-user", regex: "(a)\\1" }] } })),
    );
    expect(answer.status, JSON.stringify(answer.body)).toBe(400);
    expect((answer.body as ErrorBody).error.message).toMatch(/modules refuse the configuration/);
    expect(details(answer.body)).toEqual([
      {
        kind: "Route",
        name: "backref",
        path: "spec.rules[0].match.headers[0].regex",
        message: expect.stringMatching(
          /^backreference '\\1' is not supported at offset 3 \(the built-in module, at /,
        ),
      },
    ]);
    expect(await revision(), "the store revision did not move").toBe(before);
    expect((await apiFetch(`${api}/v1/routes/backref`)).status, "the Route was not stored").toBe(404);
  });

  it("checks dry runs too", async () => {
    const [detail] = await refused(
      [route("backref", { match: { path: { regex: "/(a)\\1" } } })],
      "?dryRun=true",
    );
    expect(detail).toMatchObject({ kind: "Route", name: "backref", path: "spec.rules[0].match.path.regex" });
  });

  // Where a rule's regex can be, and how it reaches the filter: the rule's own authority condition
  // becomes the first header of the match, a rule with header changes is claimed by a header rule
  // (with the rule's match) and routed by the marker.
  const fields: [string, Record<string, unknown>, string][] = [
    ["a path", { match: { path: { regex: "(?=a)a" } } }, "spec.rules[0].match.path.regex"],
    ["the authority", { match: { authority: { regex: "a++" } } }, "spec.rules[0].match.authority.regex"],
    [
      "a header after the authority",
      {
        match: {
          authority: { prefix: "rev" },
          headers: [
            { name: "x-a", exact: "1" },
            { name: "x-b", regex: "(?<n>b)" },
          ],
        },
      },
      "spec.rules[0].match.headers[1].regex",
    ],
    [
      "a query parameter",
      { match: { query: [{ name: "q", regex: "a{101}" }] } },
      "spec.rules[0].match.query[0].regex",
    ],
    [
      "a header of a rule with header changes",
      {
        match: { headers: [{ name: "x-user", regex: "(a" }] },
        requestHeaders: { set: [{ name: "x-a", value: "1" }] },
      },
      "spec.rules[0].match.headers[0].regex",
    ],
    [
      "a header of a rule with a fault",
      {
        match: { headers: [{ name: "x-user", regex: "\\b" }] },
        fault: { abort: { status: 503, percent: 10 } },
      },
      "spec.rules[0].match.headers[0].regex",
    ],
  ];
  it.each(fields)("names the field of %s", async (_what, rule, path) => {
    const [detail] = await refused([route("field", rule)], "?dryRun=true");
    expect(detail).toMatchObject({ kind: "Route", name: "field", path });
  });

  it("refuses a text that is not Unicode (an unpaired surrogate) in the resource's validation, naming the field", async () => {
    const [detail] = await refused([
      route("surrogate", { match: { headers: [{ name: "x-user", exact: "a\ud800" }] } }),
    ]);
    expect(detail).toMatchObject({
      path: "spec.rules[0].match.headers[0].exact",
      message: expect.stringContaining("unpaired surrogate (\\ud800)"),
    });
  });

  it("lets a write that leaves a stored refused Route alone through, with a warning, and still finds a new refusal", async () => {
    // Stored before the check existed (straight into the store, as an older version would have).
    await plane.store.apply([
      {
        op: "put",
        resource: {
          apiVersion: API_VERSION,
          ...route("legacy", { match: { headers: [{ name: "x-user", regex: "(a)\\1" }] } }),
        },
      },
    ]);
    const unrelated = await apply(
      yaml(doc("Service", "ratings", { ports: [{ name: "http", port: 9080, protocol: "http" }] })),
    );
    expect(unrelated.status, JSON.stringify(unrelated.body)).toBe(200);
    expect((unrelated.body as { warnings: ErrorDetail[] }).warnings).toEqual([
      expect.objectContaining({
        kind: "Route",
        name: "legacy",
        path: "spec.rules[0].match.headers[0].regex",
      }),
    ]);
    // The stored refusal comes first in the filter; the new one is found behind it.
    const [detail] = await refused([route("newer", { match: { path: { regex: "(?!x)" } } })]);
    expect(detail).toMatchObject({ kind: "Route", name: "newer", path: "spec.rules[0].match.path.regex" });
    // Fixing the stored Route is a write like any other.
    const fixed = await apply(
      yaml(route("legacy", { match: { headers: [{ name: "x-user", regex: "(a)a" }] } })),
    );
    expect(fixed.status, JSON.stringify(fixed.body)).toBe(200);
    expect((fixed.body as { warnings: ErrorDetail[] }).warnings).toEqual([]);
  });
});

describe("WasmPlugins, each configuration loaded into its module", () => {
  const plugin = (name: string, module: string, configuration: unknown) =>
    doc("WasmPlugin", name, { module, services: ["reviews"], configuration });

  it("refuses what the built-in module refuses in a plugin's configuration, inside spec.configuration", async () => {
    const [detail] = await refused([
      plugin("mesh-plugin", "mesh", {
        headerRules: [{ name: "r", match: { path: { regex: "(a)\\1" } }, deny: {} }],
      }),
    ]);
    expect(detail).toMatchObject({
      kind: "WasmPlugin",
      name: "mesh-plugin",
      path: "spec.configuration.headerRules[0].match.path.regex",
      message: expect.stringContaining("backreference '\\1' is not supported"),
    });
  });

  it("refuses a configuration a user module refuses in proxy_on_configure, and stores one it takes", async () => {
    const [detail] = await refused([plugin("tagger", "tag", { please: "reject" })]);
    expect(detail).toEqual({
      kind: "WasmPlugin",
      name: "tagger",
      path: "spec.configuration",
      message: "refused by module 'tag': tag: configuration refused: it asks to be rejected",
    });
    const accepted = await apply(yaml(plugin("tagger", "tag", { please: "tag" })));
    expect(accepted.status, JSON.stringify(accepted.body)).toBe(200);
  });

  it("refuses a module version that refuses the configuration of a WasmPlugin using it, storing nothing", async () => {
    const accepted = await apply(yaml(plugin("tagger", "tag", { please: "tag" })));
    expect(accepted.status, JSON.stringify(accepted.body)).toBe(200);
    const before = await revision();
    const module = await (await apiFetch(`${api}/v1/wasmmodules/tag`)).json();
    const response = await apiFetch(`${api}/v1/modules/tag`, {
      method: "POST",
      headers: { "content-type": "application/wasm" },
      body: refuser,
    });
    const body = (await response.json()) as ErrorBody;
    expect(response.status, JSON.stringify(body)).toBe(400);
    expect(body.error.details).toEqual([
      {
        kind: "WasmPlugin",
        name: "tagger",
        path: "spec.configuration",
        message: "refused by module 'tag': refuse-config: no configuration is good enough",
      },
    ]);
    expect(await revision()).toBe(before);
    expect(
      await (await apiFetch(`${api}/v1/wasmmodules/tag`)).json(),
      "the module's version is unchanged",
    ).toEqual(module);
  });

  it("refuses a configuration its module traps on", async () => {
    const [detail] = await refused([plugin("trapper", "spinner", { mode: "trap" })]);
    expect(detail).toMatchObject({
      path: "spec.configuration",
      message: expect.stringMatching(
        /^refused by module 'spinner': trapped in proxy_on_configure: unreachable/,
      ),
    });
  });

  it("gives up on a module spinning in proxy_on_configure at the time limit, holding up no other write", async () => {
    const answered: string[] = [];
    const track = <T>(label: string, promise: Promise<T>) =>
      promise.then((value) => {
        answered.push(label);
        return value;
      });
    const spinning = track("spinning", apply(yaml(plugin("spin", "spinner", { mode: "spin" }))));
    // Another write while the spinning check runs: it does not wait for the time limit.
    const other = await track(
      "other",
      apply(yaml(route("unrelated", { match: { headers: [{ name: "x-user", exact: "someone" }] } }))),
    );
    expect(other.status, JSON.stringify(other.body)).toBe(200);
    expect(answered).toEqual(["other"]);
    const spun = await spinning;
    expect(spun.status, JSON.stringify(spun.body)).toBe(400);
    expect(details(spun.body)).toEqual([
      expect.objectContaining({
        kind: "WasmPlugin",
        name: "spin",
        path: "spec.configuration",
        message: expect.stringContaining(`did not finish within ${TIME_LIMIT_MS} ms`),
      }),
    ]);
    expect((await apiFetch(`${api}/v1/wasmplugins/spin`)).status).toBe(404);
  }, 20_000);
});

describe("routingSuperset", () => {
  it("holds the denials of every proxy class and of the edge, and only those", () => {
    const docs: unknown[] = [];
    const names = ["a", "b", "c", "d", "e"];
    for (const name of names)
      docs.push(doc("Service", name, { ports: [{ name: "http", port: 9080, protocol: "http" }] }));
    docs.push(doc("MeshPolicy", "default", { defaultAccess: "deny" }));
    docs.push(doc("AccessRule", "a-to-b", { source: "a", destination: "b", action: "allow" }));
    docs.push(doc("AccessRule", "all-to-c", { source: "*", destination: "c", action: "allow" }));
    docs.push(doc("AccessRule", "d-not-c", { source: "d", destination: "c", action: "deny" }));
    docs.push(doc("AccessRule", "x-to-e", { source: "x", destination: "e", action: "allow" }));
    const resources = docs.map((d) => {
      const result = validateResource({ apiVersion: API_VERSION, ...(d as Doc) });
      if (!result.ok) throw new Error(JSON.stringify(result.errors));
      return result.resource;
    });
    const mesh = indexMesh(resources);
    const superset = (routingSuperset(mesh).headerRules ?? []).map((r) => r.name);
    // Every source a proxy can be: each service, a source only an AccessRule names, and any other.
    const union = new Set(
      ["a", "b", "c", "d", "e", "x", "*", "unknown"].flatMap((s) => denialsFor(mesh, s).map((r) => r.name)),
    );
    expect(new Set(superset)).toEqual(union);
    expect(superset).toContain("d-not-c");
    expect(superset).toContain("default-deny:b");
  });
});

describe("verdicts and warm VMs", () => {
  it("loads a configuration once per module digest: the same routing configuration is not loaded again", async () => {
    const calls: string[][] = [];
    const builtin = { sha256: "builtin", bytes: new Uint8Array(readFileSync(RELEASE_WASM)) };
    const session = new ConfigureSession();
    const check = createConfigurationCheck({
      builtin,
      moduleBytes: async () => undefined,
      configure: async (code, rootId, configurations): Promise<ConfigureVerdict[]> => {
        calls.push([...configurations]);
        return (
          await session.run({
            sha256: code.sha256,
            bytes: code.bytes,
            rootId,
            configurations,
            memoryLimitBytes: 128 << 20,
          })
        ).verdicts;
      },
    });
    const service = (name: string): Resource => {
      const result = validateResource({
        apiVersion: API_VERSION,
        kind: "Service",
        metadata: { name },
        spec: { ports: [{ name: "http", port: 9080, protocol: "http" }] },
      });
      if (!result.ok) throw new Error(JSON.stringify(result.errors));
      return result.resource;
    };
    const state = [service("a"), service("b")];
    expect(await check.routing(state, [], new Set())).toEqual({ errors: [], warnings: [] });
    expect(await check.routing(state, [], new Set())).toEqual({ errors: [], warnings: [] });
    expect(calls).toHaveLength(1);
    await check.routing([service("a")], [], new Set());
    expect(calls).toHaveLength(2);
  });

  it("answers 503 and stores nothing when the built-in module gives no verdict (its time limit, a crash)", async () => {
    const store = await openSqliteStore({ dataDir: tempDir("check-unavailable") });
    try {
      const check = createConfigurationCheck({
        builtin: { sha256: "builtin", bytes: new Uint8Array() },
        moduleBytes: async () => undefined,
        configure: async (_code, _rootId, configurations) =>
          configurations.map(
            () => ({ ok: false, error: "did not finish within 10 ms", transient: true }) as const,
          ),
      });
      const app = createApi({ auth: "none", store, check, log: () => {} });
      const response = await app.request("/v1/apply", {
        method: "POST",
        headers: { "content-type": "application/yaml" },
        body: yaml(doc("Service", "reviews", { ports: [{ name: "http", port: 9080, protocol: "http" }] })),
      });
      const body = (await response.json()) as ErrorBody;
      expect(response.status, JSON.stringify(body)).toBe(503);
      expect(body.error.message).toContain("did not finish within 10 ms");
      expect(await store.revision()).toBe(0);
    } finally {
      await store.close();
    }
  });

  it("keeps a module warm in a worker: a later job needs no bytes, until it is evicted", async () => {
    const session = new ConfigureSession();
    const bytes = new Uint8Array(readFileSync(RELEASE_WASM));
    const job = { rootId: "wasmesh", memoryLimitBytes: 128 << 20 };
    const first = await session.run({ ...job, sha256: "m1", bytes, configurations: ["{}", '{"rutes":[]}'] });
    expect(first.verdicts).toEqual([
      { ok: true },
      {
        ok: false,
        error: expect.stringMatching(/^wasmesh: invalid plugin configuration: rutes: unknown field/),
      },
    ]);
    expect(first.warm).toEqual(["m1"]);
    // Warm: no bytes needed, and the VM took the refusal in its stride.
    expect((await session.run({ ...job, sha256: "m1", configurations: ["{}"] })).verdicts).toEqual([
      { ok: true },
    ]);
    for (const digest of ["m2", "m3", "m4", "m5"]) {
      await session.run({ ...job, sha256: digest, bytes, configurations: ["{}"] });
    }
    const evicted = await session.run({ ...job, sha256: "m1", configurations: ["{}"] });
    expect(evicted.verdicts[0]).toMatchObject({ ok: false });
    expect(evicted.warm).toEqual(["m2", "m3", "m4", "m5"]);
  });
});
