// Translation of the mesh's resources into one proxy's xDS resources: proto-valid output, a pure and
// order-independent function, the example mesh's clusters, endpoints and filter routes, and the
// generated routing configuration run through the real build/mesh.wasm (split, access denial,
// routing-header spoofing).
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  decodeMessage,
  type EnvoyNode,
  EXTENSION_TYPE,
  encodeMessage,
  type ModuleCode,
  NODE_METADATA,
  nodeMetadata,
  type ProxyConfig,
  type ProxyIdentity,
  parseNodeIdentity,
  type ResourceTypes,
  TYPE_URL,
  type TypeUrl,
  type XdsResource,
} from "../../control-plane/envoy/index.ts";
import {
  CLUSTER_HEADER,
  OUTBOUND_CLUSTER_PREFIX,
  outboundCluster,
  parseManifests,
  type Resource,
  ROUTING_FILTER,
  RULE_HEADER,
  validateResource,
} from "../../control-plane/resources/index.ts";
import {
  compileMesh,
  proxyClassKey,
  routingFilterConfig,
  type TranslateOptions,
  translateProxy,
} from "../../control-plane/translate/index.ts";
import { indexMesh } from "../../control-plane/translate/mesh.ts";
import type { FilterConfig } from "../../schema/filter-config.ts";
import { MeshUnderTest } from "../support/mesh-host.ts";

const API = "wasmesh.io/v1alpha1";
const EXAMPLE = readFileSync(new URL("../../deploy/examples/mesh.yaml", import.meta.url), "utf8");

function example(): Resource[] {
  const parsed = parseManifests(EXAMPLE);
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
  return parsed.resources;
}

function resource(kind: string, name: string, spec: unknown): Resource {
  const result = validateResource({ apiVersion: API, kind, metadata: { name }, spec });
  if (!result.ok) throw new Error(`${kind}/${name}: ${JSON.stringify(result.errors)}`);
  return result.resource;
}

const service = (name: string, protocols: ("http" | "grpc" | "tcp")[] = ["http"]) =>
  resource("Service", name, {
    ports: protocols.map((protocol, i) => ({ name: `p${i}`, port: 9080 + i, protocol })),
  });

function proxy(overrides: Partial<ProxyIdentity> = {}): ProxyIdentity {
  return {
    nodeId: "productpage-1",
    service: "productpage",
    labels: {},
    outboundPort: 15001,
    inboundPort: 15006,
    outboundAddress: "127.0.0.1",
    inboundAddress: "0.0.0.0",
    appAddress: "127.0.0.1",
    ...overrides,
  };
}

const MESH_CODE: ModuleCode = {
  sha256: "a".repeat(64),
  bytes: new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0]),
};
const TAGGER_CODE: ModuleCode = {
  sha256: "b".repeat(64),
  bytes: new Uint8Array([0, 97, 115, 109, 1, 0, 0, 1]),
};

function options(): TranslateOptions {
  return {
    modules: new Map([
      ["mesh", MESH_CODE],
      ["tagger", TAGGER_CODE],
    ]),
  };
}

const names = (list: readonly XdsResource[]) => list.map((r) => r.name);
const find = <U extends TypeUrl>(config: ProxyConfig, typeUrl: U, name: string): ResourceTypes[U] => {
  const list: XdsResource<ResourceTypes[U]>[] = config[typeUrl];
  const found = list.find((r) => r.name === name);
  if (!found) throw new Error(`no ${typeUrl} named ${name}; have ${names(config[typeUrl]).join(", ")}`);
  return found.resource;
};

/** The routing filter's FilterConfig as Envoy receives it (the StringValue of its ECDS resource). */
function routingConfig(config: ProxyConfig): FilterConfig {
  const ecds = find(config, TYPE_URL.extensionConfig, ROUTING_FILTER) as {
    typed_config: { config: { configuration: { value: string } } };
  };
  return JSON.parse(ecds.typed_config.config.configuration.value) as FilterConfig;
}

/** http_filters of a listener's connection manager, by name. */
function httpFilters(config: ProxyConfig, listener: string): string[] {
  const l = find(config, TYPE_URL.listener, listener) as {
    filter_chains: { filters: { typed_config: { http_filters: { name: string }[] } }[] }[];
  };
  return l.filter_chains[0]?.filters[0]?.typed_config.http_filters.map((f) => f.name) ?? [];
}

function expectProtoValid(config: ProxyConfig): void {
  for (const [typeUrl, list] of Object.entries(config)) {
    for (const { name, resource: value } of list) {
      // Strict: an unknown field at any depth, inside Any too, throws (test/control-plane/xds-encoding.test.ts).
      expect(() => encodeMessage(typeUrl, value), `${typeUrl} ${name}`).not.toThrow();
      // The resource is named as the xDS server announces it.
      const decoded = decodeMessage(typeUrl, encodeMessage(typeUrl, value));
      expect(decoded.name ?? decoded.cluster_name).toBe(name);
    }
  }
}

