// A load-generator process for bench:xds: it drives a share of the simulated sidecars, each an ADS
// stream over node:http2 with gRPC's framing (codec.ts), on a connection of its own with Envoy's
// HTTP/2 windows (streams share connections only when BENCH_STREAMS_PER_CHANNEL says so). Each
// subscribes as Envoy does: CDS and LDS wildcard first, then EDS for the EDS clusters it got, RDS
// for the listeners' route configurations and ECDS for their filters, re-subscribing when those
// change; every response is checked and ACKed as it arrives. Run with child_process.fork; commands
// and results travel over IPC.
//
// Lean on purpose: this process shares two cores with the control plane it measures. No grpc-js
// (its per-call machinery cost more than the server's push), and a response is read only as far as
// an ACK and the checks need (scanResponse): its type, version, nonce, and each resource's type,
// name and (delta) version. Clusters and listeners are decoded further, to follow their references,
// once per distinct resource in the process (they are the same bytes for every sidecar of a class).
//
// Times are epoch milliseconds (performance.timeOrigin + performance.now()), so that the bench
// process, which writes the change, and these processes, which see the ACKs, share one clock.
import { createHash } from "node:crypto";
import * as http2 from "node:http2";
import { gunzipSync } from "node:zlib";
import { EXTENSION_TYPE, envoyProtos, messageType, TYPE_URL } from "../../control-plane/envoy/index.ts";
import {
  DELTA_METHOD,
  type DeltaDiscoveryRequest,
  type DiscoveryRequest,
  encodeDeltaDiscoveryRequest,
  encodeDiscoveryRequest,
  frameMessage,
  MessageReader,
  SOTW_METHOD,
} from "../../control-plane/xds/codec.ts";
import type { SimulatedProxy } from "./bench-xds-mesh.ts";
import type { AdsProtocol } from "./xds-client.ts";

export type ClientCommand =
  /** Connect these sidecars too, and report once all (old and new) are synced. */
  | {
      op: "connect";
      address: string;
      /** Each stream's token (ADS metadata authorization: Bearer …): the control plane's admin token. */
      token: string;
      protocol: AdsProtocol;
      proxies: SimulatedProxy[];
      streamsPerChannel: number;
      timeoutMs: number;
    }
  /** Report when each proxy of `affected` services (all when null) ACKed `version`. */
  | { op: "await"; version: string; affected: string[] | null; timeoutMs: number; quietMs: number }
  | { op: "close" };

export type ClientReply =
  | {
      op: "synced";
      proxies: number;
      responses: number;
      /** Whether an ECDS resource a sidecar got carried a Wasm module's bytes (inline delivery). */
      modulesInline: boolean;
      /** Responses that failed a check since the last reply (and the first few reasons). */
      errors: number;
      errorSamples: string[];
    }
  | {
      op: "acks";
      /** Per affected proxy that got there: epoch ms of its last ACK of a response labelled `version`. */
      ackedAt: number[];
      /** Affected proxies that did not ACK `version` within the time limit. */
      missing: number;
      /** Responses labelled `version` received by affected proxies. */
      responses: number;
      /**
       * Bytes of those responses on the wire (DiscoveryResponse messages as sent, gzipped for a
       * sidecar that accepts it, without gRPC's 5-byte prefix).
       */
      bytes: number;
      /** The same responses' encoded bytes, uncompressed. */
      messageBytes: number;
      /** Proxies of unaffected services that were sent something labelled `version` anyway. */
      unaffectedPushed: number;
      errors: number;
      errorSamples: string[];
    }
  | { op: "closed" }
  | { op: "error"; message: string };

const { listener: LDS, route: RDS, cluster: CDS, endpoint: EDS, extensionConfig: ECDS } = TYPE_URL;
const TYPES: readonly string[] = [CDS, EDS, LDS, RDS, ECDS];
/** Listener and Cluster are wildcard types; the others are subscribed by name. */
const WILDCARD: ReadonlySet<string> = new Set([CDS, LDS]);
const now = () => performance.timeOrigin + performance.now();

