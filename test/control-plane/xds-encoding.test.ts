// encodeMessage (control-plane/envoy/protos.ts) refuses what protobufjs alone would drop in silence:
// a key the message does not have, at any depth (nested messages, repeated fields, map values,
// the content of an Any and of an Any inside it, well-known types), naming the type and the path.
import { describe, expect, it } from "vitest";
import { decodeMessage, EXTENSION_TYPE, encodeMessage, TYPE_URL } from "../../control-plane/envoy/index.ts";

const EDS = 3; // envoy.config.cluster.v3.Cluster.DiscoveryType.EDS
const ADS_SOURCE = { ads: {}, resource_api_version: 2 };

const cluster = (extra: Record<string, unknown> = {}) => ({
  name: "c",
  type: EDS,
  eds_cluster_config: { eds_config: ADS_SOURCE },
  connect_timeout: { seconds: 1, nanos: 0 },
  ...extra,
});

/** A listener whose connection manager (an Any) has `hcm` merged in. */
const listener = (hcm: Record<string, unknown>) => ({
  name: "l",
  address: { socket_address: { address: "127.0.0.1", port_value: 15001 } },
  filter_chains: [
    {
      filters: [
        {
          name: "envoy.filters.network.http_connection_manager",
          typed_config: {
            "@type": EXTENSION_TYPE.httpConnectionManager,
            stat_prefix: "outbound",
            rds: { route_config_name: "r", config_source: ADS_SOURCE },
            http_filters: [
              { name: "envoy.filters.http.router", typed_config: { "@type": EXTENSION_TYPE.router } },
            ],
            ...hcm,
          },
        },
      ],
    },
  ],
});

/** An ECDS Wasm filter: Any (Wasm) holding an Any (StringValue), and inline bytes. */
const wasmFilter = (configuration: Record<string, unknown>, bytes = new Uint8Array([0, 97, 115, 109])) => ({
  name: "f",
  typed_config: {
    "@type": EXTENSION_TYPE.wasmFilter,
    config: {
      name: "f",
      vm_config: { runtime: "envoy.wasm.runtime.v8", code: { local: { inline_bytes: bytes } } },
      configuration,
    },
  },
});

