// The demo's mesh, shared by the demo (scripts/demo.ts) and the edge worker's test against it
// (test/workers/demo.test.ts): deploy/demo/mesh.yaml, plus Workloads for the local upstreams that
// play reviews v1, reviews v2 and ratings (their ports are only known once they listen).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT } from "../test/support/envoy.ts";
import { startUpstream, type Upstream } from "../test/support/upstreams.ts";

export const DEMO_MESH_FILE = join(REPO_ROOT, "deploy", "demo", "mesh.yaml");

export interface DemoUpstreams {
  /** reviews v1 (answers `x-upstream: reviews-v1`), reviews v2, ratings. */
  v1: Upstream;
  v2: Upstream;
  ratings: Upstream;
  close(): Promise<void>;
}

export async function startDemoUpstreams(): Promise<DemoUpstreams> {
  const [v1, v2, ratings] = await Promise.all(
    ["reviews-v1", "reviews-v2", "ratings"].map((name) => startUpstream({ name })),
  );
  if (!v1 || !v2 || !ratings) throw new Error("the demo's upstreams did not start");
  return {
    v1,
    v2,
    ratings,
    close: async () => {
      await Promise.all([v1.close(), v2.close(), ratings.close()]);
    },
  };
}

/** The mesh file's documents and the upstreams' Workloads, as one multi-document YAML for /v1/apply. */
export function demoMeshYaml(upstreams: DemoUpstreams, meshFile = DEMO_MESH_FILE): string {
  const workloads = [
    { name: "reviews-v1-1", service: "reviews", upstream: upstreams.v1, labels: { version: "v1" } },
    { name: "reviews-v2-1", service: "reviews", upstream: upstreams.v2, labels: { version: "v2" } },
    { name: "ratings-1", service: "ratings", upstream: upstreams.ratings, labels: {} },
  ].map(({ name, service, upstream, labels }) => ({
    apiVersion: "wasmesh.io/v1alpha1",
    kind: "Workload",
    metadata: { name },
    spec: { service, address: "127.0.0.1", port: upstream.port, labels },
  }));
  return [readFileSync(meshFile, "utf8"), ...workloads.map((w) => JSON.stringify(w))].join("\n---\n");
}

interface RouteDestination {
  service: string;
  subset?: Record<string, string>;
  weight?: number;
}

/**
 * The weighted split of Route `name` as the store holds it: its first rule without a match (the
 * one everyone else gets), e.g. "rule canary: version=v1 90, version=v2 10".
 */
export async function routeSplit(api: string, token: string, name: string): Promise<string> {
  const response = await fetch(`${api}/v1/routes/${encodeURIComponent(name)}`, {
    headers: { authorization: `Bearer ${token}` },
  });
  if (!response.ok) throw new Error(`GET /v1/routes/${name}: ${response.status} ${await response.text()}`);
  const route = (await response.json()) as {
    spec: { rules: { name?: string; match?: unknown; destinations: RouteDestination[] }[] };
  };
  const rule = route.spec.rules.find((r) => r.match === undefined);
  if (!rule) return "no rule without a match";
  const destinations = rule.destinations.map((d) => {
    const subset = Object.entries(d.subset ?? {}).map(([k, v]) => `${k}=${v}`);
    return `${subset.length > 0 ? subset.join(",") : d.service} ${d.weight ?? 100}`;
  });
  return `rule ${rule.name ?? "(unnamed)"}: ${destinations.join(", ")}`;
}
