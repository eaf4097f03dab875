// The private Kubernetes API server the Kubernetes tests run against (test/support/kubernetes.ts):
// real etcd and kube-apiserver, built from the Go module proxy by scripts/install-kubernetes.sh,
// driven with @kubernetes/client-node as the control plane's Kubernetes mode will be. It checks the
// parts issue 12 builds on: namespaces and core objects, RBAC refusing an identity it does not
// allow, and a CustomResourceDefinition that becomes Established and serves custom objects.
import * as k8s from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ApiServer, startApiServer } from "../support/kubernetes.ts";
import { until } from "../support/wait.ts";

let server: ApiServer;

beforeAll(async () => {
  server = await startApiServer();
}, 120_000);

afterAll(async () => {
  await server?.stop();
});

/** A namespace of its own per test: without a controller manager, deleted namespaces never go away. */
const namespace = (prefix: string) => `${prefix}-${Math.random().toString(36).slice(2, 8)}`;

describe("a private Kubernetes API server", () => {
  it("stores namespaces and ConfigMaps for the admin, and reads them back", async () => {
    const core = server.kubeConfig.makeApiClient(k8s.CoreV1Api);
    const name = namespace("wasmesh-test");
    await core.createNamespace({
      body: { metadata: { name, labels: { "wasmesh.io/sidecar-injection": "enabled" } } },
    });
    await core.createNamespacedConfigMap({
      namespace: name,
      body: { metadata: { name: "mesh" }, data: { split: "90/10" } },
    });
    const read = await core.readNamespacedConfigMap({ namespace: name, name: "mesh" });
    expect(read.data).toEqual({ split: "90/10" });
    const listed = await core.listNamespace({ labelSelector: "wasmesh.io/sidecar-injection=enabled" });
    expect(listed.items.map((n) => n.metadata?.name)).toContain(name);
  });

  it("refuses a request without a valid token (401) and an identity RBAC does not allow (403)", async () => {
    const anonymous = new k8s.KubeConfig();
    anonymous.loadFromOptions({
      clusters: [{ name: "test", server: server.url, skipTLSVerify: true }],
      users: [{ name: "nobody", token: "not-a-token" }],
      contexts: [{ name: "test", cluster: "test", user: "nobody" }],
      currentContext: "test",
    });
    const refused = await anonymous
      .makeApiClient(k8s.CoreV1Api)
      .listNamespace()
      .then(
        () => undefined,
        (error: { code?: number }) => error.code,
      );
    expect(refused).toBe(401);

    // An identity the admin impersonates, with no role bound: RBAC says no.
    const impersonated = new k8s.KubeConfig();
    impersonated.loadFromOptions({
      clusters: [{ name: "test", server: server.url, skipTLSVerify: true }],
      users: [{ name: "viewer", token: server.token, impersonateUser: "someone" }],
      contexts: [{ name: "test", cluster: "test", user: "viewer" }],
      currentContext: "test",
    });
    const forbidden = await impersonated
      .makeApiClient(k8s.CoreV1Api)
      .listNamespace()
      .then(
        () => undefined,
        (error: { code?: number }) => error.code,
      );
    expect(forbidden).toBe(403);
  });

  it("establishes a CustomResourceDefinition and serves its objects", async () => {
    const extensions = server.kubeConfig.makeApiClient(k8s.ApiextensionsV1Api);
    await extensions.createCustomResourceDefinition({
      body: {
        metadata: { name: "probes.test.wasmesh.io" },
        spec: {
          group: "test.wasmesh.io",
          scope: "Namespaced",
          names: { plural: "probes", singular: "probe", kind: "Probe" },
          versions: [
            {
              name: "v1alpha1",
              served: true,
              storage: true,
              schema: {
                openAPIV3Schema: {
                  type: "object",
                  properties: {
                    spec: {
                      type: "object",
                      properties: { weight: { type: "integer", minimum: 0, maximum: 100 } },
                    },
                  },
                },
              },
            },
          ],
        },
      },
    });
    await until(
      "the CRD to be Established",
      async () => {
        const crd = await extensions.readCustomResourceDefinition({ name: "probes.test.wasmesh.io" });
        return (crd.status?.conditions ?? []).some((c) => c.type === "Established" && c.status === "True");
      },
      30_000,
      100,
    );
    const core = server.kubeConfig.makeApiClient(k8s.CoreV1Api);
    const name = namespace("wasmesh-crd");
    await core.createNamespace({ body: { metadata: { name } } });
    const custom = server.kubeConfig.makeApiClient(k8s.CustomObjectsApi);
    const probe = { group: "test.wasmesh.io", version: "v1alpha1", namespace: name, plural: "probes" };
    // The API server serves a new CRD's endpoint a moment after Established.
    await until("the probes endpoint", async () =>
      custom.listNamespacedCustomObject(probe).then(
        () => true,
        () => false,
      ),
    );
    await custom.createNamespacedCustomObject({
      ...probe,
      body: {
        apiVersion: "test.wasmesh.io/v1alpha1",
        kind: "Probe",
        metadata: { name: "a" },
        spec: { weight: 90 },
      },
    });
    // The structural schema is enforced by the API server: a weight over 100 is refused, naming it.
    const refused = await custom
      .createNamespacedCustomObject({
        ...probe,
        body: {
          apiVersion: "test.wasmesh.io/v1alpha1",
          kind: "Probe",
          metadata: { name: "b" },
          spec: { weight: 101 },
        },
      })
      .then(
        () => "stored",
        (error: { code?: number; body?: unknown }) => `${error.code} ${String(error.body)}`,
      );
    expect(refused).toMatch(/^422 .*spec\.weight/);
    const listed = (await custom.listNamespacedCustomObject(probe)) as {
      items: { metadata: { name: string } }[];
    };
    expect(listed.items.map((i) => i.metadata.name)).toEqual(["a"]);
  });
});
