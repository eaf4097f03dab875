// The `wasmesh` command line: the control plane server, and a client of its HTTP API.
// Contract: ARCHITECTURE.md, "Public contract". Every failure prints `wasmesh: <why>` on stderr and
// exits non-zero (2 for a usage error, 1 otherwise).
import { readFile, writeFile } from "node:fs/promises";
import { type ParseArgsOptionsConfig, parseArgs } from "node:util";
import { DEFAULT_KV_API_BASE, DEFAULT_KV_KEY, type KvTarget } from "../edge/kv.ts";
import type { ProxyIdentity } from "../envoy/index.ts";
import type { Kind, Resource } from "../resources/index.ts";
import { decodeUtf8, describeInvalidUtf8 } from "../utf8.ts";
import { VERSION } from "../version.ts";
import { ApiClient, CliError, DEFAULT_API } from "./client.ts";
import { resourceTable, table } from "./printers.ts";

// Modules only some commands need (the YAML printer, the translation, the edge schema) are
// imported where used: every command starts in a fresh process, and loading TypeScript costs.

/**
 * The resource kinds, in the resource model's order. Listed rather than imported: the model loads
 * TypeBox and the YAML parser, a cost every command would pay at start. `satisfies` keeps each name
 * a real kind; test/control-plane/cli.test.ts checks that none is missing.
 */
export const KINDS = [
  "Service",
  "Workload",
  "Route",
  "CircuitBreaker",
  "AccessRule",
  "MeshPolicy",
  "WasmModule",
  "WasmPlugin",
] as const satisfies readonly Kind[];

