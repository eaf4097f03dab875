// The wire side of ADS: gRPC's message framing, the gRPC service definition for grpc-js (built by
// hand on the protobufjs Root of protos.ts, no proto-loader), decoding of discovery requests into
// small typed objects, and encoding of discovery responses around resources that are already encoded.
//
// Responses are written field by field with a protobufjs Writer rather than through
// Type.encode(fromObject(...)): the resources are pre-encoded google.protobuf.Any bytes shared by
// every proxy of a class, so a response costs one copy of those bytes and no object graph.

import { gunzipSync, gzipSync } from "node:zlib";
import type * as grpc from "@grpc/grpc-js";
import protobuf from "protobufjs";
import { envoyProtos } from "../envoy/index.ts";

export const ADS_SERVICE_NAME = "envoy.service.discovery.v3.AggregatedDiscoveryService";
export const SOTW_METHOD = `/${ADS_SERVICE_NAME}/StreamAggregatedResources`;
export const DELTA_METHOD = `/${ADS_SERVICE_NAME}/DeltaAggregatedResources`;

/** What the first request of a stream says about the proxy; metadata is the Struct as plain JSON. */
export interface NodeInfo {
  id: string;
  cluster: string;
  metadata: Record<string, unknown>;
}

export interface ErrorDetail {
  code: number;
  message: string;
}

export interface DiscoveryRequest {
  versionInfo: string;
  node?: NodeInfo;
  resourceNames: string[];
  typeUrl: string;
  responseNonce: string;
  errorDetail?: ErrorDetail;
}

export interface DeltaDiscoveryRequest {
  node?: NodeInfo;
  typeUrl: string;
  subscribe: string[];
  unsubscribe: string[];
  initialResourceVersions: Record<string, string>;
  responseNonce: string;
  errorDetail?: ErrorDetail;
}

/** A resource as it travels: its name, its content version and its encoded google.protobuf.Any. */
export interface WireResource {
  readonly name: string;
  readonly version: string;
  readonly any: Uint8Array;
}

// The shapes protobufjs decodes into (keepCase: the proto's snake_case names; Struct comes from
// protobufjs' bundled well-known types, whose fields are camelCase).
interface RawValue {
  kind?: "nullValue" | "numberValue" | "stringValue" | "boolValue" | "structValue" | "listValue";
  numberValue?: number;
  stringValue?: string;
  boolValue?: boolean;
  structValue?: RawStruct;
  listValue?: { values?: RawValue[] };
}
interface RawStruct {
  fields?: Record<string, RawValue>;
}
interface RawNode {
  id?: string;
  cluster?: string;
  metadata?: RawStruct;
}
interface RawStatus {
  code?: number;
  message?: string;
}
interface RawDiscoveryRequest {
  version_info?: string;
  node?: RawNode;
  resource_names?: string[];
  type_url?: string;
  response_nonce?: string;
  error_detail?: RawStatus;
}
interface RawDeltaDiscoveryRequest {
  node?: RawNode;
  type_url?: string;
  resource_names_subscribe?: string[];
  resource_names_unsubscribe?: string[];
  initial_resource_versions?: Record<string, string>;
  response_nonce?: string;
  error_detail?: RawStatus;
}

let types:
  | {
      request: protobuf.Type;
      response: protobuf.Type;
      deltaRequest: protobuf.Type;
      deltaResponse: protobuf.Type;
    }
  | undefined;

/** The four discovery message types, looked up once. */
export function discoveryTypes() {
  if (!types) {
    const root = envoyProtos();
    const t = (name: string) => root.lookupType(`envoy.service.discovery.v3.${name}`);
    types = {
      request: t("DiscoveryRequest"),
      response: t("DiscoveryResponse"),
      deltaRequest: t("DeltaDiscoveryRequest"),
      deltaResponse: t("DeltaDiscoveryResponse"),
    };
  }
  return types;
}

