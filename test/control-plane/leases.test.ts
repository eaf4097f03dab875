// Workload leases (issue 10): a Workload with spec.leaseSeconds, as the data-plane agent registers
// it, stays while PUT /v1/workloads/<name>/lease renews it, and is deleted when its lease lapses:
// gone from the store and from a connected sidecar's endpoints, in one revision. A renewal is no
// revision and no push; a control plane restart gives every leased Workload a whole lease. A real
// startControlPlane on a real SQLite file and a sidecar's ADS stream over real gRPC; the control
// plane's clock is the test's, so no test waits out a lease.
import { readFileSync } from "node:fs";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createApi } from "../../control-plane/api/index.ts";
import { TYPE_URL } from "../../control-plane/envoy/index.ts";
import { outboundCluster } from "../../control-plane/resources/index.ts";
import { type ControlPlane, startControlPlane } from "../../control-plane/server.ts";
import { createMemoryStore } from "../../control-plane/store/index.ts";
import { RELEASE_WASM } from "../support/artifacts.ts";
import { apiFetch, apiOf } from "../support/control-plane.ts";
import { tempDir } from "../support/temp.ts";
import { eventually } from "../support/wait.ts";
import { type AdsClient, connectAds } from "../support/xds-client.ts";

const EDS = TYPE_URL.endpoint;
const CDS = TYPE_URL.cluster;
const EXAMPLE = readFileSync(new URL("../../deploy/examples/mesh.yaml", import.meta.url), "utf8");
const V1 = outboundCluster("reviews", { version: "v1" });

/** The control plane's clock: moved by the tests. */
let clock = Date.parse("2030-01-01T00:00:00Z");
const dataDir = tempDir("leases");
let plane: ControlPlane;
let api: string;
let logs: string[] = [];
const clients: AdsClient[] = [];

async function start(): Promise<void> {
  plane = await startControlPlane({
    dataDir,
    httpPort: 0,
    xdsPort: 0,
    builtinModule: RELEASE_WASM,
    log: (line) => logs.push(line),
    // The sweeper runs often; the leases it looks at only lapse when the test moves the clock.
    leases: { now: () => clock, sweepIntervalMs: 10 },
  });
  api = apiOf(plane).api;
}

async function call(method: string, path: string, body?: unknown, contentType = "application/json") {
  const response = await apiFetch(`${api}${path}`, {
    method,
    ...(body !== undefined
      ? {
          body: typeof body === "string" ? body : JSON.stringify(body),
          headers: { "content-type": contentType },
        }
      : {}),
  });
  const text = await response.text();
  // biome-ignore lint/suspicious/noExplicitAny: assertions navigate arbitrary JSON
  return { status: response.status, body: (text ? JSON.parse(text) : undefined) as any };
}

/** The Workload a data-plane agent registers for reviews v1 on `address`. */
const agentWorkload = (name: string, address: string, leaseSeconds = 10) => ({
  apiVersion: "wasmesh.io/v1alpha1",
  kind: "Workload",
  metadata: { name },
  spec: { service: "reviews", address, port: 15006, appPort: 9080, labels: { version: "v1" }, leaseSeconds },
});

async function register(name: string, address: string, leaseSeconds?: number) {
  const reply = await call("PUT", `/v1/workloads/${name}`, agentWorkload(name, address, leaseSeconds));
  expect(reply.status, JSON.stringify(reply.body)).toBeLessThan(300);
  return reply;
}

/** Whether the Workload is stored. */
const stored = async (name: string) => (await call("GET", `/v1/workloads/${name}`)).status === 200;

const revision = async () => (await call("GET", "/healthz")).body.revision as number;
const metric = async (name: string) => {
  const text = await (await apiFetch(`${api}/metrics`)).text();
  return Number(new RegExp(`^${name} (\\d+)$`, "m").exec(text)?.[1]);
};

/** A productpage sidecar watching the endpoints of reviews v1. */
async function sidecar(id: string): Promise<AdsClient> {
  const client = await connectAds({
    address: `127.0.0.1:${plane.xdsPort}`,
    node: { id, cluster: "productpage", metadata: { "wasmesh.service": "productpage" } },
  });
  clients.push(client);
  await client.fetch(EDS, [V1]);
  return client;
}