const HELP: Record<string, string> = {
  main: `wasmesh — a service mesh whose traffic policy is WebAssembly

Usage: wasmesh <command> [options]

Commands:
  server              run the control plane (HTTP API and xDS server)
  apply -f FILE       create or update resources from YAML or JSON (- for stdin)
  get KIND [NAME]     show resources
  delete KIND NAME    delete a resource
  bootstrap           print an Envoy bootstrap for a sidecar
  status              connected proxies, what they acknowledged, their last rejection
  modules push FILE   upload a Wasm module version
  edge export         print the edge workers' configuration (e.g. for a Workers KV key)
  version             the CLI's version and the control plane's (--version: the CLI's only)

Every command takes --help, and --api URL (before or after the command): the control plane's
HTTP API (default $WASMESH_API, else ${DEFAULT_API}); server and bootstrap don't call it.
Kinds: ${KINDS.join(", ")}

Run 'wasmesh <command> --help' for a command's options.`,
  server: `Usage: wasmesh server [--data DIR] [--http-port 5681] [--xds-port 5678] [--address 127.0.0.1]
                      [--edge-kv-account ID --edge-kv-namespace NS [--edge-kv-key KEY]]
                      [--module-memory-limit MIB] [--validation-workers N]
                      [--validations-per-client N] [--validation-timeout SECONDS]

Runs the control plane: the HTTP API (--http-port) and the gRPC xDS server (--xds-port), with the
resources in an embedded SQLite database under --data (default .wasmesh/). Port 0 picks a free
port (the startup line says which). SIGINT or SIGTERM shuts it down.
  --address          interface both servers listen on (0.0.0.0 for sidecars on other hosts)
  --module-memory-limit MIB
                     linear memory a module may use (default 128, at most 1024: Envoy's own cap);
                     module validation refuses a module that asks for more
  --validation-workers N
                     module validations run at once (default twice the CPUs, from 6 to 16)
  --validations-per-client N
                     how many of those one client address may run (default 2); more get 429
  --validation-timeout SECONDS
                     time one module validation may take (default 10)
  --edge-kv-account, --edge-kv-namespace
                     after each change, write the edge configuration into this Cloudflare
                     Workers KV namespace (when its version changed; retried in the background),
                     with the API token in $CLOUDFLARE_API_TOKEN
  --edge-kv-key      the KV key (default ${DEFAULT_KV_KEY})
  --edge-kv-api-base Cloudflare's API (default ${DEFAULT_KV_API_BASE})`,
  edge: `Usage: wasmesh edge export [-o FILE] [--api URL]

Prints the edge workers' configuration (GET /v1/edge/config: the routing filter's configuration
for traffic from outside the mesh, and the origin URLs of its clusters) as JSON, or writes it to
FILE, e.g. for: wrangler kv key put --binding CONFIG_KV ${DEFAULT_KV_KEY} --path FILE
  -o, --output FILE  write to FILE instead of stdout`,
  apply: `Usage: wasmesh apply -f FILE [--dry-run] [--api URL]

Creates or updates every resource in FILE (multi-document YAML, or JSON; - reads stdin), all or
nothing, and prints what happened to each: created, configured or unchanged. A document carrying
metadata.resourceVersion (as \`get -o yaml\` prints it) applies only over that version.
  -f, --file FILE  the manifest; - for stdin
  --dry-run        validate against the stored state and store nothing`,
  get: `Usage: wasmesh get KIND [NAME] [-o table|wide|yaml|json] [--api URL]

Shows the resources of a kind, or one of them. KIND is one of ${KINDS.join(", ")}
(any case, singular or plural: route, routes, Route, meshpolicies).
  -o, --output FORMAT  table (default: each kind's main fields), wide (more columns: resource
                       labels, resource versions, full digests...), yaml (multi-document,
                       re-appliable with apply -f) or json`,
  delete: `Usage: wasmesh delete KIND NAME [--api URL]

Deletes a resource. Deleting one that others still reference (e.g. a Service a Route sends
traffic to) is refused, naming them.`,
  bootstrap: `Usage: wasmesh bootstrap --node-id ID --service NAME [--labels k=v,...] [--xds HOST:PORT]
                         [--outbound-port 15001] [--inbound-port 15006] [--app-port P]
                         [--inbound-address 0.0.0.0] [--admin-port 9901] [--xds-protocol sotw|delta]

Prints (YAML) the bootstrap of an Envoy sidecar: node identity, admin and the ADS cluster only;
everything else comes from the control plane over xDS. Needs no control plane to run. Start Envoy
on it with --disable-hot-restart (as its first lines say): without it, a second Envoy on the same
host fails with "unable to bind domain socket with base_id=0".
  --node-id ID          this proxy's unique id (required)
  --service NAME        the service it belongs to (required)
  --labels k=v,...      its workload labels, e.g. version=v2 (route subsets select on them)
  --xds HOST:PORT       the control plane's xDS server (default 127.0.0.1:5678)
  --outbound-port P     the listener the app sends outbound requests to (default 15001)
  --inbound-port P      the listener for requests to this workload (default 15006)
  --app-port P          the local app's port; without it there is no inbound listener
  --inbound-address A   the IP address the inbound listener binds (default 0.0.0.0, every
                        interface: sidecars on other hosts call this workload through it; give
                        the workload's own IP to expose less, or 127.0.0.1 when all its callers
                        are on this host)
  --admin-port P        Envoy's admin interface, on 127.0.0.1 (default 9901)
  --xds-protocol        sotw (state of the world, default) or delta (incremental xDS)`,
  version: `Usage: wasmesh version [--client] [-o text|json] [--api URL]

Prints the CLI's version and, when the control plane answers, its version (GET /healthz). An
unreachable control plane is a warning on stderr, not a failure: the exit status is 0.
  --client             the CLI's version only; no call to the control plane
  -o, --output FORMAT  text (default) or json`,
  status: `Usage: wasmesh status [-o table|json] [--api URL]

The proxies connected to the control plane, the version (store revision) each has acknowledged,
and the last configuration each rejected (Envoy's reason).
  -o, --output FORMAT  table (default) or json`,
  modules: `Usage: wasmesh modules push FILE --name NAME [--description TEXT] [--configuration JSON]
                            [--root-id ID] [--api URL]

Uploads a Proxy-Wasm module version. The control plane validates it (WebAssembly, Proxy-Wasm ABI
0.2.1 exports, a smoke run in the TypeScript host) and stores it by sha256; WasmPlugins that name
it pick it up. What validation could not check is printed as warnings.
  --name NAME           the module (WasmModule resource) name (required)
  --description TEXT    stored with this version
  --configuration JSON  plugin configuration for the smoke run (not stored); a module that
                        refuses it is rejected
  --root-id ID          plugin root_id for the smoke run`,
};