describe("output is valid Envoy configuration", () => {
  it("every resource of the example mesh encodes, for sidecars with and without an app", () => {
    expectProtoValid(translateProxy(example(), proxy(), options()));
    expectProtoValid(translateProxy(example(), proxy({ service: "reviews", appPort: 9080 }), options()));
  });

  it("is checked strictly: an unknown field inside an Any is an error", () => {
    const listener = {
      name: "x",
      filter_chains: [
        {
          filters: [
            { name: "hcm", typed_config: { "@type": EXTENSION_TYPE.httpConnectionManager, stat_prefx: "x" } },
          ],
        },
      ],
    };
    expect(() => encodeMessage(TYPE_URL.listener, listener)).toThrow(
      "filter_chains[0].filters[0].typed_config.stat_prefx: envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager has no field 'stat_prefx'",
    );
  });

  it("every type URL is present, empty when there is nothing of it", () => {
    const config = translateProxy([], proxy(), options());
    expect(Object.keys(config).sort()).toEqual(Object.values(TYPE_URL).sort());
    expect(config[TYPE_URL.cluster]).toEqual([]);
    expect(config[TYPE_URL.endpoint]).toEqual([]);
    expect(names(config[TYPE_URL.listener])).toEqual(["outbound"]);
    expect(routingConfig(config)).toEqual({});
    expectProtoValid(config);
  });
});

describe("a pure function of resources, identity and modules", () => {
  it("gives deep-equal output for the same input, in any order, for any node id and labels", () => {
    const resources = example();
    const first = translateProxy(resources, proxy(), options());
    expect(translateProxy(resources, proxy(), options())).toEqual(first);
    expect(translateProxy([...resources].reverse(), proxy(), options())).toEqual(first);
    const shuffled = [...resources].sort((a, b) =>
      `${a.metadata.name}${a.kind}`.split("").reverse().join() <
      `${b.metadata.name}${b.kind}`.split("").reverse().join()
        ? -1
        : 1,
    );
    expect(translateProxy(shuffled, proxy(), options())).toEqual(first);
    const other = proxy({ nodeId: "productpage-7", labels: { version: "v9" } });
    expect(translateProxy(resources, other, options())).toEqual(first);
    expect(proxyClassKey(other)).toBe(proxyClassKey(proxy()));
  });

  it("compiled once, gives each proxy what translateProxy gives, sharing what proxies have in common", () => {
    // The example allows productpage → reviews and denies every other call: ratings and details
    // may call the same services (none), productpage may call reviews.
    const resources = example();
    const compiled = compileMesh(resources, options());
    const identities = {
      productpage: proxy(),
      ratings: proxy({ nodeId: "ratings-1", service: "ratings", appPort: 9080 }),
      details: proxy({ nodeId: "details-1", service: "details" }),
    };
    const configs = Object.fromEntries(
      Object.entries(identities).map(([name, identity]) => [name, compiled.translate(identity)]),
    ) as Record<keyof typeof identities, ProxyConfig>;
    for (const [name, identity] of Object.entries(identities)) {
      expect(configs[name as keyof typeof identities]).toEqual(
        translateProxy(resources, identity, options()),
      );
    }
    const { productpage, ratings, details } = configs;
    const resourceOf = (config: ProxyConfig, typeUrl: keyof ProxyConfig, name: string) =>
      config[typeUrl].find((r) => r.name === name)?.resource;
    // The same objects, which the snapshot cache then encodes once.
    const cluster = outboundCluster("reviews", { version: "v2" });
    expect(resourceOf(ratings, TYPE_URL.cluster, cluster)).toBe(
      resourceOf(productpage, TYPE_URL.cluster, cluster),
    );
    expect(resourceOf(details, TYPE_URL.endpoint, cluster)).toBe(
      resourceOf(productpage, TYPE_URL.endpoint, cluster),
    );
    const routing = (config: ProxyConfig) => resourceOf(config, TYPE_URL.extensionConfig, ROUTING_FILTER);
    expect(routing(ratings)).toBe(routing(details));
    // A source that may call other services has a routing filter of its own.
    expect(routing(productpage)).not.toBe(routing(details));
    expect(routingConfig(details).headerRules?.map((r) => r.name)).toContain("default-deny:reviews");
    expect(routingConfig(productpage).headerRules?.map((r) => r.name)).not.toContain("default-deny:reviews");
    // Lists are each proxy's own: a consumer changing one does not change another's.
    expect(details[TYPE_URL.endpoint]).not.toBe(productpage[TYPE_URL.endpoint]);
  });

  it("does not modify its input", () => {
    const resources = example();
    const copy = structuredClone(resources);
    translateProxy(resources, proxy({ service: "reviews", appPort: 9080 }), options());
    expect(resources).toEqual(copy);
  });

  it("keys proxies apart by everything the output depends on", () => {
    const base = proxyClassKey(proxy());
    for (const changed of [
      proxy({ service: "reviews" }),
      proxy({ outboundPort: 15002 }),
      proxy({ inboundPort: 15007 }),
      proxy({ appPort: 8080 }),
      proxy({ outboundAddress: "127.0.0.2" }),
      proxy({ inboundAddress: "10.0.0.1" }),
      proxy({ appAddress: "127.0.0.3" }),
    ]) {
      expect(proxyClassKey(changed)).not.toBe(base);
    }
  });

  it("sorts every resource list by name", () => {
    const config = translateProxy(example(), proxy({ service: "reviews", appPort: 9080 }), options());
    for (const list of Object.values(config)) expect(names(list)).toEqual([...names(list)].sort());
  });
});

