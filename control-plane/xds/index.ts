// The xDS server (ADS over gRPC, state of the world and delta) and its contracts.

export type { ConfigCache, ConfigProvider, Snapshot, TypeResources } from "./cache.ts";
export type {
  DecodedDeltaResponse,
  DecodedResponse,
  DeltaDiscoveryRequest,
  DiscoveryRequest,
  NodeInfo,
} from "./codec.ts";
export { ADS_SERVICE_NAME, DELTA_METHOD, SOTW_METHOD } from "./codec.ts";
export {
  type ParseNode,
  type ProxyAdmission,
  type ProxyAuthenticator,
  type XdsLog,
  XdsServer,
  type XdsServerOptions,
} from "./server.ts";
// The pieces, for tests and tools that drive the protocol without gRPC.
export { SnapshotCache } from "./snapshot.ts";
export type { ProxyStatus, Rejection } from "./status.ts";
export { DeltaStream, PUSH_ORDER, SotwStream, StreamCaches, type StreamHooks, XdsStream } from "./stream.ts";
