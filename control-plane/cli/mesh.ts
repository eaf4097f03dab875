// What `describe` and `analyze` read: every stored resource of the native kinds (one GET per kind,
// side by side), and the proxies GET /v1/status lists. The analysis itself is the model's
// (resources/analyze.ts), shared with the web console.
import type { Resource } from "../resources/schema.ts";
import type { ApiClient } from "./client.ts";
import { KINDS, kindPath } from "./kinds.ts";

/** The stored resources of every kind, in the store's order (kind, then name within it). */
export async function fetchMesh(api: ApiClient): Promise<Resource[]> {
  const lists = await Promise.all(
    KINDS.map(async (kind) => {
      const { body } = await api.call("GET", `/v1/${kindPath(kind)}`);
      return (body as { items?: Resource[] }).items ?? [];
    }),
  );
  return lists.flat();
}

/** A proxy as GET /v1/status lists it (the fields describe reads). */
export interface ProxyRow {
  nodeId: string;
  service: string;
  protocol: string;
  syncedVersion?: string;
  acked: Record<string, string>;
  nacks?: number;
}

export async function fetchProxies(api: ApiClient): Promise<ProxyRow[]> {
  const { body } = await api.call("GET", "/v1/status");
  return (body as { proxies?: ProxyRow[] }).proxies ?? [];
}

/** `kind/name` as the CLI prints a resource (route/reviews). */
export const ref = (kind: string, name: string) => `${kind.toLowerCase()}/${name}`;

/** A subset as `{version=v1}`, empty for the whole service. */
export function subsetText(subset: Record<string, string> | undefined): string {
  const pairs = Object.entries(subset ?? {}).map(([k, v]) => `${k}=${v}`);
  return pairs.length === 0 ? "" : `{${pairs.join(",")}}`;
}
