// LDS and RDS: the outbound listener (the app's calls into the mesh) and, when the sidecar fronts an
// app, the inbound listener; each an HTTP connection manager whose Wasm filters come over ECDS.

import type { Listener, ProxyIdentity, RouteConfiguration, XdsResource } from "../envoy/index.ts";
import { adsConfigSource, EXTENSION_TYPE, envoyEnum, socketAddress } from "../envoy/index.ts";
import {
  CLUSTER_HEADER,
  INBOUND,
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

export function listenerResources(proxy: ProxyIdentity, chains: FilterChains): XdsResource<Listener>[] {
  const out = [listener(OUTBOUND, "OUTBOUND", proxy.outboundAddress, proxy.outboundPort, chains.outbound)];
  if (proxy.appPort !== undefined) {
    out.push(listener(INBOUND, "INBOUND", proxy.inboundAddress, proxy.inboundPort, chains.inbound));
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : 1));
}

function listener(
  name: string,
  direction: "INBOUND" | "OUTBOUND",
  address: string,
  port: number,
  filters: string[],
): XdsResource<Listener> {
  return {
    name,
    resource: {
      name,
      address: socketAddress(address, port),
      // Filters can read it (the listener_direction property).
      traffic_direction: envoyEnum("envoy.config.core.v3.TrafficDirection", direction),
      filter_chains: [
        {
          filters: [
            {
              name: "envoy.filters.network.http_connection_manager",
              typed_config: {
                "@type": EXTENSION_TYPE.httpConnectionManager,
                stat_prefix: name,
                rds: { config_source: adsConfigSource(), route_config_name: name },
                // As Istio does: `/a/../b` reaches rules and apps as `/b`, so a path rule cannot be
                // sidestepped by spelling the path differently.
                normalize_path: { value: true },
                http_filters: [
                  ...filters.map((filter) => ({
                    name: filter,
                    // Without a default config the listener waits for the filter (ECDS warming)
                    // instead of serving requests without it.
                    config_discovery: {
                      config_source: adsConfigSource(),
                      type_urls: [EXTENSION_TYPE.wasmFilter],
                    },
                  })),
                  { name: "envoy.filters.http.router", typed_config: { "@type": EXTENSION_TYPE.router } },
                ],
              },
            },
          ],
        },
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
export function routeResources(proxy: ProxyIdentity): XdsResource<RouteConfiguration>[] {
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
          },
          {
            name: "no-route",
            match: { prefix: "/" },
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
              { name: "app", match: { prefix: "/" }, route: { cluster: inboundCluster(proxy.appPort) } },
            ],
          },
        ],
      },
    });
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : 1));
}
