// Services discovered on Kubernetes are named `<name>.<namespace>` (issue 12, §1); real Envoy
// sidecars of such services, configured by `wasmesh server` over xDS, call them by every name a pod
// would: the short name from the same namespace, `<name>.<namespace>`, `.svc` and
// `.svc.cluster.local`, with or without the port, and subsets and routes work over those names as in
// the seeds' canary. A sidecar in another namespace reaches the service by its full names only.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type ControlPlaneProcess,
  revisionOf,
  type Sidecar,
  startControlPlaneProcess,
  startSidecar,
  waitForStatus,
  wasmesh,
} from "../support/control-plane.ts";
import { runLoad } from "../support/load.ts";
import { startUpstream, type Upstream } from "../support/upstreams.ts";

const API_VERSION = "wasmesh.io/v1alpha1";

let cp: ControlPlaneProcess;
let v1: Upstream;
let v2: Upstream;
let productpage: Sidecar; // productpage.bookinfo: the same namespace as reviews.bookinfo
let other: Sidecar; // client.other: another namespace

const resource = (kind: string, name: string, spec: unknown) => ({
  apiVersion: API_VERSION,
  kind,
  metadata: { name },
  spec,
});

beforeAll(async () => {
  v1 = await startUpstream({ name: "reviews-v1" });
  v2 = await startUpstream({ name: "reviews-v2" });
  cp = await startControlPlaneProcess();
  const http = [{ name: "http", port: 9080, protocol: "http" }];
  const documents = [
    resource("Service", "reviews.bookinfo", { ports: http }),
    resource("Service", "productpage.bookinfo", { ports: http }),
    resource("Service", "client.other", { ports: http }),
    resource("Workload", "reviews-v1-abc.bookinfo", {
      service: "reviews.bookinfo",
      address: "127.0.0.1",
      port: v1.port,
      labels: { app: "reviews", version: "v1" },
    }),
    resource("Workload", "reviews-v2-def.bookinfo", {
      service: "reviews.bookinfo",
      address: "127.0.0.1",
      port: v2.port,
      labels: { app: "reviews", version: "v2" },
    }),
    resource("Route", "reviews", {
      service: "reviews.bookinfo",
      rules: [{ name: "v2", destinations: [{ service: "reviews.bookinfo", subset: { version: "v2" } }] }],
    }),
  ];
  const applied = await wasmesh(["apply", "-f", "-"], {
    api: cp.api,
    input: documents.map((d) => JSON.stringify(d)).join("\n---\n"),
  });
  expect(applied.stderr).toBe("");
  // Each with a dataplane token of its dotted service.
  productpage = await startSidecar({
    controlPlane: cp,
    nodeId: "productpage-1",
    service: "productpage.bookinfo",
    protocol: "sotw",
  });
  other = await startSidecar({
    controlPlane: cp,
    nodeId: "client-1",
    service: "client.other",
    protocol: "delta",
  });
  const revision = await revisionOf(cp.api);
  await waitForStatus(cp.api, (proxies) =>
    ["productpage-1", "client-1"].every((id) =>
      proxies.some((p) => p.nodeId === id && Number(p.syncedVersion ?? -1) >= revision),
    ),
  );
}, 120_000);

afterAll(async () => {
  await productpage?.envoy.stop();
  await other?.envoy.stop();
  await cp?.stop();
  await v1?.close();
  await v2?.close();
});

async function send(sidecar: Sidecar, host: string, requests = 5) {
  return runLoad({
    url: `http://127.0.0.1:${sidecar.outboundPort}/reviews`,
    headers: { host },
    requests,
    concurrency: 1,
    timeoutMs: 10_000,
  });
}

describe("a service named <name>.<namespace> through real Envoy sidecars", () => {
  it("answers the same namespace's sidecar by its short and full names, routed to the v2 subset", async () => {
    for (const host of [
      "reviews",
      "reviews:9080",
      "reviews.bookinfo",
      "reviews.bookinfo.svc:9080",
      "reviews.bookinfo.svc.cluster.local",
      "reviews.bookinfo.svc.cluster.local:9080",
    ]) {
      const result = await send(productpage, host);
      expect([host, result.ok, Object.fromEntries(result.byUpstream)]).toEqual([
        host,
        5,
        { "reviews-v2": 5 },
      ]);
    }
  });

  it("answers another namespace's sidecar by the full names only", async () => {
    const full = await send(other, "reviews.bookinfo.svc.cluster.local:9080");
    expect([full.ok, Object.fromEntries(full.byUpstream)]).toEqual([5, { "reviews-v2": 5 }]);
    const short = await send(other, "reviews");
    expect(short.ok).toBe(0);
    expect(Object.fromEntries(short.statuses)).toEqual({ 404: 5 });
    expect(short.byUpstream.get("reviews-v2") ?? 0).toBe(0);
  });

  it("names Envoy's clusters after the dotted service and its subsets", async () => {
    const dump = JSON.parse((await productpage.envoy.admin("/clusters?format=json")).text) as {
      cluster_statuses: { name: string }[];
    };
    const clusters = dump.cluster_statuses.map((c) => c.name);
    expect(clusters).toEqual(
      expect.arrayContaining(["outbound|reviews.bookinfo", "outbound|reviews.bookinfo|version=v2"]),
    );
  });
});