describe("the example mesh (deploy/examples/mesh.yaml)", () => {
  const config = translateProxy(example(), proxy(), options());

  it("has a cluster per service and per subset in use", () => {
    expect(names(config[TYPE_URL.cluster])).toEqual([
      "outbound|productpage",
      "outbound|reviews",
      "outbound|reviews|version=v1",
      "outbound|reviews|version=v2",
    ]);
    const reviews = find(config, TYPE_URL.cluster, "outbound|reviews|version=v1");
    expect(decodeMessage(TYPE_URL.cluster, encodeMessage(TYPE_URL.cluster, reviews))).toMatchObject({
      type: "EDS",
      lb_policy: "ROUND_ROBIN",
      eds_cluster_config: {
        eds_config: { ads: {}, resource_api_version: "V3" },
        service_name: "outbound|reviews|version=v1",
      },
    });
  });

  it("names clusters so that the filter's schema accepts them", () => {
    const pattern = /^[\x21-\x7e]{1,200}$/;
    for (const name of names(config[TYPE_URL.cluster])) expect(name).toMatch(pattern);
    expect(outboundCluster("reviews", { version: "v2", "app.kubernetes.io/tier": "x" })).toBe(
      "outbound|reviews|app.kubernetes.io/tier=x,version=v2",
    );
    expect(outboundCluster("reviews", { b: "1", a: "2" })).toBe(
      outboundCluster("reviews", { a: "2", b: "1" }),
    );
  });

  it("turns the CircuitBreaker into outlier detection and a request limit on its subset's cluster", () => {
    const v2 = find(config, TYPE_URL.cluster, "outbound|reviews|version=v2");
    expect(decodeMessage(TYPE_URL.cluster, encodeMessage(TYPE_URL.cluster, v2))).toMatchObject({
      outlier_detection: {
        consecutive_5xx: { value: 5 },
        interval: { seconds: 10 },
        base_ejection_time: { seconds: 30 },
        max_ejection_time: { seconds: 300 },
        max_ejection_percent: { value: 50 },
      },
      circuit_breakers: { thresholds: [{ max_requests: { value: 100 } }] },
    });
    expect(find(config, TYPE_URL.cluster, "outbound|reviews|version=v1")).not.toHaveProperty(
      "outlier_detection",
    );
  });

  it("sends each EDS cluster its subset's workloads, by zone", () => {
    expect(names(config[TYPE_URL.endpoint])).toEqual([
      "outbound|reviews",
      "outbound|reviews|version=v1",
      "outbound|reviews|version=v2",
    ]);
    const endpoint = (address: string) => ({
      endpoint: { address: { socket_address: { address, port_value: 9080 } } },
    });
    expect(find(config, TYPE_URL.endpoint, "outbound|reviews")).toEqual({
      cluster_name: "outbound|reviews",
      endpoints: [
        { locality: { zone: "zone-a" }, lb_endpoints: [endpoint("10.0.1.11"), endpoint("10.0.1.12")] },
      ],
    });
    expect(find(config, TYPE_URL.endpoint, "outbound|reviews|version=v2")).toEqual({
      cluster_name: "outbound|reviews|version=v2",
      endpoints: [{ locality: { zone: "zone-a" }, lb_endpoints: [endpoint("10.0.1.12")] }],
    });
  });

  it("makes a service whose workload has a host name a STRICT_DNS cluster with its endpoints inline", () => {
    const productpage = find(config, TYPE_URL.cluster, "outbound|productpage");
    expect(decodeMessage(TYPE_URL.cluster, encodeMessage(TYPE_URL.cluster, productpage))).toMatchObject({
      type: "STRICT_DNS",
      load_assignment: {
        cluster_name: "outbound|productpage",
        endpoints: [
          {
            lb_endpoints: [
              {
                endpoint: {
                  address: {
                    socket_address: { address: "productpage-0.bookinfo.svc.cluster.local", port_value: 9080 },
                  },
                },
              },
            ],
          },
        ],
      },
    });
    expect(productpage).not.toHaveProperty("eds_cluster_config");
    expect(names(config[TYPE_URL.endpoint])).not.toContain("outbound|productpage");
  });

  it("compiles the Route into filter routes in rule order, then a default route per service", () => {
    const routes = routingConfig(config).routes ?? [];
    expect(routes.map((r) => r.name)).toEqual([
      "productpage:default",
      "reviews/testers",
      "reviews/canary",
      "reviews:default",
    ]);
    expect(routes[2]).toMatchObject({
      destinations: [
        { cluster: "outbound|reviews|version=v1", weight: 90 },
        { cluster: "outbound|reviews|version=v2", weight: 10 },
      ],
      sticky: { header: "x-user" },
      timeoutMs: 2000,
      retries: { attempts: 2, on: "5xx,reset", perTryTimeoutMs: 500 },
    });
    expect(routes[3]).toEqual({
      name: "reviews:default",
      match: { authority: { regex: "reviews(?::(?:9080))?", ignoreCase: true } },
      destinations: [{ cluster: "outbound|reviews" }],
    });
    expect(routingConfig(config).breakers).toEqual([
      {
        cluster: "outbound|reviews|version=v2",
        consecutiveErrors: 5,
        intervalMs: 10_000,
        baseEjectionMs: 30_000,
        maxEjectionMs: 300_000,
        maxConcurrent: 100,
        fallback: "outbound|reviews|version=v1",
      },
    ]);
  });

  it("uses the rules' own matches when no rule changes headers or injects faults", () => {
    const resources = example().map((r) =>
      r.kind === "Route"
        ? {
            ...r,
            spec: { ...r.spec, rules: r.spec.rules.map(({ responseHeaders: _, ...rule }) => rule) },
          }
        : r,
    );
    const filter = routingConfig(translateProxy(resources, proxy(), options()));
    expect(filter.routes?.find((r) => r.name === "reviews/canary")?.match).toEqual({
      path: { prefix: "/" },
      authority: { regex: "reviews(?::(?:9080))?", ignoreCase: true },
      methods: ["GET", "HEAD"],
    });
    expect(filter.headerRules?.map((r) => r.name)).toEqual(["default-deny:productpage"]);
  });

  it("builds listeners on the identity's addresses with ECDS filters, then the router", () => {
    expect(names(config[TYPE_URL.listener])).toEqual(["outbound"]);
    const outbound = find(config, TYPE_URL.listener, "outbound");
    expect(outbound).toMatchObject({
      address: { socket_address: { address: "127.0.0.1", port_value: 15001 } },
    });
    expect(httpFilters(config, "outbound")).toEqual([ROUTING_FILTER, "envoy.filters.http.router"]);
    const decoded = decodeMessage(TYPE_URL.listener, encodeMessage(TYPE_URL.listener, outbound)) as {
      traffic_direction: string;
      filter_chains: { filters: { typed_config: { type_url: string; value: Uint8Array } }[] }[];
    };
    expect(decoded.traffic_direction).toBe("OUTBOUND");
    // decodeMessage leaves Any packed: unpack the connection manager to see what Envoy gets.
    const any = decoded.filter_chains[0]?.filters[0]?.typed_config;
    expect(any?.type_url).toBe(EXTENSION_TYPE.httpConnectionManager);
    expect(decodeMessage(EXTENSION_TYPE.httpConnectionManager, any?.value ?? new Uint8Array())).toMatchObject(
      {
        stat_prefix: "outbound",
        rds: { route_config_name: "outbound", config_source: { ads: {}, resource_api_version: "V3" } },
        http_filters: [
          {
            name: ROUTING_FILTER,
            config_discovery: {
              config_source: { ads: {}, resource_api_version: "V3" },
              type_urls: [EXTENSION_TYPE.wasmFilter],
            },
          },
          { name: "envoy.filters.http.router" },
        ],
      },
    );
  });

  it("routes outbound only to outbound clusters named by the filter, and answers 404 otherwise", () => {
    expect(find(config, TYPE_URL.route, "outbound")).toEqual({
      name: "outbound",
      virtual_hosts: [
        {
          name: "outbound",
          domains: ["*"],
          routes: [
            {
              name: "mesh",
              match: {
                prefix: "/",
                headers: [{ name: CLUSTER_HEADER, string_match: { prefix: OUTBOUND_CLUSTER_PREFIX } }],
              },
              route: { cluster_header: CLUSTER_HEADER },
              request_headers_to_remove: [CLUSTER_HEADER, RULE_HEADER],
            },
            {
              name: "no-route",
              match: { prefix: "/" },
              direct_response: { status: 404, body: { inline_string: expect.any(String) } },
            },
          ],
        },
      ],
    });
    for (const cluster of names(config[TYPE_URL.cluster]))
      expect(cluster.startsWith(OUTBOUND_CLUSTER_PREFIX)).toBe(true);
  });

  it("gives a sidecar with an app an inbound listener, route and STATIC cluster to the app", () => {
    const reviews = translateProxy(
      example(),
      proxy({ service: "reviews", appPort: 9080, appAddress: "127.0.0.5" }),
      options(),
    );
    expect(names(reviews[TYPE_URL.listener])).toEqual(["inbound", "outbound"]);
    expect(find(reviews, TYPE_URL.listener, "inbound")).toMatchObject({
      address: { socket_address: { address: "0.0.0.0", port_value: 15006 } },
    });
    expect(find(reviews, TYPE_URL.route, "inbound")).toMatchObject({
      virtual_hosts: [
        { domains: ["*"], routes: [{ match: { prefix: "/" }, route: { cluster: "inbound|9080" } }] },
      ],
    });
    const app = find(reviews, TYPE_URL.cluster, "inbound|9080");
    expect(decodeMessage(TYPE_URL.cluster, encodeMessage(TYPE_URL.cluster, app))).toMatchObject({
      load_assignment: {
        endpoints: [
          { lb_endpoints: [{ endpoint: { address: { socket_address: { address: "127.0.0.5" } } } }] },
        ],
      },
    });
    expect(app.type).toBe(0); // STATIC, the enum's default
    // The example's plugin runs on the reviews sidecars' inbound side (the default direction).
    expect(httpFilters(reviews, "inbound")).toEqual([
      "wasmesh.inbound.reviews-tagging",
      "envoy.filters.http.router",
    ]);
  });
});

