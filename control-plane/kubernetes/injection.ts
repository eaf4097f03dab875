// Sidecar injection (issue 12, §2): the mutating admission webhook that gives a pod of a mesh
// namespace (labelled `wasmesh.io/sidecar-injection: enabled`) its sidecar, as a JSON Patch (RFC
// 6902) on the Pod being created:
//
// - an init container, first, that installs the pod's traffic capture (`wasmesh dataplane capture`:
//   iptables rules, dataplane/capture.ts), as root with NET_ADMIN and NET_RAW only;
// - the agent and its Envoy (`wasmesh dataplane run`) as a native sidecar, the next init container
//   with `restartPolicy: Always`: it starts before the app's containers (its startup probe holds
//   them until it is ready) and stops after them. It runs as the proxy UID, whose connections the
//   capture leaves alone; it registers no Workload (--no-register): discovery makes the pod's
//   Workload from its EndpointSlices. It authenticates with a projected service-account token of its
//   own audience (re-read by the agent for each call, as the kubelet rotates it), and verifies the
//   control plane with the mesh's trust bundle, which the injector puts in an annotation that a
//   downward API volume turns into a file;
// - the pod's identity: its service (the `wasmesh.io/service` label, else the one Service that
//   selects the pod, else `app.kubernetes.io/name` or `app`), named `<name>.<namespace>` as
//   discovery names a Kubernetes Service, and written into the label so that the token review
//   (token-review.ts) finds the same service; the annotations discovery reads (`wasmesh.io/sidecar:
//   injected`, `wasmesh.io/inbound-port`);
// - Prometheus' scrape annotations (`prometheus.io/scrape`, `port`, `path`) pointing at the agent's
//   metrics endpoint (dataplane/metrics.ts, docs/metrics.md), which merges the mesh's metrics with
//   the app's own: a pod that already names its metrics with `prometheus.io/port` or `path` has them
//   passed to the agent (--app-metrics-port/--app-metrics-path) and the annotations replaced, as
//   Istio's metrics merging does; `prometheus.io/scrape: "false"` is kept (the pod asked not to be
//   scraped).
//
// Not injected: pods of other namespaces, of the control plane's own, opted out
// (`wasmesh.io/sidecar-injection: disabled` annotation), on the host's network (the capture would
// rewrite the node's rules), and pods that already have the sidecar (re-admission changes nothing).
// Other meshes' injection markers (Istio's, Kuma's, Consul's) count too, with wasmesh's own label
// and annotation over them: markers.ts; the injector logs the marker a pod was injected for.
// Refused, with the reason: a pod whose app runs as the proxy UID (its traffic would escape the
// capture), whose app port is one of the sidecar's, or whose service cannot be told.
import type * as k8s from "@kubernetes/client-node";
import { type AdmissionHandler, answer, deny } from "./admission.ts";
import {
  INBOUND_PORT_ANNOTATION,
  SIDECAR_ANNOTATION,
  SIDECAR_INJECTED,
  workloadLabels,
} from "./discovery.ts";
import {
  describeVerdict,
  INJECTION_DISABLED,
  INJECTION_ENABLED,
  INJECTION_LABEL,
  injectionWanted,
  type Meta,
  type Verdict,
} from "./markers.ts";
import { podService, SERVICE_LABELS } from "./token-review.ts";

/** The pod label naming its service, which the injector sets when the pod has none. */
const SERVICE_LABEL = SERVICE_LABELS[0];

/** The namespace label that asks for injection, and the pod annotation that opts a pod out. */
export { INJECTION_DISABLED, INJECTION_ENABLED, INJECTION_LABEL } from "./markers.ts";
/** A pod annotation naming the app's port, when it is not the first container's first port. */
export const APP_PORT_ANNOTATION = "wasmesh.io/app-port";
/** Set by the injector: the trust bundle the agent verifies the control plane with (PEM). */
export const CA_BUNDLE_ANNOTATION = "wasmesh.io/ca-bundle";

