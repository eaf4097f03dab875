// Issue 13's proof for Kuma and Consul, as imports-proof.test.ts is Istio's: their documented
// examples (Kuma's canary TrafficRoute, CircuitBreaker, Mesh and TrafficPermission; Consul's
// intentions tutorial and traffic-splitting canary) applied unchanged with `wasmesh apply -f` to
// `wasmesh server` (a process), and the result observed through real Envoy sidecars run by
// `wasmesh dataplane run`: split counts, the circuit opening after the configured consecutive
// errors, permissions left unenforced without mTLS and enforced with it, allow and deny between named
// services. One mesh for the file; each step starts from the state the one before left, and the
// Kuma originals are deleted before Consul's are applied (one Route per service).
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CanaryMesh, startCanaryMesh } from "../support/canary-mesh.ts";
import { REPO_ROOT } from "../support/envoy.ts";
import { sendHttp } from "../support/mesh-envoy.ts";

const FIXTURES = join(REPO_ROOT, "test", "fixtures", "imports");
const KUMA = join(FIXTURES, "kuma");
const CONSUL = join(FIXTURES, "consul");
const CLIENT = "productpage-1";

let mesh: CanaryMesh;

/** `wasmesh apply -f FILE` and waits until every sidecar has what it made: stdout and stderr. */
async function applySynced(file: string): Promise<{ stdout: string; stderr: string }> {
  const result = await mesh.cli(["apply", "-f", file]);
  await mesh.synced();
  return result;
}

/** `wasmesh delete KIND NAME`: its stdout; throws on a non-zero exit. */
async function remove(kind: string, name: string): Promise<string> {
  return (await mesh.cli(["delete", kind, name])).stdout;
}

/** The names of the stored resources of a kind (its API path segment). */
async function names(plural: string): Promise<string[]> {
  const { body } = await mesh.cp.request("GET", `/v1/${plural}`);
  return (body as { items: { metadata: { name: string } }[] }).items.map((r) => r.metadata.name).sort();
}

async function get(path: string): Promise<unknown> {
  const { status, body } = await mesh.cp.request("GET", path);
  if (status !== 200) throw new Error(`GET ${path}: ${status} ${JSON.stringify(body)}`);
  return (body as { spec: unknown }).spec;
}

const send = (host: string, n: number) => mesh.send(CLIENT, host, n);

/** One request through productpage's sidecar: its status and what says why. */
async function call(host: string, path = "/") {
  const { outbound } = await mesh.agent(CLIENT).ports();
  const r = await sendHttp(outbound, { authority: host, path });
  return {
    status: r.status,
    upstream: r.headers.get("x-upstream"),
    denied: r.headers.get("x-wasmesh-denied"),
  };
}

beforeAll(async () => {
  mesh = await startCanaryMesh({ manifests: [join(FIXTURES, "bookinfo-services.yaml")] });
  await mesh.startAgents([
    { name: CLIENT, service: "productpage" },
    { name: "reviews-v1", service: "reviews", labels: { version: "v1" } },
    { name: "reviews-v2", service: "reviews", labels: { version: "v2" } },
    { name: "ratings-v1", service: "ratings", labels: { version: "v1" } },
  ]);
}, 120_000);

afterAll(async () => {
  await mesh?.close();
});

