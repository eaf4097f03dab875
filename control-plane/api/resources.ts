// Resource routes: CRUD under /v1/<plural> (one small router per kind), and POST /v1/apply for
// manifests. Bodies are parsed and validated by middleware at the edge of each route; handlers get
// a validated Resource and only decide what to write. Each route declares its operation for the
// OpenAPI document (describeRoute), with the model's schemas.
import { type Static, Type } from "@sinclair/typebox";
import { Hono, type MiddlewareHandler } from "hono";
import { createMiddleware } from "hono/factory";
import { describeRoute } from "hono-openapi";
import { schemaErrors } from "../../schema/filter-config.ts";
import { type IncomingDocument, isDnsLabel, isForeign } from "../imports/index.ts";
import {
  KINDS,
  type Kind,
  LEASE_SECONDS,
  MESH_MODULE,
  parseManifests,
  type Resource,
  resourceSchemas,
  validateResource,
} from "../resources/index.ts";
import { ConflictError, type ResourceStore } from "../store/index.ts";
import { agentRoute, workloadGuard } from "./auth.ts";
import {
  accepts,
  decodeText,
  etag,
  expectedVersion,
  isJson,
  JSON_TYPES,
  limit,
  MANIFEST_TYPES,
  mediaType,
  parseDryRun,
  parseFlag,
  parseJson,
  parseYamlDocument,
  YAML_TYPES,
} from "./body.ts";
import { ApiError, badRequest, ErrorDetail, fieldDetails, invalid, notFound } from "./errors.ts";
import { importChanges } from "./imports.ts";
import type { LeaseKeeper } from "./leases.ts";
import { bodyOf, component, errorResponse, ifMatchHeader, json, pathParam, queryParam } from "./openapi.ts";
import type { Desired, Writer } from "./writer.ts";

// The bodies of these routes, as the OpenAPI document names them.
for (const kind of KINDS) component(kind, resourceSchemas[kind]);
const AnyResource = component(
  "Resource",
  Type.Union(
    KINDS.map((kind) => resourceSchemas[kind]),
    {
      title: "wasmesh resource",
      discriminator: {
        propertyName: "kind",
        mapping: Object.fromEntries(KINDS.map((kind) => [kind, `#/components/schemas/${kind}`])),
      },
    },
  ),
);
/** What one write did to one resource (deleted: what originals no longer produce, or a delete's cascade). */
const WriteOutcome = Type.Object({
  kind: Type.String(),
  name: Type.String(),
  action: Type.Union([
    Type.Literal("created"),
    Type.Literal("configured"),
    Type.Literal("unchanged"),
    Type.Literal("deleted"),
  ]),
});
const DeleteResult = component(
  "DeleteResult",
  Type.Object({
    revision: Type.Integer(),
    deleted: AnyResource,
    results: Type.Optional(
      Type.Array(WriteOutcome, {
        description:
          "an ImportedResource's delete: every change it made (what it produced, deleted; what the other kept originals now produce, converted again without it)",
      }),
    ),
  }),
);
/** An apply's outcome; a dry run's carries the document it would store (wasmesh apply --dry-run diffs it). */
const ApplyOutcome = Type.Object({
  ...WriteOutcome.properties,
  resource: Type.Optional(
    Type.Unsafe<Resource>({
      ...AnyResource,
      description:
        "dry run, created or configured: the document as it would be stored (converted, for what other meshes' documents produce)",
    }),
  ),
});
const ApplyResult = component(
  "ApplyResult",
  Type.Object({
    revision: Type.Integer({
      description: "store revision after the apply (the current one for a dry run or when nothing changed)",
    }),
    dryRun: Type.Boolean(),
    results: Type.Array(ApplyOutcome),
    warnings: Type.Array(ErrorDetail),
  }),
);

/** The path segment of a kind: lower-case plural ("meshpolicies" for MeshPolicy). */
export function pluralOf(kind: Kind): string {
  const lower = kind.toLowerCase();
  return lower.endsWith("y") ? `${lower.slice(0, -1)}ies` : `${lower}s`;
}