// ---------------------------------------------------------------------------------------------
// Reading a response: only the fields an ACK and the checks need.

interface ScannedResource {
  typeUrl: string;
  /** Field 1 of the resource: the name of every type served here (ClusterLoadAssignment's cluster_name). */
  name: string;
  /** Delta only: the server's version of the resource. */
  version: string;
  bytes: Buffer;
}

interface ScannedResponse {
  /** version_info (SotW) or system_version_info (delta). */
  version: string;
  typeUrl: string;
  nonce: string;
  resources: ScannedResource[];
  /** Delta removed_resources. */
  removed: string[];
}

/** A cursor over protobuf wire format, just enough of it for the messages read here. */
class Wire {
  pos: number;
  readonly end: number;
  readonly buf: Buffer;

  constructor(buf: Buffer, start = 0, end = buf.length) {
    this.buf = buf;
    this.pos = start;
    this.end = end;
  }

  varint(): number {
    let value = 0;
    let shift = 0;
    for (;;) {
      if (this.pos >= this.end) throw new Error("truncated varint");
      const byte = this.buf[this.pos++] as number;
      // Lengths and tags: well within 2^53 (multiplication keeps it exact past 32 bits).
      value += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) return value;
      shift += 7;
      if (shift > 49) throw new Error("varint too long");
    }
  }

  /** The bounds of a length-delimited field's content; moves past it. */
  delimited(): [number, number] {
    const length = this.varint();
    const start = this.pos;
    this.pos += length;
    if (this.pos > this.end) throw new Error("truncated field");
    return [start, this.pos];
  }

  string(): string {
    const [start, end] = this.delimited();
    return this.buf.toString("utf8", start, end);
  }

  skip(wireType: number): void {
    if (wireType === 0) this.varint();
    else if (wireType === 1) this.pos += 8;
    else if (wireType === 2) this.delimited();
    else if (wireType === 5) this.pos += 4;
    else throw new Error(`unexpected wire type ${wireType}`);
    if (this.pos > this.end) throw new Error("truncated field");
  }
}

/** google.protobuf.Any { type_url = 1; value = 2 }, and field 1 (the name) of the value. */
function scanAny(buf: Buffer, start: number, end: number, version: string): ScannedResource {
  const w = new Wire(buf, start, end);
  let typeUrl = "";
  let value: [number, number] = [start, start];
  while (w.pos < w.end) {
    const tag = w.varint();
    if (tag === 0x0a) typeUrl = w.string();
    else if (tag === 0x12) value = w.delimited();
    else w.skip(tag & 7);
  }
  const v = new Wire(buf, value[0], value[1]);
  let name = "";
  while (v.pos < v.end) {
    const tag = v.varint();
    if (tag === 0x0a) {
      name = v.string();
      break;
    }
    v.skip(tag & 7);
  }
  return { typeUrl, name, version, bytes: buf.subarray(value[0], value[1]) };
}

/**
 * DiscoveryResponse { version_info = 1; resources = 2; type_url = 4; nonce = 5 } or
 * DeltaDiscoveryResponse { system_version_info = 1; resources = 2 (Resource { version = 1;
 * resource = 2; name = 3 }); type_url = 4; nonce = 5; removed_resources = 6 }.
 */
