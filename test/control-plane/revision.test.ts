// One load and compile per store revision (control-plane/revision/), seen from outside: a real
// `startControlPlane` on a real SQLite file, a sidecar's ADS stream over real gRPC and
// GET /v1/edge/config. Each write is answered by both at the same revision, with the same routes,
// and each revision is compiled once (wasmesh_revision_compiles_total), however many ask for it.
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeMessage, TYPE_URL } from "../../control-plane/envoy/index.ts";
import { ROUTING_FILTER } from "../../control-plane/resources/names.ts";
import { createRevisionSource } from "../../control-plane/revision/index.ts";
import { type ControlPlane, startControlPlane } from "../../control-plane/server.ts";
import { openSqliteStore } from "../../control-plane/store/index.ts";
import type { EdgeConfig } from "../../schema/edge-config.ts";
import type { FilterConfig } from "../../schema/filter-config.ts";
import { RELEASE_WASM } from "../support/artifacts.ts";
import { apiFetch, apiOf } from "../support/control-plane.ts";
import { tempDir } from "../support/temp.ts";
import { type AdsClient, connectAds } from "../support/xds-client.ts";

const EXAMPLE = readFileSync(new URL("../../deploy/examples/mesh.yaml", import.meta.url), "utf8");
const ECDS = TYPE_URL.extensionConfig;

/** The example with the canary rule's split set to v1/v2. */
const resplit = (v1: number, v2: number) =>
  EXAMPLE.replace("weight: 90", `weight: ${v1}`).replace("weight: 10", `weight: ${v2}`);

/** An Any, decoded as the type it names. */
function unpack(any: unknown): Record<string, unknown> {
  const { type_url, value } = any as { type_url: string; value: Uint8Array };
  return decodeMessage(type_url, value);
}

/** The canary rule's weights in a routing filter configuration. */
const canary = (filter: FilterConfig) =>
  filter.routes?.find((r) => r.name === "reviews/canary")?.destinations.map((d) => d.weight);

describe("one MeshRevision per store revision, for xDS and the edge", () => {
  let plane: ControlPlane;
  let api: string;
  let sidecar: AdsClient;

  beforeAll(async () => {
    plane = await startControlPlane({
      dataDir: tempDir("revision"),
      httpPort: 0,
      xdsPort: 0,
      builtinModule: RELEASE_WASM,
      log: () => {},
    });
    api = apiOf(plane).api;
    sidecar = await connectAds({
      address: `127.0.0.1:${plane.xdsPort}`,
      node: { id: "productpage-1", cluster: "productpage", metadata: { "wasmesh.service": "productpage" } },
    });
    await sidecar.fetch(ECDS, [ROUTING_FILTER]);
  });
  afterAll(async () => {
    sidecar?.close();
    await plane?.close();
  });

  async function apply(yaml: string): Promise<number> {
    const response = await apiFetch(`${api}/v1/apply`, {
      method: "POST",
      headers: { "content-type": "application/yaml" },
      body: yaml,
    });
    const body = (await response.json()) as { revision: number };
    expect(response.status, JSON.stringify(body)).toBe(200);
    return body.revision;
  }

  async function edge(etag?: string) {
    const response = await apiFetch(`${api}/v1/edge/config`, {
      headers: etag !== undefined ? { "if-none-match": etag } : {},
    });
    const text = await response.text();
    return {
      status: response.status,
      revision: Number(response.headers.get("wasmesh-revision")),
      etag: response.headers.get("etag") ?? "",
      config: text ? (JSON.parse(text) as EdgeConfig) : undefined,
    };
  }

  /** The routing filter's configuration the sidecar received at `revision`. */
  async function pushed(revision: number): Promise<FilterConfig> {
    await sidecar.waitFor(() =>
      sidecar.responses.some((r) => r.typeUrl === ECDS && r.version === String(revision)),
    );
    const response = sidecar.responses.find((r) => r.typeUrl === ECDS && r.version === String(revision));
    const resource = response?.resources.find((r) => r.name === ROUTING_FILTER)?.resource;
    if (resource === undefined) throw new Error(`no routing filter at revision ${revision}`);
    // TypedExtensionConfig → Wasm → its configuration, a StringValue.
    const wasm = unpack(resource.typed_config);
    const text = unpack((wasm.config as Record<string, unknown>).configuration).value;
    return JSON.parse(String(text)) as FilterConfig;
  }

  const compiles = async () => {
    const text = await (await apiFetch(`${api}/metrics`)).text();
    return Number(/^wasmesh_revision_compiles_total (\d+)$/m.exec(text)?.[1]);
  };

  it("answers a write at the same revision on xDS and GET /v1/edge/config, compiled once", async () => {
    const before = await compiles();
    // The revision the server started at, already compiled.
    expect(before).toBe(1);
    const splits: [number, number][] = [
      [90, 10],
      [50, 50],
      [0, 100],
      [70, 30],
    ];
    let revision = 0;
    for (const [v1, v2] of splits) {
      revision = await apply(resplit(v1, v2));
      // Right after the write, before or while xDS pushes it: the edge already answers for it.
      const first = await edge();
      expect(first.status).toBe(200);
      expect(first.revision).toBe(revision);
      // A poll at the same revision: nothing new, not even a translation.
      const again = await edge(first.etag);
      expect(again).toMatchObject({ status: 304, revision, etag: first.etag });

      const sidecarFilter = await pushed(revision);
      expect(canary(sidecarFilter)).toEqual([v1, v2]);
      expect(canary(first.config?.filter ?? {})).toEqual([v1, v2]);
      // The same generator for the same routes: the edge's filter differs only in its denials.
      expect(first.config?.filter.routes).toEqual(sidecarFilter.routes);
    }
    expect(revision).toBe(splits.length);
    // One compile per revision although the xDS reload and the edge both asked for each.
    expect(await compiles()).toBe(before + splits.length);
  });
});

describe("createRevisionSource", () => {
  it("builds a revision once for callers asking at the same time, and again after a write", async () => {
    const store = await openSqliteStore({ dataDir: tempDir("revision-source") });
    try {
      const source = createRevisionSource({ store });
      const [a, b, c] = await Promise.all([source.current(), source.current(), source.current()]);
      expect(a).toBe(b);
      expect(b).toBe(c);
      expect(source.compiles).toBe(1);
      expect(await source.current()).toBe(a);

      await store.apply([
        {
          op: "put",
          resource: {
            apiVersion: "wasmesh.io/v1alpha1",
            kind: "Service",
            metadata: { name: "reviews" },
            spec: { ports: [{ name: "http", port: 9080, protocol: "http" }] },
          },
        },
      ]);
      const next = await source.current();
      expect(next.revision).toBe(1);
      expect(next.resources.map((r) => r.metadata.name)).toEqual(["reviews"]);
      expect(next.edge()).toBe(next.edge());
      expect(source.compiles).toBe(2);
    } finally {
      await store.close();
    }
  });
});