/** google.protobuf.Value → JSON (Struct numbers are doubles; NullValue → null). */
function valueToJson(value: RawValue): unknown {
  switch (value.kind) {
    case "numberValue":
      return value.numberValue;
    case "stringValue":
      return value.stringValue;
    case "boolValue":
      return value.boolValue;
    case "structValue":
      return structToJson(value.structValue);
    case "listValue":
      return (value.listValue?.values ?? []).map(valueToJson);
    default:
      return null;
  }
}

export function structToJson(struct: RawStruct | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(struct?.fields ?? {})) out[key] = valueToJson(value);
  return out;
}

function node(raw: RawNode | undefined): NodeInfo | undefined {
  if (!raw) return undefined;
  return { id: raw.id ?? "", cluster: raw.cluster ?? "", metadata: structToJson(raw.metadata) };
}

function errorDetail(raw: RawStatus | undefined): ErrorDetail | undefined {
  // Envoy sets error_detail only on a NACK; an empty Status would still be a NACK.
  return raw ? { code: raw.code ?? 0, message: raw.message ?? "" } : undefined;
}

export function decodeDiscoveryRequest(bytes: Uint8Array): DiscoveryRequest {
  // protobufjs returns a Message whose own properties are the fields present: the Raw shape.
  const raw = discoveryTypes().request.decode(bytes) as unknown as RawDiscoveryRequest;
  return {
    versionInfo: raw.version_info ?? "",
    node: node(raw.node),
    resourceNames: raw.resource_names ?? [],
    typeUrl: raw.type_url ?? "",
    responseNonce: raw.response_nonce ?? "",
    errorDetail: errorDetail(raw.error_detail),
  };
}

export function decodeDeltaDiscoveryRequest(bytes: Uint8Array): DeltaDiscoveryRequest {
  const raw = discoveryTypes().deltaRequest.decode(bytes) as unknown as RawDeltaDiscoveryRequest;
  return {
    node: node(raw.node),
    typeUrl: raw.type_url ?? "",
    subscribe: raw.resource_names_subscribe ?? [],
    unsubscribe: raw.resource_names_unsubscribe ?? [],
    initialResourceVersions: { ...raw.initial_resource_versions },
    responseNonce: raw.response_nonce ?? "",
    errorDetail: errorDetail(raw.error_detail),
  };
}

// gRPC's framing (the "Length-Prefixed-Message" of gRPC over HTTP/2): a flag byte (1 = compressed
// with the call's grpc-encoding) and the message's length, big-endian, before each message.

/** The bytes before each gRPC message. */
export const GRPC_PREFIX_BYTES = 5;
/** What the server accepts in one request, as grpc-js does by default. */
export const MAX_REQUEST_BYTES = 4 * 1024 * 1024;

/** A message as gRPC sends it: its prefix, then the message (one copy). */
export function frameMessage(message: Uint8Array, compressed = false): Buffer {
  const framed = Buffer.allocUnsafe(GRPC_PREFIX_BYTES + message.length);
  framed[0] = compressed ? 1 : 0;
  framed.writeUInt32BE(message.length, 1);
  framed.set(message, GRPC_PREFIX_BYTES);
  return framed;
}

/**
 * Messages shorter than this go uncompressed on a gzip call too: the flag byte says which, and a
 * small response (an ACK-sized delta, a few endpoints) gains a few bytes for a deflate's CPU.
 */
export const COMPRESSION_MIN_BYTES = 1024;

/** Framed message → the same message gzipped and framed (or itself, when that does not pay). */
const gzipped = new WeakMap<Uint8Array, Uint8Array>();

/**
 * A framed message (frameMessage) as it goes on a call whose client accepts gzip: compressed, or
 * as it is when it is short or does not shrink. Memoized on the framed bytes, which a push shares
 * between every stream of a proxy class: a response is compressed once, however many streams get
 * it. The routing filter's configuration is repetitive JSON: at 50 services its 22 KB shrink to
 * about 1.3 KB, which is what each agent then receives of a route change.
 */
