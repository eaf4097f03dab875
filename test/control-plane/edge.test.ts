// The edge configuration (translateEdge): the example mesh's filter and origins, the access
// semantics of traffic from outside the mesh, purity and a version that is a content hash (also
// across processes), schema validity, clusters without Workloads (listed with no origins: a per-request
// 503 at the edge, never a missing configuration), and the filter part run through
// the real build/mesh.wasm in the TypeScript host (a 90/10 split onto clusters that have origins).
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  parseManifests,
  type Resource,
  RULE_HEADER,
  validateResource,
} from "../../control-plane/resources/index.ts";
import { EDGE_SOURCE, translateEdge } from "../../control-plane/translate/edge.ts";
import { routingFilterConfig } from "../../control-plane/translate/index.ts";
import { indexMesh } from "../../control-plane/translate/mesh.ts";
import { validateEdgeConfig } from "../../schema/edge-config.ts";
import { MeshUnderTest } from "../support/mesh-host.ts";

const API = "wasmesh.io/v1alpha1";
const EXAMPLE_URL = new URL("../../deploy/examples/mesh.yaml", import.meta.url);
const EXAMPLE = readFileSync(EXAMPLE_URL, "utf8");

function example(): Resource[] {
  const parsed = parseManifests(EXAMPLE);
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
  return parsed.resources;
}

function resource(kind: string, name: string, spec: unknown): Resource {
  const result = validateResource({ apiVersion: API, kind, metadata: { name }, spec });
  if (!result.ok) throw new Error(`${kind}/${name}: ${JSON.stringify(result.errors)}`);
  return result.resource;
}

const accessRule = (name: string, source: string, destination: string, action: "allow" | "deny") =>
  resource("AccessRule", name, { source, destination, action });

/** The example, with the edge let in to reviews (the example's MeshPolicy denies by default). */
const exampleOpenToEdge = () => [...example(), accessRule("edge-to-reviews", "*", "reviews", "allow")];

const service = (name: string) =>
  resource("Service", name, { ports: [{ name: "http", port: 8080, protocol: "http" }] });
const workload = (name: string, svc: string, address: string, port = 8080, labels?: Record<string, string>) =>
  resource("Workload", name, { service: svc, address, port, ...(labels ? { labels } : {}) });

describe("translateEdge on the example mesh", () => {
  const config = translateEdge(example());

  it("is the routing filter's configuration for a source outside the mesh", () => {
    // One implementation: exactly what a sidecar's generator builds, for the "*" source.
    expect(config.filter).toEqual(routingFilterConfig(indexMesh(example()), EDGE_SOURCE));
    expect(config.filter.routes?.map((r) => r.name)).toEqual([
      "productpage:default",
      "reviews/testers",
      "reviews/canary",
      "reviews:default",
    ]);
    expect(config.filter.routes?.find((r) => r.name === "reviews/canary")).toMatchObject({
      match: { headers: [{ name: RULE_HEADER, exact: "reviews/canary" }] },
      destinations: [
        { cluster: "outbound|reviews|version=v1", weight: 90 },
        { cluster: "outbound|reviews|version=v2", weight: 10 },
      ],
      sticky: { header: "x-user" },
      timeoutMs: 2000,
    });
    expect(config.filter.breakers).toEqual([
      expect.objectContaining({
        cluster: "outbound|reviews|version=v2",
        fallback: "outbound|reviews|version=v1",
      }),
    ]);
    // MeshPolicy/default denies, and the only AccessRule names productpage as its source: the edge
    // is not productpage, so both services are denied to it.
    expect(config.filter.headerRules?.filter((r) => r.deny).map((r) => r.name)).toEqual([
      "default-deny:productpage",
      "default-deny:reviews",
    ]);
  });

  it("maps every cluster the filter can choose to its Workloads' base URLs", () => {
    expect(config.origins).toEqual({
      "outbound|productpage": ["http://productpage-0.bookinfo.svc.cluster.local:9080"],
      "outbound|reviews": ["http://10.0.1.11:9080", "http://10.0.1.12:9080"],
      "outbound|reviews|version=v1": ["http://10.0.1.11:9080"],
      "outbound|reviews|version=v2": ["http://10.0.1.12:9080"],
    });
  });

  it("passes the schema the worker applies", () => {
    const checked = validateEdgeConfig(config);
    expect(checked.ok ? [] : checked.errors).toEqual([]);
    expect(validateEdgeConfig(translateEdge([])).ok).toBe(true);
  });

  it("is an empty configuration for an empty mesh", () => {
    const empty = translateEdge([]);
    expect(empty).toEqual({ version: expect.stringMatching(/^[0-9a-f]{64}$/), filter: {}, origins: {} });
  });
});

