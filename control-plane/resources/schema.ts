// The native resource model (`apiVersion: wasmesh.io/v1alpha1`), defined once: TypeScript types come
// from these TypeBox definitions through Static<>, and each definition is itself the JSON Schema the
// API publishes. Where a resource says the same thing as the filters' plugin configuration (string
// matchers, header changes, faults, retries, stickiness, breaker thresholds), the piece is taken from
// schema/filter-config.ts so that one definition holds for both.
//
// What JSON Schema cannot say (weights add up to 100, one condition per matcher, unique names,
// references between resources) is checked in validate.ts.
import { type Static, type TSchema, Type } from "@sinclair/typebox";
import {
  Breaker as FilterBreaker,
  Destination as FilterDestination,
  Route as FilterRoute,
  HeaderRule,
} from "../../schema/filter-config.ts";
import { Sampling, TraceTag } from "../../schema/telemetry.ts";

export const API_VERSION = "wasmesh.io/v1alpha1";

/** The built-in module (build/mesh.wasm): a WasmPlugin of it is configured with a FilterConfig. */
export const MESH_MODULE = "mesh";

const strict = { additionalProperties: false } as const;

// DNS-1123 label, as Kubernetes names Services: it becomes part of cluster and metric names.
const DNS_LABEL = "[a-z0-9](?:[-a-z0-9]*[a-z0-9])?";
// Kubernetes label syntax, so labels and selectors from Istio, Kuma (`kuma.io/service`) and
// Kubernetes itself carry over unchanged: an optional DNS-subdomain prefix and a 63-character name.
const LABEL_NAME = "[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?";
const LABEL_PREFIX = "[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?(?:\\.[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?)*/";
const LABEL_KEY = `^(?:${LABEL_PREFIX})?${LABEL_NAME}$`;
const LABEL_VALUE = `^(?:${LABEL_NAME})?$`;

const nameOf = (description: string) =>
  Type.String({ pattern: `^${DNS_LABEL}$`, maxLength: 63, description });

export const ResourceName = nameOf(
  "DNS-1123 label: lower-case letters, digits and '-', at most 63, starting and ending alphanumeric",
);

// A Service's name: a DNS label, or `<name>.<namespace>` for one discovered on Kubernetes
// (control-plane/kubernetes/discovery.ts), each part a DNS label as Kubernetes names them, so at most
// 63 + 1 + 63. Only services may hold the dot: it is what keeps a discovered service apart from one
// declared by hand. (validate.ts bounds it further by the names the filter derives from it.)
const BOUNDED_LABEL = "[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?";
const SERVICE_NAME = `${BOUNDED_LABEL}(?:\\.${BOUNDED_LABEL})?`;
export const MAX_SERVICE_NAME = 127;

const serviceNameOf = (description: string) =>
  Type.String({ pattern: `^${SERVICE_NAME}$`, maxLength: MAX_SERVICE_NAME, description });

export const ServiceName = serviceNameOf(
  "DNS-1123 label (lower-case letters, digits and '-', at most 63, starting and ending alphanumeric), or two joined by '.' (<name>.<namespace>, a service discovered on Kubernetes)",
);

/** A reference to a Service by name. */
const ServiceRef = serviceNameOf("name of a Service (<name> or <name>.<namespace>)");

/** A Service name, or "*" for every service. */
const serviceOrAnyOf = (description: string) =>
  Type.String({ pattern: `^(?:\\*|${SERVICE_NAME})$`, maxLength: MAX_SERVICE_NAME, description });
const ServiceOrAny = serviceOrAnyOf(
  'name of a Service (<name> or <name>.<namespace>), or "*" for every service',
);

