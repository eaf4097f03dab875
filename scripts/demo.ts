// npm run demo (./dev demo): the control plane with its embedded SQLite store, and a demo mesh
// driven by it. Local upstreams play productpage, reviews v1, reviews v2 and ratings, and each has
// a sidecar run by the data-plane agent (what `wasmesh dataplane run` runs): it writes Envoy's
// bootstrap, starts Envoy, registers the Workload once the sidecar is ready and fetches the modules
// by digest. The demo applies deploy/demo/mesh.yaml through the HTTP API, sends sample traffic
// through productpage's sidecar, prints what the mesh did (the split as the upstreams counted it,
// and as the Route in the store says), then keeps running until Ctrl-C.
//   --once         temporary data dirs and free ports; exit after the sample traffic (the demo's test)
//   --mesh FILE    another mesh file than deploy/demo/mesh.yaml (e.g. a copy with other weights)
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { DEFAULT_PORTS } from "../control-plane/envoy/index.ts";
import { credentialsPath } from "../control-plane/security/credentials.ts";
import { startControlPlane } from "../control-plane/server.ts";
import { type Agent, startAgent } from "../dataplane/agent.ts";
import { DENIED_HEADER } from "../schema/headers.ts";
import { findEnvoy, REPO_ROOT } from "../test/support/envoy.ts";
import { runLoad } from "../test/support/load.ts";
import { sendHttp } from "../test/support/mesh-envoy.ts";
import { removeDir, tempDir } from "../test/support/temp.ts";
import { startUpstream } from "../test/support/upstreams.ts";
import { until } from "../test/support/wait.ts";
import { DEMO_MESH_FILE, routeSplit } from "./demo-mesh.ts";

const { values: options } = parseArgs({
  options: { once: { type: "boolean" }, mesh: { type: "string" } },
});
const once = options.once === true;
const dataDir = once ? tempDir("demo") : join(REPO_ROOT, ".wasmesh");
const agentsDir = once ? tempDir("demo-dataplane") : join(REPO_ROOT, ".wasmesh-dataplane");
const meshFile = options.mesh === undefined ? DEMO_MESH_FILE : resolve(options.mesh);

const plane = await startControlPlane({
  dataDir,
  httpPort: once ? 0 : 5681,
  xdsPort: once ? 0 : 5678,
  // `./dev wasmesh …` in another terminal finds the admin token there (not for a throwaway --once).
  ...(once ? {} : { credentialsFile: credentialsPath() }),
  log: () => {},
});
const api = `http://127.0.0.1:${plane.httpPort}`;
// The demo drives the mesh as its operator: with the admin token of the data directory.
const adminToken = readFileSync(plane.adminTokenFile, "utf8").trim();

