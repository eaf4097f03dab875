// npm run demo (./dev demo): the control plane with its embedded SQLite store, and a demo mesh
// driven by it. Local upstreams play reviews v1, reviews v2 and ratings; productpage's Envoy
// sidecar is started from `wasmesh bootstrap` output and gets everything else over xDS. The demo
// applies deploy/demo/mesh.yaml through the HTTP API, sends sample traffic, prints what the mesh
// did, then keeps running until Ctrl-C.
//   --once   temporary data dir and free ports; exit after the sample traffic (the demo's test)
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bootstrapYaml } from "../control-plane/cli/bootstrap.ts";
import { DEFAULT_PORTS } from "../control-plane/envoy/index.ts";
import { startControlPlane } from "../control-plane/server.ts";
import { freePort, REPO_ROOT, startEnvoy } from "../test/support/envoy.ts";
import { runLoad } from "../test/support/load.ts";
import { sendHttp } from "../test/support/mesh-envoy.ts";
import { startUpstream } from "../test/support/upstreams.ts";

const once = process.argv.includes("--once");
const dataDir = once ? mkdtempSync(join(tmpdir(), "wasmesh-demo-")) : join(REPO_ROOT, ".wasmesh");
const meshFile = join(REPO_ROOT, "deploy", "demo", "mesh.yaml");

const [v1, v2, ratings] = await Promise.all(
  ["reviews-v1", "reviews-v2", "ratings"].map((name) => startUpstream({ name })),
);
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

const workloads = [
  { name: "reviews-v1-1", service: "reviews", port: v1?.port, labels: { version: "v1" } },
  { name: "reviews-v2-1", service: "reviews", port: v2?.port, labels: { version: "v2" } },
  { name: "ratings-1", service: "ratings", port: ratings?.port, labels: {} },
].map(({ name, service, port, labels }) => ({
  apiVersion: "wasmesh.io/v1alpha1",
  kind: "Workload",
  metadata: { name },
  spec: { service, address: "127.0.0.1", port, labels },
}));
const yaml = [readFileSync(meshFile, "utf8"), ...workloads.map((w) => JSON.stringify(w))].join("\n---\n");
const { revision } = await call("POST", "/v1/apply", yaml, "application/yaml");

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
    },
    xds: `127.0.0.1:${plane.xdsPort}`,
    adminPort,
  }),
});
await plane.xds.waitForAck(String(revision), 20_000);

const stop = async () => {
  await envoy.stop();
  await plane.close();
  await Promise.all([v1, v2, ratings].map((u) => u?.close()));
  if (once) rmSync(dataDir, { recursive: true, force: true });
  process.exit(0);
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);

const url = `http://127.0.0.1:${outboundPort}/reviews`;
const canary = await runLoad({
  url,
  headers: { host: "reviews" },
  requests: 100,
  concurrency: 1,
  timeoutMs: 5000,
});
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
  100 requests to reviews, 90/10 canary  -> v1 ${canary.byUpstream.get("reviews-v1") ?? 0}, v2 ${canary.byUpstream.get("reviews-v2") ?? 0}
  x-user: tester                         -> ${tester.headers.get("x-upstream")}
  productpage -> ratings                 -> ${denied.status} (x-wasmesh-denied: ${denied.headers.get("x-wasmesh-denied")})
`);

if (once) await stop();
else {
  console.log(`try (in another terminal):
  curl -s http://127.0.0.1:${outboundPort}/ -H 'host: reviews' -H 'x-user: tester' -D - -o /dev/null
  npx wasmesh get routes
  npx wasmesh status
  edit deploy/demo/mesh.yaml (e.g. weights 50/50), then: npx wasmesh apply -f deploy/demo/mesh.yaml

Ctrl-C to stop.`);
}
