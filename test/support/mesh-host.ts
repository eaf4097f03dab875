// Runs build/mesh.wasm through the TypeScript Proxy-Wasm host and turns each request into the
// decision the conformance table speaks of: who answers, with what status and headers.
import { readFileSync } from "node:fs";
import { type HttpStream, type Plugin, ProxyWasmHost, SharedData } from "../../host/index.ts";
import { CLUSTER_HEADER } from "../../schema/headers.ts";
import { RELEASE_WASM } from "./artifacts.ts";

let compiled: WebAssembly.Module | undefined;

export function meshModule(): WebAssembly.Module {
  compiled ??= new WebAssembly.Module(readFileSync(RELEASE_WASM));
  return compiled;
}

export interface MeshRequest {
  method?: string;
  path?: string;
  authority?: string;
  headers?: Record<string, string>;
}

export interface Decision {
  status: number;
  /** The upstream cluster the request went to; null for a local reply. */
  cluster: string | null;
  /** Request headers as the upstream would receive them (null for a local reply). */
  upstreamHeaders: Map<string, string> | null;
  responseHeaders: Map<string, string>;
  body: string;
}

export function requestPairs(request: MeshRequest): [string, string][] {
  const pairs: [string, string][] = [
    [":method", request.method ?? "GET"],
    [":scheme", "http"],
    [":authority", request.authority ?? "reviews"],
  ];
  if (request.path !== undefined) pairs.push([":path", request.path]);
  for (const [name, value] of Object.entries(request.headers ?? {})) pairs.push([name.toLowerCase(), value]);
  return pairs;
}

function toMap(pairs: readonly (readonly [string, string])[]): Map<string, string> {
  const map = new Map<string, string>();
  for (const [name, value] of pairs) if (!map.has(name)) map.set(name, value);
  return map;
}

export interface MeshOptions {
  /** Simulated worker threads (Envoy --concurrency): VMs sharing one SharedData. */
  vms?: number;
  clock?: { now(): bigint };
}

/** A mesh plugin loaded into `vms` VMs over one shared-data store, as Envoy does per worker. */
export class MeshUnderTest {
  readonly plugins: Plugin[];
  readonly hosts: ProxyWasmHost[];
  private next = 0;

  private constructor(hosts: ProxyWasmHost[], plugins: Plugin[]) {
    this.hosts = hosts;
    this.plugins = plugins;
  }

  static async start(config: unknown, options: MeshOptions = {}): Promise<MeshUnderTest> {
    const sharedData = new SharedData();
    const hosts: ProxyWasmHost[] = [];
    const plugins: Plugin[] = [];
    for (let i = 0; i < (options.vms ?? 1); i++) {
      const host = new ProxyWasmHost({
        module: meshModule(),
        sharedData,
        ...(options.clock ? { clock: options.clock } : {}),
      });
      hosts.push(host);
      plugins.push(await host.createPlugin({ configuration: JSON.stringify(config), rootId: "wasmesh" }));
    }
    return new MeshUnderTest(hosts, plugins);
  }

  /** Configures every VM again, as a new plugin in the same VM (Envoy's ECDS update). */
  async reconfigure(config: unknown): Promise<void> {
    for (let i = 0; i < this.hosts.length; i++) {
      const host = this.hosts[i] as ProxyWasmHost;
      this.plugins[i] = await host.createPlugin({ configuration: JSON.stringify(config), rootId: "wasmesh" });
    }
  }

  /** A metric's value: the VMs share one stats store, as Envoy keeps one stat per name across workers. */
  metric(name: string): number {
    return (this.hosts[0] as ProxyWasmHost).metric(name) ?? 0;
  }

  /** Bytes of linear memory of the first VM (it only grows: a leak shows up here). */
  memoryBytes(): number {
    return (this.hosts[0] as ProxyWasmHost).memoryBytes();
  }

  /** The next VM in turn, like Envoy's listener handing connections to worker threads. */
  pick(vm?: number): Plugin {
    const index = vm ?? this.next++ % this.plugins.length;
    const plugin = this.plugins[index];
    if (plugin === undefined) throw new Error(`no VM ${index}`);
    return plugin;
  }

  /**
   * Sends one request through a VM; when it is not answered locally, the "upstream" named by the
   * routing header answers `upstreamStatus` (a function of the cluster).
   */
  request(request: MeshRequest, upstream: (cluster: string) => number = () => 200, vm?: number): Decision {
    const stream = this.pick(vm).newHttpStream();
    try {
      return decide(stream, request, upstream);
    } finally {
      stream.complete();
    }
  }
}

export function decide(
  stream: HttpStream,
  request: MeshRequest,
  upstream: (cluster: string) => number,
): Decision {
  const result = stream.requestHeaders(requestPairs(request), true);
  const local = result.localResponse;
  if (local) {
    return {
      status: local.status,
      cluster: null,
      upstreamHeaders: null,
      responseHeaders: toMap(local.headers),
      body: new TextDecoder().decode(local.body),
    };
  }
  const upstreamHeaders = toMap(result.headers);
  const cluster = upstreamHeaders.get(CLUSTER_HEADER) ?? null;
  const status = cluster === null ? 404 : upstream(cluster);
  const response = stream.responseHeaders(
    [
      [":status", String(status)],
      ["x-upstream", cluster ?? "none"],
    ],
    true,
  );
  return {
    status,
    cluster,
    upstreamHeaders,
    responseHeaders: toMap(response.headers),
    body: "",
  };
}

export interface ConfigureOutcome {
  ok: boolean;
  /** The module's own explanation (its error log line), or "" when configuration succeeded. */
  error: string;
}

/** Offers `configuration` to a fresh VM, as Envoy does with a new plugin, and reports the verdict. */
export async function configureMesh(configuration: string | Uint8Array): Promise<ConfigureOutcome> {
  const host = new ProxyWasmHost({ module: meshModule() });
  const result = await host.tryCreatePlugin({ configuration, rootId: "wasmesh" });
  if (result.ok) return { ok: true, error: "" };
  const line = result.logs.find((entry) => entry.message.startsWith("wasmesh: invalid plugin configuration"));
  return { ok: false, error: line?.message ?? result.error };
}
