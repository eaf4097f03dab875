// Identity on Kubernetes (issue 12, §1): a data-plane agent authenticates to the control plane (its
// ADS streams and the API routes an agent calls) with its pod's projected service-account token,
// which the API server vouches for through the TokenReview API. withServiceAccountTokens wraps the
// control plane's Tokens so that both seams that verify a bearer secret (security/proxy-auth.ts for
// xDS, api/auth.ts for HTTP) take such a token unchanged:
//
// - wasmesh's own tokens (`wsm_…`) are verified by the wrapped Tokens and never leave the process;
//   only a JWT-shaped secret is sent to the API server.
// - An authenticated `system:serviceaccount:<ns>:<sa>` whose token is bound to a pod (TokenRequest's
//   boundObjectRef, as every kubelet-projected token is) is a dataplane principal: its service is
//   the pod's `wasmesh.io/service` label (the sidecar injector sets it), else `app.kubernetes.io/name`,
//   else `app`; its identity for mTLS is the namespace and service account (ca/spiffe.ts), which the
//   certificate it gets names. A token bound to no pod (a Secret's legacy token, a TokenRequest with
//   no boundObjectRef) proves no workload and is refused, as is a pod with no service label.
// - The API server refuses a bound token once its pod is deleted; verdicts are cached briefly (by the
//   secret's sha256, never past the token's expiry) so that each call does not cost a TokenReview,
//   which bounds how long a deleted pod's token is still taken to `cacheSeconds`.
//
// The control plane's service account needs `create` on tokenreviews (the system:auth-delegator
// ClusterRole has it) and `get` on pods.
import { createHash } from "node:crypto";
import * as k8s from "@kubernetes/client-node";
import { Value } from "@sinclair/typebox/value";
import { ResourceName } from "../resources/index.ts";
import { looksLikeToken, type Principal, type Tokens, type Verdict } from "../security/tokens.ts";
import { describeKubeError } from "./errors.ts";

/** The pod label naming a workload's service (set by the sidecar injector), then the usual ones. */
export const SERVICE_LABELS = ["wasmesh.io/service", "app.kubernetes.io/name", "app"] as const;

export const DEFAULT_CACHE_SECONDS = 30;
export const DEFAULT_CACHE_ENTRIES = 4096;
/** Longer is no service-account token (a projected one is about 1 KiB): never sent for review. */
const MAX_JWT_LENGTH = 16 * 1024;

const SERVICE_ACCOUNT_USER = /^system:serviceaccount:([^:]+):([^:]+)$/;
const JWT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
const POD_NAME = "authentication.kubernetes.io/pod-name";
const POD_UID = "authentication.kubernetes.io/pod-uid";

export interface ServiceAccountTokenOptions {
  /** The control plane's access to the API server (in-cluster, or --kubeconfig). */
  kubeConfig: k8s.KubeConfig;
  /**
   * The audiences a token must be for (TokenReview's spec.audiences), e.g. ["wasmesh"] for a
   * projected token with that audience, which the API server itself then does not accept. Absent:
   * the API server's own audiences.
   */
  audiences?: readonly string[];
  /**
   * Whether a pod labelled `reviews` in namespace `bookinfo` is of service `reviews.bookinfo` (the
   * name a discovered Kubernetes Service gets) rather than `reviews`; default false. A label that
   * says `reviews.bookinfo` itself is taken in namespace bookinfo either way.
   */
  namespacedServices?: boolean;
  /** How long a verdict is reused; default 30 s, 0 to review every time. */
  cacheSeconds?: number;
  /** How many verdicts are kept at most; default 4096 (the oldest go first). */
  cacheEntries?: number;
  /** Where failures to reach the API server go (a refusal of a token is the caller's to report). */
  log: (line: string) => void;
  now?: () => Date;
}

interface Cached {
  verdict: Verdict;
  until: number;
}

const refused = (reason: string): Verdict => ({ ok: false, reason });

