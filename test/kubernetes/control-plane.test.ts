// The control plane in Kubernetes mode (`wasmesh server --kubernetes`, issue 12 §1) against a real
// API server: two replicas over one namespace. The HTTP API writes custom objects and reads what
// `kubectl apply` wrote; the validating webhook refuses what the API would refuse, with the field
// path; module bytes pushed to one replica are served by the other; one replica leads, and when it
// goes the other takes over with nothing lost.
import { readFileSync } from "node:fs";
import * as k8s from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { resourceOf } from "../../control-plane/kubernetes/crds.ts";
import type { ControlPlane } from "../../control-plane/server.ts";
import { RELEASE_WASM } from "../support/artifacts.ts";
import { authorizedFetch } from "../support/control-plane.ts";
import { type ApiServer, startApiServer } from "../support/kubernetes.ts";
import { freshNamespace, installCrds, startReplica } from "../support/kubernetes-mesh.ts";
import { until } from "../support/wait.ts";

let server: ApiServer;
let custom: k8s.CustomObjectsApi;
let namespace: string;
const planes: ControlPlane[] = [];
let first: ControlPlane;
let second: ControlPlane;
let token: string;

async function replica(identity: string): Promise<ControlPlane> {
  const plane = await startReplica(server, namespace, identity);
  planes.push(plane);
  return plane;
}

const api = (plane: ControlPlane) => `http://127.0.0.1:${plane.httpPort}`;
const call = (plane: ControlPlane, path: string, init: RequestInit = {}) =>
  authorizedFetch(token)(`${api(plane)}${path}`, init);

const MESH = `
apiVersion: wasmesh.io/v1alpha1
kind: Service
metadata: { name: reviews }
spec: { ports: [{ name: http, port: 9080, protocol: http }] }
---
apiVersion: wasmesh.io/v1alpha1
kind: Service
metadata: { name: productpage }
spec: { ports: [{ name: http, port: 9080, protocol: http }] }
`;

const route = (weights: [number, number]) => ({
  apiVersion: "wasmesh.io/v1alpha1",
  kind: "Route",
  metadata: { name: "reviews-canary", namespace },
  spec: {
    service: "reviews",
    rules: [
      {
        name: "split",
        destinations: [
          { service: "reviews", subset: { version: "v1" }, weight: weights[0] },
          { service: "reviews", subset: { version: "v2" }, weight: weights[1] },
        ],
      },
    ],
  },
});

/** What `kubectl create` of a custom object answers: "created" or the API server's message. */
async function kubectlCreate(body: Record<string, unknown>, inNamespace = namespace): Promise<string> {
  const { group, version, plural } = resourceOf(body.kind as "Route");
  try {
    await custom.createNamespacedCustomObject({ group, version, plural, namespace: inNamespace, body });
    return "created";
  } catch (error) {
    const text = String((error as { body?: unknown }).body);
    try {
      return String((JSON.parse(text) as { message?: string }).message);
    } catch {
      return text;
    }
  }
}

beforeAll(async () => {
  server = await startApiServer();
  custom = server.kubeConfig.makeApiClient(k8s.CustomObjectsApi);
  await installCrds(server);
  namespace = await freshNamespace(server, "wasmesh-system");
  first = await replica("replica-a");
  second = await replica("replica-b");
  // Both replicas share the admin token the first one made (Secret wasmesh-admin-token).
  token = readFileSync(first.adminTokenFile, "utf8").trim();
  expect(readFileSync(second.adminTokenFile, "utf8").trim()).toBe(token);
  await until(
    "a leader, and the webhook registered",
    async () => {
      if (!planes.some((p) => p.leader?.isLeader())) return false;
      const hooks = await server.kubeConfig
        .makeApiClient(k8s.AdmissionregistrationV1Api)
        .listValidatingWebhookConfiguration();
      return hooks.items.some((h) => h.metadata?.name === "wasmesh-validation");
    },
    30_000,
  );
}, 180_000);

afterAll(async () => {
  for (const plane of planes) await plane.close();
  await server?.stop();
});

