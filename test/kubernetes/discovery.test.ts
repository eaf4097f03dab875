// Kubernetes discovery (control-plane/kubernetes/discovery.ts) against a real API server
// (test/support/kubernetes.ts): a labelled namespace's Service, Pods and EndpointSlice become wasmesh
// Service and Workload documents; an unlabelled namespace is ignored until it is labelled; a pod
// that stops being ready, a slice that changes and a Service deleted show up through onChange and
// current(); a Service that cannot be mapped is logged by name; an unreachable API server is retried.
import { connect, createServer, type Socket } from "node:net";
import * as k8s from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type DiscoveredResources,
  type Discovery,
  startDiscovery,
} from "../../control-plane/kubernetes/discovery.ts";
import { freePort } from "../support/envoy.ts";
import { type ApiServer, startApiServer } from "../support/kubernetes.ts";
import { until } from "../support/wait.ts";

let server: ApiServer;
let core: k8s.CoreV1Api;
let discoveryApi: k8s.DiscoveryV1Api;

beforeAll(async () => {
  server = await startApiServer();
  core = server.kubeConfig.makeApiClient(k8s.CoreV1Api);
  discoveryApi = server.kubeConfig.makeApiClient(k8s.DiscoveryV1Api);
}, 120_000);

afterAll(async () => {
  await server?.stop();
});

/** A namespace of its own per test: without a controller manager, deleted namespaces never go away. */
const fresh = (prefix: string) => `${prefix}-${Math.random().toString(36).slice(2, 8)}`;
const MESH_LABEL = { "wasmesh.io/sidecar-injection": "enabled" };

async function createNamespace(name: string, labels: Record<string, string> = {}): Promise<void> {
  await core.createNamespace({ body: { metadata: { name, labels } } });
}

async function relabel(name: string, labels: Record<string, string>): Promise<void> {
  const namespace = await core.readNamespace({ name });
  namespace.metadata = { ...namespace.metadata, labels };
  await core.replaceNamespace({ name, body: namespace });
}

/** The canary's reviews: a Service with named ports, pods v1 (with a sidecar) and v2, and their slice. */
async function createReviews(namespace: string): Promise<void> {
  await core.createNamespacedService({
    namespace,
    body: {
      metadata: { name: "reviews" },
      spec: {
        selector: { app: "reviews" },
        ports: [
          { name: "http", port: 9080, targetPort: 9080 },
          { name: "grpc", port: 9090, targetPort: 9090 },
        ],
      },
    },
  });
  const pod = (version: string, annotations: Record<string, string>) =>
    core.createNamespacedPod({
      namespace,
      body: {
        metadata: {
          name: `reviews-${version}-abc12`,
          labels: { app: "reviews", version, "pod-template-hash": "abc12" },
          annotations,
        },
        spec: { containers: [{ name: "app", image: "reviews:1" }] },
      },
    });
  await pod("v1", { "wasmesh.io/sidecar": "injected", "wasmesh.io/inbound-port": "15006" });
  await pod("v2", {});
  await discoveryApi.createNamespacedEndpointSlice({
    namespace,
    body: {
      metadata: { name: "reviews-xyz", labels: { "kubernetes.io/service-name": "reviews" } },
      addressType: "IPv4",
      ports: [
        { name: "http", port: 9080, protocol: "TCP" },
        { name: "grpc", port: 9090, protocol: "TCP" },
      ],
      endpoints: [
        {
          addresses: ["10.1.0.11"],
          conditions: { ready: true },
          targetRef: { kind: "Pod", name: "reviews-v1-abc12", namespace },
        },
        {
          addresses: ["10.1.0.12"],
          conditions: { ready: true },
          targetRef: { kind: "Pod", name: "reviews-v2-abc12", namespace },
        },
      ],
    },
  });
}

/** What discovery holds of one namespace (other tests' namespaces may be in the mesh too). */
function of(resources: DiscoveredResources, namespace: string) {
  return {
    services: resources.services.filter((s) => s.metadata.name.endsWith(`.${namespace}`)),
    workloads: resources.workloads.filter((w) => w.spec.service.endsWith(`.${namespace}`)),
  };
}

