// Consul's config entries converted into wasmesh's resources (control-plane/imports/consul.ts,
// issue 13): manifests modelled on Consul's intentions and traffic-splitting tutorials, the exact
// native resources they become, their validity, a warning per field not carried and an error per
// field whose loss would change the meaning.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { labelsOfFilter, serviceOfConsulName } from "../../control-plane/imports/consul.ts";
import { type ConvertResult, convert, type ImportProblem } from "../../control-plane/imports/index.ts";
import { type Resource, validateResource } from "../../control-plane/resources/index.ts";

const DATA = join(import.meta.dirname, "testdata", "consul");

const yamlDocs = (text: string): unknown[] => parseAllDocuments(text).map((d) => d.toJS());
const fixture = (name: string) => readFileSync(join(DATA, name), "utf8");
const run = (text: string, namespace?: string) =>
  convert(yamlDocs(text), namespace !== undefined ? { namespace } : {});

/** Problems without the message, to compare where they are. */
const where = (problems: ImportProblem[]) =>
  problems.map(({ document, kind, name, path }) => ({ document, kind, name, path }));

function expectValid(result: ConvertResult): void {
  for (const r of result.resources) expect(validateResource(r)).toEqual({ ok: true, resource: r });
}

const V = "wasmesh.io/v1alpha1";
const CONSUL = "apiVersion: consul.hashicorp.com/v1alpha1";

const CANARY_SPLIT = [
  { service: "api", subset: { version: "v1" }, weight: 90 },
  { service: "api", subset: { version: "v2" }, weight: 10 },
];

