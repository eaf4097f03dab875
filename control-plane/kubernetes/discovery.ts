// Discovery (issue 12, §1): the Services, EndpointSlices and Pods of the mesh's namespaces (those
// labelled `wasmesh.io/sidecar-injection: enabled`, or another label selector; and, without a
// wasmesh label, those another mesh's injection markers put in the mesh: meshNamespaces) become
// wasmesh Service and Workload documents, read-only, for the Kubernetes store's view. Nothing is
// written to the API server.
//
// - A Kubernetes Service `reviews` in namespace `bookinfo` is the Service `reviews.bookinfo`
//   (resources/schema.ts: a Service's name may be `<name>.<namespace>`), with a port per ServicePort:
//   its name (or `port-<number>`), its number, and the protocol from its appProtocol or its name's
//   prefix, as Istio reads them (http by default). ExternalName services, and ports other than TCP,
//   are not the mesh's.
// - Each ready endpoint of its EndpointSlices whose target is a Pod is a Workload of it: the pod's
//   IP, its labels (so that `version: v2` subsets select it), and, when the injector gave it a sidecar
//   (`wasmesh.io/sidecar: injected`), the sidecar's inbound port (`wasmesh.io/inbound-port`) with the
//   endpoint's port as its appPort and mtls: true; without a sidecar, the endpoint's port. The
//   Workload is `<pod>.<namespace>` for the pod's own service (the one its labels name, as for its
//   token: `wasmesh.io/service`, else `app.kubernetes.io/name`, else `app`; else its only one) and
//   `<pod>.<service>.<namespace>` for any other Service that selects it too.
// - A Workload has one port (the model's): a multi-port Service's workloads are called on the
//   endpoint port of the Service's first port.
//
// Each kind is listed, then watched from the list's resourceVersion (@kubernetes/client-node's
// informer: a 410 Gone re-lists); a watch that fails is restarted with a backoff. Every change
// recomputes the documents from the caches; onChange is called when they differ. An object that
// cannot be mapped is left out with a log line naming it and why, logged once while it stays so.
import * as k8s from "@kubernetes/client-node";
import { portProtocol } from "../imports/kubernetes.ts";
import { API_VERSION, type Service, validateResource, type Workload } from "../resources/index.ts";
import { describeKubeError } from "./errors.ts";
import { describeVerdict, INJECTION_LABEL, injectionWanted, namespaceMarker } from "./markers.ts";
import { podService } from "./token-review.ts";

/** The label of the namespaces whose pods get a sidecar: the mesh's namespaces by default. */
export const MESH_NAMESPACE_SELECTOR = "wasmesh.io/sidecar-injection=enabled";

type Term = (labels: Record<string, string>) => boolean;

/**
 * A Kubernetes label selector (`a=b,c!=d,e in (x,y),f notin (z),g,!h`) as a predicate on labels,
 * as the API server evaluates one; an empty selector selects everything. Throws on a malformed one.
 */
export function labelSelector(selector: string): Term {
  const terms: Term[] = [];
  let depth = 0;
  let start = 0;
  const parts: string[] = [];
  for (let i = 0; i <= selector.length; i++) {
    const c = selector[i];
    if (c === "(") depth++;
    else if (c === ")") depth--;
    else if ((c === "," && depth === 0) || i === selector.length) {
      parts.push(selector.slice(start, i).trim());
      start = i + 1;
    }
  }
  const KEY = "[A-Za-z0-9][-A-Za-z0-9_./]*";
  const SET = new RegExp(`^(${KEY})\\s+(in|notin)\\s*\\(([^()]*)\\)$`);
  const EQUALITY = new RegExp(`^(${KEY})\\s*(!=|==|=)\\s*([-A-Za-z0-9_.]*)$`);
  const EXISTS = new RegExp(`^(!?)\\s*(${KEY})$`);
  for (const part of parts) {
    if (part === "" && parts.length === 1) break;
    const set = part.match(SET);
    const equality = part.match(EQUALITY);
    const exists = part.match(EXISTS);
    if (set !== null) {
      const [, key, op, list] = set as unknown as [string, string, string, string];
      const values = list.split(",").map((v) => v.trim());
      terms.push(
        op === "in"
          ? (l) => l[key] !== undefined && values.includes(l[key])
          : (l) => l[key] === undefined || !values.includes(l[key]),
      );
    } else if (equality !== null) {
      const [, key, op, value] = equality as unknown as [string, string, string, string];
      terms.push(op === "!=" ? (l) => l[key] !== value : (l) => l[key] === value);
    } else if (exists !== null) {
      const [, not, key] = exists as unknown as [string, string, string];
      terms.push(not === "!" ? (l) => l[key] === undefined : (l) => l[key] !== undefined);
    } else throw new Error(`'${selector}' is no label selector: '${part}'`);
  }
  return (labels) => terms.every((t) => t(labels));
}

