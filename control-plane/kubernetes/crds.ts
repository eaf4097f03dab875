// The CustomResourceDefinitions (apiextensions.k8s.io/v1) of the native kinds, generated from the
// one resource model (control-plane/resources/schema.ts) so that no schema is written twice
// (issue 12, §1). `wasmesh kubernetes crds` prints them; deploy/kubernetes/crds.yaml is their
// committed copy (test/control-plane/kubernetes-crds.test.ts fails when it is stale).
//
// Every kind is a CRD, WasmModule included: it holds the digest and size of a module version, not
// its bytes (those stay in the module registry, as they do without Kubernetes; etcd refuses objects
// over 1.5 MB). MeshPolicy is cluster-scoped: it is the mesh's one singleton ("default"), not a
// namespace's. The others are namespaced.
//
// A structural schema (what the API server requires) says less than JSON Schema: what it cannot
// hold is left to the validating admission webhook, which runs validate.ts:
// - unknown fields: the API server prunes them (or refuses them under `kubectl --validate=strict`,
//   the default since 1.27) where the model's additionalProperties: false refuses them;
// - label keys' syntax in spec maps (labels, subsets): a map's keys take no pattern;
// - metadata.labels (the API server checks Kubernetes label syntax itself, which is the model's);
// - everything validate.ts checks beyond the schema (weights adding up to 100, one condition per
//   matcher, unique names, addresses' shape, references between resources, MeshPolicy's name).
import type { TSchema } from "@sinclair/typebox";
import { stringify } from "yaml";
import { API_VERSION, type Kind, resourceSchemas } from "../resources/index.ts";

export const GROUP = API_VERSION.split("/")[0] as string;
export const VERSION = API_VERSION.split("/")[1] as string;

/** A node of a structural schema (apiextensions.k8s.io/v1 JSONSchemaProps), as far as we write it. */
export interface StructuralSchema {
  type?: "object" | "array" | "string" | "integer" | "number" | "boolean";
  description?: string;
  properties?: Record<string, StructuralSchema>;
  required?: string[];
  additionalProperties?: StructuralSchema;
  items?: StructuralSchema;
  enum?: (string | number | boolean)[];
  pattern?: string;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  minItems?: number;
  maxItems?: number;
  minProperties?: number;
  maxProperties?: number;
  "x-kubernetes-preserve-unknown-fields"?: true;
}

interface PrinterColumn {
  name: string;
  type: "string" | "integer" | "number" | "boolean" | "date";
  jsonPath: string;
  description?: string;
  priority?: number;
}

export interface CustomResourceDefinition {
  apiVersion: "apiextensions.k8s.io/v1";
  kind: "CustomResourceDefinition";
  metadata: { name: string; labels: Record<string, string> };
  spec: {
    group: string;
    scope: "Namespaced" | "Cluster";
    names: {
      plural: string;
      singular: string;
      kind: string;
      listKind: string;
      shortNames: string[];
      categories: string[];
    };
    versions: {
      name: string;
      served: true;
      storage: true;
      schema: { openAPIV3Schema: StructuralSchema };
      subresources: { status: Record<string, never> };
      additionalPrinterColumns: PrinterColumn[];
    }[];
  };
}

/** How each kind appears in Kubernetes: names and `kubectl get` columns (AGE is added to all). */
const KINDS: Record<
  Kind,
  { plural: string; shortNames: string[]; scope: "Namespaced" | "Cluster"; columns: PrinterColumn[] }