function scanResponse(buf: Buffer, delta: boolean): ScannedResponse {
  const w = new Wire(buf);
  const response: ScannedResponse = { version: "", typeUrl: "", nonce: "", resources: [], removed: [] };
  while (w.pos < w.end) {
    const tag = w.varint();
    switch (tag) {
      case 0x0a:
        response.version = w.string();
        break;
      case 0x12: {
        const [start, end] = w.delimited();
        if (!delta) {
          response.resources.push(scanAny(buf, start, end, ""));
          break;
        }
        const r = new Wire(buf, start, end);
        let version = "";
        let name = "";
        let any: [number, number] | undefined;
        while (r.pos < r.end) {
          const t = r.varint();
          if (t === 0x0a) version = r.string();
          else if (t === 0x12) any = r.delimited();
          else if (t === 0x1a) name = r.string();
          else r.skip(t & 7);
        }
        if (!any) throw new Error(`delta resource ${JSON.stringify(name)} without a resource`);
        const scanned = scanAny(buf, any[0], any[1], version);
        if (scanned.name !== name)
          throw new Error(
            `delta resource named ${JSON.stringify(name)} holds ${JSON.stringify(scanned.name)}`,
          );
        response.resources.push(scanned);
        break;
      }
      case 0x22:
        response.typeUrl = w.string();
        break;
      case 0x2a:
        response.nonce = w.string();
        break;
      case 0x32:
        if (!delta) w.skip(2);
        else response.removed.push(w.string());
        break;
      default:
        w.skip(tag & 7);
    }
  }
  return response;
}

// ---------------------------------------------------------------------------------------------
// What a sidecar subscribes to next: read from its clusters and listeners, as Envoy would.

interface AnyMessage {
  type_url?: string;
  value?: Uint8Array;
}

const clusterType = messageType(CDS);
const listenerType = messageType(LDS);
const hcmType = messageType(EXTENSION_TYPE.httpConnectionManager);
const EDS_DISCOVERY = envoyProtos().lookupEnum("envoy.config.cluster.v3.Cluster.DiscoveryType").values.EDS;

/**
 * A compressed response, inflated once per distinct response in the process: the sidecars of a
 * class get the same bytes, and each real agent would inflate its copy on its own host, not on the
 * cores the control plane is measured on. Keyed by the bytes themselves (a response's compressed
 * form is 1–2 KB); cleared when it grows, as pushes move on.
 */
const inflated = new Map<string, Buffer>();
function sharedInflate(compressed: Buffer): Buffer {
  const key = compressed.toString("latin1");
  let out = inflated.get(key);
  if (out === undefined) {
    if (inflated.size >= 1024) inflated.clear();
    out = gunzipSync(compressed);
    inflated.set(key, out);
  }
  return out;
}

/** What a resource refers to, by the sha1 of its bytes: the sidecars of a class get equal bytes. */
const refsByContent = new Map<string, { eds: string[]; rds: string[]; ecds: string[] }>();
const MAX_REFS = 100_000;

function refsOf(typeUrl: string, bytes: Buffer): { eds: string[]; rds: string[]; ecds: string[] } {
  const key = `${typeUrl === CDS ? "c" : "l"}${createHash("sha1").update(bytes).digest("base64")}`;
  let refs = refsByContent.get(key);
  if (refs) return refs;
  refs = { eds: [], rds: [], ecds: [] };
  if (typeUrl === CDS) {
    const c = clusterType.decode(bytes) as unknown as {
      name?: string;
      type?: number;
      eds_cluster_config?: { service_name?: string };
    };
    if (c.type === EDS_DISCOVERY) refs.eds.push(c.eds_cluster_config?.service_name || (c.name ?? ""));
  } else {
    const l = listenerType.decode(bytes) as unknown as {
      filter_chains?: { filters?: { typed_config?: AnyMessage }[] }[];
    };
    for (const chain of l.filter_chains ?? []) {
      for (const filter of chain.filters ?? []) {
        const any = filter.typed_config;
        if (any?.type_url !== EXTENSION_TYPE.httpConnectionManager || !any.value) continue;
        const hcm = hcmType.decode(any.value) as unknown as {
          rds?: { route_config_name?: string };
          http_filters?: { name?: string; config_discovery?: unknown }[];
        };
        if (hcm.rds?.route_config_name) refs.rds.push(hcm.rds.route_config_name);
        for (const f of hcm.http_filters ?? []) if (f.config_discovery && f.name) refs.ecds.push(f.name);
      }
    }
  }
  if (refsByContent.size >= MAX_REFS) refsByContent.clear();
  refsByContent.set(key, refs);
  return refs;
}

const sortedUnique = (names: Iterable<string>) => [...new Set(names)].sort();