describe("Consul's intentions tutorial", () => {
  it("deny-all, then allow web → api: AccessRules and MeshPolicy defaultAccess deny", () => {
    const result = run(fixture("intentions.yaml"));
    expect(result.errors).toEqual([]);
    expect(result.resources).toEqual([
      {
        apiVersion: V,
        kind: "AccessRule",
        metadata: { name: "api-web" },
        spec: { source: "web", destination: "api", action: "allow" },
      },
      {
        apiVersion: V,
        kind: "AccessRule",
        metadata: { name: "api-any" },
        spec: { source: "*", destination: "api", action: "deny" },
      },
      {
        apiVersion: V,
        kind: "AccessRule",
        metadata: { name: "db-api" },
        spec: { source: "api", destination: "db", action: "allow" },
      },
      {
        apiVersion: V,
        kind: "AccessRule",
        metadata: { name: "db-web" },
        spec: { source: "web", destination: "db", action: "deny" },
      },
      { apiVersion: V, kind: "MeshPolicy", metadata: { name: "default" }, spec: { defaultAccess: "deny" } },
    ]);
    // A specific source beats "*" in Consul as in wasmesh: no conflict is reported for api's "*" deny.
    expect(result.warnings).toEqual([
      {
        document: 2,
        kind: "ServiceIntentions",
        name: "db",
        path: "spec.sources[1].description",
        message: "not supported, ignored: AccessRules carry no description",
      },
    ]);
    expect(result.produced.map((p) => [p.source.kind, p.source.name, p.resources])).toEqual([
      ["ServiceIntentions", "deny-all", [{ kind: "MeshPolicy", name: "default" }]],
      [
        "ServiceIntentions",
        "api",
        [
          { kind: "AccessRule", name: "api-web" },
          { kind: "AccessRule", name: "api-any" },
        ],
      ],
      [
        "ServiceIntentions",
        "db",
        [
          { kind: "AccessRule", name: "db-api" },
          { kind: "AccessRule", name: "db-web" },
        ],
      ],
    ]);
    expectValid(result);
  });

  it("names services by the resource's namespace, or the namespace next to the name", () => {
    const result = run(
      `${CONSUL}
kind: ServiceIntentions
metadata: {name: api, namespace: shop}
spec:
  destination: {name: api}
  sources:
  - {name: web, action: allow}
  - {name: prometheus, namespace: monitoring, action: allow}
`,
    );
    expect(result.errors).toEqual([]);
    expect(result.resources.map((r) => [r.metadata.name, r.spec])).toEqual([
      [
        expect.stringMatching(/^api-shop-web-shop-[0-9a-f]{8}$/),
        { source: "web.shop", destination: "api.shop", action: "allow" },
      ],
      [
        expect.stringMatching(/^api-shop-prometheus-monitoring-[0-9a-f]{8}$/),
        { source: "prometheus.monitoring", destination: "api.shop", action: "allow" },
      ],
    ]);
    expectValid(result);
    // --namespace names the namespace of resources that name none.
    const option = run(
      `${CONSUL}
kind: ServiceIntentions
metadata: {name: api}
spec: {destination: {name: api}, sources: [{name: web, action: deny}]}
`,
      "shop",
    );
    expect(option.resources.map((r) => r.spec)).toEqual([
      { source: "web.shop", destination: "api.shop", action: "deny" },
    ]);
  });

  it("carries a permission list that decides every request alike; others are errors at permissions", () => {
    const result = run(
      `${CONSUL}
kind: ServiceIntentions
metadata: {name: api}
spec:
  destination: {name: api}
  sources:
  - name: web
    permissions:
    - action: allow
      http: {pathPrefix: /v1}
    - action: deny
`,
    );
    expect(result.resources).toEqual([]);
    expect(where(result.errors)).toEqual([
      { document: 0, kind: "ServiceIntentions", name: "api", path: "spec.sources[0].permissions" },
    ]);
    expect(result.errors[0]?.message).toContain("no AccessRule form");

    const trivial = run(
      `${CONSUL}
kind: ServiceIntentions
metadata: {name: api}
spec:
  destination: {name: api}
  sources:
  - name: web
    permissions:
    - action: deny
      http: {pathPrefix: /admin}
    - action: deny
`,
    );
    expect(trivial.errors).toEqual([]);
    expect(trivial.resources.map((r) => r.spec)).toEqual([
      { source: "web", destination: "api", action: "deny" },
    ]);
  });

  it("refuses what AccessRules cannot say", () => {
    const result = run(
      `${CONSUL}
kind: ServiceIntentions
metadata: {name: everything}
spec:
  destination: {name: "*"}
  sources:
  - {name: prometheus, action: allow}
---
${CONSUL}
kind: ServiceIntentions
metadata: {name: jwt}
spec:
  destination: {name: api}
  jwt: {providers: [{name: okta}]}
  sources: [{name: web, action: allow}]
---
${CONSUL}
kind: ServiceIntentions
metadata: {name: peered}
spec:
  destination: {name: api}
  sources:
  - {name: web, peer: other-cluster, action: allow}
  - {name: db, partition: team-b, action: allow}
  - {name: web, action: deny}
---
${CONSUL}
kind: ServiceIntentions
metadata: {name: actions}
spec:
  destination: {name: api}
  sources:
  - {name: web, action: permit}
  - {name: Web_UI, action: allow}
`,
    );
    expect(result.resources).toEqual([]);
    expect(where(result.errors)).toEqual([
      { document: 0, kind: "ServiceIntentions", name: "everything", path: "spec.sources[0].name" },
      { document: 1, kind: "ServiceIntentions", name: "jwt", path: "spec.jwt" },
      { document: 2, kind: "ServiceIntentions", name: "peered", path: "spec.sources[0].peer" },
      { document: 2, kind: "ServiceIntentions", name: "peered", path: "spec.sources[1].partition" },
      { document: 3, kind: "ServiceIntentions", name: "actions", path: "spec.sources[0].action" },
      { document: 3, kind: "ServiceIntentions", name: "actions", path: "spec.sources[1].name" },
    ]);
  });

  it("allow from * to * is wasmesh's default: nothing, with a warning", () => {
    const result = run(
      `${CONSUL}
kind: ServiceIntentions
metadata: {name: allow-all}
spec: {destination: {name: "*"}, sources: [{name: "*", action: allow}]}
`,
    );
    expect(result.errors).toEqual([]);
    expect(result.resources).toEqual([]);
    expect(where(result.warnings)).toEqual([
      { document: 0, kind: "ServiceIntentions", name: "allow-all", path: "spec.sources[0].action" },
    ]);
  });
});

