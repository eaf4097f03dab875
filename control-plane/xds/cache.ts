// The seam between the xDS server and what it serves, as go-control-plane's server depends on
// cache.Cache: the server asks a ConfigCache for each proxy's snapshot and never computes one itself.
// SnapshotCache (snapshot.ts) is the implementation, computing snapshots from a ConfigProvider.
import type { ProxyConfig, ProxyIdentity, TypeUrl } from "../envoy/index.ts";
import type { WireResource } from "./codec.ts";

/** Where configuration comes from: what translation computes for a proxy (control-plane/server.ts). */
export interface ConfigProvider {
  /** Identity of the proxy class; proxies with equal keys get identical config (memoize encoding per key per generation). */
  keyFor(proxy: ProxyIdentity): string;
  configFor(proxy: ProxyIdentity): ProxyConfig;
}

/** The resources of one type for one proxy class. */
export interface TypeResources {
  readonly byName: ReadonlyMap<string, WireResource>;
  /** Content version of the whole set (names and versions): equal signatures, equal bytes. */
  readonly signature: string;
}

/** Everything a proxy class is sent at one generation, encoded. */
export interface Snapshot {
  readonly key: string;
  /** Generation of the cache this was computed in (one per advance()). */
  readonly gen: number;
  /** The version label of that generation (the store revision given to update()). */
  readonly version: string;
  readonly types: ReadonlyMap<TypeUrl, TypeResources>;
}

/** What the xDS server needs of a cache. */
export interface ConfigCache {
  /** The current generation. */
  readonly gen: number;
  /** The version label of the current generation. */
  readonly version: string;
  /** Starts a new generation labelled `version`: every class is recomputed when next asked for. */
  advance(version: string): number;
  keyFor(proxy: ProxyIdentity): string;
  /**
   * The snapshot of the proxy's class at the current generation. If computing it fails, the class
   * keeps its last good snapshot and the error is returned (once per generation, for logging);
   * `snapshot` is undefined only when there never was a good one.
   */
  get(proxy: ProxyIdentity, key?: string): { snapshot: Snapshot | undefined; error?: string };
  /** Forgets classes no connected proxy belongs to. */
  retain(keys: ReadonlySet<string>): void;
  /** Forgets everything (the server has closed). */
  clear(): void;
}