export const CAPTURE_CONTAINER = "wasmesh-capture";
export const SIDECAR_CONTAINER = "wasmesh-sidecar";
const TOKEN_VOLUME = "wasmesh-token";
const CA_VOLUME = "wasmesh-ca";
const DATA_VOLUME = "wasmesh-data";
export const TOKEN_DIR = "/var/run/secrets/wasmesh.io/token";
export const CA_DIR = "/var/run/secrets/wasmesh.io/ca";
export const DATA_DIR = "/var/lib/wasmesh-dataplane";

/** The sidecar's ports, pinned: the capture's rules name them. */
export interface SidecarPorts {
  outbound: number;
  inbound: number;
  admin: number;
  /** The agent's readiness endpoint, on every address (the kubelet probes the pod's IP). */
  ready: number;
  /** The agent's Prometheus endpoint, on every address (Prometheus scrapes the pod's IP). */
  metrics: number;
}
/** 15020 for the metrics: Istio's merged-metrics port, so scrape configurations written for it fit. */
export const DEFAULT_PORTS: SidecarPorts = {
  outbound: 15001,
  inbound: 15006,
  admin: 15000,
  ready: 15021,
  metrics: 15020,
};
/** Prometheus' scrape annotations (the convention kubernetes_sd_configs relabelling reads). */
export const PROMETHEUS_SCRAPE_ANNOTATION = "prometheus.io/scrape";
export const PROMETHEUS_PORT_ANNOTATION = "prometheus.io/port";
export const PROMETHEUS_PATH_ANNOTATION = "prometheus.io/path";
export const DEFAULT_PROXY_UID = 1337;
/** A pod that declares no port: the app port the sidecar's inbound listener forwards to. */
export const DEFAULT_APP_PORT = 8080;
export const DEFAULT_TOKEN_EXPIRATION_SECONDS = 3600;
/** The image's `wasmesh` (deploy/Dockerfile: the package in /app), run by node: npx writes to $HOME. */
export const DEFAULT_COMMAND = ["node", "/app/bin/wasmesh.js"];
export const DEFAULT_RESOURCES: k8s.V1ResourceRequirements = {
  requests: { cpu: "100m", memory: "128Mi" },
  limits: { memory: "512Mi" },
};
/** Envoy's worker threads: by default one per CPU of the node, far more than a sidecar needs. */
const ENVOY_CONCURRENCY = 2;

export interface InjectionConfig {
  /** The image of the capture and the sidecar: `wasmesh` (node), Envoy on PATH, iptables. */
  image: string;
  imagePullPolicy?: string;
  /** How the image runs `wasmesh` (default DEFAULT_COMMAND). */
  command?: readonly string[];
  /** The control plane's namespace: its pods are never injected (they would wait for themselves). */
  controlPlaneNamespace: string;
  /** The control plane's HTTP API as sidecars reach it, e.g. https://wasmesh-control-plane.wasmesh-system.svc:5681. */
  api: string;
  /** Its xDS server as sidecars reach it, host:port. */
  xds: string;
  /** With an https API: the PEM the agent verifies the control plane's certificate with. */
  caBundle?: string;
  /**
   * The projected service-account token's audience: the one the control plane's TokenReview asks
   * for (wasmesh server --token-audience). Absent: none, so the API server's own.
   */
  tokenAudience?: string;
  tokenExpirationSeconds?: number;
  ports?: Partial<SidecarPorts>;
  proxyUid?: number;
  resources?: k8s.V1ResourceRequirements;
}

export type InjectionDecision =
  /** `by`: another mesh's marker that asked for the sidecar (markers.ts); undefined: wasmesh's label. */
  | { inject: true; patch: JsonPatchOperation[]; service: string; warnings: string[]; by?: Verdict }
  /** Left as it is; `warn` when the pod's owner would not expect it. */
  | { inject: false; reason: string; warn: boolean }
  /** Refused: the pod asks for the mesh but cannot be given a working sidecar. */
  | { refuse: string };

