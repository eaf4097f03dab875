// What a data-plane agent reports of its Envoy's counters (PUT /v1/proxies/<node>/stats), defined
// once: the agent builds it (dataplane/stats.ts), the control plane keeps it (control-plane/traffic/)
// and its API describes it (control-plane/api/traffic.ts). Counters are cumulative since the
// sidecar's Envoy started: the control plane's rates are the difference between two reports.
import { Type } from "@sinclair/typebox";

/** How often an agent reports unless told otherwise, and the interval the control plane assumes. */
export const DEFAULT_STATS_INTERVAL_SECONDS = 5;
/** The most clusters, circuits and denials, each, one report may carry. */
export const MAX_REPORT_ENTRIES = 256;

/** One report, as the control plane keeps it (circuits and denials may be left out on the wire). */
export interface StatsReport {
  service: string;
  /** When the agent read the counters (RFC 3339). */
  at: string;
  /** Per outbound cluster: requests sent, and answers 5xx. */
  clusters: Record<string, { requests: number; errors5xx: number }>;
  /** Per outbound cluster with a CircuitBreaker: open now (half-open included), requests refused. */
  circuits: Record<string, { open: boolean; rejected: number }>;
  /** Requests the routing filter denied, per rule (an AccessRule, a default deny). */
  denials: Record<string, number>;
}

const Count = Type.Integer({ minimum: 0 });

/** The report's body as the API takes it (its OpenAPI document's StatsReport). */
export const StatsReportBody = Type.Object(
  {
    service: Type.String({ description: "the reporting proxy's service (a dataplane token's own)" }),
    at: Type.String({ format: "date-time", description: "when the counters were read" }),
    clusters: Type.Record(
      Type.String(),
      Type.Object({ requests: Count, errors5xx: Count }, { additionalProperties: false }),
      {
        description: `per outbound cluster (outbound|<service>[|<k=v,…>]): cumulative counts, at most ${MAX_REPORT_ENTRIES}`,
      },
    ),
    circuits: Type.Optional(
      Type.Record(
        Type.String(),
        Type.Object({ open: Type.Boolean(), rejected: Count }, { additionalProperties: false }),
        { description: `per outbound cluster with a CircuitBreaker, at most ${MAX_REPORT_ENTRIES}` },
      ),
    ),
    denials: Type.Optional(
      Type.Record(Type.String(), Count, {
        description: `requests denied per rule, at most ${MAX_REPORT_ENTRIES}`,
      }),
    ),
  },
  { additionalProperties: false },
);
