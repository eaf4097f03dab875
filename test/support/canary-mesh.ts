// The canary mesh run as a user runs it, for the data-plane proofs of issue 10: `wasmesh server` as
// a process, test/fixtures/canary-mesh.yaml applied with `wasmesh apply` (after `wasmesh modules
// push` of the tag module its WasmPlugin uses), and every sidecar started by `wasmesh dataplane run`
// in front of a local app, registering its own Workload. Resources change through the CLI and the
// HTTP API only.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  type ControlPlaneProcess,
  dataplaneToken,
  revisionOf,
  startControlPlaneProcess,
  waitForStatus,
  wasmesh,
} from "./control-plane.ts";
import { type AgentProcess, startAgentProcess } from "./dataplane.ts";
import { REPO_ROOT } from "./envoy.ts";
import { type LoadResult, startLoad } from "./load.ts";
import { tagModule } from "./tag-module.ts";
import { tempDir } from "./temp.ts";
import { startUpstream, type Upstream, type UpstreamOptions } from "./upstreams.ts";
import { until } from "./wait.ts";

export const CANARY_MESH_FILE = join(REPO_ROOT, "test", "fixtures", "canary-mesh.yaml");
const API_VERSION = "wasmesh.io/v1alpha1";

export interface CanaryAgent {
  /** The Workload's name and Envoy's node id; its app answers `x-upstream: <name>`. */
  name: string;
  /** productpage or reviews in the canary mesh; any Service the manifests given define otherwise. */
  service: string;
  labels?: Record<string, string>;
  /** The API URL the agent is given (--cp); default the control plane's. */
  cp?: string;
  /** More `dataplane run` flags. */
  args?: string[];
  /** How its app behaves (startUpstream's options besides the name). */
  app?: Omit<UpstreamOptions, "name">;
}

export interface CanaryMesh {
  readonly cp: ControlPlaneProcess;
  /** The agents by name. */
  readonly agents: Map<string, AgentProcess>;
  /** The apps behind them, by the agent's name. */
  readonly apps: Map<string, Upstream>;
  agent(name: string): AgentProcess;
  app(name: string): Upstream;
  /** Starts agents, and resolves once each is ready, registered, and every proxy has the result. */
  startAgents(agents: CanaryAgent[]): Promise<void>;
  /** `wasmesh apply -f -` with these resources; throws on a non-zero exit. Resolves to the revision. */
  apply(...resources: unknown[]): Promise<number>;
  /** PUT /v1/routes/reviews with this split over version v1 and v2; resolves to its revision. */
  split(v1: number, v2: number): Promise<number>;
  /** `wasmesh modules push` of these bytes as module `tagger`; throws on a non-zero exit. */
  pushTagger(bytes: Uint8Array): Promise<void>;
  /** Resolves once each named proxy (default: every running agent) has ACKed `revision` (default: the store's). */
  synced(revision?: number, names?: string[]): Promise<void>;
  /** `wasmesh ARGS` against this control plane: stdout and stderr; throws on a non-zero exit. */
  cli(args: string[], input?: string | Uint8Array): Promise<{ stdout: string; stderr: string }>;
  /** n requests, one after another, through `agent`'s outbound listener to `host`. */
  send(agent: string, host: string, n: number, headers?: Record<string, string>): Promise<LoadResult>;
  close(): Promise<void>;
}

export function resource(kind: string, name: string, spec: unknown) {
  return { apiVersion: API_VERSION, kind, metadata: { name }, spec };
}

export function reviewsSplit(v1: number, v2: number) {
  return resource("Route", "reviews", {
    service: "reviews",
    rules: [
      {
        name: "canary",
        destinations: [
          { service: "reviews", subset: { version: "v1" }, weight: v1 },
          { service: "reviews", subset: { version: "v2" }, weight: v2 },
        ],
      },
    ],
  });
}

export interface CanaryMeshOptions {
  /**
   * Manifest files to apply (`wasmesh apply -f`) instead of the canary mesh and its tag module: the
   * same control plane and agents for another mesh's resources.
   */
  manifests?: readonly string[];
}

