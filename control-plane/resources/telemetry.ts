// Which Tracing and AccessLog apply to a service's sidecars, said once for the translation
// (translate/telemetry.ts) and for `wasmesh describe service`: a service's own over the mesh's.
import { DEFAULT_RANDOM_PERCENT, type Sampling, type TraceTag } from "../../schema/telemetry.ts";
import type { AccessLog, Resource, Tracing, TracingProtocol } from "./schema.ts";

/** The tracing that applies to one service: the mesh's, with the service's override over it. */
export interface EffectiveTracing {
  backend: { protocol: TracingProtocol; url: string };
  sampling: Sampling;
  tags: TraceTag[];
  /** The service's own Tracing, when it has one. */
  own: Tracing | undefined;
  /** The mesh's Tracing (no spec.service), when there is one. */
  mesh: Tracing | undefined;
}

/**
 * The mesh's Tracing with the service's own over it, field by field (an override without a backend
 * inherits the mesh's); `service` undefined: the mesh's alone, as the edge gets it. None without a
 * backend.
 */
export function effectiveTracing(
  resources: readonly Resource[],
  service: string | undefined,
): EffectiveTracing | undefined {
  const tracings = resources.filter((r): r is Tracing => r.kind === "Tracing");
  const mesh = tracings.find((t) => t.spec.service === undefined);
  const own = service === undefined ? undefined : tracings.find((t) => t.spec.service === service);
  const backend = own?.spec.backend ?? mesh?.spec.backend;
  if (backend === undefined) return undefined;
  const pick = <K extends keyof Tracing["spec"]>(key: K) => own?.spec[key] ?? mesh?.spec[key];
  return {
    backend,
    sampling: pick("sampling") ?? { randomPercent: DEFAULT_RANDOM_PERCENT },
    tags: pick("tags") ?? [],
    own,
    mesh,
  };
}

/** The service's own AccessLog, else the mesh's (either may have no backends: logs off). */
export function applicableAccessLog(resources: readonly Resource[], service: string): AccessLog | undefined {
  const logs = resources.filter((r): r is AccessLog => r.kind === "AccessLog");
  return logs.find((a) => a.spec.service === service) ?? logs.find((a) => a.spec.service === undefined);
}