/** The `exp` of a JWT's payload in ms, unverified (the API server verified it): bounds a cache entry. */
function expiryOf(jwt: string): number | undefined {
  try {
    const payload = JSON.parse(Buffer.from(jwt.split(".")[1] ?? "", "base64url").toString("utf8")) as {
      exp?: unknown;
    };
    return typeof payload.exp === "number" ? payload.exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The service a pod's labels name, or why there is none. The label holds a service's name (a DNS
 * label), or `<name>.<namespace>` naming the pod's own namespace (never another's: a pod cannot
 * claim another namespace's service); `namespaced` qualifies a bare name with the pod's namespace.
 */
export function podService(
  labels: Readonly<Record<string, string>> | undefined,
  namespace: string,
  namespaced = false,
): { service: string } | { reason: string } {
  for (const label of SERVICE_LABELS) {
    const value = labels?.[label];
    if (value === undefined) continue;
    const dot = value.indexOf(".");
    const name = dot < 0 ? value : value.slice(0, dot);
    if (dot >= 0 && value.slice(dot + 1) !== namespace)
      return {
        reason: `its label ${label}=${JSON.stringify(value)} names a service of another namespace than its own (${namespace})`,
      };
    if (!Value.Check(ResourceName, name))
      return {
        reason: `its label ${label}=${JSON.stringify(value)} is not a service name (${ResourceName.description}, or <name>.${namespace})`,
      };
    return { service: dot >= 0 || namespaced ? `${name}.${namespace}` : name };
  }
  return { reason: `it has none of the labels that name its service (${SERVICE_LABELS.join(", ")})` };
}

/**
 * `tokens`, also taking Kubernetes service-account tokens bound to a pod (see the top of this file).
 * issue, list, get and revoke are the wrapped Tokens' own.
 */
export function withServiceAccountTokens(tokens: Tokens, options: ServiceAccountTokenOptions): Tokens {
  const authentication = options.kubeConfig.makeApiClient(k8s.AuthenticationV1Api);
  const core = options.kubeConfig.makeApiClient(k8s.CoreV1Api);
  const now = options.now ?? (() => new Date());
  const cacheMs = (options.cacheSeconds ?? DEFAULT_CACHE_SECONDS) * 1000;
  const maxEntries = options.cacheEntries ?? DEFAULT_CACHE_ENTRIES;
  const audiences = options.audiences && options.audiences.length > 0 ? [...options.audiences] : undefined;
  const cache = new Map<string, Cached>();
  // One review per secret at a time: an agent opening several streams at once costs one.
  const inFlight = new Map<string, Promise<Verdict>>();

  async function review(jwt: string): Promise<Verdict> {
    let status: k8s.V1TokenReviewStatus | undefined;
    try {
      const answer = await authentication.createTokenReview({
        body: {
          apiVersion: "authentication.k8s.io/v1",
          kind: "TokenReview",
          spec: { token: jwt, ...(audiences ? { audiences } : {}) },
        },
      });
      status = answer.status;
    } catch (error) {
      const why = describeKubeError(error);
      options.log(`kubernetes: a TokenReview failed (${why}); the token is refused`);
      return refused(`the Kubernetes API server could not review the token (${why})`);
    }
    if (status?.authenticated !== true)
      return refused(
        `the Kubernetes API server did not authenticate it${status?.error ? `: ${status.error}` : ""}`,
      );
    if (audiences && !(status.audiences ?? []).some((a) => audiences.includes(a)))
      return refused(`it is not for this control plane's audiences (${audiences.join(", ")})`);
    const username = status.user?.username ?? "";
    const [, namespace, serviceAccount] = SERVICE_ACCOUNT_USER.exec(username) ?? [];
    if (namespace === undefined || serviceAccount === undefined)
      return refused(`it is ${JSON.stringify(username)}'s, not a service account's`);
    const pod = status.user?.extra?.[POD_NAME]?.[0];
    const uid = status.user?.extra?.[POD_UID]?.[0];
    if (pod === undefined)
      return refused(
        `service account ${namespace}/${serviceAccount}'s token is bound to no pod: an agent presents its ` +
          "pod's projected service-account token, which names the pod",
      );
    let labels: Record<string, string> | undefined;
    try {
      const read = await core.readNamespacedPod({ namespace, name: pod });
      // The token names a pod by name and uid: one recreated under its name is another pod.
      if (uid !== undefined && read.metadata?.uid !== uid)
        return refused(`pod ${namespace}/${pod} the token was bound to no longer exists`);
      labels = read.metadata?.labels;
    } catch (error) {
      if (error instanceof k8s.ApiException && error.code === 404)
        return refused(`pod ${namespace}/${pod} the token was bound to no longer exists`);
      const why = describeKubeError(error);
      options.log(`kubernetes: reading pod ${namespace}/${pod} failed (${why}); its token is refused`);
      return refused(`the Kubernetes API server could not be asked for pod ${namespace}/${pod} (${why})`);
    }
    const named = podService(labels, namespace, options.namespacedServices);
    if ("reason" in named) return refused(`pod ${namespace}/${pod} names no service: ${named.reason}`);
    const principal: Principal = {
      tokenId: `k8s:${namespace}/${pod}`,
      role: "dataplane",
      service: named.service,
      name: `pod ${namespace}/${pod}, service account ${serviceAccount}`,
      identity: { namespace, serviceAccount },
    };
    return { ok: true, principal };
  }

  function remember(key: string, verdict: Verdict, jwt: string): void {
    // Only successes: a refusal costs no more than the next try, and a fixed pod is taken at once.
    if (!verdict.ok || cacheMs <= 0) return;
    const until = Math.min(now().getTime() + cacheMs, expiryOf(jwt) ?? Number.POSITIVE_INFINITY);
    cache.delete(key);
    cache.set(key, { verdict, until });
    while (cache.size > maxEntries) {
      const oldest = cache.keys().next().value;
      if (oldest === undefined) break;
      cache.delete(oldest);
    }
  }

  return {
    issue: (request) => tokens.issue(request),
    list: () => tokens.list(),
    get: (id) => tokens.get(id),
    revoke: (id) => tokens.revoke(id),

    async verify(secret) {
      if (looksLikeToken(secret)) return tokens.verify(secret);
      if (!JWT.test(secret) || secret.length > MAX_JWT_LENGTH)
        return refused(
          "neither a wasmesh token (wsm_ and 43 base64url characters) nor a Kubernetes service-account token (a JWT)",
        );
      const key = createHash("sha256").update(secret).digest("hex");
      const cached = cache.get(key);
      if (cached !== undefined) {
        if (cached.until > now().getTime()) return cached.verdict;
        cache.delete(key);
      }
      const pending = inFlight.get(key);
      if (pending !== undefined) return pending;
      const reviewed = review(secret).then((verdict) => {
        remember(key, verdict, secret);
        return verdict;
      });
      inFlight.set(key, reviewed);
      try {
        return await reviewed;
      } finally {
        inFlight.delete(key);
      }
    },
  };
}
