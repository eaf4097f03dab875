// The edge worker as it ships: the bundle `npm run build:worker` (wrangler deploy --dry-run) writes
// to build/worker, loaded into real workerd through miniflare with the compatibility settings and
// vars of workers/wrangler.toml. Plus a stand-in for a config endpoint where a test must break it,
// and `wrangler dev` as workers/README.md runs it against a local control plane.
import { spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { Miniflare, type WorkerdStructuredLog } from "miniflare";
import { unstable_getMiniflareWorkerOptions } from "wrangler";
import type { EdgeConfig } from "../../schema/edge-config.ts";
import type { FilterConfig } from "../../schema/filter-config.ts";
import { freePort } from "../support/envoy.ts";
import { type HttpRequest, type HttpResponse, sendHttp } from "../support/mesh-envoy.ts";
import { until } from "../support/wait.ts";

export const ROOT = fileURLToPath(new URL("../../", import.meta.url));
export const BUNDLE_DIR = `${ROOT}build/worker`;
export const WRANGLER_TOML = `${ROOT}workers/wrangler.toml`;

type ModuleType = "esm" | "wasm";
type Manifest = Record<string, { type: ModuleType; contents: Uint8Array<ArrayBuffer> }>;

/** The bundle's modules as wrangler would upload them: the script and the .wasm it imports. */
export function bundleModules(dir = BUNDLE_DIR): Manifest {
  const modules: Manifest = {};
  const files = readdirSync(dir);
  if (!files.includes("index.js")) throw new Error(`no bundle in ${dir}: run npm run build:worker`);
  const script = readFileSync(`${dir}/index.js`, "utf8");
  for (const file of files) {
    // wrangler names each .wasm by its hash and leaves earlier builds' in the directory: only the
    // one the script imports belongs to the bundle.
    const type: ModuleType | undefined = file.endsWith(".js")
      ? "esm"
      : file.endsWith(".wasm") && script.includes(`"./${file}"`)
        ? "wasm"
        : undefined;
    if (type) modules[file] = { type, contents: new Uint8Array(readFileSync(`${dir}/${file}`)) };
  }
  return modules;
}

function withModule(manifest: Manifest, module: Uint8Array<ArrayBuffer> | undefined): Manifest {
  if (module === undefined) return manifest;
  const wasm = Object.keys(manifest).filter((name) => manifest[name]?.type === "wasm");
  if (wasm.length !== 1) throw new Error(`expected one .wasm in the bundle, found ${wasm.join(", ")}`);
  return { ...manifest, [wasm[0] as string]: { type: "wasm", contents: module } };
}

export interface EdgeWorker {
  port: number;
  /** One request (keep-alive connections); headers go as latin1 bytes, as given. */
  send(request: HttpRequest): Promise<HttpResponse>;
  /** What the worker logged (console.log), in order. */
  readonly logs: string[];
  /** Writes a key of the CONFIG_KV namespace (only with kv: true); bytes as they are. */
  putKv(key: string, value: string | Uint8Array): Promise<void>;
  close(): Promise<void>;
}

export interface EdgeWorkerOptions {
  /** Vars overriding wrangler.toml's. */
  vars: Record<string, string>;
  /** Bind a local KV namespace as CONFIG_KV. */
  kv?: boolean;
  /**
   * Another bundle (index.js and its modules) to run with the edge worker's settings instead of
   * the edge worker's own build/worker: the benchmark's baseline.
   */
  bundleDir?: string;
  /**
   * Another Proxy-Wasm module in place of the bundle's mesh.wasm: the same script, host and glue
   * around a module that exercises what mesh.wasm does not (body callbacks).
   */
  module?: Uint8Array<ArrayBuffer>;
}

export async function startEdgeWorker(options: EdgeWorkerOptions): Promise<EdgeWorker> {
  const { workerOptions } = unstable_getMiniflareWorkerOptions(WRANGLER_TOML);
  const compatibilityDate = workerOptions.compatibilityDate;
  if (!compatibilityDate) throw new Error("workers/wrangler.toml has no compatibility_date");
  const tomlVars = Object.entries(workerOptions.bindings ?? {}).map(([name, value]) => [name, String(value)]);
  const vars = { ...Object.fromEntries(tomlVars), ...options.vars };
  const logs: string[] = [];
  const mf = new Miniflare({
    workers: [
      {
        config: {
          name: "wasmesh-edge",
          compatibilityDate,
          compatibilityFlags: workerOptions.compatibilityFlags ?? [],
          manifest: {
            mainModule: "index.js",
            modules: withModule(bundleModules(options.bundleDir), options.module),
          },
          env: {
            ...Object.fromEntries(
              Object.entries(vars).map(([name, value]) => [name, { type: "text", value }]),
            ),
            ...(options.kv ? { CONFIG_KV: { type: "kv", id: "wasmesh-edge-test" } } : {}),
          },
        },
      },
    ],
    host: "127.0.0.1",
    port: 0,
    handleStructuredLogs: (log: WorkerdStructuredLog) => {
      logs.push(log.message);
    },
  });
  const url = await mf.ready;
  const port = Number(url.port);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  return {
    port,
    logs,
    send: (request) => sendHttp(port, request, agent),
    async putKv(key, value) {
      const kv = await mf.getKVNamespace("CONFIG_KV");
      await kv.put(key, typeof value === "string" ? value : new Uint8Array(value).buffer);
    },
    async close() {
      agent.destroy();
      await mf.dispose();
    },
  };
}

/** An EdgeConfig whose clusters are reached at the given local origins. */
export function edgeConfig(
  version: string,
  filter: FilterConfig,
  origins: Record<string, string[]>,
): EdgeConfig {
  return { version, filter, origins };
}

/**
 * A stand-in for a config endpoint that a test can make misbehave: down, 500, or garbage. It
 * answers with an ETag and honours If-None-Match like the control plane's edge endpoint.
 */
export interface ConfigServer {
  url: string;
  serve(config: EdgeConfig): void;
  /** Serves this status and body verbatim, text or bytes (with a fresh ETag for a 200). */
  serveRaw(status: number, body: string | Uint8Array): void;
  /** Stops listening: connections are refused. */
  stop(): Promise<void>;
  /** Listens again on the same port. */
  start(): Promise<void>;
  /** Requests answered 200 / 304 so far. */
  readonly full: number;
  readonly notModified: number;
  /** The last request's headers (the worker's name, If-None-Match, what it refused). */
  readonly lastHeaders: http.IncomingHttpHeaders;
  close(): Promise<void>;
}

export async function startConfigServer(): Promise<ConfigServer> {
  let status = 404;
  let body: string | Uint8Array = "";
  let etag = '"none"';
  let revision = 0;
  let full = 0;
  let notModified = 0;
  let lastHeaders: http.IncomingHttpHeaders = {};
  const server = http.createServer((req, res) => {
    lastHeaders = req.headers;
    if (status === 200 && req.headers["if-none-match"] === etag) {
      notModified++;
      res.writeHead(304, { etag }).end();
      return;
    }
    if (status === 200) full++;
    res.writeHead(status, { etag, "content-type": "application/json" }).end(body);
  });
  const listen = (port: number) =>
    new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ host: "127.0.0.1", port }, () => {
        server.off("error", reject);
        resolve();
      });
    });
  await listen(0);
  const port = (server.address() as AddressInfo).port;
  const serveRaw = (nextStatus: number, nextBody: string | Uint8Array) => {
    status = nextStatus;
    body = nextBody;
    etag = `"r${++revision}"`;
  };
  const stop = () =>
    new Promise<void>((resolve) => {
      if (!server.listening) return resolve();
      server.close(() => resolve());
      server.closeAllConnections();
    });
  return {
    url: `http://127.0.0.1:${port}/v1/edge/config`,
    serve: (config) => serveRaw(200, JSON.stringify(config)),
    serveRaw,
    stop,
    start: () => listen(port),
    get full() {
      return full;
    },
    get notModified() {
      return notModified;
    },
    get lastHeaders() {
      return lastHeaders;
    },
    close: stop,
  };
}

