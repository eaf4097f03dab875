// Module bytes in Kubernetes mode: every replica must serve every version (sidecars fetch the bytes
// from whichever replica answers), and a replica's disk is its own. So the bytes are kept in the
// cluster, in immutable ConfigMaps named by their digest, and cached in each replica's data
// directory (the file blob store, which verifies the digest on every read).
//
// A ConfigMap holds at most 1 MiB, modules up to 32 MiB: the bytes are split into parts of 768 KiB,
// `wasmesh-module-<sha256>` the first and `wasmesh-module-<sha256>-<i>` the rest. The parts are
// written last to first, so the first one existing means the others do; a put that finds a part
// already there (an earlier push, another replica) goes on, since a digest names one content.
import { createFileBlobStore, type ModuleBlobStore, sha256Hex } from "../modules/index.ts";
import { KubeApiError, type KubeClient } from "./client.ts";

export const PART_BYTES = 768 * 1024;
const PARTS_ANNOTATION = "wasmesh.io/module-parts";
const DATA_KEY = "module.part";

const partName = (sha256: string, index: number) =>
  index === 0 ? `wasmesh-module-${sha256}` : `wasmesh-module-${sha256}-${index}`;

export function createConfigMapBlobStore(options: {
  client: KubeClient;
  namespace: string;
  /** The local cache (the replica's data directory). */
  dataDir: string;
  log: (line: string) => void;
}): ModuleBlobStore {
  const { client, namespace } = options;
  const local = createFileBlobStore(options.dataDir, { log: options.log });
  const collection = `/api/v1/namespaces/${namespace}/configmaps`;

  const read = (name: string) => client.find(`${collection}/${name}`);

  async function fetchRemote(sha256: string): Promise<Uint8Array | undefined> {
    const first = await read(partName(sha256, 0));
    if (first === undefined) return undefined;
    const count = Number(first.metadata?.annotations?.[PARTS_ANNOTATION] ?? "1");
    const parts: Buffer[] = [];
    for (let index = 0; index < count; index++) {
      const part = index === 0 ? first : await read(partName(sha256, index));
      const data = (part?.binaryData as Record<string, string> | undefined)?.[DATA_KEY];
      if (data === undefined) {
        options.log(`wasmesh: module ${sha256}: ConfigMap ${partName(sha256, index)} is missing or empty`);
        return undefined;
      }
      parts.push(Buffer.from(data, "base64"));
    }
    const bytes = new Uint8Array(Buffer.concat(parts));
    if (sha256Hex(bytes) !== sha256) {
      options.log(`wasmesh: module ${sha256}: the ConfigMaps hold other bytes; not served`);
      return undefined;
    }
    return bytes;
  }

  return {
    async put(sha256, bytes) {
      await local.put(sha256, bytes); // checks the digest
      const count = Math.max(1, Math.ceil(bytes.byteLength / PART_BYTES));
      for (let index = count - 1; index >= 0; index--) {
        const slice = Buffer.from(bytes.subarray(index * PART_BYTES, (index + 1) * PART_BYTES));
        try {
          await client.request("POST", collection, {
            body: {
              apiVersion: "v1",
              kind: "ConfigMap",
              immutable: true,
              metadata: {
                name: partName(sha256, index),
                namespace,
                labels: { "app.kubernetes.io/part-of": "wasmesh", "wasmesh.io/module-bytes": "true" },
                annotations: { [PARTS_ANNOTATION]: String(count) },
              },
              binaryData: { [DATA_KEY]: slice.toString("base64") },
            },
          });
        } catch (error) {
          if (!(error instanceof KubeApiError && error.status === 409)) throw error;
        }
      }
    },
    async get(sha256) {
      const cached = await local.get(sha256);
      if (cached !== undefined) return cached;
      const fetched = await fetchRemote(sha256);
      if (fetched !== undefined) await local.put(sha256, fetched);
      return fetched;
    },
    async has(sha256) {
      if (await local.has(sha256)) return true;
      return (await read(partName(sha256, 0))) !== undefined;
    },
  };
}
