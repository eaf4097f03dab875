// Tracing and access logs (issue 18) for one sidecar: what applies to its service (the mesh's
// Tracing or AccessLog, or the service's own), translated into the pieces Envoy takes:
// - the tracing provider (OpenTelemetry over gRPC or HTTP, or Zipkin) on both listeners' HTTP
//   connection managers, and a cluster for the collector;
// - the sampling percentages and span tags on every route, which travel over RDS: turning tracing
//   up, down or off changes no listener, so no connection is drained;
// - the access loggers on both connection managers (a change drains, as any listener change does).
// And, for edge workers, the tracing section of the edge configuration (schema/telemetry.ts).
import { DEFAULT_ACCESS_LOG_FORMAT, type EdgeTracing, type TraceTag } from "../../schema/telemetry.ts";
import type {
  Cluster,
  CustomTag,
  AccessLog as EnvoyAccessLog,
  FractionalPercent,
  HttpConnectionManager_Tracing,
  Tracing as RouteTracing,
  XdsResource,
} from "../envoy/index.ts";
import { duration, EXTENSION_TYPE, envoyEnum } from "../envoy/index.ts";
import {
  type AccessLog,
  applicableAccessLog,
  type EffectiveTracing,
  effectiveTracing,
} from "../resources/index.ts";
import { collectorCluster } from "./clusters.ts";
import type { Mesh } from "./mesh.ts";

/** What a sidecar's listeners and routes carry for tracing and access logs. */
export interface SidecarTelemetry {
  /** The connection managers' `tracing` (the provider only; sampling is on the routes). */
  tracing?: HttpConnectionManager_Tracing;
  /** Each route's `tracing`: sampling and tags. */
  routeTracing?: RouteTracing;
  /** The connection managers' `access_log`. */
  accessLog?: EnvoyAccessLog[];
  /** The collector's cluster. */
  clusters: XdsResource<Cluster>[];
}

/** Envoy's export timeout for a batch of spans: a slow collector delays spans, never requests. */
const EXPORT_TIMEOUT_MS = 5_000;

export function sidecarTelemetry(mesh: Mesh, service: string): SidecarTelemetry {
  const tracing = effectiveTracing(mesh.tracing, service);
  const applicable = applicableAccessLog(mesh.accessLogs, service);
  const log = applicable !== undefined && applicable.spec.backends.length > 0 ? applicable : undefined;
  const out: SidecarTelemetry = { clusters: [] };
  if (tracing !== undefined) {
    const collector = collectorOf(tracing.backend);
    out.clusters.push(collector.cluster);
    out.tracing = { provider: provider(tracing.backend, collector.name, service) };
    out.routeTracing = routeTracing(tracing);
  }
  if (log !== undefined) out.accessLog = accessLoggers(log);
  return out;
}

/** The collector as a cluster named after its address, so that sidecars of every service share it. */
function collectorOf(backend: EffectiveTracing["backend"]): { name: string; cluster: XdsResource<Cluster> } {
  const url = new URL(backend.url);
  const tls = url.protocol === "https:";
  const port = url.port !== "" ? Number(url.port) : tls ? 443 : 80;
  // URL keeps IPv6 in brackets; Envoy's socket address takes it bare.
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  const name = `tracing|${backend.protocol}|${url.host}`;
  return {
    name,
    cluster: {
      name,
      resource: collectorCluster(name, host, port, {
        http2: backend.protocol === "otlp-grpc",
        tlsServerName: tls ? host : undefined,
      }),
    },
  };
}

