// Sidecar injection's patch (control-plane/kubernetes/injection.ts), applied to pods by an RFC 6902
// applier: the pod a mesh namespace stores, what is left alone (other namespaces, the control plane's,
// opted out, host network, already injected) and what is refused. The webhook on a real API server:
// test/kubernetes/injection.test.ts. The injected command lines are parsed by the real CLI here.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type * as k8s from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { runOptions } from "../../control-plane/cli/commands/dataplane.ts";
import type { AdmissionReview } from "../../control-plane/kubernetes/admission.ts";
import {
  CA_DIR,
  createInjectionAdmission,
  type InjectionConfig,
  injectionPatch,
  type JsonPatchOperation,
  TOKEN_DIR,
} from "../../control-plane/kubernetes/injection.ts";
import { injectionWanted, markerWebhooks } from "../../control-plane/kubernetes/markers.ts";
import { mutatingWebhookConfiguration } from "../../control-plane/kubernetes/webhooks.ts";
import { runCommand, WASMESH_BIN } from "../support/control-plane.ts";
import { commandLine, containerEnv } from "../support/kubelet.ts";
import { tempDir } from "../support/temp.ts";

const CONFIG: InjectionConfig = {
  image: "ghcr.io/wasmesh/control-plane:0.1.0",
  controlPlaneNamespace: "wasmesh-system",
  api: "https://wasmesh-control-plane.wasmesh-system.svc:5681",
  xds: "wasmesh-control-plane.wasmesh-system.svc:5678",
  caBundle: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
  tokenAudience: "wasmesh",
};
const MESH = { name: "bookinfo", labels: { "wasmesh.io/sidecar-injection": "enabled" } };

/** RFC 6902 add, replace and remove, as the API server applies a webhook's patch. */
function applyPatch<T>(document: T, patch: readonly JsonPatchOperation[]): T {
  const root = structuredClone(document) as unknown;
  for (const operation of patch) {
    const segments = operation.path
      .split("/")
      .slice(1)
      .map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"));
    const last = segments.pop() as string;
    let parent = root as Record<string, unknown>;
    for (const segment of segments) {
      const next = (parent as Record<string, unknown>)[segment];
      if (typeof next !== "object" || next === null) throw new Error(`${operation.path}: no ${segment}`);
      parent = next as Record<string, unknown>;
    }
    if (Array.isArray(parent)) {
      const index = last === "-" ? parent.length : Number(last);
      if (!(index >= 0 && index <= parent.length)) throw new Error(`${operation.path}: index out of range`);
      if (operation.op === "add") parent.splice(index, 0, structuredClone(operation.value));
      else if (operation.op === "replace") parent[index] = structuredClone(operation.value);
      else parent.splice(index, 1);
    } else if (operation.op === "remove") delete parent[last];
    else {
      if (operation.op === "replace" && !(last in parent))
        throw new Error(`${operation.path}: nothing to replace`);
      parent[last] = structuredClone(operation.value);
    }
  }
  return root as T;
}

function reviewsPod(): k8s.V1Pod {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      generateName: "reviews-v1-7d9f-",
      namespace: "bookinfo",
      labels: { app: "reviews", version: "v1", "pod-template-hash": "7d9f" },
    },
    spec: {
      containers: [{ name: "reviews", image: "reviews:v1", ports: [{ name: "http", containerPort: 9080 }] }],
    },
  };
}

function inject(pod: k8s.V1Pod, services: k8s.V1Service[] = [], config = CONFIG) {
  const decision = injectionPatch(pod, MESH, config, services);
  if (!("inject" in decision) || !decision.inject)
    throw new Error(`not injected: ${JSON.stringify(decision)}`);
  return { ...decision, pod: applyPatch(pod, decision.patch) };
}

const SIDECAR_ARGS = (service: string, appPort: number, labels: string, appMetrics: string[] = []) => [
  "dataplane",
  "run",
  "--name",
  "$(POD_NAME).$(POD_NAMESPACE)",
  "--service",
  service,
  "--app-port",
  String(appPort),
  "--labels",
  labels,
  "--token-file",
  "/var/run/secrets/wasmesh.io/token/token",
  "--cp",
  "https://wasmesh-control-plane.wasmesh-system.svc:5681",
  "--xds",
  "wasmesh-control-plane.wasmesh-system.svc:5678",
  "--ca-file",
  "/var/run/secrets/wasmesh.io/ca/ca.pem",
  "--inbound-port",
  "15006",
  "--outbound-port",
  "15001",
  "--admin-port",
  "15000",
  "--ready-port",
  "15021",
  "--ready-address",
  "0.0.0.0",
  "--metrics-port",
  "15020",
  "--metrics-address",
  "0.0.0.0",
  ...appMetrics,
  "--no-register",
  "--data",
  "/var/lib/wasmesh-dataplane",
  "--",
  "--concurrency",
  "2",
];

