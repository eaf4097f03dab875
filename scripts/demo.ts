// npm run demo (./dev demo): the control plane with its embedded SQLite store, and a demo mesh
// driven by it. Local upstreams play reviews v1, reviews v2 and ratings; productpage's Envoy
// sidecar is started from `wasmesh bootstrap` output and gets everything else over xDS. The demo
// applies deploy/demo/mesh.yaml through the HTTP API, sends sample traffic, prints what the mesh
// did (the split as the upstreams counted it, and as the Route in the store says), then keeps
// running until Ctrl-C.
//   --once         temporary data dir and free ports; exit after the sample traffic (the demo's test)
//   --mesh FILE    another mesh file than deploy/demo/mesh.yaml (e.g. a copy with other weights)
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { bootstrapYaml } from "../control-plane/envoy/bootstrap.ts";
import { DEFAULT_PORTS } from "../control-plane/envoy/index.ts";
import { startControlPlane } from "../control-plane/server.ts";
import { DENIED_HEADER } from "../schema/headers.ts";
import { freePort, REPO_ROOT, startEnvoy } from "../test/support/envoy.ts";
import { runLoad } from "../test/support/load.ts";
import { sendHttp } from "../test/support/mesh-envoy.ts";
import { removeDir, tempDir } from "../test/support/temp.ts";
import { DEMO_MESH_FILE, demoMeshYaml, routeSplit, startDemoUpstreams } from "./demo-mesh.ts";

const { values: options } = parseArgs({
  options: { once: { type: "boolean" }, mesh: { type: "string" } },
});
const once = options.once === true;
const dataDir = once ? tempDir("demo") : join(REPO_ROOT, ".wasmesh");
const meshFile = options.mesh === undefined ? DEMO_MESH_FILE : resolve(options.mesh);

const upstreams = await startDemoUpstreams();
const { v1, v2, ratings } = upstreams;
const plane = await startControlPlane({
  dataDir,
  httpPort: once ? 0 : 5681,
  xdsPort: once ? 0 : 5678,
  log: () => {},
});
const api = `http://127.0.0.1:${plane.httpPort}`;

async function call(method: string, path: string, body: string, contentType: string) {
  const response = await fetch(`${api}${path}`, { method, body, headers: { "content-type": contentType } });
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${await response.text()}`);
  return response.json() as Promise<{ revision: number }>;
}

const { revision } = await call("POST", "/v1/apply", demoMeshYaml(upstreams, meshFile), "application/yaml");

const outboundPort = once ? await freePort() : DEFAULT_PORTS.outbound;
const adminPort = once ? await freePort() : DEFAULT_PORTS.admin;
const envoy = await startEnvoy({
  name: "productpage-sidecar",
  bootstrap: bootstrapYaml({
    proxy: {
      nodeId: "productpage-1",
      service: "productpage",
      labels: {},
      outboundPort,
      inboundPort: DEFAULT_PORTS.inbound,
      outboundAddress: "127.0.0.1",
      inboundAddress: "127.0.0.1",
      appAddress: "127.0.0.1",
      moduleDelivery: "inline",
    },
    xds: `127.0.0.1:${plane.xdsPort}`,
    adminPort,
  }),
});
await plane.xds.waitForAck(String(revision), 20_000);

const stop = async () => {
  await envoy.stop();
  await plane.close();
  await upstreams.close();
  if (once) removeDir(dataDir);
  process.exit(0);
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);

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
const split = await routeSplit(api, "reviews");
const tester = await sendHttp(outboundPort, {
  path: "/reviews/1",
  headers: { host: "reviews", "x-user": "tester" },
});
const denied = await sendHttp(outboundPort, { path: "/ratings/1", headers: { host: "ratings" } });

console.log(`wasmesh demo: a control plane and a mesh driven by it

  control plane   API ${api} (try ${api}/v1/routes)  xDS 127.0.0.1:${plane.xdsPort}  data ${dataDir}
  sidecar         productpage-1: outbound http://127.0.0.1:${outboundPort}/  admin http://127.0.0.1:${adminPort}/
  upstreams       reviews v1 :${v1?.port}  reviews v2 :${v2?.port}  ratings :${ratings?.port}
  mesh            ${meshFile} (store revision ${revision})

sample traffic through the sidecar:
  split of Route reviews in the store    -> ${split}
  ${`${requests} requests to reviews, measured`.padEnd(37)}  -> v1 ${measured.v1} (${share(measured.v1)}), v2 ${measured.v2} (${share(measured.v2)})${failed > 0 ? `, ${failed} failed` : ""}
  x-user: tester                         -> ${tester.headers.get("x-upstream")}
  productpage -> ratings                 -> ${denied.status} (${DENIED_HEADER}: ${denied.headers.get(DENIED_HEADER)})
`);

if (once) await stop();
else {
  console.log(`try (in another terminal):
  curl -s http://127.0.0.1:${outboundPort}/ -H 'host: reviews' -H 'x-user: tester' -D - -o /dev/null
  ./dev wasmesh get routes
  ./dev wasmesh status
  edit deploy/demo/mesh.yaml (e.g. weights 50/50), then: ./dev wasmesh apply -f deploy/demo/mesh.yaml

Ctrl-C to stop.`);
}