describe("the generated routing configuration in the real filter (build/mesh.wasm)", () => {
  const productpage = routingConfig(translateProxy(example(), proxy(), options()));

  it("splits requests for reviews:9080 90/10 over the v1 and v2 subset clusters", async () => {
    const mesh = await MeshUnderTest.start(productpage);
    const counts = new Map<string | null, number>();
    for (let i = 0; i < 1000; i++) {
      const decision = mesh.request({ authority: "reviews:9080", path: "/reviews/1" });
      counts.set(decision.cluster, (counts.get(decision.cluster) ?? 0) + 1);
      expect(decision.upstreamHeaders?.get("x-envoy-upstream-rq-timeout-ms")).toBe("2000");
      expect(decision.upstreamHeaders?.get("x-envoy-max-retries")).toBe("2");
    }
    expect(Object.fromEntries(counts)).toEqual({
      "outbound|reviews|version=v1": 900,
      "outbound|reviews|version=v2": 100,
    });
  });

  it("matches the service's authority with or without its port, in any case, and nothing else", async () => {
    const mesh = await MeshUnderTest.start(productpage);
    expect(mesh.request({ authority: "REVIEWS", method: "POST", path: "/" }).cluster).toBe(
      "outbound|reviews",
    );
    expect(mesh.request({ authority: "reviews:9080", method: "POST", path: "/" }).cluster).toBe(
      "outbound|reviews",
    );
    expect(mesh.request({ authority: "reviews:9081", path: "/" }).cluster).toBeNull();
    expect(mesh.request({ authority: "reviews.evil", path: "/" }).cluster).toBeNull();
    expect(mesh.request({ authority: "xreviews", path: "/" }).cluster).toBeNull();
  });

  it("applies a rule's header changes only to the requests that rule routes", async () => {
    const mesh = await MeshUnderTest.start(productpage);
    const tester = mesh.request({ authority: "reviews", path: "/", headers: { "x-user": "tester" } });
    expect(tester.cluster).toBe("outbound|reviews|version=v2");
    // The canary rule also matches this request, but the testers rule routed it.
    expect(tester.responseHeaders.has("x-served-by")).toBe(false);
    const canary = mesh.request({ authority: "reviews", path: "/" });
    expect(canary.responseHeaders.get("x-served-by")).toBe("wasmesh");
  });

  it("lets no client choose its cluster or its rule", async () => {
    const mesh = await MeshUnderTest.start(productpage);
    const unknownHost = mesh.request({
      authority: "nowhere",
      path: "/",
      headers: { [CLUSTER_HEADER]: "outbound|reviews|version=v2" },
    });
    expect(unknownHost.cluster).toBeNull(); // removed; the outbound route then answers 404
    const spoofedCluster = mesh.request({
      authority: "reviews",
      method: "POST",
      path: "/",
      headers: { [CLUSTER_HEADER]: "inbound|9080" },
    });
    expect(spoofedCluster.cluster).toBe("outbound|reviews");
    for (let i = 0; i < 20; i++) {
      const spoofedRule = mesh.request({
        authority: "reviews",
        path: "/",
        headers: { [RULE_HEADER]: "reviews/testers" },
      });
      expect(spoofedRule.upstreamHeaders?.get(RULE_HEADER)).toBe("reviews/canary");
      expect(spoofedRule.responseHeaders.get("x-served-by")).toBe("wasmesh");
    }
  });

  it("denies a source that the mesh's default access does not allow: 403 and x-wasmesh-denied", async () => {
    const ratings = routingConfig(translateProxy(example(), proxy({ service: "ratings" }), options()));
    const mesh = await MeshUnderTest.start(ratings);
    const denied = mesh.request({
      authority: "reviews:9080",
      path: "/",
      headers: { [CLUSTER_HEADER]: "outbound|reviews" },
    });
    expect(denied.status).toBe(403);
    expect(denied.cluster).toBeNull();
    expect(denied.responseHeaders.get("x-wasmesh-denied")).toBe("default-deny:reviews");

    // productpage is allowed to call reviews, but not itself (the default is deny).
    const allowed = await MeshUnderTest.start(productpage);
    expect(allowed.request({ authority: "reviews", path: "/" }).status).toBe(200);
    const self = allowed.request({ authority: "productpage:9080", path: "/" });
    expect(self.status).toBe(403);
    expect(self.responseHeaders.get("x-wasmesh-denied")).toBe("default-deny:productpage");
  });

  it("names a denial after the AccessRule that decides it", async () => {
    const resources = [
      service("reviews"),
      resource("AccessRule", "no-ratings", { source: "ratings", destination: "reviews", action: "deny" }),
    ];
    const mesh = await MeshUnderTest.start(
      routingConfig(translateProxy(resources, proxy({ service: "ratings" }), options())),
    );
    const denied = mesh.request({ authority: "reviews", path: "/" });
    expect(denied.status).toBe(403);
    expect(denied.responseHeaders.get("x-wasmesh-denied")).toBe("no-ratings");
  });

  it("narrows a rule by its own authority condition within the service", async () => {
    const resources = [
      resource("Service", "reviews", {
        ports: [
          { name: "http", port: 9080, protocol: "http" },
          { name: "alt", port: 9090, protocol: "http" },
        ],
      }),
      resource("Route", "reviews", {
        service: "reviews",
        rules: [
          {
            name: "alt-port",
            match: { authority: { suffix: ":9090" } },
            destinations: [{ service: "reviews", subset: { version: "v2" } }],
          },
        ],
      }),
    ];
    const mesh = await MeshUnderTest.start(routingConfig(translateProxy(resources, proxy(), options())));
    expect(mesh.request({ authority: "reviews:9090", path: "/" }).cluster).toBe(
      "outbound|reviews|version=v2",
    );
    expect(mesh.request({ authority: "reviews:9080", path: "/" }).cluster).toBe("outbound|reviews");
    expect(mesh.request({ authority: "other:9090", path: "/" }).cluster).toBeNull();
  });

  it("keeps one breaker per cluster, the first by name, as the filter allows", () => {
    const breaker = (name: string, consecutiveErrors: number) =>
      resource("CircuitBreaker", name, {
        service: "reviews",
        consecutiveErrors,
        intervalMs: 1000,
        baseEjectionMs: 1000,
      });
    const config = translateProxy([service("reviews"), breaker("b", 9), breaker("a", 3)], proxy(), options());
    expect(routingConfig(config).breakers).toEqual([
      { cluster: "outbound|reviews", consecutiveErrors: 3, intervalMs: 1000, baseEjectionMs: 1000 },
    ]);
  });

  it("opens the breaker with the generated thresholds and falls back to v1", async () => {
    const mesh = await MeshUnderTest.start(productpage);
    const tester = { authority: "reviews", path: "/", headers: { "x-user": "tester" } };
    for (let i = 0; i < 5; i++) mesh.request(tester, () => 503);
    expect(mesh.request(tester).cluster).toBe("outbound|reviews|version=v1");
  });
});

