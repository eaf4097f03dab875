// The per-stream protocol logic of ADS, state of the world (SotW) and incremental (delta), apart
// from gRPC: a stream takes decoded requests and snapshots and emits encoded responses, so the
// rules (nonces, ACK/NACK, stale requests, subscriptions, push order) are plain code.
//
// Generations: the cache's generation counts update() calls. Per type a stream remembers the newest
// generation whose content equals what it last sent (sentGen) and the newest one the proxy has
// confirmed (ackedGen). A type whose content did not change in an update is not re-sent; if the
// proxy had ACKed it, it is confirmed for the new generation at once. waitForAck() compares these.
//
// Cluster warming: Envoy replaces a cluster that changed with a new one, which waits ("warms") for
// a ClusterLoadAssignment response even when the endpoints did not change, and Envoy holds the CDS
// ACK until then; without one it gives up after the initial fetch timeout (15 s) and logs "initial
// fetch timed out". So after a CDS response the endpoints of the clusters it carries are answered
// again: in SotW when Envoy re-requests them (with the names and nonce it already sent), in delta
// (where Envoy asks for nothing, the names being subscribed already) right after the CDS response.
// wasmesh names an EDS cluster's ClusterLoadAssignment after the cluster (translate/clusters.ts).

import { TYPE_URL, type TypeUrl } from "../envoy/index.ts";
import type { Snapshot, TypeResources } from "./cache.ts";
import {
  type DeltaDiscoveryRequest,
  type DiscoveryRequest,
  encodeDeltaDiscoveryResponse,
  encodeDiscoveryResponse,
  frameMessage,
  type WireResource,
} from "./codec.ts";
import { signatureOf } from "./snapshot.ts";
import type { Rejection } from "./status.ts";

/** Make before break: clusters and their endpoints before the listeners and routes that use them. */
export const PUSH_ORDER: readonly TypeUrl[] = [
  TYPE_URL.cluster,
  TYPE_URL.endpoint,
  TYPE_URL.listener,
  TYPE_URL.route,
  TYPE_URL.extensionConfig,
];
const KNOWN_TYPES: ReadonlySet<string> = new Set(PUSH_ORDER);
const NO_RESOURCES: TypeResources = { byName: new Map(), signature: "" };

/** Listener and Cluster are wildcard types: no names (or "*") means all of them. */
const WILDCARD_TYPES: ReadonlySet<string> = new Set([TYPE_URL.listener, TYPE_URL.cluster]);

export const SHORT_TYPE: Record<TypeUrl, string> = {
  [TYPE_URL.listener]: "lds",
  [TYPE_URL.route]: "rds",
  [TYPE_URL.cluster]: "cds",
  [TYPE_URL.endpoint]: "eds",
  [TYPE_URL.extensionConfig]: "ecds",
};

/** What a stream tells its server. */
export interface StreamHooks {
  /**
   * Write one response, framed for gRPC already (codec.ts frameMessage). The same bytes go to every
   * stream sent the same response: write them as they are.
   */
  send(framed: Uint8Array): void;
  /** Fresh, stream-unique nonce. */
  nonce(): string;
  pushed?(typeUrl: TypeUrl): void;
  /** The proxy ACKed a response; `pushedAt` is the update() time when the response was a push. */
  acked?(typeUrl: TypeUrl, pushedAt: number | undefined): void;
  nacked?(typeUrl: TypeUrl, rejection: Rejection, gen: number): void;
  /** A request used a type wasmesh does not serve. */
  unknownType?(typeUrl: string): void;
}

interface TypeState {
  /** The nonce of the last response; a request carrying another one is stale. */
  nonce: string;
  /** The last response awaits an ACK or NACK. */
  pending: boolean;
  /** The last answer to a response was a NACK. */
  rejected: boolean;
  sentVersion: string;
  ackedVersion: string;
  sentGen: number;
  ackedGen: number;
  /** Version label of ackedGen. */
  syncedVersion: string;
  /** performance.now() of the update() whose push is pending, for the latency histogram. */
  pushedAt: number | undefined;
}

const newTypeState = (): TypeState => ({
  nonce: "",
  pending: false,
  rejected: false,
  sentVersion: "",
  ackedVersion: "",
  sentGen: -1,
  ackedGen: -1,
  syncedVersion: "",
  pushedAt: undefined,
});

