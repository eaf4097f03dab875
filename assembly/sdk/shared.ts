// Shared data and shared queues: state visible to every VM (Envoy worker thread) of a plugin.
import {
  proxy_dequeue_shared_queue,
  proxy_enqueue_shared_queue,
  proxy_get_shared_data,
  proxy_register_shared_queue,
  proxy_resolve_shared_queue,
  proxy_set_shared_data,
  WasmResult,
} from "./abi";
import { ptrOf, RETURN_DATA, RETURN_SIZE, RETURN_U32, resetReturn, takeBuffer, utf8 } from "./memory";

/** A shared value with the compare-and-swap token that guards the next write. */
export class SharedValue {
  constructor(
    public data: ArrayBuffer | null,
    /** 0 when the key does not exist yet: a write with cas 0 is unconditional. */
    public cas: u32,
  ) {}
}

export function getSharedData(key: string): SharedValue {
  return getSharedDataEncoded(utf8(key));
}

/** Like getSharedData, with the key already UTF-8 encoded (hot paths encode keys once). */
export function getSharedDataEncoded(encoded: ArrayBuffer): SharedValue {
  resetReturn();
  store<u32>(RETURN_U32, 0);
  const result = proxy_get_shared_data(
    ptrOf(encoded),
    encoded.byteLength,
    RETURN_DATA,
    RETURN_SIZE,
    RETURN_U32,
  );
  if (result != WasmResult.Ok) return new SharedValue(null, 0);
  const data = takeBuffer();
  return new SharedValue(data, load<u32>(RETURN_U32));
}

/**
 * Writes `value` if nobody wrote the key since `cas` was read; returns CasMismatch otherwise, and
 * the caller re-reads and retries. That is how state stays consistent across worker threads.
 */
export function setSharedData(key: string, value: ArrayBuffer, cas: u32): WasmResult {
  return setSharedDataEncoded(utf8(key), value, cas);
}

export function setSharedDataEncoded(encoded: ArrayBuffer, value: ArrayBuffer, cas: u32): WasmResult {
  return proxy_set_shared_data(
    ptrOf(encoded),
    encoded.byteLength,
    ptrOf(value),
    value.byteLength,
    cas,
  ) as WasmResult;
}

export function registerSharedQueue(name: string): u32 {
  const encoded = utf8(name);
  if (proxy_register_shared_queue(ptrOf(encoded), encoded.byteLength, RETURN_U32) != WasmResult.Ok) return 0;
  return load<u32>(RETURN_U32);
}

export function resolveSharedQueue(vmId: string, name: string): u32 {
  const vm = utf8(vmId);
  const encoded = utf8(name);
  const result = proxy_resolve_shared_queue(
    ptrOf(vm),
    vm.byteLength,
    ptrOf(encoded),
    encoded.byteLength,
    RETURN_U32,
  );
  if (result != WasmResult.Ok) return 0;
  return load<u32>(RETURN_U32);
}

export function enqueueSharedQueue(queueId: u32, value: ArrayBuffer): WasmResult {
  return proxy_enqueue_shared_queue(queueId, ptrOf(value), value.byteLength) as WasmResult;
}

/** The next item, or null when the queue is empty. */
export function dequeueSharedQueue(queueId: u32): ArrayBuffer | null {
  resetReturn();
  if (proxy_dequeue_shared_queue(queueId, RETURN_DATA, RETURN_SIZE) != WasmResult.Ok) return null;
  return takeBuffer();
}