describe("access rules", () => {
  const mesh = (...extra: Resource[]) => indexMesh([service("reviews"), ...extra]);
  const deniedNames = (resources: Resource[], source: string) =>
    (routingFilterConfig(indexMesh(resources), source).headerRules ?? [])
      .filter((r) => r.deny !== undefined)
      .map((r) => r.name);
  const rule = (name: string, source: string, action: "allow" | "deny") =>
    resource("AccessRule", name, { source, destination: "reviews", action });
  const policy = (defaultAccess: "allow" | "deny") => resource("MeshPolicy", "default", { defaultAccess });

  it("allows everything without a MeshPolicy or rules, and follows defaultAccess otherwise", () => {
    expect(routingFilterConfig(mesh(), "web").headerRules).toBeUndefined();
    expect(deniedNames([service("reviews"), policy("allow")], "web")).toEqual([]);
    expect(deniedNames([service("reviews"), policy("deny")], "web")).toEqual(["default-deny:reviews"]);
  });

  it("prefers a rule for the source over one for every source", () => {
    const resources = [
      service("reviews"),
      policy("allow"),
      rule("all-out", "*", "deny"),
      rule("web-in", "web", "allow"),
    ];
    expect(deniedNames(resources, "web")).toEqual([]);
    expect(deniedNames(resources, "batch")).toEqual(["all-out"]);
    const opened = [service("reviews"), policy("deny"), rule("all-in", "*", "allow")];
    expect(deniedNames(opened, "batch")).toEqual([]);
  });

  it("lets a deny win over an allow that is as specific", () => {
    const resources = [service("reviews"), rule("b-allow", "web", "allow"), rule("a-deny", "web", "deny")];
    expect(deniedNames(resources, "web")).toEqual(["a-deny"]);
  });

  it("puts denials first, before every other header rule", () => {
    const resources = [...example().filter((r) => r.kind !== "MeshPolicy"), rule("no-web", "web", "deny")];
    const headerRules = routingFilterConfig(indexMesh(resources), "web").headerRules ?? [];
    expect(headerRules[0]?.name).toBe("no-web");
    expect(headerRules.slice(1).every((r) => r.deny === undefined)).toBe(true);
  });
});

