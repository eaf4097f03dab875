// `wasmesh describe KIND NAME`: what a resource selects, what selects it, and its problems, from the
// stored mesh (resources/analyze.ts) and, for Services and Routes, the proxies GET /v1/status lists.
import {
  accessOf,
  analyzeMesh,
  callersOf,
  findingsAbout,
  referencesOf,
  referencesTo,
  routesOf,
  selectedWorkloads,
} from "../../resources/analyze.ts";
import type { Kind, Resource, Route, Service, Subset } from "../../resources/schema.ts";
import { applicableAccessLog, effectiveTracing } from "../../resources/telemetry.ts";
import { apiOf, type CommandName, type Out, parse, usage } from "../args.ts";
import { CliError } from "../client.ts";
import { KINDS, resolveKind } from "../kinds.ts";
import { fetchMesh, fetchProxies, type ProxyRow, ref, subsetText } from "../mesh.ts";
import { table } from "../printers.ts";
import { findingLines } from "./analyze.ts";

export const help = `Usage: wasmesh describe KIND NAME [--api URL]

Shows what a resource selects and what selects it, and any problem wasmesh analyze finds in it or
in the resources that refer to it. KIND is one of ${KINDS.join(", ")} (any case,
singular or plural).
  Service   its ports, workloads and their sidecars (connected proxies), the Routes that direct its
            traffic and those of other services that send to it, its CircuitBreakers, the AccessRules
            into and out of it and which services with workloads may call it, its WasmPlugins
  Route     each rule's match and destinations, the workloads each subset selects, and which
            proxies have acknowledged the revision that holds the Route (GET /v1/status)
  others    what the resource refers to, what refers to it, and what its subset selects`;

const command: CommandName = { name: "describe", help };

export async function run(args: string[], out: Out): Promise<undefined> {
  const { values, positionals } = parse(args, {}, command);
  if (values.help) return out(help);
  const [kindArg, name, extra] = positionals;
  if (!kindArg || !name) throw usage(command, "describe: KIND and NAME are required");
  if (extra !== undefined) throw usage(command, `describe: unexpected argument '${extra}'`);
  const kind = resolveKind(kindArg);
  const api = apiOf(values);
  const [resources, proxies] = await Promise.all([
    fetchMesh(api),
    kind === "Service" || kind === "Route" ? fetchProxies(api) : Promise.resolve([]),
  ]);
  const resource = resources.find((r) => r.kind === kind && r.metadata.name === name);
  if (resource === undefined) throw new CliError(`${kind} '${name}' does not exist`);
  const lines: string[] = [`${kind}: ${name}`];
  const section = (title: string, body: string[] | string) => {
    const rows = typeof body === "string" ? [body] : body;
    lines.push("", `${title}:`, ...(rows.length === 0 ? ["  <none>"] : rows.map((r) => indent(r))));
  };
  if (resource.kind === "Service") describeService(resources, resource, proxies, section);
  else if (resource.kind === "Route") describeRoute(resources, resource, proxies, section);
  else describeOther(resources, resource, section);
  const problems = findingsAbout(resources, analyzeMesh(resources), kind, name);
  section("Problems", problems.length === 0 ? [] : findingLines(problems).split("\n"));
  out(lines.join("\n"));
}

type Section = (title: string, body: string[] | string) => void;

const indent = (text: string) =>
  text
    .split("\n")
    .map((l) => `  ${l}`)
    .join("\n");

const target = (service: string, subset: Subset | undefined) => `${service}${subsetText(subset)}`;

function workloadsText(resources: readonly Resource[], service: string, subset: Subset | undefined): string {
  const selected = selectedWorkloads(resources, service, subset);
  return selected.length === 0 ? "<no workload>" : selected.map((w) => w.metadata.name).join(", ");
}

function matchText(match: Route["spec"]["rules"][number]["match"]): string {
  if (match === undefined) return "every request";
  const cond = (m: Record<string, unknown>) =>
    Object.entries(m)
      .filter(([k]) => k !== "name")
      .map(([k, v]) => `${k} ${JSON.stringify(v)}`)
      .join(" ");
  const parts: string[] = [];
  if (match.path) parts.push(`path ${cond(match.path)}`);
  if (match.authority) parts.push(`authority ${cond(match.authority)}`);
  if (match.methods) parts.push(`methods ${match.methods.join(",")}`);
  for (const h of match.headers ?? []) parts.push(`header ${h.name} ${cond(h)}`);
  for (const q of match.query ?? []) parts.push(`query ${q.name} ${cond(q)}`);
  return parts.length === 0 ? "every request" : parts.join("; ");
}

