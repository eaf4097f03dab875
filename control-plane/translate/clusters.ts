// CDS and EDS: one cluster per service and per subset in use, and the local app's cluster.

import type {
  Cluster,
  ClusterLoadAssignment,
  HttpProtocolOptions,
  Metadata,
  ProxyIdentity,
  XdsResource,
} from "../envoy/index.ts";
import {
  adsConfigSource,
  duration,
  EXTENSION_TYPE,
  envoyEnum,
  isIpAddress,
  socketAddress,
} from "../envoy/index.ts";
import type { Service, Workload } from "../resources/index.ts";
import { inboundCluster } from "../resources/names.ts";
import type { Mesh, OutboundCluster } from "./mesh.ts";
import { endpointMetadata, withUpstreamMtls } from "./mtls.ts";

const CLUSTER = "envoy.config.cluster.v3.Cluster";
const discoveryType = (name: "STATIC" | "STRICT_DNS" | "EDS") => envoyEnum(`${CLUSTER}.DiscoveryType`, name);

/** Envoy's and Kuma's default: long enough for a cross-zone handshake, short enough to fail over. */
const CONNECT_TIMEOUT_MS = 5_000;

type Endpoint = { address: string; port: number; zone: string | undefined; metadata?: Metadata | undefined };

/**
 * Whether a cluster must be STRICT_DNS (endpoints inline) rather than EDS: Envoy does not resolve
 * endpoint addresses it is sent over EDS, so one workload with a host name decides.
 */
export function isDnsCluster(cluster: OutboundCluster): boolean {
  return cluster.workloads.some((w) => !isIpAddress(w.spec.address));
}

/**
 * The outbound clusters, the same for every proxy of the mesh; with `mtls` (for proxies whose agent
 * serves them SDS), each originates mTLS to the endpoints that take it (mtls.ts).
 */
export function outboundClusterResources(mesh: Mesh, mtls?: { trustDomain: string }): XdsResource<Cluster>[] {
  return mesh.clusters.map((cluster) => {
    const resource = outboundClusterResource(cluster);
    return {
      name: cluster.name,
      resource: mtls ? withUpstreamMtls(resource, cluster.service, mesh, mtls.trustDomain) : resource,
    };
  });
}