export type JsonPatchOperation =
  | { op: "add" | "replace"; path: string; value: unknown }
  | { op: "remove"; path: string };

/** A JSON Pointer segment (RFC 6901): `/` and `~` escaped. */
const pointer = (segment: string) => segment.replace(/~/g, "~0").replace(/\//g, "~1");

/** The ports a container's probes reach, numbers resolved from its named ports. */
function probePorts(container: k8s.V1Container): number[] {
  const ports: number[] = [];
  for (const probe of [container.livenessProbe, container.readinessProbe, container.startupProbe]) {
    const port = probe?.httpGet?.port ?? probe?.tcpSocket?.port ?? probe?.grpc?.port;
    if (port === undefined) continue;
    const number =
      typeof port === "number"
        ? port
        : /^[0-9]+$/.test(port)
          ? Number(port)
          : container.ports?.find((p) => p.name === port)?.containerPort;
    if (number !== undefined) ports.push(number);
  }
  return ports;
}

/** Whether the selector (a Service's spec.selector) selects these labels. */
const selects = (selector: Record<string, string> | undefined, labels: Record<string, string>) =>
  selector !== undefined &&
  Object.keys(selector).length > 0 &&
  Object.entries(selector).every(([key, value]) => labels[key] === value);

/**
 * The pod's service: its `wasmesh.io/service` label, else the one Service of its namespace that
 * selects it, else its `app.kubernetes.io/name` or `app` label (the token review's order). `label`
 * is what the pod's wasmesh.io/service label must say for the token review to agree.
 */
function serviceOf(
  labels: Record<string, string>,
  namespace: string,
  services: readonly k8s.V1Service[],
): { service: string; label: string | undefined } | { refuse: string } | { none: string } {
  if (labels[SERVICE_LABEL] === undefined) {
    const selecting = services
      .filter((s) => s.spec?.type !== "ExternalName" && selects(s.spec?.selector, labels))
      .map((s) => s.metadata?.name as string)
      .sort();
    if (selecting.length === 1) {
      const name = selecting[0] as string;
      return { service: `${name}.${namespace}`, label: name };
    }
    if (selecting.length > 1) {
      // The usual labels may say which of them is its own.
      const named = [labels["app.kubernetes.io/name"], labels.app].find((l) => l && selecting.includes(l));
      if (named !== undefined) return { service: `${named}.${namespace}`, label: named };
      return {
        refuse: `Services ${selecting.join(", ")} all select the pod: label it ${SERVICE_LABEL}=<one of them> to say which is its own`,
      };
    }
  }
  const found = podService(labels, namespace, true);
  if ("service" in found)
    return {
      service: found.service,
      label: labels[SERVICE_LABEL] === undefined ? found.service.split(".")[0] : undefined,
    };
  // A wasmesh.io/service label that says something impossible is a mistake to fix; an `app` label
  // that is no service name (the mesh was not asked about it) only means there is no service.
  if (labels[SERVICE_LABEL] !== undefined) return { refuse: `its service cannot be told: ${found.reason}` };
  return { none: `no Service selects it, and ${found.reason.replace(/^it /, "it ")}` };
}

/**
 * What injecting a sidecar into `pod` (being created in `namespace`) takes: a JSON Patch, or why it
 * gets none, or why it is refused. Pure; `services` are the Kubernetes Services of the pod's
 * namespace (only read when the pod has no `wasmesh.io/service` label).
 */
export function injectionPatch(
  pod: k8s.V1Pod,
  namespace: {
    name: string;
    labels: Record<string, string> | undefined;
    annotations?: Record<string, string>;
  },
  config: InjectionConfig,
  services: readonly k8s.V1Service[] = [],
): InjectionDecision {
  const skip = (reason: string, warn = false): InjectionDecision => ({ inject: false, reason, warn });
  const wanted = injectionWanted(pod.metadata ?? {}, namespace, config.controlPlaneNamespace);
  if (!wanted.inject) return skip(wanted.reason);
  const annotations = pod.metadata?.annotations ?? {};
  const spec = pod.spec;
  if (spec === undefined) return { refuse: "the pod has no spec" };
  if ([...(spec.initContainers ?? []), ...spec.containers].some((c) => c.name === SIDECAR_CONTAINER))
    return skip("the pod already has the sidecar");
  if (spec.hostNetwork === true)
    return skip("the pod uses the host's network: its traffic cannot be captured without the node's", true);

  const ports = { ...DEFAULT_PORTS, ...config.ports };
  const proxyUid = config.proxyUid ?? DEFAULT_PROXY_UID;
  const warnings: string[] = wanted.ignored.map(
    (v) =>
      `${describeVerdict(v)} is not honoured: namespace ${namespace.name} is labelled ${INJECTION_LABEL}=${INJECTION_ENABLED}, which wins (annotate the pod ${INJECTION_LABEL}: ${INJECTION_DISABLED} to opt it out)`,
  );

  // The app must not run as the proxy UID: the capture lets that UID's connections out unmeshed.
  for (const container of [...(spec.initContainers ?? []), ...spec.containers]) {
    const uid = container.securityContext?.runAsUser ?? spec.securityContext?.runAsUser;
    if (uid === proxyUid)
      return {
        refuse: `container ${container.name} runs as UID ${proxyUid}, the sidecar's: its traffic would bypass the mesh; run it as another user`,
      };
  }

  let appPort: number;
  const annotated = annotations[APP_PORT_ANNOTATION];
  if (annotated !== undefined) {
    appPort = /^[0-9]{1,5}$/.test(annotated) ? Number(annotated) : Number.NaN;
    if (!(appPort >= 1 && appPort <= 65_535))
      return {
        refuse: `its ${APP_PORT_ANNOTATION} annotation ${JSON.stringify(annotated)} is no port number`,
      };
  } else {
    const declared = spec.containers
      .flatMap((c) => c.ports ?? [])
      .find((p) => (p.protocol ?? "TCP") === "TCP");
    appPort = declared?.containerPort ?? DEFAULT_APP_PORT;
    if (declared === undefined)
      warnings.push(
        `the pod declares no container port: the sidecar forwards inbound requests to ${DEFAULT_APP_PORT} (set the ${APP_PORT_ANNOTATION} annotation to change it)`,
      );
  }
  const taken = Object.entries(ports).find(([, port]) => port === appPort);
  if (taken !== undefined)
    return {
      refuse: `its app port ${appPort} is the sidecar's ${taken[0]} port; the app must listen on another`,
    };

  const labels = pod.metadata?.labels ?? {};
  const identity = serviceOf(labels, namespace.name, services);
  if ("refuse" in identity) return identity;
  if ("none" in identity) return skip(`it gets no sidecar: ${identity.none}`, true);

  const names = new Set([...(spec.volumes ?? []).map((v) => v.name)]);
  const clash = [TOKEN_VOLUME, CA_VOLUME, DATA_VOLUME].find((v) => names.has(v));
  if (clash !== undefined) return { refuse: `the pod has a volume named ${clash}, which the sidecar's is` };

  const https = config.api.startsWith("https:");
  if (https && config.caBundle === undefined)
    throw new Error("the injection of a sidecar that reaches the API over https needs the CA bundle");
  const image = {
    image: config.image,
    ...(config.imagePullPolicy !== undefined ? { imagePullPolicy: config.imagePullPolicy } : {}),
  };
  const command = [...(config.command ?? DEFAULT_COMMAND)];
  // The kubelet's probes of the app's ports come from the node, with no certificate: they reach the
  // app directly, as the agent's ready port does.
  // Prometheus scrapes the metrics port from outside the pod, in plain text: it is not captured.
  const excludedInbound = [
    ...new Set(
      [ports.ready, ports.metrics, ...spec.containers.flatMap(probePorts)].filter((p) => p !== ports.inbound),
    ),
  ];
  // The app's own metrics, as its scrape annotations named them: the agent merges them into its own.
  const appMetricsPort = annotations[PROMETHEUS_PORT_ANNOTATION];
  const appMetricsPath = annotations[PROMETHEUS_PATH_ANNOTATION];
  const appScraped =
    annotations[PROMETHEUS_SCRAPE_ANNOTATION] !== "false" &&
    (appMetricsPort !== undefined || appMetricsPath !== undefined);
  const appMetricsArgs: string[] = [];
  if (appScraped) {
    const port = appMetricsPort ?? String(appPort);
    if (!/^[0-9]{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65_535)
      return {
        refuse: `its ${PROMETHEUS_PORT_ANNOTATION} annotation ${JSON.stringify(port)} is no port number`,
      };
    if (Number(port) === ports.metrics)
      return {
        refuse: `its ${PROMETHEUS_PORT_ANNOTATION} annotation names the sidecar's metrics port ${ports.metrics}; the app's metrics must be on another`,
      };
    const path = appMetricsPath ?? "/metrics";
    if (!/^\/[\x21-\x7e]*$/.test(path))
      return { refuse: `its ${PROMETHEUS_PATH_ANNOTATION} annotation ${JSON.stringify(path)} is no path` };
    appMetricsArgs.push("--app-metrics-path", path, "--app-metrics-port", port);
  }
  const capture: k8s.V1Container = {
    name: CAPTURE_CONTAINER,
    ...image,
    command,
    args: [
      "dataplane",
      "capture",
      "--outbound-port",
      String(ports.outbound),
      "--inbound-port",
      String(ports.inbound),
      "--proxy-uid",
      String(proxyUid),
      "--exclude-inbound-ports",
      excludedInbound.join(","),
    ],
    securityContext: {
      runAsUser: 0,
      runAsGroup: 0,
      runAsNonRoot: false,
      allowPrivilegeEscalation: false,
      // iptables takes its lock in /run/xtables.lock.
      readOnlyRootFilesystem: false,
      capabilities: { add: ["NET_ADMIN", "NET_RAW"], drop: ["ALL"] },
    },
    resources: { requests: { cpu: "10m", memory: "32Mi" }, limits: { memory: "128Mi" } },
  };
  const podLabels = workloadLabels(pod);
  if (identity.label !== undefined) podLabels[SERVICE_LABEL] = identity.label;
  const readyProbe = { httpGet: { path: "/ready", port: ports.ready } };
  const sidecar: k8s.V1Container = {
    name: SIDECAR_CONTAINER,
    ...image,
    // A native sidecar: started before the app's containers, stopped after them.
    restartPolicy: "Always",
    command,
    args: [
      "dataplane",
      "run",
      "--name",
      "$(POD_NAME).$(POD_NAMESPACE)",
      "--service",
      identity.service,
      "--app-port",
      String(appPort),
      ...(Object.keys(podLabels).length > 0
        ? [
            "--labels",
            Object.entries(podLabels)
              .map(([k, v]) => `${k}=${v}`)
              .join(","),
          ]
        : []),
      "--token-file",
      `${TOKEN_DIR}/token`,
      "--cp",
      config.api,
      "--xds",
      config.xds,
      ...(https ? ["--ca-file", `${CA_DIR}/ca.pem`] : []),
      "--inbound-port",
      String(ports.inbound),
      "--outbound-port",
      String(ports.outbound),
      "--admin-port",
      String(ports.admin),
      "--ready-port",
      String(ports.ready),
      "--ready-address",
      "0.0.0.0",
      "--metrics-port",
      String(ports.metrics),
      "--metrics-address",
      "0.0.0.0",
      ...appMetricsArgs,
      "--no-register",
      "--data",
      DATA_DIR,
      "--",
      "--concurrency",
      String(ENVOY_CONCURRENCY),
    ],
    env: [
      { name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
      { name: "POD_NAMESPACE", valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } } },
      { name: "POD_IP", valueFrom: { fieldRef: { fieldPath: "status.podIP" } } },
    ],
    // The app's containers start once it is ready (configuration acknowledged, certificate held).
    startupProbe: { ...readyProbe, periodSeconds: 1, failureThreshold: 300 },
    readinessProbe: { ...readyProbe, periodSeconds: 5, failureThreshold: 3 },
    resources: config.resources ?? DEFAULT_RESOURCES,
    securityContext: {
      runAsUser: proxyUid,
      runAsGroup: proxyUid,
      runAsNonRoot: true,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ["ALL"] },
    },
    volumeMounts: [
      { name: TOKEN_VOLUME, mountPath: TOKEN_DIR, readOnly: true },
      ...(https ? [{ name: CA_VOLUME, mountPath: CA_DIR, readOnly: true }] : []),
      { name: DATA_VOLUME, mountPath: DATA_DIR },
    ],
  };
  const volumes: k8s.V1Volume[] = [
    {
      name: TOKEN_VOLUME,
      projected: {
        sources: [
          {
            serviceAccountToken: {
              ...(config.tokenAudience !== undefined ? { audience: config.tokenAudience } : {}),
              expirationSeconds: config.tokenExpirationSeconds ?? DEFAULT_TOKEN_EXPIRATION_SECONDS,
              path: "token",
            },
          },
        ],
      },
    },
    ...(https
      ? [
          {
            name: CA_VOLUME,
            downwardAPI: {
              items: [
                {
                  path: "ca.pem",
                  fieldRef: { fieldPath: `metadata.annotations['${CA_BUNDLE_ANNOTATION}']` },
                },
              ],
            },
          },
        ]
      : []),
    { name: DATA_VOLUME, emptyDir: {} },
  ];

  const patch: JsonPatchOperation[] = [];
  // "add" of an existing member replaces it (RFC 6902 §4.1).
  const addEntries = (path: string, current: object | undefined, entries: Record<string, string>) => {
    if (current === undefined) patch.push({ op: "add", path, value: entries });
    else
      for (const [key, value] of Object.entries(entries))
        patch.push({ op: "add", path: `${path}/${pointer(key)}`, value });
  };
  // Prometheus scrapes the agent, which serves the app's metrics too; a pod that asked not to be
  // scraped keeps its "false".
  const scrape: Record<string, string> =
    annotations[PROMETHEUS_SCRAPE_ANNOTATION] === "false"
      ? {}
      : {
          [PROMETHEUS_SCRAPE_ANNOTATION]: "true",
          [PROMETHEUS_PORT_ANNOTATION]: String(ports.metrics),
          [PROMETHEUS_PATH_ANNOTATION]: "/metrics",
        };
  addEntries("/metadata/annotations", pod.metadata?.annotations, {
    [SIDECAR_ANNOTATION]: SIDECAR_INJECTED,
    [INBOUND_PORT_ANNOTATION]: String(ports.inbound),
    ...scrape,
    ...(https ? { [CA_BUNDLE_ANNOTATION]: config.caBundle as string } : {}),
  });
  if (identity.label !== undefined)
    addEntries("/metadata/labels", pod.metadata?.labels, { [SERVICE_LABEL]: identity.label });
  // A projected token needs a service account named: the ServiceAccount admission plugin, which
  // runs before the webhooks, names `default` when the pod names none; where it does not run, so do we.
  if (!spec.serviceAccountName) patch.push({ op: "add", path: "/spec/serviceAccountName", value: "default" });
  // First, before the pod's own init containers: theirs go through the mesh too.
  if (spec.initContainers === undefined || spec.initContainers.length === 0)
    patch.push({ op: "add", path: "/spec/initContainers", value: [capture, sidecar] });
  else
    patch.push(
      { op: "add", path: "/spec/initContainers/0", value: capture },
      { op: "add", path: "/spec/initContainers/1", value: sidecar },
    );
  if (spec.volumes === undefined) patch.push({ op: "add", path: "/spec/volumes", value: volumes });
  else for (const volume of volumes) patch.push({ op: "add", path: "/spec/volumes/-", value: volume });
  return {
    inject: true,
    patch,
    service: identity.service,
    warnings,
    ...(wanted.by ? { by: wanted.by } : {}),
  };
}

