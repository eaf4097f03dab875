// A plugin's root context: configuration, ticks, http calls, shutdown.
import { BufferType, Status } from "./abi.ts";
import { ConstBuffer, type HostBuffer } from "./buffers.ts";
import { NANOS_PER_MS } from "./clock.ts";
import { Context } from "./context.ts";
import { HeaderMap } from "./headers.ts";
import type { AbiRoot, ContextVm, HttpCallData, InvokeResult } from "./interfaces.ts";
import { utf8 } from "./memory.ts";
import type { PropertyTree } from "./properties.ts";
import type { HttpCallRequest, HttpCallResponse, PluginOptions } from "./types.ts";

export class RootContext extends Context implements AbiRoot {
  readonly name: string;
  readonly rootId: string;
  readonly failOpen: boolean;
  configuration: Uint8Array;
  private readonly properties: PropertyTree;
  /** Envoy's temp_plugin_: the configuration readable while the plugin starts or configures. */
  private pendingConfiguration: Uint8Array | null = null;
  tickPeriodMs = 0;
  /** When the next tick is due (ns on the host clock), while a period is set. */
  nextTickAt: bigint | undefined;
  /** The response being delivered by proxy_on_http_call_response. */
  httpCallResponse: HttpCallData | null = null;
  /** What proxy_get_status reports (set while an http call failure is delivered). */
  status = { code: 0, message: "" };
  /** proxy_on_done returned false: the module will call proxy_done when it is finished. */
  pendingDone = false;
  deleted = false;

  constructor(vm: ContextVm, id: number, options: PluginOptions) {
    super(vm, id);
    this.rootId = options.rootId ?? "";
    this.name = options.name ?? this.rootId;
    this.failOpen = options.failOpen ?? false;
    this.properties = options.properties ?? {};
    this.configuration = toBytes(options.configuration ?? "");
  }

  get root(): RootContext {
    return this;
  }

  get pluginName(): string {
    return this.name;
  }

  pluginLayer(): PropertyTree {
    return {
      ...this.properties,
      plugin_name: this.name,
      plugin_root_id: this.rootId,
      plugin_vm_id: this.vm.vmId,
    };
  }

  override buffer(type: number): HostBuffer | null {
    if (type === BufferType.PluginConfiguration) {
      return this.pendingConfiguration ? new ConstBuffer(this.pendingConfiguration) : null;
    }
    return super.buffer(type);
  }

  /** proxy_on_context_create(id, 0) then proxy_on_vm_start, as Envoy's ContextBase::onStart. */
  start(): InvokeResult {
    this.pendingConfiguration = this.configuration;
    const created = this.vm.invoke(this, "proxy_on_context_create", [this.id, 0]);
    this.pendingConfiguration = null;
    if (!created.ok) return created;
    this.created = true;
    return this.vm.invoke(this, "proxy_on_vm_start", [this.id, this.vm.vmConfiguration.byteLength], 1);
  }

  /** proxy_on_configure with the configuration readable as BufferType.PluginConfiguration. */
  configure(configuration: Uint8Array): InvokeResult {
    this.pendingConfiguration = configuration;
    const result = this.vm.invoke(this, "proxy_on_configure", [this.id, configuration.byteLength], 1);
    this.pendingConfiguration = null;
    if (result.ok && result.value !== 0) this.configuration = configuration;
    return result;
  }

  /** Envoy re-arms the timer from now whenever the period is set. */
  setTickPeriod(periodMs: number): void {
    this.tickPeriodMs = periodMs;
    this.nextTickAt = periodMs > 0 ? this.vm.clock.now() + BigInt(periodMs) * NANOS_PER_MS : undefined;
  }

  /** Fires proxy_on_tick now if a period is set; the next tick is due one period later. */
  tick(): boolean {
    if (this.tickPeriodMs <= 0 || this.deleted || this.vm.failure) return false;
    this.vm.invoke(this, "proxy_on_tick", [this.id]);
    if (this.tickPeriodMs > 0)
      this.nextTickAt = this.vm.clock.now() + BigInt(this.tickPeriodMs) * NANOS_PER_MS;
    return true;
  }

  /**
   * Envoy's startShutdown for this plugin: on_done, then on_delete unless the module asks to wait
   * (its timer keeps running until it calls proxy_done).
   */
  shutdown(): void {
    if (this.deleted || this.pendingDone) return;
    if (this.vm.failure || !this.created) {
      this.delete(false);
      return;
    }
    const done = this.vm.invoke(this, "proxy_on_done", [this.id], 1);
    if (done.ok && done.value === 0) this.pendingDone = true;
    else this.delete(true);
  }

  /** proxy_done from this root: finishes a shutdown that on_done deferred. */
  done(): Status {
    if (!this.pendingDone) return Status.NotFound;
    this.pendingDone = false;
    this.vm.afterCall(() => this.delete(true));
    return Status.Ok;
  }

  private delete(callModule: boolean): void {
    if (this.deleted) return;
    this.deleted = true;
    this.tickPeriodMs = 0;
    this.nextTickAt = undefined;
    if (callModule && this.created && !this.vm.failure) this.vm.invoke(this, "proxy_on_delete", [this.id]);
    this.vm.contexts.delete(this.id);
  }

  /** Starts an http call for proxy_http_call; the response arrives through the event loop. */
  startHttpCall(request: HttpCallRequest): number {
    const handler = this.vm.httpCallHandler;
    const token = this.vm.nextHttpCallId();
    if (!handler) return token;
    const done = Promise.resolve()
      .then(() => handler(request))
      .then(
        (response) => this.deliverHttpCall(token, response),
        () => this.deliverHttpCall(token, undefined),
      );
    this.vm.trackPending(done);
    return token;
  }

  private deliverHttpCall(token: number, response: HttpCallResponse | undefined): void {
    if (this.deleted || this.vm.failure) return;
    if (!response) {
      // Envoy's onHttpCallFailure: a reset, reported through proxy_get_status.
      this.status = { code: Status.BrokenConnection, message: "reset" };
      this.vm.invoke(this, "proxy_on_http_call_response", [this.id, token, 0, 0, 0]);
      this.status = { code: 0, message: "" };
      return;
    }
    const data: HttpCallData = {
      headers: new HeaderMap(response.headers),
      body: toBytes(response.body ?? ""),
      trailers: new HeaderMap(response.trailers ?? []),
    };
    this.httpCallResponse = data;
    this.vm.invoke(this, "proxy_on_http_call_response", [
      this.id,
      token,
      data.headers.size,
      data.body.byteLength,
      data.trailers.size,
    ]);
    this.httpCallResponse = null;
  }
}

export function toBytes(value: string | Uint8Array): Uint8Array {
  return typeof value === "string" ? utf8(value) : value;
}
