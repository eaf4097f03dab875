// `wasmesh edge export`: the configuration the API serves, checked as a worker would check it.
import { writeFile } from "node:fs/promises";
import { DEFAULT_KV_KEY } from "../../edge/kv.ts";
import { apiOf, type CommandName, noPositionals, type Out, parse, str, usage } from "../args.ts";
import { CliError } from "../client.ts";

export const help = `Usage: wasmesh edge export [-o FILE] [--api URL]

Prints the edge workers' configuration (GET /v1/edge/config: the routing filter's configuration
for traffic from outside the mesh, and the origin URLs of its clusters) as JSON, or writes it to
FILE, e.g. for: wrangler kv key put --binding CONFIG_KV ${DEFAULT_KV_KEY} --path FILE
  -o, --output FILE  write to FILE instead of stdout`;

const command: CommandName = { name: "edge", help };

export async function run(args: string[], out: Out): Promise<undefined> {
  const [sub, ...rest] = args;
  if (sub === "--help" || sub === "-h") return out(help);
  if (sub === undefined) throw usage(command, "edge: a subcommand is required (export)");
  if (sub !== "export") throw usage(command, `edge: unknown subcommand '${sub}'`);
  const { values, positionals } = parse(rest, { output: { type: "string", short: "o" } }, command);
  if (values.help) return out(help);
  noPositionals(positionals, command);
  const { body } = await apiOf(values).call("GET", "/v1/edge/config");
  // What a worker would refuse must not reach a KV key by way of a script. The schema loads
  // TypeBox, so only once there is something to check.
  const { validateEdgeConfig } = await import("../../../schema/edge-config.ts");
  const checked = validateEdgeConfig(body);
  if (!checked.ok) {
    const detail = checked.errors.map((e) => `  ${e.path}: ${e.message}`).join("\n");
    throw new CliError(`the control plane's edge configuration is invalid:\n${detail}`);
  }
  const text = JSON.stringify(checked.config, null, 2);
  const file = str(values.output);
  if (file === undefined) return out(text);
  try {
    await writeFile(file, `${text}\n`);
  } catch (error) {
    throw new CliError(`cannot write '${file}': ${(error as Error).message}`);
  }
  out(`edge configuration ${checked.config.version} written to ${file}`);
}
