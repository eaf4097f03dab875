// Proxy-Wasm ABI v0.2.1: the host functions a module imports. AssemblyScript imports the
// declarations of a file named env.ts from the module "env", which is where proxies put them.
// Out-parameters are pointers into module memory; pointer and size pairs are (usize, usize).
export declare function proxy_log(level: u32, messageData: usize, messageSize: usize): u32;
export declare function proxy_get_log_level(returnLevel: usize): u32;
export declare function proxy_get_current_time_nanoseconds(returnTime: usize): u32;
export declare function proxy_set_tick_period_milliseconds(period: u32): u32;

export declare function proxy_get_buffer_bytes(
  bufferType: u32,
  start: u32,
  maxSize: u32,
  returnData: usize,
  returnSize: usize,
): u32;
export declare function proxy_set_buffer_bytes(
  bufferType: u32,
  start: u32,
  size: u32,
  data: usize,
  dataSize: usize,
): u32;

export declare function proxy_get_header_map_pairs(mapType: u32, returnData: usize, returnSize: usize): u32;
export declare function proxy_set_header_map_pairs(mapType: u32, data: usize, size: usize): u32;
export declare function proxy_get_header_map_value(
  mapType: u32,
  keyData: usize,
  keySize: usize,
  returnValueData: usize,
  returnValueSize: usize,
): u32;
export declare function proxy_replace_header_map_value(
  mapType: u32,
  keyData: usize,
  keySize: usize,
  valueData: usize,
  valueSize: usize,
): u32;
export declare function proxy_add_header_map_value(
  mapType: u32,
  keyData: usize,
  keySize: usize,
  valueData: usize,
  valueSize: usize,
): u32;
export declare function proxy_remove_header_map_value(mapType: u32, keyData: usize, keySize: usize): u32;
export declare function proxy_get_header_map_size(mapType: u32, returnSize: usize): u32;

export declare function proxy_get_property(
  pathData: usize,
  pathSize: usize,
  returnValueData: usize,
  returnValueSize: usize,
): u32;
export declare function proxy_set_property(
  pathData: usize,
  pathSize: usize,
  valueData: usize,
  valueSize: usize,
): u32;

export declare function proxy_get_shared_data(
  keyData: usize,
  keySize: usize,
  returnValueData: usize,
  returnValueSize: usize,
  returnCas: usize,
): u32;
export declare function proxy_set_shared_data(
  keyData: usize,
  keySize: usize,
  valueData: usize,
  valueSize: usize,
  cas: u32,
): u32;

export declare function proxy_register_shared_queue(nameData: usize, nameSize: usize, returnId: usize): u32;
export declare function proxy_resolve_shared_queue(
  vmIdData: usize,
  vmIdSize: usize,
  nameData: usize,
  nameSize: usize,
  returnId: usize,
): u32;
export declare function proxy_dequeue_shared_queue(
  queueId: u32,
  returnValueData: usize,
  returnValueSize: usize,
): u32;
export declare function proxy_enqueue_shared_queue(queueId: u32, valueData: usize, valueSize: usize): u32;

export declare function proxy_continue_stream(streamType: u32): u32;
export declare function proxy_close_stream(streamType: u32): u32;
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

export declare function proxy_set_effective_context(contextId: u32): u32;
export declare function proxy_done(): u32;

export declare function proxy_call_foreign_function(
  nameData: usize,
  nameSize: usize,
  argumentsData: usize,
  argumentsSize: usize,
  returnResultsData: usize,
  returnResultsSize: usize,
): u32;

export declare function proxy_define_metric(
  metricType: u32,
  nameData: usize,
  nameSize: usize,
  returnId: usize,
): u32;
export declare function proxy_increment_metric(metricId: u32, offset: i64): u32;
export declare function proxy_record_metric(metricId: u32, value: u64): u32;
export declare function proxy_get_metric(metricId: u32, returnValue: usize): u32;
