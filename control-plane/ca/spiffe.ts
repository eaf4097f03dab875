// SPIFFE identities of the mesh's workloads: the one place that builds, parses and validates them.
//
// Scheme: spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>, Istio's. Kuma's older
// spiffe://<mesh>/<service> names the mesh and the service only; Istio's path carries the
// Kubernetes namespace and service account, so that on Kubernetes a pod's identity is what its
// service account token proves, unchanged, and a policy or a peer that knows Istio's IDs reads ours.
// In universal mode there are no namespaces: the namespace is `default` and the service account is
// the Workload's service, so `payments` is spiffe://wasmesh.local/ns/default/sa/payments; a service
// discovered on Kubernetes, `reviews.bookinfo`, is spiffe://wasmesh.local/ns/bookinfo/sa/reviews.
//
// Validation follows the SPIFFE ID standard (SPIFFE-ID.md §2): lower-case scheme, a trust domain
// of [a-z0-9._-], path segments of [A-Za-z0-9._-] that are neither empty, "." nor "..", no query,
// fragment, port or user info, at most 2048 bytes; and, within it, our path shape with
// Kubernetes' name rules (a namespace is a DNS-1123 label, a service account a DNS-1123 subdomain).
import { Buffer } from "node:buffer";
import { CaInputError } from "./errors.ts";

/** The trust domain a mesh gets unless told otherwise. */
export const DEFAULT_TRUST_DOMAIN = "wasmesh.local";

/** The namespace of every workload in universal mode. */
export const UNIVERSAL_NAMESPACE = "default";

/** Who a workload is: a Kubernetes namespace and service account, or `default` and its service. */
export interface WorkloadIdentity {
  namespace: string;
  serviceAccount: string;
}

/** A SPIFFE ID this module refused; `field` names what was wrong, as the resource errors do. */
export class SpiffeIdError extends CaInputError {
  constructor(field: string, message: string) {
    super(field, message);
    this.name = "SpiffeIdError";
  }
}

const MAX_ID_BYTES = 2048;
const MAX_TRUST_DOMAIN = 255;
const TRUST_DOMAIN = /^[a-z0-9._-]+$/;
const DNS_LABEL = /^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?$/;
const MAX_LABEL = 63;
const MAX_SUBDOMAIN = 253;

/** The trust domain, checked; throws SpiffeIdError naming `field`. */
export function checkTrustDomain(trustDomain: string, field = "trustDomain"): string {
  if (trustDomain.length === 0) throw new SpiffeIdError(field, "is empty");
  if (trustDomain.length > MAX_TRUST_DOMAIN) {
    throw new SpiffeIdError(field, `is longer than ${MAX_TRUST_DOMAIN} characters`);
  }
  if (!TRUST_DOMAIN.test(trustDomain)) {
    throw new SpiffeIdError(
      field,
      `${JSON.stringify(trustDomain)} may hold only lower-case letters, digits, '.', '-' and '_' (no scheme, port or path)`,
    );
  }
  if (trustDomain === "." || trustDomain === "..") {
    throw new SpiffeIdError(field, `${JSON.stringify(trustDomain)} is not a trust domain`);
  }
  return trustDomain;
}

function checkLabel(value: string, field: string): void {
  if (value.length === 0) throw new SpiffeIdError(field, "is empty");
  if (value.length > MAX_LABEL || !DNS_LABEL.test(value)) {
    throw new SpiffeIdError(
      field,
      `${JSON.stringify(value)} must be a DNS-1123 label: lower-case letters, digits and '-', at most ${MAX_LABEL}, starting and ending alphanumeric`,
    );
  }
}

function checkSubdomain(value: string, field: string): void {
  if (value.length === 0) throw new SpiffeIdError(field, "is empty");
  if (value.length > MAX_SUBDOMAIN || !value.split(".").every((label) => DNS_LABEL.test(label))) {
    throw new SpiffeIdError(
      field,
      `${JSON.stringify(value)} must be a DNS-1123 subdomain: dot-separated labels of lower-case letters, digits and '-', at most ${MAX_SUBDOMAIN}`,
    );
  }
}

/** The identity checked: a namespace label and a service account subdomain. */
export function checkIdentity(identity: WorkloadIdentity, field = "identity"): WorkloadIdentity {
  checkLabel(identity.namespace, `${field}.namespace`);
  checkSubdomain(identity.serviceAccount, `${field}.serviceAccount`);
  return identity;
}

