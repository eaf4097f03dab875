// `wasmesh analyze`: likely mistakes across the stored mesh (resources/analyze.ts), one line each.
import { analyzeMesh, type Finding } from "../../resources/analyze.ts";
import { apiOf, type CommandName, noPositionals, type Out, output, parse } from "../args.ts";
import { CliError } from "../client.ts";
import { fetchMesh, ref } from "../mesh.ts";
import { table } from "../printers.ts";

export const help = `Usage: wasmesh analyze [-o table|json] [--api URL]

Reads every stored resource and reports likely mistakes across the mesh, one line per finding:
its severity, the resource (kind/name), the field path and what is wrong.
  error    a reference to something that does not exist (writes refuse them, so this shows only
           when the store changed behind them, e.g. a discovered Kubernetes Service that is gone)
  warning  a Route destination or CircuitBreaker (or its fallback) whose subset selects no
           workload (with the share of the rule's requests that would get 503); a rule no request
           reaches, because an earlier rule of the service's Routes has no match or a match that
           covers it; a service with workloads that no workload of another service may call (its
           AccessRules, or MeshPolicy's default deny, refuse every one)
  info     a service no Route, AccessRule or CircuitBreaker names as a destination
"Nobody calls": the control plane sees configuration, not traffic. A caller it knows of is a
workload (a sidecar) of another service that the access rules let through, or a Route or
CircuitBreaker fallback of another service that sends requests there; a service called from
outside the mesh, or by workloads without any rule about it, looks the same as one nobody calls,
so that is only an info.
Exit status: 0 when there is no error or warning (infos alone are clean), 1 when there is one,
2 for a usage error.
  -o, --output FORMAT  table (default) or json ({ findings: [{ severity, kind, name, path, message }] })`;

const command: CommandName = { name: "analyze", help };

export async function run(args: string[], out: Out): Promise<undefined> {
  const { values, positionals } = parse(args, { output: { type: "string", short: "o" } }, command);
  if (values.help) return out(help);
  noPositionals(positionals, command);
  const format = output(values, ["table", "json"]);
  const findings = analyzeMesh(await fetchMesh(apiOf(values)));
  if (format === "json") out(JSON.stringify({ findings }, null, 2));
  else if (findings.length === 0) out("No problems found.");
  else out(findingLines(findings));
  const problems = findings.filter((f) => f.severity !== "info");
  if (problems.length > 0) {
    const count = (severity: string) => {
      const n = problems.filter((f) => f.severity === severity).length;
      return n === 0 ? [] : [`${n} ${severity}${n === 1 ? "" : "s"}`];
    };
    throw new CliError(`analyze: found ${[...count("error"), ...count("warning")].join(" and ")}`, 1);
  }
}

/** One aligned line per finding: severity, kind/name, path, message. */
export function findingLines(findings: readonly Finding[]): string {
  return table(findings.map((f) => [f.severity, ref(f.kind, f.name), f.path, f.message]));
}
