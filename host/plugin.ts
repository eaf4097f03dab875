// A configured plugin (Envoy: one filter config = one root context in the VM).
import { LogLevel } from "./abi.ts";
import { NANOS_PER_MS } from "./clock.ts";
import type { InvokeResult } from "./interfaces.ts";
import { type RootContext, toBytes } from "./root-context.ts";
import { HttpStream } from "./stream.ts";
import { StreamContext } from "./stream-context.ts";
import type { LogEntry, StreamOptions, VmFailure } from "./types.ts";
import type { Vm } from "./vm.ts";

export type ConfigureResult = { ok: true } | { ok: false; error: string; logs: LogEntry[] };

export class Plugin {
  readonly #vm: Vm;
  readonly #root: RootContext;

  /** Made by ProxyWasmHost.createPlugin. */
  constructor(vm: Vm, root: RootContext) {
    this.#vm = vm;
    this.#root = root;
  }

  get name(): string {
    return this.#root.name;
  }

  get rootId(): string {
    return this.#root.rootId;
  }

  get rootContextId(): number {
    return this.#root.id;
  }

  /** The configuration the module last accepted. */
  get configuration(): Uint8Array {
    return this.#root.configuration;
  }

  /** The VM failure, if the VM this plugin runs in has failed. */
  get failure(): VmFailure | undefined {
    return this.#vm.failure;
  }

  /** "stopping" between an on_done that asked for time and the module's proxy_done. */
  get state(): "active" | "stopping" | "deleted" {
    return this.#root.deleted ? "deleted" : this.#root.pendingDone ? "stopping" : "active";
  }

  get shutDown(): boolean {
    return this.state !== "active";
  }

  /** A new HTTP stream: proxy_on_context_create(streamId, rootId) runs now. */
  newHttpStream(options: StreamOptions = {}): HttpStream {
    if (this.shutDown) throw new Error(`plugin ${this.name} has been shut down`);
    const context = new StreamContext(this.#vm, this.#vm.allocContextId(), this.#root, options);
    context.create();
    return new HttpStream(context);
  }

  /** Calls proxy_on_configure again on the same root context with new bytes. */
  reconfigure(configuration: string | Uint8Array): ConfigureResult {
    if (this.shutDown) throw new Error(`plugin ${this.name} has been shut down`);
    const bytes = toBytes(configuration);
    const { result, logs } = this.#vm.captureLogs(() => this.#root.configure(bytes));
    if (result.ok && result.value !== 0) return { ok: true };
    return { ok: false, error: explainFailure("proxy_on_configure", result, logs), logs };
  }

  /** Fires proxy_on_tick now, if the plugin has a tick period; true when it fired. */
  tick(): boolean {
    return this.#root.tick();
  }

  /** The period the module set with proxy_set_tick_period_milliseconds (0: no ticks). */
  tickPeriodMs(): number {
    return this.#root.tickPeriodMs;
  }

  /** Milliseconds until the next tick is due (0 if overdue), or undefined without a period. */
  nextTickDelayMs(): number | undefined {
    const at = this.#root.nextTickAt;
    if (at === undefined) return undefined;
    const left = at - this.#vm.clock.now();
    return left <= 0n ? 0 : Number(left) / Number(NANOS_PER_MS);
  }

  /** When the next tick is due on the host clock (ns), if one is scheduled. */
  nextTickAt(): bigint | undefined {
    return this.#root.nextTickAt;
  }

  /** Envoy's plugin shutdown: proxy_on_done, then proxy_on_delete (or after proxy_done). */
  shutdown(): void {
    this.#root.shutdown();
  }

  /** How often the root context called a foreign function (by name). */
  foreignCalls(name: string): number {
    return this.#root.foreignCalls(name);
  }
}

/**
 * The best explanation of a refused start or configuration: the most severe message the module
 * logged meanwhile (the first of them), else what happened.
 */
export function explainFailure(callback: string, result: InvokeResult, logs: LogEntry[]): string {
  if (!result.ok) {
    const { failure } = result;
    const said = failure.moduleMessage !== undefined ? `: ${failure.moduleMessage}` : "";
    return `wasm trap in ${failure.callback}: ${failure.message}${said}`;
  }
  let best: LogEntry | undefined;
  for (const entry of logs) {
    if (entry.source !== "module" || entry.level < LogLevel.Warn) continue;
    if (!best || entry.level > best.level) best = entry;
  }
  return best?.message ?? `${callback} returned false`;
}
