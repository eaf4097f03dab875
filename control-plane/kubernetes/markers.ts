// Which pods get a sidecar (issue 13: coming from Istio, Kuma or Consul). wasmesh's own marker is
// the namespace label `wasmesh.io/sidecar-injection: enabled`, with the pod annotation
// `wasmesh.io/sidecar-injection: disabled` to opt a pod out. A cluster that ran another mesh has
// that mesh's markers on its namespaces and pods instead; wasmesh honours them, with the meaning each
// project documents, so that a namespace or pod meshed before is meshed again:
//
// - Istio: namespace label `istio-injection: enabled` (`disabled`, or any other value: no sidecar),
//   pod label `sidecar.istio.io/inject: "true"|"false"` (else the older annotation of that name; the
//   label wins when both are there; true is `true`, `y`, `yes`, `on`, any other value false), and
//   the revision label `istio.io/rev` on a namespace without `istio-injection`, or on a pod of a
//   namespace with neither: enabled (wasmesh has no revisions: any revision is wasmesh's). As Istio:
//   either label saying no wins over either saying yes, and a pod's annotation `true` alone does not
//   inject it in an unlabelled namespace (Istio's webhooks select on labels only). A pod injected with
//   Istio's `gateway` template (annotation `inject.istio.io/templates: gateway`) is a gateway: none.
// - Kuma: `kuma.io/sidecar-injection: enabled|disabled` (also `true|false`) on the pod, else on its
//   namespace; each a label, else the annotation older Kuma versions read. The pod's wins both ways.
//   A Kuma gateway pod (annotation `kuma.io/gateway: enabled`) gets none.
// - Consul: pod annotation `consul.hashicorp.com/connect-inject: "true"|"false"` (Go's booleans).
//   Consul's default (connectInject.default: false) is opt-in per pod, in any namespace;
//   connectInject.namespaceSelector and k8sAllow/DenyNamespaces are Helm values of Consul's
//   installation, which wasmesh cannot see: it reads the annotation in every namespace but the
//   system ones (Consul's default denies kube-system and kube-public).
//
// Precedence. wasmesh's own always wins: its pod annotation `disabled` is never injected; a namespace
// labelled `wasmesh.io/sidecar-injection: enabled` injects every other pod whatever other meshes'
// markers say (a pod that one of them opts out is injected, with a warning naming the marker); a
// namespace with that label at any other value (`disabled`) is not injected, whatever the other
// meshes say. Without wasmesh's label, each mesh's markers are read by that mesh's rules; when any
// of them says no, the pod gets no sidecar (an opt-out is honoured whichever mesh wrote it), else
// when any says yes it gets one, and the injector logs which marker. System namespaces
// (kube-system, kube-public, kube-node-lease) are never injected by another mesh's marker, nor is the
// control plane's namespace by any.
//
// The mutating webhook's registration (webhooks.ts) and discovery's namespaces (discovery.ts) follow
// the same rules, so that a pod injected for another mesh's marker is also discovered.

/** wasmesh's own: the namespace label that asks for injection, and the pod annotation that opts out. */
export const INJECTION_LABEL = "wasmesh.io/sidecar-injection";
export const INJECTION_ENABLED = "enabled";
export const INJECTION_DISABLED = "disabled";

export const ISTIO_NAMESPACE_LABEL = "istio-injection";
export const ISTIO_INJECT = "sidecar.istio.io/inject";
export const ISTIO_REVISION = "istio.io/rev";
export const KUMA_INJECTION = "kuma.io/sidecar-injection";
/** Pods that are another mesh's gateways (an Envoy of their own), which get no sidecar. */
export const ISTIO_TEMPLATES = "inject.istio.io/templates";
export const KUMA_GATEWAY = "kuma.io/gateway";
export const CONSUL_INJECT = "consul.hashicorp.com/connect-inject";

/** Namespaces another mesh's marker never injects (Istio's ignored ones; Consul's default deny list). */
export const SYSTEM_NAMESPACES: readonly string[] = ["kube-system", "kube-public", "kube-node-lease"];

/** Istio's true (`y`, `yes`, `true`, `on`, any case); any other non-empty value is false. */
const istioTrue = (value: string) => ["y", "yes", "true", "on"].includes(value.toLowerCase());
/** Kuma's values: `enabled`/`true` and `disabled`/`false`. */
export const KUMA_ENABLED: readonly string[] = ["enabled", "true"];
export const KUMA_DISABLED: readonly string[] = ["disabled", "false"];
/** Go's strconv.ParseBool, as consul-k8s reads its annotation. */
const GO_TRUE = ["1", "t", "T", "TRUE", "true", "True"];
const GO_FALSE = ["0", "f", "F", "FALSE", "false", "False"];

