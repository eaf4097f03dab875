// The tables `wasmesh get` prints: for each kind the columns a user looks for (as kubectl's printer
// columns), and with `-o wide` more of them. Everything else is in `-o yaml`.
import type { Kind, Resource } from "../resources/schema.ts";

type Doc<K extends Kind> = Extract<Resource, { kind: K }>;

interface Column<T> {
  header: string;
  /** `wide`: the table is `-o wide` (a column may show more of its value there). */
  cell: (resource: T, wide: boolean) => string;
  /** Shown only with `-o wide`, after AGE. */
  wideOnly?: boolean;
}

/** kubectl's mark for an empty value. */
const NONE = "<none>";

function labels(map: Record<string, string> | undefined): string {
  const pairs = Object.entries(map ?? {});
  return pairs.length === 0 ? NONE : pairs.map(([k, v]) => `${k}=${v}`).join(",");
}

/** A service and, when it has one, its subset: `reviews{version=v2}`. */
function target(service: string, subset: Record<string, string> | undefined): string {
  return subset ? `${service}{${labels(subset)}}` : service;
}

/** 2000 → 2s, 300000 → 5m, 1500 → 1.5s, 250 → 250ms. */
function duration(ms: number): string {
  if (ms >= 3_600_000 && ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms >= 60_000 && ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms >= 1000) return `${ms / 1000}s`;
  return `${ms}ms`;
}

function size(bytes: number): string {
  if (bytes < 1024) return `${bytes}B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)}KiB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)}MiB`;
}

const COLUMNS: { [K in Kind]: Column<Doc<K>>[] } = {
  Service: [
    {
      header: "PORTS",
      // As kubectl: 9080/http; wide names them, http:9080/http.
      cell: (r, wide) =>
        r.spec.ports.map((p) => `${wide ? `${p.name}:` : ""}${p.port}/${p.protocol}`).join(","),
    },
  ],
  Workload: [
    { header: "SERVICE", cell: (r) => r.spec.service },
    { header: "ADDRESS", cell: (r) => r.spec.address },
    { header: "PORT", cell: (r) => String(r.spec.port) },
    // What subsets select on (its resource labels, rarely set, are in -o yaml).
    { header: "LABELS", cell: (r) => labels(r.spec.labels) },
    { header: "ZONE", cell: (r) => r.spec.zone ?? NONE, wideOnly: true },
    {
      header: "APP PORT",
      cell: (r) => (r.spec.appPort === undefined ? NONE : String(r.spec.appPort)),
      wideOnly: true,
    },
    // A lease: the data-plane agent manages it, and it goes when the agent stops renewing it.
    {
      header: "LEASE",
      cell: (r) => (r.spec.leaseSeconds === undefined ? NONE : duration(r.spec.leaseSeconds * 1000)),
      wideOnly: true,
    },
  ],
  Route: [
    { header: "SERVICE", cell: (r) => r.spec.service },
    { header: "RULES", cell: (r) => String(r.spec.rules.length) },
    {
      // Each rule's destinations with their weights, in rule order:
      // testers: reviews{version=v2}; canary: reviews{version=v1} 90%, reviews{version=v2} 10%
      header: "DESTINATIONS",
      cell: (r) =>
        r.spec.rules
          .map(
            (rule) =>
              `${rule.name}: ${rule.destinations
                .map((d) => `${target(d.service, d.subset)}${d.weight !== undefined ? ` ${d.weight}%` : ""}`)
                .join(", ")}`,
          )
          .join("; "),
    },
  ],
  CircuitBreaker: [
    { header: "SERVICE", cell: (r) => r.spec.service },
    // No subset: every workload of the service.
    { header: "SUBSET", cell: (r) => (r.spec.subset ? labels(r.spec.subset) : "<all>") },
    { header: "ERRORS", cell: (r) => String(r.spec.consecutiveErrors) },
    { header: "INTERVAL", cell: (r) => duration(r.spec.intervalMs) },
    { header: "EJECTION", cell: (r) => duration(r.spec.baseEjectionMs) },
    { header: "MAX CONCURRENT", cell: (r) => String(r.spec.maxConcurrent ?? NONE) },
    {
      header: "MAX EJECTION",
      cell: (r) => (r.spec.maxEjectionMs === undefined ? NONE : duration(r.spec.maxEjectionMs)),
      wideOnly: true,
    },
    {
      header: "MAX EJECTED",
      cell: (r) => (r.spec.maxEjectionPercent === undefined ? NONE : `${r.spec.maxEjectionPercent}%`),
      wideOnly: true,
    },
    {
      header: "FALLBACK",
      cell: (r) => (r.spec.fallback ? target(r.spec.fallback.service, r.spec.fallback.subset) : NONE),
      wideOnly: true,
    },
  ],
  AccessRule: [
    { header: "SOURCE", cell: (r) => r.spec.source },
    { header: "DESTINATION", cell: (r) => r.spec.destination },
    { header: "ACTION", cell: (r) => r.spec.action },
  ],
  MeshPolicy: [{ header: "DEFAULT ACCESS", cell: (r) => r.spec.defaultAccess }],
  WasmModule: [
    // A prefix, as image ids are shown; wide shows the whole digest.
    { header: "SHA256", cell: (r, wide) => (wide ? r.spec.sha256 : r.spec.sha256.slice(0, 12)) },
    { header: "SIZE", cell: (r) => size(r.spec.size) },
    { header: "ABI", cell: (r) => r.spec.abiVersion, wideOnly: true },
  ],
  WasmPlugin: [
    { header: "MODULE", cell: (r) => r.spec.module },
    { header: "SERVICES", cell: (r) => r.spec.services.join(",") },
    { header: "DIRECTION", cell: (r) => r.spec.direction ?? "inbound" },
    { header: "PRIORITY", cell: (r) => String(r.spec.priority ?? 0) },
    { header: "ROOT ID", cell: (r) => r.spec.rootId ?? NONE, wideOnly: true },
  ],
  Tracing: [
    { header: "SERVICE", cell: (r) => r.spec.service ?? "<mesh>" },
    {
      header: "BACKEND",
      cell: (r) => (r.spec.backend ? `${r.spec.backend.protocol} ${r.spec.backend.url}` : "<mesh's>"),
    },
    {
      header: "SAMPLING",
      cell: (r) => (r.spec.sampling ? `${r.spec.sampling.randomPercent}%` : "<mesh's>"),
    },
    { header: "EDGE", cell: (r) => r.spec.edge?.url ?? NONE, wideOnly: true },
  ],
  AccessLog: [
    { header: "SERVICE", cell: (r) => r.spec.service ?? "<mesh>" },
    {
      header: "BACKENDS",
      cell: (r) =>
        r.spec.backends.length === 0
          ? "off"
          : r.spec.backends.map((b) => (b.file ? `file:${b.file.path}` : "stdout")).join(","),
    },
    { header: "FORMAT", cell: (r) => (r.spec.format === undefined ? "default" : "custom") },
  ],
  ImportedResource: [
    {
      header: "SOURCE",
      cell: (r) => {
        const { kind, name, namespace } = r.spec.source;
        return `${kind}/${name}${namespace !== undefined ? `.${namespace}` : ""}`;
      },
    },
    {
      header: "PRODUCED",
      cell: (r) => r.spec.produced.map((p) => `${p.kind.toLowerCase()}/${p.name}`).join(",") || NONE,
    },
    { header: "WARNINGS", cell: (r) => String(r.spec.warnings?.length ?? 0) },
  ],
};