describe("sidecar injection's patch", () => {
  it("gives a pod of a mesh namespace the capture, then the native sidecar, its volumes, labels and annotations", () => {
    const { pod, service, warnings } = inject(reviewsPod());
    expect(service).toBe("reviews.bookinfo");
    expect(warnings).toEqual([]);
    expect(pod).toEqual({
      apiVersion: "v1",
      kind: "Pod",
      metadata: {
        generateName: "reviews-v1-7d9f-",
        namespace: "bookinfo",
        labels: {
          app: "reviews",
          version: "v1",
          "pod-template-hash": "7d9f",
          "wasmesh.io/service": "reviews",
        },
        annotations: {
          "wasmesh.io/sidecar": "injected",
          "wasmesh.io/inbound-port": "15006",
          // Prometheus scrapes the agent's merged endpoint.
          "prometheus.io/scrape": "true",
          "prometheus.io/port": "15020",
          "prometheus.io/path": "/metrics",
          "wasmesh.io/ca-bundle": CONFIG.caBundle,
        },
      },
      spec: {
        containers: [
          { name: "reviews", image: "reviews:v1", ports: [{ name: "http", containerPort: 9080 }] },
        ],
        serviceAccountName: "default",
        initContainers: [
          {
            name: "wasmesh-capture",
            image: CONFIG.image,
            command: ["node", "/app/bin/wasmesh.js"],
            args: [
              "dataplane",
              "capture",
              "--outbound-port",
              "15001",
              "--inbound-port",
              "15006",
              "--proxy-uid",
              "1337",
              "--exclude-inbound-ports",
              "15021,15020",
            ],
            securityContext: {
              runAsUser: 0,
              runAsGroup: 0,
              runAsNonRoot: false,
              allowPrivilegeEscalation: false,
              readOnlyRootFilesystem: false,
              capabilities: { add: ["NET_ADMIN", "NET_RAW"], drop: ["ALL"] },
            },
            resources: { requests: { cpu: "10m", memory: "32Mi" }, limits: { memory: "128Mi" } },
          },
          {
            name: "wasmesh-sidecar",
            image: CONFIG.image,
            restartPolicy: "Always",
            command: ["node", "/app/bin/wasmesh.js"],
            args: SIDECAR_ARGS("reviews.bookinfo", 9080, "app=reviews,version=v1,wasmesh.io/service=reviews"),
            env: [
              { name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
              { name: "POD_NAMESPACE", valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } } },
              { name: "POD_IP", valueFrom: { fieldRef: { fieldPath: "status.podIP" } } },
            ],
            startupProbe: {
              httpGet: { path: "/ready", port: 15021 },
              periodSeconds: 1,
              failureThreshold: 300,
            },
            readinessProbe: {
              httpGet: { path: "/ready", port: 15021 },
              periodSeconds: 5,
              failureThreshold: 3,
            },
            resources: { requests: { cpu: "100m", memory: "128Mi" }, limits: { memory: "512Mi" } },
            securityContext: {
              runAsUser: 1337,
              runAsGroup: 1337,
              runAsNonRoot: true,
              readOnlyRootFilesystem: true,
              allowPrivilegeEscalation: false,
              capabilities: { drop: ["ALL"] },
            },
            volumeMounts: [
              { name: "wasmesh-token", mountPath: "/var/run/secrets/wasmesh.io/token", readOnly: true },
              { name: "wasmesh-ca", mountPath: "/var/run/secrets/wasmesh.io/ca", readOnly: true },
              { name: "wasmesh-data", mountPath: "/var/lib/wasmesh-dataplane" },
            ],
          },
        ],
        volumes: [
          {
            name: "wasmesh-token",
            projected: {
              sources: [
                { serviceAccountToken: { audience: "wasmesh", expirationSeconds: 3600, path: "token" } },
              ],
            },
          },
          {
            name: "wasmesh-ca",
            downwardAPI: {
              items: [
                { path: "ca.pem", fieldRef: { fieldPath: "metadata.annotations['wasmesh.io/ca-bundle']" } },
              ],
            },
          },
          { name: "wasmesh-data", emptyDir: {} },
        ],
      },
    });
  });

  it("points Prometheus' annotations at the agent, which merges the app's own metrics they named", () => {
    const pod = reviewsPod();
    pod.metadata = {
      ...pod.metadata,
      annotations: {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9090",
        "prometheus.io/path": "/stats",
      },
    };
    const injected = inject(pod).pod;
    expect(injected.metadata?.annotations).toMatchObject({
      "prometheus.io/scrape": "true",
      "prometheus.io/port": "15020",
      "prometheus.io/path": "/metrics",
    });
    const sidecar = injected.spec?.initContainers?.[1] as k8s.V1Container;
    expect(sidecar.args).toEqual(
      SIDECAR_ARGS("reviews.bookinfo", 9080, "app=reviews,version=v1,wasmesh.io/service=reviews", [
        "--app-metrics-path",
        "/stats",
        "--app-metrics-port",
        "9090",
      ]),
    );

    // A path alone: the app's port; a port alone: /metrics.
    const pathOnly = reviewsPod();
    pathOnly.metadata = { ...pathOnly.metadata, annotations: { "prometheus.io/path": "/m" } };
    expect(inject(pathOnly).pod.spec?.initContainers?.[1]?.args).toEqual(
      expect.arrayContaining(["--app-metrics-path", "/m", "--app-metrics-port", "9080"]),
    );
    const portOnly = reviewsPod();
    portOnly.metadata = { ...portOnly.metadata, annotations: { "prometheus.io/port": "9100" } };
    expect(inject(portOnly).pod.spec?.initContainers?.[1]?.args).toEqual(
      expect.arrayContaining(["--app-metrics-path", "/metrics", "--app-metrics-port", "9100"]),
    );

    // A pod that asked not to be scraped stays unscraped, and its metrics are not merged.
    const unscraped = reviewsPod();
    unscraped.metadata = {
      ...unscraped.metadata,
      annotations: { "prometheus.io/scrape": "false", "prometheus.io/port": "9090" },
    };
    const kept = inject(unscraped).pod;
    expect(kept.metadata?.annotations?.["prometheus.io/scrape"]).toBe("false");
    expect(kept.metadata?.annotations?.["prometheus.io/port"]).toBe("9090");
    expect(kept.spec?.initContainers?.[1]?.args).not.toContain("--app-metrics-path");

    // Annotations that cannot work are refused, with the reason.
    for (const [annotations, reason] of [
      [{ "prometheus.io/port": "http" }, /prometheus\.io\/port annotation "http" is no port number/],
      [{ "prometheus.io/port": "15020" }, /the sidecar's metrics port 15020/],
      [{ "prometheus.io/path": "metrics" }, /prometheus\.io\/path annotation "metrics" is no path/],
    ] as const) {
      const bad = reviewsPod();
      bad.metadata = { ...bad.metadata, annotations: { ...annotations } };
      const decision = injectionPatch(bad, MESH, CONFIG);
      expect("refuse" in decision ? decision.refuse : "").toMatch(reason);
    }
  });

  it("goes before the pod's own init containers, next to its volumes and annotations, and excludes its probes' ports from the capture", () => {
    const pod = reviewsPod();
    pod.metadata = { ...pod.metadata, annotations: { "prometheus.io/scrape": "true" } };
    pod.spec = {
      initContainers: [{ name: "migrate", image: "migrate:1" }],
      containers: [
        {
          name: "reviews",
          image: "reviews:v1",
          ports: [
            { name: "http", containerPort: 9080 },
            { name: "health", containerPort: 9090 },
          ],
          readinessProbe: { httpGet: { path: "/healthz", port: "health" } },
          livenessProbe: { tcpSocket: { port: 9080 } },
        },
      ],
      volumes: [{ name: "config", emptyDir: {} }],
    };
    const injected = inject(pod).pod;
    expect(injected.spec?.initContainers?.map((c) => c.name)).toEqual([
      "wasmesh-capture",
      "wasmesh-sidecar",
      "migrate",
    ]);
    expect(injected.spec?.volumes?.map((v) => v.name)).toEqual([
      "config",
      "wasmesh-token",
      "wasmesh-ca",
      "wasmesh-data",
    ]);
    // The pod's scrape annotation now points at the agent (it named no metrics port or path of its own).
    expect(injected.metadata?.annotations).toEqual({
      "prometheus.io/scrape": "true",
      "wasmesh.io/sidecar": "injected",
      "wasmesh.io/inbound-port": "15006",
      "prometheus.io/port": "15020",
      "prometheus.io/path": "/metrics",
      "wasmesh.io/ca-bundle": CONFIG.caBundle,
    });
    expect(injected.spec?.initContainers?.[1]?.args).not.toContain("--app-metrics-path");
    expect(injected.spec?.initContainers?.[0]?.args?.at(-1)).toBe("15021,15020,9080,9090");
  });

  it("keeps the pod's service account, whose token the sidecar is given", () => {
    const pod = reviewsPod();
    pod.spec = { ...pod.spec, containers: pod.spec?.containers ?? [], serviceAccountName: "reviews" };
    expect(inject(pod).pod.spec?.serviceAccountName).toBe("reviews");
  });

  it("is idempotent: a pod that has the sidecar gets no second one", () => {
    const once = inject(reviewsPod()).pod;
    expect(injectionPatch(once, MESH, CONFIG)).toEqual({
      inject: false,
      reason: "the pod already has the sidecar",
      warn: false,
    });
  });

  it("leaves alone pods opted out, on the host's network, in unlabelled namespaces and in the control plane's", () => {
    const optedOut = reviewsPod();
    optedOut.metadata = { ...optedOut.metadata, annotations: { "wasmesh.io/sidecar-injection": "disabled" } };
    expect(injectionPatch(optedOut, MESH, CONFIG)).toMatchObject({ inject: false, warn: false });
    const host = reviewsPod();
    host.spec = { ...host.spec, containers: host.spec?.containers ?? [], hostNetwork: true };
    expect(injectionPatch(host, MESH, CONFIG)).toMatchObject({
      inject: false,
      warn: true,
      reason: /host's network/,
    });
    expect(injectionPatch(reviewsPod(), { name: "bookinfo", labels: {} }, CONFIG)).toMatchObject({
      inject: false,
      reason: /not labelled wasmesh.io\/sidecar-injection=enabled/,
    });
    expect(injectionPatch(reviewsPod(), { ...MESH, name: "wasmesh-system" }, CONFIG)).toMatchObject({
      inject: false,
      reason: /control plane's/,
    });
  });

  it("takes the app port from the annotation, else the first port, else 8080 with a warning", () => {
    const appPort = (pod: k8s.V1Pod) => {
      const args = inject(pod).pod.spec?.initContainers?.[1]?.args ?? [];
      return args[args.indexOf("--app-port") + 1];
    };
    const annotated = reviewsPod();
    annotated.metadata = { ...annotated.metadata, annotations: { "wasmesh.io/app-port": "9443" } };
    expect(appPort(annotated)).toBe("9443");
    const portless = reviewsPod();
    portless.spec = { containers: [{ name: "client", image: "curl" }] };
    expect(appPort(portless)).toBe("8080");
    expect(inject(portless).warnings).toEqual([expect.stringMatching(/declares no container port.*8080/)]);
  });

  it("names the service from the label, else the one Service selecting the pod, else app labels", () => {
    const service = (labels: Record<string, string>, services: k8s.V1Service[] = []) => {
      const pod = reviewsPod();
      pod.metadata = { ...pod.metadata, labels };
      return injectionPatch(pod, MESH, CONFIG, services);
    };
    const selecting = (name: string, selector: Record<string, string>): k8s.V1Service => ({
      metadata: { name, namespace: "bookinfo" },
      spec: { selector, ports: [{ port: 9080 }] },
    });
    expect(service({ "wasmesh.io/service": "ratings", app: "reviews" })).toMatchObject({
      service: "ratings.bookinfo",
    });
    const bySelector = service({ app: "reviews", version: "v1" }, [
      selecting("reviews-svc", { app: "reviews" }),
      selecting("details", { app: "details" }),
    ]);
    expect(bySelector).toMatchObject({ service: "reviews-svc.bookinfo" });
    expect(
      applyPatch(reviewsPod(), (bySelector as { patch: JsonPatchOperation[] }).patch).metadata?.labels,
    ).toMatchObject({
      "wasmesh.io/service": "reviews-svc",
    });
    expect(
      service({ app: "reviews" }, [
        selecting("reviews", { app: "reviews" }),
        selecting("all", { app: "reviews" }),
      ]),
    ).toMatchObject({ service: "reviews.bookinfo" });
    expect(
      service({ tier: "web" }, [selecting("a", { tier: "web" }), selecting("b", { tier: "web" })]),
    ).toEqual({
      refuse: expect.stringMatching(/Services a, b all select the pod: label it wasmesh.io\/service/),
    });
    expect(service({ "app.kubernetes.io/name": "reviews" })).toMatchObject({ service: "reviews.bookinfo" });
    expect(service({ "wasmesh.io/service": "reviews.other" })).toEqual({
      refuse: expect.stringMatching(/another namespace/),
    });
    expect(service({ tier: "web" })).toMatchObject({
      inject: false,
      warn: true,
      reason: /no Service selects it/,
    });
  });

  it("refuses an app that runs as the proxy UID or listens on a sidecar port", () => {
    const asProxy = reviewsPod();
    asProxy.spec = {
      ...asProxy.spec,
      containers: asProxy.spec?.containers ?? [],
      securityContext: { runAsUser: 1337 },
    };
    expect(injectionPatch(asProxy, MESH, CONFIG)).toEqual({ refuse: expect.stringMatching(/UID 1337/) });
    const onInbound = reviewsPod();
    onInbound.metadata = { ...onInbound.metadata, annotations: { "wasmesh.io/app-port": "15006" } };
    expect(injectionPatch(onInbound, MESH, CONFIG)).toEqual({
      refuse: expect.stringMatching(/15006 is the sidecar's inbound port/),
    });
  });

  it("without TLS to the control plane, mounts no CA and passes no --ca-file", () => {
    const { pod } = inject(reviewsPod(), [], {
      ...CONFIG,
      api: "http://cp.wasmesh-system.svc:5681",
      caBundle: undefined,
    });
    const sidecar = pod.spec?.initContainers?.[1];
    expect(sidecar?.args).not.toContain("--ca-file");
    expect(pod.spec?.volumes?.map((v) => v.name)).toEqual(["wasmesh-token", "wasmesh-data"]);
    expect(pod.metadata?.annotations?.["wasmesh.io/ca-bundle"]).toBeUndefined();
  });

  it("without a token audience, projects a token for the API server's own audiences", () => {
    const { pod } = inject(reviewsPod(), [], { ...CONFIG, tokenAudience: undefined });
    expect(pod.spec?.volumes?.[0]?.projected?.sources).toEqual([
      { serviceAccountToken: { expirationSeconds: 3600, path: "token" } },
    ]);
  });
});

describe("the injected command lines", () => {
  it("are what `wasmesh dataplane run` takes: the sidecar's options as the kubelet would start it", async () => {
    const sidecar = inject(reviewsPod()).pod.spec?.initContainers?.[1] as k8s.V1Container;
    const env = containerEnv(sidecar, {
      "metadata.name": "reviews-v1-7d9f-x2k4q",
      "metadata.namespace": "bookinfo",
      "status.podIP": "10.1.2.3",
    });
    // The projected token and the CA file, as the kubelet mounts them.
    const mounts = tempDir("injection-mounts");
    for (const dir of ["token", "ca"]) mkdirSync(join(mounts, dir));
    writeFileSync(join(mounts, "token", "token"), "eyJhbGciOiJSUzI1NiJ9.e30.c2ln\n");
    writeFileSync(join(mounts, "ca", "ca.pem"), CONFIG.caBundle as string);
    const line = commandLine(sidecar, env, {
      [TOKEN_DIR]: join(mounts, "token"),
      [CA_DIR]: join(mounts, "ca"),
    });
    expect(line.slice(0, 4)).toEqual(["node", "/app/bin/wasmesh.js", "dataplane", "run"]);
    const options = await runOptions(line.slice(4), () => {});
    expect(options).toMatchObject({
      name: "reviews-v1-7d9f-x2k4q.bookinfo",
      service: "reviews.bookinfo",
      appPort: 9080,
      labels: { app: "reviews", version: "v1", "wasmesh.io/service": "reviews" },
      ports: { inbound: 15006, outbound: 15001, admin: 15000, ready: 15021 },
      metrics: { port: 15020, address: "0.0.0.0" },
      api: "https://wasmesh-control-plane.wasmesh-system.svc:5681",
      xds: "wasmesh-control-plane.wasmesh-system.svc:5678",
      ca: CONFIG.caBundle,
      register: false,
      readyAddress: "0.0.0.0",
      dataDir: "/var/lib/wasmesh-dataplane",
      envoyArgs: ["--concurrency", "2"],
    });
    expect(typeof options?.token === "function" ? options.token() : options?.token).toBe(
      "eyJhbGciOiJSUzI1NiJ9.e30.c2ln",
    );
  });

  it("the capture's is what `wasmesh dataplane capture` takes (its --dry-run prints the rules)", async () => {
    const capture = inject(reviewsPod()).pod.spec?.initContainers?.[0] as k8s.V1Container;
    const line = commandLine(capture, {});
    const result = await runCommand(process.execPath, [WASMESH_BIN, ...line.slice(2), "--dry-run"], {});
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/-j REDIRECT --to-ports 15001/);
    expect(result.stdout).toMatch(/-j REDIRECT --to-ports 15006/);
    expect(result.stdout).toMatch(/--uid-owner 1337/);
    expect(result.stdout).toMatch(/--dports 15006,15021,15020 -j RETURN/);
  });
});

