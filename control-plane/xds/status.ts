// What `wasmesh status` and GET /v1/status show of the proxies connected to the xDS server.
import type { ProxyIdentity } from "../envoy/index.ts";

export interface Rejection {
  typeUrl: string;
  /** The version Envoy refused. */
  version: string;
  /** Envoy's error_detail.message. */
  message: string;
  /** ISO 8601. */
  at: string;
}

export interface ProxyStatus {
  nodeId: string;
  service: string;
  labels: Record<string, string>;
  protocol: "sotw" | "delta";
  /** Remote address of the stream. */
  peer: string;
  /** ISO 8601. */
  connectedAt: string;
  /** The snapshot version (store revision) last sent, and the last one the proxy ACKed, per type URL. */
  sent: Record<string, string>;
  acked: Record<string, string>;
  /**
   * The newest snapshot version whose configuration this proxy runs for every type it subscribes
   * to: what it ACKed, carried forward through updates that changed nothing for it (and so sent it
   * nothing). Absent until every subscribed type has been ACKed once.
   */
  syncedVersion?: string;
  /** The newest NACK; kept after a later ACK so that `wasmesh status` can still explain it. */
  lastRejection?: Rejection;
  nacks: number;
}

export type { ProxyIdentity };