function describeService(
  resources: readonly Resource[],
  service: Service,
  proxies: readonly ProxyRow[],
  section: Section,
): void {
  const name = service.metadata.name;
  section(
    "Ports",
    service.spec.ports.map((p) => `${p.name} ${p.port}/${p.protocol}`),
  );
  const workloads = selectedWorkloads(resources, name, undefined);
  section(
    "Workloads",
    workloads.length === 0
      ? []
      : table([
          ["NAME", "ADDRESS", "LABELS"],
          ...workloads.map((w) => [
            w.metadata.name,
            `${w.spec.address}:${w.spec.port}`,
            subsetText(w.spec.labels).slice(1, -1) || "<none>",
          ]),
        ]).split("\n"),
  );
  const sidecars = proxies.filter((p) => p.service === name);
  section(
    "Proxies",
    sidecars.length === 0
      ? []
      : table([
          ["NODE", "XDS", "SYNCED"],
          ...sidecars.map((p) => [p.nodeId, p.protocol, p.syncedVersion ?? "-"]),
        ]).split("\n"),
  );
  const routeLines = (route: Route) =>
    route.spec.rules.map(
      (rule, i) =>
        `${ref("Route", route.metadata.name)} rules[${i}] '${rule.name}' (${matchText(rule.match)}): ${rule.destinations
          .map(
            (d) =>
              `${target(d.service, d.subset)}${d.weight !== undefined ? ` ${d.weight}%` : ""} → ${workloadsText(resources, d.service, d.subset)}`,
          )
          .join(", ")}`,
    );
  section("Routes (its traffic)", routesOf(resources, name).flatMap(routeLines));
  const sending = resources.filter(
    (r): r is Route =>
      r.kind === "Route" &&
      r.spec.service !== name &&
      r.spec.rules.some((rule) => rule.destinations.some((d) => d.service === name)),
  );
  section("Routes of other services sending to it", sending.flatMap(routeLines));
  section(
    "CircuitBreakers",
    resources.flatMap((r) => {
      if (r.kind !== "CircuitBreaker") return [];
      const lines: string[] = [];
      if (r.spec.service === name)
        lines.push(
          `${ref(r.kind, r.metadata.name)} on ${target(name, r.spec.subset)} → ${workloadsText(resources, name, r.spec.subset)}`,
        );
      if (r.spec.fallback?.service === name)
        lines.push(
          `${ref(r.kind, r.metadata.name)} falls back to ${target(name, r.spec.fallback.subset)} (from ${r.spec.service}) → ${workloadsText(resources, name, r.spec.fallback.subset)}`,
        );
      return lines;
    }),
  );
  const rules = resources.filter((r) => r.kind === "AccessRule");
  section(
    "AccessRules in",
    rules
      .filter((r) => r.spec.destination === name)
      .map((r) => `${ref(r.kind, r.metadata.name)}: ${r.spec.action} from ${r.spec.source}`),
  );
  section(
    "AccessRules out",
    rules
      .filter((r) => r.spec.source === name)
      .map((r) => `${ref(r.kind, r.metadata.name)}: ${r.spec.action} to ${r.spec.destination}`),
  );
  const callers = callersOf(resources, name);
  const edge = accessOf(resources, "*", name);
  section("May call it (services with workloads)", callers.length === 0 ? [] : [callers.join(", ")]);
  section(
    "Unnamed callers (the edge, services no rule names)",
    edge.allow
      ? `allowed${edge.rule ? ` (${ref("AccessRule", edge.rule.metadata.name)})` : " (default)"}`
      : `denied (${edge.rule ? ref("AccessRule", edge.rule.metadata.name) : "MeshPolicy 'default' denies by default"})`,
  );
  section(
    "WasmPlugins",
    resources.flatMap((r) =>
      r.kind === "WasmPlugin" && (r.spec.services.includes(name) || r.spec.services.includes("*"))
        ? [
            `${ref(r.kind, r.metadata.name)}: module ${r.spec.module}, ${r.spec.direction ?? "inbound"}, priority ${r.spec.priority ?? 0}`,
          ]
        : [],
    ),
  );
  section("Tracing and access logs", telemetryOf(resources, name));
  importedFrom(resources, "Service", name, section);
}

