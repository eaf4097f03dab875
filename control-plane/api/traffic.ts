// Live traffic figures over the API (traffic/ keeps and aggregates them): PUT
// /v1/proxies/<node>/stats, an agent's report of its Envoy's counters, and GET /v1/traffic, the
// graph the web console draws (a read-only token is enough). A dataplane token reports only as its
// own service, and only for a node no other service reports as: the figures of a source service
// come from that service's sidecars alone.
import { Type } from "@sinclair/typebox";
import { Hono } from "hono";
import { describeRoute } from "hono-openapi";
import { StatsReportBody } from "../../schema/traffic-report.ts";
import { MAX_REPORT_BYTES, TrafficRefusal, type TrafficTable } from "../traffic/index.ts";
import { agentRoute, forbidden } from "./auth.ts";
import { accepts, decodeText, JSON_TYPES, limit, parseJson } from "./body.ts";
import { ApiError } from "./errors.ts";
import { component, errorResponse, json, pathParam } from "./openapi.ts";

export interface TrafficDeps {
  traffic: TrafficTable;
}

const Subset = Type.Union([Type.Record(Type.String(), Type.String()), Type.Null()], {
  description: "the destination's subset selector; null for the whole service",
});

const StatsReport = component("StatsReport", StatsReportBody);

const Traffic = component(
  "Traffic",
  Type.Object({
    windowSeconds: Type.Number({
      description: "the time the rates are measured over (the longest between a proxy's last two reports)",
    }),
    generatedAt: Type.String({ format: "date-time" }),
    edges: Type.Array(
      Type.Object({
        source: Type.String({ description: "the calling service" }),
        destination: Type.String({ description: "the called service" }),
        subset: Subset,
        cluster: Type.String(),
        requestsPerSecond: Type.Number(),
        errorsPerSecond: Type.Number({ description: "answers 5xx per second" }),
        requests: Type.Integer({ description: "cumulative, summed over the source's proxies" }),
        errors: Type.Integer(),
      }),
    ),
    circuits: Type.Array(
      Type.Object({
        service: Type.String(),
        subset: Subset,
        cluster: Type.String(),
        open: Type.Boolean({ description: "open (or half-open) in at least one proxy" }),
        proxies: Type.Array(Type.String(), { description: "the proxies where it is open" }),
      }),
    ),
    denials: Type.Array(Type.Object({ source: Type.String(), rule: Type.String(), count: Type.Integer() })),
    proxies: Type.Array(
      Type.Object({
        node: Type.String(),
        service: Type.String(),
        reportedAt: Type.String({ format: "date-time" }),
      }),
    ),
  }),
);

export function trafficRoutes(deps: TrafficDeps): Hono {
  const { traffic } = deps;
  const app = new Hono();
  app.put(
    "/v1/proxies/:node/stats",
    describeRoute({
      operationId: "reportProxyStats",
      summary: "A sidecar's agent reports its Envoy's traffic counters (cumulative)",
      description:
        "Sent by `wasmesh dataplane run` every --stats-interval seconds (default 5). The control plane keeps " +
        "each proxy's last two reports in memory, rates being their difference over the time between them, " +
        "and forgets a proxy after three intervals without one. A dataplane token reports only as its own " +
        "service, for a node no other service reports as.",
      tags: ["traffic"],
      parameters: [pathParam("node", "the proxy's node id (the agent's --name)")],
      requestBody: { required: true, content: json(StatsReport) },
      responses: {
        "204": { description: "kept" },
        "400": errorResponse("a malformed report: the field named"),
        "403": errorResponse("a dataplane token of another service"),
        "413": errorResponse("the body, or a field's entries (named), over the limit"),
        "415": errorResponse("not JSON"),
        "429": errorResponse("the control plane keeps as many proxies' figures as it may"),
      },
    }),
    agentRoute,
    accepts(JSON_TYPES),
    limit(MAX_REPORT_BYTES),
    async (c) => {
      const node = c.req.param("node");
      const body = parseJson(decodeText(await c.req.arrayBuffer()));
      const principal = c.get("principal");
      if (principal.role === "dataplane") {
        const own = principal.service;
        const claimed = (body as { service?: unknown } | null)?.service;
        // A report without a service is refused below, naming the field.
        if (typeof claimed === "string" && claimed !== own) {
          throw forbidden(
            `token ${principal.tokenId} is a dataplane token of service '${own}': it reports only as that service (the report says '${String(claimed)}')`,
          );
        }
        const current = traffic.serviceOf(node);
        if (current !== undefined && current !== own) {
          throw forbidden(
            `token ${principal.tokenId} is a dataplane token of service '${own}': node '${node}' reports as service '${current}'`,
          );
        }
      }
      try {
        traffic.report(node, body);
      } catch (error) {
        if (!(error instanceof TrafficRefusal)) throw error;
        const code =
          error.status === 413 ? "too_large" : error.status === 429 ? "too_many_requests" : "invalid";
        throw new ApiError(error.status, code, error.message, [
          { path: error.field, message: error.message },
        ]);
      }
      return c.body(null, 204);
    },
  );
  app.get(
    "/v1/traffic",
    describeRoute({
      operationId: "traffic",
      summary: "Live traffic: who calls whom with request and error rates, circuits, denials",
      description:
        "Aggregated from the sidecars' last reports (PUT /v1/proxies/<node>/stats): an edge per source service " +
        "and destination cluster, its counts summed over the source's proxies. A read-only token is enough.",
      tags: ["traffic"],
      responses: { "200": { description: "the traffic graph", content: json(Traffic) } },
    }),
    (c) => c.json(traffic.view()),
  );
  return app;
}
