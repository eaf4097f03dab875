// Issue 14 §2's proof for `wasmesh inspect proxy` (and `describe route`'s proxies) with real
// sidecars: the canary mesh (`wasmesh server`, the tag module pushed, canary-mesh.yaml applied) with
// sidecars run by `wasmesh dataplane run` (state of the world, module files fetched by the agent),
// and one Envoy started from `wasmesh bootstrap` (delta, module code inline). What inspect prints
// is what the xDS server sent each: the reviews subsets' outbound clusters with their endpoints, the
// listeners and their filters, and each Wasm filter's module with the digest the registry gives it.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CanaryMesh, startCanaryMesh } from "../support/canary-mesh.ts";
import { type Sidecar, startSidecar, waitForStatus, wasmesh } from "../support/control-plane.ts";
import { REPO_ROOT } from "../support/envoy.ts";

let mesh: CanaryMesh;
let direct: Sidecar | undefined;
const CLIENT = "productpage-1";
const DIRECT = "productpage-direct";

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

async function inspect(args: string[], token?: string) {
  const result = await wasmesh(["inspect", "proxy", ...args], {
    api: mesh.cp.api,
    ...(token ? { token } : {}),
  });
  expect(result.code, result.stderr).toBe(0);
  return result.stdout;
}

/** The rows of one section's table (after its header line), as columns. */
function rows(stdout: string, section: string): string[][] {
  const lines = stdout.split("\n");
  const start = lines.findIndex((l) => l.startsWith(`${section} (`));
  expect(start, `${section} in:\n${stdout}`).toBeGreaterThanOrEqual(0);
  const out: string[][] = [];
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith("  ")) break;
    out.push(line.trim().split(/ {2,}/));
  }
  return out;
}

beforeAll(async () => {
  mesh = await startCanaryMesh();
  await mesh.startAgents([
    { name: CLIENT, service: "productpage" },
    { name: "reviews-v1", service: "reviews", labels: { version: "v1" } },
    { name: "reviews-v2", service: "reviews", labels: { version: "v2" } },
  ]);
  direct = await startSidecar({
    controlPlane: { xds: mesh.cp.xds, api: mesh.cp.api },
    nodeId: DIRECT,
    service: "productpage",
    appPort: mesh.app(CLIENT).port,
    protocol: "delta",
  });
  await mesh.synced(undefined, [CLIENT, "reviews-v1", "reviews-v2", DIRECT]);
}, 120_000);

afterAll(async () => {
  await direct?.envoy.stop();
  await mesh?.close();
});