describe("access from outside the mesh", () => {
  const denials = (resources: Resource[]) =>
    (translateEdge(resources).filter.headerRules ?? []).filter((r) => r.deny).map((r) => r.name);

  it("applies AccessRules whose source is '*', and MeshPolicy/default otherwise", () => {
    expect(denials(exampleOpenToEdge())).toEqual(["default-deny:productpage"]);
    const withoutPolicy = example().filter((r) => r.kind !== "MeshPolicy");
    expect(denials(withoutPolicy)).toEqual([]);
    expect(denials([...withoutPolicy, accessRule("no-edge", "*", "productpage", "deny")])).toEqual([
      "no-edge",
    ]);
  });

  it("ignores rules that name a source service, whether they allow or deny", () => {
    const withoutPolicy = example().filter((r) => r.kind !== "MeshPolicy");
    const denyFromReviews = accessRule("reviews-not-to-productpage", "reviews", "productpage", "deny");
    expect(denials([...withoutPolicy, denyFromReviews])).toEqual([]);
    // The example's productpage → reviews allow does not open reviews to the edge (see above).
    expect(denials(example())).toContain("default-deny:reviews");
  });

  it("lets a '*' deny win over a '*' allow, as for any source", () => {
    const both = [...exampleOpenToEdge(), accessRule("edge-not-to-reviews", "*", "reviews", "deny")];
    expect(denials(both)).toEqual(["default-deny:productpage", "edge-not-to-reviews"]);
  });
});

describe("purity and the version", () => {
  it("is a pure function of the resources, whatever their order", () => {
    const resources = exampleOpenToEdge();
    const before = structuredClone(resources);
    const a = translateEdge(resources);
    expect(resources).toEqual(before);
    expect(translateEdge([...resources].reverse())).toEqual(a);
    expect(translateEdge(resources)).toEqual(a);
  });

  it("versions the content: the sha256 of its canonical JSON, equal for equal configurations", () => {
    const config = translateEdge(example());
    const sortKeys = (_key: string, v: unknown) =>
      v !== null && typeof v === "object" && !Array.isArray(v)
        ? Object.fromEntries(Object.entries(v).sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0)))
        : v;
    const canonical = JSON.stringify({ filter: config.filter, origins: config.origins }, sortKeys);
    expect(config.version).toBe(createHash("sha256").update(canonical).digest("hex"));

    // A change the edge does not see (a Service's description, a WasmPlugin) keeps the version.
    const unseen = example().map((r) =>
      r.kind === "Service" && r.metadata.name === "reviews"
        ? resource("Service", "reviews", { ...r.spec, description: "changed" })
        : r,
    );
    expect(translateEdge(unseen.filter((r) => r.kind !== "WasmPlugin")).version).toBe(config.version);
    // A change of the split does not.
    const resplit = example().map((r) => (r.kind === "Route" ? withCanarySplit(r, 50, 50) : r));
    expect(translateEdge(resplit).version).not.toBe(config.version);
  });

  it("gives the same version in another process", () => {
    const script = `
      import { readFileSync } from "node:fs";
      import { parseManifests } from "./control-plane/resources/index.ts";
      import { translateEdge } from "./control-plane/translate/edge.ts";
      const parsed = parseManifests(readFileSync(${JSON.stringify(EXAMPLE_URL.pathname)}, "utf8"));
      process.stdout.write(translateEdge(parsed.resources).version);
    `;
    const version = execFileSync(process.execPath, ["--input-type=module", "-e", script], {
      cwd: new URL("../../", import.meta.url).pathname,
      encoding: "utf8",
    });
    expect(version).toBe(translateEdge(example()).version);
  });
});