/**
 * The mesh's namespaces, each with why: those the selector selects (wasmesh's label by default);
 * then, when they have no wasmesh.io/sidecar-injection label of their own, those another mesh's
 * namespace marker enables (markers.ts namespaceMarker: `istio-injection: enabled`, `istio.io/rev`,
 * `kuma.io/sidecar-injection: enabled`), and those with a pod the injector gave a sidecar for a pod
 * marker of another mesh that still asks for one (Istio's or Kuma's pod label, Consul's annotation).
 */
export function meshNamespaces(
  namespaces: readonly k8s.V1Namespace[],
  pods: readonly k8s.V1Pod[],
  selector: string = MESH_NAMESPACE_SELECTOR,
): Map<string, string> {
  const selects = labelSelector(selector);
  const out = new Map<string, string>();
  const byName = new Map<
    string,
    { name: string; labels: Record<string, string>; annotations: Record<string, string> }
  >();
  for (const n of namespaces) {
    const name = n.metadata?.name;
    if (name === undefined) continue;
    const labels = n.metadata?.labels ?? {};
    if (selects(labels)) {
      out.set(name, `selected by ${selector}`);
      continue;
    }
    if (labels[INJECTION_LABEL] !== undefined) continue;
    const namespace = { name, labels, annotations: n.metadata?.annotations ?? {} };
    const marker = namespaceMarker(namespace);
    if (marker !== undefined) out.set(name, `another mesh's marker: ${describeVerdict(marker)}`);
    else byName.set(name, namespace);
  }
  // A pod the injector gave a sidecar for another mesh's pod marker, which still asks for one.
  for (const pod of pods) {
    const namespace = byName.get(pod.metadata?.namespace ?? "");
    if (namespace === undefined || out.has(namespace.name)) continue;
    if (pod.metadata?.annotations?.[SIDECAR_ANNOTATION] !== SIDECAR_INJECTED) continue;
    const wanted = injectionWanted(pod.metadata ?? {}, namespace);
    if (wanted.inject && wanted.by !== undefined)
      out.set(
        namespace.name,
        `pod ${pod.metadata?.name ?? ""} has the sidecar for another mesh's marker: ${describeVerdict(wanted.by)}`,
      );
  }
  return out;
}
/** Set by the injector on a pod it gave a sidecar. */
export const SIDECAR_ANNOTATION = "wasmesh.io/sidecar";
export const SIDECAR_INJECTED = "injected";
/** Set by the injector: the port of the sidecar's inbound listener. */
export const INBOUND_PORT_ANNOTATION = "wasmesh.io/inbound-port";
/** EndpointSlices name their Service with this label. */
export const SLICE_SERVICE_LABEL = "kubernetes.io/service-name";

/**
 * Pod labels that differ per pod or per rollout and select nothing a route means: left out of a
 * Workload's labels, so that a subset never depends on them.
 */
const NOISY_LABELS = new Set([
  "pod-template-hash",
  "controller-revision-hash",
  "pod-template-generation",
  "statefulset.kubernetes.io/pod-name",
  "apps.kubernetes.io/pod-index",
  "controller-uid",
  "batch.kubernetes.io/controller-uid",
]);

export interface DiscoveredResources {
  services: Service[];
  workloads: Workload[];
}

/** A Kubernetes object left out, and why. */
export interface Skipped {
  /** e.g. `Service bookinfo/reviews`, `Pod bookinfo/reviews-v1-abc (Service bookinfo/reviews)`. */
  object: string;
  reason: string;
}

type Mapped<T> = { ok: true; resource: T } | { ok: false; reason: string };

/** The canonical wasmesh name of a Kubernetes Service: `<name>.<namespace>`. */
export function discoveredServiceName(name: string, namespace: string): string {
  return `${name}.${namespace}`;
}

const objectName = (kind: string, metadata: k8s.V1ObjectMeta | undefined) =>
  `${kind} ${metadata?.namespace ?? ""}/${metadata?.name ?? "(unnamed)"}`;

