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
  /** Cluster.transport_socket: TLS to an https control plane (remote module delivery). */
  upstreamTlsContext: "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
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
  "envoy/extensions/transport_sockets/tls/v3/tls.proto",
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
 * `{ "@type": url, ...fields }`, Duration as `{ seconds, nanos }`). Throws, naming the field, if the
 * object does not fit the message, so a generator bug surfaces before anything reaches a proxy.
 */
export function encodeMessage(typeUrl: string, value: Record<string, unknown>): Uint8Array {
  const type = messageType(typeUrl);
  const problem = type.verify(value);
  if (problem) throw new Error(`${typeUrl}: ${problem}`);
  return type.encode(type.fromObject(value)).finish();
}

/** Decodes into the same plain-object shape encodeMessage takes (enums as names, longs as numbers). */
export function decodeMessage(typeUrl: string, bytes: Uint8Array): Record<string, unknown> {
  const type = messageType(typeUrl);
  return type.toObject(type.decode(bytes), { enums: String, longs: Number, defaults: false, oneofs: false });
}

/** Milliseconds as a google.protobuf.Duration object. */
export function duration(ms: number): { seconds: number; nanos: number } {
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1_000_000 };
}