// ---------------------------------------------------------------------------------------------
// gRPC over node:http2.

/**
 * Envoy's default HTTP/2 windows (initial_stream_window_size and initial_connection_window_size,
 * 256 MiB): with Node's 64 KiB default, every response larger than that (an ECDS resource with the
 * module inline is ~80 KiB) would wait a round trip for a WINDOW_UPDATE, which Envoy never does.
 */
const ENVOY_WINDOW = 256 * 1024 * 1024;

/** One HTTP/2 connection, as a sidecar's Envoy has to its control plane. */
function connectSession(address: string, timeoutMs: number): Promise<http2.ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://${address}`, {
      settings: { initialWindowSize: ENVOY_WINDOW, enablePush: false },
    });
    const timer = setTimeout(() => {
      session.destroy();
      reject(new Error(`no connection to ${address} within ${timeoutMs} ms`));
    }, timeoutMs);
    session.once("connect", () => {
      clearTimeout(timer);
      session.setLocalWindowSize(ENVOY_WINDOW);
      resolve(session);
    });
    // Before the connection: the attempt failed. After it: its streams' ends say what happened.
    session.on("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

// ---------------------------------------------------------------------------------------------
// A simulated sidecar.

interface TypeSub {
  /** Subscribed names, sorted; empty for a wildcard type. */
  names: string[];
  nameSet: Set<string>;
  /** Latest nonce received (SotW sends it back with every request). */
  nonce: string;
  /** version_info of the last response ACKed (SotW sends it back). */
  version: string;
  /** Delta: name → version held. SotW: the names held after the last response. */
  held: Map<string, string>;
}

/** The checks responses failed since the last reply to the bench, with the first few reasons. */
let errors = { count: 0, samples: [] as string[] };
/** The failed checks for a reply, counted afresh from then on. */
function takeErrors(): { errors: number; errorSamples: string[] } {
  const taken = { errors: errors.count, errorSamples: errors.samples };
  errors = { count: 0, samples: [] };
  return taken;
}
function fail(sidecar: SimSidecar, message: string): void {
  errors.count++;
  if (errors.samples.length < 5) errors.samples.push(`${sidecar.proxy.nodeId}: ${message}`);
}

const WASM_MAGIC = Buffer.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]);
let modulesInline = false;

class SimSidecar {
  readonly proxy: SimulatedProxy;
  readonly protocol: AdsProtocol;
  stream: http2.ClientHttp2Stream | undefined;
  /** The stream is over (closed by us, or ended by the server: a failure, counted once). */
  ended = false;
  private closing = false;
  /** Version label → epoch ms of the ACK of the last response so labelled. */
  readonly lastAckAt = new Map<string, number>();
  readonly responsesByVersion = new Map<string, number>();
  readonly bytesByVersion = new Map<string, number>();
  readonly messageBytesByVersion = new Map<string, number>();
  private readonly types = new Map<string, TypeSub>();
  private readonly received = new Set<string>();
  private nodeSent = false;
  private checkedModules = false;
  /** Delta: what each cluster held refers to (a response carries only the changed ones). */
  private edsByCluster: Map<string, string[]> | undefined;
  /** Delta: what each listener held refers to (a response carries only the changed ones). */
  private refsByListener: Map<string, { rds: string[]; ecds: string[] }> | undefined;

  constructor(proxy: SimulatedProxy, protocol: AdsProtocol) {
    this.proxy = proxy;
    this.protocol = protocol;
  }

  /** Every type has had a response. */
  get synced(): boolean {
    return this.received.size === TYPES.length;
  }

