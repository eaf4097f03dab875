// Authenticated ADS with real Envoys (issue 11, §3): `wasmesh server` as users run it, and Envoys
// started on `wasmesh bootstrap --token-file` output as people running Envoy themselves do. With a
// dataplane token of its own service an Envoy gets its configuration; with another service's token,
// or none, the control plane refuses its stream before sending anything, every time Envoy retries,
// and Envoy never gets a listener. The agent-run sidecars of test/envoy/dataplane*.test.ts go
// through the same check with their agent's token.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type ControlPlaneProcess,
  dataplaneToken,
  metricSum,
  type Sidecar,
  startControlPlaneProcess,
  startSidecar,
  waitForStatus,
} from "../support/control-plane.ts";
import { type AgentProcess, startAgentProcess } from "../support/dataplane.ts";
import { startUpstream, type Upstream } from "../support/upstreams.ts";
import { until } from "../support/wait.ts";

let cp: ControlPlaneProcess;
const sidecars: Sidecar[] = [];
const agents: AgentProcess[] = [];
let app: Upstream;

beforeAll(async () => {
  cp = await startControlPlaneProcess();
  for (const name of ["reviews", "productpage"]) {
    const put = await cp.request("PUT", `/v1/services/${name}`, {
      apiVersion: "wasmesh.io/v1alpha1",
      kind: "Service",
      metadata: { name },
      spec: { ports: [{ name: "http", port: 9080, protocol: "http" }] },
    });
    expect(put.status).toBe(201);
  }
});

afterAll(async () => {
  await Promise.all(agents.map((a) => a.stop()));
  await app?.close();
  await Promise.all(sidecars.map((s) => s.envoy.stop()));
  await cp?.stop();
});

async function sidecar(nodeId: string, service: string, token: string | null): Promise<Sidecar> {
  const started = await startSidecar({
    controlPlane: { xds: cp.xds },
    nodeId,
    service,
    token,
    // An Envoy that gets no configuration goes LIVE after 1 s (15 s by default), with none.
    envoyArgs: [
      "--drain-time-s",
      "2",
      "--config-yaml",
      "{dynamic_resources: {cds_config: {initial_fetch_timeout: 1s}, lds_config: {initial_fetch_timeout: 1s}}}",
    ],
  });
  sidecars.push(started);
  return started;
}

/** Waits until the control plane has refused `more` more streams with `code` (Envoy retries). */
async function refusals(code: "unauthenticated" | "permission_denied", more: number, from: number) {
  let now = from;
  await until(
    () => `${more} more ${code} refusals (${now - from} so far):\n${cp.logs().slice(-2000)}`,
    async () => {
      now = await metricSum(cp.api, "wasmesh_xds_refused_streams_total", { code });
      return now >= from + more;
    },
    60_000,
    100,
  );
  return now - from;
}

describe("Envoy from wasmesh bootstrap --token-file", () => {
  it("with a dataplane token of its service, gets its configuration", async () => {
    const reviews = await sidecar("reviews-auth-1", "reviews", await dataplaneToken(cp.api, "reviews"));
    await reviews.envoy.waitForListener("outbound", 30_000);
    const proxies = await waitForStatus(cp.api, (all) =>
      all.some((p) => p.nodeId === "reviews-auth-1" && p.syncedVersion !== undefined),
    );
    expect(proxies.find((p) => p.nodeId === "reviews-auth-1")?.service).toBe("reviews");
    const clusters = (await reviews.envoy.admin("/clusters")).text;
    expect(clusters).toContain("outbound|productpage::");
  });

  it("with another service's token, or none, is refused at every try and never gets a listener", async () => {
    const denied = await metricSum(cp.api, "wasmesh_xds_refused_streams_total", {
      code: "permission_denied",
    });
    const unauthenticated = await metricSum(cp.api, "wasmesh_xds_refused_streams_total", {
      code: "unauthenticated",
    });
    // productpage's Envoy carrying reviews' token: an impersonation.
    const impostor = await sidecar(
      "productpage-impostor",
      "productpage",
      await dataplaneToken(cp.api, "reviews"),
    );
    const anonymous = await sidecar("productpage-anonymous", "productpage", null);
    // Two refusals each: Envoy tried again after the first, and was refused again.
    expect(await refusals("permission_denied", 2, denied)).toBeGreaterThanOrEqual(2);
    expect(await refusals("unauthenticated", 2, unauthenticated)).toBeGreaterThanOrEqual(2);
    for (const envoy of [impostor.envoy, anonymous.envoy]) {
      expect(await envoy.listeners()).toEqual([]);
      const stats = await envoy.stats("control_plane");
      expect(stats.get("control_plane.connected_state")).toBe(0);
    }
    expect(cp.logs()).toMatch(
      /refused a stream.*"nodeId":"productpage-impostor".*"code":"permission_denied"/,
    );
    expect(cp.logs()).toMatch(/refused a stream.*"nodeId":"productpage-anonymous".*"code":"unauthenticated"/);
    const status = await waitForStatus(cp.api, (all) => all.some((p) => p.nodeId === "reviews-auth-1"));
    expect(status.map((p) => p.nodeId)).not.toContain("productpage-impostor");
    expect(status.map((p) => p.nodeId)).not.toContain("productpage-anonymous");
  });

  it("through the agent: its token goes with Envoy's stream; with another service's it is refused and the sidecar never turns ready", async () => {
    app = await startUpstream({ name: "reviews-app" });
    const denied = await metricSum(cp.api, "wasmesh_xds_refused_streams_total", {
      code: "permission_denied",
    });
    const args = (name: string) => [
      "--name",
      name,
      "--service",
      "reviews",
      "--app-port",
      String(app.port),
      "--cp",
      cp.api,
      "--xds",
      cp.xds,
    ];
    const wrong = startAgentProcess({
      args: args("reviews-wrong-token"),
      token: await dataplaneToken(cp.api, "productpage"),
    });
    const right = startAgentProcess({
      args: args("reviews-agent-1"),
      token: await dataplaneToken(cp.api, "reviews"),
    });
    agents.push(wrong, right);
    await right.waitReady(60_000);
    await until(
      "reviews-agent-1 registered",
      async () => (await cp.request("GET", "/v1/workloads/reviews-agent-1")).status === 200,
      20_000,
    );
    await wrong.waitForOutput(
      /control plane stream of reviews-wrong-token ended: PERMISSION_DENIED .*dataplane token of service 'productpage'/,
    );
    expect(await refusals("permission_denied", 1, denied)).toBeGreaterThanOrEqual(1);
    const ready = await wrong.ready();
    expect(ready.status).toBe(503);
    // Envoy waits for a first configuration that never comes (or went LIVE without one).
    expect(ready.text).toMatch(
      /^not ready: (Envoy is PRE_INITIALIZING|Envoy is INITIALIZING|Envoy has not acknowledged)/,
    );
    expect((await cp.request("GET", "/v1/workloads/reviews-wrong-token")).status).toBe(404);
  });
});