describe("clusters", () => {
  it("speaks HTTP/2 to gRPC services, and the client's protocol to mixed ones", () => {
    const resources = [service("grpc", ["grpc"]), service("mixed", ["http", "grpc", "tcp"]), service("web")];
    const config = translateProxy(resources, proxy({ service: "grpc", appPort: 50051 }), options());
    const options_ = (name: string) =>
      (
        find(config, TYPE_URL.cluster, name).typed_extension_protocol_options as
          | Record<string, unknown>
          | undefined
      )?.["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"];
    expect(options_("outbound|grpc")).toMatchObject({ explicit_http_config: { http2_protocol_options: {} } });
    expect(options_("outbound|mixed")).toMatchObject({
      use_downstream_protocol_config: { http_protocol_options: {}, http2_protocol_options: {} },
    });
    expect(options_("outbound|web")).toBeUndefined();
    // The local app of a gRPC service speaks gRPC too.
    expect(options_("inbound|50051")).toMatchObject({ explicit_http_config: { http2_protocol_options: {} } });
    expectProtoValid(config);
  });

  it("gives a cluster without workloads an empty assignment, so Envoy does not wait for one", () => {
    const config = translateProxy([service("lonely")], proxy(), options());
    expect(find(config, TYPE_URL.endpoint, "outbound|lonely")).toEqual({
      cluster_name: "outbound|lonely",
      endpoints: [],
    });
  });

  it("turns a subset into STRICT_DNS when any of its workloads has a host name", () => {
    const resources = [
      service("db"),
      resource("Workload", "db-a", { service: "db", address: "10.0.0.1", port: 5432, labels: { role: "a" } }),
      resource("Workload", "db-b", {
        service: "db",
        address: "db-b.example",
        port: 5432,
        labels: { role: "b" },
      }),
      resource("Route", "db", {
        service: "db",
        rules: [{ name: "a", destinations: [{ service: "db", subset: { role: "a" } }] }],
      }),
    ];
    const config = translateProxy(resources, proxy(), options());
    expect(find(config, TYPE_URL.cluster, "outbound|db").type).toBe(1); // STRICT_DNS
    expect(find(config, TYPE_URL.cluster, "outbound|db|role=a").type).toBe(3); // EDS: only an IP in it
    expect(names(config[TYPE_URL.endpoint])).toEqual(["outbound|db|role=a"]);
  });

  it("groups endpoints into localities by zone, sorted", () => {
    const resources = [
      service("api"),
      resource("Workload", "c", { service: "api", address: "10.0.0.3", port: 80, zone: "b" }),
      resource("Workload", "a", { service: "api", address: "10.0.0.1", port: 80, zone: "a" }),
      resource("Workload", "n", { service: "api", address: "10.0.0.9", port: 80 }),
      resource("Workload", "b", { service: "api", address: "10.0.0.2", port: 80, zone: "a" }),
    ];
    const assignment = find(
      translateProxy(resources, proxy(), options()),
      TYPE_URL.endpoint,
      "outbound|api",
    ) as {
      endpoints: { locality?: { zone: string }; lb_endpoints: unknown[] }[];
    };
    expect(assignment.endpoints.map((e) => [e.locality?.zone, e.lb_endpoints.length])).toEqual([
      [undefined, 1],
      ["a", 2],
      ["b", 1],
    ]);
  });
});