/** The validation errors of a document made here, as one reason. */
function invalid(errors: readonly { path: string; message: string }[]): string {
  return `its wasmesh document would be invalid: ${errors.map((e) => `${e.path}: ${e.message}`).join("; ")}`;
}

/** A ServicePort's protocol for the mesh (appProtocol, else the name's prefix, else http). */
export { portProtocol } from "../imports/kubernetes.ts";

/** A Kubernetes Service as a wasmesh Service, or why it is none. */
export function mapService(service: k8s.V1Service): Mapped<Service> {
  const name = service.metadata?.name;
  const namespace = service.metadata?.namespace;
  if (name === undefined || namespace === undefined)
    return { ok: false, reason: "it has no name or namespace" };
  const spec = service.spec;
  if (spec?.type === "ExternalName") {
    return { ok: false, reason: "an ExternalName service has no endpoints of the mesh" };
  }
  const tcp = (spec?.ports ?? []).filter((p) => (p.protocol ?? "TCP") === "TCP");
  if (tcp.length === 0) {
    return {
      ok: false,
      reason:
        (spec?.ports ?? []).length === 0
          ? "it has no ports (a headless service without ports has nothing to route to)"
          : "it has no TCP port (the mesh serves TCP only)",
    };
  }
  const doc = {
    apiVersion: API_VERSION,
    kind: "Service",
    metadata: { name: discoveredServiceName(name, namespace) },
    spec: {
      ports: tcp.map((p) => ({ name: p.name || `port-${p.port}`, port: p.port, protocol: portProtocol(p) })),
    },
  };
  const result = validateResource(doc);
  if (!result.ok) return { ok: false, reason: invalid(result.errors) };
  return { ok: true, resource: result.resource as Service };
}

/** The Kubernetes objects discovery reads, already narrowed to the mesh's namespaces or not. */
export interface ClusterObjects {
  /** The names of the mesh's namespaces: everything else is ignored. */
  namespaces: ReadonlySet<string>;
  services: readonly k8s.V1Service[];
  endpointSlices: readonly k8s.V1EndpointSlice[];
  pods: readonly k8s.V1Pod[];
}

/** A Workload's labels: the pod's, without the per-pod and per-rollout ones (NOISY_LABELS). */
export function workloadLabels(pod: k8s.V1Pod): Record<string, string> {
  return Object.fromEntries(
    Object.entries(pod.metadata?.labels ?? {}).filter(([key]) => !NOISY_LABELS.has(key)),
  );
}

/** The sidecar's inbound port from the injector's annotation; undefined without a sidecar. */
function sidecarPort(pod: k8s.V1Pod): { port: number } | { reason: string } | undefined {
  const annotations = pod.metadata?.annotations ?? {};
  if (annotations[SIDECAR_ANNOTATION] !== SIDECAR_INJECTED) return undefined;
  const raw = annotations[INBOUND_PORT_ANNOTATION];
  if (raw === undefined) return { reason: `it has a sidecar but no ${INBOUND_PORT_ANNOTATION} annotation` };
  const port = /^[0-9]{1,5}$/.test(raw) ? Number(raw) : Number.NaN;
  if (!(port >= 1 && port <= 65_535)) {
    return { reason: `its ${INBOUND_PORT_ANNOTATION} annotation ${JSON.stringify(raw)} is no port number` };
  }
  return { port };
}

/** The EndpointSlice port that serves the Service's first port (by name; a slice of one port: it). */
function slicePort(slice: k8s.V1EndpointSlice, first: k8s.V1ServicePort): number | undefined {
  const ports = (slice.ports ?? []).filter((p) => (p.protocol ?? "TCP") === "TCP" && p.port !== undefined);
  const named = ports.find((p) => (p.name ?? "") === (first.name ?? ""));
  return (named ?? (ports.length === 1 ? ports[0] : undefined))?.port;
}

/**
 * The wasmesh documents of the mesh's namespaces: a Service per mappable Kubernetes Service, and a
 * Workload per ready endpoint of its EndpointSlices that targets a known Pod (see the top of the
 * file). Pure: the same objects give the same documents, sorted by name.
 */