describe("the control plane in Kubernetes mode", () => {
  it("writes through the API as custom objects, which the other replica serves", async () => {
    const applied = await call(first, "/v1/apply", {
      method: "POST",
      headers: { "content-type": "application/yaml" },
      body: MESH,
    });
    expect(applied.status, await applied.clone().text()).toBe(200);
    const listed = (await custom.listNamespacedCustomObject({
      group: "wasmesh.io",
      version: "v1alpha1",
      namespace,
      plural: "services",
    })) as { items: { metadata: { name: string } }[] };
    expect(listed.items.map((i) => i.metadata.name).sort()).toEqual(["productpage", "reviews"]);
    await until("the second replica to serve them", async () => {
      const response = await call(second, "/v1/services");
      const body = (await response.json()) as { items: { metadata: { name: string } }[] };
      return body.items.length === 2;
    });
  });

  it("takes kubectl's writes, and its webhook refuses what the API refuses, naming the field", async () => {
    expect(await kubectlCreate(route([90, 10]))).toBe("created");
    await until("both replicas to serve the Route", async () =>
      (await Promise.all([first, second].map((p) => call(p, "/v1/routes/reviews-canary")))).every(
        (r) => r.status === 200,
      ),
    );

    // Weights that do not add up to 100: no structural schema can say so; the webhook does.
    const bad = { ...route([90, 20]), metadata: { name: "bad-weights", namespace } };
    const refused = await kubectlCreate(bad);
    expect(refused).toContain('admission webhook "validate.wasmesh.io" denied the request');
    expect(refused).toMatch(/spec\.rules\[0\]\.destinations/);
    expect(refused).toMatch(/100/);

    // A reference to a service that does not exist, over the whole mesh.
    const dangling = {
      ...route([50, 50]),
      metadata: { name: "dangling", namespace },
      spec: { ...route([50, 50]).spec, service: "ratings" },
    };
    expect(await kubectlCreate(dangling)).toMatch(/denied the request.*ratings/);

    // Deleting a Service a Route sends to is refused too.
    const { group, version } = resourceOf("Service");
    await expect(
      custom.deleteNamespacedCustomObject({ group, version, namespace, plural: "services", name: "reviews" }),
    ).rejects.toThrow(/still referenced/);

    // A wasmesh resource outside the control plane's namespace would never take effect.
    const elsewhere = await freshNamespace(server, "elsewhere");
    expect(
      await kubectlCreate({ ...route([90, 10]), metadata: { name: "x", namespace: elsewhere } }, elsewhere),
    ).toMatch(new RegExp(`live in namespace ${namespace}`));
    // Nothing refused was stored.
    const routes = (await custom.listNamespacedCustomObject({
      group,
      version,
      namespace,
      plural: "routes",
    })) as { items: { metadata: { name: string } }[] };
    expect(routes.items.map((i) => i.metadata.name)).toEqual(["reviews-canary"]);
  });

  it("keeps module bytes in the cluster: pushed to one replica, served by the other", async () => {
    const wasm = new Uint8Array(readFileSync(RELEASE_WASM));
    const pushed = await call(first, "/v1/modules/tagger", {
      method: "POST",
      headers: { "content-type": "application/wasm" },
      body: wasm,
    });
    expect(pushed.status, await pushed.clone().text()).toBe(201);
    const { sha256 } = ((await pushed.json()) as { spec: { sha256: string } }).spec;
    const maps = await server.kubeConfig
      .makeApiClient(k8s.CoreV1Api)
      .listNamespacedConfigMap({ namespace, labelSelector: "wasmesh.io/module-bytes=true" });
    expect(maps.items.map((m) => m.metadata?.name)).toContain(`wasmesh-module-${sha256}`);
    const served = await call(second, `/v1/modules/tagger/${sha256}.wasm`);
    expect(served.status).toBe(200);
    expect(new Uint8Array(await served.arrayBuffer())).toEqual(wasm);

    // A WasmModule written by hand must name bytes the registry holds.
    const stored = (await (await call(second, "/v1/wasmmodules/tagger")).json()) as { spec: object };
    const forged = {
      apiVersion: "wasmesh.io/v1alpha1",
      kind: "WasmModule",
      metadata: { name: "forged", namespace },
      spec: { ...stored.spec, sha256: "0".repeat(64) },
    };
    expect(await kubectlCreate(forged)).toMatch(/denied the request.*spec\.sha256/);
  });

  it("serves the cluster's Services and Pods as the mesh's, read-only, for kubectl'd Routes to use", async () => {
    const app = await freshNamespace(server, "bookinfo", { "wasmesh.io/sidecar-injection": "enabled" });
    const core = server.kubeConfig.makeApiClient(k8s.CoreV1Api);
    await core.createNamespacedService({
      namespace: app,
      body: {
        metadata: { name: "reviews" },
        spec: { selector: { app: "reviews" }, ports: [{ name: "http", port: 9080 }] },
      },
    });
    for (const version of ["v1", "v2"])
      await core.createNamespacedPod({
        namespace: app,
        body: {
          metadata: { name: `reviews-${version}`, labels: { app: "reviews", version } },
          spec: { containers: [{ name: "app", image: "reviews:1" }] },
        },
      });
    await server.kubeConfig.makeApiClient(k8s.DiscoveryV1Api).createNamespacedEndpointSlice({
      namespace: app,
      body: {
        metadata: { name: "reviews-1", labels: { "kubernetes.io/service-name": "reviews" } },
        addressType: "IPv4",
        ports: [{ name: "http", port: 9080, protocol: "TCP" }],
        endpoints: ["v1", "v2"].map((version, i) => ({
          addresses: [`10.1.0.${11 + i}`],
          conditions: { ready: true },
          targetRef: { kind: "Pod", name: `reviews-${version}`, namespace: app },
        })),
      },
    });
    const service = `reviews.${app}`;
    for (const plane of [first, second])
      await until(`replica ${plane.httpPort} to serve ${service}'s two workloads`, async () => {
        const listed = (await (await call(plane, "/v1/workloads")).json()) as {
          items: { spec: { service: string; labels?: Record<string, string> } }[];
        };
        const versions = listed.items
          .filter((w) => w.spec.service === service)
          .map((w) => w.spec.labels?.version);
        return versions.sort().join() === "v1,v2";
      });
    expect((await call(first, `/v1/services/${service}`)).status).toBe(200);

    // Written over, it is refused: the Kubernetes Service is where it changes.
    const overwrite = await call(first, "/v1/apply", {
      method: "POST",
      headers: { "content-type": "application/yaml" },
      body: `apiVersion: wasmesh.io/v1alpha1\nkind: Service\nmetadata: { name: ${service} }\nspec: { ports: [{ name: http, port: 1, protocol: http }] }\n`,
    });
    expect(overwrite.status).toBe(400);
    expect(await overwrite.text()).toContain(`the Kubernetes Service ${app}/reviews`);

    // A Route over the discovered service and its pods' versions, applied with kubectl.
    const canary = route([90, 10]);
    const split = {
      ...canary,
      metadata: { name: "bookinfo-reviews", namespace },
      spec: {
        service,
        rules: canary.spec.rules.map((rule) => ({
          ...rule,
          destinations: rule.destinations.map((d) => ({ ...d, service })),
        })),
      },
    };
    expect(await kubectlCreate(split)).toBe("created");
  });

  it("hands the lead over when the leader goes, and the mesh stays whole", async () => {
    const leader = planes.find((p) => p.leader?.isLeader());
    const other = planes.find((p) => p !== leader);
    if (leader === undefined || other === undefined) throw new Error("no leader");
    await leader.close();
    await until("the other replica to lead", () => other.leader?.isLeader() === true, 20_000);
    // Here each replica's webhook has a URL of its own (in a cluster one Service fronts them all):
    // the new leader points the registration at its own.
    await until("the registration to name the new leader's webhook", async () => {
      const hook = await server.kubeConfig
        .makeApiClient(k8s.AdmissionregistrationV1Api)
        .readValidatingWebhookConfiguration({ name: "wasmesh-validation" });
      return hook.webhooks?.[0]?.clientConfig.url?.includes(`:${other.webhookPort}/`) === true;
    });
    const services = (await (await call(other, "/v1/services")).json()) as {
      items: { metadata: { name: string } }[];
    };
    expect(services.items.map((s) => s.metadata.name)).toEqual(
      expect.arrayContaining(["productpage", "reviews", expect.stringMatching(/^reviews\.bookinfo-/)]),
    );
    // Writes go on through the remaining replica (and its webhook).
    expect(await kubectlCreate({ ...route([100, 0]), metadata: { name: "after-handover", namespace } })).toBe(
      "created",
    );
  });
});
