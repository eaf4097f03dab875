// Secrets every replica must share, made by whichever replica first finds none: the CA's
// key-encryption key (the CA's keys in the store are sealed with it, so every replica needs the same
// one) and the admin token (what an operator reads with kubectl to use the API). A replica's data
// directory is its own, so neither can live there as it does outside Kubernetes.
import { KubeApiError, type KubeClient, type KubeObject } from "./client.ts";

/** The Secret holding the CA's key-encryption key (data.key: 32 random bytes). */
export const CA_KEK_SECRET = "wasmesh-ca-kek";
/** The Secret holding the admin token (data.token), for `kubectl get secret`. */
export const ADMIN_TOKEN_SECRET = "wasmesh-admin-token";

const readSecret = (client: KubeClient, namespace: string, name: string) =>
  client.find(`/api/v1/namespaces/${namespace}/secrets/${name}`);

const secretData = (secret: KubeObject | undefined, key: string): Buffer | undefined => {
  const data = (secret?.data as Record<string, string> | undefined)?.[key];
  return data === undefined ? undefined : Buffer.from(data, "base64");
};

/**
 * The value under `key` of Secret `name`, created with `make()` when the Secret does not exist. Two
 * replicas starting together both try to create it; the API server lets one win, and the other reads
 * the winner's value.
 */
export async function sharedSecret(
  client: KubeClient,
  namespace: string,
  name: string,
  key: string,
  make: () => Buffer | Promise<Buffer>,
): Promise<{ value: Buffer; created: boolean }> {
  const existing = secretData(await readSecret(client, namespace, name), key);
  if (existing !== undefined) return { value: existing, created: false };
  const value = await make();
  try {
    await client.request("POST", `/api/v1/namespaces/${namespace}/secrets`, {
      body: {
        apiVersion: "v1",
        kind: "Secret",
        type: "Opaque",
        metadata: { name, namespace, labels: { "app.kubernetes.io/part-of": "wasmesh" } },
        data: { [key]: value.toString("base64") },
      },
    });
    return { value, created: true };
  } catch (error) {
    if (!(error instanceof KubeApiError && error.status === 409)) throw error;
    const winner = secretData(await readSecret(client, namespace, name), key);
    if (winner === undefined) throw new Error(`Secret ${namespace}/${name} exists without data.${key}`);
    return { value: winner, created: false };
  }
}

/** Replaces the value under `key` of Secret `name` (creating it if needed). */
export async function writeSecret(
  client: KubeClient,
  namespace: string,
  name: string,
  key: string,
  value: Buffer,
): Promise<void> {
  const body = {
    apiVersion: "v1",
    kind: "Secret",
    type: "Opaque",
    metadata: { name, namespace, labels: { "app.kubernetes.io/part-of": "wasmesh" } },
    data: { [key]: value.toString("base64") },
  };
  const current = await readSecret(client, namespace, name);
  if (current === undefined)
    await client.request("POST", `/api/v1/namespaces/${namespace}/secrets`, { body });
  else
    await client.request("PUT", `/api/v1/namespaces/${namespace}/secrets/${name}`, {
      body: { ...body, metadata: { ...body.metadata, resourceVersion: current.metadata?.resourceVersion } },
    });
}

/** The value under `key` of Secret `name`, if there is one. */
export async function secretValue(
  client: KubeClient,
  namespace: string,
  name: string,
  key: string,
): Promise<Buffer | undefined> {
  return secretData(await readSecret(client, namespace, name), key);
}
