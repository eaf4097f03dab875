// `wasmesh token create | dataplane | list | revoke`: API tokens (/v1/tokens, admin tokens only).
// A new token's secret goes to stdout alone (TOKEN=$(wasmesh token create …) works) and is never
// shown again; what it is goes to stderr.
import {
  apiOf,
  type CommandName,
  noPositionals,
  type Out,
  output,
  type Parsed,
  parse,
  str,
  usage,
} from "../args.ts";
import { table } from "../printers.ts";

export const help = `Usage: wasmesh token create --role admin|read-only [--name N] [--ttl DURATION]
       wasmesh token dataplane --service S [--name N] [--ttl DURATION]
       wasmesh token list [-o table|json]
       wasmesh token revoke ID

API tokens (an admin token is needed for all of these). Every API call but /healthz and /readyz
carries one: Authorization: Bearer wsm_…. create and dataplane print the new token's secret on
stdout, and only then: the control plane keeps its sha256 alone.
  create            a token for people and tools: admin (everything) or read-only (reads of
                    everything but tokens; enough for /metrics)
  dataplane         a token for the data-plane agents of one service (wasmesh dataplane run
                    --token-file): they may register, renew and delete that service's Workloads,
                    fetch module bytes and get that service's certificates, nothing else
  list              every token: id, name, role, service, creation, expiry, whether revoked;
                    never a secret
  revoke ID         refused from now on (still listed, as revoked)
  --name N          what or who the token is for (shown by list)
  --ttl DURATION    lifetime, e.g. 30m, 24h, 90d, 1h30m (a minute to ten years; default: until
                    revoked)
  -o, --output      list's format: table (default) or json`;

const command: CommandName = { name: "token", help };

interface TokenInfo {
  id: string;
  role: string;
  service?: string;
  name?: string;
  createdAt: string;
  expiresAt?: string;
  revoked: boolean;
  secret?: string;
}

const UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400 };

/** `1h30m`, `24h`, `90d`, `600s` in seconds. */
export function parseDuration(text: string, flag: string): number {
  if (!/^(?:\d+[smhd])+$/.test(text))
    throw usage(command, `${flag}: expected a duration such as 30m, 24h, 90d or 1h30m, got '${text}'`);
  let seconds = 0;
  for (const [, amount, unit] of text.matchAll(/(\d+)([smhd])/g))
    seconds += Number(amount) * (UNITS[unit as string] ?? 0);
  if (seconds < 60 || seconds > 10 * 365 * 86_400)
    throw usage(command, `${flag}: must be from a minute to ten years, got '${text}'`);
  return seconds;
}

export async function run(args: string[], out: Out): Promise<undefined> {
  const [sub, ...rest] = args;
  if (sub === "--help" || sub === "-h") return out(help);
  const { values, positionals } = parse(
    rest,
    {
      role: { type: "string" },
      service: { type: "string" },
      name: { type: "string" },
      ttl: { type: "string" },
      output: { type: "string", short: "o" },
    },
    command,
  );
  if (values.help) return out(help);
  if (sub === undefined)
    throw usage(command, "token: a subcommand is required (create, dataplane, list, revoke)");
  switch (sub) {
    case "create": {
      noPositionals(positionals, command);
      const role = str(values.role);
      if (role !== "admin" && role !== "read-only")
        throw usage(
          command,
          role === "dataplane"
            ? "token create: dataplane tokens are bound to a service: wasmesh token dataplane --service S"
            : `token create: --role must be admin or read-only${role === undefined ? "" : `, got '${role}'`}`,
        );
      if (values.service !== undefined)
        throw usage(command, "token create: --service is for wasmesh token dataplane");
      return issue(values, { role }, out);
    }
    case "dataplane": {
      noPositionals(positionals, command);
      const service = str(values.service);
      if (!service) throw usage(command, "token dataplane: --service is required");
      if (values.role !== undefined)
        throw usage(command, "token dataplane: --role is dataplane; leave it out");
      return issue(values, { role: "dataplane", service }, out);
    }
    case "list": {
      noPositionals(positionals, command);
      const format = output(values, ["table", "json"]);
      const { body } = await apiOf(values).call("GET", "/v1/tokens");
      const items = (body as { items: TokenInfo[] }).items ?? [];
      if (format === "json") return out(JSON.stringify({ items }, null, 2));
      if (items.length === 0) return out("No tokens.");
      const now = Date.now();
      return out(
        table([
          ["ID", "NAME", "ROLE", "SERVICE", "CREATED", "EXPIRES", "STATUS"],
          ...items.map((t) => [
            t.id,
            t.name ?? "",
            t.role,
            t.service ?? "",
            t.createdAt,
            t.expiresAt ?? "never",
            t.revoked
              ? "revoked"
              : t.expiresAt !== undefined && Date.parse(t.expiresAt) <= now
                ? "expired"
                : "active",
          ]),
        ]),
      );
    }
    case "revoke": {
      const [id, extra] = positionals;
      if (!id) throw usage(command, "token revoke: ID is required (wasmesh token list shows them)");
      if (extra !== undefined) throw usage(command, `token revoke: unexpected argument '${extra}'`);
      await apiOf(values).call("DELETE", `/v1/tokens/${encodeURIComponent(id)}`);
      return out(`token ${id} revoked`);
    }
    default:
      throw usage(command, `token: unknown subcommand '${sub}' (create, dataplane, list, revoke)`);
  }
}

async function issue(values: Parsed["values"], request: { role: string; service?: string }, out: Out) {
  const name = str(values.name);
  const ttl = str(values.ttl);
  const body = {
    ...request,
    ...(name !== undefined ? { name } : {}),
    ...(ttl !== undefined ? { ttlSeconds: parseDuration(ttl, "--ttl") } : {}),
  };
  const { body: issued } = await apiOf(values).call("POST", "/v1/tokens", {
    body: JSON.stringify(body),
    contentType: "application/json",
  });
  const token = issued as TokenInfo;
  process.stderr.write(
    `token ${token.id} (${token.role}${token.service ? ` of service ${token.service}` : ""}` +
      `${token.expiresAt ? `, expires ${token.expiresAt}` : ""}) created; its secret, below, is not shown again\n`,
  );
  out(token.secret ?? "");
  return undefined;
}