export interface ResourceDeps {
  store: ResourceStore;
  writer: Writer;
  maxBodyBytes: number;
  /** Workload leases; absent, PUT /v1/workloads/<name>/lease answers 503. */
  leases?: LeaseKeeper;
}

/** PUT /v1/workloads/<name>/lease: the body, and the answer. */
const LeaseRenewal = component(
  "LeaseRenewal",
  Type.Object(
    {
      ttlSeconds: Type.Optional(
        Type.Integer({
          ...LEASE_SECONDS,
          description: "how long from now (default the Workload's spec.leaseSeconds)",
        }),
      ),
    },
    { additionalProperties: false },
  ),
);
const Lease = component(
  "Lease",
  Type.Object({
    expiresAt: Type.String({ format: "date-time", description: "when the lease lapses unless renewed" }),
  }),
);

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

const describe = (v: unknown) => (v === undefined ? "nothing" : JSON.stringify(v));

/** kind and name of a raw document, when it has them, to locate its errors. */
function whereOf(value: unknown, document?: number): Omit<ErrorDetail, "path" | "message"> {
  const where: Omit<ErrorDetail, "path" | "message"> = document !== undefined ? { document } : {};
  if (!isRecord(value)) return where;
  if (typeof value.kind === "string") where.kind = value.kind;
  const metadata = value.metadata;
  if (isRecord(metadata) && typeof metadata.name === "string") where.name = metadata.name;
  return where;
}

type ResourceEnv = { Variables: { resource: Resource } };

/**
 * Parses the body as one resource of `kind` (JSON or YAML) and validates it; for PUT, its name
 * must be the one in the URL.
 */
function resourceBody(kind: Kind) {
  return createMiddleware<ResourceEnv>(async (c, next) => {
    const text = decodeText(await c.req.arrayBuffer());
    const value = isJson(mediaType(c.req.header("content-type"))) ? parseJson(text) : parseYamlDocument(text);
    const where = whereOf(value);
    if (isRecord(value) && value.kind !== kind) {
      throw invalid(`the body must be a ${kind}`, [
        {
          ...where,
          path: "kind",
          message: `must be "${kind}" on /v1/${pluralOf(kind)} (got ${describe(value.kind)})`,
        },
      ]);
    }
    const urlName = c.req.param("name");
    const metadata = isRecord(value) ? value.metadata : undefined;
    if (urlName !== undefined && isRecord(metadata) && metadata.name !== urlName) {
      throw invalid("metadata.name must equal the name in the URL", [
        { ...where, path: "metadata.name", message: `must be "${urlName}" (got ${describe(metadata.name)})` },
      ]);
    }
    const result = validateResource(value);
    if (!result.ok) throw invalid(`invalid ${kind}`, fieldDetails(result.errors, where));
    c.set("resource", result.resource);
    await next();
  });
}