type Strings = Record<string, string> | undefined;
export interface Meta {
  labels?: Strings;
  annotations?: Strings;
}

/** One mesh's verdict on a pod, and the marker that decided it (as the log names it). */
export interface Verdict {
  inject: boolean;
  mesh: "Istio" | "Kuma" | "Consul";
  marker: string;
}

const label = (where: "namespace" | "pod", key: string, value: string) => `${where} label ${key}=${value}`;
const annotation = (where: "namespace" | "pod", key: string, value: string) =>
  `${where} annotation ${key}: ${JSON.stringify(value)}`;

/** Istio's verdict (its four webhooks' selectors, then its injectRequired); undefined: no marker. */
export function istioVerdict(pod: Meta, namespace: Meta): Verdict | undefined {
  const v = (inject: boolean, marker: string): Verdict => ({ inject, mesh: "Istio", marker });
  const fromLabel = pod.labels?.[ISTIO_INJECT];
  const fromAnnotation = pod.annotations?.[ISTIO_INJECT];
  const podValue = fromLabel ?? fromAnnotation;
  const podMarker =
    fromLabel !== undefined
      ? label("pod", ISTIO_INJECT, fromLabel)
      : annotation("pod", ISTIO_INJECT, fromAnnotation ?? "");
  if (podValue !== undefined && podValue !== "" && !istioTrue(podValue)) return v(false, podMarker);
  // Istio's gateways are injected with its `gateway` template: an Envoy of their own, no sidecar.
  const templates = pod.annotations?.[ISTIO_TEMPLATES];
  if (templates?.split(",").some((t) => t.trim() === "gateway"))
    return v(false, `${annotation("pod", ISTIO_TEMPLATES, templates)} (an Istio gateway gets no sidecar)`);
  const nsInjection = namespace.labels?.[ISTIO_NAMESPACE_LABEL];
  if (nsInjection !== undefined) {
    return v(nsInjection === "enabled", label("namespace", ISTIO_NAMESPACE_LABEL, nsInjection));
  }
  const nsRevision = namespace.labels?.[ISTIO_REVISION];
  if (nsRevision !== undefined) return v(true, label("namespace", ISTIO_REVISION, nsRevision));
  const podRevision = pod.labels?.[ISTIO_REVISION];
  if (podRevision !== undefined) return v(true, label("pod", ISTIO_REVISION, podRevision));
  // A label `true` in a namespace without Istio's labels: its object webhook. The annotation alone
  // reaches no webhook of Istio's there.
  if (fromLabel !== undefined && istioTrue(fromLabel)) return v(true, podMarker);
  return undefined;
}

/** Kuma's verdict: the pod's label, annotation, then the namespace's; undefined: no marker. */
export function kumaVerdict(pod: Meta, namespace: Meta): Verdict | undefined {
  const places: [string | undefined, (value: string) => string][] = [
    [pod.labels?.[KUMA_INJECTION], (x) => label("pod", KUMA_INJECTION, x)],
    [pod.annotations?.[KUMA_INJECTION], (x) => annotation("pod", KUMA_INJECTION, x)],
    [namespace.labels?.[KUMA_INJECTION], (x) => label("namespace", KUMA_INJECTION, x)],
    [namespace.annotations?.[KUMA_INJECTION], (x) => annotation("namespace", KUMA_INJECTION, x)],
  ];
  // Kuma's gateways (kuma.io/gateway: enabled) run kuma-dp as the gateway itself, not a sidecar.
  const gateway = pod.annotations?.[KUMA_GATEWAY];
  if (gateway !== undefined && KUMA_ENABLED.includes(gateway))
    return {
      inject: false,
      mesh: "Kuma",
      marker: `${annotation("pod", KUMA_GATEWAY, gateway)} (a Kuma gateway gets no sidecar)`,
    };
  for (const [value, marker] of places) {
    if (value === undefined) continue;
    if (KUMA_ENABLED.includes(value)) return { inject: true, mesh: "Kuma", marker: marker(value) };
    if (KUMA_DISABLED.includes(value)) return { inject: false, mesh: "Kuma", marker: marker(value) };
  }
  return undefined;
}

