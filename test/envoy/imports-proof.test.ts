// Issue 13's proof for Istio: bookinfo's routing, traffic-shifting, timeout, fault-injection,
// circuit-breaking and authorization YAML, applied unchanged with `wasmesh apply -f` to `wasmesh
// server` (a process), and the result observed through real Envoy sidecars run by `wasmesh dataplane
// run`: which version answered, split counts, a 504 after the route's 4 s timeout, aborts by the
// caller's sidecar, the circuit opening after the configured consecutive errors, and the allow and
// deny between named services. One mesh for the file; each step starts from the state the one
// before left.
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CanaryMesh, startCanaryMesh } from "../support/canary-mesh.ts";
import { revisionOf, wasmesh } from "../support/control-plane.ts";
import { REPO_ROOT } from "../support/envoy.ts";
import { sendHttp } from "../support/mesh-envoy.ts";

const FIXTURES = join(REPO_ROOT, "test", "fixtures", "imports");
const ISTIO = join(FIXTURES, "istio");
const CLIENT = "productpage-1";

let mesh: CanaryMesh;

const apply = (file: string) => mesh.cli(["apply", "-f", file]);

/** Applies a file and waits until every sidecar has what it made. */
async function applySynced(file: string): Promise<string> {
  const { stdout } = await apply(file);
  await mesh.synced();
  return stdout;
}

const send = (host: string, n: number, headers: Record<string, string> = {}) =>
  mesh.send(CLIENT, host, n, headers);

beforeAll(async () => {
  mesh = await startCanaryMesh({ manifests: [join(FIXTURES, "bookinfo-services.yaml")] });
  await mesh.startAgents([
    { name: CLIENT, service: "productpage" },
    { name: "reviews-v1", service: "reviews", labels: { version: "v1" } },
    { name: "reviews-v2", service: "reviews", labels: { version: "v2" } },
    { name: "reviews-v3", service: "reviews", labels: { version: "v3" } },
    { name: "ratings-v1", service: "ratings", labels: { version: "v1" } },
  ]);
}, 120_000);

afterAll(async () => {
  await mesh?.close();
});