describe("Consul's traffic splitting", () => {
  it("a resolver's subsets and a splitter's 90/10 become one Route", () => {
    const result = run(fixture("canary.yaml"));
    expect(result.errors).toEqual([]);
    expect(result.resources).toEqual([
      {
        apiVersion: V,
        kind: "Route",
        metadata: { name: "api" },
        spec: { service: "api", rules: [{ name: "split", destinations: CANARY_SPLIT }] },
      },
    ]);
    expect(result.warnings).toEqual([
      {
        document: 1,
        kind: "ServiceResolver",
        name: "api",
        path: "spec.connectTimeout",
        message: "not supported, ignored: Envoy's default connect timeout applies",
      },
    ]);
    expect(result.produced.map((p) => [p.source.kind, p.resources])).toEqual([
      ["ServiceDefaults", []],
      ["ServiceResolver", []],
      ["ServiceSplitter", [{ kind: "Route", name: "api" }]],
    ]);
    expectValid(result);
  });

  it("a router and the splitter of its service become one Route: the routes, then the split", () => {
    const result = run(`${fixture("canary.yaml")}\n---\n${fixture("router.yaml")}`);
    expect(result.errors).toEqual([]);
    expect(result.resources).toEqual([
      {
        apiVersion: V,
        kind: "Route",
        metadata: { name: "api" },
        spec: {
          service: "api",
          rules: [
            {
              name: "route-0",
              match: { path: { prefix: "/admin" } },
              destinations: [{ service: "admin" }],
              timeoutMs: 90_000,
              retries: { attempts: 3, on: "gateway-error,connect-failure" },
            },
            {
              name: "route-1",
              match: { headers: [{ name: "x-canary", exact: "1" }], methods: ["GET", "HEAD"] },
              destinations: [{ service: "api", subset: { version: "v2" } }],
              requestHeaders: { set: [{ name: "x-canary-route", value: "v2" }] },
              timeoutMs: 4000,
            },
            {
              // No subset named: Consul sends it through api's splitter.
              name: "route-2",
              match: { path: { exact: "/healthz" }, query: [{ name: "verbose", present: true }] },
              destinations: CANARY_SPLIT,
              timeoutMs: 30,
            },
            { name: "split", destinations: CANARY_SPLIT },
          ],
        },
      },
    ]);
    // The splitter's document produces nothing of its own: no second Route for api.
    expect(result.produced.map((p) => [p.source.kind, p.resources])).toEqual([
      ["ServiceDefaults", []],
      ["ServiceResolver", []],
      ["ServiceSplitter", []],
      ["ServiceRouter", [{ kind: "Route", name: "api" }]],
    ]);
    expectValid(result);
  });

  it("is deterministic, whatever the order of the documents", () => {
    const text = `${fixture("canary.yaml")}\n---\n${fixture("router.yaml")}\n---\n${fixture("intentions.yaml")}`;
    const once = run(text);
    expect(run(text)).toEqual(once);
    expect(JSON.stringify(run(text))).toBe(JSON.stringify(once));
    const reversed = convert(yamlDocs(text).reverse());
    const byName = (rs: Resource[]) =>
      [...rs].sort((a, b) => `${a.kind}/${a.metadata.name}`.localeCompare(`${b.kind}/${b.metadata.name}`));
    expect(byName(reversed.resources)).toEqual(byName(once.resources));
  });

  it("a resolver alone sends the service's traffic to its default subset", () => {
    const result = run(
      `${CONSUL}
kind: ServiceResolver
metadata: {name: api, namespace: shop}
spec:
  defaultSubset: v1
  requestTimeout: 5m
  subsets:
    v1: {filter: 'Service.Meta.version == v1 and Service.Meta.track == stable', onlyPassing: true}
`,
    );
    expect(result.errors).toEqual([]);
    expect(result.resources).toEqual([
      {
        apiVersion: V,
        kind: "Route",
        metadata: { name: "api-shop" },
        spec: {
          service: "api.shop",
          rules: [
            {
              name: "default",
              destinations: [{ service: "api.shop", subset: { version: "v1", track: "stable" } }],
              timeoutMs: 300_000,
            },
          ],
        },
      },
    ]);
    expect(where(result.warnings)).toEqual([
      { document: 0, kind: "ServiceResolver", name: "api", path: "spec.subsets.v1.onlyPassing" },
    ]);
    expectValid(result);
  });

  it("rounds fractional weights with a warning; weights must add up to 100", () => {
    const result = run(
      `${CONSUL}
kind: ServiceSplitter
metadata: {name: web}
spec:
  splits:
  - {weight: 33.33, service: web-a}
  - {weight: 33.33, service: web-b}
  - {weight: 33.34, service: web-c}
---
${CONSUL}
kind: ServiceSplitter
metadata: {name: api}
spec:
  splits:
  - {weight: 50, service: api-a}
  - {weight: 40, service: api-b}
`,
    );
    expect(result.resources.map((r) => r.spec)).toEqual([
      {
        service: "web",
        rules: [
          {
            name: "split",
            destinations: [
              { service: "web-a", weight: 33 },
              { service: "web-b", weight: 33 },
              { service: "web-c", weight: 34 },
            ],
          },
        ],
      },
    ]);
    expect(result.warnings).toEqual([
      {
        document: 0,
        kind: "ServiceSplitter",
        name: "web",
        path: "spec.splits",
        message: "weights 33.33/33.33/33.34 are rounded to whole percentages (33/33/34)",
      },
    ]);
    expect(where(result.errors)).toEqual([
      { document: 1, kind: "ServiceSplitter", name: "api", path: "spec.splits" },
    ]);
    expectValid(result);
  });

  it("header changes of a single split are the rule's; per split of several, an error", () => {
    const result = run(
      `${CONSUL}
kind: ServiceSplitter
metadata: {name: web}
spec:
  splits:
  - weight: 100
    service: web-v2
    requestHeaders: {add: {x-split: v2}, remove: [x-debug]}
    responseHeaders: {set: {x-served-by: web-v2}}
---
${CONSUL}
kind: ServiceSplitter
metadata: {name: api}
spec:
  splits:
  - {weight: 50, service: api-a, requestHeaders: {set: {x-v: a}}}
  - {weight: 50, service: api-b}
`,
    );
    expect(result.resources.map((r) => r.spec)).toEqual([
      {
        service: "web",
        rules: [
          {
            name: "split",
            destinations: [{ service: "web-v2" }],
            requestHeaders: { add: [{ name: "x-split", value: "v2" }], remove: ["x-debug"] },
            responseHeaders: { set: [{ name: "x-served-by", value: "web-v2" }] },
          },
        ],
      },
    ]);
    expect(where(result.errors)).toEqual([
      { document: 1, kind: "ServiceSplitter", name: "api", path: "spec.splits[0].requestHeaders" },
    ]);
    expectValid(result);
  });

  it("subsets must be defined, and their filters have a label form", () => {
    const result = run(
      `${CONSUL}
kind: ServiceResolver
metadata: {name: api}
spec:
  subsets:
    v1: {filter: Service.Meta.version == v1}
    canary: {filter: Service.Tags contains canary}
  redirect: {service: api-legacy}
  failover:
    "*": {datacenters: [dc2]}
---
${CONSUL}
kind: ServiceSplitter
metadata: {name: api}
spec:
  splits:
  - {weight: 50, serviceSubset: canary}
  - {weight: 50, serviceSubset: v3}
`,
    );
    expect(result.resources).toEqual([]);
    expect(where(result.errors)).toEqual([
      { document: 0, kind: "ServiceResolver", name: "api", path: "spec.redirect" },
      { document: 0, kind: "ServiceResolver", name: "api", path: "spec.subsets.canary.filter" },
      { document: 1, kind: "ServiceSplitter", name: "api", path: "spec.splits[0].serviceSubset" },
      { document: 1, kind: "ServiceSplitter", name: "api", path: "spec.splits[1].serviceSubset" },
    ]);
    expect(result.errors[3]?.message).toBe(
      "subset 'v3' of 'api' is defined by no ServiceResolver in the input",
    );
    expect(where(result.warnings)).toEqual([
      { document: 0, kind: "ServiceResolver", name: "api", path: "spec.failover" },
    ]);
  });

  it("reads subset filters as Consul writes them", () => {
    expect(labelsOfFilter("Service.Meta.version == v1")).toEqual({ ok: true, labels: { version: "v1" } });
    expect(labelsOfFilter('Service.Meta.version == "v2"')).toEqual({ ok: true, labels: { version: "v2" } });
    expect(labelsOfFilter("Service.Meta.version == `v3` and Service.Meta.zone == a")).toEqual({
      ok: true,
      labels: { version: "v3", zone: "a" },
    });
    for (const filter of [
      "Service.Tags contains v1",
      "Service.Meta.version != v1",
      "Service.ID == web-1",
      "",
    ]) {
      expect(labelsOfFilter(filter).ok).toBe(false);
    }
    expect(labelsOfFilter("Service.Meta.version == v1 and Service.Meta.version == v2").ok).toBe(false);
  });
});

