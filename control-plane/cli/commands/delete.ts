// `wasmesh delete KIND NAME`. Another mesh's kind deletes the original apply kept, and with it
// what it produced.
import type { ImportedResource } from "../../resources/index.ts";
import { apiOf, type CommandName, type Out, parse, str, usage } from "../args.ts";
import { CliError } from "../client.ts";
import { importedOriginals, kindPath, resolveAnyKind } from "../kinds.ts";

export const help = `Usage: wasmesh delete KIND NAME [-n NAMESPACE] [--api URL]

Deletes a resource. Deleting one that others still reference (e.g. a Service a Route sends
traffic to) is refused, naming them. KIND may be another mesh's kind that apply converts
(virtualservice…): the original and every resource it produced are deleted; -n picks the
original's namespace when several share the name.`;

const command: CommandName = { name: "delete", help };

export async function run(args: string[], out: Out): Promise<undefined> {
  const { values, positionals } = parse(args, { namespace: { type: "string", short: "n" } }, command);
  if (values.help) return out(help);
  const [kindArg, name, extra] = positionals;
  if (!kindArg || !name) throw usage(command, "delete: KIND and NAME are required");
  if (extra !== undefined) throw usage(command, `delete: unexpected argument '${extra}'`);
  const resolved = resolveAnyKind(kindArg);
  const api = apiOf(values);
  if ("native" in resolved) {
    const kind = resolved.native;
    await api.call("DELETE", `/v1/${kindPath(kind)}/${encodeURIComponent(name)}`);
    return out(`${kind.toLowerCase()}/${name} deleted`);
  }
  const kind = resolved.imported;
  const namespace = str(values.namespace);
  const found = await importedOriginals(api, kind, { name, namespace });
  const where = namespace !== undefined ? ` in namespace '${namespace}'` : "";
  if (found.length === 0) throw new CliError(`${kind.kind} '${name}'${where} was not applied`);
  if (found.length > 1) {
    const namespaces = found.map((r) => r.spec.source.namespace ?? "(none)").join(", ");
    throw new CliError(
      `${kind.kind} '${name}' was applied in several namespaces (${namespaces}): name one with -n`,
      2,
    );
  }
  const record = found[0] as ImportedResource;
  const { body: result } = await api.call(
    "DELETE",
    `/v1/${kindPath("ImportedResource")}/${encodeURIComponent(record.metadata.name)}`,
  );
  // As kubectl names it, kind.group: Kuma's CircuitBreaker is not the native one it produced.
  out(`${kind.kind.toLowerCase()}.${kind.group}/${name}${where} deleted`);
  // What it produced goes with it (unless another original produces it too, as a MeshPolicy); the
  // other kept originals are converted again without it, which may change what they produce.
  for (const r of (result as { results?: { kind: string; name: string; action: string }[] }).results ?? []) {
    if (r.kind === "ImportedResource" && r.name === record.metadata.name) continue;
    out(`${r.kind.toLowerCase()}/${r.name} ${r.action}`);
  }
}