describe("Kuma's documented policies through real sidecars", () => {
  it("the canary TrafficRoute splits reviews 90/10 over the version tags", async () => {
    const { stdout, stderr } = await applySynced(join(KUMA, "traffic-route-reviews-canary.yaml"));
    expect(stdout.split("\n").filter((l) => l !== "")).toEqual([
      "route/reviews-canary created",
      "importedresource/trafficroute-reviews-canary created",
    ]);
    expect(stderr).toBe("");
    const split = await send("reviews", 400);
    expect(split.ok).toBe(400);
    // Smooth weighted round robin (one Envoy worker per sidecar): exactly 9 of every 10 to v1.
    expect(Object.fromEntries(split.byUpstream)).toEqual({ "reviews-v1": 360, "reviews-v2": 40 });
  });

  it("the CircuitBreaker opens after 3 consecutive errors; deleting it (circuitbreakers.kuma.io) closes it", async () => {
    const { stdout, stderr } = await applySynced(join(KUMA, "circuit-breaker-ratings.yaml"));
    expect(stdout).toContain("circuitbreaker/ratings-breaker created");
    expect(stdout).toContain("importedresource/circuitbreaker-ratings-breaker created");
    // As docs/imports.md says: the whole service's circuit opens, where Kuma only ejects hosts.
    expect(stderr).toContain("CircuitBreaker/ratings-breaker conf.detectors");
    expect(await get("/v1/circuitbreakers/ratings-breaker")).toMatchObject({
      service: "ratings",
      consecutiveErrors: 3,
    });
    const ratings = mesh.app("ratings-v1");
    ratings.setStatus(500);
    ratings.reset();
    try {
      const answers: { status: number; circuit: string | undefined }[] = [];
      const { outbound } = await mesh.agent(CLIENT).ports();
      for (let i = 0; i < 5; i++) {
        const r = await sendHttp(outbound, { authority: "ratings" });
        answers.push({ status: r.status, circuit: r.headers.get("x-wasmesh-circuit") });
      }
      expect(answers).toEqual([
        { status: 500, circuit: undefined },
        { status: 500, circuit: undefined },
        { status: 500, circuit: undefined },
        { status: 503, circuit: "open" },
        { status: 503, circuit: "open" },
      ]);
      // The open circuit answers in the caller's sidecar: ratings saw only the first three.
      expect(ratings.count).toBe(3);
    } finally {
      ratings.setStatus(200);
    }

    // `circuitbreaker` alone is the native kind: the group names Kuma's.
    // The original, then every change its delete made: the CircuitBreaker it produced.
    expect((await remove("circuitbreakers.kuma.io", "ratings-breaker")).trim().split("\n")).toEqual([
      "circuitbreaker.kuma.io/ratings-breaker deleted",
      "circuitbreaker/ratings-breaker deleted",
    ]);
    await mesh.synced();
    expect(await names("circuitbreakers")).toEqual([]);
    expect(await names("importedresources")).toEqual(["trafficroute-reviews-canary"]);
    const closed = await send("ratings", 5);
    expect(Object.fromEntries(closed.byUpstream)).toEqual({ "ratings-v1": 5 });
  });

  it("a Mesh without mTLS: the TrafficPermission is not carried (Kuma enforces none), calls are plain text", async () => {
    const { stdout, stderr } = await applySynced(join(KUMA, "mesh-without-mtls.yaml"));
    expect(stdout.split("\n").filter((l) => l !== "")).toEqual([
      "meshpolicy/default created",
      "importedresource/mesh-default created",
      "importedresource/trafficpermission-productpage-to-reviews created",
    ]);
    expect(stderr).toContain(
      "TrafficPermission/productpage-to-reviews sources: not carried: Kuma enforces traffic permissions only with mTLS on",
    );
    expect(await get("/v1/meshpolicies/default")).toEqual({
      defaultAccess: "allow",
      mtls: { mode: "disabled" },
    });
    expect(await names("accessrules")).toEqual([]);

    // productpage may call ratings, which no permission allows, as in Kuma without mTLS; and the
    // calls are plain text: reviews' app is told no client certificate.
    expect(await call("ratings")).toMatchObject({ status: 200, upstream: "ratings-v1" });
    const reviews = mesh.app("reviews-v1");
    reviews.reset();
    expect(await call("reviews", "/plain")).toMatchObject({ status: 200 });
    const seen = [...mesh.app("reviews-v1").requests, ...mesh.app("reviews-v2").requests].find(
      (r) => r.path === "/plain",
    );
    expect(seen).toBeDefined();
    expect(seen?.headers["x-forwarded-client-cert"]).toBeUndefined();
  });

  it("the same Mesh with builtin mTLS: the permission holds, productpage→reviews allowed, →ratings denied", async () => {
    const { stdout, stderr } = await applySynced(join(KUMA, "mesh-with-mtls.yaml"));
    // The kept TrafficPermission is converted again with the new Mesh: now it is enforced.
    expect(stdout).toContain("meshpolicy/default configured");
    expect(stdout).toContain("accessrule/productpage-to-reviews-productpage created");
    expect(stderr).toContain("Mesh/default mtls.enabledBackend: with mTLS on, Kuma denies every call");
    expect(await get("/v1/meshpolicies/default")).toEqual({
      defaultAccess: "deny",
      mtls: { mode: "strict" },
    });
    expect(await get("/v1/accessrules/productpage-to-reviews-productpage")).toEqual({
      source: "productpage",
      destination: "reviews",
      action: "allow",
    });

    mesh.app("reviews-v1").reset();
    mesh.app("reviews-v2").reset();
    const allowed = await send("reviews", 20);
    expect(allowed.ok).toBe(20);
    // Over mTLS now: reviews' app is told productpage's verified SPIFFE ID.
    const seen = [...mesh.app("reviews-v1").requests, ...mesh.app("reviews-v2").requests];
    expect(seen).toHaveLength(20);
    for (const r of seen)
      expect(r.headers["x-forwarded-client-cert"]).toMatch(
        /URI=spiffe:\/\/[^/;]+\/ns\/default\/sa\/productpage$/,
      );
    expect(await call("ratings")).toEqual({
      status: 403,
      upstream: undefined,
      denied: "default-deny:ratings",
    });
  });

  it("deleting the originals deletes what they produced: no Route, rule or policy is left", async () => {
    expect((await remove("trafficroute", "reviews-canary")).trim().split("\n")).toEqual([
      "trafficroute.kuma.io/reviews-canary deleted",
      "route/reviews-canary deleted",
    ]);
    await mesh.synced();
    expect(await names("routes")).toEqual([]);
    // The permission before the Mesh: without a Mesh in the input, a kept permission is carried
    // as written.
    await remove("trafficpermission", "productpage-to-reviews");
    await remove("mesh", "default");
    await mesh.synced();
    expect(await names("importedresources")).toEqual([]);
    expect(await names("accessrules")).toEqual([]);
    expect(await names("meshpolicies")).toEqual([]);
    const spread = await send("reviews", 40);
    expect(spread.ok).toBe(40);
    expect(Object.fromEntries(spread.byUpstream)).toEqual({ "reviews-v1": 20, "reviews-v2": 20 });
    expect(await call("ratings")).toMatchObject({ status: 200, upstream: "ratings-v1" });
  });
});