const commonOptions = {
  api: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

/** Resolves `route`, `Routes`, `meshpolicy`… to a kind, or fails naming the accepted ones. */
export function resolveKind(value: string): Kind {
  const wanted = value.toLowerCase();
  const kind = KINDS.find((k) => {
    const lower = k.toLowerCase();
    return wanted === lower || wanted === `${lower}s` || wanted === lower.replace(/y$/, "ies");
  });
  if (!kind) throw new CliError(`unknown kind '${value}'; kinds: ${KINDS.join(", ")}`, 2);
  return kind;
}

/** The API's path segment for a kind (see control-plane/api). */
export function kindPath(kind: Kind): string {
  const lower = kind.toLowerCase();
  return lower.endsWith("y") ? `${lower.slice(0, -1)}ies` : `${lower}s`;
}

/** A port flag; `min` 0 lets a server pick a free port. */
function parsePort(value: string | undefined, flag: string, fallback?: number, min = 1): number | undefined {
  if (value === undefined) return fallback;
  const port = Number(value);
  if (!/^\d+$/.test(value) || port < min || port > 65_535) {
    throw new CliError(`${flag}: expected a port number ${min}-65535, got '${value}'`, 2);
  }
  return port;
}

/** A whole number from min to max, for a numeric flag; undefined when not given. */
function parseCount(value: string | undefined, flag: string, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  const count = Number(value);
  if (!/^\d+$/.test(value) || count < min || count > max) {
    throw new CliError(`${flag}: expected a whole number ${min}-${max}, got '${value}'`, 2);
  }
  return count;
}

function parseLabels(value: string | undefined): Record<string, string> {
  const labels: Record<string, string> = {};
  if (!value) return labels;
  for (const pair of value.split(",")) {
    const eq = pair.indexOf("=");
    const key = pair.slice(0, eq).trim();
    if (eq < 0 || key === "") throw new CliError(`--labels: expected k=v[,k=v...], got '${pair}'`, 2);
    if (key in labels) throw new CliError(`--labels: '${key}' is given twice`, 2);
    labels[key] = pair.slice(eq + 1).trim();
  }
  return labels;
}

interface Parsed {
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
}

/** A usage error: the problem, then the command's usage line and where to read more. */
function usage(command: string, message: string): CliError {
  const help = command === "main" ? "Usage: wasmesh <command> [options]\n\n" : (HELP[command] ?? "");
  const usageLines = help.startsWith("Usage:") ? help.slice(0, help.indexOf("\n\n")) : "";
  const more = command === "main" ? "wasmesh --help" : `wasmesh ${command} --help`;
  return new CliError(`${message}\n${usageLines ? `${usageLines}\n` : ""}Run '${more}' for more.`, 2);
}

function parse(args: string[], options: ParseArgsOptionsConfig, command: string): Parsed {
  try {
    const { values, positionals } = parseArgs({
      args,
      options: { ...commonOptions, ...options },
      allowPositionals: true,
      strict: true,
    });
    return { values: values as Parsed["values"], positionals };
  } catch (error) {
    throw usage(command, parseArgsMessage(error as Error & { code?: string }, command));
  }
}

/** node:util's messages, without the advice that does not apply here. */
function parseArgsMessage(error: Error & { code?: string }, command: string): string {
  const option = /'(-{1,2}[^'\s]*)'/.exec(error.message)?.[1];
  if (error.code === "ERR_PARSE_ARGS_UNKNOWN_OPTION" && option) {
    return `${command}: unknown option '${option}'`;
  }
  if (error.code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE") {
    // "Option '-o, --output <value>' argument missing" or "Option '--dry-run' does not take an argument".
    return `${command}: ${error.message.replace(/^Option/, "option")}`;
  }
  return `${command}: ${error.message}`;
}

function noPositionals(positionals: string[], command: string): void {
  if (positionals.length > 0) throw usage(command, `${command}: unexpected argument '${positionals[0]}'`);
}

function apiOf(values: { api?: string | boolean | undefined }): ApiClient {
  const api = typeof values.api === "string" ? values.api : process.env.WASMESH_API || DEFAULT_API;
  return new ApiClient(api);
}

function output(values: { output?: string | boolean | undefined }, allowed: string[]): string {
  const format = typeof values.output === "string" ? values.output : allowed[0];
  if (!format || !allowed.includes(format)) {
    throw new CliError(`-o: expected one of ${allowed.join(", ")}, got '${String(values.output)}'`, 2);
  }
  return format;
}

