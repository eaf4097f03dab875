// `wasmesh server`: the control plane's pieces wired together. The store is the source of truth;
// every committed write (API, CLI, module push) bumps its revision, and the xDS server recomputes
// each connected proxy's configuration and pushes what changed, labelled with that revision.
import { existsSync, mkdirSync, readdirSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { serve } from "@hono/node-server";
import { createApi } from "./api/index.ts";
import { createKvPublisher, type KvPublisherOptions } from "./edge/kv.ts";
import { createEdgeConfigSource, storeSnapshot } from "./edge/source.ts";
import type { ProxyIdentity } from "./envoy/index.ts";
import { parseNodeIdentity } from "./envoy/index.ts";
import { MetricsRegistry } from "./metrics.ts";
import {
  createFileBlobStore,
  createModuleRegistry,
  loadBuiltinModule,
  MODULES_DIR,
  ValidationPool,
  type ValidationPoolOptions,
} from "./modules/index.ts";
import { type Resource, validateResource } from "./resources/index.ts";
import { openSqliteStore, type ResourceStore } from "./store/index.ts";
import { type CompiledMesh, compileMesh, proxyClassKey } from "./translate/index.ts";
import { VERSION } from "./version.ts";
import { SnapshotCache, XdsServer } from "./xds/index.ts";

export interface ControlPlaneOptions {
  dataDir: string;
  httpPort: number;
  xdsPort: number;
  address?: string;
  /** Path of the built-in module (default build/mesh.wasm). */
  builtinModule?: string;
  /**
   * Module validation: its worker pool (size, time limit per validation, the modules' memory
   * ceiling; defaults in modules/isolate.ts) and how many validations one client may run at once.
   */
  validation?: Pick<ValidationPoolOptions, "size" | "timeoutMs" | "memoryLimitBytes"> & {
    perClient?: number;
  };
  /** Also write the edge configuration into this Workers KV key after each change (edge/kv.ts). */
  edgeKv?: Omit<KvPublisherOptions, "source" | "log" | "fetch">;
  log?: (line: string) => void;
}

export interface ControlPlane {
  httpPort: number;
  xdsPort: number;
  store: ResourceStore;
  xds: XdsServer;
  close(): Promise<void>;
}

/**
 * What translation reads, kept in memory and refreshed after each committed write, so that a push
 * to thousands of proxies never goes back to the database per proxy.
 */
interface MeshState {
  revision: number;
  /** The revision's resources compiled once, for every proxy class to translate from. */
  mesh: CompiledMesh;
}

/** The module registry's blobs in dataDir, relative to it. */
function blobFiles(dataDir: string): string[] {
  const dir = join(dataDir, MODULES_DIR);
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((name) => name.endsWith(".wasm"))
    .map((name) => join(MODULES_DIR, name));
}

export async function startControlPlane(options: ControlPlaneOptions): Promise<ControlPlane> {
  const log = options.log ?? ((line: string) => console.log(line));
  const address = options.address ?? "127.0.0.1";
  mkdirSync(options.dataDir, { recursive: true });

  const builtin = await loadBuiltinModule(options.builtinModule);
  // Module blobs without a database: the database was lost, this is no new directory.
  const store = await openSqliteStore({
    dataDir: options.dataDir,
    otherData: () => blobFiles(options.dataDir),
  });
  const metrics = new MetricsRegistry();
  const validation = options.validation ?? {};
  const pool = new ValidationPool(validation);
  const modules = createModuleRegistry({
    store,
    blobs: createFileBlobStore(options.dataDir),
    builtin,
    validate: (bytes, validateOptions) => pool.validate(bytes, validateOptions),
    // The code sidecars get declares the same ceiling as its maximum memory.
    memoryLimitBytes: pool.memoryLimitBytes,
  });

  let state: MeshState = { revision: -1, mesh: compileMesh([], { modules: new Map() }) };

  async function load(): Promise<MeshState> {
    const revision = await store.revision();
    const resources: Resource[] = [];
    for (const stored of await store.list()) {
      // The store holds only validated resources; re-validating narrows the type and guards
      // against a database edited by hand.
      const result = validateResource(stored, { stored: true });
      if (result.ok) resources.push(result.resource);
      else
        log(
          `wasmesh: ignoring invalid stored ${stored.kind}/${stored.metadata.name}: ${result.errors[0]?.message}`,
        );
    }
    const wasmModules = resources.flatMap((r) =>
      r.kind === "WasmModule" ? [{ name: r.metadata.name, sha256: r.spec.sha256 }] : [],
    );
    return { revision, mesh: compileMesh(resources, { modules: await modules.codes(wasmModules) }) };
  }

  const xds = new XdsServer({
    metrics,
    parseNode: parseNodeIdentity,
    cache: new SnapshotCache({
      keyFor: (proxy: ProxyIdentity) => proxyClassKey(proxy),
      configFor: (proxy: ProxyIdentity) => state.mesh.translate(proxy),
    }),
    log: (level, message, fields) =>
      log(`xds ${level}: ${message}${fields ? ` ${JSON.stringify(fields)}` : ""}`),
  });

  // Reloads run one at a time, newest revision wins: a burst of writes costs one push each at most.
  let reloading: Promise<void> = Promise.resolve();
  const refresh = () => {
    reloading = reloading.then(async () => {
      const next = await load();
      if (next.revision === state.revision) return;
      state = next;
      xds.update(String(state.revision));
    });
    reloading = reloading.catch((error: unknown) => log(`wasmesh: reload failed: ${(error as Error).stack}`));
    return reloading;
  };
  store.watch(() => void refresh());
  state = await load();
  xds.update(String(state.revision));

  const xdsPort = await xds.listen(options.xdsPort, address);

  // Read from the store (not the in-memory state) so that GET /v1/edge/config right after a write
  // already answers for it; translated once per revision for the API and the KV publisher alike.
  const edge = createEdgeConfigSource(storeSnapshot(store, log));
  const edgeKv = options.edgeKv && createKvPublisher({ ...options.edgeKv, source: edge, log });
  if (edgeKv) {
    // Apart from the xDS reload: publishing runs in the background and never delays a push.
    store.watch(() => edgeKv.notify());
    edgeKv.notify();
  }

  const app = createApi({
    store,
    modules,
    status: () => xds.status(),
    metrics,
    version: VERSION,
    edge,
    ...(validation.perClient !== undefined ? { validationsPerClient: validation.perClient } : {}),
    validationRetryAfterSeconds: Math.ceil(pool.timeoutMs / 1000),
  });
  const http = serve({ fetch: app.fetch, port: options.httpPort, hostname: address });
  await new Promise<void>((resolve, reject) => {
    http.once("listening", resolve);
    http.once("error", reject);
  });
  const httpPort = (http.address() as AddressInfo).port;

  log(
    `wasmesh control plane: API http://${address}:${httpPort}  xDS grpc://${address}:${xdsPort}  data ${options.dataDir}  (revision ${state.revision})`,
  );

  let closed = false;
  return {
    httpPort,
    xdsPort,
    store,
    xds,
    async close() {
      if (closed) return;
      closed = true;
      await new Promise<void>((resolve) => {
        http.close(() => resolve());
        // Keep-alive connections would hold close() open.
        (http as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
      });
      await xds.close();
      await pool.close();
      await edgeKv?.close();
      await reloading;
      await store.close();
    },
  };
}