export function discoverResources(objects: ClusterObjects): {
  resources: DiscoveredResources;
  skipped: Skipped[];
} {
  const skipped: Skipped[] = [];
  const inMesh = (metadata: k8s.V1ObjectMeta | undefined) =>
    metadata?.namespace !== undefined && objects.namespaces.has(metadata.namespace);

  const services = new Map<string, { k8s: k8s.V1Service; doc: Service }>();
  for (const service of objects.services) {
    if (!inMesh(service.metadata)) continue;
    const mapped = mapService(service);
    if (!mapped.ok) skipped.push({ object: objectName("Service", service.metadata), reason: mapped.reason });
    else
      services.set(`${service.metadata?.namespace}/${service.metadata?.name}`, {
        k8s: service,
        doc: mapped.resource,
      });
  }
  const pods = new Map(
    objects.pods
      .filter((p) => inMesh(p.metadata))
      .map((p) => [`${p.metadata?.namespace}/${p.metadata?.name}`, p]),
  );

  // Every (pod, service) pair first, so that a pod's Workload names can depend on how many it backs.
  interface Backing {
    pod: k8s.V1Pod;
    podName: string;
    namespace: string;
    service: { k8s: k8s.V1Service; doc: Service };
    address: string;
    port: number;
    zone: string | undefined;
  }
  const backings = new Map<string, Backing>(); // by `<namespace>/<pod>/<service>`: the first slice wins
  for (const slice of objects.endpointSlices) {
    if (!inMesh(slice.metadata)) continue;
    const namespace = slice.metadata?.namespace as string;
    const serviceName = slice.metadata?.labels?.[SLICE_SERVICE_LABEL];
    const service = serviceName === undefined ? undefined : services.get(`${namespace}/${serviceName}`);
    if (service === undefined) continue; // not a Service's, or one that is skipped (and said so)
    const sliceName = objectName("EndpointSlice", slice.metadata);
    if (slice.addressType === "FQDN") {
      skipped.push({ object: sliceName, reason: "its addresses are FQDNs, not pod IPs" });
      continue;
    }
    // mapService kept the Service for its TCP ports, so it has a first one.
    const first = service.k8s.spec?.ports?.find((p) => (p.protocol ?? "TCP") === "TCP");
    const port = first === undefined ? undefined : slicePort(slice, first);
    if (first === undefined || port === undefined) {
      skipped.push({
        object: sliceName,
        reason: `it has no port for the Service's port ${JSON.stringify(first?.name || first?.port)}`,
      });
      continue;
    }
    for (const endpoint of slice.endpoints ?? []) {
      if (endpoint.conditions?.ready === false) continue;
      const target = endpoint.targetRef;
      if (target?.kind !== "Pod" || target.name === undefined) {
        skipped.push({
          object: `${sliceName} endpoint ${endpoint.addresses?.[0] ?? "(no address)"}`,
          reason: "its target is not a Pod",
        });
        continue;
      }
      const podNamespace = target.namespace ?? namespace;
      const pod = pods.get(`${podNamespace}/${target.name}`);
      const what = `Pod ${podNamespace}/${target.name} (Service ${namespace}/${serviceName})`;
      if (pod === undefined) {
        skipped.push({ object: what, reason: "the Pod is not known (yet) in a mesh namespace" });
        continue;
      }
      const address = endpoint.addresses?.[0];
      if (address === undefined) {
        skipped.push({ object: what, reason: "its endpoint has no address" });
        continue;
      }
      const key = `${podNamespace}/${target.name}/${serviceName}`;
      if (!backings.has(key)) {
        backings.set(key, {
          pod,
          podName: target.name,
          namespace: podNamespace,
          service,
          address,
          port,
          zone: endpoint.zone,
        });
      }
    }
  }

  const servicesOfPod = new Map<string, string[]>();
  for (const b of backings.values()) {
    const key = `${b.namespace}/${b.podName}`;
    servicesOfPod.set(key, [...(servicesOfPod.get(key) ?? []), b.service.k8s.metadata?.name as string]);
  }
  const workloads: Workload[] = [];
  for (const b of backings.values()) {
    const serviceName = b.service.k8s.metadata?.name as string;
    const what = `Pod ${b.namespace}/${b.podName} (Service ${b.namespace}/${serviceName})`;
    const own = servicesOfPod.get(`${b.namespace}/${b.podName}`) ?? [];
    // The pod's own service: the one its labels name, as its token's (token-review.ts), when the pod
    // backs it; else its only one.
    const named = podService(b.pod.metadata?.labels, b.namespace, true);
    const labelled = own.find(
      (s) => "service" in named && named.service === discoveredServiceName(s, b.namespace),
    );
    const primary = labelled !== undefined ? labelled === serviceName : own.length === 1;
    const sidecar = sidecarPort(b.pod);
    if (sidecar !== undefined && "reason" in sidecar) {
      skipped.push({ object: what, reason: sidecar.reason });
      continue;
    }
    const labels = workloadLabels(b.pod);
    const doc = {
      apiVersion: API_VERSION,
      kind: "Workload",
      metadata: {
        name: primary ? `${b.podName}.${b.namespace}` : `${b.podName}.${serviceName}.${b.namespace}`,
      },
      spec: {
        service: b.service.doc.metadata.name,
        address: b.address,
        port: sidecar?.port ?? b.port,
        ...(sidecar !== undefined ? { appPort: b.port, mtls: true } : {}),
        // What its certificate names (token-review.ts: the pod's service account is its identity).
        serviceAccount: b.pod.spec?.serviceAccountName || "default",
        ...(Object.keys(labels).length > 0 ? { labels } : {}),
        ...(b.zone !== undefined ? { zone: b.zone } : {}),
      },
    };
    const result = validateResource(doc);
    if (!result.ok) skipped.push({ object: what, reason: invalid(result.errors) });
    else workloads.push(result.resource as Workload);
  }

  const byName = <T extends { metadata: { name: string } }>(a: T, b: T) =>
    a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0;
  // Two pods whose names collide once joined (`a.b` + `c` and `a` + `b.c`) cannot both be kept.
  const unique: Workload[] = [];
  for (const w of workloads.sort(byName)) {
    if (unique.at(-1)?.metadata.name === w.metadata.name) {
      skipped.push({ object: `Workload ${w.metadata.name}`, reason: "another pod's Workload has its name" });
    } else unique.push(w);
  }
  return {
    resources: { services: [...services.values()].map((s) => s.doc).sort(byName), workloads: unique },
    skipped,
  };
}