// A Workload's name: a DNS-1123 subdomain (as Kubernetes names pods), so that a discovered pod's
// Workload can be `<pod>.<namespace>`.
const DNS_SUBDOMAIN = `${BOUNDED_LABEL}(?:\\.${BOUNDED_LABEL})*`;
export const WorkloadName = Type.String({
  pattern: `^${DNS_SUBDOMAIN}$`,
  maxLength: 253,
  description:
    "DNS-1123 subdomain: DNS labels joined by '.', at most 253 (e.g. <pod>.<namespace> for a discovered pod)",
});

export const Labels = Type.Record(
  Type.String({ pattern: LABEL_KEY }),
  Type.String({ pattern: LABEL_VALUE, maxLength: 63 }),
  { ...strict, description: "labels in Kubernetes syntax (key: [prefix/]name, value: at most 63)" },
);

/** A label selector: the workloads of the service whose labels include every one of these. */
export const Subset = Type.Record(
  Type.String({ pattern: LABEL_KEY }),
  Type.String({ pattern: LABEL_VALUE, maxLength: 63 }),
  {
    ...strict,
    minProperties: 1,
    description: "label selector: workloads whose labels include all of these (omit for the whole service)",
  },
);

const metadataOf = <N extends TSchema>(name: N) =>
  Type.Object(
    {
      name,
      labels: Type.Optional(Labels),
      // Written by the store (control-plane/store). Accepted on input so that a document read back
      // (`wasmesh get -o yaml`) can be applied again; validation does not interpret them.
      resourceVersion: Type.Optional(
        Type.String({
          maxLength: 128,
          description: "written by the store; accepted on input, not interpreted",
        }),
      ),
      createdAt: Type.Optional(
        Type.String({
          maxLength: 64,
          description: "written by the store; accepted on input, not interpreted",
        }),
      ),
      updatedAt: Type.Optional(
        Type.String({
          maxLength: 64,
          description: "written by the store; accepted on input, not interpreted",
        }),
      ),
    },
    strict,
  );

export const Metadata = metadataOf(ResourceName);
export type Metadata = Static<typeof Metadata>;

const Port = (description: string) => Type.Integer({ minimum: 1, maximum: 65_535, description });

/** The bounds of a Workload's lease (spec.leaseSeconds) and of a renewal's (PUT .../lease), in seconds. */
export const LEASE_SECONDS = { minimum: 5, maximum: 3600 } as const;

function oneOf<const T extends string[]>(values: [...T], description: string) {
  return Type.Union(
    values.map((v) => Type.Literal(v)),
    { description },
  );
}

function resource<const K extends string, S extends TSchema, M extends TSchema = typeof Metadata>(
  kind: K,
  spec: S,
  description: string,
  metadata: M = Metadata as unknown as M,
) {
  return Type.Object(
    { apiVersion: Type.Literal(API_VERSION), kind: Type.Literal(kind), metadata, spec },
    { ...strict, $id: `https://wasmesh.io/schemas/v1alpha1/${kind}.json`, title: kind, description },
  );
}

// --- mTLS ----------------------------------------------------------------------------------------

/**
 * How sidecars run by the data-plane agent talk to each other (issue 11): `disabled`, plain text;
 * `permissive`, callers with a certificate use mTLS and the inbound listener accepts plain text too
 * (for migration); `strict`, the inbound listener accepts mTLS from mesh certificates only.
 */
export const MTLS_MODES = ["disabled", "permissive", "strict"] as const;
export type MtlsMode = (typeof MTLS_MODES)[number];
/** Without a MeshPolicy or a mode in it: the migration-friendly mode, as Istio's and Kuma's default. */
export const DEFAULT_MTLS_MODE: MtlsMode = "permissive";

const Mtls = Type.Object(
  {
    mode: oneOf(
      [...MTLS_MODES],
      "disabled: plain text; permissive: mTLS, plain text accepted too; strict: mTLS only",
    ),
  },
  { ...strict, description: "mTLS between sidecars run by the data-plane agent" },
);

// --- Service and Workload -------------------------------------------------------------------------

