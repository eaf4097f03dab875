// The host side of a Proxy-Wasm context: what the ABI calls made "from" a context can see and do.
// The base class is the behaviour of a context that has no HTTP stream (the VM context used for
// _initialize, and root contexts); StreamContext overrides it.
import { BufferType, MapType, Status, StreamType } from "./abi.ts";
import { ConstBuffer, EMPTY_BUFFER, type HostBuffer } from "./buffers.ts";
import type { HeaderMap } from "./headers.ts";
import type { AbiContext, AbiRoot, ContextVm, LocalReplyRequest } from "./interfaces.ts";
import { lookupLayers, type PropertyTree, serializeProperty } from "./properties.ts";

export abstract class Context implements AbiContext {
  readonly vm: ContextVm;
  readonly id: number;
  /** Envoy's in_vm_context_created_: proxy_on_context_create ran (or needed not run). */
  created = false;
  /** True during proxy_on_log, when header maps are read-only and absent ones mean NotFound. */
  accessLogPhase = false;
  /** Made on the first foreign call: most contexts never make one. */
  private foreign: Map<string, number> | null = null;

  constructor(vm: ContextVm, id: number) {
    this.vm = vm;
    this.id = id;
    vm.contexts.set(id, this);
  }

  /** The root context whose tick and http calls this context uses (null for the VM context). */
  abstract get root(): AbiRoot | null;

  abstract get pluginName(): string | undefined;

  /** Maps readable now (Envoy's getConstMap); null means "not available in this callback". */
  constMap(type: number): HeaderMap | null {
    const response = this.root?.httpCallResponse;
    if (type === MapType.HttpCallResponseHeaders) return response?.headers ?? null;
    if (type === MapType.HttpCallResponseTrailers) return response?.trailers ?? null;
    return null;
  }

  /** Maps writable now (Envoy's getMap). */
  mutableMap(_type: number): HeaderMap | null {
    return null;
  }

  /**
   * Buffers. Envoy answers NotFound only for the plugin configuration outside on_configure and
   * for an http call body outside its callback; other absent buffers read as empty.
   */
  buffer(type: number): HostBuffer | null {
    switch (type) {
      case BufferType.VmConfiguration:
        return new ConstBuffer(this.vm.vmConfiguration);
      case BufferType.PluginConfiguration:
        return null;
      case BufferType.HttpCallResponseBody: {
        const response = this.root?.httpCallResponse;
        return response ? new ConstBuffer(response.body) : null;
      }
      default:
        return EMPTY_BUFFER;
    }
  }

  /**
   * Property layers, highest priority first, for paths whose first segment is `top` (a layer
   * that cannot hold such paths may be left out, which spares building it).
   */
  propertyLayers(_top: string): PropertyTree[] {
    return this.root ? [this.root.pluginLayer(), this.vm.properties] : [this.vm.properties];
  }

  property(path: readonly string[]): Uint8Array | undefined {
    const value = lookupLayers(this.propertyLayers(path[0] ?? ""), path);
    return value === undefined ? undefined : serializeProperty(value);
  }

  /** Envoy stores set properties in the stream's filter state; without a stream: NotFound. */
  setProperty(_path: string, _value: Uint8Array): Status {
    return Status.NotFound;
  }

  /** Without a stream Envoy has nothing to continue and answers Ok (Upstream: Unimplemented). */
  continueStream(type: number): Status {
    return type === StreamType.Upstream ? Status.Unimplemented : Status.Ok;
  }

  closeStream(_type: number): Status {
    return Status.Ok;
  }

  /** Without a stream the reply goes nowhere, and Envoy still answers Ok. */
  sendLocalResponse(_reply: LocalReplyRequest): void {}

  countForeignCall(name: string): void {
    this.foreign ??= new Map();
    this.foreign.set(name, (this.foreign.get(name) ?? 0) + 1);
  }

  foreignCalls(name: string): number {
    return this.foreign?.get(name) ?? 0;
  }
}

/** Context 0: the VM itself, current while _initialize / _start run. */
export class VmContext extends Context {
  get root(): AbiRoot | null {
    return null;
  }

  get pluginName(): string | undefined {
    return undefined;
  }
}