describe("Istio's bookinfo YAML through real sidecars", () => {
  it("request routing: jason's requests reach reviews v2, everyone else's v1", async () => {
    await apply(join(ISTIO, "destination-rule-all.yaml"));
    const out = await applySynced(join(ISTIO, "virtual-service-reviews-test-v2.yaml"));
    expect(out).toContain("route/reviews created");
    expect(out).toContain("importedresource/virtualservice-reviews created");

    const anyone = await send("reviews", 60);
    expect(anyone.ok).toBe(60);
    expect(Object.fromEntries(anyone.byUpstream)).toEqual({ "reviews-v1": 60 });
    const jason = await send("reviews", 30, { "end-user": "jason" });
    expect(jason.ok).toBe(30);
    expect(Object.fromEntries(jason.byUpstream)).toEqual({ "reviews-v2": 30 });
  });

  it("traffic shifting: 80/20 between v1 and v2, and the same file again changes and pushes nothing", async () => {
    const out = await applySynced(join(ISTIO, "virtual-service-reviews-80-20.yaml"));
    expect(out).toContain("route/reviews configured");
    const shifted = await send("reviews", 400);
    expect(shifted.ok).toBe(400);
    // Smooth weighted round robin (one Envoy worker per sidecar): exactly 4 of every 5 to v1.
    expect(Object.fromEntries(shifted.byUpstream)).toEqual({ "reviews-v1": 320, "reviews-v2": 80 });

    const revision = await revisionOf(mesh.cp.api);
    const again = await apply(join(ISTIO, "virtual-service-reviews-80-20.yaml"));
    expect(again.stdout.split("\n").filter((l) => l !== "")).toEqual([
      "route/reviews unchanged",
      "importedresource/virtualservice-reviews unchanged",
    ]);
    expect(await revisionOf(mesh.cp.api)).toBe(revision);
  });

  it("a 4 s route timeout answers 504 when ratings is slower, and 200 once it is not", async () => {
    await applySynced(join(ISTIO, "virtual-service-ratings-timeout.yaml"));
    const ratings = mesh.app("ratings-v1");
    ratings.setDelay(6_000);
    try {
      const slow = await send("ratings", 1);
      expect(Object.fromEntries(slow.statuses)).toEqual({ 504: 1 });
      expect(slow.byUpstream.get("ratings-v1")).toBeUndefined();
    } finally {
      ratings.setDelay(0);
    }
    const fast = await send("ratings", 5);
    expect(Object.fromEntries(fast.byUpstream)).toEqual({ "ratings-v1": 5 });
  });

  it("fault injection: jason's calls to ratings are aborted with 500 by the caller's sidecar, others pass", async () => {
    const out = await applySynced(join(ISTIO, "virtual-service-ratings-test-abort.yaml"));
    expect(out).toContain("route/ratings configured");
    const ratings = mesh.app("ratings-v1");
    ratings.reset();
    const jason = await send("ratings", 10, { "end-user": "jason" });
    expect(Object.fromEntries(jason.statuses)).toEqual({ 500: 10 });
    expect(ratings.count).toBe(0);
    const others = await send("ratings", 10);
    expect(Object.fromEntries(others.byUpstream)).toEqual({ "ratings-v1": 10 });
  });

  it("outlier detection: after 3 consecutive 5xx from ratings the circuit is open", async () => {
    const out = await applySynced(join(ISTIO, "destination-rule-ratings-outlier.yaml"));
    expect(out).toContain("circuitbreaker/ratings created");
    const ratings = mesh.app("ratings-v1");
    ratings.setStatus(500);
    ratings.reset();
    try {
      const { outbound } = await mesh.agent(CLIENT).ports();
      const answers: { status: number; circuit: string | undefined }[] = [];
      for (let i = 0; i < 5; i++) {
        const r = await sendHttp(outbound, { authority: "ratings" });
        answers.push({ status: r.status, circuit: r.headers.get("x-wasmesh-circuit") });
      }
      expect(answers.slice(0, 3)).toEqual([
        { status: 500, circuit: undefined },
        { status: 500, circuit: undefined },
        { status: 500, circuit: undefined },
      ]);
      expect(answers.slice(3)).toEqual([
        { status: 503, circuit: "open" },
        { status: 503, circuit: "open" },
      ]);
      // The open circuit answers in the caller's sidecar: ratings saw only the first three.
      expect(ratings.count).toBe(3);
    } finally {
      ratings.setStatus(200);
    }
  });

  it("authorization: reviews takes productpage's calls, ratings refuses them", async () => {
    const out = await applySynced(join(ISTIO, "authorization.yaml"));
    expect(out).toContain("accessrule/reviews-viewer-productpage created");
    expect(out).toContain("accessrule/reviews-viewer-any created");
    const reviews = await send("reviews", 10);
    expect(reviews.ok).toBe(10);
    const { outbound } = await mesh.agent(CLIENT).ports();
    const denied = await sendHttp(outbound, { authority: "ratings" });
    expect(denied.status).toBe(403);
    expect(denied.headers.get("x-wasmesh-denied")).toBe("ratings-deny-productpage-productpage");
  });

  it("deleting an original deletes what it produced: reviews goes back to every version", async () => {
    const deleted = await wasmesh(["delete", "virtualservice", "reviews"], { api: mesh.cp.api });
    expect(deleted.code, deleted.stderr).toBe(0);
    await mesh.synced();
    const routes = await mesh.cp.request("GET", "/v1/routes");
    expect(
      (routes.body as { items: { metadata: { name: string } }[] }).items.map((r) => r.metadata.name),
    ).toEqual(["ratings"]);
    const spread = await send("reviews", 90);
    expect(spread.ok).toBe(90);
    expect([...spread.byUpstream.keys()].sort()).toEqual(["reviews-v1", "reviews-v2", "reviews-v3"]);
  });
});
