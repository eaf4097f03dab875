// Who may open an ADS stream (issue 11, §3): the stream's gRPC metadata carries `authorization:
// Bearer <token>`, and the token must prove the identity the stream's node claims. A dataplane token
// bound to service S opens streams of nodes of service S only (an agent's Envoy, through its xDS
// proxy, or an Envoy run by hand with `wasmesh bootstrap --token-file`); an admin token opens any
// (tools, tests). Anything else is refused before the control plane sends a byte: no token or an
// invalid one UNAUTHENTICATED, another service's (or a read-only token) PERMISSION_DENIED.
//
// The one seam for the xDS server (its ProxyAuthenticator, wired by server.ts): on Kubernetes, a
// pod's service-account token verified with TokenReview (a dataplane principal of the service its
// pod's label names: kubernetes/token-review.ts, a Tokens) takes the dataplane token's place here,
// and nothing else changes.
import type { ProxyIdentity } from "../envoy/index.ts";
import type { Tokens } from "./tokens.ts";

export type ProxyAdmission =
  | { ok: true; principal: string }
  | { ok: false; code: "unauthenticated" | "permission_denied"; message: string };

const HOW =
  "agents send their --token-file; an Envoy run by hand gets it from wasmesh bootstrap --token-file";

export async function authenticateProxy(
  tokens: Tokens,
  metadata: { authorization: string | undefined },
  claimed: ProxyIdentity,
): Promise<ProxyAdmission> {
  const header = metadata.authorization;
  if (header === undefined)
    return {
      ok: false,
      code: "unauthenticated",
      message: `no token: an ADS stream's metadata must carry authorization: Bearer <token> (${HOW})`,
    };
  const [, secret] = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header) ?? [];
  if (secret === undefined)
    return {
      ok: false,
      code: "unauthenticated",
      message: "the authorization metadata must be 'Bearer <token>'",
    };
  const verdict = await tokens.verify(secret);
  if (!verdict.ok)
    return { ok: false, code: "unauthenticated", message: `the token was refused: ${verdict.reason}` };
  const { principal } = verdict;
  if (principal.role === "admin") return { ok: true, principal: principal.tokenId };
  if (principal.role === "dataplane" && principal.service === claimed.service)
    return { ok: true, principal: principal.tokenId };
  return {
    ok: false,
    code: "permission_denied",
    message:
      principal.role === "dataplane"
        ? `token ${principal.tokenId} is a dataplane token of service '${principal.service}': it cannot open a stream of node '${claimed.nodeId}', which claims service '${claimed.service}'`
        : `token ${principal.tokenId} is ${principal.role}: ADS streams need a dataplane token of the node's service (or an admin token)`,
  };
}
