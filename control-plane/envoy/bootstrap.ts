// The Envoy bootstrap of a sidecar, as `wasmesh bootstrap` prints it and the data-plane agent
// (dataplane/) writes it. It holds only the node identity, the admin endpoint and the ADS cluster;
// listeners, routes, clusters, endpoints and the Wasm filters all arrive over ADS (LDS and CDS,
// which bring RDS, EDS and ECDS), so a bootstrap never goes stale.
import { isIP } from "node:net";
import { stringify } from "yaml";
import { DEFAULT_PORTS, nodeMetadata, type ProxyIdentity } from "./node.ts";
import { EXTENSION_TYPE } from "./protos.ts";
import { SDS_CLUSTER, SDS_SOCKET } from "./sds.ts";

export const XDS_CLUSTER = "wasmesh-xds";

/**
 * How to start Envoy on a bootstrap (the README's command too, and the agent's). --disable-hot-restart:
 * otherwise every Envoy on a host claims hot restart's domain socket of --base-id 0 and the second
 * one fails ("unable to bind domain socket with base_id=0"); a sidecar gets every change over xDS
 * and is never hot-restarted (Istio's and Kuma's agents start Envoy the same way). --drain-time-s:
 * a changed listener serves the connections opened before it until they drain, 600 s by default.
 */
export function envoyFlags(drainSeconds: number): string[] {
  return ["--disable-hot-restart", "--drain-time-s", String(drainSeconds)];
}

export const ENVOY_FLAGS: readonly string[] = envoyFlags(5);

export interface BootstrapOptions {
  proxy: ProxyIdentity;
  /** host:port of the control plane's xDS server. */
  xds: string;
  adminPort?: number;
  adminAddress?: string;
  /** ADS flavour: state of the world (GRPC) or incremental (DELTA_GRPC). */
  protocol?: "sotw" | "delta";
  /**
   * The token the ADS stream presents (metadata `authorization: Bearer …`): a dataplane token of
   * the proxy's service. The agent leaves it out: its xDS proxy adds its own.
   */
  token?: string;
  /**
   * PEM of the CAs the control plane's certificate is verified with (a server started with --tls):
   * the xDS cluster then speaks TLS (ALPN h2) and checks that the certificate names the --xds host.
   */
  xdsCa?: string;
}

export function parseHostPort(value: string, flag: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(value);
  const port = Number(match?.[3]);
  if (!match || !(port >= 1 && port <= 65_535)) {
    throw new Error(`${flag}: expected HOST:PORT, got '${value}'`);
  }
  return { host: (match[1] ?? match[2]) as string, port };
}

const HTTP2 = {
  "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
    explicit_http_config: { http2_protocol_options: {} },
  },
};

/**
 * The agent's SDS server (envoy/sds.ts), for a proxy whose metadata says `wasmesh.sds: agent`: a
 * Unix socket relative to Envoy's working directory, the agent's data directory.
 */
function sdsCluster(): Record<string, unknown> {
  return {
    name: SDS_CLUSTER,
    type: "STATIC",
    connect_timeout: "1s",
    typed_extension_protocol_options: HTTP2,
    load_assignment: {
      cluster_name: SDS_CLUSTER,
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { pipe: { path: SDS_SOCKET } } } }] }],
    },
  };
}

/** TLS to the control plane's xDS port: its CA inline, the host it is reached by as SNI and SAN. */
function xdsTls(host: string, ca: string): Record<string, unknown> {
  const ip = isIP(host) !== 0;
  return {
    name: "envoy.transport_sockets.tls",
    typed_config: {
      "@type": EXTENSION_TYPE.upstreamTlsContext,
      ...(ip ? {} : { sni: host }),
      common_tls_context: {
        // The control plane's secure server speaks HTTP/2 only, as gRPC asks it by ALPN.
        alpn_protocols: ["h2"],
        validation_context: {
          trusted_ca: { inline_string: ca },
          match_typed_subject_alt_names: [{ san_type: ip ? "IP_ADDRESS" : "DNS", matcher: { exact: host } }],
        },
      },
    },
  };
}

export function bootstrap(options: BootstrapOptions): Record<string, unknown> {
  const { host, port } = parseHostPort(options.xds, "--xds");
  const ads = { ads: {}, resource_api_version: "V3" };
  return {
    node: {
      id: options.proxy.nodeId,
      cluster: options.proxy.service,
      metadata: nodeMetadata(options.proxy),
    },
    admin: {
      address: {
        socket_address: {
          address: options.adminAddress ?? "127.0.0.1",
          port_value: options.adminPort ?? DEFAULT_PORTS.admin,
        },
      },
    },
    dynamic_resources: {
      ads_config: {
        api_type: options.protocol === "delta" ? "DELTA_GRPC" : "GRPC",
        transport_api_version: "V3",
        grpc_services: [
          {
            envoy_grpc: { cluster_name: XDS_CLUSTER },
            ...(options.token !== undefined
              ? { initial_metadata: [{ key: "authorization", value: `Bearer ${options.token}` }] }
              : {}),
          },
        ],
        set_node_on_first_message_only: true,
      },
      lds_config: ads,
      cds_config: ads,
    },
    static_resources: {
      clusters: [
        {
          name: XDS_CLUSTER,
          // A name is resolved (and re-resolved) by DNS; an IP needs no resolver.
          type: isIP(host) ? "STATIC" : "STRICT_DNS",
          connect_timeout: "1s",
          typed_extension_protocol_options: HTTP2,
          ...(options.xdsCa !== undefined ? { transport_socket: xdsTls(host, options.xdsCa) } : {}),
          load_assignment: {
            cluster_name: XDS_CLUSTER,
            endpoints: [
              {
                lb_endpoints: [
                  { endpoint: { address: { socket_address: { address: host, port_value: port } } } },
                ],
              },
            ],
          },
        },
        ...(options.proxy.sds === "agent" ? [sdsCluster()] : []),
      ],
    },
  };
}

export function bootstrapYaml(options: BootstrapOptions): string {
  const header = [
    "# An Envoy sidecar's bootstrap from `wasmesh bootstrap`. Saved as envoy.yaml, start it with:",
    `#   envoy -c envoy.yaml ${ENVOY_FLAGS.join(" ")}`,
    "# --disable-hot-restart lets several sidecars run on one host.",
  ].join("\n");
  // No anchors for the shared ADS config source: the file is read (and edited) by people.
  return `${header}\n${stringify(bootstrap(options), { lineWidth: 0, aliasDuplicateObjects: false })}`;
}
