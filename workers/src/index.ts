// wasmesh's edge worker: the same mesh.wasm the sidecars run, through the TypeScript Proxy-Wasm
// host, configured live from the control plane (HTTP with ETag, or KV).
import { Hono } from "hono";
import meshModule from "../../build/mesh.wasm";
import { DEFAULT_EDGE_NAME, readSettings, type WorkerEnv } from "./config-source.ts";
import { EdgeMesh } from "./edge-mesh.ts";
import { proxyThroughMesh } from "./proxy.ts";
import { Tracer } from "./tracing.ts";

interface Runtime {
  mesh: EdgeMesh;
  tracer: Tracer;
  /** Which worker this is (EDGE_NAME): its spans' service.instance.id. */
  edgeName: string;
}

/** One per isolate, made on the first request (bindings are only known then). */
let runtime: Runtime | { error: string } | undefined;

function start(env: WorkerEnv): Runtime | { error: string } {
  const read = readSettings(env);
  if (!read.ok) {
    console.log(`wasmesh edge: misconfigured: ${read.error}`);
    return { error: read.error };
  }
  const { source, refreshMs } = read.settings;
  const log = (message: string) => console.log(message);
  return {
    mesh: new EdgeMesh({ module: meshModule, source, refreshMs, log }),
    tracer: new Tracer(log),
    edgeName: env.EDGE_NAME || DEFAULT_EDGE_NAME,
  };
}

function unavailable(message: string): Response {
  return new Response(`${message}\n`, {
    status: 503,
    headers: { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" },
  });
}

const app = new Hono<{ Bindings: WorkerEnv }>();

app.all("*", async (c) => {
  runtime ??= start(c.env);
  if ("error" in runtime) return unavailable(`wasmesh edge is misconfigured: ${runtime.error}`);
  const { mesh, tracer, edgeName } = runtime;
  const background = (work: Promise<unknown>) => c.executionCtx.waitUntil(work);
  const ready = await mesh.ready(background);
  // Read after the await and used at once: the stream opens on the generation in force.
  const generation = ready ? mesh.active : undefined;
  // Never route without a configuration: there is nothing sound to route by.
  if (!generation) return unavailable(`wasmesh edge has no configuration yet: ${mesh.lastProblem}`);
  const tracing = generation.config.tracing;
  // Without a tracing section the worker adds nothing, as Envoy without tracing: the client's
  // trace headers go on as they came.
  const trace = tracing ? tracer.begin(c.req.raw.headers, tracing, edgeName, background) : undefined;
  return proxyThroughMesh(c.req.raw, generation, trace);
});

export default app;
