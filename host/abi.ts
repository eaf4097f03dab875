// Proxy-Wasm ABI v0.2.1 constants, as proxy-wasm-cpp-host and Envoy define them.

/** WasmResult: what every host call returns. */
export const Status = {
  Ok: 0,
  NotFound: 1,
  BadArgument: 2,
  SerializationFailure: 3,
  ParseFailure: 4,
  BadExpression: 5,
  InvalidMemoryAccess: 6,
  Empty: 7,
  CasMismatch: 8,
  ResultMismatch: 9,
  InternalFailure: 10,
  BrokenConnection: 11,
  Unimplemented: 12,
} as const;
export type Status = (typeof Status)[keyof typeof Status];

/** What on_request_headers & co. return. Anything but Continue stops the stream in 0.2.x. */
export const Action = {
  Continue: 0,
  StopIteration: 1,
  StopAllIterationAndBuffer: 3,
  StopAllIterationAndWatermark: 4,
} as const;
export type Action = (typeof Action)[keyof typeof Action];

export const MapType = {
  RequestHeaders: 0,
  RequestTrailers: 1,
  ResponseHeaders: 2,
  ResponseTrailers: 3,
  GrpcReceiveInitialMetadata: 4,
  GrpcReceiveTrailingMetadata: 5,
  HttpCallResponseHeaders: 6,
  HttpCallResponseTrailers: 7,
} as const;
export type MapType = (typeof MapType)[keyof typeof MapType];
export const MAX_MAP_TYPE = 7;

export const BufferType = {
  RequestBody: 0,
  ResponseBody: 1,
  DownstreamData: 2,
  UpstreamData: 3,
  HttpCallResponseBody: 4,
  GrpcReceiveBuffer: 5,
  VmConfiguration: 6,
  PluginConfiguration: 7,
  CallData: 8,
} as const;
export type BufferType = (typeof BufferType)[keyof typeof BufferType];
export const MAX_BUFFER_TYPE = 8;

export const StreamType = {
  Request: 0,
  Response: 1,
  Downstream: 2,
  Upstream: 3,
} as const;
export type StreamType = (typeof StreamType)[keyof typeof StreamType];

export const MetricType = {
  Counter: 0,
  Gauge: 1,
  Histogram: 2,
} as const;
export type MetricType = (typeof MetricType)[keyof typeof MetricType];

export const LogLevel = {
  Trace: 0,
  Debug: 1,
  Info: 2,
  Warn: 3,
  Error: 4,
  Critical: 5,
} as const;
export type LogLevel = (typeof LogLevel)[keyof typeof LogLevel];

export const LOG_LEVEL_NAMES = ["trace", "debug", "info", "warn", "error", "critical"] as const;
export type LogLevelName = (typeof LOG_LEVEL_NAMES)[number];

/** The ABI versions a module can declare by exporting `proxy_abi_version_<x>_<y>_<z>`. */
export const ABI_VERSION_EXPORTS = {
  proxy_abi_version_0_2_1: "0.2.1",
  proxy_abi_version_0_2_0: "0.2.0",
  proxy_abi_version_0_1_0: "0.1.0",
} as const;
export type AbiVersion = (typeof ABI_VERSION_EXPORTS)[keyof typeof ABI_VERSION_EXPORTS];

/** gRPC status codes Envoy accepts for a local reply; anything else (SDKs send -1) means none. */
export const GRPC_STATUS_MAX = 16;
/** Envoy's gRPC status for a stream failed by a Wasm panic. */
export const GRPC_UNAVAILABLE = 14;