async function call(method: string, path: string, body?: string, contentType?: string) {
  const response = await fetch(`${api}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${adminToken}`,
      ...(body !== undefined ? { "content-type": contentType ?? "application/json" } : {}),
    },
    ...(body !== undefined ? { body } : {}),
  });
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${await response.text()}`);
  return response.json() as Promise<Record<string, unknown>>;
}

await call("POST", "/v1/apply", readFileSync(meshFile, "utf8"), "application/yaml");

// The workloads: an app each (answering `x-upstream: <app>`) behind a sidecar the agent runs.
const workloads: { name: string; service: string; app: string; labels: Record<string, string> }[] = [
  { name: "productpage-1", service: "productpage", app: "productpage", labels: {} },
  { name: "reviews-v1-1", service: "reviews", app: "reviews-v1", labels: { version: "v1" } },
  { name: "reviews-v2-1", service: "reviews", app: "reviews-v2", labels: { version: "v2" } },
  { name: "ratings-1", service: "ratings", app: "ratings", labels: {} },
];
const apps = await Promise.all(workloads.map((w) => startUpstream({ name: w.app })));
// Each service's agents get a dataplane token of that service, as `wasmesh token dataplane` issues.
const agentTokens = new Map<string, string>();
for (const service of new Set(workloads.map((w) => w.service))) {
  const issued = await call(
    "POST",
    "/v1/tokens",
    JSON.stringify({ role: "dataplane", service, name: "demo" }),
  );
  agentTokens.set(service, String(issued.secret));
}
const envoyBin = findEnvoy();
const agents: Agent[] = [];
const stopAll = async () => {
  // The agents' shutdown: each Workload deleted, then its Envoy drained and stopped.
  await Promise.all(agents.map((agent) => agent.shutdown()));
  await plane.close();
  await Promise.all(apps.map((app) => app.close()));
  if (once) {
    removeDir(dataDir);
    removeDir(agentsDir);
  }
};
try {
  for (const [i, workload] of workloads.entries()) {
    // Outside --once, productpage's sidecar takes the well-known ports (15001 outbound, 15000
    // admin) so that the commands printed below stay the same; the others pick free ones.
    const fixed = !once && i === 0;
    agents.push(
      await startAgent({
        name: workload.name,
        service: workload.service,
        labels: workload.labels,
        appPort: (apps[i] as (typeof apps)[number]).port,
        address: "127.0.0.1",
        zone: undefined,
        ports: fixed ? { outbound: DEFAULT_PORTS.outbound, admin: DEFAULT_PORTS.admin } : {},
        api,
        token: agentTokens.get(workload.service) as string,
        xds: `127.0.0.1:${plane.xdsPort}`,
        envoyBin,
        dataDir: join(agentsDir, workload.name),
        leaseSeconds: 30,
        drainSeconds: once ? 0 : 2,
        envoyArgs: [],
        log: () => {},
        envoyOutput: () => {},
      }),
    );
  }
  // Each agent registers its Workload once its sidecar is ready; then every sidecar gets the
  // endpoints of the others.
  await until(
    "the demo's agents to register their Workloads",
    async () => {
      const { items } = (await call("GET", "/v1/workloads")) as { items: unknown[] };
      return items.length === workloads.length;
    },
    60_000,
    100,
  );
  const { revision } = (await call("GET", "/healthz")) as { revision: number };
  await plane.xds.waitForAck(String(revision), 20_000);
} catch (error) {
  await stopAll();
  throw error;
}

const stop = async () => {
  await stopAll();
  process.exit(0);
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);

const [productpage, v1, v2] = apps;
if (!productpage || !v1 || !v2) throw new Error("the demo's apps did not start");
const outboundPort = (agents[0] as Agent).ports.outbound;
const adminPort = (agents[0] as Agent).ports.admin;
const url = `http://127.0.0.1:${outboundPort}/reviews`;
const requests = 100;
v1.reset();
v2.reset();
const canary = await runLoad({
  url,
  headers: { host: "reviews" },
  requests,
  concurrency: 1,
  timeoutMs: 5000,
});
// What reached each version, counted where it arrived.
const measured = { v1: v1.count, v2: v2.count };
const share = (count: number) => `${Math.round((1000 * count) / requests) / 10}%`;
const failed = canary.non2xx + canary.errors;
const split = await routeSplit(api, adminToken, "reviews");
const tester = await sendHttp(outboundPort, {
  path: "/reviews/1",
  headers: { host: "reviews", "x-user": "tester" },
});
const denied = await sendHttp(outboundPort, { path: "/ratings/1", headers: { host: "ratings" } });

const sidecars = workloads
  .map((w, i) => {
    const { inbound, outbound, admin, ready } = (agents[i] as Agent).ports;
    return `  ${w.name.padEnd(14)}  inbound :${inbound} -> app :${apps[i]?.port}  outbound :${outbound}  admin :${admin}  ready :${ready}`;
  })
  .join("\n");
console.log(`wasmesh demo: a control plane and a mesh driven by it

  control plane   API ${api} (admin token in ${plane.adminTokenFile})  xDS 127.0.0.1:${plane.xdsPort}  data ${dataDir}
  web console     ${api}/gui/ (sign in with a token: wasmesh token create --role read-only)
  mesh            ${meshFile}
  sidecars (one data-plane agent each, data in ${agentsDir}):
${sidecars}

sample traffic through productpage-1's sidecar (app :${productpage.port}):
  split of Route reviews in the store    -> ${split}
  ${`${requests} requests to reviews, measured`.padEnd(37)}  -> v1 ${measured.v1} (${share(measured.v1)}), v2 ${measured.v2} (${share(measured.v2)})${failed > 0 ? `, ${failed} failed` : ""}
  x-user: tester                         -> ${tester.headers.get("x-upstream")}
  productpage -> ratings                 -> ${denied.status} (${DENIED_HEADER}: ${denied.headers.get(DENIED_HEADER)})
`);

if (once) await stop();
else {
  console.log(`try (in another terminal):
  curl -s http://127.0.0.1:${outboundPort}/ -H 'host: reviews' -H 'x-user: tester' -D - -o /dev/null
  curl -s http://127.0.0.1:${adminPort}/stats | grep wasm
  ./dev wasmesh get workloads          (the CLI finds the admin token in ${credentialsPath()})
  curl -s ${api}/v1/routes -H "authorization: Bearer $(cat ${plane.adminTokenFile})"
  ./dev wasmesh status
  edit deploy/demo/mesh.yaml (e.g. weights 50/50), then: ./dev wasmesh apply -f deploy/demo/mesh.yaml

Ctrl-C to stop.`);
}