describe("origins", () => {
  it("brackets IPv6, normalises and merges equal origins, and sorts them", () => {
    const config = translateEdge([
      service("api"),
      workload("api-1", "api", "2001:db8:0:0:0:0:0:1"),
      workload("api-2", "api", "10.0.0.2"),
      workload("api-3", "api", "API.Example.COM"),
      workload("api-4", "api", "2001:db8::1"),
      workload("api-5", "api", "10.0.0.3", 80),
    ]);
    expect(config.origins).toEqual({
      "outbound|api": [
        "http://10.0.0.2:8080",
        "http://10.0.0.3",
        "http://[2001:db8::1]:8080",
        "http://api.example.com:8080",
      ],
    });
    expect(validateEdgeConfig(config).ok).toBe(true);
  });

  it("leaves out clusters the filter cannot choose, and adds a breaker's fallback", () => {
    const resources = [
      service("api"),
      workload("api-v1", "api", "10.0.0.1", 8080, { version: "v1" }),
      workload("api-v2", "api", "10.0.0.2", 8080, { version: "v2" }),
      // A breaker on the v2 subset, falling back to v1: no route names either subset.
      resource("CircuitBreaker", "api-v2", {
        service: "api",
        subset: { version: "v2" },
        consecutiveErrors: 3,
        intervalMs: 1000,
        baseEjectionMs: 1000,
        fallback: { service: "api", subset: { version: "v1" } },
      }),
    ];
    const config = translateEdge(resources);
    expect(Object.keys(config.origins)).toEqual(["outbound|api", "outbound|api|version=v1"]);
  });

  it("lists a client-only service and a subset without Workloads with no origins, and stays valid", () => {
    const resources = [
      ...exampleOpenToEdge(),
      // A frontend that only calls others: a Service with no Workload, so its default route's
      // cluster selects nothing.
      service("frontend"),
      resource("Route", "productpage", {
        service: "productpage",
        rules: [{ name: "v9", destinations: [{ service: "productpage", subset: { version: "v9" } }] }],
      }),
    ];
    const config = translateEdge(resources);
    expect(validateEdgeConfig(config)).toEqual({ ok: true, config });
    expect(config.filter.routes?.map((r) => r.name)).toEqual(
      expect.arrayContaining(["frontend:default", "productpage/v9"]),
    );
    expect(config.origins).toEqual({
      "outbound|frontend": [],
      "outbound|productpage": ["http://productpage-0.bookinfo.svc.cluster.local:9080"],
      "outbound|productpage|version=v9": [],
      "outbound|reviews": ["http://10.0.1.11:9080", "http://10.0.1.12:9080"],
      "outbound|reviews|version=v1": ["http://10.0.1.11:9080"],
      "outbound|reviews|version=v2": ["http://10.0.1.12:9080"],
    });
    // Deploying the Workloads fills the lists in, with a new version.
    const deployed = translateEdge([...resources, workload("frontend-1", "frontend", "10.0.2.1")]);
    expect(deployed.origins["outbound|frontend"]).toEqual(["http://10.0.2.1:8080"]);
    expect(deployed.version).not.toBe(config.version);
  });

  it("is refused by the schema when a route's cluster is not listed at all (a misspelt name)", () => {
    const config = translateEdge(exampleOpenToEdge());
    const { "outbound|reviews|version=v2": _dropped, ...rest } = config.origins;
    const checked = validateEdgeConfig({ ...config, origins: rest });
    expect(checked.ok ? [] : checked.errors).toEqual([
      expect.objectContaining({
        path: expect.stringMatching(/^filter\.routes\[\d+\]\.destinations\[\d+\]\.cluster$/),
        message: expect.stringContaining("cluster 'outbound|reviews|version=v2' is not in origins"),
      }),
      expect.objectContaining({ message: expect.stringContaining("'outbound|reviews|version=v2'") }),
    ]);
  });
});

describe("the edge's filter configuration in the real filter (build/mesh.wasm)", () => {
  const config = translateEdge(exampleOpenToEdge());

  it("routes Host reviews 90/10 to the two subsets, each with an origin", async () => {
    const mesh = await MeshUnderTest.start(config.filter);
    const counts = new Map<string | null, number>();
    for (let i = 0; i < 1000; i++) {
      const decision = mesh.request({ authority: "reviews", path: "/reviews/1" });
      counts.set(decision.cluster, (counts.get(decision.cluster) ?? 0) + 1);
    }
    expect(Object.fromEntries(counts)).toEqual({
      "outbound|reviews|version=v1": 900,
      "outbound|reviews|version=v2": 100,
    });
    expect(config.origins["outbound|reviews|version=v1"]).toEqual(["http://10.0.1.11:9080"]);
    expect(config.origins["outbound|reviews|version=v2"]).toEqual(["http://10.0.1.12:9080"]);
  });

  it("denies what the edge may not call, with the rule's name", async () => {
    const mesh = await MeshUnderTest.start(config.filter);
    const denied = mesh.request({ authority: "productpage", path: "/" });
    expect(denied.status).toBe(403);
    expect(denied.cluster).toBeNull();
    expect(denied.responseHeaders.get("x-wasmesh-denied")).toBe("default-deny:productpage");
    // And the example's own configuration (no '*' rule) keeps the edge out of reviews too.
    const closed = await MeshUnderTest.start(translateEdge(example()).filter);
    expect(closed.request({ authority: "reviews", path: "/" }).responseHeaders.get("x-wasmesh-denied")).toBe(
      "default-deny:reviews",
    );
  });
});

function withCanarySplit(route: Resource, v1: number, v2: number): Resource {
  if (route.kind !== "Route") return route;
  const rules = route.spec.rules.map((rule) =>
    rule.name === "canary"
      ? {
          ...rule,
          destinations: [
            { service: "reviews", subset: { version: "v1" }, weight: v1 },
            { service: "reviews", subset: { version: "v2" }, weight: v2 },
          ],
        }
      : rule,
  );
  return resource("Route", route.metadata.name, { ...route.spec, rules });
}