describe("Consul's service routers", () => {
  it("refuses what a Route cannot do, naming the field", () => {
    const result = run(
      `${CONSUL}
kind: ServiceRouter
metadata: {name: api}
spec:
  routes:
  - match: {http: {pathPrefix: /v1}}
    destination: {service: api-v1, prefixRewrite: /}
  - match: {http: {pathPrefix: /v2}}
    destination: {service: api-v2, retryOnStatusCodes: [503], numRetries: 2}
  - match:
      http:
        header:
        - {name: x-debug, exact: "1", invert: true}
    destination: {service: debug}
  - match: {http: {pathPrefix: /slow}}
    destination: {service: slow, requestTimeout: 1h30m}
`,
    );
    expect(result.resources).toEqual([]);
    expect(where(result.errors).map((e) => e.path)).toEqual([
      "spec.routes[0].destination.prefixRewrite",
      "spec.routes[1].destination.retryOnStatusCodes",
      "spec.routes[2].match.http.header[0].invert",
      "spec.routes[3].destination.requestTimeout",
    ]);
    expect(result.errors[3]?.message).toBe("1h30m is longer than wasmesh's limit of 3600000ms");
  });

  it("carries case-insensitive paths, regexes, absent headers and durations in every form", () => {
    const result = run(
      `${CONSUL}
kind: ServiceRouter
metadata: {name: web}
spec:
  routes:
  - match: {http: {pathPrefix: /API, caseInsensitive: true}}
    destination: {service: api, requestTimeout: 0.5ms, retryOn: [5xx, reset]}
  - match:
      http:
        pathRegex: "/items/[0-9]+"
        header:
        - {name: x-beta, present: true, invert: true}
        - {name: user-agent, suffix: Mobile}
    destination: {service: items, requestTimeout: 2h, numRetries: 2}
  - match: {http: {queryParam: [{name: page, regex: "[0-9]+"}]}}
    destination: {service: pages, requestTimeout: 0s}
  - destination: {service: web-v2, idleTimeout: 30s}
`,
    );
    expect(result.resources.map((r) => r.spec)).toEqual([]);
    expect(where(result.errors).map((e) => e.path)).toEqual(["spec.routes[1].destination.requestTimeout"]);

    const fixed = run(
      `${CONSUL}
kind: ServiceRouter
metadata: {name: web}
spec:
  routes:
  - match: {http: {pathPrefix: /API, caseInsensitive: true}}
    destination: {service: api, requestTimeout: 0.5ms, retryOn: [5xx, reset]}
  - match:
      http:
        pathRegex: "/items/[0-9]+"
        header:
        - {name: x-beta, present: true, invert: true}
        - {name: user-agent, suffix: Mobile}
    destination: {service: items, requestTimeout: 1h, numRetries: 2}
  - match: {http: {queryParam: [{name: page, regex: "[0-9]+"}]}}
    destination: {service: pages, requestTimeout: 0s}
  - destination: {service: web-v2, idleTimeout: 30s}
`,
    );
    expect(fixed.errors).toEqual([]);
    expect(fixed.resources.map((r) => r.spec)).toEqual([
      {
        service: "web",
        rules: [
          {
            name: "route-0",
            match: { path: { prefix: "/API", ignoreCase: true } },
            destinations: [{ service: "api" }],
            timeoutMs: 1,
            retries: { attempts: 1, on: "5xx,reset" },
          },
          {
            name: "route-1",
            match: {
              path: { regex: "/items/[0-9]+" },
              headers: [
                { name: "x-beta", absent: true },
                { name: "user-agent", suffix: "Mobile" },
              ],
            },
            destinations: [{ service: "items" }],
            timeoutMs: 3_600_000,
          },
          {
            name: "route-2",
            match: { query: [{ name: "page", regex: "[0-9]+" }] },
            destinations: [{ service: "pages" }],
          },
          // A route without match catches the rest: no default rule after it.
          { name: "route-3", destinations: [{ service: "web-v2" }] },
        ],
      },
    ]);
    expect(fixed.warnings.map((w) => [w.path, w.message])).toEqual([
      ["spec.routes[3].destination.idleTimeout", "not supported, ignored: no stream idle timeout in wasmesh"],
      [
        "spec.routes[0].destination.requestTimeout",
        "0.5ms is rounded up to 1ms (wasmesh counts whole milliseconds)",
      ],
      [
        "spec.routes[1].destination.numRetries",
        "not carried: without retryOn or retryOnConnectFailure Consul gives Envoy no retry condition, so nothing is retried",
      ],
    ]);
    expectValid(fixed);
  });

  it("a route to another service goes through that service's splitter", () => {
    const result = run(
      `${CONSUL}
kind: ServiceRouter
metadata: {name: web}
spec:
  routes:
  - match: {http: {pathPrefix: /api}}
    destination: {service: api}
---
${fixture("canary.yaml")}`,
    );
    expect(result.errors).toEqual([]);
    expect(result.resources.map((r) => [r.metadata.name, r.spec])).toEqual([
      [
        "web",
        {
          service: "web",
          rules: [{ name: "route-0", match: { path: { prefix: "/api" } }, destinations: CANARY_SPLIT }],
        },
      ],
      ["api", { service: "api", rules: [{ name: "split", destinations: CANARY_SPLIT }] }],
    ]);
    expectValid(result);
  });

  it("what no route matches goes to the resolver's default subset; the resolver makes no Route of its own", () => {
    const result = run(
      `${CONSUL}
kind: ServiceResolver
metadata: {name: api}
spec:
  defaultSubset: v1
  requestTimeout: 10s
  subsets:
    v1: {filter: Service.Meta.version == v1}
    v2: {filter: Service.Meta.version == v2}
---
${CONSUL}
kind: ServiceRouter
metadata: {name: api}
spec:
  routes:
  - match: {http: {pathPrefix: /v2}}
    destination: {serviceSubset: v2}
  - match: {http: {pathPrefix: /reports}}
    destination: {service: reports, namespace: analytics}
`,
      "shop",
    );
    expect(result.errors).toEqual([]);
    expect(result.resources).toEqual([
      {
        apiVersion: V,
        kind: "Route",
        metadata: { name: "api-shop" },
        spec: {
          service: "api.shop",
          rules: [
            {
              name: "route-0",
              match: { path: { prefix: "/v2" } },
              destinations: [{ service: "api.shop", subset: { version: "v2" } }],
            },
            {
              name: "route-1",
              match: { path: { prefix: "/reports" } },
              destinations: [{ service: "reports.analytics" }],
            },
            { name: "default", destinations: [{ service: "api.shop", subset: { version: "v1" } }] },
          ],
        },
      },
    ]);
    expect(result.warnings).toEqual([
      {
        document: 0,
        kind: "ServiceResolver",
        name: "api",
        path: "spec.requestTimeout",
        message: "not carried: the service's ServiceRouter makes its Route (set the router's requestTimeout)",
      },
    ]);
    expect(result.produced.map((p) => [p.source.kind, p.resources])).toEqual([
      ["ServiceResolver", []],
      ["ServiceRouter", [{ kind: "Route", name: "api-shop" }]],
    ]);
    expectValid(result);
  });

  it("an error in the splitter a route goes through is the route's error too", () => {
    const result = run(
      `${CONSUL}
kind: ServiceRouter
metadata: {name: api}
spec:
  routes:
  - match: {http: {pathPrefix: /x}}
    destination: {service: api-x}
---
${CONSUL}
kind: ServiceSplitter
metadata: {name: api}
spec:
  splits: [{weight: 100, serviceSubset: nowhere}]
`,
    );
    expect(result.resources).toEqual([]);
    expect(where(result.errors)).toEqual([
      { document: 0, kind: "ServiceRouter", name: "api", path: "spec.routes" },
      { document: 1, kind: "ServiceSplitter", name: "api", path: "spec.splits[0].serviceSubset" },
    ]);
  });

  it("a second router of one service is an error: one Route per service", () => {
    const router = (name: string) => `${CONSUL}
kind: ServiceRouter
metadata: {name: ${name}}
spec:
  routes: [{match: {http: {pathPrefix: /a}}, destination: {service: a}}]
`;
    const result = run(`${router("api")}---\n${router("api")}`, "shop");
    expect(result.resources.map((r) => r.metadata.name)).toEqual(["api-shop"]);
    expect(where(result.errors)).toEqual([
      { document: 1, kind: "ServiceRouter", name: "api", path: "(root)" },
    ]);
  });
});