describe("the injection webhook's handler", () => {
  const handler = (namespaceLabels: Record<string, string> | undefined, services: k8s.V1Service[] = []) =>
    createInjectionAdmission({
      config: async () => CONFIG,
      namespaceLabels: async () => namespaceLabels,
      services: async () => services,
      log: () => {},
    });
  const review = (pod: k8s.V1Pod, operation: "CREATE" | "UPDATE" = "CREATE"): AdmissionReview => ({
    apiVersion: "admission.k8s.io/v1",
    kind: "AdmissionReview",
    request: {
      uid: "u-1",
      kind: { group: "", version: "v1", kind: "Pod" },
      namespace: "bookinfo",
      operation,
      object: pod as never,
    },
  });

  it("answers a CREATE in a mesh namespace with the patch, base64 JSON Patch", async () => {
    const answered = await handler(MESH.labels)(review(reviewsPod()));
    expect(answered.response).toMatchObject({ uid: "u-1", allowed: true, patchType: "JSONPatch" });
    const patch = JSON.parse(
      Buffer.from(answered.response?.patch ?? "", "base64").toString(),
    ) as JsonPatchOperation[];
    expect(applyPatch(reviewsPod(), patch).spec?.initContainers?.map((c) => c.name)).toEqual([
      "wasmesh-capture",
      "wasmesh-sidecar",
    ]);
  });

  it("lets through without a patch an UPDATE, an unlabelled namespace, and says why it refuses", async () => {
    for (const answered of [
      await handler(MESH.labels)(review(reviewsPod(), "UPDATE")),
      await handler({})(review(reviewsPod())),
      await handler(undefined)(review(reviewsPod())),
    ]) {
      expect(answered.response).toEqual({ uid: "u-1", allowed: true });
    }
    const asProxy = reviewsPod();
    asProxy.spec = {
      ...asProxy.spec,
      containers: asProxy.spec?.containers ?? [],
      securityContext: { runAsUser: 1337 },
    };
    const refused = await handler(MESH.labels)(review(asProxy));
    expect(refused.response).toMatchObject({
      allowed: false,
      status: { code: 422, message: expect.stringMatching(/UID 1337/) },
    });
  });
});