function kindRoutes(kind: Kind, deps: ResourceDeps): Hono {
  const { store, writer } = deps;
  const router = new Hono();
  // A data-plane agent registers, renews and deletes its own Workload (a dataplane token: only of
  // its service, workloadGuard); it calls nothing else here.
  const forAgents: MiddlewareHandler = kind === "Workload" ? agentRoute : (_c, next) => next();
  const plural = pluralOf(kind);
  const schema = resourceSchemas[kind];
  const list = component(`${kind}List`, Type.Object({ items: Type.Array(schema) }));
  const tags = [kind];
  const nameParam = pathParam("name", `name of the ${kind}`);
  const resourceResponse = (description: string) => ({
    description,
    headers: { ETag: { description: "the resourceVersion, quoted", schema: { type: "string" as const } } },
    content: json(schema),
  });
  const body = { required: true, content: bodyOf(schema, MANIFEST_TYPES) };

  router.get(
    "/",
    describeRoute({
      operationId: `list${kind}`,
      summary: `List ${kind} resources`,
      tags,
      responses: { "200": { description: "all of them, by name", content: json(list) } },
    }),
    async (c) => c.json({ items: await store.list(kind) }),
  );

  router.get(
    "/:name",
    describeRoute({
      operationId: `get${kind}`,
      summary: `Get a ${kind}`,
      tags,
      parameters: [nameParam],
      responses: { "200": resourceResponse(`the ${kind}`), "404": errorResponse("no such resource") },
    }),
    async (c) => {
      const name = c.req.param("name");
      const resource = await store.get(kind, name);
      if (!resource) {
        // WasmPlugins name the built-in module as they name stored ones; say why it is not here.
        const builtin =
          kind === "WasmModule" && name === MESH_MODULE
            ? `: "${MESH_MODULE}" is the built-in module (build/mesh.wasm), part of the control plane rather than a stored WasmModule; WasmPlugins can name it, and it is never listed`
            : "";
        throw notFound(`${kind} '${name}' does not exist${builtin}`);
      }
      return c.json(resource, 200, { ETag: etag(resource.metadata.resourceVersion) });
    },
  );

  // A WasmModule describes bytes held by the module registry: created through POST /v1/modules/<name>
  // only (POST/PUT here answer 405 and say so, see index.ts); deleting one is fine.
  if (kind !== "WasmModule") {
    const writeErrors = {
      "400": errorResponse(
        "invalid resource, malformed body, broken reference, or a configuration a module refuses (the field it came from, the module's reason)",
      ),
      "409": errorResponse(
        "already exists (POST), stale resourceVersion (PUT), or a WasmPlugin's module changed during its check",
      ),
      "413": errorResponse("body too large"),
      "415": errorResponse("not JSON or YAML"),
    };

    router.post(
      "/",
      describeRoute({
        operationId: `create${kind}`,
        summary: `Create a ${kind} (409 if one of that name exists)`,
        tags,
        requestBody: body,
        responses: { "201": resourceResponse("created"), ...writeErrors },
      }),
      accepts(MANIFEST_TYPES),
      limit(deps.maxBodyBytes),
      resourceBody(kind),
      async (c) => {
        const resource = c.get("resource");
        const { outcomes } = await writer.write([{ op: "put", resource, expectedVersion: null }]);
        const stored = outcomes[0]?.resource;
        if (!stored) throw new Error("api: a create returned no resource");
        return c.json(stored, 201, {
          Location: `/v1/${plural}/${encodeURIComponent(resource.metadata.name)}`,
          ETag: etag(stored.metadata.resourceVersion),
        });
      },
    );

    router.put(
      "/:name",
      describeRoute({
        operationId: `put${kind}`,
        summary: `Create or replace a ${kind}`,
        description:
          "metadata.name must equal the URL's name. metadata.resourceVersion in the body, or If-Match, " +
          "is the version the stored resource must have (409 otherwise). Writing what is already stored " +
          "changes nothing (no new resourceVersion).",
        tags,
        parameters: [nameParam, ifMatchHeader],
        requestBody: body,
        responses: {
          "200": resourceResponse("replaced (or unchanged)"),
          "201": resourceResponse("created"),
          ...writeErrors,
        },
      }),
      forAgents,
      accepts(MANIFEST_TYPES),
      limit(deps.maxBodyBytes),
      resourceBody(kind),
      async (c) => {
        const resource = c.get("resource");
        const guard = workloadGuard(c.get("principal"));
        const version = expectedVersion(
          c.req.header("if-match"),
          resource.metadata.resourceVersion,
          "metadata.resourceVersion",
        );
        const { outcomes } = await writer.write(
          [{ op: "put", resource, ...(version !== undefined ? { expectedVersion: version } : {}) }],
          guard ? { guard } : {},
        );
        const outcome = outcomes[0];
        if (outcome?.op !== "put") throw new Error("api: a put returned no resource");
        // Registering again is a sign of life, even when nothing changed (so no store event).
        if (kind === "Workload") deps.leases?.written(outcome.resource);
        return c.json(outcome.resource, outcome.action === "created" ? 201 : 200, {
          ETag: etag(outcome.resource.metadata.resourceVersion),
        });
      },
    );
  }

  if (kind === "Workload") leaseRoute(router, deps, nameParam);

  router.delete(
    "/:name",
    describeRoute({
      operationId: `delete${kind}`,
      summary: `Delete a ${kind} (refused while other resources reference it)`,
      tags,
      parameters: [
        nameParam,
        ifMatchHeader,
        queryParam("resourceVersion", Type.String(), "precondition, as If-Match"),
      ],
      responses: {
        "200": { description: "deleted; the resource as it was", content: json(DeleteResult) },
        "400": errorResponse("still referenced by other resources"),
        "404": errorResponse("no such resource"),
        "409": errorResponse("stale resourceVersion"),
      },
    }),
    forAgents,
    async (c) => {
      const version = expectedVersion(
        c.req.header("if-match"),
        c.req.query("resourceVersion"),
        "?resourceVersion",
      );
      const guard = workloadGuard(c.get("principal"));
      const name = c.req.param("name");
      if (kind === "ImportedResource") {
        // Deleting an original deletes what it produced; the others are converted again without it.
        const record = await deps.store.get(kind, name);
        if (record === undefined) throw notFound(`${kind} '${name}' does not exist`);
        if (version !== undefined && record.metadata.resourceVersion !== version) {
          throw new ConflictError(kind, name, version, record.metadata.resourceVersion);
        }
        const { desired } = await importChanges(deps.store, [], { remove: [name] });
        const { revision, outcomes } = await writer.write(desired);
        const deleted = outcomes.find((o) => o.op === "delete" && o.kind === kind && o.name === name);
        const results = outcomes.flatMap((o): Static<typeof WriteOutcome>[] =>
          o.op === "delete"
            ? [{ kind: o.kind, name: o.name, action: "deleted" }]
            : o.action === "unchanged"
              ? []
              : [{ kind: o.kind, name: o.name, action: o.action }],
        );
        return c.json({ revision, deleted: deleted?.resource ?? record, results });
      }
      const { revision, outcomes } = await writer.write(
        [{ op: "delete", kind, name, ...(version !== undefined ? { expectedVersion: version } : {}) }],
        guard ? { guard } : {},
      );
      return c.json({ revision, deleted: outcomes[0]?.resource });
    },
  );

  return router;
}

