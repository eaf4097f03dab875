// Translation of the mesh's resources into one proxy's xDS resources: what each case of
// testdata/translate gives, against its golden file (clusters, endpoints, listeners, routes and ECDS
// as Envoy receives them); proto-valid output, a pure and order-independent function; and the
// generated routing configuration run through the real build/mesh.wasm (split, access denial,
// routing-header spoofing).
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import {
  decodeMessage,
  type EnvoyNode,
  EXTENSION_TYPE,
  encodeMessage,
  LOCAL_MODULE_FILE,
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
  createMemoryBlobStore,
  createModuleRegistry,
  loadBuiltinModule,
} from "../../control-plane/modules/index.ts";
import {
  CLUSTER_HEADER,
  formatManifestError,
  INBOUND_ACCESS_FILTER,
  outboundCluster,
  parseManifests,
  parseYaml,
  type Resource,
  ROUTING_FILTER,
  RULE_HEADER,
  validateResource,
} from "../../control-plane/resources/index.ts";
import { createMemoryStore } from "../../control-plane/store/index.ts";
import { EDGE_SOURCE } from "../../control-plane/translate/edge.ts";
import {
  accessDecision,
  compileMesh,
  proxyClassKey,
  routingFilterConfig,
  type TranslateOptions,
  translateProxy,
} from "../../control-plane/translate/index.ts";
import { indexMesh } from "../../control-plane/translate/mesh.ts";
import type { FilterConfig } from "../../schema/filter-config.ts";
import { RELEASE_WASM } from "../support/artifacts.ts";
import { REPO_ROOT } from "../support/envoy.ts";
import { expectGolden, proxyConfigYaml } from "../support/golden.ts";
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
    moduleDelivery: "inline",
    ...overrides,
  };
}

const MESH_CODE: ModuleCode = {
  sha256: "a".repeat(64),
  bytes: new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0]),
  // As the registry's codes(): the code differs from the version pushed (its memory maximum capped).
  codeSha256: "c".repeat(64),
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

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");
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

// ---------------------------------------------------------------------------------------------
// Golden files: testdata/translate/<case>.input.yaml (the proxy's identity over proxy()'s, manifest
// files to include, from the repository's root, and resources) is translated, with the modules of
// options(), and compared with <case>.golden.yaml, the resources as Envoy receives them
// (proxyConfigYaml). `npm run test:golden` rewrites the golden files: review the diff.

const TESTDATA = fileURLToPath(new URL("./testdata/translate/", import.meta.url));
const INPUT = ".input.yaml";
const GOLDEN = ".golden.yaml";
const CASES = readdirSync(TESTDATA)
  .filter((f) => f.endsWith(INPUT))
  .map((f) => f.slice(0, -INPUT.length))
  .sort();

interface GoldenCase {
  proxy: ProxyIdentity;
  resources: Resource[];
}

/** Reads a case, naming the file and the field of anything it cannot use. */
function readCase(name: string): GoldenCase {
  const file = `${name}${INPUT}`;
  const fail = (problem: string): never => {
    throw new Error(`testdata/translate/${file}: ${problem}`);
  };
  const parsed = parseYaml(readFileSync(join(TESTDATA, file), "utf8"));
  if (!parsed.ok) return fail(parsed.errors.map(formatManifestError).join("; "));
  const input = (parsed.values[0] ?? {}) as Record<string, unknown>;
  for (const key of Object.keys(input))
    if (!["proxy", "include", "resources"].includes(key)) fail(`${key}: not proxy, include or resources`);
  const resources: Resource[] = [];
  for (const path of (input.include ?? []) as string[]) {
    const manifests = parseManifests(readFileSync(join(REPO_ROOT, path), "utf8"));
    if (!manifests.ok)
      return fail(`include ${path}: ${manifests.errors.map(formatManifestError).join("; ")}`);
    resources.push(...manifests.resources);
  }
  ((input.resources ?? []) as unknown[]).forEach((raw, i) => {
    const result = validateResource(raw);
    if (!result.ok)
      fail(`resources[${i}]: ${result.errors.map((e) => `${e.path}: ${e.message}`).join("; ")}`);
    else resources.push(result.resource);
  });
  return { proxy: proxy((input.proxy ?? {}) as Partial<ProxyIdentity>), resources };
}