export interface DiscoveryOptions {
  kubeConfig: k8s.KubeConfig;
  /**
   * A label selector of the mesh's namespaces (default MESH_NAMESPACE_SELECTOR), evaluated here over
   * every namespace; other meshes' markers add theirs (meshNamespaces). A malformed one throws.
   */
  namespaceSelector?: string;
  log: (line: string) => void;
  /** Called with the new documents whenever they change after `ready`. */
  onChange?: (resources: DiscoveredResources) => void;
  /** First and longest wait before restarting a failed list or watch (default 500 ms and 30 s). */
  backoffMs?: { initial: number; max: number };
}

export interface Discovery {
  /** The documents as of the last change (empty before `ready`). */
  current(): DiscoveredResources;
  /** Resolves when every kind has been listed once; rejects if closed before. */
  readonly ready: Promise<void>;
  close(): Promise<void>;
}

interface Watched<T extends k8s.KubernetesObject> {
  kind: string;
  informer: k8s.Informer<T> & k8s.ObjectCache<T>;
  /** Failures so far, and failures in a row (the backoff's exponent). */
  failures: number;
  attempt: number;
}

/**
 * Lists and watches the namespaces and the Services, EndpointSlices and Pods of the cluster,
 * and keeps their wasmesh documents (discoverResources) up to date. Needs get, list and watch on
 * namespaces, services, pods and discovery.k8s.io endpointslices, cluster-wide.
 */