/** A TCP proxy to the API server whose connections can be cut (and new ones refused) until healed. */
async function startCuttableProxy(target: URL) {
  const sockets = new Set<Socket>();
  let isCut = false;
  const proxy = createServer((client) => {
    client.on("error", () => {});
    if (isCut) return void client.destroy();
    const upstream = connect(Number(target.port), target.hostname);
    upstream.on("error", () => client.destroy());
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
  const address = proxy.address();
  if (address === null || typeof address === "string") throw new Error("the proxy has no port");
  return {
    port: address.port,
    cut() {
      isCut = true;
      for (const socket of sockets) socket.destroy();
    },
    heal() {
      isCut = false;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        proxy.close(() => resolve());
      }),
  };
}

function started(options: Partial<Parameters<typeof startDiscovery>[0]> = {}) {
  const lines: string[] = [];
  const changes: DiscoveredResources[] = [];
  const discovery = startDiscovery({
    kubeConfig: server.kubeConfig,
    log: (line) => lines.push(line),
    onChange: (resources) => changes.push(resources),
    ...options,
  });
  return { discovery, lines, changes };
}

describe("discovery on a real API server", () => {
  let discovery: Discovery | undefined;
  afterAll(async () => {
    await discovery?.close();
  });

  it("makes the labelled namespace's Service and pods a Service and Workloads, and ignores another namespace", async () => {
    const mesh = fresh("bookinfo");
    const outside = fresh("outside");
    await createNamespace(mesh, MESH_LABEL);
    await createNamespace(outside);
    await createReviews(mesh);
    await createReviews(outside);

    const run = started();
    discovery = run.discovery;
    await run.discovery.ready;
    const found = of(run.discovery.current(), mesh);
    expect(found.services).toEqual([
      {
        apiVersion: "wasmesh.io/v1alpha1",
        kind: "Service",
        metadata: { name: `reviews.${mesh}` },
        spec: {
          ports: [
            { name: "http", port: 9080, protocol: "http" },
            { name: "grpc", port: 9090, protocol: "grpc" },
          ],
        },
      },
    ]);
    expect(found.workloads.map((w) => [w.metadata.name, w.spec])).toEqual([
      [
        `reviews-v1-abc12.${mesh}`,
        {
          service: `reviews.${mesh}`,
          address: "10.1.0.11",
          port: 15006,
          appPort: 9080,
          mtls: true,
          // Neither pod names one: the namespace's "default" runs them, the identity they are issued.
          serviceAccount: "default",
          labels: { app: "reviews", version: "v1" },
        },
      ],
      [
        `reviews-v2-abc12.${mesh}`,
        {
          service: `reviews.${mesh}`,
          address: "10.1.0.12",
          port: 9080,
          serviceAccount: "default",
          labels: { app: "reviews", version: "v2" },
        },
      ],
    ]);
    expect(of(run.discovery.current(), outside)).toEqual({ services: [], workloads: [] });
    expect(run.lines.filter((l) => l.includes(mesh))).toEqual([]);

    // Labelled later, the other namespace joins the mesh; unlabelled, it leaves it.
    await relabel(outside, MESH_LABEL);
    await until(
      `reviews.${outside} discovered`,
      () => of(run.discovery.current(), outside).workloads.length === 2,
    );
    await relabel(outside, {});
    await until(`reviews.${outside} gone`, () => of(run.discovery.current(), outside).services.length === 0);
  });

  it("discovers the namespaces other meshes' markers put in the mesh: Istio's label, a pod injected for Consul's annotation", async () => {
    const istio = fresh("istio");
    const consul = fresh("consul");
    const off = fresh("off");
    await createNamespace(istio, { "istio-injection": "enabled" });
    await createNamespace(consul);
    // wasmesh's own label wins over Istio's.
    await createNamespace(off, { "wasmesh.io/sidecar-injection": "disabled", "istio-injection": "enabled" });
    for (const ns of [istio, consul, off]) await createReviews(ns);
    const run = started();
    await run.discovery.ready;
    try {
      expect(of(run.discovery.current(), istio).workloads.map((w) => w.metadata.name)).toEqual([
        `reviews-v1-abc12.${istio}`,
        `reviews-v2-abc12.${istio}`,
      ]);
      expect(run.lines).toContain(
        `discovery: namespace ${istio} is the mesh's: another mesh's marker: Istio's namespace label istio-injection=enabled`,
      );
      // The injected pod has no marker yet: its namespace is no mesh's.
      expect(of(run.discovery.current(), consul)).toEqual({ services: [], workloads: [] });
      await core.patchNamespacedPod(
        {
          name: "reviews-v1-abc12",
          namespace: consul,
          body: [
            { op: "add", path: "/metadata/annotations/consul.hashicorp.com~1connect-inject", value: "true" },
          ],
        },
        k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.JsonPatch),
      );
      await until(
        `reviews.${consul} discovered`,
        () => of(run.discovery.current(), consul).workloads.length === 2,
      );
      expect(of(run.discovery.current(), off)).toEqual({ services: [], workloads: [] });
    } finally {
      await run.discovery.close();
    }
  });

  it("shows a pod that stops being ready, a changed slice and a deleted Service through onChange and current()", async () => {
    const mesh = fresh("bookinfo");
    await createNamespace(mesh, MESH_LABEL);
    await createReviews(mesh);
    const run = started();
    try {
      await run.discovery.ready;
      await until("both workloads", () => of(run.discovery.current(), mesh).workloads.length === 2);
      const seen = run.changes.length;

      // v1's endpoint is not ready any more: its Workload goes, v2's stays.
      const slice = await discoveryApi.readNamespacedEndpointSlice({ namespace: mesh, name: "reviews-xyz" });
      const [v1, v2] = slice.endpoints;
      if (v1 === undefined || v2 === undefined) throw new Error("the slice lost its endpoints");
      v1.conditions = { ready: false };
      await discoveryApi.replaceNamespacedEndpointSlice({
        namespace: mesh,
        name: "reviews-xyz",
        body: slice,
      });
      await until("v1 not ready", () => of(run.discovery.current(), mesh).workloads.length === 1);
      expect(of(run.discovery.current(), mesh).workloads.map((w) => w.metadata.name)).toEqual([
        `reviews-v2-abc12.${mesh}`,
      ]);
      expect(run.changes.length).toBeGreaterThan(seen);
      expect(of(run.changes.at(-1) as DiscoveredResources, mesh).workloads).toHaveLength(1);

      // The slice moves v2 to another address.
      const again = await discoveryApi.readNamespacedEndpointSlice({ namespace: mesh, name: "reviews-xyz" });
      again.endpoints = [{ ...v2, addresses: ["10.1.0.99"] }];
      await discoveryApi.replaceNamespacedEndpointSlice({
        namespace: mesh,
        name: "reviews-xyz",
        body: again,
      });
      await until(
        "v2's new address",
        () => of(run.discovery.current(), mesh).workloads[0]?.spec.address === "10.1.0.99",
      );

      // The Service deleted: its Service and Workloads go (the slice is left, as without a controller).
      await core.deleteNamespacedService({ namespace: mesh, name: "reviews" });
      await until("the service gone", () => {
        const found = of(run.discovery.current(), mesh);
        return found.services.length === 0 && found.workloads.length === 0;
      });
      expect(of(run.changes.at(-1) as DiscoveredResources, mesh)).toEqual({ services: [], workloads: [] });
    } finally {
      await run.discovery.close();
    }
  });

  it("logs a Service it cannot map by name and why, and maps the rest", async () => {
    const mesh = fresh("bookinfo");
    await createNamespace(mesh, MESH_LABEL);
    const run = started();
    try {
      await run.discovery.ready;
      await core.createNamespacedService({
        namespace: mesh,
        body: { metadata: { name: "dns" }, spec: { ports: [{ name: "dns", port: 53, protocol: "UDP" }] } },
      });
      await createReviews(mesh);
      await until("reviews discovered", () => of(run.discovery.current(), mesh).workloads.length === 2);
      expect(run.lines.filter((l) => l.includes(mesh))).toEqual([
        `discovery: skipped Service ${mesh}/dns: it has no TCP port (the mesh serves TCP only)`,
      ]);
      expect(of(run.discovery.current(), mesh).services.map((s) => s.metadata.name)).toEqual([
        `reviews.${mesh}`,
      ]);
    } finally {
      await run.discovery.close();
    }
  });

  it("watches again after the connection to the API server is cut, and catches up on what it missed", async () => {
    const mesh = fresh("bookinfo");
    await createNamespace(mesh, MESH_LABEL);
    await createReviews(mesh);
    const proxy = await startCuttableProxy(new URL(server.url));
    const through = new k8s.KubeConfig();
    through.loadFromOptions({
      clusters: [{ name: "proxy", server: `https://127.0.0.1:${proxy.port}`, skipTLSVerify: true }],
      users: [{ name: "admin", token: server.token }],
      contexts: [{ name: "proxy", cluster: "proxy", user: "admin" }],
      currentContext: "proxy",
    });
    const run = started({ kubeConfig: through, backoffMs: { initial: 50, max: 200 } });
    try {
      await run.discovery.ready;
      await until("both workloads", () => of(run.discovery.current(), mesh).workloads.length === 2);
      proxy.cut();
      // Every kind's watch failed and is being retried.
      await until(
        () => `a failure of each kind (${run.lines.join(" | ")})`,
        () =>
          ["namespaces", "services", "endpointslices", "pods"].every((kind) =>
            run.lines.some((l) => l.startsWith(`discovery: ${kind}: `)),
          ),
      );
      await core.deleteNamespacedService({ namespace: mesh, name: "reviews" });
      expect(of(run.discovery.current(), mesh).services).toHaveLength(1); // it cannot know yet
      proxy.heal();
      await until(
        "the deletion seen after the cut",
        () => of(run.discovery.current(), mesh).services.length === 0,
      );
      expect(of(run.discovery.current(), mesh).workloads).toEqual([]);
    } finally {
      await run.discovery.close();
      await proxy.close();
    }
  });

  it("retries an API server it cannot reach, and its ready rejects when closed first", async () => {
    const port = await freePort();
    const unreachable = new k8s.KubeConfig();
    unreachable.loadFromOptions({
      clusters: [{ name: "gone", server: `https://127.0.0.1:${port}`, skipTLSVerify: true }],
      users: [{ name: "admin", token: server.token }],
      contexts: [{ name: "gone", cluster: "gone", user: "admin" }],
      currentContext: "gone",
    });
    const run = started({ kubeConfig: unreachable, backoffMs: { initial: 20, max: 40 } });
    // Each kind failed, and failed again after its delay.
    await until(
      () => `two failures of each kind (${run.lines.join(" | ")})`,
      () =>
        ["namespaces", "services", "endpointslices", "pods"].every(
          (kind) => run.lines.filter((l) => l.startsWith(`discovery: ${kind}: `)).length >= 2,
        ),
    );
    expect(run.lines[0]).toMatch(/listing or watching again in \d+ ms$/);
    await run.discovery.close();
    await expect(run.discovery.ready).rejects.toThrow("discovery closed before its first lists");
  });
});
