// `wasmesh apply -f FILE`: POST /v1/apply, all or nothing; with --dry-run, a diff of what it would change.
import type { Kind } from "../../resources/schema.ts";
import { apiOf, type CommandName, noPositionals, type Out, parse, str, usage, warn } from "../args.ts";
import { CliError } from "../client.ts";
import { readText } from "../input.ts";
import { kindPath } from "../kinds.ts";

export const help = `Usage: wasmesh apply -f FILE [-n NAMESPACE] [--strict] [--dry-run] [--api URL]

Creates or updates every resource in FILE (multi-document YAML, or JSON; - reads stdin), all or
nothing, and prints what happened to each: created, configured, unchanged or deleted. A document
carrying metadata.resourceVersion (as \`get -o yaml\` prints it) applies only over that version.
Istio, Kuma and Consul resources are converted into native ones (docs/imports.md) and kept beside
them: a field not carried is a warning naming it, one whose loss would change the meaning an error;
what an original no longer produces is deleted.
  -f, --file FILE       the manifest; - for stdin
  -n, --namespace NS    the namespace of other meshes' documents that name none
  --strict              a field of another mesh's document that is not carried fails the apply
  --dry-run             validate against the stored state, store nothing, and show what would
                        change: each resource (those other meshes' documents produce too) as
                        created (its YAML), configured (a unified diff of its YAML against the
                        stored one), unchanged or deleted`;

const command: CommandName = { name: "apply", help };

export async function run(args: string[], out: Out): Promise<undefined> {
  const { values, positionals } = parse(
    args,
    {
      file: { type: "string", short: "f" },
      namespace: { type: "string", short: "n" },
      strict: { type: "boolean" },
      "dry-run": { type: "boolean" },
    },
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
  const query = new URLSearchParams();
  if (dryRun) query.set("dryRun", "true");
  const namespace = str(values.namespace);
  if (namespace !== undefined) query.set("namespace", namespace);
  if (values.strict === true) query.set("strict", "true");
  const search = query.size > 0 ? `?${query}` : "";
  const { body } = await api.call("POST", `/v1/apply${search}`, {
    body: text,
    contentType: json ? "application/json" : "application/yaml",
  });
  const result = body as {
    results?: { kind: string; name: string; action: string; resource?: unknown }[];
    warnings?: { document?: number; kind?: string; name?: string; path?: string; message: string }[];
  };
  if (dryRun) await printDiff(api, result.results ?? [], out);
  else for (const r of result.results ?? []) out(`${r.kind.toLowerCase()}/${r.name} ${r.action}`);
  for (const w of result.warnings ?? []) {
    const where = [
      w.document !== undefined ? `document ${w.document}:` : undefined,
      w.kind && w.name ? `${w.kind}/${w.name}` : undefined,
      w.path,
    ]
      .filter(Boolean)
      .join(" ");
    warn(`${where ? `${where}: ` : ""}${w.message}`);
  }
}

/** The document as `get -o yaml` prints it, without what the store writes (version, times). */
function documentYaml(yaml: typeof import("yaml"), resource: unknown): string {
  const { metadata, ...rest } = resource as { metadata?: Record<string, unknown> };
  const { resourceVersion: _v, createdAt: _c, updatedAt: _u, ...meta } = metadata ?? {};
  const { apiVersion, kind, spec, ...others } = rest as Record<string, unknown>;
  return yaml.stringify({ apiVersion, kind, metadata: meta, spec, ...others }, { lineWidth: 0 });
}

/**
 * A dry run's outcome per resource, and what it would change: a created resource's YAML, a
 * configured one's diff against the stored document (read back with GET), a deleted one's stored
 * YAML removed.
 */
async function printDiff(
  api: ReturnType<typeof apiOf>,
  results: { kind: string; name: string; action: string; resource?: unknown }[],
  out: Out,
): Promise<void> {
  const yaml = await import("yaml");
  const { unifiedDiff } = await import("../diff.ts");
  const stored = await Promise.all(
    results.map((r) =>
      r.action === "configured" || r.action === "deleted"
        ? api.tryGet(`/v1/${kindPath(r.kind as Kind)}/${encodeURIComponent(r.name)}`)
        : undefined,
    ),
  );
  for (const [i, r] of results.entries()) {
    const id = `${r.kind.toLowerCase()}/${r.name}`;
    out(`${id} ${r.action} (dry run)`);
    const before = stored[i] === undefined ? "" : documentYaml(yaml, stored[i]);
    const after = r.resource === undefined || r.action === "deleted" ? "" : documentYaml(yaml, r.resource);
    if (r.action === "unchanged" || (before === "" && after === "")) continue;
    const diff = unifiedDiff(before, after);
    if (diff === "") continue;
    out(
      `--- ${before === "" ? "/dev/null" : `${id} (stored)`}\n+++ ${after === "" ? "/dev/null" : `${id} (applied)`}\n${diff}`,
    );
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
