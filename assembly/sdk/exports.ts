// The callbacks of ABI v0.2.1 that the host calls. A module re-exports this file from its entry.
import { FilterStatus, LogLevel } from "./abi";
import { HttpContext, RootContext, rootFactoryFor } from "./context";
import { getPropertyString, log } from "./host";

export { proxy_on_memory_allocate } from "./memory";

// Brings the abort handler into the program; asconfig.json routes `abort` to it.
import "./abort";

const roots = new Map<u32, RootContext>();
const streams = new Map<u32, HttpContext>();
/** Streams whose root produced no HTTP context: the callbacks let them pass. */
const passthrough = new Set<u32>();

/** Callbacks that may have left garbage behind since the last garbage collection. */
let callbacksSinceCollect: u32 = 0;
const CALLBACKS_PER_COLLECT: u32 = 256;

/**
 * The module is built with AssemblyScript's minimal runtime: no shadow stack and no incremental
 * collector (a third of the module size and of the per-call cost). Its collector only runs when
 * asked, and it is only safe to ask when no managed reference lives on the Wasm stack, which is
 * true between callbacks; so collection happens at the end of callbacks, every few of them. Every
 * callback that can recur without bound counts (finished streams, passthrough streams, body
 * chunks, ticks, queue notifications), or a module that only ticks would grow forever.
 */
function collectGarbage(force: bool): void {
  callbacksSinceCollect++;
  if (force || callbacksSinceCollect >= CALLBACKS_PER_COLLECT) {
    callbacksSinceCollect = 0;
    __collect();
  }
}

export function proxy_abi_version_0_2_1(): void {}

export function proxy_on_context_create(contextId: u32, parentContextId: u32): void {
  if (parentContextId == 0) {
    const rootIdValue = getPropertyString(["plugin_root_id"]);
    const rootId = rootIdValue !== null ? rootIdValue : "";
    const factory = rootFactoryFor(rootId);
    if (factory === null) {
      log(LogLevel.Critical, "wasmesh: no root context registered for root_id '" + rootId + "'");
      unreachable();
    }
    roots.set(contextId, factory(contextId));
    return;
  }
  if (!roots.has(parentContextId)) {
    passthrough.add(contextId);
    return;
  }
  const http = roots.get(parentContextId).createHttpContext(contextId);
  if (http === null) passthrough.add(contextId);
  else streams.set(contextId, http);
}

export function proxy_on_vm_start(contextId: u32, vmConfigurationSize: u32): u32 {
  return roots.has(contextId) && roots.get(contextId).onVmStart(vmConfigurationSize) ? 1 : 0;
}

export function proxy_on_configure(contextId: u32, configurationSize: u32): u32 {
  const ok = roots.has(contextId) && roots.get(contextId).onConfigure(configurationSize);
  collectGarbage(true); // parsing leaves a document tree behind
  return ok ? 1 : 0;
}

export function proxy_on_tick(contextId: u32): void {
  if (roots.has(contextId)) roots.get(contextId).onTick();
  collectGarbage(false);
}

export function proxy_on_queue_ready(contextId: u32, queueId: u32): void {
  if (roots.has(contextId)) roots.get(contextId).onQueueReady(queueId);
  collectGarbage(false);
}

export function proxy_on_request_headers(contextId: u32, headerCount: u32, endOfStream: u32): u32 {
  if (!streams.has(contextId)) return FilterStatus.Continue;
  return streams.get(contextId).onRequestHeaders(headerCount, endOfStream != 0);
}

export function proxy_on_request_body(contextId: u32, bodySize: u32, endOfStream: u32): u32 {
  if (!streams.has(contextId)) return FilterStatus.Continue;
  const status = streams.get(contextId).onRequestBody(bodySize, endOfStream != 0);
  collectGarbage(false); // a long stream may send any number of chunks
  return status;
}

export function proxy_on_request_trailers(contextId: u32, trailerCount: u32): u32 {
  if (!streams.has(contextId)) return FilterStatus.Continue;
  return streams.get(contextId).onRequestTrailers(trailerCount);
}

export function proxy_on_response_headers(contextId: u32, headerCount: u32, endOfStream: u32): u32 {
  if (!streams.has(contextId)) return FilterStatus.Continue;
  return streams.get(contextId).onResponseHeaders(headerCount, endOfStream != 0);
}

export function proxy_on_response_body(contextId: u32, bodySize: u32, endOfStream: u32): u32 {
  if (!streams.has(contextId)) return FilterStatus.Continue;
  const status = streams.get(contextId).onResponseBody(bodySize, endOfStream != 0);
  collectGarbage(false);
  return status;
}

export function proxy_on_response_trailers(contextId: u32, trailerCount: u32): u32 {
  if (!streams.has(contextId)) return FilterStatus.Continue;
  return streams.get(contextId).onResponseTrailers(trailerCount);
}

export function proxy_on_log(contextId: u32): void {
  if (streams.has(contextId)) streams.get(contextId).onLog();
}

/** Returns 1 when the context is finished; a root may ask for more time (then calls proxy_done). */
export function proxy_on_done(contextId: u32): u32 {
  if (roots.has(contextId)) return roots.get(contextId).onDone() ? 1 : 0;
  return 1;
}

export function proxy_on_delete(contextId: u32): void {
  if (streams.has(contextId)) {
    streams.get(contextId).onDelete();
    streams.delete(contextId);
    collectGarbage(false);
    return;
  }
  if (passthrough.delete(contextId)) {
    collectGarbage(false); // createHttpContext may have allocated before returning null
    return;
  }
  if (roots.has(contextId)) {
    roots.get(contextId).onDelete();
    roots.delete(contextId);
  }
}
