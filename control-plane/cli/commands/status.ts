// `wasmesh status`: the connected proxies and the edge workers that poll, what each acknowledged or
// serves, and its last rejection.
import { apiOf, type CommandName, noPositionals, type Out, output, parse } from "../args.ts";
import { table } from "../printers.ts";

export const help = `Usage: wasmesh status [-o table|json] [--api URL]

The proxies connected to the control plane, the version (store revision) each has acknowledged,
and the last configuration each rejected (Envoy's reason); then the edge workers that poll it
(by EDGE_NAME): the configuration each serves, whether it is current, and its last rejection.
  -o, --output FORMAT  table (default) or json`;

const command: CommandName = { name: "status", help };

/** A proxy as GET /v1/status lists it. */
interface StatusRow {
  nodeId: string;
  service: string;
  protocol: string;
  acked: Record<string, string>;
  syncedVersion?: string;
  nacks?: number;
  lastRejection?: { typeUrl: string; version: string; message: string };
}

/** An edge worker as GET /v1/status lists it. */
interface EdgeRow {
  name: string;
  servingVersion: string | null;
  current: boolean;
  lastPollAgoMs: number;
  lastRejection?: { reason: string; version?: string };
}

export async function run(args: string[], out: Out): Promise<undefined> {
  const { values, positionals } = parse(args, { output: { type: "string", short: "o" } }, command);
  if (values.help) return out(help);
  noPositionals(positionals, command);
  const format = output(values, ["table", "json"]);
  const { body } = await apiOf(values).call("GET", "/v1/status");
  const proxies = (body as { proxies: StatusRow[] }).proxies ?? [];
  const edges = (body as { edges?: EdgeRow[] }).edges ?? [];
  if (format === "json") return out(JSON.stringify(body, null, 2));
  if (proxies.length === 0) out("No proxies connected.");
  else
    out(
      table([
        ["NODE", "SERVICE", "XDS", "ACKED", "NACKS", "LAST REJECTION"],
        ...proxies.map((p) => [
          p.nodeId,
          p.service,
          p.protocol,
          p.syncedVersion ?? ackedSummary(p.acked),
          String(p.nacks ?? 0),
          p.lastRejection
            ? // One line per proxy: Envoy's reasons can span several.
              `${shortType(p.lastRejection.typeUrl)} v${p.lastRejection.version}: ${p.lastRejection.message.replace(/\s*\n\s*/g, " ")}`
            : "",
        ]),
      ]),
    );
  if (edges.length > 0) {
    out(
      table([
        ["EDGE", "SERVING", "CURRENT", "LAST POLL", "LAST REJECTION"],
        ...edges.map((e) => [
          e.name,
          e.servingVersion?.slice(0, 12) ?? "-",
          e.current ? "yes" : "no",
          `${Math.round(e.lastPollAgoMs / 1000)}s ago`,
          e.lastRejection ? e.lastRejection.reason.replace(/\s*\n\s*/g, " ") : "",
        ]),
      ]),
    );
  }
}

const shortType = (typeUrl: string) => typeUrl.slice(typeUrl.lastIndexOf(".") + 1);

function ackedSummary(acked: Record<string, string>): string {
  const versions = [...new Set(Object.values(acked))];
  return versions.length === 0 ? "-" : versions.length === 1 ? (versions[0] as string) : versions.join("/");
}
