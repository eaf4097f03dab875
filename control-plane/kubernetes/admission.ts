// The validating admission webhook (issue 12, §1): `kubectl apply` of a wasmesh resource runs the
// same checks as a write through the API, so a bad resource is refused with the field path before
// etcd holds it. The CRDs' structural schemas (crds.ts) check types and shapes; this checks the rest
// (validate.ts: weights adding up to 100, one condition per matcher, unique names, label keys;
// references between resources over the whole resulting mesh; what the modules accept as their
// configuration), by running the API's writer (api/writer.ts) as a dry run over the store's cache.
//
// It runs on the store's planning view, not the store: a dry run of the store asks the API server,
// which would call this webhook again.

import { toApiError } from "../api/errors.ts";
import { createWriter, type Desired, type Writer } from "../api/writer.ts";
import { KINDS, type Kind, type Resource, validateResource } from "../resources/index.ts";
import type { ConfigurationCheck } from "../revision/index.ts";
import type { KubeObject } from "./client.ts";
import { GROUP } from "./crds.ts";
import { FIELD_MANAGER, type KubernetesResourceStore } from "./store.ts";

/** admission.k8s.io/v1 AdmissionReview, as far as the webhooks read it. */
export interface AdmissionReview {
  apiVersion: "admission.k8s.io/v1";
  kind: "AdmissionReview";
  request?: {
    uid: string;
    kind: { group: string; version: string; kind: string };
    resource?: { group: string; version: string; resource: string };
    name?: string;
    namespace?: string;
    operation: "CREATE" | "UPDATE" | "DELETE" | "CONNECT";
    userInfo?: { username?: string; groups?: string[] };
    object?: KubeObject | null;
    oldObject?: KubeObject | null;
    dryRun?: boolean;
    /** The request's CreateOptions, UpdateOptions or DeleteOptions. */
    options?: { fieldManager?: string; preconditions?: { resourceVersion?: string } } | null;
  };
  response?: AdmissionResponse;
}

export interface AdmissionResponse {
  uid: string;
  allowed: boolean;
  status?: { code: number; reason?: string; message: string };
  warnings?: string[];
  patchType?: "JSONPatch";
  /** base64 of the JSON Patch (mutating webhooks). */
  patch?: string;
}

export interface ValidationOptions {
  store: KubernetesResourceStore;
  /** The modules' check of the configurations a write would give the proxies (revision/check.ts). */
  check?: ConfigurationCheck;
  /** Whether the module registry holds these bytes (a WasmModule must name bytes it holds). */
  hasModule: (sha256: string) => Promise<boolean>;
  log: (line: string) => void;
}

export type AdmissionHandler = (review: AdmissionReview) => Promise<AdmissionReview>;

/** The AdmissionReview answering `request` with `response` (its uid filled in). */
export function answer(review: AdmissionReview, response: Omit<AdmissionResponse, "uid">): AdmissionReview {
  return {
    apiVersion: "admission.k8s.io/v1",
    kind: "AdmissionReview",
    response: { uid: review.request?.uid ?? "", ...response },
  };
}

export const deny = (review: AdmissionReview, message: string, code = 422): AdmissionReview =>
  answer(review, {
    allowed: false,
    status: { code, reason: code === 422 ? "Invalid" : "Forbidden", message },
  });

/** The resource a custom object holds: what the API would have been sent. */
function resourceOf(object: KubeObject, kind: Kind): unknown {
  const labels = object.metadata?.labels;
  return {
    apiVersion: object.apiVersion,
    kind,
    metadata: {
      name: object.metadata?.name,
      ...(labels !== undefined && Object.keys(labels).length > 0 ? { labels } : {}),
    },
    spec: object.spec,
  };
}

/**
 * Whether the request is the control plane's own write (store.ts: its field manager on creates and
 * replaces, a resourceVersion precondition on every delete it sends). Its writer checked the whole
 * write, under its lock, before sending it; checked again here one object at a time, against a cache
 * that may not hold the write's earlier objects yet, a write of several would be refused for the
 * order its objects arrive in (a produced Route deleted before the ImportedResource that names it).
 * ImportedResources are written so only. This is no privilege: RBAC decides who may write.
 */
function fromControlPlane(request: NonNullable<AdmissionReview["request"]>): boolean {
  if (request.operation === "DELETE") return request.options?.preconditions?.resourceVersion !== undefined;
  return request.options?.fieldManager === FIELD_MANAGER;
}

