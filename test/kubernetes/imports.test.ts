// Other meshes' YAML on Kubernetes (issue 13; control-plane/kubernetes/imports.ts) against a real API
// server, with the real kubectl: the foreign kinds' CRDs (deploy/other-meshes/crds.yaml), one
// control plane replica in Kubernetes mode. Istio's bookinfo DestinationRule and VirtualService
// become a Route with the same weights, kept as ImportedResources of origin kubernetes; what wasmesh
// cannot carry is refused by the webhook naming the field, what it does not carry is a kubectl
// Warning; a DELETE that would break a kept original is refused naming it; kubectl delete removes
// what the object became; applying the same manifest again writes nothing; and an object nobody
// checked (the webhook away) is left out, with a Warning Event on it saying why.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as k8s from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { foreignCrds } from "../../control-plane/kubernetes/crds.ts";
import type { ControlPlane } from "../../control-plane/server.ts";
import { authorizedFetch, type CliResult, runCommand } from "../support/control-plane.ts";
import { REPO_ROOT } from "../support/envoy.ts";
import { type ApiServer, kubernetesBinary, startApiServer } from "../support/kubernetes.ts";
import { freshNamespace, installCrds, startReplica } from "../support/kubernetes-mesh.ts";
import { tempDir } from "../support/temp.ts";
import { until } from "../support/wait.ts";

let server: ApiServer;
let plane: ControlPlane;
let token: string;
let app: string;
let namespace: string;
let files: string;

// biome-ignore lint/suspicious/noExplicitAny: assertions navigate arbitrary JSON answers
type Json = any;

const kubectl = (args: string[]): Promise<CliResult> =>
  runCommand(kubernetesBinary("kubectl"), ["--kubeconfig", server.kubeconfigPath, ...args], {
    timeout: 60_000,
  });

/** kubectl apply -n <app> of YAML text (through a file, as users apply theirs). */
let written = 0;
async function apply(yaml: string): Promise<CliResult> {
  const file = join(files, `manifest-${written++}.yaml`);
  writeFileSync(file, yaml);
  return kubectl(["apply", "-n", app, "-f", file]);
}

async function get(path: string): Promise<{ status: number; body: Json }> {
  const response = await authorizedFetch(token)(`http://127.0.0.1:${plane.httpPort}${path}`);
  return { status: response.status, body: await response.json() };
}

const REVIEWS_RULE = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  subsets:
    - name: v1
      labels: {version: v1}
    - name: v2
      labels: {version: v2}
`;
const REVIEWS_SPLIT = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
    - route:
        - destination: {host: reviews, subset: v1}
          weight: 90
        - destination: {host: reviews, subset: v2}
          weight: 10
`;
const REDIRECT = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: ratings-redirect
spec:
  hosts: [ratings]
  http:
    - match: [{uri: {prefix: /old}}]
      redirect: {uri: /new}
`;
const MIRRORED = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: ratings
spec:
  hosts: [ratings]
  http:
    - route: [{destination: {host: ratings}}]
      mirror: {host: ratings}
`;

beforeAll(async () => {
  server = await startApiServer();
  await installCrds(server);
  // The foreign kinds' CRDs as an operator installs them: the committed file, with kubectl.
  const crds = await kubectl(["apply", "-f", join(REPO_ROOT, "deploy", "other-meshes", "crds.yaml")]);
  expect(crds.code, crds.stderr).toBe(0);
  const established = await kubectl([
    "wait",
    "--for=condition=Established",
    "--timeout=60s",
    ...foreignCrds().map((c) => `crd/${c.metadata.name}`),
  ]);
  expect(established.code, established.stderr).toBe(0);
  files = tempDir("k8s-imports");
  namespace = await freshNamespace(server, "wasmesh-system");
  app = await freshNamespace(server, "bookinfo");
  plane = await startReplica(server, namespace, "replica-a");
  token = readFileSync(plane.adminTokenFile, "utf8").trim();
  await until(
    "the leader, and both webhooks registered",
    async () => {
      if (plane.leader?.isLeader() !== true) return false;
      const hooks = await server.kubeConfig
        .makeApiClient(k8s.AdmissionregistrationV1Api)
        .listValidatingWebhookConfiguration();
      const names = hooks.items.flatMap((h) => (h.webhooks ?? []).map((w) => w.name));
      return names.includes("imports.wasmesh.io");
    },
    30_000,
  );
  // The services the originals name, as the mesh knows them (the namespace's short hosts).
  const services = await authorizedFetch(token)(`http://127.0.0.1:${plane.httpPort}/v1/apply`, {
    method: "POST",
    headers: { "content-type": "application/yaml" },
    body: ["reviews", "ratings"]
      .map(
        (s) =>
          `apiVersion: wasmesh.io/v1alpha1\nkind: Service\nmetadata: {name: ${s}.${app}}\nspec: {ports: [{name: http, port: 9080, protocol: http}]}\n`,
      )
      .join("---\n"),
  });
  expect(services.status, await services.clone().text()).toBe(200);
}, 180_000);

