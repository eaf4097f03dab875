// test/conformance/invalid-configs.json through the control plane's API (a real `startControlPlane`
// with its SQLite store and the built-in build/mesh.wasm, writes over HTTP): every case is refused
// as the configuration of a WasmPlugin of the built-in module, and each case that a native resource
// can produce is refused as that resource (a Route rule whose routing filter the module refuses),
// naming the field; nothing is stored. The file's description says how cases map to requests.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ErrorBody } from "../../control-plane/api/index.ts";
import { API_VERSION } from "../../control-plane/resources/index.ts";
import { type ControlPlane, startControlPlane } from "../../control-plane/server.ts";
import { RELEASE_WASM } from "../support/artifacts.ts";
import { INVALID_CONFIG_CASES, type InvalidConfigCase, invalidConfigBytes } from "../support/conformance.ts";
import { apiFetch, apiOf } from "../support/control-plane.ts";
import { tempDir } from "../support/temp.ts";

const cases = INVALID_CONFIG_CASES;

/** The field the API names for a case given as a WasmPlugin's configuration. */
function pluginPath(c: InvalidConfigCase): string {
  if (c.apiPath !== undefined) return c.apiPath;
  if (c.raw !== undefined || c.rawBase64 !== undefined) return "(root)";
  return c.path === "(root)" ? "spec.configuration" : `spec.configuration.${c.path}`;
}

let plane: ControlPlane;
let api: string;

beforeAll(async () => {
  plane = await startControlPlane({
    dataDir: tempDir("invalid-configs"),
    httpPort: 0,
    xdsPort: 0,
    builtinModule: RELEASE_WASM,
    log: () => {},
  });
  api = apiOf(plane).api;
  const base = [
    {
      kind: "Service",
      metadata: { name: "reviews" },
      spec: { ports: [{ name: "http", port: 9080, protocol: "http" }] },
    },
    {
      kind: "Workload",
      metadata: { name: "reviews-v1" },
      spec: { service: "reviews", address: "10.0.0.1", port: 9080, labels: { version: "v1" } },
    },
  ].map((r) => ({ apiVersion: API_VERSION, ...r }));
  const response = await post(Buffer.from(JSON.stringify(base)));
  expect(response.status, JSON.stringify(response.body)).toBe(200);
});
afterAll(async () => {
  await plane?.close();
});

async function post(body: Buffer): Promise<{ status: number; body: unknown }> {
  const response = await apiFetch(`${api}/v1/apply`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: new Uint8Array(body),
  });
  return { status: response.status, body: await response.json() };
}

const revision = async () =>
  ((await (await apiFetch(`${api}/healthz`)).json()) as { revision: number }).revision;

/** Posts `body`, expects a 400 with nothing stored, and returns the error's details. */
async function refused(body: Buffer) {
  const before = await revision();
  const answer = await post(body);
  expect(answer.status, JSON.stringify(answer.body)).toBe(400);
  expect(await revision(), "nothing stored").toBe(before);
  return (answer.body as ErrorBody).error.details;
}

describe("every invalid configuration, as a WasmPlugin of the built-in module", () => {
  it.each(cases.map((c) => [c.name, c] as const))("refuses: %s", async (_name, c) => {
    // The plugin's document around the configuration's own text (or bytes), as a client sends it.
    const head = Buffer.from(
      `{"apiVersion":"${API_VERSION}","kind":"WasmPlugin","metadata":{"name":"vector"},` +
        `"spec":{"module":"mesh","services":["reviews"],"configuration":`,
    );
    const details = await refused(Buffer.concat([head, invalidConfigBytes(c), Buffer.from("}}")]));
    const path = pluginPath(c);
    expect(
      details.map((d) => d.path),
      JSON.stringify(details),
    ).toContain(path);
    const detail = details.find((d) => d.path === path);
    // What the module said, for a case that gets past the API's own checks (the body's syntax and
    // encoding, the resource schema) to the module.
    const reachesModule =
      c.by === "module" && pluginPath(c).startsWith("spec.configuration") && c.apiPath === undefined;
    if (c.reason !== undefined && reachesModule) expect(detail?.message).toContain(c.reason);
  });
});

describe("the cases a Route produces, as that Route", () => {
  const native = cases.filter((c) => c.route !== undefined);

  it("covers every regex case JSON can hold", () => {
    expect(native.length).toBeGreaterThanOrEqual(15);
  });

  it.each(native.map((c) => [c.name, c] as const))("refuses: %s", async (_name, c) => {
    const route = {
      apiVersion: API_VERSION,
      kind: "Route",
      metadata: { name: "vector" },
      spec: {
        service: "reviews",
        rules: [
          { name: "r", match: c.route, destinations: [{ service: "reviews", subset: { version: "v1" } }] },
        ],
      },
    };
    const details = await refused(Buffer.from(JSON.stringify(route)));
    expect(details).toEqual([
      expect.objectContaining({
        kind: "Route",
        name: "vector",
        path: c.routePath,
        message: expect.stringContaining(c.by === "module" ? (c.reason ?? "") : ""),
      }),
    ]);
  });
});
