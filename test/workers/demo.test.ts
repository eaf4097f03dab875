// The edge worker against the demo's mesh, run as workers/README.md says: `wrangler dev` in
// workers/ with CONFIG_URL pointed at a real control plane (`wasmesh server`) that holds
// deploy/demo/mesh.yaml, whose Workloads are local upstreams standing in for reviews v1, v2 and
// ratings, as `./dev demo` does. The edge sees that mesh: reviews split 90/10, no 503.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DemoUpstreams, demoMeshYaml, startDemoUpstreams } from "../../scripts/demo-mesh.ts";
import {
  apiFetch,
  type ControlPlaneProcess,
  startControlPlaneProcess,
  wasmesh,
} from "../support/control-plane.ts";
import { until } from "../support/wait.ts";
import { startWranglerDev, type WranglerDev } from "./harness.ts";

let upstreams: DemoUpstreams;
let cp: ControlPlaneProcess;
let edge: WranglerDev;

beforeAll(async () => {
  upstreams = await startDemoUpstreams();
  cp = await startControlPlaneProcess();
  const applied = await apiFetch(`${cp.api}/v1/apply`, {
    method: "POST",
    headers: { "content-type": "application/yaml" },
    body: demoMeshYaml(upstreams),
  });
  expect(applied.status, await applied.text()).toBe(200);
  // The worker's token, as workers/README.md says: a read-only one.
  const token = await wasmesh(["token", "create", "--role", "read-only", "--name", "edge"], { api: cp.api });
  expect(token.code, token.stderr).toBe(0);
  edge = await startWranglerDev({
    CONFIG_URL: `${cp.api}/v1/edge/config`,
    WASMESH_TOKEN: token.stdout.trim(),
    EDGE_NAME: "edge-demo",
    // Polls often enough that the control plane sees it serve the current version within the test.
    CONFIG_REFRESH_MS: "500",
  });
});

afterAll(async () => {
  await edge?.close();
  await cp?.stop();
  await upstreams?.close();
});

describe("wrangler dev against the demo's mesh", () => {
  it("splits reviews 90/10 as the demo's Route says, every request answered by an upstream", async () => {
    const { v1, v2 } = upstreams;
    v1.reset();
    v2.reset();
    const requests = 200;
    const statuses: Record<number, number> = {};
    for (let i = 0; i < requests; i++) {
      const response = await edge.send({ path: "/reviews/1", authority: "reviews" });
      statuses[response.status] = (statuses[response.status] ?? 0) + 1;
    }
    expect(statuses, edge.output()).toEqual({ 200: requests });
    expect(v1.count + v2.count).toBe(requests);
    // 10% ± 3 points. One isolate's smooth weighted round-robin is exact (180/20); the margin
    // still refuses any split 5 points or more away from 90/10 (85/15 gives 30, 95/5 gives 10).
    expect(v2.count, `v1 ${v1.count}, v2 ${v2.count}`).toBeGreaterThanOrEqual(14);
    expect(v2.count, `v1 ${v1.count}, v2 ${v2.count}`).toBeLessThanOrEqual(26);
  });

  it("sends testers to v2, and serves ratings (productpage's deny rule is not the edge's)", async () => {
    const tester = await edge.send({
      path: "/reviews/1",
      authority: "reviews",
      headers: { "x-user": "tester" },
    });
    expect(tester.status).toBe(200);
    expect(tester.headers.get("x-upstream")).toBe("reviews-v2");
    const ratings = await edge.send({ path: "/ratings/1", authority: "ratings" });
    expect(ratings.status).toBe(200);
    expect(ratings.headers.get("x-upstream")).toBe("ratings");
  });

  it("is listed by GET /v1/status under its EDGE_NAME, serving the current version", async () => {
    interface Edge {
      name: string;
      servingVersion: string | null;
      currentVersion: string;
      current: boolean;
      lastRejection?: unknown;
    }
    let edges: Edge[] = [];
    // Polls are made by requests (one per interval at most): keep sending until one with the
    // version it serves has been made.
    await until(
      "the edge listed as current",
      async () => {
        await edge.send({ path: "/reviews/1", authority: "reviews" });
        edges = ((await (await apiFetch(`${cp.api}/v1/status`)).json()) as { edges: Edge[] }).edges;
        return edges.some((e) => e.name === "edge-demo" && e.current);
      },
      30_000,
      200,
    ).catch((error: unknown) => {
      throw new Error(`${String(error)}; edges: ${JSON.stringify(edges)}\n${edge.output()}`);
    });
    const listed = edges.find((e) => e.name === "edge-demo");
    expect(listed?.servingVersion).toBe(listed?.currentVersion);
    expect(listed?.lastRejection).toBeUndefined();
    // `wasmesh status` lists it under the proxies: its name, the version it serves, current.
    const status = await wasmesh(["status"], { api: cp.api });
    expect(status.code, status.stderr).toBe(0);
    const row = status.stdout.split("\n").find((line) => line.startsWith("edge-demo "));
    expect(row?.split(/\s+/).slice(0, 3)).toEqual(["edge-demo", listed?.servingVersion?.slice(0, 12), "yes"]);
  });
});