export const ServicePort = Type.Object(
  {
    name: nameOf("the port's name, unique in the service (a DNS-1123 label)"),
    port: Port("the port clients call"),
    protocol: oneOf(["http", "grpc", "tcp"], "application protocol"),
  },
  strict,
);

export const Service = resource(
  "Service",
  Type.Object(
    {
      ports: Type.Array(ServicePort, {
        minItems: 1,
        description: "the ports it serves (names and numbers unique)",
      }),
      description: Type.Optional(Type.String({ maxLength: 1024, description: "free text for people" })),
      /** The service's own mTLS mode, over MeshPolicy's: what its inbound listeners accept. */
      mtls: Type.Optional(
        Type.Object(Mtls.properties, {
          ...strict,
          description: "its own mTLS mode, over MeshPolicy's (default: MeshPolicy's, else permissive)",
        }),
      ),
    },
    strict,
  ),
  "A service: the name clients send as Host, and the ports it serves",
  metadataOf(ServiceName),
);

export const Workload = resource(
  "Workload",
  Type.Object(
    {
      service: serviceNameOf("the Service it is an instance of"),
      /** Shape (IPv4, IPv6 or DNS host name) is checked in validate.ts, where the message can say which. */
      address: Type.String({
        minLength: 1,
        maxLength: 253,
        pattern: "^[0-9A-Za-z.:-]+$",
        description: "IPv4 or IPv6 address, or DNS host name, where other sidecars reach it",
      }),
      /** Where other sidecars call it: its sidecar's inbound listener (or the app, without a sidecar). */
      port: Port(
        "where other sidecars call it: its sidecar's inbound listener (or the app, without a sidecar)",
      ),
      /** What subsets select on, e.g. `version: v1`; none when omitted. */
      labels: Type.Optional(
        Type.Record(
          Type.String({ pattern: LABEL_KEY }),
          Type.String({ pattern: LABEL_VALUE, maxLength: 63 }),
          {
            ...strict,
            description:
              "what subsets select on, e.g. version: v1 (Kubernetes label syntax); none when omitted",
          },
        ),
      ),
      zone: Type.Optional(
        Type.String({
          pattern: `^${LABEL_NAME}$`,
          description: "its zone: the locality of its endpoint in Envoy's load assignment",
        }),
      ),
      /** Recorded, not routed to: the sidecar's inbound listener forwards to it. */
      appPort: Type.Optional(
        Type.Integer({
          minimum: 1,
          maximum: 65_535,
          description:
            "the app's own port behind the sidecar, which forwards to it (recorded by the data-plane agent)",
        }),
      ),
      /** The data-plane agent renews the lease (PUT /v1/workloads/<name>/lease) while it runs. */
      leaseSeconds: Type.Optional(
        Type.Integer({
          ...LEASE_SECONDS,
          description:
            "the Workload is deleted when its lease is not renewed for this long (agent-managed); none: it stays until deleted",
        }),
      ),
      /**
       * Its sidecar holds a mesh certificate (the data-plane agent serves it over SDS) and takes
       * mTLS on `port`: callers whose sidecars hold one too originate mTLS to it, unless the
       * service's mTLS mode is disabled. Written by the agent.
       */
      mtls: Type.Optional(
        Type.Boolean({
          description:
            "its sidecar takes mesh mTLS on port (set by the data-plane agent): mesh callers originate mTLS to it unless mTLS is disabled",
          default: false,
        }),
      ),
      /**
       * The Kubernetes service account its pod runs as (set by discovery): its certificate names
       * spiffe://<td>/ns/<service's namespace>/sa/<this>, which callers verify, rather than the
       * identity the service's name gives (ca/spiffe.ts universalIdentity).
       */
      serviceAccount: Type.Optional(
        Type.String({
          pattern: "^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*$",
          maxLength: 253,
          description:
            "the Kubernetes service account its pod runs as (set by discovery): the identity in its certificate",
        }),
      ),
    },
    strict,
  ),
  "One instance of a service (a pod, VM or process) and the address its sidecar serves it on",
  metadataOf(WorkloadName),
);

