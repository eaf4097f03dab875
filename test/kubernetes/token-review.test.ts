// Identity on Kubernetes (issue 12, §1; control-plane/kubernetes/token-review.ts) against the real
// API server: pods' service-account tokens minted with the TokenRequest API, bound to the Pod as a
// kubelet's projected tokens are (no kubelet runs, but the Pod object exists), verified with
// TokenReview. A pod's token is a dataplane principal of the service its label names, with its
// namespace and service account as identity; it opens the xDS streams of that service only (the
// seam: authenticateProxy), and through the HTTP API gets a certificate naming its service account.
// A token bound to no pod, one of a deleted pod, one for another audience and garbage are refused
// with a reason; wasmesh's own tokens keep working.
import * as k8s from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApi } from "../../control-plane/api/index.ts";
import type { ProxyIdentity } from "../../control-plane/envoy/index.ts";
import {
  type ServiceAccountTokenOptions,
  withServiceAccountTokens,
} from "../../control-plane/kubernetes/token-review.ts";
import { authenticateProxy } from "../../control-plane/security/proxy-auth.ts";
import { createTokens, type Tokens } from "../../control-plane/security/tokens.ts";
import { createMemoryStore } from "../../control-plane/store/index.ts";
import { type OpenedCa, openTestCa, uriSans, workloadRequest } from "../support/ca.ts";
import { type ApiServer, startApiServer } from "../support/kubernetes.ts";
import { until } from "../support/wait.ts";

let server: ApiServer;
let core: k8s.CoreV1Api;
let ns: string;
let ca: OpenedCa | undefined;

beforeAll(async () => {
  server = await startApiServer();
  core = server.kubeConfig.makeApiClient(k8s.CoreV1Api);
  // A namespace of its own: without a controller manager, deleted namespaces never go away.
  ns = `identity-${Math.random().toString(36).slice(2, 8)}`;
  await core.createNamespace({ body: { metadata: { name: ns } } });
  for (const name of ["bookinfo-reviews", "bookinfo-ratings", "unlabelled"])
    await core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name } } });
}, 120_000);

afterAll(async () => {
  await ca?.close();
  await server?.stop();
});

/** A Pod object (nothing runs it) of a service account, with these labels. */
async function pod(name: string, serviceAccount: string, labels: Record<string, string>): Promise<k8s.V1Pod> {
  return core.createNamespacedPod({
    namespace: ns,
    body: {
      metadata: { name, labels },
      spec: {
        serviceAccountName: serviceAccount,
        containers: [{ name: "app", image: "example.invalid/app" }],
      },
    },
  });
}

/** A service-account token from the TokenRequest API, bound to `boundTo` as a kubelet's projected one. */
async function mint(serviceAccount: string, boundTo?: k8s.V1Pod, audiences: string[] = []): Promise<string> {
  const request = await core.createNamespacedServiceAccountToken({
    namespace: ns,
    name: serviceAccount,
    body: {
      spec: {
        audiences,
        expirationSeconds: 3600,
        ...(boundTo
          ? {
              boundObjectRef: {
                apiVersion: "v1",
                kind: "Pod",
                name: boundTo.metadata?.name ?? "",
                uid: boundTo.metadata?.uid ?? "",
              },
            }
          : {}),
      },
    },
  });
  const token = request.status?.token;
  if (!token) throw new Error("TokenRequest returned no token");
  return token;
}

/** wasmesh's own tokens (over a memory store), taking service-account tokens too. */
function wrapped(options: Partial<ServiceAccountTokenOptions> = {}): {
  own: Tokens;
  tokens: Tokens;
  logs: string[];
} {
  const own = createTokens(createMemoryStore());
  const logs: string[] = [];
  const tokens = withServiceAccountTokens(own, {
    kubeConfig: server.kubeConfig,
    log: (line) => logs.push(line),
    ...options,
  });
  return { own, tokens, logs };
}

/** The identity an ADS stream's node claims. */
const node = (service: string): ProxyIdentity => ({
  nodeId: `${service}-sidecar`,
  service,
  labels: {},
  outboundPort: 15001,
  inboundPort: 15006,
  outboundAddress: "127.0.0.1",
  inboundAddress: "0.0.0.0",
  appAddress: "127.0.0.1",
  moduleDelivery: "local",
  sds: "agent",
});
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

