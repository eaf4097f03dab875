// GET /v1/edge/config: the edge workers' configuration (schema/edge-config.ts), with its content
// hash as the ETag so that a worker revalidating with If-None-Match gets a bodiless 304 until the
// configuration really changes (a write that leaves the edge's view alone keeps the ETag).
import { Hono } from "hono";
import { describeRoute } from "hono-openapi";
import { EdgeConfig } from "../../schema/edge-config.ts";
import type { EdgeConfigSource } from "../edge/source.ts";
import type { EdgeStatusTable } from "../edge/status.ts";
import { component, errorResponse, json } from "./openapi.ts";

const Config = component("EdgeConfig", EdgeConfig);

export interface EdgeDeps {
  edge: EdgeConfigSource;
  /** Where polls naming their worker (Wasmesh-Edge-Name) are recorded, for GET /v1/status. */
  status?: EdgeStatusTable;
}

/** Whether an If-None-Match header matches `etag` (weak comparison, as RFC 9110 wants for it). */
export function noneMatchHits(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  return header
    .split(",")
    .map((tag) => tag.trim().replace(/^W\//, ""))
    .some((tag) => tag === "*" || tag === etag);
}

export function edgeRoutes(deps: EdgeDeps): Hono {
  const router = new Hono();

  router.get(
    "/config",
    describeRoute({
      operationId: "getEdgeConfig",
      summary:
        "The edge workers' configuration: the routing filter's configuration for traffic from outside the mesh, and the origins of its clusters",
      tags: ["edge"],
      parameters: [
        {
          name: "If-None-Match",
          in: "header",
          required: false,
          description: "The ETag of the configuration the caller holds: 304 while it is current",
          schema: { type: "string" },
        },
        {
          name: "Wasmesh-Edge-Name",
          in: "header",
          required: false,
          description:
            "The edge worker's name (its EDGE_NAME, a DNS label): the poll is recorded for GET /v1/status",
          schema: { type: "string", maxLength: 63 },
        },
        {
          name: "Wasmesh-Edge-Rejected",
          in: "header",
          required: false,
          description:
            "Why the worker refused the document If-None-Match names (it keeps serving its last good one); at most 512 bytes are kept",
          schema: { type: "string" },
        },
      ],
      responses: {
        "200": {
          description: "the current configuration; ETag is its version, quoted",
          headers: {
            ETag: { description: '"<version>"', schema: { type: "string" } },
            "Cache-Control": { description: "no-cache", schema: { type: "string" } },
            "Wasmesh-Revision": {
              description: "the store revision it was translated from (the xDS version of the same write)",
              schema: { type: "string" },
            },
          },
          content: json(Config),
        },
        "304": { description: "If-None-Match names the current version; no body" },
        "503": errorResponse("the store is closed or failing"),
      },
    }),
    async (c) => {
      const state = await deps.edge.current();
      // no-cache: caches may keep it but must revalidate, which is what the ETag is for.
      const headers = {
        ETag: state.etag,
        "Cache-Control": "no-cache",
        "Wasmesh-Revision": String(state.revision),
      };
      const name = c.req.header("wasmesh-edge-name");
      if (name !== undefined && deps.status) {
        deps.status.record({
          name,
          tokenId: c.get("principal")?.tokenId ?? "none",
          ifNoneMatch: c.req.header("if-none-match"),
          rejected: c.req.header("wasmesh-edge-rejected"),
          currentVersion: state.config.version,
        });
      }
      if (noneMatchHits(c.req.header("if-none-match"), state.etag)) return c.body(null, 304, headers);
      return c.body(state.body, 200, { ...headers, "Content-Type": "application/json" });
    },
  );

  return router;
}