  start(session: http2.ClientHttp2Session, token: string, onResponse: () => void): void {
    const stream = session.request({
      ":method": "POST",
      ":path": this.protocol === "sotw" ? SOTW_METHOD : DELTA_METHOD,
      "content-type": "application/grpc",
      te: "trailers",
      authorization: `Bearer ${token}`,
      ...(this.proxy.acceptsGzip ? { "grpc-accept-encoding": "identity,deflate,gzip" } : {}),
    });
    this.stream = stream;
    const reader = new MessageReader(Number.POSITIVE_INFINITY, {
      gzip: this.proxy.acceptsGzip,
      inflate: sharedInflate,
    });
    stream.on("data", (chunk: Buffer) => {
      try {
        reader.push(chunk, (message) => {
          this.receive(message, reader.wireLength);
          onResponse();
        });
      } catch (error) {
        fail(this, `unreadable response: ${error instanceof Error ? error.message : String(error)}`);
        stream.close(http2.constants.NGHTTP2_CANCEL);
      }
    });
    let status = "";
    stream.on("trailers", (trailers) => {
      status = `: grpc-status ${trailers["grpc-status"]} ${trailers["grpc-message"] ?? ""}`;
    });
    stream.on("close", () => {
      this.ended = true;
      if (!this.closing) fail(this, `the stream ended${status}`);
    });
    stream.on("error", () => {});
    // Envoy's order on an ADS stream: clusters, then listeners; the rest follows from them.
    this.subscribe(CDS, []);
    this.subscribe(LDS, []);
  }

  private sub(typeUrl: string): TypeSub {
    let sub = this.types.get(typeUrl);
    if (!sub) {
      sub = { names: [], nameSet: new Set(), nonce: "", version: "", held: new Map() };
      this.types.set(typeUrl, sub);
    }
    return sub;
  }

  private write(request: DiscoveryRequest | DeltaDiscoveryRequest): void {
    if (!this.stream || this.ended) return;
    if (!this.nodeSent) {
      this.nodeSent = true;
      request = {
        ...request,
        node: { id: this.proxy.nodeId, cluster: this.proxy.service, metadata: this.proxy.metadata },
      };
    }
    const bytes =
      this.protocol === "sotw"
        ? encodeDiscoveryRequest(request as DiscoveryRequest)
        : encodeDeltaDiscoveryRequest(request as DeltaDiscoveryRequest);
    this.stream.write(frameMessage(bytes));
  }

  /** The first request for a type. */
  private subscribe(typeUrl: string, names: string[]): void {
    const sub = this.sub(typeUrl);
    sub.names = names;
    sub.nameSet = new Set(names);
    if (this.protocol === "sotw")
      this.write({ versionInfo: "", resourceNames: names, typeUrl, responseNonce: "" });
    else
      this.write({
        typeUrl,
        subscribe: names,
        unsubscribe: [],
        initialResourceVersions: {},
        responseNonce: "",
      });
  }

  /** Subscribes to exactly `names` of a type subscribed by name, sending only when the set changed. */
  private follow(typeUrl: string, names: string[]): void {
    const sub = this.types.get(typeUrl);
    if (!sub) {
      this.subscribe(typeUrl, names);
      return;
    }
    if (sub.names.length === names.length && sub.names.every((n, i) => n === names[i])) return;
    const before = sub.names;
    sub.names = names;
    sub.nameSet = new Set(names);
    if (this.protocol === "sotw") {
      this.write({ versionInfo: sub.version, resourceNames: names, typeUrl, responseNonce: sub.nonce });
      return;
    }
    const gone = before.filter((n) => !sub.nameSet.has(n));
    const fresh = names.filter((n) => !before.includes(n));
    for (const n of gone) sub.held.delete(n);
    this.write({
      typeUrl,
      subscribe: fresh,
      unsubscribe: gone,
      initialResourceVersions: {},
      responseNonce: "",
    });
  }