// --- Route ---------------------------------------------------------------------------------------

export const RouteDestination = Type.Object(
  {
    service: serviceNameOf("the Service requests go to"),
    subset: Type.Optional(Subset),
    weight: FilterDestination.properties.weight,
  },
  strict,
);

/**
 * A rule is the filter's route (match, stickiness, timeout, retries) over services instead of
 * clusters, plus a header rule's header changes and faults, applied when the rule matches.
 */
export const RouteRule = Type.Object(
  {
    name: FilterRoute.properties.name,
    match: FilterRoute.properties.match,
    destinations: Type.Array(RouteDestination, {
      minItems: 1,
      description: "where matching requests go, split by weight",
    }),
    sticky: FilterRoute.properties.sticky,
    requestHeaders: HeaderRule.properties.requestHeaders,
    responseHeaders: HeaderRule.properties.responseHeaders,
    timeoutMs: FilterRoute.properties.timeoutMs,
    retries: FilterRoute.properties.retries,
    fault: HeaderRule.properties.fault,
  },
  strict,
);
export type RouteRule = Static<typeof RouteRule>;

export const Route = resource(
  "Route",
  Type.Object(
    {
      /** The service whose traffic this route directs (the Host clients send). */
      service: serviceNameOf("the Service whose traffic it directs (the Host clients send)"),
      /** Ordered: the first rule that matches a request applies. */
      rules: Type.Array(RouteRule, {
        minItems: 1,
        description: "in order: the first rule that matches a request applies",
      }),
    },
    strict,
  ),
  "How requests to a service are matched, split over destinations and changed",
);

// --- CircuitBreaker ------------------------------------------------------------------------------

const breakerThresholds = Type.Required(
  Type.Pick(FilterBreaker, ["consecutiveErrors", "intervalMs", "baseEjectionMs"]),
).properties;

export const CircuitBreaker = resource(
  "CircuitBreaker",
  Type.Object(
    {
      service: serviceNameOf("the Service it protects"),
      subset: Type.Optional(Subset),
      consecutiveErrors: breakerThresholds.consecutiveErrors,
      intervalMs: breakerThresholds.intervalMs,
      baseEjectionMs: breakerThresholds.baseEjectionMs,
      maxEjectionMs: FilterBreaker.properties.maxEjectionMs,
      /** Envoy outlier detection's cap on the share of endpoints ejected at once. */
      maxEjectionPercent: Type.Optional(
        Type.Integer({
          minimum: 0,
          maximum: 100,
          description:
            "Envoy's outlier detection: the most endpoints, in percent, taken out of the pool at once (none: Envoy's default, 10)",
        }),
      ),
      maxConcurrent: FilterBreaker.properties.maxConcurrent,
      /** Where traffic goes while the circuit is open, instead of a local 503. */
      fallback: Type.Optional(
        Type.Object(
          { service: ServiceRef, subset: Type.Optional(Subset) },
          { ...strict, description: "where traffic goes while the circuit is open, instead of a local 503" },
        ),
      ),
    },
    strict,
  ),
  "When to stop sending requests to a service (or subset) that keeps failing, and for how long",
);

// --- Access --------------------------------------------------------------------------------------

const Access = oneOf(["allow", "deny"], "whether the call is allowed");

export const AccessRule = resource(
  "AccessRule",
  Type.Object(
    {
      source: serviceOrAnyOf('the calling Service (<name> or <name>.<namespace>), or "*" for every caller'),
      destination: serviceNameOf("the called Service"),
      action: Access,
    },
    strict,
  ),
  "Allows or denies calls from a source service to a destination service",
);

