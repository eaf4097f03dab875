// Envoy's xDS API, loaded from the .proto files that the pinned @grpc/grpc-js-xds package ships in
// its deps/ folder (envoy-api, xds, googleapis, protoc-gen-validate), so that the API version we
// speak is the one that package pins and nothing is copied into this repository.
//
// One protobufjs Root serves both directions: encoding resources into google.protobuf.Any (objects
// are written with Envoy's own snake_case field names, `"@type"` on nested Any values, as in an
// Envoy YAML file) and the gRPC framing of discovery requests and responses.
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import protobuf from "protobufjs";

/** Type URLs of the resources wasmesh serves, by the xDS short name Envoy's docs use. */
export const TYPE_URL = {
  listener: "type.googleapis.com/envoy.config.listener.v3.Listener",
  route: "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
  cluster: "type.googleapis.com/envoy.config.cluster.v3.Cluster",
  endpoint: "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
  extensionConfig: "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
} as const;
export type TypeUrl = (typeof TYPE_URL)[keyof typeof TYPE_URL];
export const TYPE_URLS: readonly TypeUrl[] = Object.values(TYPE_URL);

/** Extensions that resources embed as Any, so they must be loaded too. */
export const EXTENSION_TYPE = {
  httpConnectionManager:
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
  router: "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
  wasmFilter: "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
  stringValue: "type.googleapis.com/google.protobuf.StringValue",
  /** Cluster.typed_extension_protocol_options: HTTP/2 upstreams (gRPC services). */
  httpProtocolOptions: "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
  // mTLS between sidecars (issue 11): the transport sockets, the inbound listener's TLS detection
  // (permissive mode) and the destination's access check by verified identity.
  upstreamTlsContext: "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
  downstreamTlsContext: "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
  rawBuffer: "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer",
  tlsInspector: "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector",
  rbac: "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
  /**
   * The resource of SDS, which the data-plane agent serves its Envoy (dataplane/sds.ts), never the
   * control plane: an Any in the SDS response, listed here so that it is loaded and typed.
   */
  secret: "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
  // Tracing and access logs (issue 18): the HTTP connection manager's tracing provider and its
  // access loggers.
  openTelemetryTracer: "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
  zipkinTracer: "type.googleapis.com/envoy.config.trace.v3.ZipkinConfig",
  fileAccessLog: "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
  stdoutAccessLog: "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
} as const;

const PROTO_FILES = [
  "envoy/service/discovery/v3/ads.proto",
  "envoy/service/discovery/v3/discovery.proto",
  "envoy/config/listener/v3/listener.proto",
  "envoy/config/route/v3/route.proto",
  "envoy/config/cluster/v3/cluster.proto",
  "envoy/config/endpoint/v3/endpoint.proto",
  "envoy/config/core/v3/extension.proto",
  "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto",
  "envoy/extensions/filters/http/router/v3/router.proto",
  "envoy/extensions/filters/http/wasm/v3/wasm.proto",
  "envoy/extensions/wasm/v3/wasm.proto",
  "envoy/extensions/upstreams/http/v3/http_protocol_options.proto",
  "envoy/service/secret/v3/sds.proto",
  "envoy/extensions/transport_sockets/tls/v3/tls.proto",
  "envoy/extensions/transport_sockets/raw_buffer/v3/raw_buffer.proto",
  "envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector.proto",
  "envoy/extensions/filters/http/rbac/v3/rbac.proto",
  "envoy/config/trace/v3/opentelemetry.proto",
  "envoy/config/trace/v3/zipkin.proto",
  "envoy/extensions/access_loggers/file/v3/file.proto",
  "envoy/extensions/access_loggers/stream/v3/stream.proto",
  "google/protobuf/wrappers.proto",
];

function includeDirs(): string[] {
  const require = createRequire(import.meta.url);
  const xdsPackage = path.dirname(require.resolve("@grpc/grpc-js-xds/package.json"));
  const deps = path.join(xdsPackage, "deps");
  // protobufjs bundles the well-known types except descriptor.proto, which it ships as a file.
  const protobufjsPackage = path.dirname(require.resolve("protobufjs/package.json"));
  return [
    ...["envoy-api", "xds", "googleapis", "protoc-gen-validate"].map((d) => path.join(deps, d)),
    protobufjsPackage,
  ];
}

let root: protobuf.Root | undefined;

/** The loaded Envoy API (loaded once, ~150 ms). Field names keep the proto's snake_case. */
export function envoyProtos(): protobuf.Root {
  if (root) return root;
  const dirs = includeDirs();
  const loaded = new protobuf.Root();
  loaded.resolvePath = (origin, target) => {
    for (const dir of dirs) {
      const candidate = path.join(dir, target);
      if (existsSync(candidate)) return candidate;
    }
    return protobuf.util.path.resolve(origin, target);
  };
  loaded.loadSync(PROTO_FILES, { keepCase: true });
  loaded.resolveAll();
  root = loaded;
  return loaded;
}

/** The message type of a type URL (`type.googleapis.com/<full name>`). */
export function messageType(typeUrl: string): protobuf.Type {
  return envoyProtos().lookupType(typeUrl.slice(typeUrl.lastIndexOf("/") + 1));
}

