// LDS and RDS: the outbound listener (the app's calls into the mesh) and, when the sidecar fronts an
// app, the inbound listener; each an HTTP connection manager whose Wasm filters come over ECDS.

import type {
  AccessLog,
  FilterChain,
  HttpConnectionManager,
  HttpConnectionManager_Tracing,
  Listener,
  ProxyIdentity,
  RouteConfiguration,
  Tracing,
  TransportSocket,
  XdsResource,
} from "../envoy/index.ts";
import { adsConfigSource, EXTENSION_TYPE, envoyEnum, socketAddress } from "../envoy/index.ts";
import type { MtlsMode } from "../resources/index.ts";
import {
  CLUSTER_HEADER,
  INBOUND,
  INBOUND_ACCESS_FILTER,
  inboundCluster,
  OUTBOUND,
  OUTBOUND_CLUSTER_PREFIX,
  ROUTING_HEADERS,
} from "../resources/names.ts";

/** The ECDS filter names of each listener, in chain order (the router is appended). */
export interface FilterChains {
  outbound: string[];
  inbound: string[];
}

/** The inbound listener's TLS: its mode, and the transport socket of its mTLS filter chain. */
export interface InboundTls {
  mode: Exclude<MtlsMode, "disabled">;
  transportSocket: TransportSocket;
}

/**
 * The 403 of the access filter (access.ts), the only local reply of 403 on the inbound listener,
 * says that the destination refused and by which rule: Envoy's response details name the matched
 * policy, rbac_access_denied_matched_policy[<rule>]. (Not x-wasmesh-denied: Envoy 1.37 puts no
 * enforced policy name where a header could take it alone.)
 */
const DENIED_BY_RULE: HttpConnectionManager["local_reply_config"] = {
  mappers: [
    {
      filter: {
        status_code_filter: {
          comparison: {
            op: envoyEnum("envoy.config.accesslog.v3.ComparisonFilter.Op", "EQ"),
            value: { default_value: 403, runtime_key: "wasmesh.inbound.denied_status" },
          },
        },
      },
      body_format_override: {
        text_format_source: {
          inline_string: "wasmesh: denied at the destination by its access rules (%RESPONSE_CODE_DETAILS%)\n",
        },
      },
    },
  ],
};

/**
 * What both listeners' connection managers carry for observability (telemetry.ts): the tracing
 * provider and the access loggers. Sampling and tags are the routes' (routeResources).
 */
export interface ListenerTelemetry {
  tracing?: HttpConnectionManager_Tracing | undefined;
  accessLog?: AccessLog[] | undefined;
}

export function listenerResources(
  proxy: ProxyIdentity,
  chains: FilterChains,
  inboundTls?: InboundTls,
  telemetry: ListenerTelemetry = {},
): XdsResource<Listener>[] {
  const observed: HttpConnectionManager = {
    ...(telemetry.tracing !== undefined ? { tracing: telemetry.tracing } : {}),
    ...(telemetry.accessLog !== undefined ? { access_log: telemetry.accessLog } : {}),
  };
  const out = [
    listener(OUTBOUND, "OUTBOUND", proxy.outboundAddress, proxy.outboundPort, [
      { filters: [httpConnectionManager(OUTBOUND, chains.outbound.map(wasmFilter), observed)] },
    ]),
  ];
  if (proxy.appPort !== undefined) {
    out.push(inboundListener(proxy, chains.inbound, inboundTls, observed));
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : 1));
}

/**
 * The inbound listener. Plain text: one filter chain. strict: one filter chain behind the mTLS
 * transport socket, so a connection without a certificate of the mesh fails its handshake and never
 * reaches HTTP. permissive: the tls_inspector reads the first bytes, a TLS connection takes the
 * mTLS chain and anything else the plain one. On the mTLS chain the app is told who called: Envoy
 * sets x-forwarded-client-cert to the caller's verified SPIFFE ID (URI=...), replacing whatever the
 * caller sent; a plain chain removes the header (Envoy's default, SANITIZE), so it cannot be forged.
 * The mTLS chain checks the AccessRules by that identity first (access.ts); plain text, accepted in
 * permissive mode only, is checked at its source alone, as without mTLS.
 */
function inboundListener(
  proxy: ProxyIdentity,
  filters: string[],
  tls: InboundTls | undefined,
  observed: HttpConnectionManager,
) {
  const plain: FilterChain = { filters: [httpConnectionManager(INBOUND, filters.map(wasmFilter), observed)] };
  if (tls === undefined)
    return listener(INBOUND, "INBOUND", proxy.inboundAddress, proxy.inboundPort, [plain]);
  const mtls: FilterChain = {
    name: "mtls",
    ...(tls.mode === "permissive" ? { filter_chain_match: { transport_protocol: "tls" } } : {}),
    filters: [
      httpConnectionManager(INBOUND, [ACCESS_FILTER, ...filters.map(wasmFilter)], {
        ...observed,
        local_reply_config: DENIED_BY_RULE,
        forward_client_cert_details: envoyEnum(
          "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.ForwardClientCertDetails",
          "SANITIZE_SET",
        ),
        set_current_client_cert_details: { uri: true },
      }),
    ],
    transport_socket: tls.transportSocket,
  };
  if (tls.mode === "strict") {
    return listener(INBOUND, "INBOUND", proxy.inboundAddress, proxy.inboundPort, [mtls]);
  }
  return listener(
    INBOUND,
    "INBOUND",
    proxy.inboundAddress,
    proxy.inboundPort,
    [mtls, { ...plain, name: "plaintext" }],
    [
      {
        name: "envoy.filters.listener.tls_inspector",
        typed_config: { "@type": EXTENSION_TYPE.tlsInspector },
      },
    ],
  );
}