/** The singleton named "default" (checked in validate.ts): what applies when no AccessRule matches. */
export const MeshPolicy = resource(
  "MeshPolicy",
  Type.Object(
    {
      defaultAccess: oneOf(["allow", "deny"], "whether a call no AccessRule matches is allowed"),
      /** mTLS between agent-run sidecars (default permissive); a Service's own mode wins for it. */
      mtls: Type.Optional(
        Type.Object(Mtls.properties, {
          ...strict,
          default: { mode: DEFAULT_MTLS_MODE },
          description: "mTLS between sidecars run by the data-plane agent; a Service's own mode wins for it",
        }),
      ),
    },
    strict,
  ),
  'Mesh-wide defaults; there is one, named "default"',
);

// --- Wasm ----------------------------------------------------------------------------------------

export const WasmModule = resource(
  "WasmModule",
  Type.Object(
    {
      sha256: Type.String({ pattern: "^[0-9a-f]{64}$", description: "lower-case hex digest of the bytes" }),
      size: Type.Integer({ minimum: 8, maximum: Number.MAX_SAFE_INTEGER, description: "bytes" }),
      abiVersion: oneOf(["0.2.1"], "Proxy-Wasm ABI version the module exports"),
      description: Type.Optional(Type.String({ maxLength: 1024, description: "free text for people" })),
    },
    strict,
  ),
  "A Wasm module version; its bytes live in the module registry, addressed by sha256",
);

export const WasmPlugin = resource(
  "WasmPlugin",
  Type.Object(
    {
      module: nameOf(`name of a WasmModule, or "${MESH_MODULE}" for the built-in module`),
      /** The services whose sidecars run the plugin, or ["*"] for all. */
      services: Type.Array(ServiceOrAny, {
        minItems: 1,
        description: 'the Services whose sidecars run it, or ["*"] for all',
      }),
      rootId: Type.Optional(
        Type.String({
          minLength: 1,
          maxLength: 256,
          description: "the module's root context to run (none: its default one)",
        }),
      ),
      /** Handed to the module as its plugin configuration (JSON). */
      configuration: Type.Record(Type.String(), Type.Unknown(), {
        description: `handed to the module as its plugin configuration (JSON); for "${MESH_MODULE}", the filters' configuration (below)`,
      }),
      /**
       * Which listener of the sidecar runs it: inbound (requests to the service, the default, as in
       * Istio's WasmPlugin) or outbound (the service's calls, before the built-in routing filter).
       */
      direction: Type.Optional(
        Type.Union([Type.Literal("inbound"), Type.Literal("outbound")], {
          default: "inbound",
          description:
            "the sidecar listener that runs it: inbound (requests to the service) or outbound (the service's calls, before the routing filter)",
        }),
      ),
      /** Order among plugins on one sidecar: higher runs first, as in Istio's WasmPlugin. */
      priority: Type.Optional(
        Type.Integer({
          minimum: -2_147_483_648,
          maximum: 2_147_483_647,
          default: 0,
          description:
            "order among the plugins of one sidecar and direction: higher runs first, then by name",
        }),
      ),
    },
    strict,
  ),
  "Runs a Wasm module, with its configuration, in the sidecars of some services",
);

// --- Telemetry ----------------------------------------------------------------------------------

/** How spans leave a sidecar: OTLP over gRPC or HTTP (Jaeger, the OpenTelemetry Collector), or Zipkin v2 JSON. */
export const TRACING_PROTOCOLS = ["otlp-grpc", "otlp-http", "zipkin"] as const;
export type TracingProtocol = (typeof TRACING_PROTOCOLS)[number];

/** An http(s) URL of a collector; host and port become an Envoy cluster, the path the endpoint. */
const CollectorUrl = (description: string) =>
  Type.String({ pattern: "^https?://[^\\s/?#@]+(/[^\\s?#]*)?$", maxLength: 2048, description });

const TracingBackend = Type.Object(
  {
    protocol: oneOf(
      [...TRACING_PROTOCOLS],
      "otlp-grpc (e.g. http://jaeger:4317), otlp-http (e.g. http://jaeger:4318/v1/traces) or zipkin (e.g. http://zipkin:9411/api/v2/spans)",
    ),
    url: CollectorUrl(
      "the collector: http(s)://host:port, and for otlp-http and zipkin the path spans are posted to",
    ),
  },
  { ...strict, description: "where the sidecars send their spans" },
);

