// `wasmesh dataplane run` end to end (issue 10, §1): the real bin runs the agent, which starts a
// real Envoy from .tools against a real `wasmesh server`; local upstreams play the apps. Two
// agents: reviews-1 with only the required flags (and --xds: the test's control plane does not
// listen on 5678), and productpage-1, the client, with most of the others. Everything is observed
// from outside: the agent's output and exit code, its readiness endpoint, the Workload through the
// API, Envoy's processes and admin, and which app answered a request sent through the client.
import { readdirSync, readFileSync, statSync } from "node:fs";
import net from "node:net";
import { networkInterfaces } from "node:os";
import { join, relative } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTokens } from "../../control-plane/security/tokens.ts";
import { openSqliteStore } from "../../control-plane/store/index.ts";
import {
  type ControlPlaneProcess,
  dataplaneToken,
  startControlPlaneProcess,
  waitForStatus,
} from "../support/control-plane.ts";
import { type AgentProcess, alive, startAgentProcess } from "../support/dataplane.ts";
import { findEnvoy, freePort } from "../support/envoy.ts";
import { sendHttp } from "../support/mesh-envoy.ts";
import { tempDir } from "../support/temp.ts";
import { startUpstream, type Upstream } from "../support/upstreams.ts";
import { until } from "../support/wait.ts";

const API_VERSION = "wasmesh.io/v1alpha1";

let cp: ControlPlaneProcess;
let reviewsApp: Upstream;
let productpageApp: Upstream;
let reviews: AgentProcess;
let client: AgentProcess;
const agents: AgentProcess[] = [];
/** The agents' tokens: a dataplane token per service, as `wasmesh token dataplane` issues. */
const tokens: Record<string, string> = {};

function agent(options: Parameters<typeof startAgentProcess>[0]): AgentProcess {
  const started = startAgentProcess(options);
  agents.push(started);
  return started;
}

interface StoredWorkload {
  metadata: { resourceVersion: string };
  spec: Record<string, unknown>;
}

async function workload(name: string): Promise<{ status: number; body: StoredWorkload }> {
  return (await cp.request("GET", `/v1/workloads/${name}`)) as { status: number; body: StoredWorkload };
}

/** GET / to reviews through the client's sidecar: the answering app's name, or the status. */
async function viaClient(): Promise<string> {
  const { outbound } = await client.ports();
  try {
    const response = await sendHttp(outbound, { path: "/", authority: "reviews" });
    return response.status === 200 ? response.body : `HTTP ${response.status}`;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code ?? String(error);
  }
}

async function waitForTraffic(): Promise<void> {
  let last = "";
  await until(
    () => `a request through productpage-1's sidecar to reach reviews-app (last: ${last})`,
    async () => {
      last = await viaClient();
      return last === "reviews-app";
    },
    30_000,
    100,
  );
}

beforeAll(async () => {
  reviewsApp = await startUpstream({ name: "reviews-app" });
  productpageApp = await startUpstream({ name: "productpage-app" });
  cp = await startControlPlaneProcess();
  for (const name of ["reviews", "productpage"]) {
    const put = await cp.request("PUT", `/v1/services/${name}`, {
      apiVersion: API_VERSION,
      kind: "Service",
      metadata: { name },
      spec: { ports: [{ name: "http", port: 9080, protocol: "http" }] },
    });
    expect(put.status, JSON.stringify(put.body)).toBe(201);
    tokens[name] = await dataplaneToken(cp.api, name);
  }
});

afterAll(async () => {
  await Promise.all(agents.map((a) => a.stop()));
  await reviewsApp?.close();
  await productpageApp?.close();
  await cp?.stop();
});