/** `cannot read 'x': no such file or directory (ENOENT)` rather than a stack trace. */
function readError(file: string, error: unknown): CliError {
  const { code, message } = error as NodeJS.ErrnoException;
  // Node's message is "ENOENT: no such file or directory, open 'x'": keep the words.
  const why = code ? `${/^[A-Z]+: ([^,]+)/.exec(message)?.[1] ?? message} (${code})` : message;
  return new CliError(`cannot read '${file}': ${why}`);
}

/** The file's (or stdin's) text; invalid UTF-8 is refused, as the API does, not sent as U+FFFD. */
async function readInput(file: string): Promise<string> {
  let bytes: Buffer;
  if (file === "-") {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    bytes = Buffer.concat(chunks);
  } else {
    try {
      bytes = await readFile(file);
    } catch (error) {
      throw readError(file, error);
    }
  }
  const decoded = decodeUtf8(bytes);
  if (decoded.ok) return decoded.text;
  const name = file === "-" ? "stdin" : `'${file}'`;
  throw new CliError(`${name} is not valid UTF-8: ${describeInvalidUtf8(decoded)}; save it as UTF-8`);
}

type Out = (text: string) => undefined;

function isJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

interface StoredDoc {
  kind: string;
  metadata: { name: string; resourceVersion?: string; updatedAt?: string };
  spec?: { sha256?: string };
}

const str = (value: string | boolean | undefined): string | undefined =>
  typeof value === "string" ? value : undefined;

/** A failed start of `wasmesh server`, as one line a user can act on. */
function startupError(
  error: unknown,
  where: { httpPort: number; xdsPort: number; address: string; dataDir: string },
): string {
  const e = error as NodeJS.ErrnoException;
  const message = e.message ?? String(error);
  // node:net says "listen EADDRINUSE: address already in use 127.0.0.1:5681"; grpc-js wraps the same
  // text in "No address added out of total 1 resolved errors: [...]".
  const listen = /listen (E[A-Z]+): (.+?) (\S+):(\d+)/.exec(message);
  if (listen) {
    const [, code, words, host, portText] = listen;
    const port = Number(portText);
    const which =
      port === where.xdsPort
        ? "the xDS server (--xds-port)"
        : port === where.httpPort
          ? "the API (--http-port)"
          : "";
    const hint =
      code === "EADDRINUSE"
        ? "; another process (another wasmesh server?) is using it: stop it or choose another port"
        : code === "EACCES"
          ? "; ports below 1024 need privileges: choose another port"
          : code === "EADDRNOTAVAIL"
            ? `; --address ${where.address} is not an address of this host`
            : "";
    return `cannot listen on ${host}:${port}${which ? ` for ${which}` : ""}: ${words} (${code})${hint}`;
  }
  if (e.code && e.path !== undefined) {
    return `cannot use the data directory --data ${where.dataDir}: ${/^[A-Z]+: ([^,]+)/.exec(message)?.[1] ?? message} (${e.code})`;
  }
  return `cannot start the control plane: ${message}`;
}

