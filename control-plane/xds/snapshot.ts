// The snapshot cache: what each class of proxy is sent, encoded once per class per generation and
// shared by every stream of that class (go-control-plane's snapshot cache, keyed by proxy class
// rather than node id, because a mesh of thousands of sidecars has only as many distinct configs
// as it has services × label sets).
//
// Resource versions are a hash of the encoded bytes, so a resource that did not change keeps its
// version across generations and is never re-sent; equal resources of different classes are interned
// to one copy of their bytes.
import { createHash } from "node:crypto";
import type { ProxyIdentity } from "../translate/types.ts";
import { encodeAny, type WireResource } from "./codec.ts";
import { encodeMessage, TYPE_URLS, type TypeUrl } from "./protos.ts";
import type { ConfigProvider } from "./server.ts";

/** 16 hex digits (64 bits) of sha256: enough to tell versions of one resource apart. */
export const contentVersion = (bytes: Uint8Array | string) =>
  createHash("sha256").update(bytes).digest("hex").slice(0, 16);

/** The resources of one type for one proxy class. */
export interface TypeResources {
  readonly byName: ReadonlyMap<string, WireResource>;
  /** Content version of the whole set (names and versions): equal signatures, equal bytes. */
  readonly signature: string;
}

export interface Snapshot {
  readonly key: string;
  /** Generation of the cache this was computed in (one per update()). */
  readonly gen: number;
  /** The version label of that generation (the store revision given to update()). */
  readonly version: string;
  readonly types: ReadonlyMap<TypeUrl, TypeResources>;
}

/** Signature of a list of resources in the order given (callers pass a stable order). */
export function signatureOf(resources: Iterable<WireResource>): string {
  const hash = createHash("sha256");
  for (const r of resources) hash.update(`${r.name}\0${r.version}\n`);
  return hash.digest("hex").slice(0, 16);
}

const EMPTY: TypeResources = { byName: new Map(), signature: signatureOf([]) };

interface Entry {
  /** The newest snapshot computed successfully for the key (possibly of an older generation). */
  snapshot: Snapshot | undefined;
  /** The generation last attempted, so a failing key is not recomputed on every call. */
  attempted: number;
  error?: string;
}

export class SnapshotCache {
  private readonly provider: ConfigProvider;
  private readonly entries = new Map<string, Entry>();
  // Interned resources of this generation and the previous one, by type, name and version.
  private interned = new Map<string, WireResource>();
  private previouslyInterned = new Map<string, WireResource>();
  private generation = 0;
  private label: string;

  constructor(provider: ConfigProvider, initialVersion = "0") {
    this.provider = provider;
    this.label = initialVersion;
  }

  get gen(): number {
    return this.generation;
  }
  get version(): string {
    return this.label;
  }

  /** Starts a new generation: every key is recomputed (once) the next time it is asked for. */
  advance(version: string): number {
    this.generation++;
    this.label = version;
    this.previouslyInterned = this.interned;
    this.interned = new Map();
    return this.generation;
  }

  keyFor(proxy: ProxyIdentity): string {
    return this.provider.keyFor(proxy);
  }

  /**
   * The snapshot of the proxy's class for the current generation. If computing it throws, the
   * class keeps its last good snapshot (and the error is returned, once per generation, for logging);
   * `snapshot` is undefined only when there never was a good one.
   */
  get(proxy: ProxyIdentity, key = this.keyFor(proxy)): { snapshot: Snapshot | undefined; error?: string } {
    let entry = this.entries.get(key);
    if (!entry) {
      entry = { snapshot: undefined, attempted: -1 };
      this.entries.set(key, entry);
    }
    if (entry.attempted === this.generation) return { snapshot: entry.snapshot };
    entry.attempted = this.generation;
    try {
      entry.snapshot = this.compute(key, proxy);
      entry.error = undefined;
      return { snapshot: entry.snapshot };
    } catch (error) {
      entry.error = error instanceof Error ? error.message : String(error);
      return { snapshot: entry.snapshot, error: entry.error };
    }
  }

  /** Forgets classes no connected proxy belongs to. */
  retain(keys: ReadonlySet<string>): void {
    for (const key of this.entries.keys()) if (!keys.has(key)) this.entries.delete(key);
  }

  get size(): number {
    return this.entries.size;
  }

  private compute(key: string, proxy: ProxyIdentity): Snapshot {
    const config = this.provider.configFor(proxy);
    const types = new Map<TypeUrl, TypeResources>();
    for (const typeUrl of TYPE_URLS) {
      const list = config[typeUrl] ?? [];
      if (list.length === 0) {
        types.set(typeUrl, EMPTY);
        continue;
      }
      const byName = new Map<string, WireResource>();
      for (const { name, resource } of list) {
        if (byName.has(name)) throw new Error(`${typeUrl}: two resources named '${name}'`);
        byName.set(name, this.intern(typeUrl, name, encodeMessage(typeUrl, resource)));
      }
      const sorted = [...byName.keys()].sort();
      types.set(typeUrl, {
        byName,
        signature: signatureOf(sorted.map((n) => byName.get(n) as WireResource)),
      });
    }
    return { key, gen: this.generation, version: this.label, types };
  }

  private intern(typeUrl: string, name: string, bytes: Uint8Array): WireResource {
    const version = contentVersion(bytes);
    const id = `${typeUrl}\0${name}\0${version}`;
    let resource = this.interned.get(id) ?? this.previouslyInterned.get(id);
    if (!resource) resource = { name, version, any: encodeAny(typeUrl, bytes) };
    this.interned.set(id, resource);
    return resource;
  }
}