/**
 * Encodes a resource written as a plain object (snake_case fields, nested Any as
 * `{ "@type": url, ...fields }`, Duration as `{ seconds, nanos }`). Throws, naming the type and the
 * field path, if the object does not fit the message, so a generator bug surfaces before anything
 * reaches a proxy.
 *
 * protobufjs alone is not enough: fromObject drops keys the message does not have (a misspelled
 * field would silently vanish), verify() ignores them too, and neither looks inside an Any. So the
 * object is walked first (checkMessage) and verify() runs on the top message and on every Any's
 * content. Scalars, enums and bytes are left to verify(), which checks a byte array by its length
 * alone: module code (tens of KiB inline) is never walked. translate/ writes its objects with the
 * types generated from these protos (types.generated.ts), so there a misspelled field does not
 * compile; this check covers the rest (objects built at run time, tests) and the values.
 */
export function encodeMessage(typeUrl: string, message: object): Uint8Array {
  const type = messageType(typeUrl);
  // Read as what it is at run time, a record of fields: the generated interfaces have no index
  // signature, and this is the check for objects no type vouches for.
  const value = message as Record<string, unknown>;
  const path: string[] = [];
  const fail = (problem: string) => {
    const at = path.join("");
    throw new Error(`${typeUrl}: ${at ? `${at.replace(/^\./, "")}: ` : ""}${problem}`);
  };
  checkMessage(type, value, path, fail);
  const problem = type.verify(value);
  if (problem) fail(problem);
  return type.encode(type.fromObject(value)).finish();
}

const ANY = ".google.protobuf.Any";
const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value) && !ArrayBuffer.isView(value);

/**
 * Refuses keys that are not fields of the message, through nested messages, repeated fields, map
 * values and Any (whose `@type` must name a loaded message type; its content is verify()ed here,
 * as protobufjs' verify() does not look inside). `path` is the stack of field segments for errors.
 */
function checkMessage(
  type: protobuf.Type,
  object: Record<string, unknown>,
  path: string[],
  fail: (problem: string) => never,
): void {
  if (type.fullName === ANY && "@type" in object) {
    checkAny(object, path, fail);
    return;
  }
  for (const key of Object.keys(object)) {
    // Own fields only: `constructor` or `toString` is no field either.
    const field = Object.hasOwn(type.fields, key) ? type.fields[key] : undefined;
    if (field === undefined) {
      path.push(`.${key}`);
      fail(`${type.fullName.slice(1)} has no field '${key}'`);
    }
    const value = object[key];
    const message = field.resolvedType;
    // Absent (protobufjs skips null and undefined), or not a message: verify()'s business.
    if (value === null || value === undefined || !(message instanceof protobuf.Type)) continue;
    path.push(`.${key}`);
    if (field.map) {
      if (isPlainObject(value))
        for (const [k, item] of Object.entries(value)) {
          path.push(`[${JSON.stringify(k)}]`);
          if (isPlainObject(item)) checkMessage(message, item, path, fail);
          path.pop();
        }
    } else if (field.repeated) {
      if (Array.isArray(value))
        value.forEach((item, i) => {
          path.push(`[${i}]`);
          if (isPlainObject(item)) checkMessage(message, item, path, fail);
          path.pop();
        });
    } else if (isPlainObject(value)) checkMessage(message, value, path, fail);
    path.pop();
  }
}

function checkAny(object: Record<string, unknown>, path: string[], fail: (problem: string) => never): void {
  const url = object["@type"];
  let inner: protobuf.Type | undefined;
  if (typeof url === "string") {
    try {
      inner = messageType(url);
    } catch {
      // reported below
    }
  }
  if (inner === undefined) fail(`@type ${JSON.stringify(url)} is not a message type of the Envoy API`);
  const { "@type": _, ...content } = object;
  checkMessage(inner, content, path, fail);
  const problem = inner.verify(content);
  if (problem) fail(`${inner.fullName.slice(1)}: ${problem}`);
}

/** Decodes into the same plain-object shape encodeMessage takes (enums as names, longs as numbers). */
export function decodeMessage(typeUrl: string, bytes: Uint8Array): Record<string, unknown> {
  const type = messageType(typeUrl);
  return type.toObject(type.decode(bytes), { enums: String, longs: Number, defaults: false, oneofs: false });
}

/**
 * An encoded google.protobuf.Any (a resource as the xDS server sends it) as the plain object an
 * Envoy config dump shows: each Any unpacked with its `@type` first, enums by name, 64-bit integers
 * as numbers, only the fields on the wire; bytes stay byte arrays, for the caller to show.
 */
export function anyToObject(any: Uint8Array): Record<string, unknown> {
  const type = envoyProtos().lookupType("google.protobuf.Any");
  const object = type.toObject(type.decode(any), {
    json: true,
    enums: String,
    longs: Number,
    defaults: false,
    oneofs: false,
  });
  return typeFirst(object) as Record<string, unknown>;
}

function typeFirst(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(typeFirst);
  if (!isPlainObject(value)) return value;
  const { "@type": type, ...rest } = value;
  const fields = Object.entries(rest).map(([k, v]) => [k, typeFirst(v)] as const);
  return Object.fromEntries(type === undefined ? fields : [["@type", type], ...fields]);
}

/** Milliseconds as a google.protobuf.Duration object. */
export function duration(ms: number): { seconds: number; nanos: number } {
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1_000_000 };
}
