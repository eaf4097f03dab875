// `wasmesh inspect proxy NODE`: the configuration the xDS server last sent a connected proxy, as
// Envoy sees it (GET /v1/proxies/<node>/config), as istioctl proxy-config shows a sidecar's.
import { apiOf, type CommandName, type Out, output, parse, str, usage } from "../args.ts";
import { CliError } from "../client.ts";
import { table } from "../printers.ts";

const TYPES = ["clusters", "listeners", "routes", "endpoints", "extensions"] as const;
type ConfigType = (typeof TYPES)[number];

export const help = `Usage: wasmesh inspect proxy NODE [--type TYPE] [-o table|yaml|json] [--api URL]

The configuration the control plane last sent the connected proxy NODE (a node id, as wasmesh
status lists them), decoded as Envoy sees it, like istioctl proxy-config: what the proxy holds,
acknowledged or not (the header line says which version it was sent and acknowledged). Each Wasm
filter shows its module and digests: SHA256 the module version's (as wasmesh modules push and
get wasmmodule print it; the built-in's for mesh), CODE SHA256 the code Envoy loads (its memory
maximum capped by the control plane). A read-only token is enough.
  --type TYPE          clusters, listeners, routes, endpoints or extensions (default all of them)
  -o, --output FORMAT  table (default: for clusters NAME/TYPE/ENDPOINTS, listeners
                       NAME/ADDRESS/FILTERS (HTTP filters in brackets), routes NAME/DOMAINS/ROUTES
                       (each route's cluster, <header H> for the cluster the routing filter
                       names in header H, <status> for a direct answer), endpoints
                       CLUSTER/ENDPOINTS, extensions NAME/TYPE/MODULE/SHA256/CODE SHA256), yaml or
                       json (the resources as Envoy's JSON: snake_case, each Any with its @type;
                       a Wasm filter's inline code as '<N bytes, sha256 …>')`;

const command: CommandName = { name: "inspect", help };

type Json = Record<string, unknown>;

interface Dump {
  proxy: {
    nodeId: string;
    service: string;
    syncedVersion?: string;
    lastRejection?: { typeUrl: string; version: string; message: string };
  };
  types: {
    type: ConfigType;
    typeUrl: string;
    sent?: string;
    acked?: string;
    resources: { name: string; version: string; resource: Json }[];
  }[];
  wasm: { filter: string; module: string; delivery: string; codeSha256: string; sha256?: string }[];
}

export async function run(args: string[], out: Out): Promise<undefined> {
  const { values, positionals } = parse(
    args,
    { type: { type: "string" }, output: { type: "string", short: "o" } },
    command,
  );
  if (values.help) return out(help);
  const [what, node, extra] = positionals;
  if (what !== "proxy") {
    throw usage(
      command,
      what === undefined
        ? "inspect: what to inspect is required: proxy NODE"
        : `inspect: unknown '${what}' (inspect proxy NODE)`,
    );
  }
  if (!node) throw usage(command, "inspect proxy: NODE is required (wasmesh status lists the node ids)");
  if (extra !== undefined) throw usage(command, `inspect: unexpected argument '${extra}'`);
  const type = str(values.type);
  if (type !== undefined && !(TYPES as readonly string[]).includes(type))
    throw usage(command, `--type: expected one of ${TYPES.join(", ")}, got '${type}'`);
  const format = output(values, ["table", "yaml", "json"]);
  const api = apiOf(values);
  // The whole configuration even for one type's table: a cluster's endpoints are EDS's.
  const query = type !== undefined && format !== "table" ? `?type=${type}` : "";
  const { body } = await api.call("GET", `/v1/proxies/${encodeURIComponent(node)}/config${query}`);
  const dump = body as Dump;
  if (format === "json") return out(JSON.stringify(dump, null, 2));
  if (format === "yaml") {
    const yaml = await import("yaml");
    return out(yaml.stringify(dump, { lineWidth: 0 }).trimEnd());
  }
  const sections = dump.types.filter((t) => type === undefined || t.type === type);
  if (sections.length === 0)
    throw new CliError(`proxy '${node}' has not subscribed to ${type ?? "anything"}`);
  const lines: string[] = [
    `Proxy ${dump.proxy.nodeId} (service ${dump.proxy.service}), synced version ${dump.proxy.syncedVersion ?? "-"}`,
  ];
  const rejection = dump.proxy.lastRejection;
  if (rejection !== undefined) {
    // What the proxy runs of that type is what it acknowledged before, not what it was sent.
    lines.push(
      `Last rejection: ${shortType(rejection.typeUrl)} version ${rejection.version}: ${rejection.message.replace(/\s*\n\s*/g, " ")}`,
    );
  }
  for (const section of sections) {
    lines.push(
      "",
      `${section.type[0]?.toUpperCase()}${section.type.slice(1)} (sent version ${section.sent ?? "-"}, acknowledged ${section.acked ?? "-"}):`,
    );
    lines.push(section.resources.length === 0 ? "  <none>" : tableOf(section.type, section.resources, dump));
  }
  out(lines.join("\n"));
}