export function gzipFramed(framed: Uint8Array): Uint8Array {
  let out = gzipped.get(framed);
  if (out === undefined) {
    out = framed;
    const message = framed.subarray(GRPC_PREFIX_BYTES);
    if (framed[0] === 0 && message.length >= COMPRESSION_MIN_BYTES) {
      const compressed = gzipSync(message);
      if (compressed.length + GRPC_PREFIX_BYTES < framed.length) out = frameMessage(compressed, true);
    }
    gzipped.set(framed, out);
  }
  return out;
}

/** A message the reader cannot take: longer than it allows (gRPC's RESOURCE_EXHAUSTED), or compressed. */
export class FramingError extends Error {
  readonly tooLarge: boolean;
  constructor(message: string, tooLarge: boolean) {
    super(message);
    this.tooLarge = tooLarge;
  }
}

/**
 * Where a message that spans chunks is put together: one buffer for the process, reused, as a
 * message is handled before the next is read (thousands of streams each putting a 20–80 KiB
 * response together in a fresh buffer cost more in allocation and garbage collection than reading
 * them). A reader that finds it in use (a message handled while another is) takes a buffer of its own.
 */
let scratch: Buffer | undefined;
let scratchInUse = false;

/** gRPC's length-prefixed messages out of a stream's DATA chunks. */
export class MessageReader {
  private readonly maxLength: number;
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** Prefix and message length of the message being read, once its prefix has arrived. */
  private expected = -1;
  /** The message being read is compressed. */
  private compressed = false;
  /** The length on the wire of the message being delivered (compressed, if it was). */
  wireLength = 0;

  /** Whether the call's messages may be gzip-compressed (the flag byte says which are). */
  private readonly gzip: boolean;
  private readonly inflate: ((compressed: Buffer) => Buffer) | undefined;

  /**
   * options.inflate replaces gunzip for compressed messages (bench:xds's sidecars share one
   * inflated copy per distinct response, as they share decoded resources).
   */
  constructor(
    maxLength = Number.POSITIVE_INFINITY,
    options: { gzip?: boolean; inflate?: (compressed: Buffer) => Buffer } = {},
  ) {
    this.maxLength = maxLength;
    this.gzip = options.gzip ?? false;
    this.inflate = options.inflate;
  }

  /**
   * Calls onMessage with each whole message; the bytes are valid only until onMessage returns.
   * Throws a FramingError for a message it cannot take.
   */
  push(chunk: Buffer, onMessage: (message: Buffer) => void): void {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    for (;;) {
      if (this.expected < 0) {
        if (this.buffered < GRPC_PREFIX_BYTES) return;
        let head = this.chunks[0] as Buffer;
        if (head.length < GRPC_PREFIX_BYTES) head = Buffer.concat(this.chunks, this.buffered);
        if (head[0] !== 0 && !(head[0] === 1 && this.gzip))
          throw new FramingError("a compressed message (no compression was negotiated)", false);
        this.compressed = head[0] === 1;
        const length = head.readUInt32BE(1);
        if (length > this.maxLength)
          throw new FramingError(`a message of ${length} bytes (at most ${this.maxLength})`, true);
        this.expected = GRPC_PREFIX_BYTES + length;
      }
      if (this.buffered < this.expected) return;
      const n = this.expected;
      this.expected = -1;
      const first = this.chunks[0] as Buffer;
      if (first.length >= n) {
        // The common case: the whole message in one chunk, read in place.
        if (first.length === n) this.chunks.shift();
        else this.chunks[0] = first.subarray(n);
        this.buffered -= n;
        this.deliver(first.subarray(GRPC_PREFIX_BYTES, n), onMessage);
        continue;
      }
      const own = scratchInUse;
      let into = own ? Buffer.allocUnsafe(n) : scratch;
      if (!into || into.length < n) {
        into = Buffer.allocUnsafe(Math.max(n, 2 * (into?.length ?? 0), 64 * 1024));
        if (!own) scratch = into;
      }
      let at = 0;
      while (at < n) {
        const chunk = this.chunks[0] as Buffer;
        const used = Math.min(chunk.length, n - at);
        chunk.copy(into, at, 0, used);
        at += used;
        if (used === chunk.length) this.chunks.shift();
        else this.chunks[0] = chunk.subarray(used);
      }
      this.buffered -= n;
      if (own) this.deliver(into.subarray(GRPC_PREFIX_BYTES, n), onMessage);
      else {
        scratchInUse = true;
        try {
          this.deliver(into.subarray(GRPC_PREFIX_BYTES, n), onMessage);
        } finally {
          scratchInUse = false;
        }
      }
    }
  }