// A command resolves when done, or to "serving" when it leaves a server running until a signal.
const commands: Record<string, (args: string[], out: Out) => Promise<undefined | "serving">> = {
  async server(args, out) {
    const { values, positionals } = parse(
      args,
      {
        data: { type: "string" },
        "http-port": { type: "string" },
        "xds-port": { type: "string" },
        address: { type: "string" },
        "edge-kv-account": { type: "string" },
        "edge-kv-namespace": { type: "string" },
        "edge-kv-key": { type: "string" },
        "edge-kv-api-base": { type: "string" },
        "module-memory-limit": { type: "string" },
        "validation-workers": { type: "string" },
        "validations-per-client": { type: "string" },
        "validation-timeout": { type: "string" },
      },
      "server",
    );
    if (values.help) return out(HELP.server as string);
    noPositionals(positionals, "server");
    const httpPort = parsePort(str(values["http-port"]), "--http-port", 5681, 0) as number;
    const xdsPort = parsePort(str(values["xds-port"]), "--xds-port", 5678, 0) as number;
    if (httpPort !== 0 && httpPort === xdsPort) {
      throw usage("server", `--http-port and --xds-port are both ${httpPort}; they must differ`);
    }
    const dataDir = str(values.data) ?? ".wasmesh";
    const address = str(values.address) ?? "127.0.0.1";
    const edgeKv = edgeKvOptions(values);
    const memoryMib = parseCount(str(values["module-memory-limit"]), "--module-memory-limit", 1, 1024);
    const workers = parseCount(str(values["validation-workers"]), "--validation-workers", 1, 64);
    const perClient = parseCount(str(values["validations-per-client"]), "--validations-per-client", 1, 64);
    const timeoutS = parseCount(str(values["validation-timeout"]), "--validation-timeout", 1, 600);
    const validation = {
      ...(memoryMib !== undefined ? { memoryLimitBytes: memoryMib * 1024 * 1024 } : {}),
      ...(workers !== undefined ? { size: workers } : {}),
      ...(perClient !== undefined ? { perClient } : {}),
      ...(timeoutS !== undefined ? { timeoutMs: timeoutS * 1000 } : {}),
    };
    // Imported here so that client commands don't load the server's dependencies.
    const [{ startControlPlane }, grpc] = await Promise.all([
      import("../server.ts"),
      import("@grpc/grpc-js"),
    ]);
    // grpc-js logs a failed bind ("E No address added out of total 1 resolved") before the start
    // fails; startupError says the same in full, so that one line goes. Other lines stay as they were.
    const grpcLog =
      (prefix: string) =>
      (message: unknown, ...rest: unknown[]) =>
        console.error(`${prefix} ${message}`, ...rest);
    grpc.setLogger({
      error: (message: unknown, ...rest: unknown[]) => {
        if (!String(message).startsWith("No address added")) grpcLog("E")(message, ...rest);
      },
      info: grpcLog("I"),
      debug: grpcLog("D"),
    });
    let plane: Awaited<ReturnType<typeof startControlPlane>>;
    try {
      plane = await startControlPlane({
        dataDir,
        httpPort,
        xdsPort,
        address,
        ...(edgeKv ? { edgeKv } : {}),
        validation,
        log: (line) => out(line),
      });
    } catch (error) {
      throw new CliError(startupError(error, { httpPort, xdsPort, address, dataDir }));
    }
    let stopping = false;
    const stop = (signal: string) => {
      // A second signal while closing changes nothing: close() is already bounded.
      if (stopping) return;
      stopping = true;
      out(`wasmesh: ${signal}, shutting down`);
      plane.close().then(
        () => process.exit(0),
        (error: unknown) => {
          process.stderr.write(`wasmesh: shutdown failed: ${(error as Error).message}\n`);
          process.exit(1);
        },
      );
    };
    process.on("SIGINT", () => stop("SIGINT"));
    process.on("SIGTERM", () => stop("SIGTERM"));
    return "serving";
  },

  async apply(args, out) {
    const { values, positionals } = parse(
      args,
      { file: { type: "string", short: "f" }, "dry-run": { type: "boolean" } },
      "apply",
    );
    if (values.help) return out(HELP.apply as string);
    noPositionals(positionals, "apply");
    const file = str(values.file);
    if (!file) throw usage("apply", "apply: -f FILE is required");
    // Before reading stdin, so that a bad --api is not found only after the input was typed.
    const api = apiOf(values);
    const text = await readInput(file);
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
  },

  async get(args, out) {
    const { values, positionals } = parse(args, { output: { type: "string", short: "o" } }, "get");
    if (values.help) return out(HELP.get as string);
    const [kindArg, name, extra] = positionals;
    if (!kindArg) throw usage("get", "get: KIND is required");
    if (extra !== undefined) throw usage("get", `get: unexpected argument '${extra}'`);
    const kind = resolveKind(kindArg);
    const format = output(values, ["table", "wide", "yaml", "json"]);
    const api = apiOf(values);
    const path = `/v1/${kindPath(kind)}${name ? `/${encodeURIComponent(name)}` : ""}`;
    const { body } = await api.call("GET", path);
    const items = name ? [body as Resource] : ((body as { items: Resource[] }).items ?? []);
    if (format === "json") return out(JSON.stringify(name ? body : { items }, null, 2));
    if (format === "yaml") {
      const yaml = await import("yaml");
      // Documents as apply reads them; an empty list prints nothing rather than an empty document.
      if (items.length > 0)
        out(
          items
            .map((item) => yaml.stringify(item, { lineWidth: 0 }))
            .join("---\n")
            .trimEnd(),
        );
      return;
    }
    if (items.length === 0) return out(`No ${kind} resources.`);
    out(resourceTable(kind, items, format === "wide"));
  },

  async delete(args, out) {
    const { values, positionals } = parse(args, {}, "delete");
    if (values.help) return out(HELP.delete as string);
    const [kindArg, name, extra] = positionals;
    if (!kindArg || !name) throw usage("delete", "delete: KIND and NAME are required");
    if (extra !== undefined) throw usage("delete", `delete: unexpected argument '${extra}'`);
    const kind = resolveKind(kindArg);
    await apiOf(values).call("DELETE", `/v1/${kindPath(kind)}/${encodeURIComponent(name)}`);
    out(`${kind.toLowerCase()}/${name} deleted`);
  },

  async bootstrap(args, out) {
    const { values, positionals } = parse(
      args,
      {
        "node-id": { type: "string" },
        service: { type: "string" },
        labels: { type: "string" },
        xds: { type: "string" },
        "outbound-port": { type: "string" },
        "inbound-port": { type: "string" },
        "app-port": { type: "string" },
        "inbound-address": { type: "string" },
        "admin-port": { type: "string" },
        "xds-protocol": { type: "string" },
      },
      "bootstrap",
    );
    if (values.help) return out(HELP.bootstrap as string);
    noPositionals(positionals, "bootstrap");
    const nodeId = str(values["node-id"]);
    const service = str(values.service);
    if (!nodeId) throw usage("bootstrap", "bootstrap: --node-id is required");
    if (!service) throw usage("bootstrap", "bootstrap: --service is required");
    const [
      { bootstrapYaml, parseHostPort },
      { nodeMetadata, parseNodeIdentity, DEFAULT_ADDRESSES, DEFAULT_PORTS, NODE_METADATA },
    ] = await Promise.all([import("./bootstrap.ts"), import("../envoy/index.ts")]);
    const protocol = str(values["xds-protocol"]) ?? "sotw";
    if (protocol !== "sotw" && protocol !== "delta") {
      throw usage("bootstrap", `--xds-protocol: expected sotw or delta, got '${protocol}'`);
    }
    const xds = str(values.xds) ?? "127.0.0.1:5678";
    try {
      parseHostPort(xds, "--xds");
    } catch (error) {
      throw usage("bootstrap", (error as Error).message);
    }
    const ports = {
      "--outbound-port": parsePort(str(values["outbound-port"]), "--outbound-port", DEFAULT_PORTS.outbound),
      "--inbound-port": parsePort(str(values["inbound-port"]), "--inbound-port", DEFAULT_PORTS.inbound),
      "--app-port": parsePort(str(values["app-port"]), "--app-port"),
      "--admin-port": parsePort(str(values["admin-port"]), "--admin-port", DEFAULT_PORTS.admin),
    };
    // Every one of them is bound on this host (the app's by the app): two equal ones cannot both work.
    const seen = new Map<number, string>();
    for (const [flag, port] of Object.entries(ports)) {
      if (port === undefined) continue;
      const other = seen.get(port);
      if (other) throw usage("bootstrap", `${other} and ${flag} are both ${port}; they must differ`);
      seen.set(port, flag);
    }
    const appPort = ports["--app-port"];
    const proxy: ProxyIdentity = {
      nodeId,
      service,
      labels: parseLabels(str(values.labels)),
      outboundPort: ports["--outbound-port"] as number,
      inboundPort: ports["--inbound-port"] as number,
      ...(appPort !== undefined ? { appPort } : {}),
      outboundAddress: DEFAULT_ADDRESSES.outbound,
      inboundAddress: str(values["inbound-address"]) ?? DEFAULT_ADDRESSES.inbound,
      appAddress: DEFAULT_ADDRESSES.app,
    };
    // The control plane refuses a stream whose identity it cannot read; say so now, not at run time.
    const identity = parseNodeIdentity({ id: nodeId, cluster: service, metadata: nodeMetadata(proxy) });
    if (!identity.ok) {
      const flags: Record<string, string> = {
        [`node.metadata["${NODE_METADATA.service}"]`]: "--service",
        [`node.metadata["${NODE_METADATA.labels}"]`]: "--labels",
        [`node.metadata["${NODE_METADATA.inboundAddress}"]`]: "--inbound-address",
      };
      let message = identity.error.replace(/^invalid node identity: /, "");
      for (const [field, flag] of Object.entries(flags)) message = message.replaceAll(field, flag);
      throw usage("bootstrap", `bootstrap: the control plane would refuse this identity: ${message}`);
    }
    out(
      bootstrapYaml({
        proxy,
        xds,
        adminPort: ports["--admin-port"] as number,
        protocol,
      }).trimEnd(),
    );
  },

  async status(args, out) {
    const { values, positionals } = parse(args, { output: { type: "string", short: "o" } }, "status");
    if (values.help) return out(HELP.status as string);
    noPositionals(positionals, "status");
    const format = output(values, ["table", "json"]);
    const { body } = await apiOf(values).call("GET", "/v1/status");
    const proxies = (body as { proxies: StatusRow[] }).proxies ?? [];
    if (format === "json") return out(JSON.stringify(body, null, 2));
    if (proxies.length === 0) return out("No proxies connected.");
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
  },

  async modules(args, out) {
    const [sub, ...rest] = args;
    if (sub === "--help" || sub === "-h") return out(HELP.modules as string);
    if (sub === undefined) throw usage("modules", "modules: a subcommand is required (push)");
    if (sub !== "push") throw usage("modules", `modules: unknown subcommand '${sub}'`);
    const { values, positionals } = parse(
      rest,
      {
        name: { type: "string" },
        description: { type: "string" },
        configuration: { type: "string" },
        "root-id": { type: "string" },
      },
      "modules",
    );
    if (values.help) return out(HELP.modules as string);
    const [file, extra] = positionals;
    const name = str(values.name);
    if (!file) throw usage("modules", "modules push: FILE is required");
    if (extra !== undefined) throw usage("modules", `modules push: unexpected argument '${extra}'`);
    if (!name) throw usage("modules", "modules push: --name is required");
    const configuration = str(values.configuration);
    if (configuration !== undefined) {
      try {
        JSON.parse(configuration);
      } catch (error) {
        throw usage("modules", `--configuration: not JSON: ${(error as Error).message}`);
      }
    }
    const api = apiOf(values);
    let bytes: Buffer;
    try {
      bytes = await readFile(file);
    } catch (error) {
      throw readError(file, error);
    }
    const query = new URLSearchParams();
    const description = str(values.description);
    const rootId = str(values["root-id"]);
    if (description !== undefined) query.set("description", description);
    if (configuration !== undefined) query.set("configuration", configuration);
    if (rootId !== undefined) query.set("rootId", rootId);
    const path = `/v1/modules/${encodeURIComponent(name)}${query.size > 0 ? `?${query}` : ""}`;
    // The API answers 200 both for a new version and for the same bytes again; what was there
    // before tells the two apart.
    const before = (await api.tryGet(`/v1/wasmmodules/${encodeURIComponent(name)}`)) as StoredDoc | undefined;
    const { status, body, header } = await api.call("POST", path, {
      body: new Uint8Array(bytes),
      contentType: "application/wasm",
    });
    for (const warning of header("wasmesh-warning")) warn(warning);
    const resource = body as StoredDoc;
    const action =
      status === 201
        ? "created"
        : before?.metadata.resourceVersion === resource.metadata.resourceVersion
          ? "unchanged"
          : "configured";
    out(`wasmmodule/${name} ${action} (sha256 ${resource.spec?.sha256 ?? "?"}, ${bytes.length} bytes)`);
  },
};