export function startDiscovery(options: DiscoveryOptions): Discovery {
  const { kubeConfig, log } = options;
  const selector = options.namespaceSelector ?? MESH_NAMESPACE_SELECTOR;
  labelSelector(selector); // a malformed selector fails here, not at each list
  const backoff = options.backoffMs ?? { initial: 500, max: 30_000 };
  const core = kubeConfig.makeApiClient(k8s.CoreV1Api);
  const discovery = kubeConfig.makeApiClient(k8s.DiscoveryV1Api);

  const namespaces: Watched<k8s.V1Namespace> = {
    kind: "namespaces",
    failures: 0,
    attempt: 0,
    // All of them: the selector, other meshes' markers and injected pods decide (meshNamespaces).
    informer: k8s.makeInformer(kubeConfig, "/api/v1/namespaces", () => core.listNamespace()),
  };
  const services: Watched<k8s.V1Service> = {
    kind: "services",
    failures: 0,
    attempt: 0,
    informer: k8s.makeInformer(kubeConfig, "/api/v1/services", () => core.listServiceForAllNamespaces()),
  };
  const slices: Watched<k8s.V1EndpointSlice> = {
    kind: "endpointslices",
    failures: 0,
    attempt: 0,
    informer: k8s.makeInformer(kubeConfig, "/apis/discovery.k8s.io/v1/endpointslices", () =>
      discovery.listEndpointSliceForAllNamespaces(),
    ),
  };
  const pods: Watched<k8s.V1Pod> = {
    kind: "pods",
    failures: 0,
    attempt: 0,
    informer: k8s.makeInformer(kubeConfig, "/api/v1/pods", () => core.listPodForAllNamespaces()),
  };
  const all = [namespaces, services, slices, pods] as Watched<k8s.KubernetesObject>[];

  let closed = false;
  let current: DiscoveredResources = { services: [], workloads: [] };
  let currentJson = JSON.stringify(current);
  let logged = new Set<string>();
  let isReady = false;

  const recompute = () => {
    const podList = pods.informer.list();
    const mesh = meshNamespaces(namespaces.informer.list(), podList, selector);
    const { resources, skipped } = discoverResources({
      namespaces: new Set(mesh.keys()),
      services: services.informer.list(),
      endpointSlices: slices.informer.list(),
      pods: podList,
    });
    // Said once while it lasts, not at every recomputation.
    const lines = new Set([
      ...[...mesh]
        .filter(([, why]) => !why.startsWith("selected by"))
        .map(([name, why]) => `discovery: namespace ${name} is the mesh's: ${why}`),
      ...skipped.map((s) => `discovery: skipped ${s.object}: ${s.reason}`),
    ]);
    for (const line of lines) if (!logged.has(line)) log(line);
    logged = lines;
    const json = JSON.stringify(resources);
    if (json === currentJson) return;
    current = resources;
    currentJson = json;
    options.onChange?.(resources);
  };
  // Many events come at once (a list, a rollout): one recomputation for all of them.
  let scheduled = false;
  const changed = () => {
    if (scheduled || closed || !isReady) return;
    scheduled = true;
    setImmediate(() => {
      scheduled = false;
      if (!closed) recompute();
    });
  };

  const timers = new Set<NodeJS.Timeout>();
  const running = new Set<Promise<void>>();
  const synced = new Set<string>();
  let resolveReady: () => void = () => {};
  let rejectReady: (error: Error) => void = () => {};
  const ready = new Promise<void>((resolve, reject) => {
    resolveReady = resolve;
    rejectReady = reject;
  });
  ready.catch(() => {}); // a caller that never awaits it must not see an unhandled rejection

  // A failed list or watch (ListWatch reports it and stops; a 410 Gone it re-lists itself) starts
  // again after a delay that doubles while it keeps failing.
  const failed = (watched: Watched<k8s.KubernetesObject>, error: unknown) => {
    watched.failures += 1;
    if (closed) return;
    const delay = Math.min(backoff.max, backoff.initial * 2 ** watched.attempt);
    watched.attempt += 1;
    log(`discovery: ${watched.kind}: ${describeKubeError(error)}; listing or watching again in ${delay} ms`);
    const timer = setTimeout(() => {
      timers.delete(timer);
      start(watched);
    }, delay);
    timers.add(timer);
  };
  const start = (watched: Watched<k8s.KubernetesObject>) => {
    if (closed) return;
    const failuresBefore = watched.failures;
    const started = watched.informer.start().then(
      () => {
        if (closed || watched.failures !== failuresBefore) return; // failed: retried already
        watched.attempt = 0;
        synced.add(watched.kind);
        if (!isReady && synced.size === all.length) {
          isReady = true;
          recompute();
          resolveReady();
        }
      },
      // What ListWatch does not report as an error event (e.g. a kubeconfig without a cluster).
      (error: unknown) => failed(watched, error),
    );
    running.add(started);
    void started.finally(() => running.delete(started));
  };
  for (const watched of all) {
    watched.informer.on("change", changed);
    watched.informer.on("error", (error: unknown) => failed(watched, error));
    start(watched);
  }

  return {
    current: () => current,
    ready,
    async close() {
      if (closed) return;
      closed = true;
      for (const timer of timers) clearTimeout(timer);
      rejectReady(new Error("discovery closed before its first lists"));
      // A start under way may open its watch after a stop: stop again once it is done.
      for (const watched of all) await watched.informer.stop();
      await Promise.allSettled([...running]);
      for (const watched of all) await watched.informer.stop();
    },
  };
}
