// GET /v1/edge/config, in process (app.request) against a real SQLite store in a temp dir: the body
// is a valid EdgeConfig, the ETag is its version and stays put across identical reads and writes
// the edge does not see, If-None-Match gets a bodiless 304, a change of a Route's split changes
// ETag and body, an empty mesh serves an empty configuration, a client-only service or a cluster
// without Workloads is served (listed with no origins), and the OpenAPI document describes the route. Then `wasmesh edge
// export` against the API served over HTTP, and the checks on `wasmesh server --edge-kv-*`.
import { readFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { serve } from "@hono/node-server";
import type { Hono } from "hono";
import { afterEach, describe, expect, it, vi } from "vitest";
import { stringify } from "yaml";
import { createApi } from "../../control-plane/api/index.ts";
import { main } from "../../control-plane/cli/main.ts";
import { openSqliteStore } from "../../control-plane/store/index.ts";
import { type EdgeConfig, validateEdgeConfig } from "../../schema/edge-config.ts";
import { tempDir } from "../support/temp.ts";

const EXAMPLE = readFileSync(new URL("../../deploy/examples/mesh.yaml", import.meta.url), "utf8");
const EDGE_ALLOW = stringify({
  apiVersion: "wasmesh.io/v1alpha1",
  kind: "AccessRule",
  metadata: { name: "edge-to-reviews" },
  spec: { source: "*", destination: "reviews", action: "allow" },
});

const cleanups: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function setup(): Promise<Hono> {
  const dataDir = tempDir("edge-api");
  const store = await openSqliteStore({ dataDir });
  cleanups.push(() => store.close());
  return createApi({ auth: "none", store, log: () => {} });
}

async function apply(app: Hono, yaml: string): Promise<void> {
  const response = await app.request("/v1/apply", {
    method: "POST",
    headers: { "content-type": "application/yaml" },
    body: yaml,
  });
  expect(response.status, await response.clone().text()).toBe(200);
}

async function getConfig(app: Hono, headers: Record<string, string> = {}) {
  const response = await app.request("/v1/edge/config", { headers });
  const text = await response.text();
  return {
    status: response.status,
    headers: response.headers,
    text,
    // biome-ignore lint/suspicious/noExplicitAny: assertions navigate arbitrary JSON
    body: (text ? JSON.parse(text) : undefined) as any,
  };
}

/** The example's canary rule with another split. */
function resplit(v1: number, v2: number): string {
  const docs = EXAMPLE.split(/^---$/m);
  const route = docs.find((d) => /kind: Route\b/.test(d));
  if (route === undefined) throw new Error("the example has no Route");
  return route.replace("weight: 90", `weight: ${v1}`).replace("weight: 10", `weight: ${v2}`);
}

describe("GET /v1/edge/config", () => {
  it("serves a valid EdgeConfig whose version is the ETag, stable across identical reads", async () => {
    const app = await setup();
    await apply(app, `${EXAMPLE}\n---\n${EDGE_ALLOW}`);
    const first = await getConfig(app);
    expect(first.status).toBe(200);
    expect(first.headers.get("content-type")).toMatch(/^application\/json/);
    expect(first.headers.get("cache-control")).toBe("no-cache");
    const config = first.body as EdgeConfig;
    expect(validateEdgeConfig(config).ok).toBe(true);
    expect(first.headers.get("etag")).toBe(`"${config.version}"`);
    expect(config.origins["outbound|reviews|version=v2"]).toEqual(["http://10.0.1.12:9080"]);

    const second = await getConfig(app);
    expect(second.headers.get("etag")).toBe(first.headers.get("etag"));
    expect(second.text).toBe(first.text);
  });

  it("answers If-None-Match with the current ETag with a 304 and no body", async () => {
    const app = await setup();
    await apply(app, EXAMPLE);
    const { headers } = await getConfig(app);
    const etag = headers.get("etag") as string;
    for (const ifNoneMatch of [etag, `W/${etag}`, `"other", ${etag}`, "*"]) {
      const revalidated = await getConfig(app, { "if-none-match": ifNoneMatch });
      expect(revalidated.status, ifNoneMatch).toBe(304);
      expect(revalidated.text).toBe("");
      expect(revalidated.headers.get("etag")).toBe(etag);
      expect(revalidated.headers.get("cache-control")).toBe("no-cache");
    }
    expect((await getConfig(app, { "if-none-match": '"other"' })).status).toBe(200);
  });

  it("changes ETag and body when a Route's split changes, and only then", async () => {
    const app = await setup();
    await apply(app, `${EXAMPLE}\n---\n${EDGE_ALLOW}`);
    const before = await getConfig(app);
    const etag = before.headers.get("etag") as string;

    // A write the edge does not see: a new revision, the same configuration.
    await apply(app, EXAMPLE.replace("description: Book reviews", "description: Book reviews, v2"));
    const unseen = await getConfig(app, { "if-none-match": etag });
    expect(unseen.status).toBe(304);

    await apply(app, resplit(50, 50));
    const after = await getConfig(app, { "if-none-match": etag });
    expect(after.status).toBe(200);
    expect(after.headers.get("etag")).not.toBe(etag);
    expect(after.headers.get("etag")).toBe(`"${after.body.version}"`);
    const canary = (after.body as EdgeConfig).filter.routes?.find((r) => r.name === "reviews/canary");
    expect(canary?.destinations.map((d) => d.weight)).toEqual([50, 50]);
    expect(after.body.filter).not.toEqual(before.body.filter);
  });

  it("serves a valid empty configuration for an empty mesh", async () => {
    const app = await setup();
    const empty = await getConfig(app);
    expect(empty.status).toBe(200);
    expect(empty.body).toEqual({ version: expect.any(String), filter: {}, origins: {} });
    expect(validateEdgeConfig(empty.body).ok).toBe(true);
    expect(empty.headers.get("etag")).toBe(`"${empty.body.version}"`);
  });

  it("serves a mesh with a client-only service and a route to a cluster without Workloads", async () => {
    const app = await setup();
    const frontend = stringify({
      apiVersion: "wasmesh.io/v1alpha1",
      kind: "Service",
      metadata: { name: "frontend" },
      spec: { ports: [{ name: "http", port: 8080, protocol: "http" }] },
    });
    await apply(app, `${EXAMPLE}\n---\n${EDGE_ALLOW}\n---\n${frontend}`);
    // The canary and testers rules can now choose v2, which has no Workload left.
    const deleted = await app.request("/v1/workloads/reviews-v2-a", { method: "DELETE" });
    expect(deleted.status).toBe(200);
    const reply = await getConfig(app);
    expect(reply.status, reply.text).toBe(200);
    const config = reply.body as EdgeConfig;
    expect(validateEdgeConfig(config).ok).toBe(true);
    expect(reply.headers.get("etag")).toBe(`"${config.version}"`);
    expect(config.filter.routes?.some((r) => r.name === "frontend:default")).toBe(true);
    expect(config.origins["outbound|frontend"]).toEqual([]);
    expect(config.origins["outbound|reviews|version=v2"]).toEqual([]);
    expect(config.origins["outbound|reviews|version=v1"]).toEqual(["http://10.0.1.11:9080"]);
  });

  it("is in the OpenAPI document, with the EdgeConfig schema", async () => {
    const app = await setup();
    const response = await app.request("/v1/openapi.json");
    const doc = (await response.json()) as {
      paths: Record<string, Record<string, { responses: Record<string, unknown> }>>;
      components: { schemas: Record<string, { $id?: string }> };
    };
    expect(Object.keys(doc.paths["/v1/edge/config"]?.get?.responses ?? {}).sort()).toEqual([
      "200",
      "304",
      // In front of every route that needs a token (api/auth.ts).
      "401",
      "403",
      "421",
      "503",
    ]);
    expect(doc.components.schemas.EdgeConfig?.$id).toBe("https://wasmesh.io/schemas/edge-config.json");
  });
});

/** Runs the CLI in process; stdout lines through `out`, stderr captured. */
async function cli(args: string[]) {
  const stdout: string[] = [];
  let stderr = "";
  const spy = vi.spyOn(process.stderr, "write").mockImplementation((chunk: string | Uint8Array) => {
    stderr += String(chunk);
    return true;
  });
  try {
    const code = await main(args, (line) => {
      stdout.push(line);
    });
    return { code, stdout: stdout.join("\n"), stderr };
  } finally {
    spy.mockRestore();
  }
}

describe("wasmesh edge export", () => {
  async function served(app: Hono): Promise<string> {
    const server = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" });
    await new Promise((resolve) => server.once("listening", resolve));
    cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  it("prints the configuration the API serves, or writes it to -o FILE", async () => {
    const app = await setup();
    await apply(app, EXAMPLE);
    const api = await served(app);
    const expected = (await getConfig(app)).body as EdgeConfig;

    const printed = await cli(["edge", "export", "--api", api]);
    expect(printed.code, printed.stderr).toBe(0);
    expect(JSON.parse(printed.stdout)).toEqual(expected);

    const dir = tempDir("edge-export");
    const file = join(dir, "edge.json");
    const written = await cli(["edge", "export", "-o", file, "--api", api]);
    expect(written.code, written.stderr).toBe(0);
    expect(written.stdout).toBe(`edge configuration ${expected.version} written to ${file}`);
    expect(JSON.parse(readFileSync(file, "utf8"))).toEqual(expected);
  });

  it("exports a mesh whose clusters have no Workloads, listed with no origins", async () => {
    const app = await setup();
    await apply(app, EXAMPLE);
    await app.request("/v1/workloads/reviews-v2-a", { method: "DELETE" });
    const result = await cli(["edge", "export", "--api", await served(app)]);
    expect(result.code, result.stderr).toBe(0);
    expect((JSON.parse(result.stdout) as EdgeConfig).origins["outbound|reviews|version=v2"]).toEqual([]);
  });

  it("refuses unknown subcommands and incomplete --edge-kv-* flags as usage errors", async () => {
    expect((await cli(["edge", "import"])).code).toBe(2);
    const saved = process.env.CLOUDFLARE_API_TOKEN;
    delete process.env.CLOUDFLARE_API_TOKEN;
    try {
      const half = await cli(["server", "--edge-kv-account", "acct-1"]);
      expect(half.code).toBe(2);
      expect(half.stderr).toContain("--edge-kv-account and --edge-kv-namespace go together");
      const noToken = await cli(["server", "--edge-kv-account", "acct-1", "--edge-kv-namespace", "ns-1"]);
      expect(noToken.code).toBe(2);
      expect(noToken.stderr).toContain("CLOUDFLARE_API_TOKEN");
      const keyAlone = await cli(["server", "--edge-kv-key", "k"]);
      expect(keyAlone.code).toBe(2);
    } finally {
      if (saved !== undefined) process.env.CLOUDFLARE_API_TOKEN = saved;
    }
  });
});