describe("Consul's intentions and traffic-splitting tutorials through real sidecars", () => {
  it("intentions: deny every call by default, allow productpage to reviews", async () => {
    const { stdout } = await applySynced(join(CONSUL, "intentions.yaml"));
    expect(stdout.split("\n").filter((l) => l !== "")).toEqual([
      "accessrule/reviews-productpage created",
      "meshpolicy/default created",
      "importedresource/serviceintentions-deny-all created",
      "importedresource/serviceintentions-reviews created",
    ]);
    expect(await get("/v1/meshpolicies/default")).toEqual({ defaultAccess: "deny" });

    const reviews = await send("reviews", 10);
    expect(reviews.ok).toBe(10);
    expect(await call("ratings")).toEqual({
      status: 403,
      upstream: undefined,
      denied: "default-deny:ratings",
    });
  });

  it("the resolver's subsets and the splitter's 90/10 canary of reviews", async () => {
    const { stdout } = await applySynced(join(CONSUL, "reviews-canary.yaml"));
    expect(stdout).toContain("route/reviews created");
    expect(stdout).toContain("importedresource/servicesplitter-reviews created");
    expect(stdout).toContain("importedresource/serviceresolver-reviews created");
    expect(stdout).toContain("importedresource/servicedefaults-reviews created");
    const split = await send("reviews", 400);
    expect(split.ok).toBe(400);
    expect(Object.fromEntries(split.byUpstream)).toEqual({ "reviews-v1": 360, "reviews-v2": 40 });
  });

  it("deleting the splitter leaves the resolver's Route: every call to its default subset, v1", async () => {
    // The kept resolver, converted again without the splitter, now makes the Route.
    expect((await remove("servicesplitter", "reviews")).trim().split("\n")).toEqual([
      "servicesplitter.consul.hashicorp.com/reviews deleted",
      "route/reviews configured",
      "importedresource/serviceresolver-reviews configured",
    ]);
    await mesh.synced();
    expect(await names("routes")).toEqual(["reviews"]);
    expect(await get("/v1/routes/reviews")).toEqual({
      service: "reviews",
      rules: [{ name: "default", destinations: [{ service: "reviews", subset: { version: "v1" } }] }],
    });
    const all = await send("reviews", 20);
    expect(Object.fromEntries(all.byUpstream)).toEqual({ "reviews-v1": 20 });
  });
});