describe("service-account tokens verified with TokenReview", () => {
  it("takes a pod's bound token as a dataplane principal of the pod's service, identified by its service account", async () => {
    const reviews = await pod("reviews-v1-7f9c", "bookinfo-reviews", {
      "wasmesh.io/service": "reviews",
      app: "something-else",
    });
    const { tokens } = wrapped();
    const token = await mint("bookinfo-reviews", reviews);
    const verdict = await tokens.verify(token);
    expect(verdict).toEqual({
      ok: true,
      principal: {
        tokenId: `k8s:${ns}/reviews-v1-7f9c`,
        role: "dataplane",
        service: "reviews",
        name: `pod ${ns}/reviews-v1-7f9c, service account bookinfo-reviews`,
        identity: { namespace: ns, serviceAccount: "bookinfo-reviews" },
      },
    });
    // The xDS seam: a stream of a reviews node is admitted.
    expect(await authenticateProxy(tokens, bearer(token), node("reviews"))).toEqual({
      ok: true,
      principal: `k8s:${ns}/reviews-v1-7f9c`,
    });
  });

  it("refuses another service's pod a stream of reviews (its service from app.kubernetes.io/name or app)", async () => {
    const ratings = await pod("ratings-v1-x2", "bookinfo-ratings", { app: "ratings" });
    const details = await pod("details-v1-x3", "bookinfo-ratings", {
      "app.kubernetes.io/name": "details",
      app: "not-this",
    });
    const { tokens } = wrapped();
    const ratingsToken = await mint("bookinfo-ratings", ratings);
    const refused = await authenticateProxy(tokens, bearer(ratingsToken), node("reviews"));
    expect(refused).toMatchObject({ ok: false, code: "permission_denied" });
    expect(refused.ok === false && refused.message).toContain(
      `token k8s:${ns}/ratings-v1-x2 is a dataplane token of service 'ratings'`,
    );
    expect(await authenticateProxy(tokens, bearer(ratingsToken), node("ratings"))).toMatchObject({
      ok: true,
    });
    const detailsVerdict = await tokens.verify(await mint("bookinfo-ratings", details));
    expect(detailsVerdict.ok && detailsVerdict.principal.service).toBe("details");
  });

  it("refuses a token bound to no pod, a pod that names no service, and garbage, with a reason", async () => {
    const { tokens } = wrapped();
    const unbound = await tokens.verify(await mint("bookinfo-reviews"));
    expect(unbound).toEqual({
      ok: false,
      reason: expect.stringContaining(`service account ${ns}/bookinfo-reviews's token is bound to no pod`),
    });
    const stream = await authenticateProxy(tokens, bearer(await mint("bookinfo-reviews")), node("reviews"));
    expect(stream).toMatchObject({ ok: false, code: "unauthenticated" });

    const bare = await pod("bare-1", "unlabelled", { tier: "backend" });
    const unlabelled = await tokens.verify(await mint("unlabelled", bare));
    expect(unlabelled.ok === false && unlabelled.reason).toContain(
      `pod ${ns}/bare-1 names no service: it has none of the labels that name its service (wasmesh.io/service, app.kubernetes.io/name, app)`,
    );
    const badLabel = await pod("bad-label-1", "unlabelled", { "wasmesh.io/service": "Reviews_v1" });
    const bad = await tokens.verify(await mint("unlabelled", badLabel));
    expect(bad.ok === false && bad.reason).toContain(
      'label wasmesh.io/service="Reviews_v1" is not a service name',
    );

    const elsewhere = await pod("elsewhere-1", "unlabelled", { "wasmesh.io/service": "reviews.bookinfo" });
    const foreign = await tokens.verify(await mint("unlabelled", elsewhere));
    expect(foreign.ok === false && foreign.reason).toContain(
      `label wasmesh.io/service="reviews.bookinfo" names a service of another namespace than its own (${ns})`,
    );

    for (const garbage of ["garbage", "wsm_short", "x".repeat(5000)]) {
      const verdict = await tokens.verify(garbage);
      expect(verdict.ok).toBe(false);
    }
    // JWT-shaped but signed by no one the API server trusts: its TokenReview says no.
    const forged = await tokens.verify(
      `${Buffer.from('{"alg":"RS256"}').toString("base64url")}.${Buffer.from('{"sub":"x"}').toString("base64url")}.c2ln`,
    );
    expect(forged.ok === false && forged.reason).toContain(
      "the Kubernetes API server did not authenticate it",
    );
  });

  it("keeps wasmesh's own tokens working, and never sends them for review", async () => {
    const { own, tokens } = wrapped();
    const admin = await own.issue({ role: "admin" });
    const verdict = await tokens.verify(admin.secret);
    expect(verdict).toEqual({ ok: true, principal: { tokenId: admin.token.id, role: "admin" } });
    expect(await authenticateProxy(tokens, bearer(admin.secret), node("reviews"))).toMatchObject({
      ok: true,
    });
    const dataplane = await own.issue({ role: "dataplane", service: "ratings" });
    expect(await authenticateProxy(tokens, bearer(dataplane.secret), node("ratings"))).toMatchObject({
      ok: true,
    });
    expect((await tokens.list()).map((t) => t.id).sort()).toEqual(
      [admin.token.id, dataplane.token.id].sort(),
    );
    await tokens.revoke(admin.token.id);
    const revoked = await tokens.verify(admin.secret);
    expect(revoked.ok === false && revoked.reason).toContain("was revoked");

    // With an API server that cannot be reached, wasmesh's tokens are still taken.
    const unreachable = new k8s.KubeConfig();
    unreachable.loadFromOptions({
      clusters: [{ name: "gone", server: "https://127.0.0.1:1", skipTLSVerify: true }],
      users: [{ name: "u", token: "t" }],
      contexts: [{ name: "gone", cluster: "gone", user: "u" }],
      currentContext: "gone",
    });
    const logs: string[] = [];
    const offline = withServiceAccountTokens(own, { kubeConfig: unreachable, log: (l) => logs.push(l) });
    expect((await offline.verify(dataplane.secret)).ok).toBe(true);
    expect(logs).toEqual([]);
    // ...and a service-account token is refused saying why, and logged.
    const reviewsPod = await core.readNamespacedPod({ namespace: ns, name: "reviews-v1-7f9c" });
    const failed = await offline.verify(await mint("bookinfo-reviews", reviewsPod));
    expect(failed.ok === false && failed.reason).toContain(
      "the Kubernetes API server could not review the token",
    );
    expect(logs.join("\n")).toContain("kubernetes: a TokenReview failed");
  });

  it("refuses a deleted pod's token once its cached verdict ends (never past the token's expiry)", async () => {
    let clock = Date.now();
    const { tokens } = wrapped({ cacheSeconds: 60, now: () => new Date(clock) });
    const doomed = await pod("reviews-v2-gone", "bookinfo-reviews", { "wasmesh.io/service": "reviews" });
    const token = await mint("bookinfo-reviews", doomed);
    expect((await tokens.verify(token)).ok).toBe(true);
    await core.deleteNamespacedPod({ namespace: ns, name: "reviews-v2-gone", gracePeriodSeconds: 0 });

    // Within the minute, the verdict is reused: no TokenReview, so the deletion is not seen yet.
    clock += 30_000;
    expect((await tokens.verify(token)).ok).toBe(true);
    clock += 31_000;
    // The API server keeps authenticating a token it has just authenticated for 10 s (its token
    // cache), deleted pod or not: the verifier's own read of the pod finds it gone at once.
    const refused = await tokens.verify(token);
    expect(refused).toEqual({
      ok: false,
      reason: `pod ${ns}/reviews-v2-gone the token was bound to no longer exists`,
    });
    // Then TokenReview itself says no (the token is invalidated with its pod).
    const fresh = wrapped().tokens;
    let last = "";
    await until(
      () => `TokenReview to refuse a deleted pod's token (last: ${last})`,
      async () => {
        const verdict = await fresh.verify(token);
        last = verdict.ok ? "authenticated" : verdict.reason;
        return last.includes("the Kubernetes API server did not authenticate it");
      },
      60_000,
      500,
    );
    expect(last).toContain("invalidated");

    // A pod recreated under the name is another pod (another uid): its predecessor's token is
    // refused, also while the API server's token cache still vouches for it (reviewed just before).
    const first = await pod("reviews-v2-again", "bookinfo-reviews", { "wasmesh.io/service": "reviews" });
    const firstToken = await mint("bookinfo-reviews", first);
    expect((await wrapped().tokens.verify(firstToken)).ok).toBe(true);
    await core.deleteNamespacedPod({ namespace: ns, name: "reviews-v2-again", gracePeriodSeconds: 0 });
    await pod("reviews-v2-again", "bookinfo-reviews", { "wasmesh.io/service": "reviews" });
    expect(await wrapped().tokens.verify(firstToken)).toEqual({
      ok: false,
      reason: `pod ${ns}/reviews-v2-again the token was bound to no longer exists`,
    });

    // A token that expires before the cache would end is reviewed again at its expiry.
    const short = await pod("reviews-v3-short", "bookinfo-reviews", { "wasmesh.io/service": "reviews" });
    const request = await core.createNamespacedServiceAccountToken({
      namespace: ns,
      name: "bookinfo-reviews",
      body: {
        spec: {
          audiences: [],
          expirationSeconds: 600,
          boundObjectRef: {
            apiVersion: "v1",
            kind: "Pod",
            name: "reviews-v3-short",
            uid: short.metadata?.uid ?? "",
          },
        },
      },
    });
    const shortToken = request.status?.token ?? "";
    clock = Date.now();
    const longCache = wrapped({ cacheSeconds: 3600, now: () => new Date(clock) });
    expect((await longCache.tokens.verify(shortToken)).ok).toBe(true);
    await core.deleteNamespacedPod({ namespace: ns, name: "reviews-v3-short", gracePeriodSeconds: 0 });
    clock += 300_000;
    expect((await longCache.tokens.verify(shortToken)).ok).toBe(true);
    clock += 301_000 + 10_000;
    expect((await longCache.tokens.verify(shortToken)).ok).toBe(false);
  });

  it("names the service within the pod's namespace when told, or when the label does", async () => {
    const qualified = await pod("reviews-v5-q", "bookinfo-reviews", {
      "wasmesh.io/service": `reviews.${ns}`,
    });
    const bare = await core.readNamespacedPod({ namespace: ns, name: "reviews-v1-7f9c" });
    const plain = wrapped().tokens;
    const namespaced = wrapped({ namespacedServices: true }).tokens;
    const service = async (tokens: Tokens, of: k8s.V1Pod) => {
      const verdict = await tokens.verify(await mint(of.spec?.serviceAccountName ?? "", of));
      return verdict.ok ? verdict.principal.service : verdict.reason;
    };
    expect(await service(plain, bare)).toBe("reviews");
    expect(await service(namespaced, bare)).toBe(`reviews.${ns}`);
    expect(await service(plain, qualified)).toBe(`reviews.${ns}`);
    expect(await service(namespaced, qualified)).toBe(`reviews.${ns}`);
  });

  it("asks the API server once per token while its verdict is cached, also for calls at the same time", async () => {
    // The admin's kubeconfig, counting the requests it signs.
    const requests: string[] = [];
    class Counting extends k8s.KubeConfig {
      override async applySecurityAuthentication(context: k8s.RequestContext): Promise<void> {
        requests.push(`${context.getHttpMethod()} ${new URL(context.getUrl()).pathname}`);
        return super.applySecurityAuthentication(context);
      }
    }
    const counting = new Counting();
    counting.loadFromString(server.kubeConfig.exportConfig());
    const { tokens } = wrapped({ kubeConfig: counting });
    const reviews = await core.readNamespacedPod({ namespace: ns, name: "reviews-v1-7f9c" });
    const token = await mint("bookinfo-reviews", reviews);
    const verdicts = await Promise.all([tokens.verify(token), tokens.verify(token), tokens.verify(token)]);
    expect(verdicts.map((v) => v.ok)).toEqual([true, true, true]);
    expect(await tokens.verify(token)).toEqual(verdicts[0]);
    expect(requests).toEqual([
      "POST /apis/authentication.k8s.io/v1/tokenreviews",
      `GET /api/v1/namespaces/${ns}/pods/reviews-v1-7f9c`,
    ]);
  });

  it("keeps at most cacheEntries verdicts, the oldest going first", async () => {
    const clock = Date.now();
    const { tokens } = wrapped({ cacheEntries: 1, cacheSeconds: 3600, now: () => new Date(clock) });
    const older = await pod("reviews-v4-a", "bookinfo-reviews", { "wasmesh.io/service": "reviews" });
    const newer = await pod("reviews-v4-b", "bookinfo-reviews", { "wasmesh.io/service": "reviews" });
    const [olderToken, newerToken] = [
      await mint("bookinfo-reviews", older),
      await mint("bookinfo-reviews", newer),
    ];
    expect((await tokens.verify(olderToken)).ok).toBe(true);
    expect((await tokens.verify(newerToken)).ok).toBe(true);
    for (const name of ["reviews-v4-a", "reviews-v4-b"])
      await core.deleteNamespacedPod({ namespace: ns, name, gracePeriodSeconds: 0 });
    // The newer verdict is still cached (no review: its deletion not seen); the older one went.
    expect((await tokens.verify(newerToken)).ok).toBe(true);
    expect((await tokens.verify(olderToken)).ok).toBe(false);
  });

  it("reviews a token for the configured audiences only", async () => {
    const reviews = await core.readNamespacedPod({ namespace: ns, name: "reviews-v1-7f9c" });
    const forWasmesh = await mint("bookinfo-reviews", reviews, ["wasmesh"]);
    const forApiServer = await mint("bookinfo-reviews", reviews);
    const { tokens } = wrapped({ audiences: ["wasmesh"] });
    expect((await tokens.verify(forWasmesh)).ok).toBe(true);
    const other = await tokens.verify(forApiServer);
    expect(other.ok === false && other.reason).toContain("the Kubernetes API server did not authenticate it");
    // Without audiences, the API server's own: a token for wasmesh is not one of those.
    expect((await wrapped().tokens.verify(forWasmesh)).ok).toBe(false);
  });

  it("gives a pod's token, through the HTTP API, its service's routes and a certificate naming its service account", async () => {
    ca = await openTestCa();
    const own = createTokens(ca.store);
    const tokens = withServiceAccountTokens(own, { kubeConfig: server.kubeConfig, log: () => {} });
    const app = createApi({ store: ca.store, auth: { tokens }, ca: ca.ca, log: () => {} });
    const reviews = await core.readNamespacedPod({ namespace: ns, name: "reviews-v1-7f9c" });
    const token = await mint("bookinfo-reviews", reviews);
    const call = (method: string, path: string, secret: string, body?: unknown) =>
      app.request(`http://127.0.0.1${path}`, {
        method,
        headers: {
          host: "127.0.0.1",
          authorization: `Bearer ${secret}`,
          ...(body === undefined ? {} : { "content-type": "application/json" }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });

    const { csr } = await workloadRequest(`spiffe://wasmesh.local/ns/default/sa/reviews`);
    const issued = await call("POST", "/v1/certificates", token, { csr });
    expect(issued.status).toBe(200);
    const body = (await issued.json()) as { spiffeId: string; certificateChain: string };
    const expected = `spiffe://wasmesh.local/ns/${ns}/sa/bookinfo-reviews`;
    expect(body.spiffeId).toBe(expected);
    expect(uriSans(body.certificateChain)).toEqual([expected]);
    // Another service's certificate is not its to get; nor is anything but an agent's routes.
    expect((await call("POST", "/v1/certificates?service=ratings", token, { csr })).status).toBe(403);
    expect((await call("GET", "/v1/services", token)).status).toBe(403);

    // Its service's Workloads it registers; another service's it cannot.
    const admin = await own.issue({ role: "admin" });
    for (const name of ["reviews", "ratings"])
      expect(
        (
          await call("POST", "/v1/services", admin.secret, {
            apiVersion: "wasmesh.io/v1alpha1",
            kind: "Service",
            metadata: { name },
            spec: { ports: [{ name: "http", port: 9080, protocol: "http" }] },
          })
        ).status,
      ).toBe(201);
    const workload = (service: string) => ({
      apiVersion: "wasmesh.io/v1alpha1",
      kind: "Workload",
      metadata: { name: `${service}-7f9c` },
      spec: { service, address: "10.0.1.11", port: 9080 },
    });
    expect((await call("PUT", "/v1/workloads/reviews-7f9c", token, workload("reviews"))).status).toBe(201);
    expect((await call("PUT", "/v1/workloads/ratings-7f9c", token, workload("ratings"))).status).toBe(403);
    // A garbage bearer is a 401 that says what a token is.
    const garbage = await call("GET", "/v1/workloads", "not-a-token");
    expect(garbage.status).toBe(401);
    expect(await garbage.text()).toContain("nor a Kubernetes service-account token");
  });
});