describe("other meshes' injection markers (markers.ts)", () => {
  const withMeta = (labels: Record<string, string> = {}, annotations: Record<string, string> = {}) => {
    const p = reviewsPod();
    p.metadata = {
      ...p.metadata,
      labels: { ...p.metadata?.labels, ...labels },
      ...(Object.keys(annotations).length > 0 ? { annotations } : {}),
    };
    return p;
  };
  const ns = (labels: Record<string, string>, annotations?: Record<string, string>, name = "bookinfo") => ({
    name,
    labels,
    ...(annotations ? { annotations } : {}),
  });
  const decide = (p: k8s.V1Pod, namespace: ReturnType<typeof ns>) => injectionPatch(p, namespace, CONFIG);

  it("Istio: the namespace label, the pod label (over the older annotation), the revision label; any no wins", () => {
    const istio = ns({ "istio-injection": "enabled" });
    expect(decide(reviewsPod(), istio)).toMatchObject({
      inject: true,
      by: { mesh: "Istio", marker: "namespace label istio-injection=enabled", inject: true },
    });
    expect(decide(withMeta({ "sidecar.istio.io/inject": "false" }), istio)).toMatchObject({
      inject: false,
      reason: "Istio's pod label sidecar.istio.io/inject=false opts it out",
    });
    expect(decide(withMeta({}, { "sidecar.istio.io/inject": "false" }), istio)).toMatchObject({
      inject: false,
      reason: /pod annotation sidecar.istio.io\/inject: "false"/,
    });
    // The label wins over the annotation.
    expect(
      decide(withMeta({ "sidecar.istio.io/inject": "true" }, { "sidecar.istio.io/inject": "false" }), istio),
    ).toMatchObject({ inject: true });
    // A namespace that says no wins over a pod that says yes (Istio: either disabled, no sidecar).
    expect(
      decide(withMeta({ "sidecar.istio.io/inject": "true" }), ns({ "istio-injection": "disabled" })),
    ).toMatchObject({ inject: false, reason: /namespace label istio-injection=disabled/ });
    // Unlabelled namespace: the pod label opts in; the annotation alone reaches no webhook of Istio's.
    expect(decide(withMeta({ "sidecar.istio.io/inject": "true" }), ns({}))).toMatchObject({
      inject: true,
      by: { marker: "pod label sidecar.istio.io/inject=true" },
    });
    expect(decide(withMeta({}, { "sidecar.istio.io/inject": "true" }), ns({}))).toMatchObject({
      inject: false,
      reason: /not labelled wasmesh.io\/sidecar-injection=enabled/,
    });
    // Revisions: any revision is wasmesh's.
    expect(decide(reviewsPod(), ns({ "istio.io/rev": "canary" }))).toMatchObject({
      inject: true,
      by: { marker: "namespace label istio.io/rev=canary" },
    });
    expect(decide(withMeta({ "istio.io/rev": "1-22" }), ns({}))).toMatchObject({
      inject: true,
      by: { marker: "pod label istio.io/rev=1-22" },
    });
    // Istio's gateways (its gateway injection template) are no sidecar's, and neither are Kuma's.
    expect(
      decide(
        withMeta({ "sidecar.istio.io/inject": "true" }, { "inject.istio.io/templates": "gateway" }),
        ns({}),
      ),
    ).toMatchObject({ inject: false, reason: /an Istio gateway gets no sidecar/ });
    expect(
      decide(withMeta({}, { "kuma.io/gateway": "enabled" }), ns({ "kuma.io/sidecar-injection": "enabled" })),
    ).toMatchObject({ inject: false, reason: /a Kuma gateway gets no sidecar/ });
    // istio-injection wins over the revision label on the namespace.
    expect(
      decide(reviewsPod(), ns({ "istio-injection": "disabled", "istio.io/rev": "canary" })),
    ).toMatchObject({ inject: false });
  });

  it("Kuma: the pod's label, else annotation, over the namespace's label, else annotation (older Kuma)", () => {
    expect(decide(reviewsPod(), ns({ "kuma.io/sidecar-injection": "enabled" }))).toMatchObject({
      inject: true,
      by: { mesh: "Kuma", marker: "namespace label kuma.io/sidecar-injection=enabled" },
    });
    expect(
      decide(
        withMeta({ "kuma.io/sidecar-injection": "disabled" }),
        ns({ "kuma.io/sidecar-injection": "enabled" }),
      ),
    ).toMatchObject({ inject: false, reason: /Kuma's pod label kuma.io\/sidecar-injection=disabled/ });
    expect(
      decide(
        withMeta({ "kuma.io/sidecar-injection": "enabled" }),
        ns({ "kuma.io/sidecar-injection": "disabled" }),
      ),
    ).toMatchObject({ inject: true, by: { marker: "pod label kuma.io/sidecar-injection=enabled" } });
    expect(decide(reviewsPod(), ns({}, { "kuma.io/sidecar-injection": "enabled" }))).toMatchObject({
      inject: true,
      by: { marker: 'namespace annotation kuma.io/sidecar-injection: "enabled"' },
    });
    expect(
      decide(
        withMeta({}, { "kuma.io/sidecar-injection": "disabled" }),
        ns({ "kuma.io/sidecar-injection": "enabled" }),
      ),
    ).toMatchObject({ inject: false });
  });

  it("Consul: the pod annotation, opt-in in any namespace but the system ones", () => {
    const consul = (value: string) => withMeta({}, { "consul.hashicorp.com/connect-inject": value });
    expect(decide(consul("true"), ns({}))).toMatchObject({
      inject: true,
      by: { mesh: "Consul", marker: 'pod annotation consul.hashicorp.com/connect-inject: "true"' },
    });
    expect(decide(consul("false"), ns({ "istio-injection": "enabled" }))).toMatchObject({
      inject: false,
      reason: /Consul's pod annotation/,
    });
    expect(decide(consul("true"), ns({}, undefined, "kube-system"))).toMatchObject({
      inject: false,
      reason: /system namespace/,
    });
    expect(decide(consul("maybe"), ns({}))).toMatchObject({ inject: false });
  });

  it("wasmesh's own label and annotation win over every other mesh's marker", () => {
    // Enabled: injected even where another mesh opts the pod out, with a warning naming the marker.
    const optedOut = decide(withMeta({ "sidecar.istio.io/inject": "false" }), MESH);
    expect(optedOut).toMatchObject({ inject: true });
    expect("by" in optedOut).toBe(false);
    expect("warnings" in optedOut && optedOut.warnings).toEqual([
      expect.stringMatching(
        /^Istio's pod label sidecar.istio.io\/inject=false is not honoured: namespace bookinfo is labelled wasmesh.io\/sidecar-injection=enabled/,
      ),
    ]);
    expect(
      decide(reviewsPod(), ns({ "wasmesh.io/sidecar-injection": "disabled", "istio-injection": "enabled" })),
    ).toMatchObject({ inject: false, reason: /wasmesh's own label wins/ });
    expect(
      decide(
        withMeta({}, { "wasmesh.io/sidecar-injection": "disabled" }),
        ns({ "istio-injection": "enabled" }),
      ),
    ).toMatchObject({ inject: false, reason: "the pod is annotated wasmesh.io/sidecar-injection: disabled" });
    expect(
      decide(reviewsPod(), ns({ "istio-injection": "enabled" }, undefined, "wasmesh-system")),
    ).toMatchObject({
      inject: false,
      reason: /control plane's/,
    });
  });

  it("the handler reads the namespace's labels and annotations, and logs the marker a pod was injected for", async () => {
    const lines: string[] = [];
    const handler = createInjectionAdmission({
      config: async () => CONFIG,
      namespaceMetadata: async () => ({
        labels: {},
        annotations: { "kuma.io/sidecar-injection": "enabled" },
      }),
      services: async () => [],
      log: (line) => lines.push(line),
    });
    const answered = await handler({
      apiVersion: "admission.k8s.io/v1",
      kind: "AdmissionReview",
      request: {
        uid: "u-2",
        kind: { group: "", version: "v1", kind: "Pod" },
        namespace: "bookinfo",
        operation: "CREATE",
        object: reviewsPod() as never,
      },
    });
    expect(answered.response).toMatchObject({ allowed: true, patchType: "JSONPatch" });
    expect(answered.response?.warnings).toEqual([
      expect.stringMatching(
        /^wasmesh: sidecar injected for Kuma's namespace annotation kuma.io\/sidecar-injection/,
      ),
    ]);
    expect(lines).toEqual([
      expect.stringMatching(
        /^wasmesh injector: pod bookinfo\/reviews-v1-7d9f-\*: sidecar injected for Kuma's namespace annotation/,
      ),
    ]);
  });
});

/** Whether a LabelSelector (matchLabels, matchExpressions) selects these labels, as the API server does. */
function selects(
  selector:
    | {
        matchLabels?: Record<string, string>;
        matchExpressions?: { key: string; operator: string; values?: string[] }[];
      }
    | undefined,
  labels: Record<string, string>,
): boolean {
  if (selector === undefined) return true;
  return (
    Object.entries(selector.matchLabels ?? {}).every(([k, v]) => labels[k] === v) &&
    (selector.matchExpressions ?? []).every((e) => {
      const value = labels[e.key];
      switch (e.operator) {
        case "In":
          return value !== undefined && (e.values ?? []).includes(value);
        case "NotIn":
          return value === undefined || !(e.values ?? []).includes(value);
        case "Exists":
          return value !== undefined;
        case "DoesNotExist":
          return value === undefined;
        default:
          throw new Error(e.operator);
      }
    })
  );
}

describe("the mutating webhook's registration", () => {
  type Hook = {
    name: string;
    failurePolicy: string;
    namespaceSelector?: Parameters<typeof selects>[0];
    objectSelector?: Parameters<typeof selects>[0];
  };
  const hooks = (
    mutatingWebhookConfiguration({ url: "https://127.0.0.1:9443" }, "bundle", {
      controlPlaneNamespace: "wasmesh-system",
    }) as unknown as { webhooks: Hook[] }
  ).webhooks;

  it("keeps wasmesh's own webhook as it was, then one per other mesh's marker", () => {
    expect(hooks[0]).toMatchObject({
      name: "inject.wasmesh.io",
      failurePolicy: "Fail",
      namespaceSelector: {
        matchLabels: { "wasmesh.io/sidecar-injection": "enabled" },
        matchExpressions: [
          { key: "kubernetes.io/metadata.name", operator: "NotIn", values: ["wasmesh-system"] },
        ],
      },
    });
    expect(hooks.slice(1).map((h) => [h.name, h.failurePolicy])).toEqual(
      markerWebhooks("wasmesh-system").map((h) => [`${h.name}.inject.wasmesh.io`, h.failurePolicy]),
    );
    // Only the webhook that sees every other pod (for annotations) lets pods through when no replica answers.
    expect(hooks.filter((h) => h.failurePolicy === "Ignore").map((h) => h.name)).toEqual([
      "annotations.inject.wasmesh.io",
    ]);
  });

  it("sends the API server's every pod that asks for a sidecar, by any mesh's markers, to the injector", () => {
    const options = <K extends string>(key: K, values: string[]) =>
      [undefined, ...values].map((v) => [key, v] as const);
    const combine = (lists: (readonly (readonly [string, string | undefined])[])[]) =>
      lists.reduce<Record<string, string>[]>(
        (acc, list) =>
          acc.flatMap((labels) => list.map(([k, v]) => (v === undefined ? labels : { ...labels, [k]: v }))),
        [{}],
      );
    const namespaceLabels = combine([
      options("wasmesh.io/sidecar-injection", ["enabled", "disabled"]),
      options("istio-injection", ["enabled", "disabled"]),
      options("istio.io/rev", ["canary"]),
      options("kuma.io/sidecar-injection", ["enabled", "disabled"]),
    ]);
    const podLabels = combine([
      options("sidecar.istio.io/inject", ["true", "false"]),
      options("istio.io/rev", ["canary"]),
      options("kuma.io/sidecar-injection", ["enabled", "disabled"]),
    ]);
    const podAnnotations = combine([
      options("consul.hashicorp.com/connect-inject", ["true", "false"]),
      options("sidecar.istio.io/inject", ["true", "false"]),
      options("kuma.io/sidecar-injection", ["enabled", "disabled"]),
    ]);
    let wanted = 0;
    for (const name of ["bookinfo", "kube-system", "wasmesh-system"])
      for (const nsLabels of namespaceLabels)
        for (const labels of podLabels)
          for (const annotations of podAnnotations) {
            const want = injectionWanted(
              { labels, annotations },
              { name, labels: nsLabels },
              "wasmesh-system",
            );
            if (!want.inject) continue;
            wanted += 1;
            const called = hooks.filter(
              (h) =>
                selects(h.namespaceSelector, { ...nsLabels, "kubernetes.io/metadata.name": name }) &&
                selects(h.objectSelector, labels),
            );
            expect(called.length, JSON.stringify({ name, nsLabels, labels, annotations })).toBeGreaterThan(0);
            // Where a label asks, the webhook that is called fails closed, as wasmesh's own.
            if (
              annotations["consul.hashicorp.com/connect-inject"] === undefined &&
              !("kuma.io/sidecar-injection" in annotations)
            )
              expect(
                called.some((h) => h.failurePolicy === "Fail"),
                JSON.stringify({ nsLabels, labels }),
              ).toBe(true);
          }
    expect(wanted).toBeGreaterThan(1000);
  });
});

describe("wasmesh server's Kubernetes and injection flags", () => {
  it("are checked before anything starts, each usage error naming its flag", async () => {
    for (const [args, message] of [
      [["--sidecar-image", "x"], /--sidecar-image needs --kubernetes/],
      [["--kubernetes", "--sidecar-cp", "https://cp.example:5681"], /--sidecar-cp: an https URL needs --tls/],
      [["--kubernetes", "--sidecar-cp", "cp:5681"], /--sidecar-cp: expected the API's http\(s\) URL/],
      [["--kubernetes", "--sidecar-xds", "cp"], /--sidecar-xds: expected HOST:PORT, got 'cp'/],
      [["--kubernetes", "--token-audience="], /--token-audience: must not be empty/],
      // The Kubernetes mode's own.
      [["--kubeconfig", "k.yaml"], /--kubeconfig needs --kubernetes/],
      [
        ["--kubernetes", "--namespace", "Wasmesh_System"],
        /--namespace: 'Wasmesh_System' is not a namespace name/,
      ],
      [
        ["--kubernetes", "--webhook-url", "http://127.0.0.1:9443"],
        /--webhook-url: the API server calls webhooks over https only/,
      ],
      [
        ["--kubernetes", "--webhook-url", "https://127.0.0.1:9443", "--webhook-service", "x"],
        /--webhook-service and --webhook-url/,
      ],
      [["--kubernetes", "--webhook-port", "70000"], /--webhook-port/],
    ] as const) {
      const result = await runCommand(process.execPath, [WASMESH_BIN, "server", ...args], {});
      expect(result.code, result.stderr).toBe(2);
      expect(result.stderr).toMatch(message);
    }
  });
});
