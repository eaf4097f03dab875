// `wasmesh get KIND [NAME]`: a kind's resources as a table, YAML or JSON. Another mesh's kind
// (`get virtualservices`) shows the originals apply kept (ImportedResources), as they were applied.
import type { Resource } from "../../resources/index.ts";
import { apiOf, type CommandName, type Out, output, parse, str, usage } from "../args.ts";
import { CliError } from "../client.ts";
import { IMPORTED_KINDS, importedOriginals, KINDS, kindPath, resolveAnyKind } from "../kinds.ts";
import { resourceTable, table } from "../printers.ts";

export const help = `Usage: wasmesh get KIND [NAME] [-n NAMESPACE] [-o table|wide|yaml|json] [--api URL]

Shows the resources of a kind, or one of them. KIND is one of ${KINDS.join(", ")}
(any case, singular or plural: route, routes, Route, meshpolicies), or another mesh's kind that
apply converts (${IMPORTED_KINDS.slice(0, 3)
  .map(([k]) => k)
  .join(
    ", ",
  )}…; kind.group where a name is also native's: circuitbreakers.kuma.io): then the originals as they were applied, and
what each became.
  -o, --output FORMAT  table (default: each kind's main fields), wide (more columns: resource
                       labels, resource versions, full digests...), yaml (multi-document,
                       re-appliable with apply -f) or json
  -n, --namespace NS   another mesh's originals of this namespace only`;

const command: CommandName = { name: "get", help };

export async function run(args: string[], out: Out): Promise<undefined> {
  const { values, positionals } = parse(
    args,
    { output: { type: "string", short: "o" }, namespace: { type: "string", short: "n" } },
    command,
  );
  if (values.help) return out(help);
  const [kindArg, name, extra] = positionals;
  if (!kindArg) throw usage(command, "get: KIND is required");
  if (extra !== undefined) throw usage(command, `get: unexpected argument '${extra}'`);
  const resolved = resolveAnyKind(kindArg);
  const format = output(values, ["table", "wide", "yaml", "json"]);
  const api = apiOf(values);
  let items: unknown[];
  if ("native" in resolved) {
    const kind = resolved.native;
    const path = `/v1/${kindPath(kind)}${name ? `/${encodeURIComponent(name)}` : ""}`;
    const { body } = await api.call("GET", path);
    items = name ? [body as Resource] : ((body as { items: Resource[] }).items ?? []);
    if (format === "json") return out(JSON.stringify(name ? body : { items }, null, 2));
    if (format === "table" || format === "wide") {
      if (items.length === 0) return out(`No ${kind} resources.`);
      return out(resourceTable(kind, items as Resource[], format === "wide"));
    }
  } else {
    const kind = resolved.imported;
    const namespace = str(values.namespace);
    const records = await importedOriginals(api, kind, { name, namespace });
    if (name !== undefined && records.length === 0) {
      throw new CliError(
        `${kind.kind} '${name}'${namespace ? ` in namespace '${namespace}'` : ""} was not applied`,
        1,
      );
    }
    items = records.map((r) => r.spec.document);
    if (format === "json")
      return out(JSON.stringify(name && items.length === 1 ? items[0] : { items }, null, 2));
    if (format === "table" || format === "wide") {
      if (records.length === 0) return out(`No ${kind.kind} resources.`);
      return out(
        table([
          ["NAME", "NAMESPACE", "PRODUCED", "WARNINGS", ...(format === "wide" ? ["IMPORTED AS"] : [])],
          ...records.map((r) => [
            r.spec.source.name,
            r.spec.source.namespace ?? "",
            r.spec.produced.map((p) => `${p.kind.toLowerCase()}/${p.name}`).join(",") || "<none>",
            String(r.spec.warnings?.length ?? 0),
            ...(format === "wide" ? [`importedresource/${r.metadata.name}`] : []),
          ]),
        ]),
      );
    }
  }
  // yaml: documents as apply reads them; an empty list prints nothing rather than an empty document.
  const yaml = await import("yaml");
  if (items.length > 0)
    out(
      items
        .map((item) => yaml.stringify(item, { lineWidth: 0 }))
        .join("---\n")
        .trimEnd(),
    );
}
