// Discovery's documents (discovery.ts) as the store's derived resources (store.ts): what the cluster's
// Services and Pods say, merged into every read of the store and refused to writers, who are told to
// change the Kubernetes object instead.
import type { StoredResource } from "../store/index.ts";
import { type Discovery, type DiscoveryOptions, startDiscovery } from "./discovery.ts";
import type { DerivedResources } from "./store.ts";

export interface DiscoveredMesh extends DerivedResources {
  readonly discovery: Discovery;
}

/** Starts discovery; resolves once every kind it watches has been listed. */
export async function discoverMesh(options: Omit<DiscoveryOptions, "onChange">): Promise<DiscoveredMesh> {
  const listeners = new Set<() => void>();
  /** When each document was first seen with its current content (the store's createdAt/updatedAt). */
  const seen = new Map<string, { json: string; createdAt: string; updatedAt: string }>();
  const discovery = startDiscovery({
    ...options,
    onChange: () => {
      for (const listener of [...listeners]) listener();
    },
  });
  await discovery.ready;
  return {
    discovery,
    current(): StoredResource[] {
      const { services, workloads } = discovery.current();
      const now = new Date().toISOString();
      const next = new Map<string, { json: string; createdAt: string; updatedAt: string }>();
      const resources = [...services, ...workloads].map((resource): StoredResource => {
        const key = `${resource.kind}/${resource.metadata.name}`;
        const json = JSON.stringify([resource.metadata.labels ?? {}, resource.spec]);
        const before = seen.get(key);
        const times =
          before === undefined
            ? { json, createdAt: now, updatedAt: now }
            : { json, createdAt: before.createdAt, updatedAt: before.json === json ? before.updatedAt : now };
        next.set(key, times);
        return {
          apiVersion: resource.apiVersion,
          kind: resource.kind,
          metadata: {
            name: resource.metadata.name,
            ...(resource.metadata.labels !== undefined ? { labels: resource.metadata.labels } : {}),
            // The store gives derived resources their version.
            resourceVersion: "",
            createdAt: times.createdAt,
            updatedAt: times.updatedAt,
          },
          spec: resource.spec,
        };
      });
      seen.clear();
      for (const [key, value] of next) seen.set(key, value);
      return resources;
    },
    origin(resource) {
      const [name, namespace] = resource.metadata.name.split(".");
      return resource.kind === "Service"
        ? `the Kubernetes Service ${namespace}/${name}`
        : `the Kubernetes Pods and EndpointSlices of namespace ${resource.metadata.name.split(".").at(-1)}`;
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}