/**
 * The identity of a workload of `service`, from the service's name alone: `payments` is ns default,
 * sa payments; a service discovered on Kubernetes, `<name>.<namespace>` (resources/schema.ts), is
 * ns <namespace>, sa <name>, which is the pod's own identity when its service account is named
 * after its service, as Istio's samples do. So `reviews.default` and `reviews` share one identity.
 */
export function universalIdentity(service: string, field = "service"): WorkloadIdentity {
  const dot = service.indexOf(".");
  if (dot < 0) {
    checkLabel(service, field);
    return { namespace: UNIVERSAL_NAMESPACE, serviceAccount: service };
  }
  const name = service.slice(0, dot);
  const namespace = service.slice(dot + 1);
  // Two DNS labels, as a Service's name (checkLabel refuses a second dot in the namespace).
  checkLabel(name, field);
  checkLabel(namespace, field);
  return { namespace, serviceAccount: name };
}

/** spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>, from checked parts. */
export function workloadSpiffeId(trustDomain: string, identity: WorkloadIdentity): string {
  checkTrustDomain(trustDomain);
  checkIdentity(identity);
  return `spiffe://${trustDomain}/ns/${identity.namespace}/sa/${identity.serviceAccount}`;
}

/** A SPIFFE ID taken apart. */
export interface SpiffeId {
  trustDomain: string;
  /** "/ns/default/sa/payments"; "" for the trust domain's own ID. */
  path: string;
  /** Set when the path has wasmesh's workload shape. */
  identity?: WorkloadIdentity;
}

/**
 * Parses and checks any SPIFFE ID against the standard; `identity` is filled in when its path is a
 * workload's (/ns/<namespace>/sa/<service-account>, each checked). Throws SpiffeIdError naming
 * `field` (e.g. the certificate's SAN it came from).
 */
export function parseSpiffeId(id: string, field = "spiffeId"): SpiffeId {
  if (Buffer.byteLength(id, "utf8") > MAX_ID_BYTES) {
    throw new SpiffeIdError(field, `is longer than ${MAX_ID_BYTES} bytes`);
  }
  const prefix = "spiffe://";
  if (!id.startsWith(prefix)) {
    throw new SpiffeIdError(field, `${JSON.stringify(id)} does not start with "spiffe://" (lower-case)`);
  }
  const rest = id.slice(prefix.length);
  const slash = rest.indexOf("/");
  const trustDomain = slash === -1 ? rest : rest.slice(0, slash);
  const path = slash === -1 ? "" : rest.slice(slash);
  if (/[?#]/.test(id)) throw new SpiffeIdError(field, `${JSON.stringify(id)} has a query or fragment`);
  if (/[@:]/.test(trustDomain)) {
    throw new SpiffeIdError(`${field}.trustDomain`, `${JSON.stringify(trustDomain)} has a port or user info`);
  }
  checkTrustDomain(trustDomain, `${field}.trustDomain`);
  if (path !== "") {
    const segments = path.slice(1).split("/");
    for (const segment of segments) {
      if (segment === "")
        throw new SpiffeIdError(`${field}.path`, `${JSON.stringify(path)} has an empty segment`);
      if (segment === "." || segment === "..") {
        throw new SpiffeIdError(`${field}.path`, `${JSON.stringify(path)} has a "${segment}" segment`);
      }
      if (!/^[A-Za-z0-9._-]+$/.test(segment)) {
        throw new SpiffeIdError(
          `${field}.path`,
          `segment ${JSON.stringify(segment)} may hold only letters, digits, '.', '-' and '_'`,
        );
      }
    }
    if (segments.length === 4 && segments[0] === "ns" && segments[2] === "sa") {
      const identity = { namespace: segments[1] as string, serviceAccount: segments[3] as string };
      checkIdentity(identity, field);
      return { trustDomain, path, identity };
    }
  }
  return { trustDomain, path };
}

/**
 * A workload's SPIFFE ID in this trust domain, parsed: throws SpiffeIdError when it is no SPIFFE
 * ID, belongs to another trust domain or is not a workload's.
 */
export function parseWorkloadSpiffeId(id: string, trustDomain: string, field = "spiffeId"): WorkloadIdentity {
  const parsed = parseSpiffeId(id, field);
  if (parsed.trustDomain !== trustDomain) {
    throw new SpiffeIdError(
      `${field}.trustDomain`,
      `${JSON.stringify(parsed.trustDomain)} is not this mesh's trust domain (${JSON.stringify(trustDomain)})`,
    );
  }
  if (parsed.identity === undefined) {
    throw new SpiffeIdError(
      `${field}.path`,
      `${JSON.stringify(parsed.path)} is not a workload's (/ns/<namespace>/sa/<service-account>)`,
    );
  }
  return parsed.identity;
}
