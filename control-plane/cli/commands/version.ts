// `wasmesh version`: the CLI's version, and the control plane's when it answers.
import { VERSION } from "../../version.ts";
import { apiOf, type CommandName, noPositionals, type Out, output, parse, warn } from "../args.ts";
import { CliError } from "../client.ts";

export const help = `Usage: wasmesh version [--client] [-o text|json] [--api URL]

Prints the CLI's version and, when the control plane answers, its version (GET /healthz). An
unreachable control plane is a warning on stderr, not a failure: the exit status is 0.
  --client             the CLI's version only; no call to the control plane
  -o, --output FORMAT  text (default) or json`;

const command: CommandName = { name: "version", help };

export async function run(args: string[], out: Out): Promise<undefined> {
  const { values, positionals } = parse(
    args,
    { client: { type: "boolean" }, output: { type: "string", short: "o" } },
    command,
  );
  if (values.help) return out(help);
  noPositionals(positionals, command);
  const format = output(values, ["text", "json"]);
  const client = { version: VERSION };
  if (values.client === true) {
    return out(format === "json" ? JSON.stringify({ client }, null, 2) : `Client Version: ${VERSION}`);
  }
  const api = apiOf(values);
  let server: { api: string; version?: string; error?: string };
  try {
    const { body } = await api.call("GET", "/healthz");
    const version = (body as { version?: unknown }).version;
    server =
      typeof version === "string"
        ? { api: api.base, version }
        : { api: api.base, error: `the control plane at ${api.base} does not report its version` };
  } catch (error) {
    if (!(error instanceof CliError)) throw error;
    server = { api: api.base, error: error.message };
  }
  if (format === "json") return out(JSON.stringify({ client, server }, null, 2));
  out(`Client Version: ${VERSION}`);
  if (server.version !== undefined) out(`Server Version: ${server.version} (${server.api})`);
  else warn(`server version unknown: ${server.error}`);
}