/** `wasmesh edge export`: the configuration the API serves, checked as a worker would check it. */
commands.edge = async (args, out) => {
  const [sub, ...rest] = args;
  if (sub === "--help" || sub === "-h") return out(HELP.edge as string);
  if (sub === undefined) throw usage("edge", "edge: a subcommand is required (export)");
  if (sub !== "export") throw usage("edge", `edge: unknown subcommand '${sub}'`);
  const { values, positionals } = parse(rest, { output: { type: "string", short: "o" } }, "edge");
  if (values.help) return out(HELP.edge as string);
  noPositionals(positionals, "edge");
  const { body } = await apiOf(values).call("GET", "/v1/edge/config");
  // What a worker would refuse must not reach a KV key by way of a script.
  const { validateEdgeConfig } = await import("../../schema/edge-config.ts");
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
};

/** `wasmesh version`: the CLI's version, and the control plane's when it answers. */
commands.version = async (args, out) => {
  const { values, positionals } = parse(
    args,
    { client: { type: "boolean" }, output: { type: "string", short: "o" } },
    "version",
  );
  if (values.help) return out(HELP.version as string);
  noPositionals(positionals, "version");
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
};

/** The server's --edge-kv-* flags as ControlPlaneOptions.edgeKv; undefined without them. */
function edgeKvOptions(values: Parsed["values"]): KvTarget | undefined {
  const accountId = str(values["edge-kv-account"]);
  const namespaceId = str(values["edge-kv-namespace"]);
  const key = str(values["edge-kv-key"]);
  const apiBase = str(values["edge-kv-api-base"]);
  if (accountId === undefined && namespaceId === undefined) {
    if (key !== undefined || apiBase !== undefined) {
      throw usage(
        "server",
        "--edge-kv-key and --edge-kv-api-base need --edge-kv-account and --edge-kv-namespace",
      );
    }
    return undefined;
  }
  if (!accountId || !namespaceId) {
    throw usage("server", "--edge-kv-account and --edge-kv-namespace go together");
  }
  if (key === "") throw usage("server", "--edge-kv-key: must not be empty");
  if (apiBase !== undefined && !/^https?:$/.test(URL.parse(apiBase)?.protocol ?? "")) {
    throw usage("server", `--edge-kv-api-base: expected an http(s) URL, got '${apiBase}'`);
  }
  const token = process.env.CLOUDFLARE_API_TOKEN;
  if (!token) {
    throw usage("server", "--edge-kv-account: set CLOUDFLARE_API_TOKEN to a token that can edit Workers KV");
  }
  return { accountId, namespaceId, token, ...(key ? { key } : {}), ...(apiBase ? { apiBase } : {}) };
}

