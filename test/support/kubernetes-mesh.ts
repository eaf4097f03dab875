// What the tests of the control plane's Kubernetes mode share on top of a private API server
// (kubernetes.ts): wasmesh's CRDs installed and served, and a fresh namespace per test (without a
// controller manager, deleted namespaces never go away, so names are never reused).
import * as k8s from "@kubernetes/client-node";
import { crds, resourceOf } from "../../control-plane/kubernetes/crds.ts";
import type { Kind } from "../../control-plane/resources/index.ts";
import type { ApiServer } from "./kubernetes.ts";
import { until } from "./wait.ts";

/** Creates every wasmesh CRD and resolves once each is Established and its endpoint answers. */
export async function installCrds(server: ApiServer): Promise<void> {
  const extensions = server.kubeConfig.makeApiClient(k8s.ApiextensionsV1Api);
  const custom = server.kubeConfig.makeApiClient(k8s.CustomObjectsApi);
  for (const crd of crds()) {
    // The generated object is the manifest; the client's model type differs only in spelling.
    await extensions.createCustomResourceDefinition({
      body: crd as unknown as k8s.V1CustomResourceDefinition,
    });
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
