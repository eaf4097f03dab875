// Envoy's API as wasmesh speaks it: the type URLs and protos of the resources it sends (loaded from
// the pinned @grpc/grpc-js-xds), their strict encoding, enum values, addresses, the sidecar's
// identity in Envoy's node, and what a proxy is sent. The layer the others share: it imports
// nothing of the control plane but the resource model (for the names a node may carry).
export { isIpAddress, socketAddress } from "./addresses.ts";
export { adsConfigSource, envoyEnum } from "./enums.ts";
export {
  DEFAULT_ADDRESSES,
  DEFAULT_PORTS,
  type EnvoyNode,
  type ModuleDelivery,
  NODE_METADATA,
  type NodeIdentityResult,
  nodeMetadata,
  type ProxyIdentity,
  parseNodeIdentity,
} from "./node.ts";
export {
  anyToObject,
  decodeMessage,
  duration,
  EXTENSION_TYPE,
  encodeMessage,
  envoyProtos,
  messageType,
  TYPE_URL,
  TYPE_URLS,
  type TypeUrl,
} from "./protos.ts";
export {
  LOCAL_MODULE_FILE,
  localModuleFile,
  type ModuleCode,
  type ProxyConfig,
  type XdsResource,
} from "./resources.ts";
export {
  CERTIFICATE_SECRET,
  certificateSecret,
  SDS_CLUSTER,
  SDS_SERVICE_NAME,
  SDS_SOCKET,
  SDS_STREAM_METHOD,
  SECRET_TYPE_URL,
  sdsConfigSource,
  TRUST_BUNDLE_SECRET,
  trustBundleSecret,
} from "./sds.ts";
// The messages wasmesh sends, typed from the same protos (Cluster, Listener, KnownAny, ...).
export type * from "./types.generated.ts";