/** The outbound clusters and, for a sidecar with an app, the cluster of its app, sorted by name. */
export function withInboundCluster(
  outbound: readonly XdsResource<Cluster>[],
  mesh: Mesh,
  proxy: ProxyIdentity,
): XdsResource<Cluster>[] {
  const out = [...outbound];
  if (proxy.appPort !== undefined) {
    const name = inboundCluster(proxy.appPort);
    const own = mesh.service(proxy.service);
    out.push({
      name,
      resource: {
        name,
        ...resolvedCluster(name, [{ address: proxy.appAddress, port: proxy.appPort, zone: undefined }]),
        connect_timeout: duration(CONNECT_TIMEOUT_MS),
        ...(own !== undefined ? upstreamProtocol(own) : {}),
      },
    });
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

function outboundClusterResource(cluster: OutboundCluster): Cluster {
  const discovery: Cluster = isDnsCluster(cluster)
    ? resolvedCluster(cluster.name, cluster.workloads.map(endpointOf))
    : {
        type: discoveryType("EDS"),
        eds_cluster_config: { eds_config: adsConfigSource(), service_name: cluster.name },
      };
  const breaker = cluster.breaker?.spec;
  return {
    name: cluster.name,
    ...discovery,
    connect_timeout: duration(CONNECT_TIMEOUT_MS),
    lb_policy: envoyEnum(`${CLUSTER}.LbPolicy`, "ROUND_ROBIN"),
    ...upstreamProtocol(cluster.service),
    // The filter's breaker opens the circuit for the whole cluster; Envoy's outlier detection, with
    // the same thresholds, takes single failing endpoints out of the pool meanwhile.
    ...(breaker !== undefined
      ? {
          outlier_detection: {
            consecutive_5xx: { value: breaker.consecutiveErrors },
            interval: duration(breaker.intervalMs),
            base_ejection_time: duration(breaker.baseEjectionMs),
            ...(breaker.maxEjectionMs !== undefined
              ? { max_ejection_time: duration(breaker.maxEjectionMs) }
              : {}),
            ...(breaker.maxEjectionPercent !== undefined
              ? { max_ejection_percent: { value: breaker.maxEjectionPercent } }
              : {}),
          },
        }
      : {}),
    ...(breaker?.maxConcurrent !== undefined
      ? {
          circuit_breakers: {
            thresholds: [
              {
                priority: envoyEnum("envoy.config.core.v3.RoutingPriority", "DEFAULT"),
                max_requests: { value: breaker.maxConcurrent },
              },
            ],
          },
        }
      : {}),
  };
}

/**
 * A cluster for a collector outside the mesh (tracing.ts): STATIC or STRICT_DNS by its address,
 * HTTP/2 for gRPC, and TLS checked against the system's trust store for an https URL.
 */
export function collectorCluster(
  name: string,
  host: string,
  port: number,
  options: { http2: boolean; tlsServerName: string | undefined },
): Cluster {
  return {
    name,
    ...resolvedCluster(name, [{ address: host, port, zone: undefined }]),
    connect_timeout: duration(CONNECT_TIMEOUT_MS),
    ...(options.http2
      ? {
          typed_extension_protocol_options: {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
              "@type": EXTENSION_TYPE.httpProtocolOptions,
              explicit_http_config: { http2_protocol_options: {} },
            },
          },
        }
      : {}),
    ...(options.tlsServerName !== undefined
      ? {
          transport_socket: {
            name: "envoy.transport_sockets.tls",
            typed_config: {
              "@type": EXTENSION_TYPE.upstreamTlsContext,
              sni: options.tlsServerName,
              common_tls_context: {
                validation_context: {
                  trusted_ca: { filename: SYSTEM_TRUST_STORE },
                  match_typed_subject_alt_names: [
                    {
                      san_type: envoyEnum(
                        "envoy.extensions.transport_sockets.tls.v3.SubjectAltNameMatcher.SanType",
                        "DNS",
                      ),
                      matcher: { exact: options.tlsServerName },
                    },
                  ],
                },
              },
            },
          },
        }
      : {}),
  };
}

/** Debian's and Envoy's images' bundle of public CAs, for collectors reached over https. */
const SYSTEM_TRUST_STORE = "/etc/ssl/certs/ca-certificates.crt";

/** STATIC when every address is an IP, else STRICT_DNS (which also takes IPs); endpoints inline. */
function resolvedCluster(name: string, endpoints: Endpoint[]): Cluster {
  const dns = endpoints.some((e) => !isIpAddress(e.address));
  return {
    type: discoveryType(dns ? "STRICT_DNS" : "STATIC"),
    ...(dns ? { dns_lookup_family: envoyEnum(`${CLUSTER}.DnsLookupFamily`, "V4_PREFERRED") } : {}),
    load_assignment: loadAssignment(name, endpoints),
  };
}

/**
 * HTTP/2 to a service whose HTTP ports all speak gRPC; the downstream's protocol when it mixes gRPC
 * with HTTP (the cluster serves every port); Envoy's default HTTP/1.1 otherwise.
 */
function upstreamProtocol(service: Service): Cluster {
  const protocols = service.spec.ports.map((p) => p.protocol).filter((p) => p !== "tcp");
  if (!protocols.includes("grpc")) return {};
  const options: HttpProtocolOptions = protocols.every((p) => p === "grpc")
    ? { explicit_http_config: { http2_protocol_options: {} } }
    : { use_downstream_protocol_config: { http_protocol_options: {}, http2_protocol_options: {} } };
  return {
    typed_extension_protocol_options: {
      "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": EXTENSION_TYPE.httpProtocolOptions,
        ...options,
      },
    },
  };
}

function endpointOf(workload: Workload): Endpoint {
  return {
    address: workload.spec.address,
    port: workload.spec.port,
    zone: workload.spec.zone,
    metadata: endpointMetadata(workload),
  };
}

/** Endpoints grouped into one locality per zone (workloads without a zone share one). */
function loadAssignment(clusterName: string, endpoints: Endpoint[]): ClusterLoadAssignment {
  const zones = new Map<string, Endpoint[]>();
  for (const endpoint of endpoints) {
    const zone = endpoint.zone ?? "";
    zones.set(zone, [...(zones.get(zone) ?? []), endpoint]);
  }
  const key = (e: Endpoint) => `${e.address}\u0000${String(e.port).padStart(5, "0")}`;
  return {
    cluster_name: clusterName,
    endpoints: [...zones.keys()].sort().map((zone) => ({
      ...(zone !== "" ? { locality: { zone } } : {}),
      lb_endpoints: (zones.get(zone) ?? [])
        .sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0))
        .map((e) => ({
          endpoint: { address: socketAddress(e.address, e.port) },
          ...(e.metadata !== undefined ? { metadata: e.metadata } : {}),
        })),
    })),
  };
}

/** ClusterLoadAssignments of the EDS clusters; an empty one for a cluster without workloads. */
export function endpointResources(mesh: Mesh): XdsResource<ClusterLoadAssignment>[] {
  return mesh.clusters
    .filter((cluster) => !isDnsCluster(cluster))
    .map((cluster) => ({
      name: cluster.name,
      resource: loadAssignment(cluster.name, cluster.workloads.map(endpointOf)),
    }));
}