export interface WranglerDev {
  port: number;
  /** One request (keep-alive connections); headers go as latin1 bytes, as given. */
  send(request: HttpRequest): Promise<HttpResponse>;
  /** What wrangler printed so far, the worker's console.log lines among it. */
  output(): string;
  close(): Promise<void>;
}

/**
 * `wrangler dev` in workers/, as workers/README.md runs it: wrangler bundles src/ and
 * build/mesh.wasm itself and runs them in local workerd, with `--var NAME:VALUE` over
 * wrangler.toml's vars. Offline: no fetch of Request.cf's data, no metrics.
 */
export async function startWranglerDev(vars: Record<string, string>): Promise<WranglerDev> {
  const port = await freePort();
  const inspectorPort = await freePort();
  const args = [
    `${ROOT}node_modules/wrangler/bin/wrangler.js`,
    "dev",
    "--ip",
    "127.0.0.1",
    "--port",
    String(port),
    "--inspector-port",
    String(inspectorPort),
    "--show-interactive-dev-session=false",
    ...Object.entries(vars).flatMap(([name, value]) => ["--var", `${name}:${value}`]),
  ];
  // Its own process group: wrangler starts workerd, and close() ends both.
  const child = spawn(process.execPath, args, {
    cwd: `${ROOT}workers`,
    env: {
      ...process.env,
      CLOUDFLARE_CF_FETCH_ENABLED: "false",
      WRANGLER_SEND_METRICS: "false",
      NO_COLOR: "1",
    },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  let output = "";
  const append = (chunk: Buffer) => {
    output += chunk.toString("utf8");
  };
  child.stdout?.on("data", append);
  child.stderr?.on("data", append);
  let exited = false;
  const exit = new Promise<void>((resolve) =>
    child.once("exit", () => {
      exited = true;
      resolve();
    }),
  );
  const signal = (name: NodeJS.Signals) => {
    if (child.pid === undefined) return;
    try {
      process.kill(-child.pid, name);
    } catch {
      // the group is gone already
    }
  };
  const close = async () => {
    agent.destroy();
    signal("SIGTERM");
    const timer = setTimeout(() => signal("SIGKILL"), 5_000);
    await exit;
    clearTimeout(timer);
    // workerd may outlive wrangler by a moment.
    signal("SIGKILL");
  };
  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  try {
    await until(
      () => `wrangler dev to be ready:\n${output}`,
      () => {
        if (exited) throw new Error(`wrangler dev exited:\n${output}`);
        return output.includes(`Ready on http://127.0.0.1:${port}`);
      },
      45_000,
      50,
    );
  } catch (error) {
    await close();
    throw error;
  }
  return {
    port,
    send: (request) => sendHttp(port, request, agent),
    output: () => output,
    close,
  };
}
