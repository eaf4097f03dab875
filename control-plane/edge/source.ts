// The current edge configuration, translated once per store revision and serialised once, shared by
// GET /v1/edge/config (which edge workers poll) and the KV publisher: a poll that finds the
// revision unchanged costs a revision read and no translation.
import type { EdgeConfig } from "../../schema/edge-config.ts";
import { type Resource, validateResource } from "../resources/index.ts";
import type { ResourceStore } from "../store/index.ts";
import { translateEdge } from "../translate/edge.ts";

/** Where the mesh's resources come from: the store, or the server's in-memory copy of it. */
export interface MeshSnapshot {
  revision(): number | Promise<number>;
  /** The resources at revision() or later. */
  resources(): readonly Resource[] | Promise<readonly Resource[]>;
}

export interface EdgeState {
  /** The store revision it was translated from. */
  revision: number;
  config: EdgeConfig;
  /** The response body: config as JSON. */
  body: string;
  /** `"<version>"`, the HTTP entity tag. */
  etag: string;
}

export interface EdgeConfigSource {
  /** Every mesh has one (a cluster without Workloads is a per-request 503 at the edge). */
  current(): Promise<EdgeState>;
}

export function createEdgeConfigSource(snapshot: MeshSnapshot): EdgeConfigSource {
  let cached: { revision: number; state: Promise<EdgeState> } | undefined;

  return {
    async current() {
      const revision = await snapshot.revision();
      if (cached?.revision === revision) return cached.state;
      const entry = { revision, state: translate(revision) };
      cached = entry;
      entry.state.catch(() => {
        // A failure (the store) is not the revision's outcome: the next call tries again.
        if (cached === entry) cached = undefined;
      });
      return entry.state;
    },
  };

  async function translate(revision: number): Promise<EdgeState> {
    const config = translateEdge(await snapshot.resources());
    return { revision, config, body: JSON.stringify(config), etag: `"${config.version}"` };
  }
}

/** The store as a MeshSnapshot; rows that no longer validate are left out, as the xDS path does. */
export function storeSnapshot(
  store: ResourceStore,
  log: (message: string) => void = (message) => console.error(message),
): MeshSnapshot {
  return {
    revision: () => store.revision(),
    async resources() {
      const resources: Resource[] = [];
      for (const stored of await store.list()) {
        const result = validateResource(stored, { stored: true });
        if (result.ok) resources.push(result.resource);
        else
          log(
            `edge: ignoring invalid stored ${stored.kind}/${stored.metadata.name}: ${result.errors[0]?.message}`,
          );
      }
      return resources;
    },
  };
}
