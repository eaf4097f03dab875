// `wasmesh apply -f FILE`: POST /v1/apply, all or nothing.
import { apiOf, type CommandName, noPositionals, type Out, parse, str, usage, warn } from "../args.ts";
import { CliError } from "../client.ts";
import { readText } from "../input.ts";

export const help = `Usage: wasmesh apply -f FILE [--dry-run] [--api URL]

Creates or updates every resource in FILE (multi-document YAML, or JSON; - reads stdin), all or
nothing, and prints what happened to each: created, configured or unchanged. A document carrying
metadata.resourceVersion (as \`get -o yaml\` prints it) applies only over that version.
  -f, --file FILE  the manifest; - for stdin
  --dry-run        validate against the stored state and store nothing`;

const command: CommandName = { name: "apply", help };

export async function run(args: string[], out: Out): Promise<undefined> {
  const { values, positionals } = parse(
    args,
    { file: { type: "string", short: "f" }, "dry-run": { type: "boolean" } },
    command,
  );
  if (values.help) return out(help);
  noPositionals(positionals, command);
  const file = str(values.file);
  if (!file) throw usage(command, "apply: -f FILE is required");
  // Before reading stdin, so that a bad --api is not found only after the input was typed.
  const api = apiOf(values);
  const text = await readText(file);
  if (text.trim() === "")
    throw new CliError(`${file === "-" ? "stdin" : `'${file}'`} is empty: nothing to apply`);
  // JSON when it is JSON (one resource, an array, or {items}); anything else is sent as YAML,
  // including multi-document YAML whose documents are written as JSON objects.
  const json = file.endsWith(".json") || isJson(text);
  const dryRun = values["dry-run"] === true;
  const { body } = await api.call("POST", `/v1/apply${dryRun ? "?dryRun=true" : ""}`, {
    body: text,
    contentType: json ? "application/json" : "application/yaml",
  });
  const result = body as {
    results?: { kind: string; name: string; action: string }[];
    warnings?: { kind?: string; name?: string; path?: string; message: string }[];
  };
  const suffix = dryRun ? " (dry run)" : "";
  for (const r of result.results ?? []) out(`${r.kind.toLowerCase()}/${r.name} ${r.action}${suffix}`);
  for (const w of result.warnings ?? []) {
    const where = [w.kind && w.name ? `${w.kind}/${w.name}` : undefined, w.path].filter(Boolean).join(" ");
    warn(`${where ? `${where}: ` : ""}${w.message}`);
  }
}

function isJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}
