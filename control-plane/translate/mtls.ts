// mTLS between sidecars (issue 11, §2): the TLS a sidecar run by the data-plane agent is configured
// with. Only such a sidecar gets any (its node metadata says `wasmesh.sds: agent`): its certificate
// and the trust bundle come from its agent over SDS (envoy/sds.ts), so the configuration names the
// secrets and never holds a key. A sidecar from `wasmesh bootstrap` has no SDS and stays plain text.
//
// - Outbound (auto mTLS, as Istio's): a cluster originates mTLS to the endpoints whose Workload says
//   its sidecar takes it (`spec.mtls`, written by the agent), and plain text to the others, so that
//   agent sidecars call a workload that has no agent yet; it verifies the destination service's
//   SPIFFE ID exactly, so an endpoint that answers with another service's certificate is refused.
// - Inbound: `strict`, only mTLS with a certificate of the mesh (plain text fails the handshake);
//   `permissive`, the tls_inspector tells TLS from plain text and each has a filter chain of its own;
//   `disabled`, plain text, as a sidecar without SDS.

import { universalIdentity, workloadSpiffeId } from "../ca/spiffe.ts";
import {
  CERTIFICATE_SECRET,
  type Cluster,
  type Cluster_TransportSocketMatch,
  type CommonTlsContext,
  type DownstreamTlsContext,
  EXTENSION_TYPE,
  envoyEnum,
  type Metadata,
  type ProxyIdentity,
  sdsConfigSource,
  TRUST_BUNDLE_SECRET,
  type TransportSocket,
} from "../envoy/index.ts";
import { DEFAULT_MTLS_MODE, type MtlsMode, type Service, type Workload } from "../resources/index.ts";
import type { Mesh } from "./mesh.ts";

/** The mTLS mode of a service's inbound listeners: its own, else the MeshPolicy's, else the default. */
export function mtlsMode(mesh: Mesh, service: Service | undefined): MtlsMode {
  return service?.spec.mtls?.mode ?? mesh.meshPolicy?.spec.mtls?.mode ?? DEFAULT_MTLS_MODE;
}

/** Whether a proxy is configured with TLS at all: its agent serves it certificates over SDS. */
export const hasSds = (proxy: ProxyIdentity): boolean => proxy.sds === "agent";

/**
 * The SPIFFE IDs the workloads of a service are issued: on Kubernetes each pod's service account in
 * the service's namespace (Workload spec.serviceAccount, from discovery); otherwise the identity the
 * service's name gives (universal mode: ns default, sa = service). Sorted, without repeats.
 */
export function serviceSpiffeIds(mesh: Mesh, trustDomain: string, service: string): string[] {
  const universal = universalIdentity(service);
  const ids = new Set<string>();
  const workloads = mesh.clusters
    .filter((c) => c.service.metadata.name === service)
    .flatMap((c) => c.workloads);
  for (const workload of workloads) {
    const serviceAccount = workload.spec.serviceAccount ?? universal.serviceAccount;
    ids.add(workloadSpiffeId(trustDomain, { ...universal, serviceAccount }));
  }
  if (ids.size === 0) ids.add(workloadSpiffeId(trustDomain, universal));
  return [...ids].sort();
}

/** transport_socket_matches' key: an endpoint carrying it is sent mTLS. */
const TLS_MATCH_KEY = "wasmesh.mtls";
const TRANSPORT_SOCKET_MATCH = "envoy.transport_socket_match";

/** The endpoint metadata of a workload whose sidecar takes mTLS (undefined for the others). */
export function endpointMetadata(workload: Workload): Metadata | undefined {
  if (workload.spec.mtls !== true) return undefined;
  return {
    filter_metadata: { [TRANSPORT_SOCKET_MATCH]: { fields: { [TLS_MATCH_KEY]: { boolValue: true } } } },
  };
}

const SAN_URI = () =>
  envoyEnum("envoy.extensions.transport_sockets.tls.v3.SubjectAltNameMatcher.SanType", "URI");

/** The certificate and the trust bundle over SDS; a peer's URI SAN must match one of `sans`. */
function commonTlsContext(
  sans: readonly ({ exact: string } | { prefix: string })[],
  alpn: string[],
): CommonTlsContext {
  return {
    alpn_protocols: alpn,
    tls_certificate_sds_secret_configs: [{ name: CERTIFICATE_SECRET, sds_config: sdsConfigSource() }],
    combined_validation_context: {
      default_validation_context: {
        match_typed_subject_alt_names: sans.map((matcher) => ({ san_type: SAN_URI(), matcher })),
      },
      validation_context_sds_secret_config: { name: TRUST_BUNDLE_SECRET, sds_config: sdsConfigSource() },
    },
  };
}

/** The ALPN a cluster offers, by the protocol it speaks upstream (clusters.ts upstreamProtocol). */
function alpnOf(cluster: Cluster): string[] {
  const options = cluster.typed_extension_protocol_options?.[
    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
  ] as { explicit_http_config?: unknown; use_downstream_protocol_config?: unknown } | undefined;
  if (options?.explicit_http_config !== undefined) return ["h2"];
  if (options?.use_downstream_protocol_config !== undefined) return ["h2", "http/1.1"];
  return ["http/1.1"];
}

/**
 * The cluster with mTLS to the endpoints that take it (auto mTLS), verifying `destination`'s SPIFFE
 * ID; as it is when the destination's mode is disabled.
 */
export function withUpstreamMtls(
  cluster: Cluster,
  destination: Service,
  mesh: Mesh,
  trustDomain: string,
): Cluster {
  if (mtlsMode(mesh, destination) === "disabled") return cluster;
  const name = destination.metadata.name;
  const match: Cluster_TransportSocketMatch = {
    name: "mtls",
    match: { fields: { [TLS_MATCH_KEY]: { boolValue: true } } },
    transport_socket: {
      name: "envoy.transport_sockets.tls",
      typed_config: {
        "@type": EXTENSION_TYPE.upstreamTlsContext,
        common_tls_context: commonTlsContext(
          serviceSpiffeIds(mesh, trustDomain, name).map((exact) => ({ exact })),
          alpnOf(cluster),
        ),
        sni: name,
      },
    },
  };
  return { ...cluster, transport_socket_matches: [match] };
}

/** The inbound listener's TLS in strict and permissive modes: a client certificate of the mesh, required. */
export function downstreamMtls(trustDomain: string): TransportSocket {
  const context: DownstreamTlsContext = {
    // Any workload of this trust domain: which of them may call is the access rules' business.
    common_tls_context: commonTlsContext([{ prefix: `spiffe://${trustDomain}/` }], ["h2", "http/1.1"]),
    require_client_certificate: { value: true },
  };
  return {
    name: "envoy.transport_sockets.tls",
    typed_config: { "@type": EXTENSION_TYPE.downstreamTlsContext, ...context },
  };
}
