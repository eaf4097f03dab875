// The current edge configuration, shared by GET /v1/edge/config (which edge workers poll) and the KV
// publisher: the edge configuration of the store's current MeshRevision (revision/), the one the
// xDS server pushes, serialised once per revision. A poll that finds the revision unchanged costs a
// revision read and no translation.
import type { EdgeConfig } from "../../schema/edge-config.ts";
import type { MeshRevision, RevisionSource } from "../revision/index.ts";

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

export function createEdgeConfigSource(revisions: RevisionSource): EdgeConfigSource {
  const states = new WeakMap<MeshRevision, EdgeState>();
  return {
    async current() {
      const revision = await revisions.current();
      let state = states.get(revision);
      if (state === undefined) {
        const config = revision.edge();
        state = {
          revision: revision.revision,
          config,
          body: JSON.stringify(config),
          etag: `"${config.version}"`,
        };
        states.set(revision, state);
      }
      return state;
    },
  };
}
