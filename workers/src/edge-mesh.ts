// The mesh as one isolate runs it: one Proxy-Wasm VM of mesh.wasm, the plugin configured from the
// current EdgeConfig, and the refresh of that configuration. State (breakers, the split's
// round-robin) is per isolate, as it is per Envoy process.
import { type HttpStream, LogLevel, type Plugin, ProxyWasmHost } from "../../host/index.ts";
import type { EdgeConfig } from "../../schema/edge-config.ts";
import { type ConfigSource, describe } from "./config-source.ts";

/** The root id the sidecars' filters use (the module's root context answers any root id). */
const ROOT_ID = "wasmesh";

export type Log = (message: string) => void;

/** One accepted configuration and the plugin the module built from it. */
export class Generation {
  readonly config: EdgeConfig;
  readonly plugin: Plugin;
  /** The VM the plugin runs in (its ticks are driven through it). */
  readonly host: ProxyWasmHost;
  readonly #nextOrigin = new Map<string, number>();
  #inFlight = 0;
  #retired = false;

  constructor(config: EdgeConfig, plugin: Plugin, host: ProxyWasmHost) {
    this.config = config;
    this.plugin = plugin;
    this.host = host;
  }

  /**
   * The origins of `cluster`: empty for a cluster the configuration lists without any (it selects
   * no Workload), undefined for one it does not list.
   */
  originsOf(cluster: string): readonly string[] | undefined {
    // hasOwn: a cluster named like an Object.prototype member must not find one.
    return Object.hasOwn(this.config.origins, cluster) ? this.config.origins[cluster] : undefined;
  }

  /** The next origin of `cluster`, round-robin; undefined when the configuration has none. */
  origin(cluster: string): string | undefined {
    const origins = this.originsOf(cluster);
    if (origins === undefined || origins.length === 0) return undefined;
    const turn = this.#nextOrigin.get(cluster) ?? 0;
    this.#nextOrigin.set(cluster, (turn + 1) % origins.length);
    return origins[turn % origins.length];
  }