  private deliver(message: Buffer, onMessage: (message: Buffer) => void): void {
    this.wireLength = message.length;
    if (!this.compressed) {
      onMessage(message);
      return;
    }
    let inflated: Buffer;
    try {
      inflated = this.inflate
        ? this.inflate(message)
        : Number.isFinite(this.maxLength)
          ? gunzipSync(message, { maxOutputLength: this.maxLength })
          : gunzipSync(message);
    } catch (error) {
      const tooLarge = (error as NodeJS.ErrnoException).code === "ERR_BUFFER_TOO_LARGE";
      throw new FramingError(
        tooLarge
          ? `a compressed message of more than ${this.maxLength} bytes`
          : `a compressed message that does not inflate: ${(error as Error).message}`,
        tooLarge,
      );
    }
    onMessage(inflated);
  }
}

// Wire tags: (field number << 3) | 2 (length-delimited) for every field written below.
const tag = (field: number) => (field << 3) | 2;

/** google.protobuf.Any { type_url = 1; value = 2 }. */
export function encodeAny(typeUrl: string, value: Uint8Array): Uint8Array {
  return protobuf.Writer.create().uint32(tag(1)).string(typeUrl).uint32(tag(2)).bytes(value).finish();
}

/** DiscoveryResponse { version_info = 1; resources = 2; type_url = 4; nonce = 5 }. */
export function encodeDiscoveryResponse(
  versionInfo: string,
  typeUrl: string,
  nonce: string,
  resources: Iterable<WireResource>,
): Uint8Array {
  const w = protobuf.Writer.create();
  w.uint32(tag(1)).string(versionInfo);
  for (const r of resources) w.uint32(tag(2)).bytes(r.any);
  w.uint32(tag(4)).string(typeUrl);
  w.uint32(tag(5)).string(nonce);
  return w.finish();
}

/**
 * DeltaDiscoveryResponse { system_version_info = 1; resources = 2; type_url = 4; nonce = 5;
 * removed_resources = 6 }, each Resource { version = 1; resource = 2; name = 3 }.
 */
export function encodeDeltaDiscoveryResponse(
  systemVersionInfo: string,
  typeUrl: string,
  nonce: string,
  resources: Iterable<WireResource>,
  removed: Iterable<string>,
): Uint8Array {
  const w = protobuf.Writer.create();
  w.uint32(tag(1)).string(systemVersionInfo);
  for (const r of resources) {
    w.uint32(tag(2)).fork();
    w.uint32(tag(1)).string(r.version).uint32(tag(2)).bytes(r.any).uint32(tag(3)).string(r.name);
    w.ldelim();
  }
  w.uint32(tag(4)).string(typeUrl);
  w.uint32(tag(5)).string(nonce);
  for (const name of removed) w.uint32(tag(6)).string(name);
  return w.finish();
}

const asBuffer = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);

/**
 * The ADS service for grpc-js. Requests are decoded here; responses are passed through as the bytes
 * encodeDiscoveryResponse / encodeDeltaDiscoveryResponse produced.
 */
export function adsServiceDefinition(): grpc.ServiceDefinition {
  return {
    StreamAggregatedResources: {
      path: SOTW_METHOD,
      requestStream: true,
      responseStream: true,
      requestSerialize: (value: DiscoveryRequest) => asBuffer(encodeDiscoveryRequest(value)),
      requestDeserialize: (bytes: Buffer) => decodeDiscoveryRequest(bytes),
      responseSerialize: asBuffer,
      responseDeserialize: (bytes: Buffer) => bytes,
    },
    DeltaAggregatedResources: {
      path: DELTA_METHOD,
      requestStream: true,
      responseStream: true,
      requestSerialize: (value: DeltaDiscoveryRequest) => asBuffer(encodeDeltaDiscoveryRequest(value)),
      requestDeserialize: (bytes: Buffer) => decodeDeltaDiscoveryRequest(bytes),
      responseSerialize: asBuffer,
      responseDeserialize: (bytes: Buffer) => bytes,
    },
  };
}