  private receive(message: Buffer, wireLength: number): void {
    const r = scanResponse(message, this.protocol === "delta");
    const sub = this.types.get(r.typeUrl);
    if (!sub) {
      fail(this, `a response of a type it never subscribed to: ${r.typeUrl}`);
      return;
    }
    if (r.nonce === "") fail(this, `${r.typeUrl} response without a nonce`);
    if (r.version === "") fail(this, `${r.typeUrl} response without a version`);
    const byName = !WILDCARD.has(r.typeUrl);
    const seen = new Set<string>();
    for (const resource of r.resources) {
      if (resource.typeUrl !== r.typeUrl)
        fail(this, `a ${resource.typeUrl} resource in a ${r.typeUrl} response`);
      if (seen.has(resource.name)) fail(this, `${resource.name} twice in one ${r.typeUrl} response`);
      seen.add(resource.name);
      if (byName && !sub.nameSet.has(resource.name))
        fail(this, `${r.typeUrl} ${resource.name}, which it did not subscribe to`);
      if (this.protocol === "delta" && resource.version === "")
        fail(this, `delta ${r.typeUrl} ${resource.name} without a version`);
    }
    for (const name of r.removed)
      if (!sub.held.has(name)) fail(this, `removal of ${r.typeUrl} ${name}, which it does not hold`);

    // Accept it, as Envoy would: SotW replaces the type's set, delta adds and removes.
    if (this.protocol === "sotw") sub.held.clear();
    for (const name of r.removed) sub.held.delete(name);
    for (const resource of r.resources) sub.held.set(resource.name, resource.version);
    sub.nonce = r.nonce;
    sub.version = r.version;
    if (r.typeUrl === ECDS && !this.checkedModules) {
      this.checkedModules = true;
      if (r.resources.some((resource) => resource.bytes.includes(WASM_MAGIC))) modulesInline = true;
    }
    // ACK, then follow the references, as the old client did (Envoy ACKs clusters once warm).
    if (this.protocol === "sotw")
      this.write({
        versionInfo: r.version,
        resourceNames: sub.names,
        typeUrl: r.typeUrl,
        responseNonce: r.nonce,
      });
    else
      this.write({
        typeUrl: r.typeUrl,
        subscribe: [],
        unsubscribe: [],
        initialResourceVersions: {},
        responseNonce: r.nonce,
      });
    const at = now();
    this.lastAckAt.set(r.version, at);
    this.responsesByVersion.set(r.version, (this.responsesByVersion.get(r.version) ?? 0) + 1);
    this.bytesByVersion.set(r.version, (this.bytesByVersion.get(r.version) ?? 0) + wireLength);
    this.messageBytesByVersion.set(
      r.version,
      (this.messageBytesByVersion.get(r.version) ?? 0) + message.length,
    );
    this.received.add(r.typeUrl);
    if (r.typeUrl === CDS) this.followClusters(r);
    else if (r.typeUrl === LDS) this.followListeners(r);
  }

  private followClusters(r: ScannedResponse): void {
    // SotW: the response is the whole set; delta: what changed, so read what is held. The bench's
    // changes keep clusters as they are; a re-sent set is re-read (from the process's memo).
    if (this.protocol === "sotw") {
      this.follow(EDS, sortedUnique(r.resources.flatMap((resource) => refsOf(CDS, resource.bytes).eds)));
      return;
    }
    if (r.resources.length === 0 && r.removed.length === 0) return;
    this.edsByCluster ??= new Map();
    for (const name of r.removed) this.edsByCluster.delete(name);
    for (const resource of r.resources) this.edsByCluster.set(resource.name, refsOf(CDS, resource.bytes).eds);
    this.follow(EDS, sortedUnique([...this.edsByCluster.values()].flat()));
  }

  private followListeners(r: ScannedResponse): void {
    let refs: { rds: string[]; ecds: string[] }[];
    if (this.protocol === "sotw") refs = r.resources.map((resource) => refsOf(LDS, resource.bytes));
    else {
      this.refsByListener ??= new Map();
      for (const name of r.removed) this.refsByListener.delete(name);
      for (const resource of r.resources) this.refsByListener.set(resource.name, refsOf(LDS, resource.bytes));
      refs = [...this.refsByListener.values()];
    }
    this.follow(RDS, sortedUnique(refs.flatMap((x) => x.rds)));
    this.follow(ECDS, sortedUnique(refs.flatMap((x) => x.ecds)));
  }

  close(): void {
    this.closing = true;
    this.stream?.close(http2.constants.NGHTTP2_CANCEL);
  }
}