  /** A new stream, and `done` to call when it is over (more calls are ignored). */
  open(): { stream: HttpStream; done: () => void } {
    const stream = this.plugin.newHttpStream();
    this.#inFlight++;
    let finished = false;
    const done = () => {
      if (finished) return;
      finished = true;
      stream.complete();
      this.#inFlight--;
      if (this.#retired && this.#inFlight === 0) this.plugin.shutdown();
    };
    return { stream, done };
  }

  /** A newer generation took over: the plugin goes once its last stream is over. */
  retire(): void {
    this.#retired = true;
    if (this.#inFlight === 0) this.plugin.shutdown();
  }
}

export interface EdgeMeshOptions {
  module: WebAssembly.Module;
  source: ConfigSource;
  refreshMs: number;
  log: Log;
}

export class EdgeMesh {
  readonly #options: EdgeMeshOptions;
  #host: ProxyWasmHost;
  #active: Generation | undefined;
  /** Identifies the document last seen (accepted or not), so an unchanged one is not reloaded. */
  #tag: string | undefined;
  /**
   * Why the document #tag names was refused (invalid, or the module refused it), reported with
   * each poll until another document comes; the worker serves its last good one meanwhile.
   */
  #refused: string | undefined;
  #lastAttemptMs = Number.NEGATIVE_INFINITY;
  #lastProblem = "the configuration has not been loaded yet";
  #loading: Promise<void> | undefined;
  #restarting: Promise<void> | undefined;

  constructor(options: EdgeMeshOptions) {
    this.#options = options;
    this.#host = this.#newHost();
  }

  /**
   * The generation in force. Read it right before opening a stream, with no await in between: a
   * refresh may retire the one an earlier read returned.
   */
  get active(): Generation | undefined {
    return this.#active;
  }

  /** Why the worker has no configuration (or why the last refresh failed). */
  get lastProblem(): string {
    return this.#lastProblem;
  }

  /**
   * Whether there is a configuration to serve a request with. Once configured, a due refresh runs
   * in the background (`background` is ctx.waitUntil), so only requests before the first good
   * configuration wait.
   */
  async ready(background: (work: Promise<unknown>) => void): Promise<boolean> {
    const due = Date.now() - this.#lastAttemptMs >= this.#options.refreshMs;
    if (this.#active) {
      if (due && !this.#loading) background(this.#refresh());
      if (this.#host.failure) {
        const config = this.#active.config;
        this.#restarting ??= this.#replaceFailedVm(config).finally(() => {
          this.#restarting = undefined;
        });
        await this.#restarting;
      }
      return true;
    }
    // Not configured yet: one attempt per interval at most. Requests wait for the attempt in flight;
    // between attempts they get the 503 at once.
    if (this.#loading) await this.#loading;
    else if (due) await this.#refresh();
    return this.#active !== undefined;
  }

  #refresh(): Promise<void> {
    this.#lastAttemptMs = Date.now();
    const loading = this.#load()
      .catch((error: unknown) => this.#problem(`refreshing failed: ${describe(error)}`))
      .finally(() => {
        this.#loading = undefined;
      });
    this.#loading = loading;
    return loading;
  }

  async #load(): Promise<void> {
    const outcome = await this.#options.source.load(this.#tag, this.#refused);
    if (outcome.kind === "unchanged") return;
    // A new document: what was refused of the last one no longer applies. (A source that could not
    // be read names no document: #tag and what is known of it stay.)
    if (outcome.tag !== undefined) {
      this.#tag = outcome.tag;
      this.#refused = undefined;
    }
    if (outcome.kind === "rejected") {
      if (outcome.tag !== undefined) this.#refused = outcome.reason;
      this.#problem(outcome.reason);
      return;
    }
    const config = outcome.config;
    if (this.#active?.config.version === config.version) return;
    await this.#install(config);
  }

  /** Builds the new plugin first; the old one keeps serving if the module refuses the new one. */
  async #install(config: EdgeConfig): Promise<void> {
    const host = this.#host.failure ? this.#newHost() : this.#host;
    let result: Awaited<ReturnType<ProxyWasmHost["tryCreatePlugin"]>>;
    try {
      result = await host.tryCreatePlugin({ configuration: JSON.stringify(config.filter), rootId: ROOT_ID });
    } catch (error) {
      const reason = `configuration ${config.version}: creating the plugin failed: ${describe(error)}`;
      this.#refused = reason;
      this.#problem(reason);
      return;
    }
    if (!result.ok) {
      const reason = `the module refused configuration ${config.version}: ${result.error}`;
      this.#refused = reason;
      this.#problem(reason);
      return;
    }
    const previous = this.#active;
    this.#host = host;
    this.#active = new Generation(config, result.plugin, host);
    previous?.retire();
    this.#lastProblem = "";
    this.#options.log(
      `wasmesh edge: serving configuration ${config.version}${previous ? ` (was ${previous.config.version})` : ""}`,
    );
  }

  /**
   * A trap fails the VM, and Envoy then fails every stream until a new VM is made. Here the next
   * request makes one with the configuration in force (breaker state starts afresh); until it is
   * up, streams on the failed VM get Envoy's 503.
   */
  async #replaceFailedVm(config: EdgeConfig): Promise<void> {
    const failure = this.#host.failure;
    this.#options.log(
      `wasmesh edge: the VM failed (${failure?.callback}: ${failure?.message}); starting a new one`,
    );
    await this.#install(config);
  }

  #problem(reason: string): void {
    this.#lastProblem = reason;
    const serving = this.#active
      ? `keeping configuration ${this.#active.config.version}`
      : "no configuration yet";
    this.#options.log(`wasmesh edge: ${serving}: ${reason}`);
  }

  #newHost(): ProxyWasmHost {
    const log = this.#options.log;
    return new ProxyWasmHost({
      module: this.#options.module,
      // Warnings and errors only (a refused configuration says why); nothing per request.
      logLevel: LogLevel.Warn,
      logSink: (entry) => log(`wasmesh module [${entry.levelName}]: ${entry.message}`),
    });
  }
}