describe("wasmesh dataplane run", () => {
  it("with only the required flags: picks its ports and says which, is ready after the first ACK, registers its Workload, and serves another sidecar's request", async () => {
    reviews = agent({
      api: cp.api, // $WASMESH_API, the default of --cp
      token: tokens.reviews as string,
      args: [
        "--name",
        "reviews-1",
        "--service",
        "reviews",
        "--app-port",
        String(reviewsApp.port),
        "--xds",
        cp.xds,
      ],
    });
    const ports = await reviews.ports();
    expect(reviews.stdout()).toMatch(
      /^ports: .* \(picked: --inbound-port, --outbound-port, --admin-port, --ready-port\)$/m,
    );
    expect(new Set([...Object.values(ports), reviewsApp.port]).size).toBe(5);

    await reviews.waitReady();
    // The control plane sees it connected (through the agent's xDS proxy) and in sync.
    await waitForStatus(cp.api, (proxies) =>
      proxies.some((p) => p.nodeId === "reviews-1" && p.syncedVersion !== undefined),
    );

    // The Workload, as the agent registered it: the sidecar's inbound port is the Workload's port.
    await until(
      "workload/reviews-1 to be registered",
      async () => (await workload("reviews-1")).status === 200,
    );
    expect((await workload("reviews-1")).body.spec).toEqual({
      service: "reviews",
      address: "127.0.0.1", // the address this host reaches the control plane (127.0.0.1) from
      port: ports.inbound,
      appPort: reviewsApp.port,
      leaseSeconds: 30,
      // Its sidecar takes mTLS: the agent holds its certificate.
      mtls: true,
    });

    // Its data directory (the default, under the working directory): the bootstrap, whose ADS
    // cluster is the agent's xDS proxy on loopback and whose node asks for modules as files, and
    // the module cache that the proxy filled.
    const data = join(reviews.cwd, ".wasmesh-dataplane", "reviews-1");
    const bootstrap = JSON.parse(readFileSync(join(data, "envoy-bootstrap.json"), "utf8"));
    expect(bootstrap.node.metadata["wasmesh.module_delivery"]).toBe("local");
    // Its certificate comes from the agent over SDS, on a socket in the data directory.
    expect(bootstrap.node.metadata["wasmesh.sds"]).toBe("agent");
    expect(statSync(join(data, "sds", "sds.sock")).isSocket()).toBe(true);
    const ads = bootstrap.static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[0].endpoint;
    const proxyPort = Number(/xDS proxy on 127\.0\.0\.1:(\d+)/.exec(reviews.stdout())?.[1]);
    expect(ads.address.socket_address).toEqual({ address: "127.0.0.1", port_value: proxyPort });
    expect(proxyPort).not.toBe(cp.xdsPort);
    expect(readdirSync(join(data, "modules", "mesh"))).toEqual([
      expect.stringMatching(/^[0-9a-f]{64}\.wasm$/),
    ]);

    // The client, with most flags given.
    const readyPort = await freePort();
    const clientCwd = tempDir("dataplane-client");
    client = agent({
      cwd: clientCwd,
      token: tokens.productpage as string,
      args: [
        "--name",
        "productpage-1",
        "--service",
        "productpage",
        "--app-port",
        String(productpageApp.port),
        "--labels",
        "version=v1,team=web",
        "--zone",
        "zone-a",
        "--address",
        "127.0.0.1",
        "--lease-seconds",
        "5",
        "--drain-seconds",
        "1",
        "--ready-port",
        String(readyPort),
        "--cp",
        cp.api,
        "--xds",
        cp.xds,
        "--envoy",
        relative(clientCwd, findEnvoy()), // relative to where it was started, not to --data
        "--data",
        join(tempDir("dataplane-data"), "productpage-1"),
      ],
      envoyOnPath: false,
    });
    expect((await client.ports()).ready).toBe(readyPort);
    expect(client.stdout()).toMatch(/^ports: .* \(picked: --inbound-port, --outbound-port, --admin-port\)$/m);
    await client.waitReady();
    await until("workload/productpage-1", async () => (await workload("productpage-1")).status === 200);
    expect((await workload("productpage-1")).body.spec).toEqual({
      service: "productpage",
      address: "127.0.0.1",
      port: (await client.ports()).inbound,
      appPort: productpageApp.port,
      labels: { version: "v1", team: "web" },
      zone: "zone-a",
      leaseSeconds: 5,
      mtls: true,
    });

    // productpage-1's sidecar sends to reviews-1's inbound listener, which forwards to the app.
    reviewsApp.reset();
    await waitForTraffic();
    const inbound = await fetch(
      `http://127.0.0.1:${ports.admin}/stats?format=json&filter=${encodeURIComponent(`^listener\\.0\\.0\\.0\\.0_${ports.inbound}\\.downstream_cx_total$`)}`,
    );
    const [accepted] = ((await inbound.json()) as { stats: { value: number }[] }).stats;
    expect(accepted?.value).toBeGreaterThan(0);
  });

  it("--no-register --ready-address 0.0.0.0 (the injected sidecar): ready on this host's own address, no Workload written nor deleted", async () => {
    // A kubelet probes the pod's IP, never its loopback; on Kubernetes discovery makes the Workload.
    const address = Object.values(networkInterfaces())
      .flat()
      .find((i) => i?.family === "IPv4" && !i.internal)?.address;
    if (address === undefined) throw new Error("this host has no non-loopback IPv4 address to probe");
    const injected = agent({
      api: cp.api,
      token: tokens.reviews as string,
      args: [
        "--name",
        "reviews-injected",
        "--service",
        "reviews",
        "--app-port",
        String(reviewsApp.port),
        "--xds",
        cp.xds,
        "--no-register",
        "--ready-address",
        "0.0.0.0",
      ],
    });
    const { ready } = await injected.ports();
    await injected.waitReady();
    const probe = await fetch(`http://${address}:${ready}/ready`).catch((error: Error) => error);
    expect(probe instanceof Response ? probe.status : String(probe.cause ?? probe)).toBe(200);
    // Once ready, the agent says it registers nothing (where it would have started registering).
    await injected.waitForOutput(/not registering a Workload/, 30_000);
    expect((await workload("reviews-injected")).status).toBe(404);
    injected.signal("SIGTERM");
    expect((await injected.exited).code, injected.stdout()).toBe(0);
    expect(injected.stdout()).not.toMatch(/registered workload|deregistered/);
  });

  it("restarts an Envoy killed with SIGKILL: ready again, traffic resumes, the Workload stays as it was", async () => {
    const [first] = reviews.envoyPids();
    expect(first).toBeDefined();
    const before = (await workload("reviews-1")).body.metadata.resourceVersion;
    process.kill(first as number, "SIGKILL");
    const [, again] = await reviews.waitForOutput(/Envoy started again \(pid (\d+)\)/);
    expect(Number(again)).not.toBe(first);
    expect(reviews.stdout()).toMatch(/Envoy \(pid \d+\) was killed by SIGKILL; starting it again in 0\.2 s/);
    await reviews.waitReady();
    await waitForTraffic();
    // Written again after the restart, unchanged: the same resource, no new version.
    const after = await workload("reviews-1");
    expect(after.status).toBe(200);
    expect(after.body.metadata.resourceVersion).toBe(before);
  });

  it("SIGTERM: readiness turns 503, the Workload is deleted while Envoy still serves, then Envoy drains and stops, and the agent exits 0", async () => {
    const envoyPid = reviews.envoyPids().at(-1) as number;
    expect(alive(envoyPid)).toBe(true);
    reviews.signal("SIGTERM");
    let readiness = { status: 0, text: "" };
    await until(
      () => `reviews-1's /ready to turn 503 (last: ${readiness.status})`,
      async () => {
        readiness = await reviews.ready();
        return readiness.status === 503;
      },
    );
    expect(readiness.text).toMatch(/shutting down/);
    await until(
      "workload/reviews-1 to be deleted",
      async () => (await workload("reviews-1")).status === 404,
      10_000,
      25,
    );
    // Deleted first: Envoy still runs and serves for the drain time (5 s by default), so that the
    // other sidecars, told by the control plane, stop sending to it before it goes.
    expect(alive(envoyPid)).toBe(true);
    const { code } = await reviews.exited;
    expect(code, reviews.stdout()).toBe(0);
    expect(alive(envoyPid)).toBe(false);
    const lines = reviews.stdout();
    for (const step of [
      "SIGTERM received",
      "deregistered workload/reviews-1",
      "Envoy drained",
      "Envoy stopped",
    ]) {
      expect(lines).toContain(step);
    }
    expect(lines.indexOf("deregistered")).toBeLessThan(lines.indexOf("Envoy drained"));
  });

  it("killed with SIGKILL: its Envoy stops with it, and the control plane removes the Workload once the lease lapses", async () => {
    const envoyPid = client.envoyPids().at(-1) as number;
    expect((await workload("productpage-1")).status).toBe(200);
    client.signal("SIGKILL");
    expect((await client.exited).signal).toBe("SIGKILL");
    await until("productpage-1's Envoy to stop", () => !alive(envoyPid), 10_000, 50);
    // --lease-seconds 5: nothing renews it now.
    await until(
      "workload/productpage-1 to be removed when its lease lapses",
      async () => (await workload("productpage-1")).status === 404,
      30_000,
      100,
    );
  });

  it("is not ready until Envoy acknowledged a configuration, even once Envoy is LIVE on its own; the control plane coming up makes it ready and registers it", async () => {
    // A control plane that is not there yet: ports nothing listens on; its data directory holds
    // the agent's token already.
    const [httpPort, xdsPort] = [await freePort(), await freePort()];
    const lateDir = tempDir("dataplane-late-cp");
    const store = await openSqliteStore({ dataDir: lateDir });
    const { secret } = await createTokens(store).issue({ role: "dataplane", service: "reviews" });
    await store.close();
    const late = agent({
      token: secret,
      args: [
        "--name",
        "reviews-late",
        "--service",
        "reviews",
        "--app-port",
        String(reviewsApp.port),
        "--cp",
        `http://127.0.0.1:${httpPort}`,
        "--xds",
        `127.0.0.1:${xdsPort}`,
        "--drain-seconds",
        "2",
      ],
      // Envoy stops waiting for its first clusters and listeners after 1 s (15 s by default) and
      // goes LIVE with none.
      envoyArgs: [
        "--concurrency",
        "1",
        "--log-level",
        "warning",
        "--config-yaml",
        "{dynamic_resources: {cds_config: {initial_fetch_timeout: 1s}, lds_config: {initial_fetch_timeout: 1s}}}",
      ],
    });
    const { admin } = await late.ports();
    await late.waitForOutput(/Envoy started \(pid \d+\)/);
    // Envoy's own /ready is 200 then, the agent's stays 503.
    await until(
      "Envoy to go LIVE without a configuration",
      async () => (await fetch(`http://127.0.0.1:${admin}/ready`).catch(() => undefined))?.status === 200,
      60_000,
      200,
    );
    const before = await late.ready();
    expect(before.status).toBe(503);
    expect(before.text).toMatch(/Envoy has not acknowledged its first configuration yet/);

    const plane = await startControlPlaneProcess({ dataDir: lateDir, httpPort, xdsPort });
    try {
      const put = await plane.request("PUT", "/v1/services/reviews", {
        apiVersion: API_VERSION,
        kind: "Service",
        metadata: { name: "reviews" },
        spec: { ports: [{ name: "http", port: 9080, protocol: "http" }] },
      });
      expect(put.status).toBe(201);
      await late.waitReady(90_000);
      await until(
        "workload/reviews-late on the control plane that came up",
        async () => (await plane.request("GET", "/v1/workloads/reviews-late")).status === 200,
        20_000,
      );
      // An Envoy that dies during the shutdown stays down, and the shutdown goes on.
      late.signal("SIGTERM");
      await late.waitForOutput(/Envoy serves on for 2 s/);
      process.kill(late.envoyPids().at(-1) as number, "SIGKILL");
      expect((await late.exited).code).toBe(0);
      expect(late.stdout()).toMatch(/Envoy \(pid \d+\) was killed by SIGKILL during the shutdown/);
      expect(late.stdout()).not.toMatch(/starting it again/);
    } finally {
      await plane.stop();
    }
  });

  it("exits 1 with Envoy's reason, registering nothing and trying no restart, when Envoy cannot start", async () => {
    const held = net.createServer();
    await new Promise<void>((resolve) => held.listen({ host: "127.0.0.1", port: 0 }, resolve));
    const busy = (held.address() as net.AddressInfo).port;
    const base = (name: string) => [
      "--name",
      name,
      "--service",
      "reviews",
      "--app-port",
      String(reviewsApp.port),
      "--cp",
      cp.api,
      "--xds",
      cp.xds,
    ];
    const cases = [
      {
        name: "no-binary",
        args: ["--envoy", "/nonexistent/envoy"],
        envoyArgs: [],
        reason: /cannot run Envoy '\/nonexistent\/envoy' \(--envoy\): spawn \/nonexistent\/envoy ENOENT/,
      },
      {
        name: "admin-busy",
        args: ["--admin-port", String(busy)],
        envoyArgs: [],
        reason: new RegExp(
          `Envoy exited with code 1 before it started:\\n.*127\\.0\\.0\\.1:${busy}.*Address already in use`,
        ),
      },
      {
        name: "bootstrap-refused",
        args: [],
        envoyArgs: ["--config-yaml", "{bogus_field: 1}"],
        reason: /Envoy exited with code 1 before it started:\n.*bogus_field/,
      },
    ];
    try {
      const started = cases.map((c) =>
        agent({
          token: tokens.reviews as string,
          args: [...base(c.name), ...c.args],
          envoyArgs: c.envoyArgs,
        }),
      );
      const exits = await Promise.all(started.map((a) => a.exited));
      for (const [i, c] of cases.entries()) {
        const a = started[i] as AgentProcess;
        expect(exits[i]?.code, `${c.name}: ${a.stdout()}${a.stderr()}`).toBe(1);
        expect(a.stderr(), c.name).toMatch(c.reason);
        expect(a.stderr(), c.name).toMatch(/^wasmesh: /m);
        expect(a.stdout(), c.name).not.toMatch(/starting it again/);
        expect((await workload(c.name)).status, c.name).toBe(404);
      }
    } finally {
      held.close();
    }
  });
});
