// The snapshot cache: what each class of proxy is sent, encoded once per class per generation and
// shared by every stream of that class (go-control-plane's snapshot cache, keyed by proxy class
// rather than node id, because a mesh of thousands of sidecars has only as many distinct configs
// as it has services × label sets).
//
// Resource versions are a hash of the encoded bytes, so a resource that did not change keeps its
// version across generations and is never re-sent; equal resources of different classes are interned
// to one copy of their bytes.
import { createHash } from "node:crypto";
import { encodeMessage, type ProxyIdentity, TYPE_URLS, type TypeUrl } from "../envoy/index.ts";
import type { ConfigCache, ConfigProvider, Snapshot, TypeResources } from "./cache.ts";
import { encodeAny, type WireResource } from "./codec.ts";

/** 16 hex digits (64 bits) of sha256: enough to tell versions of one resource apart. */
export const contentVersion = (bytes: Uint8Array | string) =>
  createHash("sha256").update(bytes).digest("hex").slice(0, 16);

/** Signature of a list of resources in the order given (callers pass a stable order). */
export function signatureOf(resources: Iterable<WireResource>): string {
  const hash = createHash("sha256");
  for (const r of resources) hash.update(`${r.name}\0${r.version}\n`);
  return hash.digest("hex").slice(0, 16);
}

const EMPTY_SIGNATURE = signatureOf([]);

interface Entry {
  /** The newest snapshot computed successfully for the key (possibly of an older generation). */
  snapshot: Snapshot | undefined;
  /** The generation last attempted, so a failing key is not recomputed on every call. */
  attempted: number;
  error?: string;
}

export class SnapshotCache implements ConfigCache {
  private readonly provider: ConfigProvider;
  private readonly entries = new Map<string, Entry>();
  // Interned resources of this generation and the previous one, by type, name and version.
  private interned = new Map<string, WireResource>();
  private previouslyInterned = new Map<string, WireResource>();
  // The same, by content key: most resources are equal across classes and generations, and
  // JSON.stringify is several times cheaper than verifying and encoding them again (protos.ts).
  private encoded = new Map<string, WireResource>();
  private previouslyEncoded = new Map<string, WireResource>();
  // The same, by the resource object, for this generation.
  private byObject = new WeakMap<object, { typeUrl: TypeUrl; gen: number; wire: WireResource }>();
  private generation = 0;
  private label: string;
  // Byte arrays (module code inline in ECDS) stand in content keys by identity, not by content: the
  // same array is shared by every class, and spelling 60 KiB out as JSON would cost more than
  // encoding it. The ids are this cache's (its content keys are its own); an array's id goes with it.
  private byteArrayIds = new WeakMap<Uint8Array, number>();
  private nextByteArrayId = 0;

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
    this.previouslyEncoded = this.encoded;
    this.encoded = new Map();
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

  /** Forgets everything: the owner (XdsServer) is done with it. */
  clear(): void {
    this.entries.clear();
    this.interned = new Map();
    this.previouslyInterned = new Map();
    this.encoded = new Map();
    this.previouslyEncoded = new Map();
    this.byObject = new WeakMap();
    this.byteArrayIds = new WeakMap();
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
        // A fresh object per snapshot: streams cache responses on it (stream.ts), for its lifetime.
        types.set(typeUrl, { byName: new Map(), signature: EMPTY_SIGNATURE });
        continue;
      }
      const byName = new Map<string, WireResource>();
      for (const { name, resource } of list) {
        if (byName.has(name)) throw new Error(`${typeUrl}: two resources named '${name}'`);
        byName.set(name, this.wire(typeUrl, name, resource));
      }
      const sorted = [...byName.keys()].sort();
      types.set(typeUrl, {
        byName,
        signature: signatureOf(sorted.map((n) => byName.get(n) as WireResource)),
      });
    }
    return { key, gen: this.generation, version: this.label, types };
  }

  /** The resource encoded, or its encoding of this or the previous generation if its content is unchanged. */
  private wire(typeUrl: TypeUrl, name: string, resource: object): WireResource {
    // The same object again: classes share what translation made once for all of them
    // (translate/index.ts, compileMesh), and translation never changes what it has returned.
    const same = this.byObject.get(resource);
    if (same && same.typeUrl === typeUrl && same.wire.name === name && same.gen === this.generation) {
      return same.wire;
    }
    const wire = this.wireByContent(typeUrl, name, resource);
    this.byObject.set(resource, { typeUrl, gen: this.generation, wire });
    return wire;
  }

  private wireByContent(typeUrl: TypeUrl, name: string, resource: object): WireResource {
    const key = this.contentKey(typeUrl, name, resource);
    let wire = key === undefined ? undefined : (this.encoded.get(key) ?? this.previouslyEncoded.get(key));
    if (wire) this.interned.set(`${typeUrl}\0${name}\0${wire.version}`, wire);
    else wire = this.intern(typeUrl, name, encodeMessage(typeUrl, resource));
    if (key !== undefined) this.encoded.set(key, wire);
    return wire;
  }

  /**
   * What determines a resource's encoding, as a string: its type, name and content as JSON (arrays
   * of bytes by identity). Undefined when the content has no JSON form (a bigint).
   */
  private contentKey(typeUrl: string, name: string, resource: object): string | undefined {
    try {
      return JSON.stringify([typeUrl, name, resource], this.contentReplacer);
    } catch {
      return undefined;
    }
  }

  private readonly contentReplacer = (_key: string, value: unknown): unknown => {
    if (value instanceof Uint8Array) {
      let id = this.byteArrayIds.get(value);
      if (id === undefined) {
        id = ++this.nextByteArrayId;
        this.byteArrayIds.set(value, id);
      }
      return `\0bytes:${id}`;
    }
    // JSON would write these as null (or 0), which encode differently.
    if (typeof value === "number" && (!Number.isFinite(value) || Object.is(value, -0)))
      return `\0number:${value}`;
    return value;
  };

  private intern(typeUrl: string, name: string, bytes: Uint8Array): WireResource {
    const version = contentVersion(bytes);
    const id = `${typeUrl}\0${name}\0${version}`;
    let resource = this.interned.get(id) ?? this.previouslyInterned.get(id);
    if (!resource) resource = { name, version, any: encodeAny(typeUrl, bytes) };
    this.interned.set(id, resource);
    return resource;
  }
}