describe("wasmesh inspect proxy", () => {
  it("clusters: the outbound clusters of reviews' subsets, each with its workload's endpoint", async () => {
    const out = await inspect([CLIENT, "--type", "clusters"]);
    expect(out).toMatch(/^Proxy productpage-1 \(service productpage\), synced version \d+\n/);
    const clusters = new Map(
      rows(out, "Clusters").map(([name, type, endpoints]) => [name, { type, endpoints }]),
    );
    expect(clusters.get("outbound|reviews|version=v1")).toEqual({ type: "EDS", endpoints: "1" });
    expect(clusters.get("outbound|reviews|version=v2")).toEqual({ type: "EDS", endpoints: "1" });
    expect(clusters.get("outbound|reviews")).toEqual({ type: "EDS", endpoints: "2" });
    // The same, as JSON: Envoy's own field names, the resource as it was sent.
    const json = JSON.parse(await inspect([CLIENT, "--type", "clusters", "-o", "json"])) as {
      types: { type: string; resources: { name: string; resource: Record<string, unknown> }[] }[];
    };
    expect(json.types.map((t) => t.type)).toEqual(["clusters"]);
    const v2 = json.types[0]?.resources.find((r) => r.name === "outbound|reviews|version=v2");
    expect(v2?.resource).toMatchObject({
      "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
      name: "outbound|reviews|version=v2",
      type: "EDS",
    });
    // Its endpoints: the address reviews-v2's agent registered.
    const endpoints = rows(await inspect([CLIENT, "--type", "endpoints"]), "Endpoints");
    const workload = (await mesh.cp.request("GET", "/v1/workloads/reviews-v2")).body as {
      spec: { address: string; port: number };
    };
    expect(endpoints).toContainEqual([
      "outbound|reviews|version=v2",
      `${workload.spec.address}:${workload.spec.port}`,
    ]);
  });

  it("listeners: the outbound and inbound listeners with their filters", async () => {
    const listeners = rows(await inspect(["reviews-v1", "--type", "listeners"]), "Listeners");
    const filters = listeners.map(([, , f]) => f).join(" ");
    expect(filters).toContain("wasmesh.outbound.routing");
    expect(filters).toContain("wasmesh.inbound.tagger");
    expect(listeners.every(([, address]) => /^[\d.]+:\d+$/.test(address as string))).toBe(true);
  });

  it("extensions: each Wasm filter's module and digests, the version's equal to the registry's", async () => {
    const tagger = (await mesh.cp.request("GET", "/v1/wasmmodules/tagger")).body as {
      spec: { sha256: string };
    };
    const builtin = sha256(readFileSync(join(REPO_ROOT, "build", "mesh.wasm")));
    // A read-only token is enough.
    const created = await wasmesh(["token", "create", "--role", "read-only"], { api: mesh.cp.api });
    const reader = created.stdout.trim();
    for (const node of [CLIENT, DIRECT]) {
      const extensions = rows(await inspect([node, "--type", "extensions"], reader), "Extensions");
      const byName = new Map(extensions.map(([name, ...rest]) => [name, rest]));
      const routing = byName.get("wasmesh.outbound.routing");
      expect(routing?.slice(0, 3)).toEqual(["Wasm", "mesh", builtin]);
      const plugin = byName.get("wasmesh.inbound.tagger");
      expect(plugin?.slice(0, 3), node).toEqual(["Wasm", "tagger", tagger.spec.sha256]);
      // The code Envoy loads is served under its own digest, and hashes to it.
      for (const [module, code] of [
        ["mesh", routing?.[3]],
        ["tagger", plugin?.[3]],
      ]) {
        const bytes = await fetch(`${mesh.cp.api}/v1/modules/${module}/${code}.wasm`, {
          headers: { authorization: `Bearer ${mesh.cp.token}` },
        });
        expect(bytes.status, `${module} ${code}`).toBe(200);
        expect(sha256(new Uint8Array(await bytes.arrayBuffer()))).toBe(code);
      }
    }
    // The agent's sidecar loads module files, the direct one gets the code inline.
    const dump = (node: string) =>
      inspect([node, "--type", "extensions", "-o", "json"]).then(
        (text) => JSON.parse(text) as { wasm: { filter: string; delivery: string; codeSha256: string }[] },
      );
    const [agent, inline] = await Promise.all([dump(CLIENT), dump(DIRECT)]);
    expect(agent.wasm.map((w) => w.delivery)).toEqual(agent.wasm.map(() => "file"));
    expect(inline.wasm.map((w) => w.delivery)).toEqual(inline.wasm.map(() => "inline"));
    expect(inline.wasm.map((w) => w.codeSha256).sort()).toEqual(agent.wasm.map((w) => w.codeSha256).sort());
    const yaml = await inspect([DIRECT, "--type", "extensions", "-o", "yaml"]);
    expect(yaml).toMatch(/inline_bytes: <\d+ bytes, sha256 [0-9a-f]{64}>/);
  });

  it("a changed split reaches every proxy: describe route shows which have it, inspect the new weights", async () => {
    const revision = await mesh.split(70, 30);
    await mesh.synced(revision, [CLIENT, "reviews-v1", "reviews-v2", DIRECT]);
    const described = await wasmesh(["describe", "route", "reviews"], { api: mesh.cp.api });
    expect(described.code, described.stderr).toBe(0);
    expect(described.stdout).toContain(`Proxies (acknowledged revision ${revision} or later: 4 of 4):`);
    expect(described.stdout).toContain("reviews{version=v2} 30% → reviews-v2");
    for (const node of [CLIENT, "reviews-v1", "reviews-v2", DIRECT])
      expect(described.stdout).toMatch(new RegExp(`\\n {2}${node} +\\w+ +${revision} +yes\\n`));
    // The routing filter's configuration is what the sidecar now runs: 70/30.
    const yaml = await inspect([CLIENT, "--type", "extensions", "-o", "json"]);
    const config = (
      JSON.parse(yaml) as {
        types: {
          resources: {
            name: string;
            resource: { typed_config: { config: { configuration: { value: string } } } };
          }[];
        }[];
      }
    ).types[0]?.resources.find((r) => r.name === "wasmesh.outbound.routing")?.resource.typed_config.config
      .configuration.value;
    const routes = (
      JSON.parse(config ?? "{}") as {
        routes: { name: string; destinations: { cluster: string; weight?: number }[] }[];
      }
    ).routes;
    expect(routes.find((r) => r.name === "reviews/canary")?.destinations).toEqual([
      { cluster: "outbound|reviews|version=v1", weight: 70 },
      { cluster: "outbound|reviews|version=v2", weight: 30 },
    ]);
    const status = await waitForStatus(mesh.cp.api, (p) => p.length === 4);
    expect(status.every((p) => Number(p.syncedVersion) >= revision)).toBe(true);
  });
});