/**
 * The API's writer over the store's cache (planningView), for dry runs only: what a write would do,
 * checked as the API checks it, with nothing stored (the webhooks, the import reconciler's plans).
 */
export function planningWriter(
  store: KubernetesResourceStore,
  check: ConfigurationCheck | undefined,
  log: (line: string) => void,
): Writer {
  return createWriter(
    store.planningView(),
    undefined,
    (message, error) => log(error === undefined ? message : `${message}: ${String(error)}`),
    check,
  );
}

export function createValidatingAdmission(options: ValidationOptions): AdmissionHandler {
  const writer = planningWriter(options.store, options.check, options.log);

  return async (review) => {
    const request = review.request;
    if (request === undefined) throw new Error("an AdmissionReview without a request");
    const kind = request.kind.kind as Kind;
    if (request.kind.group !== GROUP || !KINDS.includes(kind))
      return answer(review, { allowed: true, warnings: [`wasmesh does not check ${request.kind.kind}`] });
    const name = request.name ?? request.object?.metadata?.name ?? "";

    // Namespaced kinds are read from the control plane's namespace only: one elsewhere would be
    // stored and never take effect, which is worse than a refusal.
    if (
      request.namespace !== undefined &&
      request.namespace !== "" &&
      request.namespace !== options.store.namespace
    )
      return deny(
        review,
        `wasmesh resources live in namespace ${options.store.namespace}, which the control plane reads; ${kind} ${name} is in ${request.namespace}`,
        403,
      );

    if (fromControlPlane(request)) return answer(review, { allowed: true });

    let desired: Desired;
    if (request.operation === "DELETE" && kind === "ImportedResource") {
      // Alone, what the original produced would stay behind, and the reconciler (kubernetes/imports.ts)
      // would find its object still in the cluster: the original is what is deleted.
      return deny(
        review,
        `ImportedResource ${name} is deleted with its original: delete the other mesh's object (kubectl delete), or DELETE /v1/importedresources/${name} (wasmesh delete), which deletes what it produced too`,
      );
    }
    if (request.operation === "DELETE") {
      desired = { op: "delete", kind, name };
    } else if (request.operation === "CREATE" || request.operation === "UPDATE") {
      if (request.object == null) return deny(review, `${request.operation} without an object`, 400);
      const checked = validateResource(resourceOf(request.object, kind));
      if (!checked.ok)
        return deny(
          review,
          `${kind} ${name} is invalid: ${checked.errors.map((e) => `${e.path}: ${e.message}`).join("; ")}`,
        );
      if (kind === "WasmModule") return admitModule(review, checked.resource);
      desired = { op: "put", resource: checked.resource };
    } else {
      return answer(review, { allowed: true });
    }

    try {
      const result = await writer.write([desired], { dryRun: true });
      const warnings = result.warnings.map(
        (w) => `${w.kind ?? kind} ${w.name ?? name}: ${w.path}: ${w.message}`,
      );
      return answer(review, { allowed: true, ...(warnings.length > 0 ? { warnings } : {}) });
    } catch (error) {
      const apiError = toApiError(error);
      if (apiError === undefined) throw error;
      const details = apiError.details.map((d) =>
        `${[d.kind, d.name].filter(Boolean).join(" ")} ${d.path}: ${d.message}`.trim(),
      );
      if (apiError.status === 404 && request.operation === "DELETE") return answer(review, { allowed: true });
      return deny(
        review,
        [apiError.message, ...details].join("; "),
        apiError.status === 409 || apiError.status >= 500 ? 503 : 422,
      );
    }
  };

  /**
   * A WasmModule describes bytes in the module registry; only a push (`wasmesh module push`) makes
   * one whose bytes are there. Written by hand, it must name bytes the registry holds.
   */
  async function admitModule(review: AdmissionReview, resource: Resource): Promise<AdmissionReview> {
    const sha256 = (resource.spec as { sha256?: string }).sha256 ?? "";
    if (await options.hasModule(sha256)) return answer(review, { allowed: true });
    return deny(
      review,
      `WasmModule ${resource.metadata.name}: spec.sha256: the module registry holds no bytes ${sha256}: upload modules with \`wasmesh module push\` (POST /v1/modules/<name>), which writes this resource`,
    );
  }
}
