// Sidecar injection on a real API server (issue 12, §2): two control plane replicas in Kubernetes
// mode, the leader's mutating webhook registered with its URL. A Pod created in a namespace labelled
// wasmesh.io/sidecar-injection=enabled is stored with the capture init container and the native
// sidecar; so is one that another mesh's markers ask a sidecar for (Istio's namespace or pod label,
// Consul's annotation), unless one opts it out; elsewhere, or opted out, it is stored as it was
// sent; a pod that has the sidecar gets no second one; a pod that cannot get a working sidecar is refused with the reason. The sidecar's
// stored command line, expanded as the kubelet expands it, is one `wasmesh dataplane run` takes.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as k8s from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runOptions } from "../../control-plane/cli/commands/dataplane.ts";
import { createKubeClient, type KubeClient } from "../../control-plane/kubernetes/client.ts";
import { CA_DIR, DATA_DIR, TOKEN_DIR } from "../../control-plane/kubernetes/injection.ts";
import { ensureWebhookConfiguration } from "../../control-plane/kubernetes/webhooks.ts";
import type { ControlPlane } from "../../control-plane/server.ts";
import { startAgentProcess } from "../support/dataplane.ts";
import { freePort } from "../support/envoy.ts";
import { commandLine, containerEnv } from "../support/kubelet.ts";
import { type ApiServer, startApiServer } from "../support/kubernetes.ts";
import { freshNamespace, installCrds, startReplica } from "../support/kubernetes-mesh.ts";
import { tempDir } from "../support/temp.ts";
import { until } from "../support/wait.ts";

let server: ApiServer;
let core: k8s.CoreV1Api;
let namespace: string;
let mesh: string;
const planes: ControlPlane[] = [];
const IMAGE = "ghcr.io/wasmesh/control-plane:test";
/** The sidecar's ports, free ones rather than the defaults: the test runs a sidecar on this host. */
const P = { outbound: 0, inbound: 0, admin: 0, ready: 0, metrics: 0 };

async function replica(identity: string): Promise<ControlPlane> {
  const [httpPort, xdsPort] = [await freePort(), await freePort()];
  const plane = await startReplica(server, namespace, identity, {
    httpPort,
    xdsPort,
    // Sidecars verify the API and xDS with the mesh's trust bundle, which the pod is given.
    tls: "mesh-ca",
    kubernetes: {
      tokenAudiences: ["wasmesh"],
      injection: {
        image: IMAGE,
        // This replica as the sidecars started here reach it.
        api: `https://127.0.0.1:${httpPort}`,
        xds: `127.0.0.1:${xdsPort}`,
        ports: P,
      },
    },
  });
  planes.push(plane);
  return plane;
}

const leader = () => planes.find((p) => p.leader?.isLeader());

function pod(
  name: string,
  extra: Partial<k8s.V1ObjectMeta> = {},
  spec: Partial<k8s.V1PodSpec> = {},
): k8s.V1Pod {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, labels: { app: "reviews", version: "v2" }, ...extra },
    spec: {
      containers: [{ name: "reviews", image: "reviews:v2", ports: [{ name: "http", containerPort: 9080 }] }],
      ...spec,
    },
  };
}

/** What `kubectl create` answers: the stored pod, or the API server's message. */
async function create(inNamespace: string, body: k8s.V1Pod, dryRun = false): Promise<k8s.V1Pod | string> {
  try {
    return await core.createNamespacedPod({
      namespace: inNamespace,
      body,
      ...(dryRun ? { dryRun: "All" } : {}),
    });
  } catch (error) {
    const text = String((error as { body?: unknown }).body);
    try {
      return String((JSON.parse(text) as { message?: string }).message);
    } catch {
      return text;
    }
  }
}

async function created(inNamespace: string, body: k8s.V1Pod): Promise<k8s.V1Pod> {
  const result = await create(inNamespace, body);
  if (typeof result === "string") throw new Error(result);
  return result;
}