function warn(message: string): void {
  process.stderr.write(`warning: ${message}\n`);
}

interface StatusRow {
  nodeId: string;
  service: string;
  protocol: string;
  acked: Record<string, string>;
  syncedVersion?: string;
  nacks?: number;
  lastRejection?: { typeUrl: string; version: string; message: string };
}

const shortType = (typeUrl: string) => typeUrl.slice(typeUrl.lastIndexOf(".") + 1);

function ackedSummary(acked: Record<string, string>): string {
  const versions = [...new Set(Object.values(acked))];
  return versions.length === 0 ? "-" : versions.length === 1 ? (versions[0] as string) : versions.join("/");
}

/** `--api URL` / `--api=URL` before the command, moved after it so that each command parses it. */
function hoistGlobalOptions(argv: string[]): string[] {
  const global: string[] = [];
  let i = 0;
  for (; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === "--api") {
      if (argv[i + 1] === undefined) throw usage("main", "--api: a URL is required");
      global.push(arg, argv[i + 1] as string);
      i++;
    } else if (arg.startsWith("--api=")) global.push(arg);
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
      if (topic !== undefined && (topic === "main" || HELP[topic] === undefined)) {
        throw usage("main", `help: unknown command '${topic}'`);
      }
      out(HELP[topic ?? "main"] as string);
      return 0;
    }
    // The CLI's own version, without a call to the control plane (`wasmesh version` makes one).
    if (command === "--version") {
      out(`wasmesh ${VERSION}`);
      return 0;
    }
    // No command: the whole help, but as an error (stderr, exit 2) so that scripts notice.
    if (command === undefined) throw new CliError(`a command is required\n\n${HELP.main}`, 2);
    const run = commands[command];
    if (!run) {
      throw usage(
        "main",
        command.startsWith("-")
          ? `unknown option '${command}' (options go after the command)`
          : `unknown command '${command}'; commands: ${Object.keys(commands).join(", ")}`,
      );
    }
    return (await run(args, out)) === "serving" ? null : 0;
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