/** The addresses of reviews v1's endpoints the sidecar holds. */
function endpoints(client: AdsClient): string[] {
  const assignment = client.held(EDS).find((r) => r.name === V1)?.resource as
    | {
        endpoints?: { lb_endpoints?: { endpoint: { address: { socket_address: { address: string } } } }[] }[];
      }
    | undefined;
  return (assignment?.endpoints ?? [])
    .flatMap((locality) => locality.lb_endpoints ?? [])
    .map((e) => e.endpoint.address.socket_address.address)
    .sort();
}

beforeAll(async () => {
  await start();
  const applied = await call("POST", "/v1/apply", EXAMPLE, "application/yaml");
  expect(applied.status, JSON.stringify(applied.body)).toBe(200);
});
afterEach(() => {
  for (const client of clients.splice(0)) client.close();
});
afterAll(async () => {
  await plane?.close();
});

describe("Workload leases", () => {
  it("deletes a Workload whose lease lapsed, from the store and the sidecars, and keeps the renewed one", async () => {
    const client = await sidecar("productpage-1");
    await register("reviews-agent-a", "10.0.2.1");
    await register("reviews-agent-b", "10.0.2.2");
    await client.waitFor(() => endpoints(client).includes("10.0.2.2"), 5000, "the agents' endpoints");
    expect(endpoints(client)).toEqual(["10.0.1.11", "10.0.2.1", "10.0.2.2"]);
    expect(await metric("wasmesh_workload_leases")).toBe(2);

    // b renews 6 s into its 10 s lease: until 16 s from registration.
    clock += 6000;
    const before = await revision();
    const edsResponses = client.received(EDS);
    const renewed = await call("PUT", "/v1/workloads/reviews-agent-b/lease", {});
    expect(renewed.status, JSON.stringify(renewed.body)).toBe(200);
    expect(renewed.body).toEqual({ expiresAt: new Date(clock + 10_000).toISOString() });
    // A renewal is no write: no revision, and nothing pushed (the barrier's answer comes after
    // anything the server sent before it; the clusters are not what the test counts).
    expect(await revision()).toBe(before);
    await client.barrier(CDS, "outbound|ratings");
    expect(client.received(EDS)).toBe(edsResponses);

    // 11 s: a's lease lapsed at 10 s; b's runs to 16 s.
    clock += 5000;
    await eventually(async () =>
      expect((await call("GET", "/v1/workloads/reviews-agent-a")).status).toBe(404),
    );
    await client.waitFor(() => !endpoints(client).includes("10.0.2.1"), 5000, "a's endpoint to go");
    expect(endpoints(client)).toEqual(["10.0.1.11", "10.0.2.2"]);
    expect((await call("GET", "/v1/workloads/reviews-agent-b")).status).toBe(200);
    // One write, as a DELETE would be.
    expect(await revision()).toBe(before + 1);
    expect(await metric("wasmesh_workload_lease_expirations_total")).toBe(1);
    expect(await metric("wasmesh_workload_leases")).toBe(1);
    expect(logs.join("\n")).toContain(
      "wasmesh: deleted Workload 'reviews-agent-a': its lease (10 s) was not renewed and lapsed at 2030-01-01T00:00:10.000Z",
    );
    // The agent finds out at its next renewal, and registers again.
    expect((await call("PUT", "/v1/workloads/reviews-agent-a/lease", {})).status).toBe(404);

    expect((await call("DELETE", "/v1/workloads/reviews-agent-b")).status).toBe(200);
    expect(await metric("wasmesh_workload_leases")).toBe(0);
  });

  // Below, sweep() runs a whole sweep at the clock's time (after any the sweeper has started), so
  // what is stored after it is what the lease allows.
  it("renews for ttlSeconds when given; registering again renews too, even unchanged", async () => {
    await register("reviews-agent-c", "10.0.2.3", 30);
    const renewed = await call("PUT", "/v1/workloads/reviews-agent-c/lease", { ttlSeconds: 60 });
    expect(renewed.body).toEqual({ expiresAt: new Date(clock + 60_000).toISOString() });
    clock += 59_000;
    await plane.leases.sweep();
    expect(await stored("reviews-agent-c")).toBe(true);
    // Unchanged: no revision, but a sign of life, so a whole lease (30 s) from now.
    const before = await revision();
    await register("reviews-agent-c", "10.0.2.3", 30);
    expect(await revision()).toBe(before);
    clock += 29_000;
    await plane.leases.sweep();
    expect(await stored("reviews-agent-c")).toBe(true);
    clock += 2000;
    await plane.leases.sweep();
    expect(await stored("reviews-agent-c")).toBe(false);
  });

  it("answers 503 on an API that keeps no leases", async () => {
    const app = createApi({ auth: "none", store: createMemoryStore() });
    const reply = await app.request("/v1/workloads/reviews-agent/lease", {
      method: "PUT",
      body: "{}",
      headers: { "content-type": "application/json" },
    });
    expect(reply.status).toBe(503);
    expect(await reply.json()).toMatchObject({ error: { message: "this control plane keeps no leases" } });
  });

  it("refuses a renewal of a Workload that is missing or not leased, and a malformed body, saying why", async () => {
    const missing = await call("PUT", "/v1/workloads/nosuch/lease", {});
    expect(missing.status).toBe(404);
    expect(missing.body.error.message).toBe("Workload 'nosuch' does not exist");
    // deploy/examples/mesh.yaml's workloads are written by hand: no lease.
    const unleased = await call("PUT", "/v1/workloads/reviews-v1-a/lease", {});
    expect(unleased.status).toBe(409);
    expect(unleased.body.error.message).toContain("Workload 'reviews-v1-a' has no spec.leaseSeconds");
    await register("reviews-agent-d", "10.0.2.4");
    for (const [body, path, message] of [
      [{ ttlSeconds: 4 }, "ttlSeconds", "greater or equal to 5"],
      [{ ttlSeconds: 3601 }, "ttlSeconds", "less or equal to 3600"],
      [{ ttlSeconds: "30" }, "ttlSeconds", "Expected integer"],
      [{ ttl: 30 }, "ttl", ""],
    ] as const) {
      const reply = await call("PUT", "/v1/workloads/reviews-agent-d/lease", body);
      expect(reply.status, JSON.stringify(body)).toBe(400);
      expect(reply.body.error.details[0]).toMatchObject({ path });
      expect(reply.body.error.details[0].message).toContain(message);
    }
    expect((await call("PUT", "/v1/workloads/reviews-agent-d/lease", "{", "application/json")).status).toBe(
      400,
    );
    expect((await call("PUT", "/v1/workloads/reviews-agent-d/lease", "{}", "text/plain")).status).toBe(415);
    expect((await call("DELETE", "/v1/workloads/reviews-agent-d")).status).toBe(200);
  });

  it("gives every leased Workload a whole lease when the control plane starts again, then removes the dead", async () => {
    await register("reviews-agent-e", "10.0.2.5", 10);
    await register("reviews-agent-f", "10.0.2.6", 10);
    await plane.close();
    // Down for longer than the leases: no agent could renew meanwhile.
    clock += 3_600_000;
    logs = [];
    await start();
    await plane.leases.sweep();
    expect(await stored("reviews-agent-e")).toBe(true);
    expect(await stored("reviews-agent-f")).toBe(true);
    const client = await sidecar("productpage-2");
    expect(endpoints(client)).toEqual(["10.0.1.11", "10.0.2.5", "10.0.2.6"]);
    clock += 9000;
    await plane.leases.sweep();
    expect(await stored("reviews-agent-f")).toBe(true);
    // e's agent renews after the restart; f's died while the control plane was down.
    expect((await call("PUT", "/v1/workloads/reviews-agent-e/lease", {})).status).toBe(200);
    clock += 2000;
    await plane.leases.sweep();
    expect(await stored("reviews-agent-f")).toBe(false);
    expect(await stored("reviews-agent-e")).toBe(true);
    await client.waitFor(() => !endpoints(client).includes("10.0.2.6"), 5000, "f's endpoint to go");
    clock += 9000;
    await plane.leases.sweep();
    expect(await stored("reviews-agent-e")).toBe(false);
    await client.waitFor(() => !endpoints(client).includes("10.0.2.5"), 5000, "e's endpoint to go");
    expect(logs.join("\n")).toContain("wasmesh: deleted Workload 'reviews-agent-f'");
  });
});