describe("golden files (testdata/translate)", () => {
  it("has an input for every golden file", () => {
    const goldens = readdirSync(TESTDATA).filter((f) => f.endsWith(GOLDEN));
    expect(goldens.map((f) => f.slice(0, -GOLDEN.length)).filter((c) => !CASES.includes(c))).toEqual([]);
  });

  it.each(CASES)("%s", (name) => {
    const { proxy: identity, resources } = readCase(name);
    const config = translateProxy(resources, identity, options());
    expectProtoValid(config);
    const header = [
      ` ${name}${INPUT} translated for its ${identity.service} sidecar, as Envoy receives it`,
      " (test/support/golden.ts). Written by `npm run test:golden`: review the diff.",
    ].join("\n");
    expectGolden(join(TESTDATA, `${name}${GOLDEN}`), proxyConfigYaml(config, header));
  });
});

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
      proxy({ moduleDelivery: "local" }),
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

  it("opens the breaker with the generated thresholds and falls back to v1", async () => {
    const mesh = await MeshUnderTest.start(productpage);
    const tester = { authority: "reviews", path: "/", headers: { "x-user": "tester" } };
    for (let i = 0; i < 5; i++) mesh.request(tester, () => 503);
    expect(mesh.request(tester).cluster).toBe("outbound|reviews|version=v1");
  });
});

