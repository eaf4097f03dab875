// The `wasmesh` command line: the control plane server, and a client of its HTTP API. This file is
// the dispatcher (global flags, the command table, errors and exit codes); each command is a module
// of commands/ with its options, help and run function, loaded only when it runs: every command
// starts in a fresh process, and loading TypeScript costs.
// Contract: docs/architecture.md, "Public contract". Every failure prints `wasmesh: <why>` on stderr and
// exits non-zero (2 for a usage error, 1 otherwise).
import { VERSION } from "../version.ts";
import { type Command, MAIN_USAGE, type Out, usage } from "./args.ts";
import { CliError, DEFAULT_API } from "./client.ts";
import { KINDS } from "./kinds.ts";

/** The commands, in the order the help and the unknown-command error list them. */
const COMMANDS: Record<string, () => Promise<Command>> = {
  server: () => import("./commands/server.ts"),
  apply: () => import("./commands/apply.ts"),
  get: () => import("./commands/get.ts"),
  delete: () => import("./commands/delete.ts"),
  bootstrap: () => import("./commands/bootstrap.ts"),
  dataplane: () => import("./commands/dataplane.ts"),
  status: () => import("./commands/status.ts"),
  describe: () => import("./commands/describe.ts"),
  inspect: () => import("./commands/inspect.ts"),
  analyze: () => import("./commands/analyze.ts"),
  token: () => import("./commands/token.ts"),
  ca: () => import("./commands/ca.ts"),
  modules: () => import("./commands/modules.ts"),
  convert: () => import("./commands/convert.ts"),
  edge: () => import("./commands/edge.ts"),
  kubernetes: () => import("./commands/kubernetes.ts"),
  version: () => import("./commands/version.ts"),
};

const HELP = `wasmesh — a service mesh whose traffic policy is WebAssembly

Usage: wasmesh <command> [options]

Commands:
  server              run the control plane (HTTP API and xDS server)
  apply -f FILE       create or update resources from YAML or JSON (- for stdin; --dry-run: a diff)
  get KIND [NAME]     show resources
  delete KIND NAME    delete a resource
  bootstrap           print an Envoy bootstrap for a sidecar
  dataplane run       run a sidecar: Envoy, its Workload and its modules (the agent)
  dataplane capture   install a pod's iptables traffic capture (the injected init container)
  status              connected proxies, what they acknowledged, their last rejection
  describe KIND NAME  what a resource selects, what selects it, and its problems
  inspect proxy NODE  the configuration a connected proxy was sent, as Envoy sees it
  analyze             likely mistakes across the mesh (exit 1 when there is one)
  token               API tokens: create, dataplane (bound to a service), list, revoke
  ca                  the mesh CA: status, rotate add-next|promote|remove
  modules push FILE   upload a Wasm module version
  convert -f FILE     print the native resources Istio's YAML becomes (not applied)
  edge export         print the edge workers' configuration (e.g. for a Workers KV key)
  kubernetes crds     print the CustomResourceDefinitions of the kinds (for kubectl apply)
  version             the CLI's version and the control plane's (--version: the CLI's only)

Every command takes --help, and --api URL (before or after the command): the control plane's
HTTP API (default $WASMESH_API, else ${DEFAULT_API}); server and bootstrap don't call it. Calls
carry a bearer token: --token TOKEN, else $WASMESH_TOKEN, else the admin token wasmesh server saved
for that URL in ~/.config/wasmesh/credentials.json ($XDG_CONFIG_HOME/wasmesh/ when set). An https
URL is verified with --ca-file FILE, else $WASMESH_CA_FILE, else the CA file saved there for that
URL (wasmesh server --tls saves its <data>/ca-bundle.pem), else the system's CAs.
Kinds: ${KINDS.join(", ")}

Run 'wasmesh <command> --help' for a command's options.`;

/** The command's module; undefined for a name that is no command (nor an Object.prototype key). */
function commandOf(name: string): (() => Promise<Command>) | undefined {
  return Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
}

const GLOBAL_OPTIONS: Record<string, string> = {
  "--api": "a URL",
  "--token": "a token",
  "--ca-file": "a file",
};

/**
 * `--api URL` and `--token TOKEN` (or `--api=URL`…) before the command, moved after it so that each
 * command parses them.
 */
function hoistGlobalOptions(argv: string[]): string[] {
  const global: string[] = [];
  let i = 0;
  for (; i < argv.length; i++) {
    const arg = argv[i] as string;
    const what = GLOBAL_OPTIONS[arg];
    if (what !== undefined && Object.hasOwn(GLOBAL_OPTIONS, arg)) {
      if (argv[i + 1] === undefined) throw usage(MAIN_USAGE, `${arg}: ${what} is required`);
      global.push(arg, argv[i + 1] as string);
      i++;
    } else if (Object.keys(GLOBAL_OPTIONS).some((option) => arg.startsWith(`${option}=`))) global.push(arg);
    else break;
  }
  const [command, ...rest] = argv.slice(i);
  return command === undefined ? [] : [command, ...rest, ...global];
}

/**
 * Runs one invocation. Resolves to the exit code, or to null while `wasmesh server` runs (it exits
 * on SIGINT/SIGTERM). Output goes through `out`, errors to stderr as `wasmesh: <why>`.
 */
export async function main(
  argv: string[],
  out: Out = (t) => {
    process.stdout.write(`${t}\n`);
  },
): Promise<number | null> {
  try {
    const [command, ...args] = hoistGlobalOptions(argv);
    if (command === "--help" || command === "-h" || command === "help") {
      // `wasmesh help get` as `wasmesh get --help`.
      const topic = command === "help" ? args[0] : undefined;
      if (topic === undefined) {
        out(HELP);
        return 0;
      }
      const load = commandOf(topic);
      if (!load) throw usage(MAIN_USAGE, `help: unknown command '${topic}'`);
      out((await load()).help);
      return 0;
    }
    // The CLI's own version, without a call to the control plane (`wasmesh version` makes one).
    if (command === "--version") {
      out(`wasmesh ${VERSION}`);
      return 0;
    }
    // No command: the whole help, but as an error (stderr, exit 2) so that scripts notice.
    if (command === undefined) throw new CliError(`a command is required\n\n${HELP}`, 2);
    const load = commandOf(command);
    if (!load) {
      throw usage(
        MAIN_USAGE,
        command.startsWith("-")
          ? `unknown option '${command}' (options go after the command)`
          : `unknown command '${command}'; commands: ${Object.keys(COMMANDS).join(", ")}`,
      );
    }
    return (await (await load()).run(args, out)) === "serving" ? null : 0;
  } catch (error) {
    if (error instanceof CliError) {
      process.stderr.write(`wasmesh: ${error.message}\n`);
      return error.exitCode;
    }
    // A bug: the stack is what a report needs.
    process.stderr.write(`wasmesh: ${(error as Error).stack ?? error}\n`);
    return 1;
  }
}
