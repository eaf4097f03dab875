// The control plane's HTTP API (Hono): small routers per concern (resources per kind, apply,
// modules, system), composed here with the cross-cutting parts: request metrics, 404/405/500 in
// the one error shape, and the OpenAPI document generated from the operation each route declares.
import { Type } from "@sinclair/typebox";
import { Hono } from "hono";
import { methodNotAllowed } from "hono/method-not-allowed";
import { matchedRoutes } from "hono/route";
import { describeRoute } from "hono-openapi";
import type { CertificateAuthority } from "../ca/index.ts";
import { createEdgeConfigSource, type EdgeConfigSource } from "../edge/source.ts";
import { createEdgeStatusTable, EdgeStatus, type EdgeStatusTable } from "../edge/status.ts";
import type { ModuleCode } from "../envoy/index.ts";
import { MetricsRegistry, PROMETHEUS_CONTENT_TYPE } from "../metrics.ts";
import { DEFAULT_VALIDATION_TIMEOUT_MS } from "../modules/isolate.ts";
import type { ModuleRegistry } from "../modules/types.ts";
import { KINDS } from "../resources/index.ts";
import { type ConfigurationCheck, createRevisionSource } from "../revision/index.ts";
import { createTokens } from "../security/tokens.ts";
import type { ResourceStore } from "../store/index.ts";
import { createTrafficTable, type TrafficTable } from "../traffic/index.ts";
import { ProxyStatus } from "../xds/status.ts";
import { type ApiAuth, agentRoute, authenticate } from "./auth.ts";
import { caRoutes, createBundleTracker } from "./ca.ts";
import { certificateRoutes } from "./certificates.ts";
import { edgeRoutes } from "./edge.ts";
import { ApiError, type ErrorBody, toApiError } from "./errors.ts";
import { CONSOLE_ROUTE, consoleFiles, isConsolePath } from "./gui.ts";
import type { LeaseKeeper } from "./leases.ts";
import { DEFAULT_VALIDATIONS_PER_CLIENT, moduleRoutes } from "./modules.ts";
import { component, errorResponse, json, openApiDocument } from "./openapi.ts";
import { proxyRoutes, type SentConfig } from "./proxies.ts";
import { applyRoutes, resourceRoutes } from "./resources.ts";
import { tokenRoutes } from "./tokens.ts";
import { trafficRoutes } from "./traffic.ts";
import { createWriter } from "./writer.ts";

export { type ApiAuth, OPEN_PATHS, servesHost } from "./auth.ts";
export type { ErrorBody, ErrorCode, ErrorDetail } from "./errors.ts";
export { createLeaseKeeper, type LeaseKeeper, type LeaseKeeperOptions } from "./leases.ts";
export { openApiPath } from "./openapi.ts";
export { pluralOf } from "./resources.ts";
export { createWriter, type Writer } from "./writer.ts";

export interface ApiOptions {
  store: ResourceStore;
  /**
   * Who may call (auth.ts): the tokens requests are checked against and the host names served.
   * "none": no check at all, every request is an admin's (for tests of the routes themselves).
   */
  auth: ApiAuth | "none";
  /** Absent: module routes answer 503 with a clear message. */
  modules?: ModuleRegistry;
  /** The proxies connected to the xDS server, for GET /v1/status. */
  status?: () => ProxyStatus[];
  /** What the xDS server last sent a connected proxy, for GET /v1/proxies/<node>/config. */
  sentTo?: SentConfig;
  /** The module code of the revision the xDS server serves (names each Wasm filter's version there). */
  moduleCodes?: () => ReadonlyMap<string, ModuleCode>;
  /** The API registers its metrics into it and serves GET /metrics from it; default a private one. */
  metrics?: MetricsRegistry;
  /** Limit on resource and manifest bodies; default 1 MiB. */
  maxBodyBytes?: number;
  /** Limit on module uploads; default 32 MiB. */
  maxModuleBytes?: number;
  /** Module validations one client (remote address) may have running at once; default 2, then 429. */
  validationsPerClient?: number;
  /** Retry-After of that 429, in seconds; default the default validation time limit (10 s). */
  validationRetryAfterSeconds?: number;
  /** Called after every committed write (the server triggers an xDS update); never for dry runs or 4xx. */
  onChange?: (revision: number) => void;
  /** What GET /v1/edge/config serves; default translated from `store`, once per revision. */
  edge?: EdgeConfigSource;
  /**
   * What the edge workers' polls say of them (name, version served, last rejection), for GET
   * /v1/status; default a table of this API's own, with the default bounds.
   */
  edgeStatus?: EdgeStatusTable;
  /**
   * Loads what a write would configure into the modules before it is committed, refusing what they
   * refuse (revision/check.ts); without it, writes are checked by the schemas only.
   */
  check?: ConfigurationCheck;
  /**
   * Workload leases (createLeaseKeeper, over a writer of the same store), which PUT
   * /v1/workloads/<name>/lease renews; without it that route answers 503.
   */
  leases?: LeaseKeeper;
  /**
   * The mesh CA, which POST /v1/certificates signs workloads' CSRs with; without it the certificate
   * routes answer 503.
   */
  ca?: CertificateAuthority;
  /** Told after each CA rotation step taken through the API. */
  onCaRotation?: () => void;
  /**
   * The sidecars' traffic figures, which PUT /v1/proxies/<node>/stats keeps and GET /v1/traffic
   * serves; default a table of this API's own, with the default bounds.
   */
  traffic?: TrafficTable;
  /** The web console's built files, served at /gui (default build/gui). */
  consoleDir?: string;
  /** Reported by /healthz and the OpenAPI document. */
  version?: string;
  /** Where unexpected errors go (default console.error); responses never carry them. */
  log?: (message: string, error?: unknown) => void;
}

