// Module delivery by file (issue 10): a sidecar whose node metadata says
// `wasmesh.module_delivery: local` is sent, in each Wasm filter's ECDS resource, the name of a file
// (modules/<module>/<sha256>.wasm) instead of the code, and the API serves exactly the code an
// inline sidecar is sent under that digest, for the built-in module and for a pushed one, capped
// memory maximum included. A real startControlPlane on a real SQLite file, modules pushed through
// the API, ADS streams over real gRPC.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  decodeMessage,
  LOCAL_MODULE_FILE,
  NODE_METADATA,
  TYPE_URL,
} from "../../control-plane/envoy/index.ts";
import { pluginFilterName, ROUTING_FILTER } from "../../control-plane/resources/names.ts";
import { type ControlPlane, startControlPlane } from "../../control-plane/server.ts";
import { DEBUG_WASM, RELEASE_WASM } from "../support/artifacts.ts";
import { apiFetch, apiOf } from "../support/control-plane.ts";
import { tempDir } from "../support/temp.ts";
import { type AdsClient, connectAds } from "../support/xds-client.ts";

const ECDS = TYPE_URL.extensionConfig;
const EXAMPLE = readFileSync(new URL("../../deploy/examples/mesh.yaml", import.meta.url), "utf8");
const PLUGIN_FILTER = pluginFilterName("outbound", "tagging");

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

/** An Any, decoded as the type it names. */
function unpack(any: unknown): Record<string, unknown> {
  const { type_url, value } = any as { type_url: string; value: Uint8Array };
  return decodeMessage(type_url, value);
}

/** The Wasm filter's code source (vm_config.code.local) in an ECDS resource a client holds. */
function codeOf(client: AdsClient, name: string): { filename?: string; inline_bytes?: Uint8Array } {
  const held = client.held(ECDS).find((r) => r.name === name);
  if (held === undefined) throw new Error(`${client.nodeId} holds no ECDS resource ${name}`);
  const wasm = unpack(held.resource.typed_config) as {
    config: { vm_config: { code: { local: { filename?: string; inline_bytes?: Uint8Array } } } };
  };
  return wasm.config.vm_config.code.local;
}