/** Consul's verdict: the pod's annotation; undefined: none (Consul's default: no sidecar). */
export function consulVerdict(pod: Meta): Verdict | undefined {
  const value = pod.annotations?.[CONSUL_INJECT];
  if (value === undefined) return undefined;
  const marker = annotation("pod", CONSUL_INJECT, value);
  if (GO_TRUE.includes(value)) return { inject: true, mesh: "Consul", marker };
  if (GO_FALSE.includes(value)) return { inject: false, mesh: "Consul", marker };
  return undefined;
}

export type Wanted =
  /** `by`: the other mesh's marker that asks for it (undefined: wasmesh's own label). */
  { inject: true; by?: Verdict; ignored: Verdict[] } | { inject: false; reason: string };

/**
 * Whether a pod of `namespace` asks for a sidecar, by wasmesh's markers and the other meshes' (see
 * the top of the file). `ignored`: other meshes' opt-outs that wasmesh's own label overrides.
 */
export function injectionWanted(
  pod: Meta,
  namespace: Meta & { name: string },
  controlPlaneNamespace?: string,
): Wanted {
  if (namespace.name === controlPlaneNamespace)
    return { inject: false, reason: `namespace ${namespace.name} is the control plane's` };
  if (pod.annotations?.[INJECTION_LABEL] === INJECTION_DISABLED)
    return { inject: false, reason: `the pod is annotated ${INJECTION_LABEL}: ${INJECTION_DISABLED}` };
  const own = namespace.labels?.[INJECTION_LABEL];
  const verdicts = [istioVerdict(pod, namespace), kumaVerdict(pod, namespace), consulVerdict(pod)].filter(
    (v): v is Verdict => v !== undefined,
  );
  if (own === INJECTION_ENABLED) return { inject: true, ignored: verdicts.filter((v) => !v.inject) };
  if (own !== undefined)
    return {
      inject: false,
      reason: `namespace ${namespace.name} is labelled ${INJECTION_LABEL}=${own} (wasmesh's own label wins over other meshes' markers)`,
    };
  const unlabelled = `namespace ${namespace.name} is not labelled ${INJECTION_LABEL}=${INJECTION_ENABLED}`;
  if (SYSTEM_NAMESPACES.includes(namespace.name))
    return {
      inject: false,
      reason: `${unlabelled}, and other meshes' markers do not count in a system namespace`,
    };
  const out = verdicts.find((v) => !v.inject);
  if (out !== undefined) return { inject: false, reason: `${out.mesh}'s ${out.marker} opts it out` };
  const by = verdicts.find((v) => v.inject);
  if (by !== undefined) return { inject: true, by, ignored: [] };
  return { inject: false, reason: unlabelled };
}

/**
 * The marker of another mesh that makes every pod of the namespace a mesh pod (Istio's
 * `istio-injection: enabled` or `istio.io/rev`, Kuma's `kuma.io/sidecar-injection: enabled`), when
 * the namespace has no `wasmesh.io/sidecar-injection` label of its own and is no system namespace:
 * discovery reads its Services and pods. undefined: none.
 */
export function namespaceMarker(namespace: Meta & { name: string }): Verdict | undefined {
  if (namespace.labels?.[INJECTION_LABEL] !== undefined || SYSTEM_NAMESPACES.includes(namespace.name))
    return undefined;
  const verdicts = [istioVerdict({}, namespace), kumaVerdict({}, namespace)];
  // A namespace that one mesh's label closes is not opened by another's.
  if (verdicts.some((v) => v !== undefined && !v.inject)) return undefined;
  return verdicts.find((v): v is Verdict => v?.inject === true);
}

/** What the log says of an injection for another mesh's marker. */
export const describeVerdict = (v: Verdict): string => `${v.mesh}'s ${v.marker}`;

interface Requirement {
  key: string;
  operator: "In" | "NotIn" | "Exists" | "DoesNotExist";
  values?: string[];
}
/** A mutating webhook's selectors for another mesh's markers (webhooks.ts adds the rest). */
export interface MarkerWebhook {
  /** The webhook's name is `<name>.inject.wasmesh.io`. */
  name: string;
  namespaceSelector: { matchExpressions: Requirement[] };
  objectSelector?: { matchExpressions: Requirement[] };
  failurePolicy: "Fail" | "Ignore";
}

