// A real Envoy running build/mesh.wasm in front of two counting upstreams (clusters v1 and v2),
// routed by the filter's `x-wasmesh-cluster` header.
import { renameSync, writeFileSync } from "node:fs";
import http from "node:http";
import { join } from "node:path";
import { RELEASE_WASM } from "./artifacts.ts";
import {
  clusterHeaderRouteConfig,
  type EnvoyProcess,
  freePort,
  httpListener,
  startEnvoy,
  wasmHttpFilter,
} from "./envoy.ts";
import { removeDir, tempDir } from "./temp.ts";
import { startUpstream, type Upstream } from "./upstreams.ts";
import { until } from "./wait.ts";

export interface MeshEnvoy {
  envoy: EnvoyProcess;
  v1: Upstream;
  v2: Upstream;
  port: number;
  send(request: HttpRequest): Promise<HttpResponse>;
  /** Pushes a new plugin configuration (raw text) through LDS into the running Envoy. */
  pushConfiguration(configuration: string): void;
  stop(): Promise<void>;
}

export interface HttpRequest {
  method?: string;
  path?: string;
  authority?: string;
  headers?: Record<string, string>;
  /** Sent with its Content-Length, or with `chunked` in two chunks without one. */
  body?: string;
  chunked?: boolean;
}

export interface HttpResponse {
  status: number;
  headers: Map<string, string>;
  body: string;
}

/** One HTTP/1.1 request on a keep-alive agent; headers are sent as latin1 bytes, as given. */
export function sendHttp(port: number, request: HttpRequest, agent?: http.Agent): Promise<HttpResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: "127.0.0.1",
        port,
        method: request.method ?? "GET",
        path: request.path ?? "/",
        headers: {
          host: request.authority ?? "reviews",
          ...(request.body !== undefined && !request.chunked
            ? { "content-length": String(Buffer.byteLength(request.body)) }
            : {}),
          ...request.headers,
        },
        agent: agent ?? false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const headers = new Map<string, string>();
          for (const [name, value] of Object.entries(res.headers)) {
            if (value !== undefined) headers.set(name, Array.isArray(value) ? value.join(",") : value);
          }
          resolve({ status: res.statusCode ?? 0, headers, body: Buffer.concat(chunks).toString("utf8") });
        });
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    const body = request.body;
    if (body !== undefined && request.chunked) {
      // Two writes without a length: Node sends them as two chunks of a chunked body.
      req.write(body.slice(0, body.length / 2));
      req.end(body.slice(body.length / 2));
    } else req.end(body);
  });
}

/**
 * Sends requests until one is let through an open circuit, and returns it: the probe. The ejection
 * is a timer in the module, so a test waits it out with requests, each answered locally (503,
 * `x-wasmesh-circuit: open`) while the circuit is open; the caller counts what reached the origin.
 */
export async function probeAfterEjection(
  send: () => Promise<HttpResponse>,
  timeoutMs = 10_000,
): Promise<HttpResponse> {
  let response = await send();
  await until(
    "the open circuit to let a probe through",
    async () => {
      if (response.headers.get("x-wasmesh-circuit") !== "open") return true;
      if (response.status !== 503) throw new Error(`the open circuit answered ${response.status}, not 503`);
      response = await send();
      return false;
    },
    timeoutMs,
    50,
  );
  return response;
}

export interface MeshEnvoyOptions {
  config: unknown;
  concurrency?: number;
  wasmPath?: string;
  /** Raw configuration text, to feed Envoy something that is not valid JSON. */
  rawConfiguration?: string;
  exactBalance?: boolean;
}

/** The mesh listener: HTTP connection manager with the wasmesh filter, then the router. */
export function meshListener(options: {
  listenerPort: number;
  configuration: string;
  wasmPath: string;
  exactBalance?: boolean;
}): object {
  // Exact balancing hands each new connection to the worker with the fewest, so a test can put
  // traffic on every worker thread deterministically (it needs SO_REUSEPORT off).
  const balance = options.exactBalance
    ? { enable_reuse_port: false, connection_balance_config: { exact_balance: {} } }
    : {};
  return {
    "@type": "type.googleapis.com/envoy.config.listener.v3.Listener",
    ...httpListener({
      name: "mesh",
      port: options.listenerPort,
      routeConfig: clusterHeaderRouteConfig({ name: "mesh" }),
      httpFilters: [
        wasmHttpFilter({
          name: "wasmesh",
          rootId: "wasmesh",
          vmId: "wasmesh",
          wasmPath: options.wasmPath,
          configuration: options.configuration,
        }),
      ],
      extra: balance,
    }),
  };
}

/**
 * Clusters are static; the listener comes from a watched file (file-based LDS) so a test can
 * push a new filter configuration into the running Envoy and see it accepted or rejected.
 */
export function meshBootstrap(options: {
  adminPort: number;
  ldsDir: string;
  upstreams: Record<string, number>;
}): object {
  return {
    node: { id: "mesh-test", cluster: "mesh-test" },
    admin: { address: { socket_address: { address: "127.0.0.1", port_value: options.adminPort } } },
    dynamic_resources: {
      lds_config: {
        resource_api_version: "V3",
        path_config_source: {
          path: join(options.ldsDir, "lds.json"),
          watched_directory: { path: options.ldsDir },
        },
      },
    },
    static_resources: {
      clusters: Object.entries(options.upstreams).map(([name, port]) => ({
        name,
        type: "STATIC",
        connect_timeout: "1s",
        load_assignment: {
          cluster_name: name,
          endpoints: [
            {
              lb_endpoints: [
                { endpoint: { address: { socket_address: { address: "127.0.0.1", port_value: port } } } },
              ],
            },
          ],
        },
      })),
    },
  };
}

/** Replaces the watched LDS file atomically (Envoy reacts to the rename into place). */
export function writeListener(ldsDir: string, listener: object): void {
  const temp = join(ldsDir, `.lds-${process.pid}-${Date.now()}.json`);
  writeFileSync(temp, JSON.stringify({ version_info: String(Date.now()), resources: [listener] }));
  renameSync(temp, join(ldsDir, "lds.json"));
}

export async function startMeshEnvoy(options: MeshEnvoyOptions): Promise<MeshEnvoy> {
  const v1 = await startUpstream({ name: "v1" });
  const v2 = await startUpstream({ name: "v2" });
  const port = await freePort();
  const adminPort = await freePort();
  const ldsDir = tempDir("lds");
  const wasmPath = options.wasmPath ?? RELEASE_WASM;
  const listener = (configuration: string) =>
    meshListener({
      listenerPort: port,
      configuration,
      wasmPath,
      exactBalance: options.exactBalance ?? false,
    });
  writeListener(ldsDir, listener(options.rawConfiguration ?? JSON.stringify(options.config)));
  let envoy: EnvoyProcess;
  try {
    envoy = await startEnvoy({
      name: "mesh",
      concurrency: options.concurrency ?? 1,
      bootstrap: meshBootstrap({ adminPort, ldsDir, upstreams: { v1: v1.port, v2: v2.port } }),
    });
  } catch (error) {
    await Promise.all([v1.close(), v2.close()]);
    removeDir(ldsDir);
    throw error;
  }
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  return {
    envoy,
    v1,
    v2,
    port,
    send: (request) => sendHttp(port, request, agent),
    pushConfiguration: (configuration) => writeListener(ldsDir, listener(configuration)),
    async stop() {
      agent.destroy();
      await envoy.stop();
      await Promise.all([v1.close(), v2.close()]);
      removeDir(ldsDir);
    },
  };
}
