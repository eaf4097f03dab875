// AccessRules enforced at the destination by the caller's verified identity (issue 11, §2): an
// Envoy RBAC filter on the inbound listener's mTLS filter chain, delivered over ECDS, so that a rule
// change reaches the sidecars without touching their listeners (a listener change drains its
// connections). The source side keeps its early denials in the routing filter (routing-filter.ts);
// this is what holds when a caller skips its own sidecar.
//
// Why Envoy's RBAC rather than the routing Wasm filter reading the peer certificate's URI SAN
// (`connection.uri_san_peer_certificate`): the decision needs nothing but the identity Envoy has
// already verified in the handshake, which RBAC matches natively (Principal.authenticated: the URI
// SAN) with no Wasm VM on the inbound path, and it is Envoy's own, reviewed enforcement. A Wasm check
// would need the routing filter on every inbound listener, a second configuration shape, and the
// property in the TypeScript host, for the same decision.
//
// The rules are one DENY policy list, so that Envoy names the policy, the rule, that refused a
// request (rbac_access_denied_matched_policy[<rule>] in its response details, which the listener's
// 403 body repeats: listeners.ts):
// - each AccessRule that denies a source service: its callers' SPIFFE ID;
// - when callers no rule names are refused (a "*" deny rule, or MeshPolicy's defaultAccess: deny),
//   that rule (or default-deny:<service>): every peer that is NOT one of the services allowed.
import {
  EXTENSION_TYPE,
  envoyEnum,
  type Policy,
  type Principal,
  type RBAC,
  type TypedExtensionConfig,
  type XdsResource,
} from "../envoy/index.ts";
import { INBOUND_ACCESS_FILTER } from "../resources/index.ts";
import type { Mesh } from "./mesh.ts";
import { serviceSpiffeIds } from "./mtls.ts";
import { accessDecision } from "./routing-filter.ts";

/** Any of the identities the workloads of `service` hold (mtls.ts serviceSpiffeIds). */
const peer = (mesh: Mesh, trustDomain: string, service: string): Principal => {
  const ids = serviceSpiffeIds(mesh, trustDomain, service).map(
    (exact): Principal => ({ authenticated: { principal_name: { exact } } }),
  );
  return ids.length === 1 ? (ids[0] as Principal) : { or_ids: { ids } };
};

/** The RBAC configuration of `destination`'s inbound mTLS filter chain. */
export function accessRbac(mesh: Mesh, destination: string, trustDomain: string): RBAC {
  // A source no rule names (an unknown peer, or a service without rules of its own) gets this.
  const fallback = accessDecision(mesh, "*", destination);
  const policies: Record<string, Policy> = {};
  const deny = (rule: string, principal: Principal) => {
    const policy = policies[rule] ?? { permissions: [{ any: true }], principals: [] };
    policy.principals?.push(principal);
    policies[rule] = policy;
  };
  /** The sources a rule of their own decides for, unlike the fallback. */
  const own: Principal[] = [];
  for (const service of mesh.services) {
    const source = service.metadata.name;
    const decision = accessDecision(mesh, source, destination);
    const same = decision.allow ? fallback.allow : !fallback.allow && decision.rule === fallback.rule;
    if (same) continue;
    own.push(peer(mesh, trustDomain, source));
    if (!decision.allow) deny(decision.rule, peer(mesh, trustDomain, source));
  }
  if (!fallback.allow) {
    // Every other peer, unknown ones too; a peer denied by a rule of its own is left to that rule,
    // so that the name Envoy reports is the rule that decided (it tries the policies in name order).
    deny(fallback.rule, own.length === 0 ? { any: true } : { not_id: { or_ids: { ids: own } } });
  }
  if (Object.keys(policies).length === 0) return {};
  return { rules: { action: envoyEnum("envoy.config.rbac.v3.RBAC.Action", "DENY"), policies } };
}

/** The ECDS resource of the access filter. */
export function accessResource(rbac: RBAC): XdsResource<TypedExtensionConfig> {
  return {
    name: INBOUND_ACCESS_FILTER,
    resource: { name: INBOUND_ACCESS_FILTER, typed_config: { "@type": EXTENSION_TYPE.rbac, ...rbac } },
  };
}
