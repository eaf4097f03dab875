// `wasmesh ca status | rotate`: the mesh CA's authorities and its rotation (GET /v1/ca, POST
// /v1/ca/rotation; admin tokens only). rotate takes one step; the control plane refuses a step that
// is not allowed now (409) with its reason, which is printed as the error.
import { readExternalAuthority } from "../../ca/external.ts";
import { apiOf, type CommandName, type Out, output, parse, str, usage } from "../args.ts";
import { CliError } from "../client.ts";
import { table } from "../printers.ts";

export const help = `Usage: wasmesh ca status [-o table|json]
       wasmesh ca rotate add-next [--ca-dir DIR]
       wasmesh ca rotate promote
       wasmesh ca rotate remove --id ID [--force]

The mesh CA (an admin token is needed for all of these).
  status            the trust domain, each authority (id, status, subject, validity) and how many
                    data-plane agents hold the current trust bundle
  rotate add-next   a new root, trusted by every sidecar but signing nothing yet; --ca-dir DIR
                    takes an operator's intermediate instead (ca-cert.pem, ca-key.pem,
                    root-cert.pem, cert-chain.pem, as for WASMESH_CA_DIR)
  rotate promote    the next authority signs from now on; the active one retires. Promote once
                    every agent holds the new bundle: agents check it every 30 s, and status
                    shows AGENTS current n, stale 0 when they all have
  rotate remove     drops the next authority (a rotation abandoned) or the retiring one once its
                    certificates have expired; --force removes a retiring one before
  --id ID           the authority to remove (its id, or the first 16 hex digits status shows)
  -o, --output      status's format: table (default) or json`;

const command: CommandName = { name: "ca", help };

interface CaState {
  trustDomain: string;
  bundleVersion: string;
  authorities: {
    id: string;
    status: string;
    origin: string;
    subject: string;
    notBefore: string;
    notAfter: string;
    removableAt?: string;
  }[];
  agents: { windowSeconds: number; current: number; stale: number };
}

function describe(state: CaState): string {
  return [
    `Trust domain: ${state.trustDomain}`,
    `Trust bundle: ${state.bundleVersion}`,
    `Agents: ${state.agents.current} hold it, ${state.agents.stale} an older one (checked within ${state.agents.windowSeconds} s)`,
    "",
    table([
      ["ID", "STATUS", "ORIGIN", "SUBJECT", "NOT BEFORE", "NOT AFTER", "REMOVABLE"],
      ...state.authorities.map((a) => [
        a.id.slice(0, 16),
        a.status,
        a.origin,
        a.subject,
        a.notBefore,
        a.notAfter,
        a.removableAt ?? "",
      ]),
    ]),
  ].join("\n");
}

export async function run(args: string[], out: Out): Promise<undefined> {
  const [sub, ...rest] = args;
  if (sub === "--help" || sub === "-h") return out(help);
  const { values, positionals } = parse(
    rest,
    {
      id: { type: "string" },
      force: { type: "boolean" },
      "ca-dir": { type: "string" },
      output: { type: "string", short: "o" },
    },
    command,
  );
  if (values.help) return out(help);
  switch (sub) {
    case undefined:
      throw usage(command, "ca: a subcommand is required (status, rotate)");
    case "status": {
      if (positionals.length > 0) throw usage(command, `ca status: unexpected argument '${positionals[0]}'`);
      const format = output(values, ["table", "json"]);
      const { body } = await apiOf(values).call("GET", "/v1/ca");
      return out(format === "json" ? JSON.stringify(body, null, 2) : describe(body as CaState));
    }
    case "rotate": {
      const [step, extra] = positionals;
      if (step !== "add-next" && step !== "promote" && step !== "remove") {
        throw usage(
          command,
          `ca rotate: a step is required: add-next, promote or remove${step === undefined ? "" : `, got '${step}'`}`,
        );
      }
      if (extra !== undefined) throw usage(command, `ca rotate: unexpected argument '${extra}'`);
      const id = str(values.id);
      const caDir = str(values["ca-dir"]);
      if (step === "remove" && !id)
        throw usage(command, "ca rotate remove: --id is required (ca status shows them)");
      if (step !== "remove" && id !== undefined)
        throw usage(command, `ca rotate ${step}: --id is for remove`);
      if (step !== "remove" && values.force) throw usage(command, `ca rotate ${step}: --force is for remove`);
      if (step !== "add-next" && caDir !== undefined)
        throw usage(command, `ca rotate ${step}: --ca-dir is for add-next`);
      let external: ReturnType<typeof readExternalAuthority> | undefined;
      if (caDir !== undefined) {
        try {
          const { sources: _, ...files } = readExternalAuthority(caDir);
          external = files;
        } catch (error) {
          throw new CliError(`--ca-dir: ${(error as Error).message}`);
        }
      }
      const request = {
        step,
        ...(id !== undefined ? { id } : {}),
        ...(values.force ? { force: true } : {}),
        ...(external !== undefined ? { external } : {}),
      };
      const { body } = await apiOf(values).call("POST", "/v1/ca/rotation", {
        body: JSON.stringify(request),
        contentType: "application/json",
      });
      return out(`ca: ${step} done\n${describe(body as CaState)}`);
    }
    default:
      throw usage(command, `ca: unknown subcommand '${sub}' (status, rotate)`);
  }
}