describe("encodeMessage refuses unknown fields", () => {
  it("at the top: the misspelled field is named, not dropped", () => {
    expect(() => encodeMessage(TYPE_URL.cluster, { name: "c", conect_timeout: { seconds: 1 } })).toThrow(
      "type.googleapis.com/envoy.config.cluster.v3.Cluster: conect_timeout: envoy.config.cluster.v3.Cluster has no field 'conect_timeout'",
    );
    // The same resource spelled right encodes, and keeps the field.
    const decoded = decodeMessage(TYPE_URL.cluster, encodeMessage(TYPE_URL.cluster, cluster()));
    expect(decoded).toMatchObject({ name: "c", connect_timeout: { seconds: 1 } });
  });

  it("in nested messages, well-known types and repeated fields, with the path", () => {
    expect(() =>
      encodeMessage(TYPE_URL.cluster, cluster({ outlier_detection: { consecutive_5xxx: { value: 5 } } })),
    ).toThrow(
      "Cluster: outlier_detection.consecutive_5xxx: envoy.config.cluster.v3.OutlierDetection has no field 'consecutive_5xxx'",
    );
    expect(() =>
      encodeMessage(TYPE_URL.cluster, cluster({ connect_timeout: { seconds: 1, milis: 5 } })),
    ).toThrow("Cluster: connect_timeout.milis: google.protobuf.Duration has no field 'milis'");
    expect(() =>
      encodeMessage(TYPE_URL.cluster, cluster({ outlier_detection: { max_ejection_percent: { valu: 5 } } })),
    ).toThrow("outlier_detection.max_ejection_percent.valu: google.protobuf.UInt32Value has no field 'valu'");
    expect(() =>
      encodeMessage(TYPE_URL.endpoint, {
        cluster_name: "c",
        endpoints: [
          { lb_endpoints: [] },
          { lb_endpoints: [{ endpoint: { address: { socket_adress: { address: "10.0.0.1" } } } }] },
        ],
      }),
    ).toThrow(
      "ClusterLoadAssignment: endpoints[1].lb_endpoints[0].endpoint.address.socket_adress: envoy.config.core.v3.Address has no field 'socket_adress'",
    );
  });

  it("inside an Any, and an Any inside an Any, which protobufjs does not look into", () => {
    expect(() => encodeMessage(TYPE_URL.listener, listener({ stat_prefx: "x" }))).toThrow(
      "Listener: filter_chains[0].filters[0].typed_config.stat_prefx: envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager has no field 'stat_prefx'",
    );
    expect(() =>
      encodeMessage(
        TYPE_URL.extensionConfig,
        wasmFilter({ "@type": EXTENSION_TYPE.stringValue, valeu: "{}" }),
      ),
    ).toThrow(
      "TypedExtensionConfig: typed_config.config.configuration.valeu: google.protobuf.StringValue has no field 'valeu'",
    );
    // An Any's content is verified too: a wrong value type, two members of one oneof.
    expect(() => encodeMessage(TYPE_URL.listener, listener({ stat_prefix: 5 }))).toThrow(
      "Listener: filter_chains[0].filters[0].typed_config: envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager: stat_prefix: string expected",
    );
    expect(() =>
      encodeMessage(TYPE_URL.listener, listener({ route_config: { name: "r", virtual_hosts: [] } })),
    ).toThrow(/typed_config: .*HttpConnectionManager: route_specifier: multiple values/);
    // What the Any holds must be a type of the loaded API.
    expect(() =>
      encodeMessage(TYPE_URL.listener, {
        name: "l",
        filter_chains: [
          { filters: [{ name: "x", typed_config: { "@type": "type.googleapis.com/no.such.Type" } }] },
        ],
      }),
    ).toThrow(
      'Listener: filter_chains[0].filters[0].typed_config: @type "type.googleapis.com/no.such.Type" is not a message type of the Envoy API',
    );
  });

  it("in map values (an Any per extension name) and in a Struct's values", () => {
    const protocolOptions = (options: Record<string, unknown>) =>
      cluster({
        typed_extension_protocol_options: {
          "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": EXTENSION_TYPE.httpProtocolOptions,
            ...options,
          },
        },
      });
    expect(() =>
      encodeMessage(
        TYPE_URL.cluster,
        protocolOptions({ explicit_http_config: { http2_protocol_option: {} } }),
      ),
    ).toThrow(
      "Cluster: typed_extension_protocol_options[\"envoy.extensions.upstreams.http.v3.HttpProtocolOptions\"].explicit_http_config.http2_protocol_option: envoy.extensions.upstreams.http.v3.HttpProtocolOptions.ExplicitHttpConfig has no field 'http2_protocol_option'",
    );
    encodeMessage(
      TYPE_URL.cluster,
      protocolOptions({ explicit_http_config: { http2_protocol_options: {} } }),
    );

    // google.protobuf.Struct: protobufjs' bundled well-known types name Value's fields in camelCase.
    const withMetadata = (value: Record<string, unknown>) =>
      cluster({ metadata: { filter_metadata: { wasmesh: { fields: { zone: value } } } } });
    const decoded = decodeMessage(
      TYPE_URL.cluster,
      encodeMessage(TYPE_URL.cluster, withMetadata({ stringValue: "eu-1" })),
    );
    expect(decoded.metadata).toEqual({
      filter_metadata: { wasmesh: { fields: { zone: { stringValue: "eu-1" } } } },
    });
    expect(() => encodeMessage(TYPE_URL.cluster, withMetadata({ string_value: "eu-1" }))).toThrow(
      'Cluster: metadata.filter_metadata["wasmesh"].fields["zone"].string_value: google.protobuf.Value has no field \'string_value\'',
    );
  });

  it("refuses names an object has but a message does not, and `@type` outside an Any", () => {
    expect(() => encodeMessage(TYPE_URL.cluster, cluster({ constructor: "x" }))).toThrow(
      "Cluster: constructor: envoy.config.cluster.v3.Cluster has no field 'constructor'",
    );
    expect(() => encodeMessage(TYPE_URL.cluster, cluster({ "@type": TYPE_URL.cluster }))).toThrow(
      "Cluster: @type: envoy.config.cluster.v3.Cluster has no field '@type'",
    );
    // A oneof's name is not a field either; its members are.
    expect(() => encodeMessage(TYPE_URL.cluster, cluster({ cluster_discovery_type: EDS }))).toThrow(
      "envoy.config.cluster.v3.Cluster has no field 'cluster_discovery_type'",
    );
  });

  it("takes absent fields (undefined, null) and inline bytes as they are", () => {
    const bytes = new Uint8Array(80 * 1024).fill(7);
    const encoded = encodeMessage(
      TYPE_URL.extensionConfig,
      wasmFilter({ "@type": EXTENSION_TYPE.stringValue, value: "{}" }, bytes),
    );
    const decoded = decodeMessage(TYPE_URL.extensionConfig, encoded) as {
      typed_config: { value: Uint8Array };
    };
    expect(decoded.typed_config.value.length).toBeGreaterThan(bytes.length);
    expect(() =>
      encodeMessage(TYPE_URL.cluster, cluster({ lb_policy: undefined, metadata: null })),
    ).not.toThrow();
  });
});
