// Proxy-Wasm ABI v0.2.1: the host functions a module imports and the enums they use.
// This file is the thin layer; everything else in the SDK is typed API on top of it.
// Reference: https://github.com/proxy-wasm/spec/tree/main/abi-versions/v0.2.1

export enum WasmResult {
  Ok = 0,
  NotFound = 1,
  BadArgument = 2,
  SerializationFailure = 3,
  ParseFailure = 4,
  BadExpression = 5,
  InvalidMemoryAccess = 6,
  Empty = 7,
  CasMismatch = 8,
  ResultMismatch = 9,
  InternalFailure = 10,
  BrokenConnection = 11,
  Unimplemented = 12,
}

/** What a stream callback tells the host to do next. */
export enum FilterStatus {
  Continue = 0,
  /** Envoy's StopIteration: the host waits until the module calls continue_stream. */
  Pause = 1,
}

export enum LogLevel {
  Trace = 0,
  Debug = 1,
  Info = 2,
  Warn = 3,
  Error = 4,
  Critical = 5,
}

export enum MapType {
  RequestHeaders = 0,
  RequestTrailers = 1,
  ResponseHeaders = 2,
  ResponseTrailers = 3,
  GrpcReceiveInitialMetadata = 4,
  GrpcReceiveTrailingMetadata = 5,
  HttpCallResponseHeaders = 6,
  HttpCallResponseTrailers = 7,
}

export enum BufferType {
  RequestBody = 0,
  ResponseBody = 1,
  DownstreamData = 2,
  UpstreamData = 3,
  HttpCallResponseBody = 4,
  GrpcReceiveBuffer = 5,
  VmConfiguration = 6,
  PluginConfiguration = 7,
  CallData = 8,
}

export enum StreamType {
  Request = 0,
  Response = 1,
  Downstream = 2,
  Upstream = 3,
}

export enum MetricType {
  Counter = 0,
  Gauge = 1,
  Histogram = 2,
}

// Out-parameters are pointers into module memory; pointer and size pairs are (usize, usize).
@external("env", "proxy_log")
export declare function proxy_log(level: u32, messageData: usize, messageSize: usize): u32;
@external("env", "proxy_get_log_level")
export declare function proxy_get_log_level(returnLevel: usize): u32;
@external("env", "proxy_get_current_time_nanoseconds")
export declare function proxy_get_current_time_nanoseconds(returnTime: usize): u32;
@external("env", "proxy_set_tick_period_milliseconds")
export declare function proxy_set_tick_period_milliseconds(period: u32): u32;

@external("env", "proxy_get_buffer_bytes")
export declare function proxy_get_buffer_bytes(
  bufferType: u32,
  start: u32,
  maxSize: u32,
  returnData: usize,
  returnSize: usize,
): u32;
@external("env", "proxy_set_buffer_bytes")
export declare function proxy_set_buffer_bytes(
  bufferType: u32,
  start: u32,
  size: u32,
  data: usize,
  dataSize: usize,
): u32;

@external("env", "proxy_get_header_map_pairs")
export declare function proxy_get_header_map_pairs(mapType: u32, returnData: usize, returnSize: usize): u32;
@external("env", "proxy_set_header_map_pairs")
export declare function proxy_set_header_map_pairs(mapType: u32, data: usize, size: usize): u32;
@external("env", "proxy_get_header_map_value")
export declare function proxy_get_header_map_value(
  mapType: u32,
  keyData: usize,
  keySize: usize,
  returnValueData: usize,
  returnValueSize: usize,
): u32;
@external("env", "proxy_replace_header_map_value")
export declare function proxy_replace_header_map_value(
  mapType: u32,
  keyData: usize,
  keySize: usize,
  valueData: usize,
  valueSize: usize,
): u32;
@external("env", "proxy_add_header_map_value")
export declare function proxy_add_header_map_value(
  mapType: u32,
  keyData: usize,
  keySize: usize,
  valueData: usize,
  valueSize: usize,
): u32;
@external("env", "proxy_remove_header_map_value")
export declare function proxy_remove_header_map_value(mapType: u32, keyData: usize, keySize: usize): u32;
@external("env", "proxy_get_header_map_size")
export declare function proxy_get_header_map_size(mapType: u32, returnSize: usize): u32;

@external("env", "proxy_get_property")
export declare function proxy_get_property(
  pathData: usize,
  pathSize: usize,
  returnValueData: usize,
  returnValueSize: usize,
): u32;
@external("env", "proxy_set_property")
export declare function proxy_set_property(pathData: usize, pathSize: usize, valueData: usize, valueSize: usize): u32;

@external("env", "proxy_get_shared_data")
export declare function proxy_get_shared_data(
  keyData: usize,
  keySize: usize,
  returnValueData: usize,
  returnValueSize: usize,
  returnCas: usize,
): u32;
@external("env", "proxy_set_shared_data")
export declare function proxy_set_shared_data(
  keyData: usize,
  keySize: usize,
  valueData: usize,
  valueSize: usize,
  cas: u32,
): u32;

@external("env", "proxy_register_shared_queue")
export declare function proxy_register_shared_queue(nameData: usize, nameSize: usize, returnId: usize): u32;
@external("env", "proxy_resolve_shared_queue")
export declare function proxy_resolve_shared_queue(
  vmIdData: usize,
  vmIdSize: usize,
  nameData: usize,
  nameSize: usize,
  returnId: usize,
): u32;
@external("env", "proxy_dequeue_shared_queue")
export declare function proxy_dequeue_shared_queue(queueId: u32, returnValueData: usize, returnValueSize: usize): u32;
@external("env", "proxy_enqueue_shared_queue")
export declare function proxy_enqueue_shared_queue(queueId: u32, valueData: usize, valueSize: usize): u32;

@external("env", "proxy_continue_stream")
export declare function proxy_continue_stream(streamType: u32): u32;
@external("env", "proxy_close_stream")
export declare function proxy_close_stream(streamType: u32): u32;
@external("env", "proxy_send_local_response")
export declare function proxy_send_local_response(
  statusCode: u32,
  detailsData: usize,
  detailsSize: usize,
  bodyData: usize,
  bodySize: usize,
  headersData: usize,
  headersSize: usize,
  grpcStatus: i32,
): u32;

@external("env", "proxy_set_effective_context")
export declare function proxy_set_effective_context(contextId: u32): u32;
@external("env", "proxy_done")
export declare function proxy_done(): u32;

@external("env", "proxy_call_foreign_function")
export declare function proxy_call_foreign_function(
  nameData: usize,
  nameSize: usize,
  argumentsData: usize,
  argumentsSize: usize,
  returnResultsData: usize,
  returnResultsSize: usize,
): u32;

@external("env", "proxy_define_metric")
export declare function proxy_define_metric(metricType: u32, nameData: usize, nameSize: usize, returnId: usize): u32;
@external("env", "proxy_increment_metric")
export declare function proxy_increment_metric(metricId: u32, offset: i64): u32;
@external("env", "proxy_record_metric")
export declare function proxy_record_metric(metricId: u32, value: u64): u32;
@external("env", "proxy_get_metric")
export declare function proxy_get_metric(metricId: u32, returnValue: usize): u32;
