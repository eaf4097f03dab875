// `wasmesh delete KIND NAME`.
import { apiOf, type CommandName, type Out, parse, usage } from "../args.ts";
import { kindPath, resolveKind } from "../kinds.ts";

export const help = `Usage: wasmesh delete KIND NAME [--api URL]

Deletes a resource. Deleting one that others still reference (e.g. a Service a Route sends
traffic to) is refused, naming them.`;

const command: CommandName = { name: "delete", help };

export async function run(args: string[], out: Out): Promise<undefined> {
  const { values, positionals } = parse(args, {}, command);
  if (values.help) return out(help);
  const [kindArg, name, extra] = positionals;
  if (!kindArg || !name) throw usage(command, "delete: KIND and NAME are required");
  if (extra !== undefined) throw usage(command, `delete: unexpected argument '${extra}'`);
  const kind = resolveKind(kindArg);
  await apiOf(values).call("DELETE", `/v1/${kindPath(kind)}/${encodeURIComponent(name)}`);
  out(`${kind.toLowerCase()}/${name} deleted`);
}