/**
 * The webhooks that make the API server call the injector for the pods other meshes' markers ask
 * for, besides wasmesh's own (a namespace labelled `wasmesh.io/sidecar-injection: enabled`). None
 * is called for a namespace that has wasmesh's label (its own webhook decides there, or no sidecar),
 * a system namespace or the control plane's. Labels can be selected: Istio's four webhooks (its
 * namespace label, its revision label on the namespace, its pod label, the revision label on the
 * pod) and Kuma's two (namespace, pod), failing closed as wasmesh's own does. Annotations cannot:
 * Consul's, and the older annotations of Istio and Kuma, need every other pod of the cluster sent to
 * the injector. That last webhook ignores failures (Ignore): while no replica answers, such pods are
 * created without a sidecar, rather than no pod of the cluster being created at all.
 */
export function markerWebhooks(controlPlaneNamespace: string): MarkerWebhook[] {
  const base: Requirement[] = [
    { key: INJECTION_LABEL, operator: "DoesNotExist" },
    {
      key: "kubernetes.io/metadata.name",
      operator: "NotIn",
      values: [controlPlaneNamespace, ...SYSTEM_NAMESPACES],
    },
  ];
  const istioFree: Requirement[] = [
    { key: ISTIO_NAMESPACE_LABEL, operator: "DoesNotExist" },
    { key: ISTIO_REVISION, operator: "DoesNotExist" },
  ];
  const notIstioFalse: Requirement = { key: ISTIO_INJECT, operator: "NotIn", values: ["false"] };
  return [
    {
      name: "istio-namespace",
      namespaceSelector: {
        matchExpressions: [...base, { key: ISTIO_NAMESPACE_LABEL, operator: "In", values: ["enabled"] }],
      },
      objectSelector: { matchExpressions: [notIstioFalse] },
      failurePolicy: "Fail",
    },
    {
      name: "istio-revision-namespace",
      namespaceSelector: {
        matchExpressions: [
          ...base,
          { key: ISTIO_NAMESPACE_LABEL, operator: "DoesNotExist" },
          { key: ISTIO_REVISION, operator: "Exists" },
        ],
      },
      objectSelector: { matchExpressions: [notIstioFalse] },
      failurePolicy: "Fail",
    },
    {
      name: "istio-pod",
      namespaceSelector: { matchExpressions: [...base, ...istioFree] },
      objectSelector: {
        matchExpressions: [
          { key: ISTIO_INJECT, operator: "In", values: ["true"] },
          { key: ISTIO_REVISION, operator: "DoesNotExist" },
        ],
      },
      failurePolicy: "Fail",
    },
    {
      name: "istio-revision-pod",
      namespaceSelector: { matchExpressions: [...base, ...istioFree] },
      objectSelector: { matchExpressions: [notIstioFalse, { key: ISTIO_REVISION, operator: "Exists" }] },
      failurePolicy: "Fail",
    },
    {
      name: "kuma-namespace",
      namespaceSelector: {
        matchExpressions: [...base, { key: KUMA_INJECTION, operator: "In", values: [...KUMA_ENABLED] }],
      },
      objectSelector: {
        matchExpressions: [{ key: KUMA_INJECTION, operator: "NotIn", values: [...KUMA_DISABLED] }],
      },
      failurePolicy: "Fail",
    },
    {
      name: "kuma-pod",
      namespaceSelector: {
        matchExpressions: [...base, { key: KUMA_INJECTION, operator: "NotIn", values: [...KUMA_ENABLED] }],
      },
      objectSelector: {
        matchExpressions: [{ key: KUMA_INJECTION, operator: "In", values: [...KUMA_ENABLED] }],
      },
      failurePolicy: "Fail",
    },
    {
      // Every other pod, for the markers no selector can read (annotations).
      name: "annotations",
      namespaceSelector: {
        matchExpressions: [
          ...base,
          { key: ISTIO_NAMESPACE_LABEL, operator: "NotIn", values: ["enabled"] },
          { key: ISTIO_REVISION, operator: "DoesNotExist" },
          { key: KUMA_INJECTION, operator: "NotIn", values: [...KUMA_ENABLED] },
        ],
      },
      objectSelector: {
        matchExpressions: [
          { key: ISTIO_INJECT, operator: "NotIn", values: ["true"] },
          { key: ISTIO_REVISION, operator: "DoesNotExist" },
          { key: KUMA_INJECTION, operator: "NotIn", values: [...KUMA_ENABLED] },
        ],
      },
      failurePolicy: "Ignore",
    },
  ];
}