export interface TypeStatus {
  sent: string;
  acked: string;
  synced: string;
  ackedGen: number;
  sentGen: number;
  rejected: boolean;
}

export abstract class XdsStream<S extends TypeState = TypeState> {
  abstract readonly protocol: "sotw" | "delta";
  protected readonly hooks: StreamHooks;
  /** Shared with the other streams of the same server. */
  protected readonly caches: StreamCaches;
  protected readonly types = new Map<TypeUrl, S>();
  /** The snapshot responses are built from; the server moves it forward on update. */
  snapshot: Snapshot;
  nacks = 0;
  lastRejection: Rejection | undefined;

  constructor(snapshot: Snapshot, hooks: StreamHooks, caches: StreamCaches) {
    this.snapshot = snapshot;
    this.hooks = hooks;
    this.caches = caches;
  }

  /** Types the proxy has subscribed to. */
  subscribedTypes(): IterableIterator<TypeUrl> {
    return this.types.keys();
  }

  typeStatus(typeUrl: TypeUrl): TypeStatus | undefined {
    const s = this.types.get(typeUrl);
    return (
      s && {
        sent: s.sentVersion,
        acked: s.ackedVersion,
        synced: s.syncedVersion,
        ackedGen: s.ackedGen,
        sentGen: s.sentGen,
        rejected: s.rejected,
      }
    );
  }

  /** The oldest generation confirmed across subscribed types (Infinity when none is subscribed). */
  ackedGen(): number {
    let min = Number.POSITIVE_INFINITY;
    // A response in flight (e.g. for newly subscribed names) is not confirmed yet.
    for (const s of this.types.values())
      min = Math.min(min, s.pending ? Math.min(s.ackedGen, s.sentGen - 1) : s.ackedGen);
    return min;
  }

  /**
   * A type the proxy refuses at generation ≥ gen, if any: the proxy will not reach gen unless the
   * config changes again.
   */
  refusing(gen: number): TypeUrl | undefined {
    for (const [typeUrl, s] of this.types) if (s.rejected && !s.pending && s.sentGen >= gen) return typeUrl;
    return undefined;
  }

  /** Moves to a new snapshot and pushes what changed, in PUSH_ORDER. Returns the responses sent. */
  abstract push(snapshot: Snapshot, pushedAt: number): number;

  /**
   * The resources of a type the proxy was last sent and holds (whether it ACKed them or not), in
   * name order; undefined when it has not subscribed to the type. For inspection (GET
   * /v1/proxies/<node>/config): nothing is copied or encoded.
   */
  abstract held(typeUrl: TypeUrl): WireResource[] | undefined;

  protected resourcesOf(typeUrl: TypeUrl, snapshot = this.snapshot): TypeResources {
    return snapshot.types.get(typeUrl) ?? NO_RESOURCES;
  }

  /** Records a response about to be written. */
  protected sent(typeUrl: TypeUrl, state: S, nonce: string, pushedAt: number | undefined): void {
    state.nonce = nonce;
    state.pending = true;
    state.sentVersion = this.snapshot.version;
    state.sentGen = this.snapshot.gen;
    state.pushedAt = pushedAt;
    this.hooks.pushed?.(typeUrl);
  }

  /** Content unchanged by an update: still current, and confirmed if the proxy had confirmed it. */
  protected unchanged(state: S): void {
    state.sentGen = this.snapshot.gen;
    if (!state.pending && !state.rejected) {
      state.ackedGen = this.snapshot.gen;
      state.syncedVersion = this.snapshot.version;
    }
  }

  /**
   * Handles response_nonce / error_detail. A request whose nonce is not the latest one sent for the
   * type (or is empty) is stale; one with the latest nonce answers it (ACK or NACK) the first time,
   * and later ones (a subscription change after the ACK) only repeat it.
   */
  protected answer(
    typeUrl: TypeUrl,
    state: S,
    nonce: string,
    error: { message: string } | undefined,
  ): "stale" | "answer" | "repeat" {
    if (nonce === "" || nonce !== state.nonce) return "stale";
    if (!state.pending) return "repeat";
    state.pending = false;
    if (error) {
      // The proxy keeps its last good config; what we sent stays recorded as sent, so the same
      // content is not offered again until the config changes.
      state.rejected = true;
      this.nacks++;
      this.lastRejection = {
        typeUrl,
        version: state.sentVersion,
        message: error.message,
        at: new Date().toISOString(),
      };
      this.hooks.nacked?.(typeUrl, this.lastRejection, state.sentGen);
    } else {
      state.rejected = false;
      state.ackedVersion = state.sentVersion;
      state.ackedGen = state.sentGen;
      state.syncedVersion = this.snapshot.gen === state.sentGen ? this.snapshot.version : state.sentVersion;
      this.hooks.acked?.(typeUrl, state.pushedAt);
    }
    state.pushedAt = undefined;
    return "answer";
  }