> = {
  Service: {
    plural: "services",
    // `svc` is Kubernetes' own Service; `kubectl get wsvc` is ours.
    shortNames: ["wsvc"],
    scope: "Namespaced",
    columns: [{ name: "Ports", type: "string", jsonPath: ".spec.ports[*].port" }],
  },
  Workload: {
    plural: "workloads",
    shortNames: ["wl"],
    scope: "Namespaced",
    columns: [
      { name: "Service", type: "string", jsonPath: ".spec.service" },
      { name: "Address", type: "string", jsonPath: ".spec.address" },
      { name: "Port", type: "integer", jsonPath: ".spec.port" },
      { name: "Zone", type: "string", jsonPath: ".spec.zone", priority: 1 },
    ],
  },
  Route: {
    plural: "routes",
    shortNames: ["wrt"],
    scope: "Namespaced",
    columns: [{ name: "Service", type: "string", jsonPath: ".spec.service" }],
  },
  CircuitBreaker: {
    plural: "circuitbreakers",
    shortNames: ["cb"],
    scope: "Namespaced",
    columns: [
      { name: "Service", type: "string", jsonPath: ".spec.service" },
      { name: "Errors", type: "integer", jsonPath: ".spec.consecutiveErrors" },
    ],
  },
  AccessRule: {
    plural: "accessrules",
    shortNames: ["ar"],
    scope: "Namespaced",
    columns: [
      { name: "Source", type: "string", jsonPath: ".spec.source" },
      { name: "Destination", type: "string", jsonPath: ".spec.destination" },
      { name: "Action", type: "string", jsonPath: ".spec.action" },
    ],
  },
  MeshPolicy: {
    plural: "meshpolicies",
    shortNames: ["mp"],
    scope: "Cluster",
    columns: [
      { name: "Default Access", type: "string", jsonPath: ".spec.defaultAccess" },
      { name: "mTLS", type: "string", jsonPath: ".spec.mtls.mode" },
    ],
  },
  WasmModule: {
    plural: "wasmmodules",
    shortNames: ["wm"],
    scope: "Namespaced",
    columns: [
      { name: "Size", type: "integer", jsonPath: ".spec.size" },
      { name: "SHA256", type: "string", jsonPath: ".spec.sha256", priority: 1 },
    ],
  },
  WasmPlugin: {
    plural: "wasmplugins",
    shortNames: ["wp"],
    scope: "Namespaced",
    columns: [
      { name: "Module", type: "string", jsonPath: ".spec.module" },
      { name: "Direction", type: "string", jsonPath: ".spec.direction" },
      { name: "Priority", type: "integer", jsonPath: ".spec.priority" },
    ],
  },
  // Namespaced as the rest: a mesh-wide one (no spec.service) is named once, like MeshPolicy's
  // "default" would be, and the store keys names as it does for every namespaced kind.
  Tracing: {
    plural: "tracings",
    shortNames: ["wtrace"],
    scope: "Namespaced",
    columns: [
      { name: "Service", type: "string", jsonPath: ".spec.service" },
      { name: "Protocol", type: "string", jsonPath: ".spec.backend.protocol" },
      { name: "Sampling", type: "number", jsonPath: ".spec.sampling.randomPercent" },
    ],
  },
  AccessLog: {
    plural: "accesslogs",
    shortNames: ["wal"],
    scope: "Namespaced",
    columns: [{ name: "Service", type: "string", jsonPath: ".spec.service" }],
  },
  ImportedResource: {
    plural: "importedresources",
    shortNames: ["imp"],
    scope: "Namespaced",
    columns: [
      { name: "Source Kind", type: "string", jsonPath: ".spec.source.kind" },
      { name: "Source Name", type: "string", jsonPath: ".spec.source.name" },
      { name: "Source Namespace", type: "string", jsonPath: ".spec.source.namespace" },
    ],
  },
};

/** Keywords copied as they are: a structural schema takes them with JSON Schema's meaning. */
const KEPT = [
  "description",
  "pattern",
  "minLength",
  "maxLength",
  "minimum",
  "maximum",
  "minItems",
  "maxItems",
  "minProperties",
  "maxProperties",
] as const;

/**
 * Keywords dropped on purpose: identification ($id, title), additionalProperties: false (the API
 * server prunes unknown fields instead; see above), and default (the API server would apply it on
 * every read, where the model's defaults are applied by the translation, not stored).
 */