/**
 * PUT /v1/workloads/<name>/lease: the data-plane agent keeps its Workload (spec.leaseSeconds) alive.
 * Kept in the control plane's memory (leases.ts): a renewal is no write, no revision, no push.
 */
function leaseRoute(router: Hono, deps: ResourceDeps, nameParam: ReturnType<typeof pathParam>): void {
  router.put(
    "/:name/lease",
    describeRoute({
      operationId: "renewWorkloadLease",
      summary: "Renew a leased Workload's lease",
      description:
        "A Workload with spec.leaseSeconds is deleted (one revision, pushed like any delete) when its lease " +
        "is not renewed for that long. The lease runs from now for ttlSeconds, by default spec.leaseSeconds " +
        "(body {}). Renewals are kept in the control plane's memory: no revision, no push. " +
        "When the control plane starts, every leased Workload gets a whole lease, as does a Workload when it " +
        "is written.",
      tags: ["Workload"],
      parameters: [nameParam],
      requestBody: { required: true, content: json(LeaseRenewal) },
      responses: {
        "200": { description: "renewed", content: json(Lease) },
        "400": errorResponse("malformed body, or ttlSeconds out of range"),
        "404": errorResponse("no such Workload (its lease lapsed, or it was deleted): register it again"),
        "409": errorResponse("the Workload has no spec.leaseSeconds"),
        "413": errorResponse("body too large"),
        "415": errorResponse("not JSON"),
        "503": errorResponse("this control plane keeps no leases"),
      },
    }),
    agentRoute,
    accepts(JSON_TYPES),
    limit(deps.maxBodyBytes),
    async (c) => {
      const leases = deps.leases;
      if (leases === undefined) throw new ApiError(503, "unavailable", "this control plane keeps no leases");
      const body = parseJson(decodeText(await c.req.arrayBuffer()));
      const errors = schemaErrors(LeaseRenewal, body);
      if (errors.length > 0) throw invalid("invalid lease renewal", fieldDetails(errors, {}));
      const { ttlSeconds } = body as Static<typeof LeaseRenewal>;
      const name = c.req.param("name");
      // Renewing keeps a Workload in the mesh: a dataplane token only its service's.
      const stored = await deps.store.get("Workload", name);
      if (stored !== undefined) workloadGuard(c.get("principal"))?.({ name, before: stored });
      const expiresAt = await leases.renew(name, ttlSeconds);
      return c.json({ expiresAt: expiresAt.toISOString() } satisfies Static<typeof Lease>);
    },
  );
}

