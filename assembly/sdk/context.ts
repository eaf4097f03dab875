// Root and HTTP contexts, in the spirit of proxy-wasm-rust-sdk: a RootContext per plugin (per VM)
// owns configuration, timers and shared state; an HttpContext per request sees that request.
import {
  BufferType,
  FilterStatus,
  proxy_close_stream,
  proxy_continue_stream,
  proxy_send_local_response,
  proxy_set_effective_context,
  proxy_set_tick_period_milliseconds,
  StreamType,
  WasmResult,
} from "./abi";
import { HeaderPair, serializeHeaders } from "./headers";
import { getBuffer } from "./host";
import { ptrOf, utf8 } from "./memory";

export class RootContext {
  constructor(public readonly contextId: u32) {}

  /** Called once per VM. Returning false fails the VM. */
  onVmStart(vmConfigurationSize: u32): bool {
    return true;
  }

  /** Called with each plugin configuration. Returning false makes the proxy reject it. */
  onConfigure(configurationSize: u32): bool {
    return true;
  }

  onTick(): void {}

  onQueueReady(queueId: u32): void {}

  /** Returns null to let requests pass without an HTTP context. */
  createHttpContext(contextId: u32): HttpContext | null {
    return null;
  }

  /** Called when the proxy drains the plugin; return false to finish later with `done()`. */
  onDone(): bool {
    return true;
  }

  onDelete(): void {}

  pluginConfiguration(size: u32): ArrayBuffer | null {
    if (size == 0) return new ArrayBuffer(0);
    return getBuffer(BufferType.PluginConfiguration, 0, size);
  }

  vmConfiguration(size: u32): ArrayBuffer | null {
    if (size == 0) return new ArrayBuffer(0);
    return getBuffer(BufferType.VmConfiguration, 0, size);
  }

  /** 0 stops ticks. Envoy applies the period to the root context of whoever calls it. */
  setTickPeriod(milliseconds: u32): void {
    proxy_set_tick_period_milliseconds(milliseconds);
  }
}

export class HttpContext {
  constructor(
    public readonly contextId: u32,
    public readonly root: RootContext,
  ) {}

  onRequestHeaders(headerCount: u32, endOfStream: bool): FilterStatus {
    return FilterStatus.Continue;
  }
  onRequestBody(bodySize: u32, endOfStream: bool): FilterStatus {
    return FilterStatus.Continue;
  }
  onRequestTrailers(trailerCount: u32): FilterStatus {
    return FilterStatus.Continue;
  }
  onResponseHeaders(headerCount: u32, endOfStream: bool): FilterStatus {
    return FilterStatus.Continue;
  }
  onResponseBody(bodySize: u32, endOfStream: bool): FilterStatus {
    return FilterStatus.Continue;
  }
  onResponseTrailers(trailerCount: u32): FilterStatus {
    return FilterStatus.Continue;
  }
  /** The stream finished (access-log time); the last chance to read request and response data. */
  onLog(): void {}
  onDelete(): void {}

  /** Answers the request from the filter; the upstream never sees it. */
  sendLocalResponse(status: u32, body: string, headers: HeaderPair[], details: string = ""): WasmResult {
    const encodedBody = utf8(body);
    const encodedHeaders = serializeHeaders(headers);
    // Envoy requires response code details to be a single token without spaces.
    const encodedDetails = utf8(details);
    return proxy_send_local_response(
      status,
      ptrOf(encodedDetails),
      encodedDetails.byteLength,
      ptrOf(encodedBody),
      encodedBody.byteLength,
      ptrOf(encodedHeaders),
      encodedHeaders.byteLength,
      -1,
    ) as WasmResult;
  }

  /** Resumes a request this context paused; callable from the root context (e.g. on a tick). */
  resumeRequest(): WasmResult {
    proxy_set_effective_context(this.contextId);
    return proxy_continue_stream(StreamType.Request) as WasmResult;
  }

  resumeResponse(): WasmResult {
    proxy_set_effective_context(this.contextId);
    return proxy_continue_stream(StreamType.Response) as WasmResult;
  }

  closeRequest(): WasmResult {
    proxy_set_effective_context(this.contextId);
    return proxy_close_stream(StreamType.Request) as WasmResult;
  }
}

export type RootFactory = (contextId: u32) => RootContext;

class RootRegistration {
  constructor(
    public rootId: string,
    public factory: RootFactory,
  ) {}
}

const registrations = new Array<RootRegistration>();

/**
 * Registers the root context for a plugin `root_id` ("" matches any root id without its own
 * registration). Call from the module's top level, which runs in `_initialize`.
 */
export function registerRootContext(rootId: string, factory: RootFactory): void {
  registrations.push(new RootRegistration(rootId, factory));
}

export function rootFactoryFor(rootId: string): RootFactory | null {
  let fallback: RootFactory | null = null;
  for (let i = 0; i < registrations.length; i++) {
    const registration = registrations[i];
    if (registration.rootId == rootId) return registration.factory;
    if (registration.rootId.length == 0) fallback = registration.factory;
  }
  return fallback;
}