// ---------------------------------------------------------------------------------------------
// The process: commands from the bench over IPC.

const sidecars: SimSidecar[] = [];
const sessions: http2.ClientHttp2Session[] = [];
let lastResponseAt = 0;
let responseCount = 0;
const onResponse = () => {
  lastResponseAt = now();
  responseCount++;
};

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until `done` holds and no response has arrived for quietMs, or the deadline passes. */
async function settle(done: () => boolean, quietMs: number, deadline: number): Promise<void> {
  while (Date.now() < deadline) {
    if (done() && now() - lastResponseAt >= quietMs) return;
    await sleep(Math.min(50, quietMs));
  }
}

async function connect(command: Extract<ClientCommand, { op: "connect" }>): Promise<ClientReply> {
  const fresh = command.proxies.map((p) => new SimSidecar(p, command.protocol));
  sidecars.push(...fresh);
  const deadline = Date.now() + command.timeoutMs;
  // A bounded number of connection attempts in flight, as sidecars of a rolling deploy would.
  const CONCURRENCY = 64;
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < fresh.length) {
        // Sidecars share a connection only when asked to (a cheaper load generator, a less
        // realistic server): the first of each group opens it.
        const group = fresh.slice(next, next + command.streamsPerChannel);
        next += group.length;
        const session = await connectSession(command.address, Math.max(1, deadline - Date.now()));
        sessions.push(session);
        for (const sidecar of group) sidecar.start(session, command.token, onResponse);
      }
    }),
  );
  await settle(() => sidecars.every((s) => s.synced), 300, deadline);
  const behind = sidecars.filter((s) => !s.synced).length;
  if (behind > 0)
    return { op: "error", message: `${behind} sidecars not synced within ${command.timeoutMs} ms` };
  return {
    op: "synced",
    proxies: sidecars.length,
    responses: responseCount,
    modulesInline,
    ...takeErrors(),
  };
}

async function awaitVersion(command: Extract<ClientCommand, { op: "await" }>): Promise<ClientReply> {
  const affected = command.affected === null ? null : new Set(command.affected);
  const isAffected = (s: SimSidecar) => affected === null || affected.has(s.proxy.service);
  const mine = sidecars.filter(isAffected);
  await settle(
    () => mine.every((s) => s.lastAckAt.has(command.version)),
    command.quietMs,
    Date.now() + command.timeoutMs,
  );
  const ackedAt: number[] = [];
  let responses = 0;
  let bytes = 0;
  let messageBytes = 0;
  for (const s of mine) {
    const at = s.lastAckAt.get(command.version);
    if (at !== undefined) ackedAt.push(at);
    responses += s.responsesByVersion.get(command.version) ?? 0;
    bytes += s.bytesByVersion.get(command.version) ?? 0;
    messageBytes += s.messageBytesByVersion.get(command.version) ?? 0;
  }
  const unaffectedPushed = sidecars.filter((s) => !isAffected(s) && s.lastAckAt.has(command.version)).length;
  return {
    op: "acks",
    ackedAt,
    missing: mine.length - ackedAt.length,
    responses,
    bytes,
    messageBytes,
    unaffectedPushed,
    ...takeErrors(),
  };
}

const reply = (message: ClientReply) => process.send?.(message);

process.on("message", (command: ClientCommand) => {
  const run = async (): Promise<ClientReply> => {
    switch (command.op) {
      case "connect":
        return connect(command);
      case "await":
        return awaitVersion(command);
      case "close":
        for (const s of sidecars) s.close();
        for (const session of sessions) session.close();
        return { op: "closed" };
    }
  };
  run().then(
    (result) => {
      reply(result);
      // Done: leave (the streams are cancelled), so that the bench never has to kill us.
      if (result.op === "closed") setImmediate(() => process.disconnect());
    },
    (error: unknown) =>
      reply({
        op: "error",
        message: error instanceof Error ? (error.stack ?? error.message) : String(error),
      }),
  );
});
// The bench going away (even killed) closes the IPC channel: leave with it.
process.on("disconnect", () => process.exit(0));