function provider(
  backend: EffectiveTracing["backend"],
  cluster: string,
  service: string,
): HttpConnectionManager_Tracing["provider"] {
  const url = new URL(backend.url);
  switch (backend.protocol) {
    case "otlp-grpc":
      return {
        name: "envoy.tracers.opentelemetry",
        typed_config: {
          "@type": EXTENSION_TYPE.openTelemetryTracer,
          grpc_service: { envoy_grpc: { cluster_name: cluster }, timeout: duration(EXPORT_TIMEOUT_MS) },
          service_name: service,
        },
      };
    case "otlp-http":
      return {
        name: "envoy.tracers.opentelemetry",
        typed_config: {
          "@type": EXTENSION_TYPE.openTelemetryTracer,
          http_service: {
            http_uri: { uri: backend.url, cluster, timeout: duration(EXPORT_TIMEOUT_MS) },
          },
          service_name: service,
        },
      };
    case "zipkin":
      // Zipkin names the service after the node's cluster, which the bootstrap sets to the service.
      return {
        name: "envoy.tracers.zipkin",
        typed_config: {
          "@type": EXTENSION_TYPE.zipkinTracer,
          collector_cluster: cluster,
          collector_endpoint: url.pathname,
          collector_hostname: url.host,
          collector_endpoint_version: envoyEnum(
            "envoy.config.trace.v3.ZipkinConfig.CollectorEndpointVersion",
            "HTTP_JSON",
          ),
          trace_id_128bit: true,
          // Each hop its own span, as OpenTelemetry does: Jaeger shows client and server apart.
          shared_span_context: { value: false },
        },
      };
  }
}

/**
 * A percentage as Envoy's FractionalPercent per ten thousand: Envoy draws the sampling decision from
 * the x-request-id modulo 10,000, so a finer denominator would sample every request (MILLION with
 * 10% is 100,000 of a million, above any draw); a hundredth of a percent is its resolution.
 */
function fraction(percent: number): FractionalPercent {
  return {
    numerator: Math.round(percent * 100),
    denominator: envoyEnum("envoy.type.v3.FractionalPercent.DenominatorType", "TEN_THOUSAND"),
  };
}

function routeTracing(tracing: EffectiveTracing): RouteTracing {
  const { sampling, tags } = tracing;
  return {
    random_sampling: fraction(sampling.randomPercent),
    client_sampling: fraction(sampling.clientPercent ?? 100),
    overall_sampling: fraction(sampling.overallPercent ?? 100),
    ...(tags.length > 0 ? { custom_tags: tags.map(customTag) } : {}),
  };
}

function customTag(tag: TraceTag): CustomTag {
  if (tag.header !== undefined) {
    return {
      tag: tag.name,
      request_header: {
        name: tag.header,
        ...(tag.default !== undefined ? { default_value: tag.default } : {}),
      },
    };
  }
  return { tag: tag.name, literal: { value: tag.literal ?? "" } };
}

function accessLoggers(log: AccessLog): EnvoyAccessLog[] {
  const format = {
    text_format_source: { inline_string: withNewline(log.spec.format ?? DEFAULT_ACCESS_LOG_FORMAT) },
  };
  return log.spec.backends.map((backend) =>
    backend.file !== undefined
      ? {
          name: "envoy.access_loggers.file",
          typed_config: {
            "@type": EXTENSION_TYPE.fileAccessLog,
            path: backend.file.path,
            log_format: format,
          },
        }
      : {
          name: "envoy.access_loggers.stdout",
          typed_config: { "@type": EXTENSION_TYPE.stdoutAccessLog, log_format: format },
        },
  );
}

/** One line per request: Envoy writes the format as it is, so a format without "\n" would run on. */
const withNewline = (format: string) => (format.endsWith("\n") ? format : `${format}\n`);

/** The serviceName of edge workers' spans when the worker has no EDGE_NAME. */
export const EDGE_SERVICE_NAME = "wasmesh-edge";

/**
 * The edge's tracing: the mesh's Tracing (edge traffic belongs to no service), exported to its
 * `edge.url`, or to its backend when that speaks OTLP/HTTP; none otherwise.
 */
export function edgeTracing(mesh: Mesh): EdgeTracing | undefined {
  const tracing = effectiveTracing(mesh.tracing, undefined);
  if (tracing === undefined) return undefined;
  const url =
    tracing.mesh?.spec.edge?.url ??
    (tracing.backend.protocol === "otlp-http" ? tracing.backend.url : undefined);
  if (url === undefined) return undefined;
  return {
    url,
    serviceName: EDGE_SERVICE_NAME,
    sampling: tracing.sampling,
    ...(tracing.tags.length > 0 ? { tags: tracing.tags } : {}),
  };
}