// Client side (tests, the benchmark): the same typed requests, encoded with protobufjs.

function jsonToValue(value: unknown): Record<string, unknown> {
  if (value === null || value === undefined) return { nullValue: "NULL_VALUE" };
  if (typeof value === "number") return { numberValue: value };
  if (typeof value === "string") return { stringValue: value };
  if (typeof value === "boolean") return { boolValue: value };
  if (Array.isArray(value)) return { listValue: { values: value.map(jsonToValue) } };
  return { structValue: jsonToStruct(value as Record<string, unknown>) };
}

export function jsonToStruct(json: Record<string, unknown>): Record<string, unknown> {
  return { fields: Object.fromEntries(Object.entries(json).map(([k, v]) => [k, jsonToValue(v)])) };
}

const rawNode = (n: NodeInfo | undefined) =>
  n ? { id: n.id, cluster: n.cluster, metadata: jsonToStruct(n.metadata) } : undefined;

export function encodeDiscoveryRequest(request: DiscoveryRequest): Uint8Array {
  const type = discoveryTypes().request;
  return type
    .encode(
      type.fromObject({
        version_info: request.versionInfo,
        node: rawNode(request.node),
        resource_names: request.resourceNames,
        type_url: request.typeUrl,
        response_nonce: request.responseNonce,
        error_detail: request.errorDetail,
      }),
    )
    .finish();
}

export function encodeDeltaDiscoveryRequest(request: DeltaDiscoveryRequest): Uint8Array {
  const type = discoveryTypes().deltaRequest;
  return type
    .encode(
      type.fromObject({
        node: rawNode(request.node),
        type_url: request.typeUrl,
        resource_names_subscribe: request.subscribe,
        resource_names_unsubscribe: request.unsubscribe,
        initial_resource_versions: request.initialResourceVersions,
        response_nonce: request.responseNonce,
        error_detail: request.errorDetail,
      }),
    )
    .finish();
}

export interface DecodedResponse {
  versionInfo: string;
  typeUrl: string;
  nonce: string;
  resources: { typeUrl: string; value: Uint8Array }[];
}
export interface DecodedDeltaResponse {
  systemVersionInfo: string;
  typeUrl: string;
  nonce: string;
  resources: { name: string; version: string; typeUrl: string; value: Uint8Array }[];
  removedResources: string[];
}

interface RawAny {
  type_url?: string;
  value?: Uint8Array;
}

export function decodeDiscoveryResponse(bytes: Uint8Array): DecodedResponse {
  const raw = discoveryTypes().response.decode(bytes) as unknown as {
    version_info?: string;
    type_url?: string;
    nonce?: string;
    resources?: RawAny[];
  };
  return {
    versionInfo: raw.version_info ?? "",
    typeUrl: raw.type_url ?? "",
    nonce: raw.nonce ?? "",
    resources: (raw.resources ?? []).map((a) => ({
      typeUrl: a.type_url ?? "",
      value: a.value ?? new Uint8Array(),
    })),
  };
}

export function decodeDeltaDiscoveryResponse(bytes: Uint8Array): DecodedDeltaResponse {
  const raw = discoveryTypes().deltaResponse.decode(bytes) as unknown as {
    system_version_info?: string;
    type_url?: string;
    nonce?: string;
    resources?: { name?: string; version?: string; resource?: RawAny }[];
    removed_resources?: string[];
  };
  return {
    systemVersionInfo: raw.system_version_info ?? "",
    typeUrl: raw.type_url ?? "",
    nonce: raw.nonce ?? "",
    resources: (raw.resources ?? []).map((r) => ({
      name: r.name ?? "",
      version: r.version ?? "",
      typeUrl: r.resource?.type_url ?? "",
      value: r.resource?.value ?? new Uint8Array(),
    })),
    removedResources: raw.removed_resources ?? [],
  };
}
