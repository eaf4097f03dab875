// What `wasmesh status` and GET /v1/status show of the proxies connected to the xDS server, defined
// once: the types come from these TypeBox definitions, which are also the JSON Schema the API publishes.
import { type Static, Type } from "@sinclair/typebox";
import type { ProxyIdentity } from "../envoy/index.ts";

const versions = (description: string) =>
  Type.Record(Type.String(), Type.String(), { description: `${description}, by type URL` });
const instant = Type.String({ format: "date-time" });

export const Rejection = Type.Object({
  typeUrl: Type.String(),
  version: Type.String({ description: "the version Envoy refused" }),
  message: Type.String({ description: "Envoy's error_detail.message" }),
  at: instant,
});
export type Rejection = Static<typeof Rejection>;

export const ProxyStatus = Type.Object({
  nodeId: Type.String(),
  service: Type.String(),
  labels: Type.Record(Type.String(), Type.String()),
  protocol: Type.Union([Type.Literal("sotw"), Type.Literal("delta")]),
  peer: Type.String({ description: "remote address of the stream" }),
  connectedAt: instant,
  sent: versions("snapshot version (store revision) last sent"),
  acked: versions("snapshot version last acknowledged"),
  /**
   * What it ACKed, carried forward through updates that changed nothing for it (and so sent it
   * nothing). Absent until every subscribed type has been ACKed once.
   */
  syncedVersion: Type.Optional(
    Type.String({
      description: "newest snapshot version the proxy runs for every type it subscribes to",
    }),
  ),
  /** Kept after a later ACK so that `wasmesh status` can still explain it. */
  lastRejection: Type.Optional(Rejection),
  nacks: Type.Integer({ minimum: 0 }),
});
export type ProxyStatus = Static<typeof ProxyStatus>;

export type { ProxyIdentity };