/** The `get` table of resources of one kind; `wide` for `-o wide`. */
export function resourceTable(kind: Kind, items: readonly Resource[], wide: boolean): string {
  const columns = COLUMNS[kind] as Column<Resource>[];
  const shown = columns.filter((c) => !c.wideOnly);
  const extra = wide ? columns.filter((c) => c.wideOnly) : [];
  // The resource's own labels, except on a Workload, whose LABELS are the ones subsets select on.
  const meta: Column<Resource>[] = wide
    ? [
        ...(kind === "Workload"
          ? []
          : [{ header: "LABELS", cell: (r: Resource) => labels(r.metadata.labels) }]),
        { header: "VERSION", cell: (r: Resource) => r.metadata.resourceVersion ?? "" },
      ]
    : [];
  const all = [
    ...shown,
    { header: "AGE", cell: (r: Resource) => age(r.metadata.updatedAt) },
    ...extra,
    ...meta,
  ];
  return table([
    ["NAME", ...all.map((c) => c.header)],
    ...items.map((item) => [item.metadata.name, ...all.map((c) => c.cell(item, wide))]),
  ]);
}

export function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length))) ?? [];
  return rows
    .map((r) =>
      r
        .map((cell, i) => cell.padEnd(widths[i] ?? 0))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

function age(iso: string | undefined): string {
  if (!iso) return "";
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (seconds < 120) return `${seconds}s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}m`;
  if (seconds < 172_800) return `${Math.round(seconds / 3600)}h`;
  return `${Math.round(seconds / 86_400)}d`;
}