/**
 * Tracing for the mesh (no `service`) or one service's override of it (`service`): the fields an
 * override gives win over the mesh's, the rest it inherits. Envoy's tracing provider sits on each
 * listener (a change of backend or of tags drains the sidecars' connections, as any listener
 * change does); the sampling percentages sit on the routes and travel over RDS, so turning
 * tracing up, down or off (randomPercent: 0) drains nothing.
 */
export const Tracing = resource(
  "Tracing",
  Type.Object(
    {
      service: Type.Optional(
        serviceNameOf("the Service whose sidecars this overrides the mesh's tracing for (none: the mesh's)"),
      ),
      backend: Type.Optional(
        Type.Object(TracingBackend.properties, {
          ...strict,
          description:
            "where the sidecars send their spans (required for the mesh's; an override inherits it)",
        }),
      ),
      sampling: Type.Optional(Sampling),
      tags: Type.Optional(
        Type.Array(TraceTag, {
          maxItems: 64,
          description: "tags on every span, from a request header or literal",
        }),
      ),
      edge: Type.Optional(
        Type.Object(
          {
            url: CollectorUrl(
              "the OTLP/HTTP traces endpoint edge workers post to, e.g. https://otel.example.com/v1/traces",
            ),
          },
          {
            ...strict,
            description:
              "where edge workers export their spans (none: backend.url when it is otlp-http, else the edge does not trace)",
          },
        ),
      ),
    },
    strict,
  ),
  "Distributed tracing: where spans go, which requests are traced and how spans are tagged",
);

/** One of file and stdout (one object rather than a union, for Kubernetes' structural schemas). */
const AccessLogBackend = Type.Object(
  {
    file: Type.Optional(
      Type.Object(
        {
          path: Type.String({
            pattern: "^/",
            maxLength: 1024,
            description: "an absolute path on the sidecar's host, which Envoy appends to",
          }),
        },
        { ...strict, description: "a file on the sidecar's host" },
      ),
    ),
    stdout: Type.Optional(
      Type.Object({}, { ...strict, description: "Envoy's standard output, which the agent passes on" }),
    ),
  },
  { ...strict, description: "where lines go: exactly one of file: {path} and stdout: {}" },
);

/**
 * Access logs for the mesh (no `service`) or one service's own (`service`, which replaces the
 * mesh's for its sidecars; `backends: []` turns them off there). Off without an AccessLog. They sit
 * on the listeners: a change drains the sidecars' connections.
 */
export const AccessLog = resource(
  "AccessLog",
  Type.Object(
    {
      service: Type.Optional(
        serviceNameOf(
          "the Service whose sidecars this applies to, in place of the mesh's (none: the mesh's)",
        ),
      ),
      backends: Type.Array(AccessLogBackend, {
        maxItems: 8,
        description: "where each line goes; [] turns access logs off (for a service's own)",
      }),
      format: Type.Optional(
        Type.String({
          minLength: 1,
          maxLength: 4096,
          description:
            "one line per request in Envoy's command operators, e.g. %RESPONSE_CODE% %UPSTREAM_CLUSTER% (none: the default, with the mesh's decision)",
        }),
      ),
    },
    strict,
  ),
  "Access logs: one line per request through the sidecars, with the mesh's routing decision",
);

// --- Imported -----------------------------------------------------------------------------------

/**
 * Another mesh's resource (Istio, Kuma, Consul) as it was applied, kept beside the native resources
 * it became (control-plane/imports): `get` shows the original, deleting it deletes what it produced,
 * and each apply converts every kept original again, so that one may name another's subsets. Written
 * only by the apply of the original (POST /v1/apply), never directly.
 */
