// `wasmesh get KIND [NAME]`: a kind's resources as a table, YAML or JSON.
import type { Resource } from "../../resources/index.ts";
import { apiOf, type CommandName, type Out, output, parse, usage } from "../args.ts";
import { KINDS, kindPath, resolveKind } from "../kinds.ts";
import { resourceTable } from "../printers.ts";

export const help = `Usage: wasmesh get KIND [NAME] [-o table|wide|yaml|json] [--api URL]

Shows the resources of a kind, or one of them. KIND is one of ${KINDS.join(", ")}
(any case, singular or plural: route, routes, Route, meshpolicies).
  -o, --output FORMAT  table (default: each kind's main fields), wide (more columns: resource
                       labels, resource versions, full digests...), yaml (multi-document,
                       re-appliable with apply -f) or json`;

const command: CommandName = { name: "get", help };

export async function run(args: string[], out: Out): Promise<undefined> {
  const { values, positionals } = parse(args, { output: { type: "string", short: "o" } }, command);
  if (values.help) return out(help);
  const [kindArg, name, extra] = positionals;
  if (!kindArg) throw usage(command, "get: KIND is required");
  if (extra !== undefined) throw usage(command, `get: unexpected argument '${extra}'`);
  const kind = resolveKind(kindArg);
  const format = output(values, ["table", "wide", "yaml", "json"]);
  const api = apiOf(values);
  const path = `/v1/${kindPath(kind)}${name ? `/${encodeURIComponent(name)}` : ""}`;
  const { body } = await api.call("GET", path);
  const items = name ? [body as Resource] : ((body as { items: Resource[] }).items ?? []);
  if (format === "json") return out(JSON.stringify(name ? body : { items }, null, 2));
  if (format === "yaml") {
    // Only this format needs the YAML printer.
    const yaml = await import("yaml");
    // Documents as apply reads them; an empty list prints nothing rather than an empty document.
    if (items.length > 0)
      out(
        items
          .map((item) => yaml.stringify(item, { lineWidth: 0 }))
          .join("---\n")
          .trimEnd(),
      );
    return;
  }
  if (items.length === 0) return out(`No ${kind} resources.`);
  out(resourceTable(kind, items, format === "wide"));
}