/** One router per kind, each to be mounted at /v1/<plural>. */
export function resourceRoutes(deps: ResourceDeps): { prefix: string; router: Hono }[] {
  return KINDS.map((kind) => ({ prefix: `/v1/${pluralOf(kind)}`, router: kindRoutes(kind, deps) }));
}

type ManifestEnv = {
  Variables: { manifest: { resources: Resource[]; documents: boolean; foreign: IncomingDocument[] } };
};

/**
 * The apply body: multi-document YAML (through parseManifests, as the CLI reads files) or JSON
 * (one resource, an array, or `{ "items": [...] }` as GET returns lists). `documents` is whether
 * each resource is its own document index (JSON), so later errors can point at it.
 */
const manifestBody = createMiddleware<ManifestEnv>(async (c, next) => {
  const text = decodeText(await c.req.arrayBuffer());
  let resources: Resource[] = [];
  let documents = false;
  // Other meshes' documents (Istio, Kuma, Consul): converted by the handler, over what is stored.
  const foreign: IncomingDocument[] = [];
  if (isJson(mediaType(c.req.header("content-type")))) {
    const value = parseJson(text);
    const items =
      isRecord(value) && value.kind === undefined && Array.isArray(value.items)
        ? value.items
        : Array.isArray(value)
          ? value
          : [value];
    const details: ErrorDetail[] = [];
    items.forEach((item: unknown, document) => {
      if (isForeign(item)) {
        foreign.push({ doc: item, document });
        return;
      }
      const result = validateResource(item);
      if (result.ok) resources.push(result.resource);
      else details.push(...fieldDetails(result.errors, whereOf(item, document)));
    });
    if (details.length > 0) throw invalid(invalidMessage(details), details);
    documents = true;
  } else {
    const result = parseManifests(text, { claim: isForeign });
    if (!result.ok) {
      const details = result.errors.map((e): ErrorDetail => ({ ...e }));
      if (details.some((d) => d.message.startsWith("invalid YAML"))) {
        throw badRequest("the request body is not valid YAML", details);
      }
      throw invalid(invalidMessage(details), details);
    }
    resources = result.resources;
    foreign.push(...(result.claimed ?? []).map((d) => ({ doc: d.value, document: d.document })));
  }
  if (resources.length === 0 && foreign.length === 0) throw badRequest("the request body holds no resources");
  c.set("manifest", { resources, documents, foreign });
  await next();
});

/** The `namespace` query parameter: a DNS label, as Kubernetes names namespaces. */
function namespaceOf(value: string | undefined): { namespace?: string } {
  if (value === undefined || value === "") return {};
  if (!isDnsLabel(value)) throw badRequest(`namespace must be a DNS label (got '${value}')`);
  return { namespace: value };
}

function invalidMessage(details: readonly ErrorDetail[]): string {
  const count = new Set(details.map((d) => d.document)).size;
  return `${count} document${count === 1 ? " is" : "s are"} invalid; nothing was applied`;
}

/** The JSON apply body: one resource, a list of them, or `{ "items": [...] }` as GET answers. */
const Manifest = Type.Union([
  AnyResource,
  Type.Array(AnyResource),
  Type.Object({ items: Type.Array(AnyResource) }),
]);
const ManifestText = Type.String({
  description: "YAML documents separated by ---, each a resource or a list of them",
});