/** The control plane with the canary mesh applied (tag module version 1 pushed first), no agents yet. */
export async function startCanaryMesh(options: CanaryMeshOptions = {}): Promise<CanaryMesh> {
  const cp = await startControlPlaneProcess();
  const agents = new Map<string, AgentProcess>();
  const apps = new Map<string, Upstream>();
  const tokens = new Map<string, string>();
  const running = () => [...agents.entries()].filter(([, a]) => a.running).map(([n]) => n);

  const cli = async (args: string[], input?: string | Uint8Array) => {
    const result = await wasmesh(args, { api: cp.api, ...(input !== undefined ? { input } : {}) });
    if (result.code !== 0)
      throw new Error(`wasmesh ${args.join(" ")}: exit ${result.code}: ${result.stderr}`);
    return result;
  };
  const mesh: CanaryMesh = {
    cp,
    agents,
    apps,
    agent(name) {
      const agent = agents.get(name);
      if (!agent) throw new Error(`no agent ${name}`);
      return agent;
    },
    app(name) {
      const app = apps.get(name);
      if (!app) throw new Error(`no app ${name}`);
      return app;
    },
    async startAgents(list) {
      for (const spec of list) {
        const app = await startUpstream({ ...spec.app, name: spec.name });
        apps.set(spec.name, app);
        // Each service's agents share a dataplane token of it, as an operator would hand out.
        let token = tokens.get(spec.service);
        if (token === undefined) {
          token = await dataplaneToken(cp.api, spec.service);
          tokens.set(spec.service, token);
        }
        const labels = Object.entries(spec.labels ?? {}).map(([k, v]) => `${k}=${v}`);
        agents.set(
          spec.name,
          startAgentProcess({
            token,
            args: [
              "--name",
              spec.name,
              "--service",
              spec.service,
              "--app-port",
              String(app.port),
              ...(labels.length > 0 ? ["--labels", labels.join(",")] : []),
              "--cp",
              spec.cp ?? cp.api,
              "--xds",
              cp.xds,
              ...(spec.args ?? []),
            ],
          }),
        );
      }
      await Promise.all(list.map((spec) => mesh.agent(spec.name).waitReady()));
      await until(
        `workloads ${list.map((s) => s.name).join(", ")} to be registered`,
        async () => {
          const { body } = await cp.request("GET", "/v1/workloads");
          const names = new Set(
            (body as { items: { metadata: { name: string } }[] }).items.map((w) => w.metadata.name),
          );
          return list.every((spec) => names.has(spec.name));
        },
        20_000,
        50,
      );
      await mesh.synced();
    },
    async apply(...resources) {
      await cli(["apply", "-f", "-"], resources.map((r) => JSON.stringify(r)).join("\n---\n"));
      return revisionOf(cp.api);
    },
    async split(v1, v2) {
      const put = await cp.request("PUT", "/v1/routes/reviews", reviewsSplit(v1, v2));
      if (put.status !== 200)
        throw new Error(`PUT /v1/routes/reviews: ${put.status} ${JSON.stringify(put.body)}`);
      return Number((put.body as { metadata: { resourceVersion: string } }).metadata.resourceVersion);
    },
    async pushTagger(bytes) {
      const file = join(tempDir("tagger"), "tag.wasm");
      writeFileSync(file, bytes);
      await cli(["modules", "push", file, "--name", "tagger"]);
    },
    async synced(revision, names) {
      const target = revision ?? (await revisionOf(cp.api));
      const nodeIds = names ?? running();
      await waitForStatus(
        cp.api,
        (proxies) =>
          nodeIds.every((id) => {
            const proxy = proxies.find((p) => p.nodeId === id);
            return proxy !== undefined && Number(proxy.syncedVersion ?? -1) >= target;
          }),
        30_000,
      );
    },
    cli,
    async send(agent, host, n, headers = {}) {
      const { outbound } = await mesh.agent(agent).ports();
      return startLoad({
        url: `http://127.0.0.1:${outbound}/`,
        headers: { host, ...headers },
        requests: n,
        concurrency: 1,
        timeoutMs: 15_000,
      }).result;
    },
    async close() {
      await Promise.all([...agents.values()].map((a) => a.stop()));
      await Promise.all([...apps.values()].map((a) => a.close()));
      await cp.stop();
    },
  };
  try {
    if (options.manifests !== undefined) {
      for (const file of options.manifests) await cli(["apply", "-f", file]);
    } else {
      await mesh.pushTagger(await tagModule(1));
      await cli(["apply", "-f", CANARY_MESH_FILE]);
    }
  } catch (error) {
    await cp.stop();
    throw error;
  }
  return mesh;
}