const DROPPED = new Set(["$id", "title", "additionalProperties", "default"]);

/** A construct the conversion does not know, at a path of the model's schema: a loud failure. */
export class UnsupportedSchema extends Error {}

const TYPES = new Set(["object", "array", "string", "integer", "number", "boolean"]);

/**
 * A TypeBox (JSON Schema) node as a structural schema node. Throws UnsupportedSchema, naming the
 * path, for any construct it does not handle, so that a new construct in the model fails here
 * rather than producing a CRD the API server refuses or that says less than the model.
 */
export function structural(schema: TSchema, path = "$"): StructuralSchema {
  const source = schema as Record<string, unknown>;
  const unknown = Object.keys(source).filter(
    (k) =>
      !DROPPED.has(k) &&
      !(KEPT as readonly string[]).includes(k) &&
      !["type", "properties", "required", "items", "patternProperties", "anyOf", "const"].includes(k),
  );
  if (unknown.length > 0)
    throw new UnsupportedSchema(`${path}: unsupported keyword(s) ${unknown.join(", ")}`);
  const out: StructuralSchema = {};
  for (const key of KEPT) if (source[key] !== undefined) (out as Record<string, unknown>)[key] = source[key];

  // A union of literals (Type.Union of Type.Literal: anyOf of const) is an enum of one type.
  if (source.anyOf !== undefined) {
    const options = source.anyOf as Record<string, unknown>[];
    const values = options.map((o, i) => {
      if (o.const === undefined || Object.keys(o).some((k) => k !== "const" && k !== "type")) {
        throw new UnsupportedSchema(`${path}.anyOf[${i}]: only a union of literals is supported`);
      }
      return o.const;
    });
    return { type: enumType(values, path), ...out, enum: values as StructuralSchema["enum"] };
  }
  if (source.const !== undefined)
    return { type: enumType([source.const], path), ...out, enum: [source.const as string] };

  const type = source.type;
  if (typeof type !== "string" || !TYPES.has(type)) {
    throw new UnsupportedSchema(`${path}: no supported type (${JSON.stringify(type)})`);
  }
  out.type = type as StructuralSchema["type"];
  if (type === "array") {
    if (source.items === undefined) throw new UnsupportedSchema(`${path}: an array without items`);
    out.items = structural(source.items as TSchema, `${path}[]`);
  }
  if (type === "object") {
    if (source.patternProperties !== undefined) {
      if (source.properties !== undefined)
        throw new UnsupportedSchema(`${path}: properties with patternProperties`);
      const patterns = Object.entries(source.patternProperties as Record<string, TSchema>);
      const [key, value] = patterns[0] ?? [];
      if (patterns.length !== 1 || value === undefined) {
        throw new UnsupportedSchema(`${path}: one patternProperties entry is supported`);
      }
      // Type.Record(String, Unknown): free-form JSON (a plugin's configuration), kept as it is.
      if (Object.keys(value).length === 0) out["x-kubernetes-preserve-unknown-fields"] = true;
      // Any other record is a map; its keys' pattern (`key`) is the webhook's to check.
      else out.additionalProperties = structural(value, `${path}[${JSON.stringify(key)}]`);
    } else {
      const properties = (source.properties ?? {}) as Record<string, TSchema>;
      out.properties = Object.fromEntries(
        Object.entries(properties).map(([name, property]) => [name, structural(property, `${path}.${name}`)]),
      );
      const required = source.required as string[] | undefined;
      if (required !== undefined && required.length > 0) out.required = [...required];
    }
  }
  return { type: out.type, ...out };
}

function enumType(values: unknown[], path: string): StructuralSchema["type"] {
  const types = new Set(values.map((v) => (Number.isInteger(v) ? "integer" : typeof v)));
  const [type] = types;
  if (types.size !== 1 || type === undefined || !TYPES.has(type)) {
    throw new UnsupportedSchema(`${path}: literals of one type only (${[...types].join(", ")})`);
  }
  return type as StructuralSchema["type"];
}