function listener(
  name: string,
  direction: "INBOUND" | "OUTBOUND",
  address: string,
  port: number,
  filterChains: FilterChain[],
  listenerFilters?: Listener["listener_filters"],
): XdsResource<Listener> {
  return {
    name,
    resource: {
      name,
      address: socketAddress(address, port),
      // Filters can read it (the listener_direction property).
      traffic_direction: envoyEnum("envoy.config.core.v3.TrafficDirection", direction),
      ...(listenerFilters !== undefined ? { listener_filters: listenerFilters } : {}),
      filter_chains: filterChains,
    },
  };
}

/** An HTTP filter whose configuration comes over ECDS, and the type it must have. */
interface EcdsFilter {
  name: string;
  typeUrl: string;
}

const wasmFilter = (name: string): EcdsFilter => ({ name, typeUrl: EXTENSION_TYPE.wasmFilter });
const ACCESS_FILTER: EcdsFilter = { name: INBOUND_ACCESS_FILTER, typeUrl: EXTENSION_TYPE.rbac };

/** The HTTP connection manager of a listener: RDS, the ECDS filters in order, then the router. */
function httpConnectionManager(
  name: string,
  filters: EcdsFilter[],
  extra: HttpConnectionManager = {},
): NonNullable<FilterChain["filters"]>[number] {
  return {
    name: "envoy.filters.network.http_connection_manager",
    typed_config: {
      "@type": EXTENSION_TYPE.httpConnectionManager,
      stat_prefix: name,
      rds: { config_source: adsConfigSource(), route_config_name: name },
      // As Istio does: `/a/../b` reaches rules and apps as `/b`, so a path rule cannot be
      // sidestepped by spelling the path differently.
      normalize_path: { value: true },
      ...extra,
      http_filters: [
        ...filters.map((filter) => ({
          name: filter.name,
          // Without a default config the listener waits for the filter (ECDS warming)
          // instead of serving requests without it.
          config_discovery: { config_source: adsConfigSource(), type_urls: [filter.typeUrl] },
        })),
        { name: "envoy.filters.http.router", typed_config: { "@type": EXTENSION_TYPE.router } },
      ],
    },
  };
}

/**
 * The outbound route: the cluster comes from `x-wasmesh-cluster`, which the routing filter sets
 * (and clears Envoy's route cache). A client cannot steer it:
 * - whenever the filter has routes it replaces the client's value, or removes it when no route
 *   matches (assembly/filters/mesh.ts), and it has routes whenever an `outbound|` cluster exists
 *   (a default route per service);
 * - this route takes only `outbound|…` values, so no value reaches the local app's cluster or the
 *   control plane's, even with no services (no routes) or a user plugin before the filter that
 *   writes the header; anything else gets a 404, as Istio answers a host it does not know.
 * `request_headers_to_remove` would not do: the router applies it after the route is chosen (it
 * still keeps the mesh's headers from the upstream). `internal_only_headers` would not either: the
 * app is a loopback client, which Envoy counts as internal, and its own x-forwarded-for decides.
 */
export function routeResources(proxy: ProxyIdentity, tracing?: Tracing): XdsResource<RouteConfiguration>[] {
  // Sampling and tags on each route, so that a change travels over RDS and drains nothing.
  const traced = tracing !== undefined ? { tracing } : {};
  const outbound: RouteConfiguration = {
    name: OUTBOUND,
    virtual_hosts: [
      {
        name: OUTBOUND,
        domains: ["*"],
        routes: [
          {
            name: "mesh",
            match: {
              prefix: "/",
              headers: [{ name: CLUSTER_HEADER, string_match: { prefix: OUTBOUND_CLUSTER_PREFIX } }],
            },
            route: { cluster_header: CLUSTER_HEADER },
            request_headers_to_remove: [...ROUTING_HEADERS],
            ...traced,
          },
          {
            name: "no-route",
            match: { prefix: "/" },
            ...traced,
            direct_response: {
              status: 404,
              body: { inline_string: "wasmesh: no service matches this request's authority\n" },
            },
          },
        ],
      },
    ],
  };
  const out: XdsResource<RouteConfiguration>[] = [{ name: OUTBOUND, resource: outbound }];
  if (proxy.appPort !== undefined) {
    out.push({
      name: INBOUND,
      resource: {
        name: INBOUND,
        virtual_hosts: [
          {
            name: INBOUND,
            domains: ["*"],
            routes: [
              {
                name: "app",
                match: { prefix: "/" },
                route: { cluster: inboundCluster(proxy.appPort) },
                ...traced,
              },
            ],
          },
        ],
      },
    });
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : 1));
}