describe("module delivery", () => {
  const code = (config: ProxyConfig, name: string) =>
    (
      find(config, TYPE_URL.extensionConfig, name) as {
        typed_config: { config: { vm_config: { code: unknown } } };
      }
    ).typed_config.config.vm_config.code;

  it("the module's bytes inline in the ECDS resource, and no HTTP cluster to fetch them from", () => {
    // Remote code over ECDS is unsafe in Envoy 1.37 (extensionResource; test/envoy/remote-modules).
    const inline = translateProxy(example(), proxy(), options());
    expect(code(inline, ROUTING_FILTER)).toEqual({ local: { inline_bytes: MESH_CODE.bytes } });
    expect(names(inline[TYPE_URL.cluster]).filter((n) => !n.startsWith("outbound|"))).toEqual([]);
  });
});

describe("WasmPlugins", () => {
  const plugin = (name: string, spec: Record<string, unknown>) =>
    resource("WasmPlugin", name, { module: "tagger", services: ["*"], configuration: {}, ...spec });

  it("run where their direction and services say, ordered by priority then name, before the routing filter", () => {
    const resources = [
      service("web"),
      plugin("zeta", { direction: "outbound" }),
      plugin("alpha", { direction: "outbound" }),
      plugin("first", { direction: "outbound", priority: 10 }),
      plugin("other", { direction: "outbound", services: ["api"] }),
      plugin("in-low", { priority: -1 }),
      plugin("in-web", { services: ["web"] }),
    ];
    const config = translateProxy(resources, proxy({ service: "web", appPort: 8080 }), options());
    expect(httpFilters(config, "outbound")).toEqual([
      "wasmesh.outbound.first",
      "wasmesh.outbound.alpha",
      "wasmesh.outbound.zeta",
      ROUTING_FILTER,
      "envoy.filters.http.router",
    ]);
    expect(httpFilters(config, "inbound")).toEqual([
      "wasmesh.inbound.in-web",
      "wasmesh.inbound.in-low",
      "envoy.filters.http.router",
    ]);
    expect(names(config[TYPE_URL.extensionConfig])).toEqual([
      "wasmesh.inbound.in-low",
      "wasmesh.inbound.in-web",
      "wasmesh.outbound.alpha",
      "wasmesh.outbound.first",
      ROUTING_FILTER,
      "wasmesh.outbound.zeta",
    ]);
    // Without an app there is no inbound listener and nothing of the inbound plugins is sent.
    const noApp = translateProxy(resources, proxy({ service: "web" }), options());
    expect(names(noApp[TYPE_URL.extensionConfig]).filter((n) => n.startsWith("wasmesh.inbound."))).toEqual(
      [],
    );
  });

  it("hand the module its configuration as JSON with sorted keys, through the shared per-module VM", () => {
    const resources = [
      plugin("tag", { rootId: "tagger", configuration: { z: 1, a: { y: [2, { d: 1, c: 0 }], b: 3 } } }),
    ];
    const config = translateProxy(resources, proxy({ appPort: 8080 }), options());
    expect(find(config, TYPE_URL.extensionConfig, "wasmesh.inbound.tag")).toMatchObject({
      typed_config: {
        config: {
          name: "wasmesh.inbound.tag",
          root_id: "tagger",
          vm_config: {
            vm_id: "tagger",
            runtime: "envoy.wasm.runtime.v8",
            code: { local: { inline_bytes: TAGGER_CODE.bytes } },
          },
          configuration: { value: '{"a":{"b":3,"y":[2,{"c":0,"d":1}]},"z":1}' },
          fail_open: false,
        },
      },
    });
  });

  it("refuses to translate a plugin whose module has no code", () => {
    const resources = [
      resource("WasmPlugin", "x", { module: "missing", services: ["*"], configuration: {} }),
    ];
    expect(() => translateProxy(resources, proxy({ appPort: 8080 }), options())).toThrow(/module 'missing'/);
  });
});