/**
 * A kind's root schema: its spec from the model, metadata.name restricted as the model restricts it
 * (the API server allows restrictions on name alone), and apiVersion, kind and the rest of metadata
 * the API server's own.
 */
function rootSchema(kind: Kind): StructuralSchema {
  const model = resourceSchemas[kind];
  const name = model.properties.metadata.properties.name;
  return {
    type: "object",
    description: model.description,
    required: ["spec"],
    properties: {
      apiVersion: { type: "string" },
      kind: { type: "string" },
      metadata: {
        type: "object",
        properties: { name: { type: "string", pattern: name.pattern, maxLength: name.maxLength } },
      },
      spec: structural(model.properties.spec, `${kind}.spec`),
      // The control plane's word on the object (issue 12: status updates by the leader replica),
      // written through the status subresource only, so a user's apply never overwrites it nor the
      // control plane's status write the spec. Not in the model: its shape comes with the writer.
      status: { type: "object", "x-kubernetes-preserve-unknown-fields": true },
    },
  };
}

/** The CRD of one kind. */
export function crdOf(kind: Kind): CustomResourceDefinition {
  const { plural, shortNames, scope, columns } = KINDS[kind];
  return {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: { name: `${plural}.${GROUP}`, labels: { "app.kubernetes.io/part-of": "wasmesh" } },
    spec: {
      group: GROUP,
      scope,
      names: {
        plural,
        singular: kind.toLowerCase(),
        kind,
        listKind: `${kind}List`,
        shortNames,
        categories: ["wasmesh"],
      },
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          schema: { openAPIV3Schema: rootSchema(kind) },
          subresources: { status: {} },
          additionalPrinterColumns: [
            ...columns,
            { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
          ],
        },
      ],
    },
  };
}

/** Every kind's CRD, in the model's order. */
export function crds(): CustomResourceDefinition[] {
  return (Object.keys(resourceSchemas) as Kind[]).map(crdOf);
}

/** Where a kind's objects are served: what a client of the Kubernetes API needs to reach them. */
export function resourceOf(kind: Kind): {
  group: string;
  version: string;
  plural: string;
  namespaced: boolean;
} {
  const { plural, scope } = KINDS[kind];
  return { group: GROUP, version: VERSION, plural, namespaced: scope === "Namespaced" };
}

/** The CRDs as one YAML stream, as `kubectl apply -f` takes them (deploy/kubernetes/crds.yaml). */
export function crdsYaml(): string {
  const header =
    "# The CustomResourceDefinitions of wasmesh's native kinds (wasmesh.io/v1alpha1), generated from\n" +
    "# the resource model: do not edit. Regenerate with `npm run gen:crds` (or `wasmesh kubernetes crds`).\n";
  return (
    header +
    crds()
      .map((crd) => `---\n${stringify(crd, { lineWidth: 0 })}`)
      .join("")
  );
}

// --- Other meshes' kinds (issue 13) ---------------------------------------------------------------

/**
 * A kind of another mesh that wasmesh converts (imports/), as that mesh's own CRD names it: group,
 * plural, scope, short names and categories match Istio's, Kuma's and Consul's, so that their YAML
 * (and `kubectl get vs`) works unchanged on a cluster where wasmesh, not the other mesh, installed
 * them. The schema keeps every field: the conversion is the check (the webhook, kubernetes/imports.ts).
 */
export interface ForeignKind {
  group: string;
  kind: string;
  plural: string;
  scope: "Namespaced" | "Cluster";
  shortNames: readonly string[];
  categories: readonly string[];
  /** The versions served, and the one stored (as the mesh's own CRD stores it). */
  versions: readonly string[];
  storage: string;
  /** Whether the mesh's CRD has the status subresource. */
  status: boolean;
}