describe("services discovered on Kubernetes (<name>.<namespace>) in the real filter", () => {
  const workload = (name: string, service: string, version: string, address: string) =>
    resource("Workload", name, { service, address, port: 9080, labels: { version } });
  const discovered = (...extra: Resource[]) => [
    resource("Service", "reviews.bookinfo", { ports: [{ name: "http", port: 9080, protocol: "http" }] }),
    resource("Service", "productpage.bookinfo", { ports: [{ name: "http", port: 9080, protocol: "http" }] }),
    resource("Service", "client.other", { ports: [{ name: "http", port: 8080, protocol: "http" }] }),
    workload("reviews-v1-a.bookinfo", "reviews.bookinfo", "v1", "10.0.0.1"),
    workload("reviews-v2-a.bookinfo", "reviews.bookinfo", "v2", "10.0.0.2"),
    ...extra,
  ];
  const filterFor = (resources: Resource[], source: string) =>
    MeshUnderTest.start(routingFilterConfig(indexMesh(resources), source));

  it("answers to <name>.<namespace>, .svc and .svc.cluster.local, with or without the port, in any case", async () => {
    for (const source of ["productpage.bookinfo", "client.other", "web"]) {
      const mesh = await filterFor(discovered(), source);
      for (const authority of [
        "reviews.bookinfo",
        "reviews.bookinfo:9080",
        "reviews.bookinfo.svc",
        "reviews.bookinfo.svc:9080",
        "reviews.bookinfo.svc.cluster.local",
        "Reviews.Bookinfo.SVC.cluster.local:9080",
      ]) {
        expect(mesh.request({ authority, path: "/" }).cluster, `${source} → ${authority}`).toBe(
          "outbound|reviews.bookinfo",
        );
      }
      // The dots are literal, and nothing but these forms and the service's port match.
      for (const authority of [
        "reviewsxbookinfo",
        "reviews.bookinfoxsvc",
        "reviews.bookinfo.svcxcluster.local",
        "reviews.bookinfo.svc.clusterxlocal",
        "reviews.bookinfo.svc.cluster",
        "reviews.bookinfo.svc.cluster.local.evil",
        "reviews.bookinfo:9081",
        "reviews.other",
        "bookinfo",
      ]) {
        expect(mesh.request({ authority, path: "/" }).cluster, `${source} → ${authority}`).toBeNull();
      }
    }
  });

  it("answers to the short name from callers in its own namespace only", async () => {
    const local = await filterFor(discovered(), "productpage.bookinfo");
    expect(local.request({ authority: "reviews", path: "/" }).cluster).toBe("outbound|reviews.bookinfo");
    expect(local.request({ authority: "REVIEWS:9080", path: "/" }).cluster).toBe("outbound|reviews.bookinfo");
    expect(local.request({ authority: "client", path: "/" }).cluster).toBeNull(); // client.other's
    const other = await filterFor(discovered(), "client.other");
    expect(other.request({ authority: "reviews", path: "/" }).cluster).toBeNull();
    expect(other.request({ authority: "client:8080", path: "/" }).cluster).toBe("outbound|client.other");
    const declared = await filterFor(discovered(), "web"); // a declared service has no namespace
    expect(declared.request({ authority: "reviews", path: "/" }).cluster).toBeNull();
    const edge = await filterFor(discovered(), EDGE_SOURCE);
    expect(edge.request({ authority: "reviews", path: "/" }).cluster).toBeNull();
  });

  it("resolves a short name that a declared service holds too to the caller's namespace's, as DNS does", async () => {
    const resources = discovered(service("reviews"));
    const local = await filterFor(resources, "productpage.bookinfo");
    expect(local.request({ authority: "reviews", path: "/" }).cluster).toBe("outbound|reviews.bookinfo");
    const other = await filterFor(resources, "client.other");
    expect(other.request({ authority: "reviews", path: "/" }).cluster).toBe("outbound|reviews");
  });

  it("splits the seeds' canary 90/10 by version labels when called by the short name", async () => {
    const route = resource("Route", "reviews", {
      service: "reviews.bookinfo",
      rules: [
        {
          name: "canary",
          destinations: [
            { service: "reviews.bookinfo", subset: { version: "v1" }, weight: 90 },
            { service: "reviews.bookinfo", subset: { version: "v2" }, weight: 10 },
          ],
        },
      ],
    });
    const mesh = await filterFor(discovered(route), "productpage.bookinfo");
    const counts = new Map<string | null, number>();
    for (let i = 0; i < 1000; i++) {
      const { cluster } = mesh.request({
        authority: i % 2 === 0 ? "reviews" : "reviews.bookinfo:9080",
        path: "/",
      });
      counts.set(cluster, (counts.get(cluster) ?? 0) + 1);
    }
    expect(Object.fromEntries(counts)).toEqual({
      "outbound|reviews.bookinfo|version=v1": 900,
      "outbound|reviews.bookinfo|version=v2": 100,
    });
  });

  it("denies by the short name too, so that it is no way around an access rule", async () => {
    const resources = discovered(
      resource("MeshPolicy", "default", { defaultAccess: "deny" }),
      resource("AccessRule", "productpage-reviews", {
        source: "productpage.bookinfo",
        destination: "reviews.bookinfo",
        action: "allow",
      }),
      resource("Service", "ratings.bookinfo", { ports: [{ name: "http", port: 9080, protocol: "http" }] }),
    );
    const ratings = await filterFor(resources, "ratings.bookinfo");
    for (const authority of ["reviews", "reviews:9080", "reviews.bookinfo.svc.cluster.local"]) {
      const denied = ratings.request({ authority, path: "/" });
      expect(denied.status, authority).toBe(403);
      expect(denied.responseHeaders.get("x-wasmesh-denied")).toBe("default-deny:reviews.bookinfo");
    }
    const productpage = await filterFor(resources, "productpage.bookinfo");
    expect(productpage.request({ authority: "reviews", path: "/" }).status).toBe(200);
  });

  it("gives sidecars of one namespace one routing filter, and another namespace's another", () => {
    const compiled = compileMesh(discovered(), options());
    const routing = (service: string) =>
      find(compiled.translate(proxy({ service })), TYPE_URL.extensionConfig, ROUTING_FILTER);
    expect(routing("productpage.bookinfo")).toBe(routing("reviews.bookinfo"));
    expect(routing("client.other")).not.toEqual(routing("productpage.bookinfo"));
    expect(proxyClassKey(proxy({ service: "productpage.bookinfo" }))).not.toBe(
      proxyClassKey(proxy({ service: "productpage.other" })),
    );
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

describe("WasmPlugins", () => {
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

describe("module delivery", () => {
  /** The example mesh compiled with the code the module registry hands out for build/mesh.wasm. */
  async function exampleWithRealCode() {
    const store = createMemoryStore();
    const registry = createModuleRegistry({
      store,
      blobs: createMemoryBlobStore(),
      builtin: await loadBuiltinModule(RELEASE_WASM),
    });
    const codes = await registry.codes([]);
    await store.close();
    return { compiled: compileMesh(example(), { modules: codes }), code: codes.get("mesh") };
  }
  const wasmOf = (config: ProxyConfig, name: string) => {
    const typed = find(config, TYPE_URL.extensionConfig, name).typed_config;
    if (typed?.["@type"] !== EXTENSION_TYPE.wasmFilter) throw new Error(`${name}: not a Wasm filter`);
    return typed.config ?? {};
  };

  it("names a local proxy's module code by the digest of the bytes an inline proxy gets, in a small resource", async () => {
    const { compiled, code } = await exampleWithRealCode();
    const inline = compiled.translate(proxy());
    const local = compiled.translate(proxy({ moduleDelivery: "local" }));
    const inlineBytes = wasmOf(inline, ROUTING_FILTER).vm_config?.code?.local?.inline_bytes;
    const filename = wasmOf(local, ROUTING_FILTER).vm_config?.code?.local?.filename ?? "";
    if (!(inlineBytes instanceof Uint8Array)) throw new Error("the inline routing filter has no bytes");
    // The code translation inlines is the registry's, memory capped: not the file as built.
    expect(inlineBytes).toEqual(code?.bytes);
    expect(sha256(inlineBytes)).not.toBe(sha256(readFileSync(RELEASE_WASM)));
    expect(filename).toBe(`modules/mesh/${sha256(inlineBytes)}.wasm`);
    expect(filename).toMatch(LOCAL_MODULE_FILE);
    // Everything but the code is the same resource.
    const { code: _inlineCode, ...inlineVm } = wasmOf(inline, ROUTING_FILTER).vm_config ?? {};
    const { code: _localCode, ...localVm } = wasmOf(local, ROUTING_FILTER).vm_config ?? {};
    expect(localVm).toEqual(inlineVm);
    expect(wasmOf(local, ROUTING_FILTER).configuration).toEqual(wasmOf(inline, ROUTING_FILTER).configuration);
    // What a push of the routing filter costs per proxy: the module with inline delivery, a few
    // KiB of configuration with local delivery (issue 10: under 8 KiB for a route change).
    const encoded = (config: ProxyConfig) =>
      encodeMessage(TYPE_URL.extensionConfig, find(config, TYPE_URL.extensionConfig, ROUTING_FILTER)).length;
    expect(encoded(inline)).toBeGreaterThan(inlineBytes.length);
    expect(encoded(local)).toBeLessThan(8 * 1024);
  });

  it("keeps inline and local proxies in classes of their own, each sharing its ECDS resources", async () => {
    const { compiled } = await exampleWithRealCode();
    const routing = (config: ProxyConfig) => find(config, TYPE_URL.extensionConfig, ROUTING_FILTER);
    const local = (nodeId: string) => proxy({ nodeId, moduleDelivery: "local" });
    expect(routing(compiled.translate(local("a")))).toBe(routing(compiled.translate(local("b"))));
    expect(routing(compiled.translate(proxy({ nodeId: "c" })))).toBe(
      routing(compiled.translate(proxy({ nodeId: "d" }))),
    );
    expect(proxyClassKey(local("a"))).toBe(proxyClassKey(local("b")));
    expect(proxyClassKey(local("a"))).not.toBe(proxyClassKey(proxy()));
  });

  it("keeps sidecars with SDS in classes of their own, sharing their clusters and TLS contexts", () => {
    const compiled = compileMesh(example(), options());
    const agent = (nodeId: string) =>
      proxy({ nodeId, service: "reviews", appPort: 9080, moduleDelivery: "local", sds: "agent" });
    const plain = compiled.translate(proxy({ service: "reviews", appPort: 9080, moduleDelivery: "local" }));
    const [a, b] = [compiled.translate(agent("a")), compiled.translate(agent("b"))];
    expect(proxyClassKey(agent("a"))).toBe(proxyClassKey(agent("b")));
    expect(proxyClassKey(agent("a"))).not.toBe(
      proxyClassKey(proxy({ service: "reviews", appPort: 9080, moduleDelivery: "local" })),
    );
    const cluster = (config: ProxyConfig) => find(config, TYPE_URL.cluster, "outbound|productpage");
    expect(cluster(a)).toBe(cluster(b));
    expect(cluster(a).transport_socket_matches).toHaveLength(1);
    expect(cluster(plain).transport_socket_matches).toBeUndefined();
    // The endpoints are every class's: the metadata only selects a transport socket where there is one.
    expect(a[TYPE_URL.endpoint]).toEqual(plain[TYPE_URL.endpoint]);
    const inbound = (config: ProxyConfig) => find(config, TYPE_URL.listener, "inbound");
    expect(inbound(a).filter_chains?.[0]?.transport_socket).toBe(
      inbound(b).filter_chains?.[0]?.transport_socket,
    );
    expect(inbound(plain).filter_chains?.map((c) => c.transport_socket)).toEqual([undefined]);
  });

  it("refuses at the destination exactly the callers the source's routing filter refuses, by the same rule", () => {
    const id = (service: string) => `spiffe://wasmesh.local/ns/default/sa/${service}`;
    /** What Envoy's RBAC (DENY action) does with a peer: the first matching policy, in name order. */
    type RbacPrincipal = {
      any?: boolean;
      authenticated?: { principal_name?: { exact?: string } };
      not_id?: RbacPrincipal;
      or_ids?: { ids: RbacPrincipal[] };
    };
    const matches = (p: RbacPrincipal, peer: string | undefined): boolean =>
      p.any === true ||
      (p.authenticated !== undefined && peer === p.authenticated.principal_name?.exact) ||
      (p.not_id !== undefined && !matches(p.not_id, peer)) ||
      (p.or_ids?.ids.some((q) => matches(q, peer)) ?? false);
    const denial = (config: ProxyConfig, peer: string | undefined) => {
      const rbac = find(config, TYPE_URL.extensionConfig, INBOUND_ACCESS_FILTER).typed_config as {
        rules?: { policies: Record<string, { principals: RbacPrincipal[] }> };
      };
      const names = Object.keys(rbac.rules?.policies ?? {}).sort();
      return names.find((name) => rbac.rules?.policies[name]?.principals.some((p) => matches(p, peer)));
    };
    const rule = (name: string, source: string, destination: string, action: "allow" | "deny") =>
      resource("AccessRule", name, { source, destination, action });
    const services = ["a", "b", "c", "d"].map((n) => service(n));
    const meshes: Resource[][] = [
      services,
      [...services, rule("no-b", "b", "a", "deny")],
      [
        ...services,
        rule("none", "*", "a", "deny"),
        rule("c-ok", "c", "a", "allow"),
        rule("zz-d-no", "d", "a", "deny"),
      ],
      [
        ...services,
        resource("MeshPolicy", "default", { defaultAccess: "deny" }),
        rule("b-ok", "b", "a", "allow"),
        rule("zz-c-no", "c", "a", "deny"),
      ],
      [...services, resource("MeshPolicy", "default", { defaultAccess: "deny" })],
    ];
    for (const resources of meshes) {
      const config = translateProxy(
        resources,
        proxy({ service: "a", appPort: 8080, sds: "agent" }),
        options(),
      );
      const mesh = indexMesh(resources);
      for (const source of ["a", "b", "c", "d"]) {
        const decision = accessDecision(mesh, source, "a");
        expect(denial(config, id(source)), `${source} -> a`).toBe(decision.allow ? undefined : decision.rule);
      }
      // A peer of no service (or of a service this mesh does not know): what no rule names gets.
      const fallback = accessDecision(mesh, "*", "a");
      expect(denial(config, id("unknown"))).toBe(fallback.allow ? undefined : fallback.rule);
    }
  });

  it("names the destination's SPIFFE ID in the trust domain it is given", () => {
    const config = translateProxy(example(), proxy({ moduleDelivery: "local", sds: "agent" }), {
      ...options(),
      trustDomain: "prod.example",
    });
    const tls = find(config, TYPE_URL.cluster, "outbound|productpage").transport_socket_matches?.[0]
      ?.transport_socket?.typed_config as { common_tls_context: { combined_validation_context: unknown } };
    expect(JSON.stringify(tls.common_tls_context.combined_validation_context)).toContain(
      '"exact":"spiffe://prod.example/ns/default/sa/productpage"',
    );
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
    // Inline delivery is the default: not written, so a bootstrap reads as before it existed.
    expect(metadata).not.toHaveProperty([NODE_METADATA.moduleDelivery]);
    expect(parseNodeIdentity({ id: "reviews-1", cluster: "reviews", metadata })).toEqual({
      ok: true,
      proxy: identity,
    });
    const local = { ...identity, moduleDelivery: "local" as const };
    const localMetadata = nodeMetadata(local);
    expect(localMetadata[NODE_METADATA.moduleDelivery]).toBe("local");
    expect(parseNodeIdentity({ id: "reviews-1", cluster: "reviews", metadata: localMetadata })).toEqual({
      ok: true,
      proxy: local,
    });
    // SDS from the agent: written only when there is one.
    expect(metadata).not.toHaveProperty([NODE_METADATA.sds]);
    const agent = { ...local, sds: "agent" as const };
    const agentMetadata = nodeMetadata(agent);
    expect(agentMetadata[NODE_METADATA.sds]).toBe("agent");
    expect(parseNodeIdentity({ id: "reviews-1", cluster: "reviews", metadata: agentMetadata })).toEqual({
      ok: true,
      proxy: agent,
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
    // A service discovered on Kubernetes is <name>.<namespace>: one dot, no more.
    const dotted = parseNodeIdentity(node({ [NODE_METADATA.service]: "reviews.bookinfo" }));
    expect(dotted.ok && dotted.proxy.service).toBe("reviews.bookinfo");
    expect(error(node({ [NODE_METADATA.service]: "reviews.bookinfo.svc" }))).toContain(
      'node.metadata["wasmesh.service"]: must be a service name',
    );
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
    expect(
      error(node({ [NODE_METADATA.service]: "reviews", [NODE_METADATA.moduleDelivery]: "remote" })),
    ).toContain('node.metadata["wasmesh.module_delivery"]: must be "inline" or "local" (got "remote")');
    expect(
      error(node({ [NODE_METADATA.service]: "reviews", [NODE_METADATA.sds]: "control-plane" })),
    ).toContain('node.metadata["wasmesh.sds"]: must be "agent" when present (got "control-plane")');
    // Every problem at once.
    const both = error(node({ [NODE_METADATA.inboundPort]: "0" }));
    expect(both).toContain("wasmesh.service");
    expect(both).toContain("wasmesh.inbound_port");
  });
});
