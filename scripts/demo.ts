// npm run demo (./dev demo): a demo mesh on this machine. Two upstream versions of a service
// (v1, v2) behind a real Envoy sidecar that runs build/mesh.wasm with deploy/demo/filter-config.json.
// Sends a little sample traffic, prints what the mesh did, then keeps serving until Ctrl-C.
//   --once   exit after the sample traffic (used by the demo's own test)
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT } from "../test/support/envoy.ts";
import { startMeshEnvoy } from "../test/support/mesh-envoy.ts";

const once = process.argv.includes("--once");
const configPath = join(REPO_ROOT, "deploy", "demo", "filter-config.json");
const config: unknown = JSON.parse(readFileSync(configPath, "utf8"));

const mesh = await startMeshEnvoy({ config });
const stop = async () => {
  await mesh.stop();
  process.exit(0);
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);

for (let i = 0; i < 100; i++) await mesh.send({ path: `/reviews/${i}` });
const split = { v1: mesh.v1.count, v2: mesh.v2.count };
mesh.v1.reset();
mesh.v2.reset();
const tester = await mesh.send({ path: "/reviews/1", headers: { "x-user": "tester" } });
const denied = await mesh.send({ path: "/admin" });

console.log(`wasmesh demo mesh is up (Envoy pid ${mesh.envoy.pid}, filter config ${configPath})

  sidecar listener   http://127.0.0.1:${mesh.port}/      (Host: reviews)
  Envoy admin        http://127.0.0.1:${mesh.envoy.adminPort}/stats/prometheus
  upstreams          v1 127.0.0.1:${mesh.v1.port}   v2 127.0.0.1:${mesh.v2.port}

sample traffic:
  100 requests, 90/10 canary  -> v1 ${split.v1}, v2 ${split.v2}
  x-user: tester              -> ${tester.headers.get("x-upstream")}
  GET /admin                  -> ${denied.status} (x-wasmesh-denied: ${denied.headers.get("x-wasmesh-denied")})

try:
  curl -si http://127.0.0.1:${mesh.port}/ -H 'x-user: tester'
  curl -si http://127.0.0.1:${mesh.port}/ --cookie session=alice     # sticky: same version every time
  curl -si http://127.0.0.1:${mesh.port}/ -H 'x-chaos: 1'            # 50% injected 503s
`);

if (once) await stop();
else console.log("Ctrl-C to stop.");