interface InjectionOptionsBase {
  /** The configuration now (the CA bundle follows a rotation). */
  config: () => Promise<InjectionConfig>;
  /** The Kubernetes Services of a namespace. */
  services: (namespace: string) => Promise<k8s.V1Service[]>;
  log: (line: string) => void;
}

/**
 * How the handler reads a pod's namespace: its labels and annotations (older Kuma versions mark a
 * namespace with an annotation), or its labels only; undefined when there is no such namespace.
 */
export type InjectionOptions = InjectionOptionsBase &
  (
    | { namespaceMetadata: (namespace: string) => Promise<Meta | undefined> }
    | { namespaceLabels: (namespace: string) => Promise<Record<string, string> | undefined> }
  );

/**
 * The mutating webhook's handler: a Pod CREATE that asks for a sidecar (markers.ts: a mesh
 * namespace's, or one another mesh's markers ask for) gets the patch of injectionPatch; anything
 * else is let through unchanged. A pod injected for another mesh's marker is logged with it.
 */
export function createInjectionAdmission(options: InjectionOptions): AdmissionHandler {
  const namespaceOf = async (name: string): Promise<Meta | undefined> => {
    if ("namespaceMetadata" in options) return options.namespaceMetadata(name);
    const labels = await options.namespaceLabels(name);
    return labels === undefined ? undefined : { labels };
  };
  return async (review) => {
    const request = review.request;
    if (request === undefined) throw new Error("an AdmissionReview without a request");
    if (request.kind.group !== "" || request.kind.kind !== "Pod" || request.operation !== "CREATE")
      return answer(review, { allowed: true });
    const pod = request.object as k8s.V1Pod | null | undefined;
    if (pod == null) return deny(review, "CREATE without an object", 400);
    const namespace = request.namespace ?? pod.metadata?.namespace ?? "";
    const what = `pod ${namespace}/${pod.metadata?.name ?? `${pod.metadata?.generateName ?? ""}*`}`;
    const config = await options.config();
    const meta = namespace === config.controlPlaneNamespace ? undefined : await namespaceOf(namespace);
    const ns = {
      name: namespace,
      labels: meta?.labels,
      ...(meta?.annotations ? { annotations: meta.annotations } : {}),
    };
    const needServices =
      meta !== undefined &&
      injectionWanted(pod.metadata ?? {}, ns, config.controlPlaneNamespace).inject &&
      pod.metadata?.labels?.[SERVICE_LABEL] === undefined;
    const services = needServices ? await options.services(namespace) : [];
    const decision = injectionPatch(pod, ns, config, services);
    if ("refuse" in decision) {
      options.log(`wasmesh injector: refused ${what}: ${decision.refuse}`);
      return deny(review, `wasmesh sidecar injection: ${what}: ${decision.refuse}`);
    }
    if (!decision.inject) {
      if (decision.warn) options.log(`wasmesh injector: ${what} not injected: ${decision.reason}`);
      return answer(review, {
        allowed: true,
        ...(decision.warn ? { warnings: [`wasmesh: no sidecar: ${decision.reason}`] } : {}),
      });
    }
    const warnings = [...decision.warnings];
    if (decision.by !== undefined) {
      const because = `sidecar injected for ${describeVerdict(decision.by)} (another mesh's marker; label the namespace ${INJECTION_LABEL}=${INJECTION_ENABLED} to make it wasmesh's own)`;
      options.log(`wasmesh injector: ${what}: ${because}`);
      warnings.push(because);
    }
    return answer(review, {
      allowed: true,
      patchType: "JSONPatch",
      patch: Buffer.from(JSON.stringify(decision.patch)).toString("base64"),
      ...(warnings.length > 0 ? { warnings: warnings.map((w) => `wasmesh: ${w}`) } : {}),
    });
  };
}