  protected known(typeUrl: string): typeUrl is TypeUrl {
    if (KNOWN_TYPES.has(typeUrl)) return true;
    this.hooks.unknownType?.(typeUrl);
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// State of the world

interface SotwTypeState extends TypeState {
  /** Subscribed names; undefined = wildcard. Shared between streams (StreamCaches): never mutate. */
  names: Set<string> | undefined;
  /** Subscription key of the names: the key of the selection cache. */
  namesKey: string;
  /** Signature of the set last sent, to send only on change. */
  signature: string;
  /** The resources the last response was cut from (shared with the snapshot, not copied). */
  sentFrom: TypeResources | undefined;
  /** EDS: a push replaced clusters the proxy had after the last EDS response: they are warming. */
  warming: boolean;
}

const sameNames = (a: Set<string> | undefined, b: Set<string> | undefined) =>
  a === undefined || b === undefined ? a === b : a.size === b.size && [...a].every((n) => b.has(n));

/**
 * A response encoded and framed once and written as is to every stream that needs the same one
 * (the proxies of a class, in a push): one shared nonce instead of one encoding, and one copy of
 * every resource, per stream. Nonces stay unique where it matters: a stream is never sent again the
 * nonce of the response it was sent last (meeting an older one again means identical content, so an
 * answer to either is an answer to both).
 */
interface SharedResponse {
  typeUrl: TypeUrl;
  version: string;
  nonce: string;
  /** The DiscoveryResponse with gRPC's prefix. */
  framed: Uint8Array;
  /** Delta: what a proxy holds after it, by what it held before (heldAfter). */
  heldAfter?: WeakMap<ReadonlyMap<string, string>, ReadonlyMap<string, string>>;
}

const reusable = (
  response: SharedResponse | undefined,
  typeUrl: TypeUrl,
  version: string,
  lastNonce: string,
): response is SharedResponse =>
  response !== undefined &&
  response.typeUrl === typeUrl &&
  response.version === version &&
  response.nonce !== lastNonce;

/** What a SotW response for a subscription holds: the resources, in name order, and their signature. */
interface Selection {
  from: TypeResources;
  list: WireResource[];
  signature: string;
  response?: SharedResponse;
  /** replacesClusters(), for the streams whose previous clusters were `before`. */
  replaces?: { before: TypeResources; result: boolean };
}

/** A subscription's names and their key, shared by the streams that subscribe to the same names. */
interface Subscription {
  names: Set<string> | undefined;
  key: string;
}

/** Subscriptions a StreamCaches keeps before it starts over (streams keep what they hold). */
const MAX_SUBSCRIPTIONS = 10_000;

/** The cache kept on a TypeResources (so it goes with its snapshot). */
function cacheOn<V>(caches: WeakMap<TypeResources, Map<string, V>>, from: TypeResources): Map<string, V> {
  // NO_RESOURCES outlives every snapshot: what was cached on it would stay forever.
  if (from === NO_RESOURCES) return new Map();
  let cache = caches.get(from);
  if (!cache) {
    cache = new Map();
    caches.set(from, cache);
  }
  return cache;
}

/**
 * What the streams of one server share, so that the proxies of a class cost one copy of each
 * subscription, selection and response instead of one per stream. The XdsServer that owns it
 * passes it to its streams; servers in one process share nothing.
 *
 * Lifetime: the owner's, until clear() (XdsServer.close()). Subscriptions are kept up to a bound,
 * then the map starts over; selections and delta responses are kept on their TypeResources
 * (WeakMaps), so they also go with their snapshot.
 */
export class StreamCaches {
  /**
   * Subscriptions by key. Every sidecar of a class asks for the same (often a hundred or more) EDS
   * names: one shared copy instead of one per stream (SotW and delta alike).
   */
  private subscriptions = new Map<string, Subscription>();
  /**
   * SotW selections by name set, per TypeResources (so per class and generation): every stream of
   * a class subscribes to the same names, and a push would otherwise sort and hash them once per
   * stream — the largest cost of a push to thousands of proxies.
   */
  private selectionsOf = new WeakMap<TypeResources, Map<string, Selection>>();
  /** Delta responses by their content, per TypeResources, as for SotW. */
  private deltaResponsesOf = new WeakMap<TypeResources, Map<string, SharedResponse>>();

  /** The shared subscription to `names` (undefined = wildcard). */
  subscription(names: Set<string> | undefined): Subscription {
    // A JSON array cannot be mistaken for another set, or for the wildcard.
    const key = names === undefined ? "*" : JSON.stringify([...names].sort());
    let shared = this.subscriptions.get(key);
    if (!shared) {
      if (this.subscriptions.size >= MAX_SUBSCRIPTIONS) this.subscriptions.clear();
      shared = { names, key };
      this.subscriptions.set(key, shared);
    }
    return shared;
  }

  selections(from: TypeResources): Map<string, Selection> {
    return cacheOn(this.selectionsOf, from);
  }

  deltaResponses(from: TypeResources): Map<string, SharedResponse> {
    return cacheOn(this.deltaResponsesOf, from);
  }

  /** Forgets everything (streams keep what they hold). */
  clear(): void {
    this.subscriptions = new Map();
    this.selectionsOf = new WeakMap();
    this.deltaResponsesOf = new WeakMap();
  }
}

export class SotwStream extends XdsStream<SotwTypeState> {
  readonly protocol = "sotw";

  handle(request: DiscoveryRequest): void {
    const typeUrl = request.typeUrl;
    if (!this.known(typeUrl)) return;
    const names = this.namesOf(typeUrl, request.resourceNames);
    let state = this.types.get(typeUrl);
    if (!state) {
      const shared = this.caches.subscription(names);
      state = {
        ...newTypeState(),
        names: shared.names,
        namesKey: shared.key,
        signature: "",
        sentFrom: undefined,
        warming: false,
      };
      this.types.set(typeUrl, state);
      this.respond(typeUrl, state, undefined);
      return;
    }
    // go-control-plane semantics: a request that does not answer the latest response is ignored;
    // the proxy's next request, answering it, carries its complete current subscription anyway.
    if (this.answer(typeUrl, state, request.responseNonce, request.errorDetail) === "stale") return;
    if (!sameNames(names, state.names)) {
      const shared = this.caches.subscription(names);
      state.names = shared.names;
      state.namesKey = shared.key;
      this.respond(typeUrl, state, undefined);
    } else if (state.warming && !request.errorDetail) {
      // The same names again after a CDS response: a changed cluster is warming and waits for its
      // endpoints (the header). Once only: Envoy asks once more when the old cluster goes.
      this.respond(typeUrl, state, undefined);
    }
  }

  push(snapshot: Snapshot, pushedAt: number): number {
    this.snapshot = snapshot;
    let sent = 0;
    // Clusters that disappear are dropped only after the rest of the push: until then the interim
    // CDS response still carries them, so listeners and routes that used them stay valid.
    let removedClusters: WireResource[] = [];
    for (const typeUrl of PUSH_ORDER) {
      const state = this.types.get(typeUrl);
      if (!state) continue;
      const selected = this.select(typeUrl, state);
      if (selected.signature === state.signature) {
        state.sentFrom = selected.from;
        this.unchanged(state);
        continue;
      }
      if (typeUrl === TYPE_URL.cluster && this.replacesClusters(state, selected)) {
        const eds = this.types.get(TYPE_URL.endpoint);
        if (eds) eds.warming = true;
      }
      if (typeUrl === TYPE_URL.cluster && state.sentFrom) {
        removedClusters = [...state.sentFrom.byName.values()].filter(
          (r) => !selected.from.byName.has(r.name) && (state.names === undefined || state.names.has(r.name)),
        );
        if (removedClusters.length > 0 && this.othersChange()) {
          this.sendList(typeUrl, state, [...selected.list, ...removedClusters], pushedAt);
          sent++;
          continue;
        }
        removedClusters = [];
      }
      this.respond(typeUrl, state, pushedAt);
      sent++;
    }
    const cds = this.types.get(TYPE_URL.cluster);
    if (removedClusters.length > 0 && cds) {
      this.respond(TYPE_URL.cluster, cds, pushedAt);
      sent++;
    }
    return sent;
  }

  held(typeUrl: TypeUrl): WireResource[] | undefined {
    const state = this.types.get(typeUrl);
    if (!state) return undefined;
    const from = state.sentFrom;
    if (!from) return [];
    const names = state.names === undefined ? [...from.byName.keys()] : [...state.names];
    return names.sort().flatMap((name) => from.byName.get(name) ?? []);
  }

  /** Whether any type after CDS changes for this stream (then removed clusters go last). */
  private othersChange(): boolean {
    for (const typeUrl of PUSH_ORDER) {
      if (typeUrl === TYPE_URL.cluster) continue;
      const state = this.types.get(typeUrl);
      if (state && this.select(typeUrl, state).signature !== state.signature) return true;
    }
    return false;
  }

  private namesOf(typeUrl: string, names: string[]): Set<string> | undefined {
    if (WILDCARD_TYPES.has(typeUrl) && (names.length === 0 || names.includes("*"))) return undefined;
    return new Set(names);
  }

  /** The current snapshot's resources for the subscription; shared by streams, never mutate `list`. */
  private select(typeUrl: TypeUrl, state: SotwTypeState): Selection {
    const from = this.resourcesOf(typeUrl);
    const cached = this.caches.selections(from);
    let selection = cached.get(state.namesKey);
    if (selection) return selection;
    const names = state.names;
    if (names === undefined) selection = { from, list: [...from.byName.values()], signature: from.signature };
    else {
      const list: WireResource[] = [];
      for (const name of [...names].sort()) {
        const r = from.byName.get(name);
        if (r) list.push(r);
      }
      selection = { from, list, signature: signatureOf(list) };
    }
    cached.set(state.namesKey, selection);
    return selection;
  }

  private respond(typeUrl: TypeUrl, state: SotwTypeState, pushedAt: number | undefined): void {
    const selected = this.select(typeUrl, state);
    state.signature = selected.signature;
    state.sentFrom = selected.from;
    const version = this.snapshot.version;
    let response = selected.response;
    if (!reusable(response, typeUrl, version, state.nonce)) {
      const nonce = this.hooks.nonce();
      const framed = frameMessage(encodeDiscoveryResponse(version, typeUrl, nonce, selected.list));
      response = { typeUrl, version, nonce, framed };
      selected.response = response;
    }
    this.sent(typeUrl, state, response.nonce, pushedAt);
    this.hooks.send(response.framed);
  }

  protected override sent(
    typeUrl: TypeUrl,
    state: SotwTypeState,
    nonce: string,
    pushedAt: number | undefined,
  ) {
    super.sent(typeUrl, state, nonce, pushedAt);
    if (typeUrl === TYPE_URL.endpoint) state.warming = false;
  }

  /**
   * Whether the clusters about to be pushed replace any the proxy has (new ones are not a concern:
   * Envoy asks for their endpoints by a new name). Memoized on the selection for the streams that
   * had the same clusters before.
   */
  private replacesClusters(state: SotwTypeState, selected: Selection): boolean {
    const before = state.sentFrom;
    if (!before) return false;
    if (selected.replaces?.before === before) return selected.replaces.result;
    let result = false;
    for (const r of selected.list) {
      const old = before.byName.get(r.name);
      if (old !== undefined && old.version !== r.version) {
        result = true;
        break;
      }
    }
    selected.replaces = { before, result };
    return result;
  }

  private sendList(
    typeUrl: TypeUrl,
    state: SotwTypeState,
    list: WireResource[],
    pushedAt: number | undefined,
  ): void {
    const nonce = this.hooks.nonce();
    const framed = frameMessage(encodeDiscoveryResponse(this.snapshot.version, typeUrl, nonce, list));
    this.sent(typeUrl, state, nonce, pushedAt);
    this.hooks.send(framed);
  }
}

// ---------------------------------------------------------------------------------------------
// Incremental (delta)

interface DeltaTypeState extends TypeState {
  wildcard: boolean;
  /** Explicitly subscribed names. Shared by the streams that subscribe to the same (StreamCaches): replace, never mutate. */
  names: ReadonlySet<string>;
  /**
   * What the proxy holds, name → version (as sent, or as it said in initial_resource_versions).
   * Shared by the streams that were sent the same (heldAfter): replace, never mutate.
   */
  versions: ReadonlyMap<string, string>;
}

const NO_NAMES: ReadonlySet<string> = new Set();
const NOTHING_HELD: ReadonlyMap<string, string> = new Map();

/**
 * What a proxy holds after a response's changes: one copy for all the streams that held the same
 * before (the proxies of a class hold the same, a hundred or more names and versions per type),
 * memoized on the shared response.
 */
function heldAfter(
  response: SharedResponse,
  before: ReadonlyMap<string, string>,
  changes: DeltaChanges,
): ReadonlyMap<string, string> {
  response.heldAfter ??= new WeakMap();
  let after = response.heldAfter.get(before);
  if (!after) {
    const next = new Map(before);
    for (const r of changes.updated) next.set(r.name, r.version);
    for (const name of changes.removed) next.delete(name);
    after = next;
    response.heldAfter.set(before, after);
  }
  return after;
}

interface DeltaChanges {
  updated: WireResource[];
  removed: string[];
}

export class DeltaStream extends XdsStream<DeltaTypeState> {
  readonly protocol = "delta";
  /** Clusters replaced since their ClusterLoadAssignment was last sent: it goes again (the header). */
  private readonly warming = new Set<string>();

  handle(request: DeltaDiscoveryRequest): void {
    const typeUrl = request.typeUrl;
    if (!this.known(typeUrl)) return;
    let state = this.types.get(typeUrl);
    const first = !state;
    if (!state) {
      const initial = Object.entries(request.initialResourceVersions);
      state = {
        ...newTypeState(),
        // Legacy wildcard: the first request of a wildcard type names nothing.
        wildcard: WILDCARD_TYPES.has(typeUrl) && request.subscribe.length === 0,
        names: NO_NAMES,
        versions: initial.length > 0 ? new Map(initial) : NOTHING_HELD,
      };
      this.types.set(typeUrl, state);
    }
    // Subscription changes are deltas, so unlike SotW they apply whatever the nonce says;
    // only the ACK/NACK part of a stale request is ignored.
    if (request.subscribe.length > 0 || request.unsubscribe.length > 0) {
      const names = new Set(state.names);
      for (const name of request.subscribe) {
        if (name === "*") state.wildcard = true;
        else names.add(name);
      }
      for (const name of request.unsubscribe) {
        if (name === "*") state.wildcard = false;
        else names.delete(name);
      }
      state.names = this.caches.subscription(names).names ?? NO_NAMES;
    }
    // Forget what the proxy held but no longer subscribes to (it drops those itself).
    let kept: Map<string, string> | undefined;
    for (const name of state.versions.keys()) {
      if (this.covers(state, name)) continue;
      kept ??= new Map(state.versions);
      kept.delete(name);
    }
    if (kept) state.versions = kept;
    this.answer(typeUrl, state, request.responseNonce, request.errorDetail);
    if (first || request.subscribe.length > 0) {
      const changes = this.changes(typeUrl, state);
      // The first request is always answered, even with nothing, so that the proxy's
      // initialization does not wait for a timeout.
      if (first || changes.updated.length > 0 || changes.removed.length > 0)
        this.sendChanges(typeUrl, state, changes, undefined);
      // Clusters sent in answer: their endpoints follow at once, as in a push.
      const eds = this.types.get(TYPE_URL.endpoint);
      if (typeUrl === TYPE_URL.cluster && eds && this.warming.size > 0) {
        const endpoints = this.changes(TYPE_URL.endpoint, eds);
        if (endpoints.updated.length > 0 || endpoints.removed.length > 0)
          this.sendChanges(TYPE_URL.endpoint, eds, endpoints, undefined);
      }
    }
  }

  push(snapshot: Snapshot, pushedAt: number): number {
    this.snapshot = snapshot;
    const planned: [TypeUrl, DeltaTypeState, DeltaChanges][] = [];
    for (const typeUrl of PUSH_ORDER) {
      const state = this.types.get(typeUrl);
      if (!state) continue;
      const changes = this.changes(typeUrl, state);
      if (changes.updated.length === 0 && changes.removed.length === 0) this.unchanged(state);
      else planned.push([typeUrl, state, changes]);
    }
    // Removed clusters (and their endpoints) go last when anything else changes, so that the
    // listeners and routes that referred to them are replaced first.
    const deferred: [TypeUrl, DeltaTypeState, DeltaChanges][] = [];
    if (planned.length > 1)
      for (const step of planned) {
        const [typeUrl, state, changes] = step;
        if ((typeUrl === TYPE_URL.cluster || typeUrl === TYPE_URL.endpoint) && changes.removed.length > 0) {
          deferred.push([typeUrl, state, { updated: [], removed: changes.removed }]);
          step[2] = { updated: changes.updated, removed: [] };
        }
      }
    let sent = 0;
    for (const [typeUrl, state, changes] of [...planned, ...deferred]) {
      if (changes.updated.length === 0 && changes.removed.length === 0) continue;
      this.sendChanges(typeUrl, state, changes, pushedAt);
      sent++;
    }
    return sent;
  }

  held(typeUrl: TypeUrl): WireResource[] | undefined {
    const state = this.types.get(typeUrl);
    if (!state) return undefined;
    // What it holds, by name and version: the snapshot's resource of that version (what was sent;
    // a version the proxy announced that this server never made has no content here).
    const { byName } = this.resourcesOf(typeUrl);
    return [...state.versions.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .flatMap(([name, version]) => {
        const r = byName.get(name);
        return r !== undefined && r.version === version ? [r] : [];
      });
  }

  private covers(state: DeltaTypeState, name: string): boolean {
    return state.wildcard || state.names.has(name);
  }

  /**
   * What the proxy lacks of a type. For CDS it also notes the clusters about to be sent as warming;
   * for EDS it adds the endpoints of warming clusters that the proxy holds already.
   */
  private changes(typeUrl: TypeUrl, state: DeltaTypeState): DeltaChanges {
    const { byName } = this.resourcesOf(typeUrl);
    const updated: WireResource[] = [];
    const consider = (r: WireResource) => {
      if (state.versions.get(r.name) !== r.version) updated.push(r);
    };
    if (state.wildcard) for (const r of byName.values()) consider(r);
    else
      for (const name of state.names) {
        const r = byName.get(name);
        if (r) consider(r);
      }
    const removed: string[] = [];
    for (const name of state.versions.keys()) if (!byName.has(name)) removed.push(name);
    if (typeUrl === TYPE_URL.cluster) {
      // Only clusters the proxy has are replaced (and warm); it subscribes to a new one's endpoints.
      for (const r of updated) if (state.versions.has(r.name)) this.warming.add(r.name);
      for (const name of removed) this.warming.delete(name);
    } else if (typeUrl === TYPE_URL.endpoint && this.warming.size > 0) {
      for (const name of this.warming) {
        const r = byName.get(name);
        // No ClusterLoadAssignment: not an EDS cluster (its endpoints are inline), nothing to wait for.
        if (!r) this.warming.delete(name);
        // Endpoints not held (or not subscribed) yet go out anyway once subscribed.
        else if (state.versions.get(name) === r.version && this.covers(state, name)) updated.push(r);
      }
    }
    return { updated, removed };
  }

  private sendChanges(
    typeUrl: TypeUrl,
    state: DeltaTypeState,
    changes: DeltaChanges,
    pushedAt: number | undefined,
  ): void {
    if (typeUrl === TYPE_URL.endpoint) for (const r of changes.updated) this.warming.delete(r.name);
    const version = this.snapshot.version;
    const shared = this.caches.deltaResponses(this.resourcesOf(typeUrl));
    // Interned resources: equal names and versions are equal bytes.
    const key = JSON.stringify([typeUrl, changes.updated.map((r) => [r.name, r.version]), changes.removed]);
    let response = shared.get(key);
    if (!reusable(response, typeUrl, version, state.nonce)) {
      const nonce = this.hooks.nonce();
      const framed = frameMessage(
        encodeDeltaDiscoveryResponse(version, typeUrl, nonce, changes.updated, changes.removed),
      );
      response = { typeUrl, version, nonce, framed };
      shared.set(key, response);
    }
    // The key names the changes: equal keys, equal changes, so equal holdings after them.
    state.versions = heldAfter(response, state.versions, changes);
    this.sent(typeUrl, state, response.nonce, pushedAt);
    this.hooks.send(response.framed);
  }
}
