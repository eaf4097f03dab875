// Issue 13's proof at the edge: the same Kuma canary TrafficRoute the sidecars follow
// (test/envoy/imports-kuma-consul-proof.test.ts), applied unchanged with `wasmesh apply -f` to a real
// `wasmesh server`, is served by the edge worker run as workers/README.md says (`wrangler dev` with
// CONFIG_URL pointed at the control plane); then Istio's 80/20 VirtualService in its place, and the
// edge follows. The native Services are bookinfo's; their Workloads are local upstreams standing in
// for reviews v1, v2 and ratings (as `./dev demo` does). The edge serves every service callers
// outside the mesh may call: with no AccessRule or MeshPolicy, all of them.
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DemoUpstreams, demoMeshYaml, startDemoUpstreams } from "../../scripts/demo-mesh.ts";
import {
  apiFetch,
  type ControlPlaneProcess,
  startControlPlaneProcess,
  wasmesh,
} from "../support/control-plane.ts";
import { REPO_ROOT } from "../support/envoy.ts";
import { until } from "../support/wait.ts";
import { startWranglerDev, type WranglerDev } from "./harness.ts";

const FIXTURES = join(REPO_ROOT, "test", "fixtures", "imports");
const KUMA_CANARY = join(FIXTURES, "kuma", "traffic-route-reviews-canary.yaml");
const ISTIO = join(FIXTURES, "istio");

let upstreams: DemoUpstreams;
let cp: ControlPlaneProcess;
let edge: WranglerDev;

async function cli(...args: string[]): Promise<string> {
  const result = await wasmesh(args, { api: cp.api });
  if (result.code !== 0) throw new Error(`wasmesh ${args.join(" ")}: exit ${result.code}: ${result.stderr}`);
  return result.stdout;
}

/**
 * Resolves once the edge serves the control plane's current edge configuration: its version is in
 * the worker's log ("serving configuration <version>"), the new configuration's plugin (and its
 * round-robin) starting afresh. Requests to ratings bring the refresh about.
 */
async function edgeFollows(): Promise<string> {
  const response = await apiFetch(`${cp.api}/v1/edge/config`);
  expect(response.status).toBe(200);
  const { version } = (await response.json()) as { version: string };
  await until(
    () => `the edge to serve configuration ${version}:\n${edge.output()}`,
    async () => {
      await edge.send({ path: "/ratings/1", authority: "ratings" });
      return edge.output().includes(`serving configuration ${version}`);
    },
    20_000,
    50,
  );
  return version;
}

/** `n` requests to reviews through the edge: the statuses, and how many each upstream answered. */
async function reviews(n: number): Promise<{ statuses: Record<number, number>; v1: number; v2: number }> {
  upstreams.v1.reset();
  upstreams.v2.reset();
  const statuses: Record<number, number> = {};
  for (let i = 0; i < n; i++) {
    const response = await edge.send({ path: "/reviews/1", authority: "reviews" });
    statuses[response.status] = (statuses[response.status] ?? 0) + 1;
  }
  return { statuses, v1: upstreams.v1.count, v2: upstreams.v2.count };
}

beforeAll(async () => {
  upstreams = await startDemoUpstreams();
  cp = await startControlPlaneProcess();
  // bookinfo's Services (no Route), and Workloads for the upstreams: reviews-v1-1 (version v1),
  // reviews-v2-1 (version v2), ratings-1.
  const applied = await apiFetch(`${cp.api}/v1/apply`, {
    method: "POST",
    headers: { "content-type": "application/yaml" },
    body: demoMeshYaml(upstreams, join(FIXTURES, "bookinfo-services.yaml")),
  });
  expect(applied.status, await applied.text()).toBe(200);
  const token = await wasmesh(["token", "create", "--role", "read-only", "--name", "edge"], { api: cp.api });
  expect(token.code, token.stderr).toBe(0);
  edge = await startWranglerDev({
    CONFIG_URL: `${cp.api}/v1/edge/config`,
    WASMESH_TOKEN: token.stdout.trim(),
    // The shortest refresh the worker takes: each change is served within a request or two.
    CONFIG_REFRESH_MS: "100",
  });
});

afterAll(async () => {
  await edge?.close();
  await cp?.stop();
  await upstreams?.close();
});

describe("other meshes' canary YAML served at the edge worker", () => {
  it("Kuma's canary TrafficRoute: the edge splits reviews 90/10, as the sidecars do", async () => {
    expect(await cli("apply", "-f", KUMA_CANARY)).toContain("route/reviews-canary created");
    await edgeFollows();
    const { statuses, v1, v2 } = await reviews(200);
    expect(statuses, edge.output()).toEqual({ 200: 200 });
    // One isolate, one plugin per configuration: smooth weighted round robin, exactly 9 of every 10.
    expect({ v1, v2 }).toEqual({ v1: 180, v2: 20 });
  });

  it("Istio's 80/20 VirtualService in its place: the edge follows", async () => {
    expect(await cli("delete", "trafficroute", "reviews-canary")).toContain("route/reviews-canary deleted");
    expect(await cli("apply", "-f", join(ISTIO, "destination-rule-all.yaml"))).toContain(
      "importedresource/destinationrule-reviews created",
    );
    expect(await cli("apply", "-f", join(ISTIO, "virtual-service-reviews-80-20.yaml"))).toContain(
      "route/reviews created",
    );
    const routes = await apiFetch(`${cp.api}/v1/routes`);
    expect(
      ((await routes.json()) as { items: { metadata: { name: string } }[] }).items.map(
        (r) => r.metadata.name,
      ),
    ).toEqual(["reviews"]);
    await edgeFollows();
    const { statuses, v1, v2 } = await reviews(200);
    expect(statuses, edge.output()).toEqual({ 200: 200 });
    expect({ v1, v2 }).toEqual({ v1: 160, v2: 40 });
  });
});