export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;
export const DEFAULT_MAX_MODULE_BYTES = 32 * 1024 * 1024;

const METHODS = new Set(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]);

const Status = component(
  "Status",
  Type.Object({
    proxies: Type.Array(component("ProxyStatus", ProxyStatus)),
    edges: Type.Array(component("EdgeStatus", EdgeStatus), {
      description: "edge workers that polled GET /v1/edge/config in the last 10 minutes",
    }),
  }),
);
const Health = component(
  "Health",
  Type.Object({ status: Type.Literal("ok"), revision: Type.Integer(), version: Type.String() }),
);

export function createApi(options: ApiOptions): Hono {
  const { store } = options;
  const version = options.version ?? "dev";
  const log = options.log ?? ((message: string, error?: unknown) => console.error(message, error ?? ""));
  const metrics = options.metrics ?? new MetricsRegistry();
  const writer = createWriter(store, options.onChange, log, options.check);
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;

  const requests = metrics.counter(
    "wasmesh_api_requests_total",
    "HTTP API requests by method, route pattern and status",
  );
  const resourceCount = metrics.gauge("wasmesh_resources", "Stored resources by kind (read at scrape)");
  let counts = new Map<string, number>();
  resourceCount.collect(() => KINDS.map((kind) => [{ kind }, counts.get(kind) ?? 0]));

  const app = new Hono();

  app.use("*", async function countRequests(c, next) {
    await next();
    // The route pattern, not the URL, keeps the label set bounded.
    const route =
      matchedRoutes(c).findLast((r) => r.method !== "ALL")?.path ??
      (isConsolePath(c.req.path) ? CONSOLE_ROUTE : "unmatched");
    const method = METHODS.has(c.req.method) ? c.req.method : "OTHER";
    requests.inc({ method, route, status: String(c.res.status) });
  });

  // Before everything else a route does: the Host, a browser's origin, the token and its role.
  app.use("*", authenticate(options.auth));
  // The web console's files at /gui (gui.ts; built into build/gui by `npm run build:gui`).
  app.use("*", consoleFiles(options.consoleDir));

  app.use(
    "*",
    methodNotAllowed({
      app,
      onMethodNotAllowed: (c, allowed) => {
        const wasmModuleWrite =
          c.req.path.startsWith("/v1/wasmmodules") && ["POST", "PUT"].includes(c.req.method);
        const message = wasmModuleWrite
          ? "WasmModule resources are written by uploading the module: use POST /v1/modules/<name>"
          : `${c.req.method} is not allowed on ${c.req.path} (allowed: ${allowed.join(", ")})`;
        const error = new ApiError(405, "method_not_allowed", message);
        return c.json(error.body(), 405, { Allow: allowed.join(", ") });
      },
    }),
  );

  const resourceDeps = { store, writer, maxBodyBytes, ...(options.leases ? { leases: options.leases } : {}) };
  for (const { prefix, router } of resourceRoutes(resourceDeps)) app.route(prefix, router);
  app.route("/v1/apply", applyRoutes(resourceDeps));
  app.route(
    "/v1/modules",
    moduleRoutes({
      store,
      modules: options.modules,
      writer,
      maxModuleBytes: options.maxModuleBytes ?? DEFAULT_MAX_MODULE_BYTES,
      validationsPerClient: options.validationsPerClient ?? DEFAULT_VALIDATIONS_PER_CLIENT,
      validationRetryAfterSeconds:
        options.validationRetryAfterSeconds ?? Math.ceil(DEFAULT_VALIDATION_TIMEOUT_MS / 1000),
      ...(options.check ? { check: options.check } : {}),
    }),
  );

  app.route(
    "/v1/tokens",
    tokenRoutes({
      tokens: options.auth === "none" ? createTokens(store) : options.auth.tokens,
      maxBodyBytes,
    }),
  );

  // A data-plane agent's certificate, for the service its token is bound to.
  const bundles = createBundleTracker();
  app.route(
    "/v1/certificates",
    certificateRoutes({
      ca: options.ca,
      caller: (c) => c.get("principal"),
      guards: [agentRoute],
      onBundleCheck: bundles.record,
    }),
  );
  // The CA's state and rotation, for operators (admin tokens: auth.ts).
  app.route(
    "/v1/ca",
    caRoutes({
      ca: options.ca,
      tracker: bundles,
      maxBodyBytes,
      ...(options.onCaRotation ? { onRotation: options.onCaRotation } : {}),
    }),
  );

  const edge =
    options.edge ??
    createEdgeConfigSource(createRevisionSource({ store, log: (line) => log(`api: ${line}`) }));
  const edgeStatus = options.edgeStatus ?? createEdgeStatusTable();
  app.route("/v1/edge", edgeRoutes({ edge, status: edgeStatus }));

  app.route(
    "/v1/proxies",
    proxyRoutes({
      ...(options.sentTo ? { sentTo: options.sentTo } : {}),
      ...(options.moduleCodes ? { modules: options.moduleCodes } : {}),
    }),
  );

  // Live traffic figures: the agents' reports in, the console's graph out.
  app.route("/", trafficRoutes({ traffic: options.traffic ?? createTrafficTable() }));

  const system = new Hono();
  const tags = ["system"];
  system.get(
    "/v1/status",
    describeRoute({
      operationId: "status",
      summary:
        "Proxies connected to the xDS server: what each was sent, acknowledged and last rejected; and the edge workers that poll the edge configuration: the version each serves and its last rejection",
      tags,
      responses: {
        "200": { description: "connected proxies and polling edge workers", content: json(Status) },
      },
    }),
    async (c) => {
      // The current edge version, to tell each worker current or behind; a failing store leaves
      // each with the version its last poll was answered with.
      let edges = edgeStatus.list();
      if (edges.length > 0) {
        const currentVersion = await edge.current().then(
          (state) => state.config.version,
          () => undefined,
        );
        edges = edgeStatus.list(currentVersion);
      }
      return c.json({ proxies: options.status?.() ?? [], edges });
    },
  );
  system.get(
    "/healthz",
    describeRoute({
      operationId: "health",
      summary: "Liveness and the store revision",
      tags,
      security: [],
      responses: {
        "200": { description: "healthy", content: json(Health) },
        "503": errorResponse("the store is closed or failing"),
      },
    }),
    async (c) => {
      let revision: number;
      try {
        revision = await store.revision();
      } catch (error) {
        log("api: health check failed", error);
        throw new ApiError(
          503,
          "unavailable",
          `the resource store is unavailable: ${(error as Error).message}`,
        );
      }
      return c.json({ status: "ok", revision, version });
    },
  );
  // Readiness, not liveness: a control plane whose store cannot be written still serves what it
  // has (reads, xDS) and should not be restarted, but should not take writes.
  system.get(
    "/readyz",
    describeRoute({
      operationId: "ready",
      summary: "Readiness: whether a write can be stored now (probed without writing)",
      security: [],
      description:
        "503 while the resource store cannot be written (a read-only database or file system, a full " +
        "disk, a lock another process holds), with the reason; writes answer the same 503 meanwhile. " +
        "/healthz stays 200: reads and xDS still work.",
      tags,
      responses: {
        "200": { description: "ready to take writes", content: json(Health) },
        "503": errorResponse("the store cannot be written now, and why"),
      },
    }),
    async (c) => {
      try {
        await store.checkWritable();
      } catch (error) {
        const known = toApiError(error);
        if (known !== undefined) throw known;
        log("api: readiness check failed", error);
        throw new ApiError(
          503,
          "unavailable",
          `the resource store is unavailable: ${(error as Error).message}`,
        );
      }
      return c.json({ status: "ok", revision: await store.revision(), version });
    },
  );
  system.get(
    "/metrics",
    describeRoute({
      operationId: "metrics",
      summary: "Prometheus metrics (text format 0.0.4); a read-only token is enough",
      tags,
      responses: {
        "200": { description: "metrics", content: { "text/plain": { schema: { type: "string" } } } },
      },
    }),
    async (c) => {
      try {
        const next = new Map<string, number>();
        for (const r of await store.list()) next.set(r.kind, (next.get(r.kind) ?? 0) + 1);
        counts = next;
      } catch (error) {
        // Metrics matter most when something is wrong: serve the rest, with the last counts.
        log("api: cannot count resources for /metrics", error);
      }
      return c.body(metrics.render(), 200, { "Content-Type": PROMETHEUS_CONTENT_TYPE });
    },
  );
  let openapi: string | undefined;
  system.get(
    "/v1/openapi.json",
    describeRoute({
      operationId: "openapi",
      summary: "This document",
      tags,
      responses: { "200": { description: "OpenAPI 3.1", content: json(Type.Object({})) } },
    }),
    async (c) => {
      // Generated on first use: by then every route is registered.
      openapi ??= JSON.stringify(await openApiDocument(app, version));
      return c.body(openapi, 200, { "Content-Type": "application/json" });
    },
  );
  app.route("/", system);

  app.notFound((c) => {
    const error = new ApiError(404, "not_found", `no route for ${c.req.method} ${c.req.path}`);
    return c.json(error.body(), 404);
  });

  app.onError((err, c) => {
    const error = toApiError(err);
    if (error) return c.json(error.body(), error.status, error.headers);
    log(`api: ${c.req.method} ${c.req.path} failed`, err);
    const body: ErrorBody = { error: { code: "internal", message: "internal error", details: [] } };
    return c.json(body, 500);
  });

  return app;
}