const ISTIO_NETWORKING = {
  group: "networking.istio.io",
  versions: ["v1alpha3", "v1beta1", "v1"],
  storage: "v1alpha3",
};
const ISTIO_SECURITY = { group: "security.istio.io", versions: ["v1beta1", "v1"], storage: "v1beta1" };
const ISTIO_EXTENSIONS = { group: "extensions.istio.io", versions: ["v1alpha1"], storage: "v1alpha1" };
const ISTIO_TELEMETRY = { group: "telemetry.istio.io", versions: ["v1alpha1", "v1"], storage: "v1alpha1" };
const KUMA = {
  group: "kuma.io",
  versions: ["v1alpha1"],
  storage: "v1alpha1",
  categories: ["kuma"],
  status: false,
};
const CONSUL = {
  group: "consul.hashicorp.com",
  versions: ["v1alpha1"],
  storage: "v1alpha1",
  categories: [],
  status: true,
};
const istioCategories = (group: string) => ["istio-io", `${group.split(".")[0]}-istio-io`];
const istioKind = (
  at: { group: string; versions: string[]; storage: string },
  kind: string,
  plural: string,
  shortNames: string[],
): ForeignKind => ({
  ...at,
  kind,
  plural,
  scope: "Namespaced",
  shortNames,
  categories: istioCategories(at.group),
  status: true,
});

/**
 * Every converted kind of a CRD (imports/index.ts FIELDS but Kubernetes' own v1 Service, which
 * discovery reads; test/control-plane/kubernetes-crds.test.ts checks they agree). Kuma's Mesh and its older policies (TrafficRoute, TrafficPermission,
 * CircuitBreaker) are cluster-scoped, their body beside metadata (`mesh`, `spec`) as Kuma's CRDs have
 * it; its Dataplane and Mesh* policies are namespaced.
 */
export const FOREIGN_KINDS: readonly ForeignKind[] = [
  istioKind(ISTIO_NETWORKING, "VirtualService", "virtualservices", ["vs"]),
  istioKind(ISTIO_NETWORKING, "DestinationRule", "destinationrules", ["dr"]),
  istioKind(ISTIO_NETWORKING, "ServiceEntry", "serviceentries", ["se"]),
  istioKind(ISTIO_NETWORKING, "WorkloadEntry", "workloadentries", ["we"]),
  istioKind(ISTIO_NETWORKING, "Gateway", "gateways", ["gw"]),
  istioKind(ISTIO_SECURITY, "PeerAuthentication", "peerauthentications", ["pa"]),
  istioKind(ISTIO_SECURITY, "AuthorizationPolicy", "authorizationpolicies", ["ap"]),
  istioKind(ISTIO_EXTENSIONS, "WasmPlugin", "wasmplugins", []),
  istioKind(ISTIO_TELEMETRY, "Telemetry", "telemetries", ["telemetry"]),
  { ...KUMA, kind: "Mesh", plural: "meshes", scope: "Cluster", shortNames: ["m"] },
  { ...KUMA, kind: "Dataplane", plural: "dataplanes", scope: "Namespaced", shortNames: ["dpp"] },
  { ...KUMA, kind: "TrafficRoute", plural: "trafficroutes", scope: "Cluster", shortNames: [] },
  { ...KUMA, kind: "TrafficPermission", plural: "trafficpermissions", scope: "Cluster", shortNames: [] },
  { ...KUMA, kind: "CircuitBreaker", plural: "circuitbreakers", scope: "Cluster", shortNames: [] },
  { ...KUMA, kind: "MeshHTTPRoute", plural: "meshhttproutes", scope: "Namespaced", shortNames: ["mhttpr"] },
  {
    ...KUMA,
    kind: "MeshTrafficPermission",
    plural: "meshtrafficpermissions",
    scope: "Namespaced",
    shortNames: ["mtp"],
  },
  {
    ...KUMA,
    kind: "MeshCircuitBreaker",
    plural: "meshcircuitbreakers",
    scope: "Namespaced",
    shortNames: ["mcb"],
  },
  { ...KUMA, kind: "MeshTrace", plural: "meshtraces", scope: "Namespaced", shortNames: [] },
  { ...KUMA, kind: "MeshAccessLog", plural: "meshaccesslogs", scope: "Namespaced", shortNames: [] },
  ...(
    [
      ["ServiceIntentions", "serviceintentions"],
      ["ServiceDefaults", "servicedefaults"],
      ["ServiceSplitter", "servicesplitters"],
      ["ServiceResolver", "serviceresolvers"],
      ["ServiceRouter", "servicerouters"],
      ["ProxyDefaults", "proxydefaults"],
    ] as const
  ).map(([kind, plural]): ForeignKind => ({ ...CONSUL, kind, plural, scope: "Namespaced", shortNames: [] })),
];