export function applyRoutes(deps: ResourceDeps): Hono {
  const router = new Hono();
  router.post(
    "/",
    describeRoute({
      operationId: "apply",
      summary: "Create or update many resources, all or nothing",
      description:
        "Each document is validated, then references over the resulting state; a document with " +
        "metadata.resourceVersion applies only over that version. Documents equal to what is stored " +
        "are 'unchanged' and not written; if nothing changes, the revision stays.",
      tags: ["apply"],
      parameters: [
        queryParam("dryRun", Type.Boolean(), "validate against the stored state and store nothing"),
        queryParam(
          "namespace",
          Type.String(),
          "the namespace of other meshes' documents that name none (their short hosts resolve in it)",
        ),
        queryParam(
          "strict",
          Type.Boolean(),
          "a field of another mesh's document that is not carried fails the apply",
        ),
      ],
      requestBody: { required: true, content: { ...json(Manifest), ...bodyOf(ManifestText, YAML_TYPES) } },
      responses: {
        "200": { description: "applied (or, for a dry run, would apply)", content: json(ApplyResult) },
        "400": errorResponse(
          "malformed body, invalid document, broken reference, or a configuration a module refuses (the field it came from, the module's reason); nothing stored",
        ),
        "409": errorResponse(
          "a document's resourceVersion is stale, or a WasmPlugin's module changed during its check; nothing stored",
        ),
        "413": errorResponse("body too large"),
        "415": errorResponse("not JSON or YAML"),
      },
    }),
    accepts(MANIFEST_TYPES),
    limit(deps.maxBodyBytes),
    manifestBody,
    async (c) => {
      const dryRun = parseDryRun(c.req.query("dryRun"));
      const { resources, documents, foreign } = c.get("manifest");
      const native = resources.map(
        (resource, document): Desired => ({
          op: "put" as const,
          resource,
          // A document read back from the API carries its version: apply it only over that version.
          ...(resource.metadata.resourceVersion !== undefined
            ? { expectedVersion: resource.metadata.resourceVersion }
            : {}),
          ...(documents ? { document } : {}),
        }),
      );
      const imported =
        foreign.length > 0
          ? await importChanges(deps.store, foreign, {
              ...namespaceOf(c.req.query("namespace")),
              strict: parseFlag(c.req.query("strict"), "strict"),
            })
          : { desired: [], warnings: [] };
      const desired = [...native, ...imported.desired];
      const result = await deps.writer.write(desired, { dryRun });
      const keptUnchanged = new Set(
        result.outcomes.flatMap((o, i) => {
          const d = desired[i];
          const kept = d?.op === "put" && d.imported === true && d.document === undefined;
          return kept && o.op === "put" && o.action === "unchanged" ? [`${o.kind}/${o.name}`] : [];
        }),
      );
      const body: Static<typeof ApplyResult> = {
        revision: result.revision,
        dryRun,
        // What originals no longer produce is deleted: listed too. What the originals kept from
        // earlier applies still produce, unchanged, is not this request's news.
        results: result.outcomes.flatMap((o): Static<typeof ApplyResult>["results"] => {
          if (o.op === "delete") return [{ kind: o.kind, name: o.name, action: "deleted" as const }];
          if (keptUnchanged.has(`${o.kind}/${o.name}`)) return [];
          return [
            {
              kind: o.kind,
              name: o.name,
              action: o.action,
              ...(dryRun && o.action !== "unchanged" ? { resource: o.resource as Resource } : {}),
            },
          ];
        }),
        // A reference warning about what a kept original produces, unchanged, was given when it was
        // applied; this request changes nothing there.
        warnings: [
          ...imported.warnings,
          ...result.warnings.filter(
            (w) => w.document !== undefined || !keptUnchanged.has(`${w.kind}/${w.name}`),
          ),
        ],
      };
      return c.json(body);
    },
  );
  return router;
}