/** The Tracing and AccessLog that apply to a service's sidecars: its own over the mesh's. */
function telemetryOf(resources: readonly Resource[], name: string): string[] {
  const lines: string[] = [];
  const tracing = effectiveTracing(resources, name);
  if (tracing !== undefined) {
    const from = [
      ...(tracing.own ? [`${ref("Tracing", tracing.own.metadata.name)} (its own)`] : []),
      ...(tracing.mesh ? [`${ref("Tracing", tracing.mesh.metadata.name)} (the mesh's)`] : []),
    ].join(" over ");
    lines.push(
      `traced: ${tracing.sampling.randomPercent}% to ${tracing.backend.protocol} ${tracing.backend.url}, from ${from}`,
    );
  }
  const log = applicableAccessLog(resources, name);
  if (log !== undefined) {
    const where = log.spec.backends.map((b) => (b.file ? `file ${b.file.path}` : "stdout")).join(", ");
    const whose = log.spec.service === undefined ? "the mesh's" : "its own";
    lines.push(
      `access log: ${where === "" ? "off" : where}, from ${ref(log.kind, log.metadata.name)} (${whose})`,
    );
  }
  return lines;
}

function describeRoute(
  resources: readonly Resource[],
  route: Route,
  proxies: readonly ProxyRow[],
  section: Section,
): void {
  section("Service", route.spec.service);
  section(
    "Rules",
    route.spec.rules.flatMap((rule, i) => [
      `[${i}] ${rule.name}: ${matchText(rule.match)}`,
      ...rule.destinations.map(
        (d) =>
          `    ${target(d.service, d.subset)}${d.weight !== undefined ? ` ${d.weight}%` : ""} → ${workloadsText(resources, d.service, d.subset)}`,
      ),
    ]),
  );
  // Every sidecar's routing filter holds every service's Routes: the proxies that run this version
  // of the Route are those that acknowledged its revision (or a later one).
  const revision = Number(route.metadata.resourceVersion ?? 0);
  const has = (p: ProxyRow) => p.syncedVersion !== undefined && Number(p.syncedVersion) >= revision;
  section(
    `Proxies (acknowledged revision ${revision} or later: ${proxies.filter(has).length} of ${proxies.length})`,
    proxies.length === 0
      ? []
      : table([
          ["NODE", "SERVICE", "SYNCED", "HAS IT"],
          ...proxies.map((p) => [p.nodeId, p.service, p.syncedVersion ?? "-", has(p) ? "yes" : "no"]),
        ]).split("\n"),
  );
  importedFrom(resources, "Route", route.metadata.name, section);
}

function describeOther(resources: readonly Resource[], resource: Resource, section: Section): void {
  section(
    "Refers to",
    referencesOf(resource).map((r) => `${ref(r.target.kind, r.target.name)} (${r.path})`),
  );
  const subset =
    resource.kind === "CircuitBreaker"
      ? [
          `${target(resource.spec.service, resource.spec.subset)} → ${workloadsText(resources, resource.spec.service, resource.spec.subset)}`,
          ...(resource.spec.fallback
            ? [
                `fallback ${target(resource.spec.fallback.service, resource.spec.fallback.subset)} → ${workloadsText(resources, resource.spec.fallback.service, resource.spec.fallback.subset)}`,
              ]
            : []),
        ]
      : undefined;
  if (subset) section("Selects", subset);
  if (resource.kind === "Workload") {
    // The subsets (Route destinations, breakers) whose labels it has.
    const selecting = resources.flatMap((r) => {
      const sel = (s: Subset | undefined, service: string, what: string) =>
        service === resource.spec.service &&
        selectedWorkloads([resource], service, s).length > 0 &&
        s !== undefined
          ? [`${ref(r.kind, r.metadata.name)} ${what} ${target(service, s)}`]
          : [];
      if (r.kind === "Route")
        return r.spec.rules.flatMap((rule) =>
          rule.destinations.flatMap((d) => sel(d.subset, d.service, `rule '${rule.name}'`)),
        );
      if (r.kind === "CircuitBreaker") return sel(r.spec.subset, r.spec.service, "on");
      return [];
    });
    section("Selected by subsets", selecting);
  }
  if (resource.kind === "AccessRule") {
    const decision = accessOf(resources, resource.spec.source, resource.spec.destination);
    section(
      "Decision",
      `${resource.spec.source} → ${resource.spec.destination}: ${decision.allow ? "allow" : "deny"}${decision.rule ? ` (${ref("AccessRule", decision.rule.metadata.name)})` : " (default)"}`,
    );
  }
  section(
    "Referred to by",
    referencesTo(resources, resource.kind, resource.metadata.name).map(
      (r) => `${ref(r.kind, r.name)} (${r.path})`,
    ),
  );
}

function importedFrom(resources: readonly Resource[], kind: Kind, name: string, section: Section): void {
  const from = referencesTo(resources, kind, name).filter((r) => r.kind === "ImportedResource");
  if (from.length > 0)
    section(
      "Imported from",
      from.map((r) => ref(r.kind, r.name)),
    );
}