describe("validation the translation relies on", () => {
  const errors = (kind: string, name: string, spec: unknown) => {
    const result = validateResource({ apiVersion: API, kind, metadata: { name }, spec });
    return result.ok ? [] : result.errors;
  };

  it("accepts a WasmPlugin direction and refuses anything but inbound or outbound", () => {
    const base = { module: "tagger", services: ["*"], configuration: {} };
    expect(errors("WasmPlugin", "p", { ...base, direction: "outbound" })).toEqual([]);
    expect(errors("WasmPlugin", "p", { ...base, direction: "sideways" })).toEqual([
      { path: "spec.direction", message: 'Expected one of: "inbound", "outbound"' },
    ]);
  });

  it("keeps the built-in routing filter's name for itself", () => {
    const base = { module: "tagger", services: ["*"], configuration: {} };
    expect(errors("WasmPlugin", "routing", { ...base, direction: "outbound" })).toEqual([
      { path: "metadata.name", message: expect.stringContaining(ROUTING_FILTER) },
    ]);
    expect(errors("WasmPlugin", "routing", base)).toEqual([]);
  });

  it("checks a mesh-module plugin's configuration with the filter's schema, under spec.configuration", () => {
    expect(
      errors("WasmPlugin", "p", {
        module: "mesh",
        services: ["*"],
        configuration: { routes: [{ name: "r", destinations: [{ cluster: "has space" }] }] },
      }),
    ).toEqual([
      { path: "spec.configuration.routes[0].destinations[0].cluster", message: expect.any(String) },
    ]);
  });

  it("refuses names the filter could not take: rule names past 128 with the Route's, clusters past 200", () => {
    const rule = (name: string, subset?: Record<string, string>) => ({
      service: "reviews",
      rules: [{ name, destinations: [{ service: "reviews", ...(subset ? { subset } : {}) }] }],
    });
    expect(errors("Route", "reviews", rule("r".repeat(121)))).toEqual([
      { path: "spec.rules[0].name", message: expect.stringContaining("at most 128") },
    ]);
    expect(errors("Route", "reviews", rule("r".repeat(120)))).toEqual([]); // "reviews/" + 120 = 128
    const longSubset = { [`${"a".repeat(60)}.example/key`]: "v".repeat(63), version: "v".repeat(63) };
    expect(errors("Route", "reviews", rule("ok", longSubset))).toEqual([
      { path: "spec.rules[0].destinations[0].subset", message: expect.stringContaining("at most 200") },
    ]);
    expect(
      errors("CircuitBreaker", "cb", {
        service: "reviews",
        subset: longSubset,
        consecutiveErrors: 5,
        intervalMs: 1000,
        baseEjectionMs: 1000,
      }),
    ).toEqual([{ path: "spec.subset", message: expect.stringContaining("at most 200") }]);
  });
});

describe("node identity", () => {
  const node = (metadata: Record<string, unknown>, extra: Partial<EnvoyNode> = {}): EnvoyNode => ({
    id: "reviews-1",
    metadata,
    ...extra,
  });

  it("reads what nodeMetadata writes", () => {
    const identity = proxy({
      nodeId: "reviews-1",
      service: "reviews",
      labels: { version: "v2", "app.kubernetes.io/name": "reviews" },
      appPort: 9080,
      outboundPort: 16001,
      inboundAddress: "10.1.2.3",
    });
    const { nodeId: _, ...rest } = identity;
    const metadata = nodeMetadata(rest);
    expect(metadata[NODE_METADATA.outboundPort]).toBe("16001");
    expect(parseNodeIdentity({ id: "reviews-1", cluster: "reviews", metadata })).toEqual({
      ok: true,
      proxy: identity,
    });
  });

  it("defaults ports and addresses, takes numbers too, and falls back to node.cluster for the service", () => {
    expect(parseNodeIdentity({ id: "n", cluster: "productpage" })).toEqual({
      ok: true,
      proxy: proxy({ nodeId: "n" }),
    });
    const parsed = parseNodeIdentity(
      node({ [NODE_METADATA.service]: "reviews", [NODE_METADATA.appPort]: 8080 }),
    );
    expect(parsed.ok && parsed.proxy).toMatchObject({
      service: "reviews",
      appPort: 8080,
      inboundPort: 15006,
    });
  });

  it("names the missing or bad field", () => {
    const error = (n: EnvoyNode) => {
      const result = parseNodeIdentity(n);
      return result.ok ? "" : result.error;
    };
    expect(error({ cluster: "reviews" })).toContain("node.id: is required");
    expect(error(node({}))).toContain('node.metadata["wasmesh.service"]: is required (or node.cluster)');
    expect(error(node({ [NODE_METADATA.service]: "Not_A_Service" }))).toContain(
      'node.metadata["wasmesh.service"]',
    );
    expect(error(node({}, { cluster: "bad cluster" }))).toContain("node.cluster: must be a service name");
    expect(error(node({ [NODE_METADATA.service]: "reviews", [NODE_METADATA.appPort]: "80a" }))).toContain(
      'node.metadata["wasmesh.app_port"]: must be a port number from 1 to 65535 (got "80a")',
    );
    expect(
      error(node({ [NODE_METADATA.service]: "reviews", [NODE_METADATA.outboundPort]: 70000 })),
    ).toContain('node.metadata["wasmesh.outbound_port"]');
    expect(
      error(node({ [NODE_METADATA.service]: "reviews", [NODE_METADATA.appAddress]: "localhost" })),
    ).toContain('node.metadata["wasmesh.app_address"]: must be an IPv4 or IPv6 address');
    expect(
      error(node({ [NODE_METADATA.service]: "reviews", [NODE_METADATA.labels]: "version=v1" })),
    ).toContain('node.metadata["wasmesh.labels"]');
    // Every problem at once.
    const both = error(node({ [NODE_METADATA.inboundPort]: "0" }));
    expect(both).toContain("wasmesh.service");
    expect(both).toContain("wasmesh.inbound_port");
  });
});
