// `wasmesh convert -f FILE`: the native resources another mesh's YAML becomes, printed, not applied.
import { stringify } from "yaml";
import { convert, formatProblem, type ImportProblem, isDnsLabel } from "../../imports/index.ts";
import { formatManifestError, parseYaml } from "../../resources/index.ts";
import { type CommandName, noPositionals, type Out, parse, str, usage, warn } from "../args.ts";
import { CliError } from "../client.ts";
import { readText } from "../input.ts";

export const help = `Usage: wasmesh convert -f FILE [-f FILE...] [--namespace NS] [--strict]

Prints the native resources (a YAML stream) that Istio's, Kuma's and Consul's resources in FILE
become; native resources pass through. Nothing is applied (wasmesh apply -f converts the same way,
and keeps the originals). Each field wasmesh does not carry is a warning on stderr with its
document and path; a field whose loss would change the meaning is an error, and then nothing is
printed (exit 1). docs/imports.md lists what is supported, kind by kind and field by field.
  -f, --file FILE   a manifest (multi-document YAML or JSON; - for stdin); repeatable
  --namespace NS    the namespace of documents that name none (short hosts resolve in it)
  --strict          warnings fail too (exit 1)`;

const command: CommandName = { name: "convert", help };

export async function run(args: string[], out: Out): Promise<undefined> {
  const { values, positionals } = parse(
    args,
    {
      file: { type: "string", short: "f", multiple: true },
      namespace: { type: "string" },
      strict: { type: "boolean" },
    },
    command,
  );
  if (values.help) return out(help);
  noPositionals(positionals, command);
  // parseArgs gives a list for a `multiple` option; Parsed's type does not say so.
  const files = (values.file as unknown as string[] | undefined) ?? [];
  if (files.length === 0) throw usage(command, "convert: -f FILE is required");
  const namespace = str(values.namespace);
  if (namespace !== undefined && !isDnsLabel(namespace)) {
    throw usage(command, `convert: --namespace '${namespace}' is no DNS label`);
  }

  // Every file's documents in one list, so that a VirtualService may name another file's subsets.
  const documents: unknown[] = [];
  const origin: { file: string; index: number }[] = [];
  for (const file of files) {
    const parsed = parseYaml(await readText(file));
    if (!parsed.ok) {
      throw new CliError(parsed.errors.map((e) => `${file}: ${formatManifestError(e)}`).join("\n"));
    }
    parsed.values.forEach((value, index) => {
      const items = Array.isArray(value)
        ? value
        : isList(value)
          ? (value as { items: unknown[] }).items
          : [value];
      for (const item of items) {
        documents.push(item);
        origin.push({ file, index });
      }
    });
  }
  const result = convert(documents, namespace !== undefined ? { namespace } : {});
  const where = (p: ImportProblem) => {
    const o = origin[p.document];
    const text = formatProblem(p);
    return o === undefined ? text : `${o.file}: ${text.replace(/^document \d+/, `document ${o.index}`)}`;
  };
  for (const w of result.warnings) warn(where(w));
  for (const e of result.errors) process.stderr.write(`error: ${where(e)}\n`);
  if (result.errors.length > 0) {
    throw new CliError(`${count(result.errors.length, "error")}: nothing converted`);
  }
  if (values.strict === true && result.warnings.length > 0) {
    throw new CliError(`${count(result.warnings.length, "warning")} with --strict: nothing converted`);
  }
  out(result.resources.map((r) => stringify(r, { lineWidth: 0 }).trimEnd()).join("\n---\n"));
}

const count = (n: number, what: string) => `${n} ${what}${n === 1 ? "" : "s"}`;

/** A Kubernetes `kind: List` (what `kubectl get -o yaml` prints): its items are the documents. */
function isList(value: unknown): boolean {
  return (
    typeof value === "object" &&
    value !== null &&
    (value as { kind?: unknown }).kind === "List" &&
    Array.isArray((value as { items?: unknown }).items)
  );
}
