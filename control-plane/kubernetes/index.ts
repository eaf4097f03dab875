// The control plane's Kubernetes mode (issue 12): what server.ts wires when it runs with --kubernetes.
export { createValidatingAdmission } from "./admission.ts";
export { createConfigMapBlobStore } from "./blobs.ts";
export { createKubeClient, KubeApiError, type KubeClient } from "./client.ts";
export {
  crdOf,
  crds,
  crdsYaml,
  FOREIGN_KINDS,
  foreignCrds,
  foreignCrdsYaml,
  GROUP,
  resourceOf,
  VERSION,
} from "./crds.ts";
export { type DiscoveredMesh, discoverMesh } from "./derived.ts";
export { createImportAdmission, createImportReconciler, type ImportReconciler } from "./imports.ts";
export {
  createInjectionAdmission,
  type InjectionConfig,
  injectionPatch,
} from "./injection.ts";
export { type LeaderElection, type LeaderElectionOptions, startLeaderElection } from "./leader.ts";
export { ADMIN_TOKEN_SECRET, CA_KEK_SECRET, secretValue, sharedSecret, writeSecret } from "./secrets.ts";
export { type KubernetesResourceStore, openKubernetesStore } from "./store.ts";
export { withServiceAccountTokens } from "./token-review.ts";
export {
  ensureWebhookConfiguration,
  INJECT_PATH,
  mutatingWebhookConfiguration,
  startWebhookServer,
  VALIDATE_IMPORTS_PATH,
  VALIDATE_PATH,
  validatingWebhookConfiguration,
  type WebhookTarget,
} from "./webhooks.ts";

import type { KubeClient } from "./client.ts";
import { crds, GROUP, VERSION } from "./crds.ts";

/**
 * Resolves when the API server serves every wasmesh kind; otherwise says what to install. The
 * control plane does not install its CRDs itself: that needs cluster-wide rights it does not keep.
 */
export async function checkCrdsInstalled(client: KubeClient): Promise<void> {
  const group = await client.find<{ resources?: { name: string }[] }>(`/apis/${GROUP}/${VERSION}`);
  const served = new Set((group?.resources ?? []).map((r) => r.name));
  const missing = crds().filter((crd) => !served.has(crd.spec.names.plural));
  if (missing.length > 0)
    throw new Error(
      `the API server at ${client.server} does not serve ${missing.map((c) => c.metadata.name).join(", ")}: ` +
        "install wasmesh's CRDs first (kubectl apply -f deploy/kubernetes/crds.yaml, or wasmesh kubernetes crds | kubectl apply -f -)",
    );
}