describe("module delivery by file", () => {
  let plane: ControlPlane;
  let api: string;
  const clients: AdsClient[] = [];

  const sidecar = async (id: string, metadata: Record<string, unknown>) => {
    const client = await connectAds({
      address: `127.0.0.1:${plane.xdsPort}`,
      node: { id, cluster: "productpage", metadata: { [NODE_METADATA.service]: "productpage", ...metadata } },
    });
    clients.push(client);
    await client.fetch(ECDS, [ROUTING_FILTER, PLUGIN_FILTER]);
    return client;
  };

  async function push(name: string, file: string): Promise<string> {
    const response = await apiFetch(`${api}/v1/modules/${name}`, {
      method: "POST",
      headers: { "content-type": "application/wasm" },
      body: readFileSync(file),
    });
    const body = (await response.json()) as { metadata: { resourceVersion: string } };
    expect(response.status, JSON.stringify(body)).toBeLessThan(300);
    return body.metadata.resourceVersion;
  }

  async function apply(yaml: string): Promise<void> {
    const response = await apiFetch(`${api}/v1/apply`, {
      method: "POST",
      headers: { "content-type": "application/yaml" },
      body: yaml,
    });
    expect(response.status, await response.text()).toBe(200);
  }

  /** GET /v1/<filename>: the API serves module files where the filename points, under /v1. */
  async function download(filename: string): Promise<Uint8Array> {
    const response = await apiFetch(`${api}/v1/${filename}`);
    expect(response.status, `GET /v1/${filename}`).toBe(200);
    return new Uint8Array(await response.arrayBuffer());
  }

  beforeAll(async () => {
    plane = await startControlPlane({
      dataDir: tempDir("delivery"),
      httpPort: 0,
      xdsPort: 0,
      builtinModule: RELEASE_WASM,
      log: () => {},
    });
    api = apiOf(plane).api;
    // A module of its own (the filters' debug build) run as an outbound plugin of productpage.
    await push("tagger", DEBUG_WASM);
    await apply(
      `${EXAMPLE}\n---\n${JSON.stringify({
        apiVersion: "wasmesh.io/v1alpha1",
        kind: "WasmPlugin",
        metadata: { name: "tagging" },
        spec: {
          module: "tagger",
          services: ["productpage"],
          direction: "outbound",
          configuration: {
            headerRules: [{ name: "tag", requestHeaders: { set: [{ name: "x-tag", value: "1" }] } }],
          },
        },
      })}`,
    );
  });
  afterAll(async () => {
    for (const client of clients) client.close();
    await plane?.close();
  });

  it("names each module's code by digest for a local sidecar, and the API serves exactly what an inline one runs", async () => {
    const inline = await sidecar("productpage-inline", {});
    const local = await sidecar("productpage-local", { [NODE_METADATA.moduleDelivery]: "local" });
    for (const [filter, module] of [
      [ROUTING_FILTER, "mesh"],
      [PLUGIN_FILTER, "tagger"],
    ] as const) {
      const bytes = codeOf(inline, filter).inline_bytes;
      if (bytes === undefined) throw new Error(`${filter}: the inline sidecar got no bytes`);
      const { filename, inline_bytes } = codeOf(local, filter);
      expect(inline_bytes, filter).toBeUndefined();
      expect(filename, filter).toBe(`modules/${module}/${sha256(bytes)}.wasm`);
      expect(filename).toMatch(LOCAL_MODULE_FILE);
      const served = await download(filename as string);
      expect(sha256(served), filter).toBe(sha256(bytes));
      expect(Buffer.from(served).equals(Buffer.from(bytes)), filter).toBe(true);
    }
    // The code sidecars run caps the memory maximum: not the files as built, whose own digests
    // still serve them as pushed.
    const built = { mesh: readFileSync(RELEASE_WASM), tagger: readFileSync(DEBUG_WASM) };
    for (const [module, bytes] of Object.entries(built)) {
      expect(codeOf(local, module === "mesh" ? ROUTING_FILTER : PLUGIN_FILTER).filename).not.toContain(
        sha256(bytes),
      );
      expect(Buffer.from(await download(`modules/${module}/${sha256(bytes)}.wasm`)).equals(bytes)).toBe(true);
    }
  });

  it("names a module's new version after a push, and still serves the one before to an agent fetching it", async () => {
    const local = await sidecar("productpage-local-2", { [NODE_METADATA.moduleDelivery]: "local" });
    const before = codeOf(local, PLUGIN_FILTER).filename as string;
    const revision = await push("tagger", RELEASE_WASM);
    await local.waitFor(() => codeOf(local, PLUGIN_FILTER).filename !== before, 10_000, "the new version");
    const after = codeOf(local, PLUGIN_FILTER).filename as string;
    expect(Number(revision)).toBeGreaterThan(0);
    // The same bytes as the built-in module: the same code, under the plugin's module name.
    expect(after).toBe(codeOf(local, ROUTING_FILTER).filename?.replace("modules/mesh/", "modules/tagger/"));
    for (const filename of [after, before]) {
      const digest = LOCAL_MODULE_FILE.exec(filename)?.[2];
      expect(sha256(await download(filename))).toBe(digest);
    }
  });

  it("refuses a node metadata delivery it does not know, naming the field", async () => {
    const client = await connectAds({
      address: `127.0.0.1:${plane.xdsPort}`,
      node: {
        id: "productpage-odd",
        cluster: "productpage",
        metadata: { [NODE_METADATA.service]: "productpage", [NODE_METADATA.moduleDelivery]: "remote" },
      },
    });
    clients.push(client);
    client.subscribe(ECDS, [ROUTING_FILTER]);
    await client.waitFor(() => client.endedWith !== undefined, 5000, "the stream to be refused");
    expect(client.endedWith?.details).toContain('node.metadata["wasmesh.module_delivery"]');
  });
});
