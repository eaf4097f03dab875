// What the control plane serves to edge workers (GET /v1/edge/config, or a KV key it writes), and
// what the worker validates before it replaces its running configuration. Defined once, imported
// by the control plane's edge generator and by the worker.
import { type Static, Type } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { type ConfigError, FilterConfig, schemaErrors, validateFilterConfig } from "./filter-config.ts";
import { EdgeTracing } from "./telemetry.ts";

const strict = { additionalProperties: false } as const;

/** An origin base URL the worker forwards to: http(s), no query or fragment. */
const OriginUrl = Type.String({
  pattern: "^https?://[^\\s/?#]+(/[^\\s?#]*)?$",
  maxLength: 2048,
  description: "http(s) base URL; the request's path and query are appended",
});

export const EdgeConfig = Type.Object(
  {
    /** Changes whenever anything below changes (the control plane's revision and a content hash). */
    version: Type.String({ minLength: 1, maxLength: 128 }),
    /** The mesh filter's plugin configuration, exactly as a sidecar's routing filter gets it. */
    filter: FilterConfig,
    /**
     * Where each cluster the filter can choose is reached from the edge: its origins, used
     * round-robin. Every route destination is listed. An empty list is a cluster without origins
     * (it selects no Workload): the worker answers the requests routed to it with 503 "no healthy
     * upstream", as Envoy does for a cluster without endpoints, and serves every other route.
     */
    origins: Type.Record(Type.String({ pattern: "^[\\x21-\\x7e]{1,200}$" }), Type.Array(OriginUrl), {
      ...strict,
    }),
    /** Present when a Tracing resource applies to the edge (schema/telemetry.ts). */
    tracing: Type.Optional(EdgeTracing),
  },
  { ...strict, $id: "https://wasmesh.io/schemas/edge-config.json", title: "wasmesh edge configuration" },
);
export type EdgeConfig = Static<typeof EdgeConfig>;

export type EdgeValidationResult = { ok: true; config: EdgeConfig } | { ok: false; errors: ConfigError[] };

/** Structural validation with field paths (the filter part is checked as validateFilterConfig does). */
export function validateEdgeConfig(value: unknown): EdgeValidationResult {
  if (Value.Check(EdgeConfig, value)) {
    // Every cluster a route can pick is listed (with no origins, it is a per-request 503): a name
    // the map lacks is a mistake in the document, such as a misspelt cluster, not a state.
    const config = value;
    const errors: ConfigError[] = [];
    (config.filter.routes ?? []).forEach((route, i) => {
      route.destinations.forEach((d, j) => {
        // hasOwn: a cluster named like an Object.prototype member ("constructor") is not listed.
        if (!Object.hasOwn(config.origins, d.cluster)) {
          errors.push({
            path: `filter.routes[${i}].destinations[${j}].cluster`,
            message: `cluster '${d.cluster}' is not in origins (list it with [] when it has no origins)`,
          });
        }
      });
    });
    return errors.length === 0 ? { ok: true, config } : { ok: false, errors };
  }
  const errors = schemaErrors(EdgeConfig, value);
  // Report the filter part with the filter schema's own messages and paths, prefixed.
  if (typeof value === "object" && value !== null && "filter" in value) {
    const filter = validateFilterConfig((value as { filter: unknown }).filter);
    if (!filter.ok) {
      return {
        ok: false,
        errors: [
          ...errors.filter((e) => !e.path.startsWith("filter")),
          ...filter.errors.map((e) => ({ ...e, path: e.path === "(root)" ? "filter" : `filter.${e.path}` })),
        ],
      };
    }
  }
  return { ok: false, errors };
}