afterAll(async () => {
  await plane?.close();
  await server?.stop();
});

describe("kubectl apply of Istio's YAML in Kubernetes mode", () => {
  it("makes bookinfo's DestinationRule and VirtualService a Route with their weights, kept with origin kubernetes", async () => {
    const applied = await apply(`${REVIEWS_RULE}---\n${REVIEWS_SPLIT}`);
    expect(applied.code, applied.stderr).toBe(0);
    expect(applied.stdout).toContain("virtualservice.networking.istio.io/reviews created");
    const route = `reviews-${app}`;
    // What one pass writes, one object after another: the Route, then the originals kept.
    await until(
      "the Route and the kept originals",
      async () =>
        (await get(`/v1/routes/${route}`)).status === 200 &&
        (await get(`/v1/importedresources/virtualservice-reviews-${app}`)).status === 200 &&
        (await get(`/v1/importedresources/destinationrule-reviews-${app}`)).status === 200,
      20_000,
    );
    const { body } = await get(`/v1/routes/${route}`);
    expect(body.spec.service).toBe(`reviews.${app}`);
    expect(body.spec.rules[0].destinations).toEqual([
      { service: `reviews.${app}`, subset: { version: "v1" }, weight: 90 },
      { service: `reviews.${app}`, subset: { version: "v2" }, weight: 10 },
    ]);
    const kept = await get(`/v1/importedresources/virtualservice-reviews-${app}`);
    expect(kept.status).toBe(200);
    expect(kept.body.spec.origin).toBe("kubernetes");
    expect(kept.body.spec.source).toEqual({
      apiVersion: "networking.istio.io/v1",
      kind: "VirtualService",
      name: "reviews",
      namespace: app,
    });
    expect(kept.body.spec.produced).toEqual([{ kind: "Route", name: route }]);
    // What was applied, without what the API server added.
    expect(kept.body.spec.document.metadata).toEqual({ name: "reviews", namespace: app });
    const rule = await get(`/v1/importedresources/destinationrule-reviews-${app}`);
    expect(rule.body.spec.origin).toBe("kubernetes");
  });

  it("applying the same manifest again writes nothing to the store", async () => {
    const before = await plane.store.revision();
    const kept = (await get(`/v1/importedresources/virtualservice-reviews-${app}`)).body;
    const again = await apply(`${REVIEWS_RULE}---\n${REVIEWS_SPLIT}`);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain("virtualservice.networking.istio.io/reviews unchanged");
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(
      (await get(`/v1/importedresources/virtualservice-reviews-${app}`)).body.metadata.resourceVersion,
    ).toBe(kept.metadata.resourceVersion);
    expect(await plane.store.revision()).toBe(before);
  });

  it("refuses what wasmesh cannot carry, naming the field; nothing is stored", async () => {
    const refused = await apply(REDIRECT);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('admission webhook "imports.wasmesh.io" denied the request');
    expect(refused.stderr).toContain("spec.http[0].redirect");
    const listed = await kubectl(["get", "-n", app, "virtualservices", "-o", "name"]);
    expect(listed.stdout).not.toContain("ratings-redirect");
  });

  it("prints a Warning for a field it does not carry, and stores and converts the object", async () => {
    const warned = await apply(MIRRORED);
    expect(warned.code, warned.stderr).toBe(0);
    expect(warned.stderr).toMatch(/Warning: VirtualService ratings: spec\.http\[0\]\.mirror: /);
    await until(
      "the ratings Route and its kept original",
      async () =>
        (await get(`/v1/routes/ratings-${app}`)).status === 200 &&
        (await get(`/v1/importedresources/virtualservice-ratings-${app}`)).status === 200,
      20_000,
    );
    const kept = (await get(`/v1/importedresources/virtualservice-ratings-${app}`)).body;
    expect(kept.spec.warnings).toEqual([expect.stringMatching(/spec\.http\[0\]\.mirror/)]);
  });

  it("refuses deleting a DestinationRule whose subsets a kept VirtualService uses, naming it", async () => {
    const refused = await kubectl(["delete", "-n", app, "destinationrule", "reviews"]);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('admission webhook "imports.wasmesh.io" denied the request');
    expect(refused.stderr).toMatch(
      /VirtualService reviews: spec\.http\[0\]\.route\[\d\]\.destination\.subset/,
    );
    expect((await kubectl(["get", "-n", app, "destinationrule", "reviews"])).code).toBe(0);
  });

  it("kubectl delete of the VirtualService deletes the Route it became", async () => {
    const deleted = await kubectl(["delete", "-n", app, "virtualservice", "reviews"]);
    expect(deleted.code, deleted.stderr).toBe(0);
    await until(
      "the Route and the kept VirtualService to go",
      async () =>
        (await get(`/v1/routes/reviews-${app}`)).status === 404 &&
        (await get(`/v1/importedresources/virtualservice-reviews-${app}`)).status === 404,
      20_000,
    );
    // A kept original is not deleted on its own: its object is.
    const alone = await kubectl([
      "delete",
      "-n",
      namespace,
      "importedresource",
      `destinationrule-reviews-${app}`,
    ]);
    expect(alone.code).not.toBe(0);
    expect(alone.stderr).toContain("is deleted with its original");
    // The DestinationRule is still kept.
    expect((await get(`/v1/importedresources/destinationrule-reviews-${app}`)).status).toBe(200);
  });

  it("kubectl delete -f of a VirtualService and its DestinationRule, faster than the store follows, is taken", async () => {
    const again = await apply(REVIEWS_SPLIT);
    expect(again.code, again.stderr).toBe(0);
    await until(
      "the kept VirtualService",
      async () => (await get(`/v1/importedresources/virtualservice-reviews-${app}`)).status === 200,
      20_000,
    );
    // The VirtualService first: when the DestinationRule's DELETE is checked, the store may still
    // keep the VirtualService; the cluster no longer has it.
    const file = join(files, "reviews-reverse.yaml");
    writeFileSync(file, `${REVIEWS_SPLIT}---\n${REVIEWS_RULE}`);
    const deleted = await kubectl(["delete", "-n", app, "-f", file]);
    expect(deleted.code, deleted.stderr).toBe(0);
    await until(
      "both kept originals and the Route to go",
      async () =>
        (await get(`/v1/importedresources/virtualservice-reviews-${app}`)).status === 404 &&
        (await get(`/v1/importedresources/destinationrule-reviews-${app}`)).status === 404 &&
        (await get(`/v1/routes/reviews-${app}`)).status === 404,
      20_000,
    );
  });

  it("an object nobody checked (the webhook away) is left out, with a Warning Event on it saying why", async () => {
    // Without the registration, as while no replica answers (failure policy Ignore).
    const removed = await kubectl(["delete", "validatingwebhookconfiguration", "wasmesh-validation"]);
    expect(removed.code, removed.stderr).toBe(0);
    const stored = await apply(REDIRECT);
    expect(stored.code, stored.stderr).toBe(0);
    await until(
      "a Warning Event on the VirtualService",
      () => warned("ratings-redirect", "NotConverted", "spec.http[0].redirect"),
      20_000,
    );
    expect((await get(`/v1/importedresources/virtualservice-ratings-redirect-${app}`)).status).toBe(404);
    // The rest is converted as before.
    expect((await get(`/v1/routes/ratings-${app}`)).status).toBe(200);

    // A DestinationRule deleted under a VirtualService that uses its subsets: what it made stays.
    const applied = await apply(`${REVIEWS_RULE}---\n${REVIEWS_SPLIT}`);
    expect(applied.code, applied.stderr).toBe(0);
    await until(
      "the reviews Route again",
      async () =>
        (await get(`/v1/routes/reviews-${app}`)).status === 200 &&
        (await get(`/v1/importedresources/destinationrule-reviews-${app}`)).status === 200,
      20_000,
    );
    const deleted = await kubectl(["delete", "-n", app, "destinationrule", "reviews"]);
    expect(deleted.code, deleted.stderr).toBe(0);
    await until(
      "a Warning Event on the deleted DestinationRule",
      () => warned("reviews", "RemovalRefused", "VirtualService reviews"),
      20_000,
    );
    expect((await get(`/v1/importedresources/destinationrule-reviews-${app}`)).status).toBe(200);
    expect((await get(`/v1/routes/reviews-${app}`)).body.spec.rules[0].destinations).toHaveLength(2);
  });
});

/** Whether the namespace has a Warning Event of `reason` on object `name` whose message says `text`. */
async function warned(name: string, reason: string, text: string): Promise<boolean> {
  const events = await kubectl([
    "get",
    "events",
    "-n",
    app,
    "--field-selector",
    `involvedObject.name=${name}`,
    "-o",
    "json",
  ]);
  const items = (JSON.parse(events.stdout || "{}") as { items?: Json[] }).items ?? [];
  return items.some((e) => e.type === "Warning" && e.reason === reason && e.message.includes(text));
}