const obj = (v: unknown): Json =>
  typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Json) : {};
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const shortType = (t: unknown) => (typeof t === "string" ? t.slice(t.lastIndexOf(".") + 1) : "-");

function address(v: unknown): string {
  const socket = obj(obj(v).socket_address);
  if (socket.address === undefined) return "-";
  return `${String(socket.address)}:${String(socket.port_value ?? 0)}`;
}

/** The addresses of a ClusterLoadAssignment's endpoints. */
function endpointsOf(assignment: Json): string[] {
  return arr(assignment.endpoints).flatMap((locality) =>
    arr(obj(locality).lb_endpoints).map((lb) => address(obj(obj(lb).endpoint).address)),
  );
}

/** A network filter, and for the HTTP connection manager its HTTP filters: hcm[a,b]. */
function filterText(filter: unknown): string {
  const f = obj(filter);
  const typed = obj(f.typed_config);
  const http = arr(typed.http_filters).map((h) => String(obj(h).name));
  const name = String(f.name ?? shortType(typed["@type"]));
  return http.length > 0 ? `${name}[${http.join(",")}]` : name;
}

function tableOf(type: ConfigType, resources: Dump["types"][number]["resources"], dump: Dump): string {
  const assignments = new Map(
    (dump.types.find((t) => t.type === "endpoints")?.resources ?? []).map((r) => [r.name, r.resource]),
  );
  const rows: string[][] = [];
  switch (type) {
    case "clusters":
      rows.push(["NAME", "TYPE", "ENDPOINTS"]);
      for (const { name, resource } of resources) {
        const kind = typeof resource.type === "string" ? resource.type : "STATIC";
        const inline = resource.load_assignment !== undefined ? obj(resource.load_assignment) : undefined;
        const assignment = inline ?? assignments.get(name);
        rows.push([name, kind, assignment === undefined ? "-" : String(endpointsOf(assignment).length)]);
      }
      break;
    case "endpoints":
      rows.push(["CLUSTER", "ENDPOINTS"]);
      for (const { name, resource } of resources)
        rows.push([name, endpointsOf(resource).join(",") || "<none>"]);
      break;
    case "listeners":
      rows.push(["NAME", "ADDRESS", "FILTERS"]);
      for (const { name, resource } of resources) {
        const chains = arr(resource.filter_chains).map((chain) =>
          arr(obj(chain).filters).map(filterText).join(","),
        );
        rows.push([name, address(resource.address), [...new Set(chains)].join(" | ") || "-"]);
      }
      break;
    case "routes":
      rows.push(["NAME", "DOMAINS", "ROUTES"]);
      for (const { name, resource } of resources) {
        const hosts = arr(resource.virtual_hosts).map(obj);
        const domains = hosts.flatMap((h) => arr(h.domains).map(String));
        const routes = hosts.flatMap((h) =>
          arr(h.routes).map((r) => {
            // Where it sends: a cluster, the cluster a header names (the routing filter's), or an answer.
            const route = obj(obj(r).route);
            const direct = obj(obj(r).direct_response);
            if (typeof route.cluster === "string") return route.cluster;
            if (typeof route.cluster_header === "string") return `<header ${route.cluster_header}>`;
            if (direct.status !== undefined) return `<${String(direct.status)}>`;
            return String(obj(r).name ?? "-");
          }),
        );
        rows.push([name, domains.join(",") || "-", routes.join(",") || "-"]);
      }
      break;
    case "extensions":
      rows.push(["NAME", "TYPE", "MODULE", "SHA256", "CODE SHA256"]);
      for (const { name, resource } of resources) {
        const wasm = dump.wasm.find((w) => w.filter === name);
        rows.push([
          name,
          shortType(obj(resource.typed_config)["@type"]),
          wasm?.module ?? "-",
          wasm ? (wasm.sha256 ?? "<not the current revision's>") : "-",
          wasm?.codeSha256 ?? "-",
        ]);
      }
      break;
  }
  return table(rows)
    .split("\n")
    .map((l) => `  ${l}`)
    .join("\n");
}
