// What the tests of the control plane's Kubernetes mode share on top of a private API server
// (kubernetes.ts): wasmesh's CRDs installed and served, and a fresh namespace per test (without a
// controller manager, deleted namespaces never go away, so names are never reused).
import * as k8s from "@kubernetes/client-node";
import { crds, crdsYaml, resourceOf } from "../../control-plane/kubernetes/crds.ts";
import type { Kind } from "../../control-plane/resources/index.ts";
import {
  type ControlPlane,
  type ControlPlaneOptions,
  type KubernetesModeOptions,
  startControlPlane,
} from "../../control-plane/server.ts";
import { freePort } from "./envoy.ts";
import type { ApiServer } from "./kubernetes.ts";
import { tempDir } from "./temp.ts";
import { until } from "./wait.ts";

/** Creates every wasmesh CRD and resolves once each is Established and its endpoint answers. */
export async function installCrds(server: ApiServer): Promise<void> {
  const extensions = server.kubeConfig.makeApiClient(k8s.ApiextensionsV1Api);
  const custom = server.kubeConfig.makeApiClient(k8s.CustomObjectsApi);
  // Through the client's own reading of the manifest: its model spells some fields differently
  // (enum is _enum, x-kubernetes-preserve-unknown-fields x_kubernetes_…), and a plain object would
  // lose them unseen (a plugin's configuration then pruned to {}).
  for (const body of k8s.loadAllYaml(crdsYaml()) as k8s.V1CustomResourceDefinition[]) {
    await extensions.createCustomResourceDefinition({ body });
  }
  for (const crd of crds()) {
    await until(
      `${crd.metadata.name} to be Established`,
      async () => {
        const read = await extensions.readCustomResourceDefinition({ name: crd.metadata.name });
        return (read.status?.conditions ?? []).some((c) => c.type === "Established" && c.status === "True");
      },
      30_000,
      100,
    );
    const { group, version, plural } = resourceOf(crd.spec.names.kind as Kind);
    await until(`the ${plural} endpoint`, () =>
      custom.listClusterCustomObject({ group, version, plural }).then(
        () => true,
        () => false,
      ),
    );
  }
}

/** Creates a namespace with a fresh name (and these labels). */
export async function freshNamespace(
  server: ApiServer,
  prefix: string,
  labels: Record<string, string> = {},
): Promise<string> {
  const name = `${prefix}-${Math.random().toString(36).slice(2, 8)}`;
  await server.kubeConfig
    .makeApiClient(k8s.CoreV1Api)
    .createNamespace({ body: { metadata: { name, labels } } });
  return name;
}

/**
 * A control plane replica in Kubernetes mode over `namespace`, as `wasmesh server --kubernetes`
 * starts one: its webhooks on a port of their own on loopback, where the API server calls them by
 * URL (a cluster would use the Service), and short leader-election timings so that a handover takes
 * seconds. `options` adds to or replaces what the replica is started with.
 */
export async function startReplica(
  server: ApiServer,
  namespace: string,
  identity: string,
  options: Partial<Omit<ControlPlaneOptions, "kubernetes">> & {
    kubernetes?: Partial<Omit<KubernetesModeOptions, "kubeConfig" | "namespace" | "identity">>;
  } = {},
): Promise<ControlPlane> {
  const webhookPort = await freePort();
  const { kubernetes, ...rest } = options;
  return startControlPlane({
    dataDir: tempDir(`k8s-${identity}`),
    httpPort: 0,
    xdsPort: 0,
    log: () => undefined,
    ...rest,
    kubernetes: {
      kubeConfig: server.kubeConfig,
      namespace,
      identity,
      leaderElection: { leaseDurationSeconds: 4, renewDeadlineSeconds: 3, retryPeriodSeconds: 0.5 },
      webhooks: {
        port: webhookPort,
        address: "127.0.0.1",
        names: ["127.0.0.1"],
        target: { url: `https://127.0.0.1:${webhookPort}` },
      },
      ...kubernetes,
    },
  });
}