describe("Consul's defaults and other kinds", () => {
  it("ServiceDefaults produces nothing; protocols other than http are warnings, unknown ones errors", () => {
    const defaults = (name: string, spec: string) => `${CONSUL}
kind: ServiceDefaults
metadata: {name: ${name}}
spec: ${spec}
`;
    const result = run(
      [
        defaults("web", "{protocol: http}"),
        defaults("db", "{protocol: tcp, mutualTLSMode: permissive}"),
        defaults("grpc-api", "{protocol: grpc}"),
        defaults("odd", "{protocol: udp}"),
      ].join("---\n"),
    );
    expect(result.resources).toEqual([]);
    expect(where(result.warnings).map((w) => [w.name, w.path])).toEqual([
      ["db", "spec.mutualTLSMode"],
      ["db", "spec.protocol"],
      ["grpc-api", "spec.protocol"],
    ]);
    expect(result.warnings[1]?.message).toContain("appProtocol tcp");
    expect(where(result.errors).map((e) => [e.name, e.path])).toEqual([["odd", "spec.protocol"]]);
  });

  it("ProxyDefaults' mutualTLSMode is MeshPolicy's mTLS mode", () => {
    const result = run(
      `${CONSUL}
kind: ProxyDefaults
metadata: {name: global}
spec:
  mutualTLSMode: strict
  config: {protocol: http, envoy_prometheus_bind_addr: "0.0.0.0:9102"}
---
${CONSUL}
kind: ServiceIntentions
metadata: {name: deny-all}
spec: {destination: {name: "*"}, sources: [{name: "*", action: deny}]}
`,
    );
    expect(result.errors).toEqual([]);
    expect(result.resources).toEqual([
      {
        apiVersion: V,
        kind: "MeshPolicy",
        metadata: { name: "default" },
        spec: { defaultAccess: "deny", mtls: { mode: "strict" } },
      },
    ]);
    expect(where(result.warnings).map((w) => w.path)).toEqual(["spec.config.envoy_prometheus_bind_addr"]);
    expectValid(result);

    const named = run(
      `${CONSUL}\nkind: ProxyDefaults\nmetadata: {name: mine}\nspec: {mutualTLSMode: strict}\n`,
    );
    expect(where(named.errors).map((e) => e.path)).toEqual(["metadata.name"]);
  });

  it("other kinds and versions of consul.hashicorp.com are errors at kind and apiVersion", () => {
    const result = run(
      `${CONSUL}
kind: Mesh
metadata: {name: mesh}
spec: {transparentProxy: {meshDestinationsOnly: true}}
---
${CONSUL}
kind: IngressGateway
metadata: {name: ingress-gateway}
spec: {listeners: []}
---
apiVersion: consul.hashicorp.com/v2beta1
kind: ServiceRouter
metadata: {name: api}
`,
    );
    expect(where(result.errors)).toEqual([
      { document: 0, kind: "Mesh", name: "mesh", path: "kind" },
      { document: 1, kind: "IngressGateway", name: "ingress-gateway", path: "kind" },
      { document: 2, kind: "ServiceRouter", name: "api", path: "apiVersion" },
    ]);
    expect(result.errors[0]?.message).toContain("kind 'Mesh' is not supported");
  });

  it("addresses Consul names as wasmesh services", () => {
    expect(serviceOfConsulName("api", undefined, undefined)).toEqual({ ok: true, service: "api" });
    expect(serviceOfConsulName("api", undefined, "prod")).toEqual({ ok: true, service: "api.prod" });
    expect(serviceOfConsulName("api", "payments", "prod")).toEqual({ ok: true, service: "api.payments" });
    expect(serviceOfConsulName("api", "default", undefined)).toEqual({ ok: true, service: "api" });
    expect(serviceOfConsulName("api", "default", "prod")).toEqual({ ok: true, service: "api.default" });
    expect(serviceOfConsulName("API", undefined, undefined).ok).toBe(false);
    expect(serviceOfConsulName("api", "*", undefined).ok).toBe(false);
    expect(serviceOfConsulName("*", undefined, undefined).ok).toBe(false);
  });
});