const wasmeshContainers = (p: k8s.V1Pod) =>
  [...(p.spec?.initContainers ?? []), ...(p.spec?.containers ?? [])]
    .map((c) => c.name)
    .filter((n) => n.startsWith("wasmesh-"));

beforeAll(async () => {
  for (const key of Object.keys(P) as (keyof typeof P)[]) P[key] = await freePort();
  server = await startApiServer();
  core = server.kubeConfig.makeApiClient(k8s.CoreV1Api);
  await installCrds(server);
  namespace = await freshNamespace(server, "wasmesh-system");
  mesh = await freshNamespace(server, "bookinfo", { "wasmesh.io/sidecar-injection": "enabled" });
  await replica("replica-a");
  await replica("replica-b");
  const admission = server.kubeConfig.makeApiClient(k8s.AdmissionregistrationV1Api);
  await until(
    "a leader, and the injection webhook registered",
    async () => {
      if (leader() === undefined) return false;
      const hooks = await admission.listMutatingWebhookConfiguration();
      return hooks.items.some((h) => h.metadata?.name === "wasmesh-sidecar-injector");
    },
    30_000,
  );
}, 180_000);

afterAll(async () => {
  for (const plane of planes) await plane.close();
  await server?.stop();
});

describe("sidecar injection on a real API server", () => {
  it("registers the webhook for Pod CREATEs in labelled namespaces, failing closed", async () => {
    const hook = await server.kubeConfig
      .makeApiClient(k8s.AdmissionregistrationV1Api)
      .readMutatingWebhookConfiguration({ name: "wasmesh-sidecar-injector" });
    expect(hook.webhooks?.[0]).toMatchObject({
      name: "inject.wasmesh.io",
      failurePolicy: "Fail",
      sideEffects: "None",
      reinvocationPolicy: "Never",
      admissionReviewVersions: ["v1"],
      rules: [{ apiGroups: [""], apiVersions: ["v1"], operations: ["CREATE"], resources: ["pods"] }],
      namespaceSelector: {
        matchLabels: { "wasmesh.io/sidecar-injection": "enabled" },
        matchExpressions: [{ key: "kubernetes.io/metadata.name", operator: "NotIn", values: [namespace] }],
      },
    });
  });

  it("stores a pod of a labelled namespace with the capture and the native sidecar", async () => {
    const lead = leader();
    if (lead === undefined) throw new Error("no leader");
    const stored = await created(mesh, pod("reviews-v2-1"));
    const bundle = (await lead.ca?.trustBundle())?.pem;
    expect(bundle).toMatch(/BEGIN CERTIFICATE/);
    expect(stored.metadata?.annotations).toEqual({
      "wasmesh.io/sidecar": "injected",
      "wasmesh.io/inbound-port": String(P.inbound),
      "wasmesh.io/ca-bundle": bundle,
      // Prometheus scrapes the agent's merged endpoint (docs/metrics.md).
      "prometheus.io/scrape": "true",
      "prometheus.io/port": String(P.metrics),
      "prometheus.io/path": "/metrics",
    });
    expect(stored.metadata?.labels).toEqual({
      app: "reviews",
      version: "v2",
      "wasmesh.io/service": "reviews",
    });
    const [capture, sidecar, ...others] = stored.spec?.initContainers ?? [];
    expect(others).toEqual([]);
    expect(capture).toMatchObject({
      name: "wasmesh-capture",
      image: IMAGE,
      command: ["node", "/app/bin/wasmesh.js"],
      args: [
        "dataplane",
        "capture",
        "--outbound-port",
        String(P.outbound),
        "--inbound-port",
        String(P.inbound),
        "--proxy-uid",
        "1337",
        "--exclude-inbound-ports",
        `${P.ready},${P.metrics}`,
      ],
      securityContext: {
        runAsUser: 0,
        runAsNonRoot: false,
        allowPrivilegeEscalation: false,
        capabilities: { add: ["NET_ADMIN", "NET_RAW"], drop: ["ALL"] },
      },
    });
    expect(sidecar).toMatchObject({
      name: "wasmesh-sidecar",
      image: IMAGE,
      restartPolicy: "Always",
      command: ["node", "/app/bin/wasmesh.js"],
      env: [
        { name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
        { name: "POD_NAMESPACE", valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } } },
        { name: "POD_IP", valueFrom: { fieldRef: { fieldPath: "status.podIP" } } },
      ],
      startupProbe: { httpGet: { path: "/ready", port: P.ready } },
      readinessProbe: { httpGet: { path: "/ready", port: P.ready } },
      resources: { requests: { cpu: "100m", memory: "128Mi" }, limits: { memory: "512Mi" } },
      securityContext: {
        runAsUser: 1337,
        runAsNonRoot: true,
        readOnlyRootFilesystem: true,
        allowPrivilegeEscalation: false,
        capabilities: { drop: ["ALL"] },
      },
    });
    expect(sidecar?.args).toEqual([
      "dataplane",
      "run",
      "--name",
      "$(POD_NAME).$(POD_NAMESPACE)",
      "--service",
      `reviews.${mesh}`,
      "--app-port",
      "9080",
      "--labels",
      "app=reviews,version=v2,wasmesh.io/service=reviews",
      "--token-file",
      "/var/run/secrets/wasmesh.io/token/token",
      "--cp",
      `https://127.0.0.1:${lead.httpPort}`,
      "--xds",
      `127.0.0.1:${lead.xdsPort}`,
      "--ca-file",
      "/var/run/secrets/wasmesh.io/ca/ca.pem",
      "--inbound-port",
      String(P.inbound),
      "--outbound-port",
      String(P.outbound),
      "--admin-port",
      String(P.admin),
      "--ready-port",
      String(P.ready),
      "--ready-address",
      "0.0.0.0",
      "--metrics-port",
      String(P.metrics),
      "--metrics-address",
      "0.0.0.0",
      "--no-register",
      "--data",
      "/var/lib/wasmesh-dataplane",
      "--",
      "--concurrency",
      "2",
    ]);
    expect(stored.spec?.volumes).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          name: "wasmesh-token",
          projected: expect.objectContaining({
            sources: [
              { serviceAccountToken: { audience: "wasmesh", expirationSeconds: 3600, path: "token" } },
            ],
          }),
        }),
        expect.objectContaining({
          name: "wasmesh-ca",
          downwardAPI: expect.objectContaining({
            items: [
              {
                path: "ca.pem",
                fieldRef: { apiVersion: "v1", fieldPath: "metadata.annotations['wasmesh.io/ca-bundle']" },
              },
            ],
          }),
        }),
        expect.objectContaining({ name: "wasmesh-data", emptyDir: {} }),
      ]),
    );

    // Playing the kubelet: the stored command line, expanded and with its mounts, is one the CLI takes.
    const env = containerEnv(sidecar as k8s.V1Container, {
      "metadata.name": stored.metadata?.name as string,
      "metadata.namespace": mesh,
      "status.podIP": "10.0.0.9",
    });
    const mounts = tempDir("inject-mounts");
    for (const dir of ["token", "ca"]) mkdirSync(join(mounts, dir));
    writeFileSync(join(mounts, "token", "token"), "eyJhbGciOiJSUzI1NiJ9.e30.c2ln\n");
    writeFileSync(join(mounts, "ca", "ca.pem"), bundle as string);
    const line = commandLine(sidecar as k8s.V1Container, env, {
      [TOKEN_DIR]: join(mounts, "token"),
      [CA_DIR]: join(mounts, "ca"),
    });
    expect(await runOptions(line.slice(4), () => {})).toMatchObject({
      name: `reviews-v2-1.${mesh}`,
      service: `reviews.${mesh}`,
      appPort: 9080,
      register: false,
      ca: bundle,
    });
  });

  it("stores pods unchanged in an unlabelled namespace, in the control plane's, and opted out", async () => {
    const plain = await freshNamespace(server, "plain");
    // Even labelled, the control plane's own namespace is never injected (its pods serve the webhook).
    await core.patchNamespace(
      {
        name: namespace,
        body: [{ op: "add", path: "/metadata/labels/wasmesh.io~1sidecar-injection", value: "enabled" }],
      },
      k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.JsonPatch),
    );
    const optOut = { annotations: { "wasmesh.io/sidecar-injection": "disabled" } };
    for (const [where, body] of [
      [plain, pod("reviews-plain")],
      [namespace, pod("reviews-cp")],
      [mesh, pod("reviews-opted-out", optOut)],
    ] as const) {
      const stored = await created(where, body);
      expect(stored.spec?.initContainers, where).toBeUndefined();
      expect(stored.metadata?.labels).toEqual(body.metadata?.labels);
      expect(stored.metadata?.annotations).toEqual(body.metadata?.annotations);
      expect(stored.spec?.volumes).toBeUndefined();
    }
  });

  it("honours other meshes' markers: Istio's namespace label and pod label, Consul's pod annotation", async () => {
    // A namespace labelled for Istio (migrating from it): its pods get wasmesh's sidecar…
    const istio = await freshNamespace(server, "istio", { "istio-injection": "enabled" });
    const injected = await created(istio, pod("reviews-istio"));
    expect(wasmeshContainers(injected)).toEqual(["wasmesh-capture", "wasmesh-sidecar"]);
    expect(injected.metadata?.annotations?.["wasmesh.io/sidecar"]).toBe("injected");
    expect(injected.metadata?.labels?.["wasmesh.io/service"]).toBe("reviews");
    // …except one Istio's pod label opts out (the API server does not even call the webhook for it).
    const optedOut = await created(
      istio,
      pod("reviews-istio-out", {
        labels: { app: "reviews", version: "v2", "sidecar.istio.io/inject": "false" },
      }),
    );
    expect(optedOut.spec?.initContainers).toBeUndefined();
    expect(optedOut.metadata?.annotations).toBeUndefined();
    // In a namespace of no mesh: Istio's pod label opts in, and so does Consul's annotation (through
    // the webhook that sees every other pod, as no selector reads annotations); a plain pod stays so.
    const none = await freshNamespace(server, "migrating");
    const labelled = await created(
      none,
      pod("reviews-istio-pod", {
        labels: { app: "reviews", version: "v2", "sidecar.istio.io/inject": "true" },
      }),
    );
    expect(wasmeshContainers(labelled)).toEqual(["wasmesh-capture", "wasmesh-sidecar"]);
    const consul = await created(
      none,
      pod("reviews-consul", { annotations: { "consul.hashicorp.com/connect-inject": "true" } }),
    );
    expect(wasmeshContainers(consul)).toEqual(["wasmesh-capture", "wasmesh-sidecar"]);
    expect(wasmeshContainers(await created(none, pod("reviews-none")))).toEqual([]);
    // wasmesh's own label wins: a namespace labelled disabled is not injected, whatever Istio's says.
    const off = await freshNamespace(server, "off", {
      "wasmesh.io/sidecar-injection": "disabled",
      "istio-injection": "enabled",
    });
    expect(wasmeshContainers(await created(off, pod("reviews-off")))).toEqual([]);
  });

  it("never injects twice: updating an injected pod, or creating one that has the sidecar", async () => {
    const stored = await created(mesh, pod("reviews-v2-2"));
    expect(wasmeshContainers(stored)).toEqual(["wasmesh-capture", "wasmesh-sidecar"]);
    const updated = await core.patchNamespacedPod(
      {
        name: "reviews-v2-2",
        namespace: mesh,
        body: [{ op: "add", path: "/metadata/labels/tier", value: "backend" }],
      },
      k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.JsonPatch),
    );
    expect(updated.metadata?.labels?.tier).toBe("backend");
    expect(wasmeshContainers(updated)).toEqual(["wasmesh-capture", "wasmesh-sidecar"]);
    // The stored pod sent again (as a controller re-creating it from a copy would): admitted as it is.
    const {
      resourceVersion: _rv,
      uid: _uid,
      creationTimestamp: _ct,
      managedFields: _mf,
      ...metadata
    } = stored.metadata ?? {};
    const again = await created(mesh, {
      ...stored,
      metadata: { ...metadata, name: "reviews-v2-3" },
      status: {},
    });
    expect(wasmeshContainers(again)).toEqual(["wasmesh-capture", "wasmesh-sidecar"]);
    expect(again.spec?.volumes?.map((v) => v.name).filter((n) => n.startsWith("wasmesh-"))).toEqual([
      "wasmesh-token",
      "wasmesh-ca",
      "wasmesh-data",
    ]);
  });

  it("names the service from the Service that selects the pod, and refuses a pod that cannot be meshed", async () => {
    await core.createNamespacedService({
      namespace: mesh,
      body: {
        metadata: { name: "ratings" },
        spec: { selector: { tier: "ratings" }, ports: [{ name: "http", port: 9080 }] },
      },
    });
    const stored = await created(mesh, pod("ratings-1", { labels: { tier: "ratings" } }));
    expect(stored.metadata?.labels).toEqual({ tier: "ratings", "wasmesh.io/service": "ratings" });
    const args = stored.spec?.initContainers?.[1]?.args ?? [];
    expect(args[args.indexOf("--service") + 1]).toBe(`ratings.${mesh}`);

    const asProxy = await create(mesh, pod("reviews-as-proxy", {}, { securityContext: { runAsUser: 1337 } }));
    expect(asProxy).toMatch(/admission webhook "inject.wasmesh.io" denied the request/);
    expect(asProxy).toMatch(/runs as UID 1337, the sidecar's/);
    expect(await create(mesh, pod("reviews-as-proxy"), true)).not.toBeTypeOf("string");
  });

  it("gives a sidecar that, started as the kubelet starts it, proves its pod with the projected token and turns ready", async () => {
    // What the kubelet and the control plane's controllers would have made: the service account,
    // and the Service (which discovery makes reviews.<namespace>).
    await core.createNamespacedServiceAccount({ namespace: mesh, body: { metadata: { name: "default" } } });
    await core.createNamespacedService({
      namespace: mesh,
      body: {
        metadata: { name: "reviews" },
        spec: { selector: { app: "reviews" }, ports: [{ name: "http", port: 9080 }] },
      },
    });
    const stored = await created(mesh, pod("reviews-v2-run"));
    const sidecar = stored.spec?.initContainers?.[1] as k8s.V1Container;
    // The kubelet's part: the projected token (its audience, bound to the pod), the CA file from the
    // annotation (the downward API volume), the data directory, the environment.
    const projected = stored.spec?.volumes?.find((v) => v.name === "wasmesh-token")?.projected?.sources?.[0];
    const minted = await core.createNamespacedServiceAccountToken({
      name: stored.spec?.serviceAccountName as string,
      namespace: mesh,
      body: {
        spec: {
          audiences: [projected?.serviceAccountToken?.audience as string],
          expirationSeconds: projected?.serviceAccountToken?.expirationSeconds as number,
          boundObjectRef: {
            apiVersion: "v1",
            kind: "Pod",
            name: stored.metadata?.name,
            uid: stored.metadata?.uid,
          },
        },
      },
    });
    const mounts = tempDir("inject-run");
    for (const dir of ["token", "ca", "data"]) mkdirSync(join(mounts, dir));
    writeFileSync(join(mounts, "token", "token"), minted.status?.token as string);
    writeFileSync(
      join(mounts, "ca", "ca.pem"),
      stored.metadata?.annotations?.["wasmesh.io/ca-bundle"] as string,
    );
    const env = containerEnv(sidecar, {
      "metadata.name": stored.metadata?.name as string,
      "metadata.namespace": mesh,
      "status.podIP": "127.0.0.1",
    });
    const line = commandLine(sidecar, env, {
      [TOKEN_DIR]: join(mounts, "token"),
      [CA_DIR]: join(mounts, "ca"),
      [DATA_DIR]: join(mounts, "data"),
    });
    // The image's `node /app/bin/wasmesh.js` is this checkout's bin; Envoy is .tools'.
    const agent = startAgentProcess({ args: line.slice(4), envoyArgs: [] });
    try {
      await agent.waitReady(90_000);
      const probe = await fetch(`http://127.0.0.1:${P.ready}/ready`);
      expect(probe.status).toBe(200);
      await agent.waitForOutput(/not registering a Workload/);
      expect(agent.stdout()).toMatch(
        new RegExp(
          `ports: inbound ${P.inbound}, outbound ${P.outbound}, admin ${P.admin}, ready ${P.ready}, metrics ${P.metrics}`,
        ),
      );
      // The scrape annotations point at an endpoint that answers, with the agent's own metrics.
      const scraped = await fetch(`http://127.0.0.1:${P.metrics}/metrics`);
      expect(scraped.status).toBe(200);
      expect(await scraped.text()).toMatch(/^# TYPE wasmesh_\w+ (counter|gauge)$/m);
    } finally {
      await agent.stop();
    }
    expect((await agent.exited).code, agent.stderr()).toBe(0);
  }, 150_000);

  it("registers a webhook once: an unchanged registration is not written again, a changed one is", async () => {
    // The real client, with its writes counted: the API server itself turns an unchanged PUT into no
    // write (the resourceVersion stays), so only the request tells whether one was sent.
    const real = createKubeClient(server.kubeConfig);
    const writes: string[] = [];
    const client: KubeClient = {
      server: real.server,
      request: (method, path, options) => {
        if (method !== "GET") writes.push(method);
        return real.request(method, path, options);
      },
      find: (path) => real.find(path),
      watch: (path, query, onEvent, signal) => real.watch(path, query, onEvent, signal),
    };
    const name = `wasmesh-noop-${namespace}`;
    const desired = (timeoutSeconds: number) => ({
      apiVersion: "admissionregistration.k8s.io/v1",
      kind: "ValidatingWebhookConfiguration",
      metadata: { name },
      webhooks: [
        {
          name: "noop.wasmesh.io",
          clientConfig: { url: "https://127.0.0.1:1/validate" },
          rules: [
            { apiGroups: [""], apiVersions: ["v1"], operations: ["CREATE"], resources: ["configmaps"] },
          ],
          // Never matches: no namespace carries this label.
          namespaceSelector: { matchLabels: { "wasmesh.io/never": "true" } },
          failurePolicy: "Ignore",
          sideEffects: "None",
          admissionReviewVersions: ["v1"],
          timeoutSeconds,
        },
      ],
    });
    const admission = server.kubeConfig.makeApiClient(k8s.AdmissionregistrationV1Api);
    const version = async () =>
      (await admission.readValidatingWebhookConfiguration({ name })).metadata?.resourceVersion;
    try {
      await ensureWebhookConfiguration(client, desired(5));
      const first = await version();
      expect(writes).toEqual(["POST"]);
      // The API server stored defaults beside what was written (matchPolicy, objectSelector...).
      await ensureWebhookConfiguration(client, desired(5));
      expect(writes).toEqual(["POST"]);
      expect(await version()).toBe(first);
      await ensureWebhookConfiguration(client, desired(7));
      expect(writes).toEqual(["POST", "PUT"]);
      expect(await version()).not.toBe(first);
      expect(
        (await admission.readValidatingWebhookConfiguration({ name })).webhooks?.[0]?.timeoutSeconds,
      ).toBe(7);
    } finally {
      await admission.deleteValidatingWebhookConfiguration({ name });
    }
  });

  it("keeps injecting when the leader goes: the other replica registers its own webhook", async () => {
    const first = leader();
    if (first === undefined) throw new Error("no leader");
    await first.close();
    planes.splice(planes.indexOf(first), 1);
    await until("the other replica to lead", () => leader() !== undefined, 20_000);
    let last: k8s.V1Pod | string = "";
    await until(
      () =>
        `a pod created through the new leader's webhook (last: ${typeof last === "string" ? last : "not injected"})`,
      async () => {
        last = await create(mesh, pod("reviews-after"), true);
        return typeof last !== "string" && wasmeshContainers(last).length === 2;
      },
      20_000,
      200,
    );
  });
});