export const ImportedResource = resource(
  "ImportedResource",
  Type.Object(
    {
      source: Type.Object(
        {
          apiVersion: Type.String({
            maxLength: 253,
            description: "the original's apiVersion (Kuma's universal form: kuma.io/v1alpha1)",
          }),
          kind: Type.String({ minLength: 1, maxLength: 63, description: "the original's kind" }),
          name: Type.String({ minLength: 1, maxLength: 253, description: "the original's name" }),
          namespace: Type.Optional(
            Type.String({
              minLength: 1,
              maxLength: 63,
              description: "the original's namespace, if it had one",
            }),
          ),
        },
        { ...strict, description: "which resource of which mesh it is" },
      ),
      /** The original document, as applied. */
      document: Type.Record(Type.String(), Type.Unknown(), {
        description: "the original document, as applied",
      }),
      /** What it became; each must exist (a produced resource cannot be deleted on its own). */
      produced: Type.Array(
        Type.Object(
          {
            kind: oneOf(
              [
                "Service",
                "Workload",
                "Route",
                "CircuitBreaker",
                "AccessRule",
                "MeshPolicy",
                "WasmPlugin",
                "Tracing",
                "AccessLog",
              ],
              "a native kind",
            ),
            name: Type.String({ minLength: 1, maxLength: 253, description: "its name" }),
          },
          strict,
        ),
        { description: "the native resources it became; each must exist" },
      ),
      /** What the conversion did not carry, one line per field (as apply printed them). */
      warnings: Type.Optional(
        Type.Array(Type.String({ maxLength: 2048 }), {
          description: "what the conversion did not carry, one line per field (as apply printed them)",
        }),
      ),
      /**
       * Who applied the original: "api" (POST /v1/apply, wasmesh apply; also when absent), or
       * "kubernetes" (an object of the cluster, kept in step by kubernetes/imports.ts, which
       * removes it when the object is gone and never touches the API's).
       */
      origin: Type.Optional(
        Type.Union([Type.Literal("api"), Type.Literal("kubernetes")], {
          default: "api",
          description:
            "who applied the original: api (POST /v1/apply, wasmesh apply) or kubernetes (an object of the cluster, kept in step with it)",
        }),
      ),
    },
    strict,
  ),
  "Another mesh's resource as applied, and the native resources it became (written by apply)",
);

// --- All kinds -----------------------------------------------------------------------------------

export const resourceSchemas = {
  Service,
  Workload,
  Route,
  CircuitBreaker,
  AccessRule,
  MeshPolicy,
  WasmModule,
  WasmPlugin,
  Tracing,
  AccessLog,
  ImportedResource,
} as const;

export type Kind = keyof typeof resourceSchemas;
export const KINDS = Object.keys(resourceSchemas) as Kind[];

/** Any resource; `kind` tells which. This is also the JSON Schema of a resource document. */
export const Resource = Type.Union(
  [
    Service,
    Workload,
    Route,
    CircuitBreaker,
    AccessRule,
    MeshPolicy,
    WasmModule,
    WasmPlugin,
    Tracing,
    AccessLog,
    ImportedResource,
  ],
  {
    $id: "https://wasmesh.io/schemas/v1alpha1/resource.json",
    title: "wasmesh resource",
  },
);

export type Service = Static<typeof Service>;
export type Workload = Static<typeof Workload>;
export type Route = Static<typeof Route>;
export type CircuitBreaker = Static<typeof CircuitBreaker>;
export type AccessRule = Static<typeof AccessRule>;
export type MeshPolicy = Static<typeof MeshPolicy>;
export type WasmModule = Static<typeof WasmModule>;
export type WasmPlugin = Static<typeof WasmPlugin>;
export type Tracing = Static<typeof Tracing>;
export type AccessLog = Static<typeof AccessLog>;
export type ImportedResource = Static<typeof ImportedResource>;
export type Resource = Static<typeof Resource>;
export type Subset = Static<typeof Subset>;