/** The groups of FOREIGN_KINDS, each once, in order. */
export const FOREIGN_GROUPS: readonly string[] = [...new Set(FOREIGN_KINDS.map((k) => k.group))];

/** The CRD of another mesh's kind: every field kept (x-kubernetes-preserve-unknown-fields). */
export function foreignCrdOf(foreign: ForeignKind): KubeCrd {
  const singular = foreign.kind.toLowerCase();
  return {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: {
      name: `${foreign.plural}.${foreign.group}`,
      labels: { "app.kubernetes.io/part-of": "wasmesh", "wasmesh.io/imports": "true" },
    },
    spec: {
      group: foreign.group,
      scope: foreign.scope,
      names: {
        plural: foreign.plural,
        singular,
        kind: foreign.kind,
        listKind: `${foreign.kind}List`,
        ...(foreign.shortNames.length > 0 ? { shortNames: [...foreign.shortNames] } : {}),
        ...(foreign.categories.length > 0 ? { categories: [...foreign.categories] } : {}),
      },
      versions: foreign.versions.map((name) => ({
        name,
        served: true,
        storage: name === foreign.storage,
        schema: { openAPIV3Schema: { type: "object", "x-kubernetes-preserve-unknown-fields": true } },
        ...(foreign.status ? { subresources: { status: {} } } : {}),
      })),
    },
  };
}

/** A CRD as written (the foreign ones say less than the native kinds' CustomResourceDefinition). */
export interface KubeCrd {
  apiVersion: "apiextensions.k8s.io/v1";
  kind: "CustomResourceDefinition";
  metadata: { name: string; labels: Record<string, string> };
  spec: {
    group: string;
    scope: "Namespaced" | "Cluster";
    names: Record<string, string | string[]>;
    versions: {
      name: string;
      served: boolean;
      storage: boolean;
      schema: { openAPIV3Schema: StructuralSchema };
      subresources?: { status: Record<string, never> };
    }[];
  };
}

/** The CRDs of every converted kind, for clusters without the other mesh installed. */
export function foreignCrds(): KubeCrd[] {
  return FOREIGN_KINDS.map(foreignCrdOf);
}

/**
 * The foreign kinds' CRDs as one YAML stream (deploy/other-meshes/crds.yaml; `wasmesh kubernetes
 * crds --imports`). Not part of the base: a cluster running Istio (or Kuma, Consul) has its own, which
 * wasmesh uses as they are.
 */
export function foreignCrdsYaml(): string {
  const header =
    "# CustomResourceDefinitions of the other meshes' kinds wasmesh converts (Istio, Kuma, Consul), for a\n" +
    "# cluster where that mesh is not installed: `kubectl apply` of their YAML then reaches wasmesh. Generated:\n" +
    "# do not edit. Regenerate with `npm run gen:crds` (or `wasmesh kubernetes crds --imports`). A cluster\n" +
    "# with the mesh's own CRDs keeps them: wasmesh reads its objects through those.\n";
  return (
    header +
    foreignCrds()
      .map((crd) => `---\n${stringify(crd, { lineWidth: 0 })}`)
      .join("")
  );
}
