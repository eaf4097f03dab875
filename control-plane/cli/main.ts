// The `wasmesh` command line: the control plane server, and a client of its HTTP API.
// Contract: ARCHITECTURE.md, "Public contract". Every failure prints `wasmesh: <why>` on stderr and
// exits non-zero (2 for a usage error, 1 otherwise).
import { readFile } from "node:fs/promises";
import { type ParseArgsOptionsConfig, parseArgs } from "node:util";
import { stringify } from "yaml";
import { KINDS, type Kind } from "../resources/index.ts";
import { DEFAULT_PORTS, type ProxyIdentity } from "../translate/types.ts";
import { bootstrapYaml } from "./bootstrap.ts";
import { ApiClient, CliError, DEFAULT_API } from "./client.ts";

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

Every command takes --api URL (default $WASMESH_API, else ${DEFAULT_API}) and --help.
Kinds: ${KINDS.join(", ")}`,
  server: `Usage: wasmesh server [--data DIR] [--http-port 5681] [--xds-port 5678] [--address 127.0.0.1]
                      [--module-delivery inline|remote] [--public-url URL]

Runs the control plane: the HTTP API (--http-port) and the gRPC xDS server (--xds-port), with the
resources in an embedded SQLite database under --data (default .wasmesh/).
  --address          interface both servers listen on (0.0.0.0 for sidecars on other hosts)
  --module-delivery  inline: module bytes travel inside the ECDS resource (default);
                     remote: Envoy fetches them from --public-url with the sha256 pinned
  --public-url       the API's URL as sidecars reach it (default http://<address>:<http-port>)`,
  apply: `Usage: wasmesh apply -f FILE [--dry-run]

Creates or updates every resource in FILE (multi-document YAML, or JSON; - reads stdin), all or
nothing. --dry-run validates against the stored state and stores nothing.`,
  get: `Usage: wasmesh get KIND [NAME] [-o table|yaml|json]

KIND is one of ${KINDS.join(", ")} (any case, singular or plural).`,
  delete: "Usage: wasmesh delete KIND NAME",
  bootstrap: `Usage: wasmesh bootstrap --node-id ID --service NAME [--labels k=v,...] [--xds HOST:PORT]
                         [--outbound-port 15001] [--inbound-port 15006] [--app-port P]
                         [--admin-port 9901] [--xds-protocol sotw|delta]

Prints (YAML) the bootstrap of an Envoy sidecar: node identity, admin and the ADS cluster only;
everything else comes from the control plane over xDS. Without --app-port there is no inbound
listener. --xds defaults to 127.0.0.1:5678.`,
  status: `Usage: wasmesh status [-o table|json]

The proxies connected to the control plane, the version each has acknowledged, and the last
configuration each rejected (Envoy's reason).`,
  modules: `Usage: wasmesh modules push FILE --name NAME [--description TEXT]

Uploads a Proxy-Wasm module version. The control plane validates it (WebAssembly, Proxy-Wasm ABI
0.2.1 exports, a smoke run) and stores it by sha256; WasmPlugins that name it pick it up.`,
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

function parsePort(value: string | undefined, flag: string, fallback?: number): number | undefined {
  if (value === undefined) return fallback;
  const port = Number(value);
  if (!/^\d+$/.test(value) || port < 1 || port > 65_535) {
    throw new CliError(`${flag}: expected a port number 1-65535, got '${value}'`, 2);
  }
  return port;
}

function parseLabels(value: string | undefined): Record<string, string> {
  const labels: Record<string, string> = {};
  if (!value) return labels;
  for (const pair of value.split(",")) {
    const eq = pair.indexOf("=");
    if (eq <= 0) throw new CliError(`--labels: expected k=v[,k=v...], got '${pair}'`, 2);
    labels[pair.slice(0, eq).trim()] = pair.slice(eq + 1).trim();
  }
  return labels;
}

interface Parsed {
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
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
    throw new CliError(`${(error as Error).message}\n\n${HELP[command]}`, 2);
  }
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

function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length))) ?? [];
  return rows
    .map((r) =>
      r
        .map((cell, i) => cell.padEnd(widths[i] ?? 0))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

function age(iso: string | undefined): string {
  if (!iso) return "";
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (seconds < 120) return `${seconds}s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}m`;
  if (seconds < 172_800) return `${Math.round(seconds / 3600)}h`;
  return `${Math.round(seconds / 86_400)}d`;
}

async function readInput(file: string): Promise<string> {
  if (file === "-") {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks).toString("utf8");
  }
  try {
    return await readFile(file, "utf8");
  } catch (error) {
    throw new CliError(`-f: cannot read '${file}': ${(error as NodeJS.ErrnoException).code ?? error}`);
  }
}

type Out = (text: string) => void;

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
}

const commands: Record<string, (args: string[], out: Out) => Promise<void>> = {
  async server(args, out) {
    const { values } = parse(
      args,
      {
        data: { type: "string" },
        "http-port": { type: "string" },
        "xds-port": { type: "string" },
        address: { type: "string" },
        "module-delivery": { type: "string" },
        "public-url": { type: "string" },
      },
      "server",
    );
    if (values.help) return out(HELP.server as string);
    const delivery = values["module-delivery"] ?? "inline";
    if (delivery !== "inline" && delivery !== "remote") {
      throw new CliError(`--module-delivery: expected inline or remote, got '${delivery}'`, 2);
    }
    // Imported here so that client commands don't load the server's dependencies.
    const { startControlPlane } = await import("../server.ts");
    const plane = await startControlPlane({
      dataDir: (values.data as string | undefined) ?? ".wasmesh",
      httpPort: parsePort(values["http-port"] as string | undefined, "--http-port", 5681) as number,
      xdsPort: parsePort(values["xds-port"] as string | undefined, "--xds-port", 5678) as number,
      address: (values.address as string | undefined) ?? "127.0.0.1",
      moduleDelivery: delivery,
      ...(values["public-url"] ? { publicUrl: values["public-url"] as string } : {}),
      log: (line) => out(line),
    });
    const stop = async (signal: string) => {
      out(`wasmesh: ${signal}, shutting down`);
      await plane.close();
      process.exit(0);
    };
    process.once("SIGINT", () => void stop("SIGINT"));
    process.once("SIGTERM", () => void stop("SIGTERM"));
  },

  async apply(args, out) {
    const { values } = parse(
      args,
      { file: { type: "string", short: "f" }, "dry-run": { type: "boolean" } },
      "apply",
    );
    if (values.help) return out(HELP.apply as string);
    const file = values.file as string | undefined;
    if (!file) throw new CliError(`apply: -f FILE is required\n\n${HELP.apply}`, 2);
    const text = await readInput(file);
    // JSON when it is JSON (one resource, an array, or {items}); anything else is sent as YAML,
    // including multi-document YAML whose documents are written as JSON objects.
    const json = file.endsWith(".json") || isJson(text);
    const { body } = await apiOf(values).call("POST", `/v1/apply${values["dry-run"] ? "?dryRun=true" : ""}`, {
      body: text,
      contentType: json ? "application/json" : "application/yaml",
    });
    const result = body as {
      results?: { kind: string; name: string; action: string }[];
      warnings?: { kind?: string; name?: string; path?: string; message: string }[];
    };
    const suffix = values["dry-run"] ? " (dry run)" : "";
    for (const r of result.results ?? []) out(`${r.kind.toLowerCase()}/${r.name} ${r.action}${suffix}`);
    for (const w of result.warnings ?? []) {
      process.stderr.write(`warning: ${w.kind ?? ""}/${w.name ?? ""} ${w.path ?? ""}: ${w.message}\n`);
    }
  },

  async get(args, out) {
    const { values, positionals } = parse(args, { output: { type: "string", short: "o" } }, "get");
    if (values.help) return out(HELP.get as string);
    const [kindArg, name, extra] = positionals;
    if (!kindArg || extra !== undefined) throw new CliError(`get: expected KIND [NAME]\n\n${HELP.get}`, 2);
    const kind = resolveKind(kindArg);
    const format = output(values, ["table", "yaml", "json"]);
    const api = apiOf(values);
    const path = `/v1/${kindPath(kind)}${name ? `/${encodeURIComponent(name)}` : ""}`;
    const { body } = await api.call("GET", path);
    const items = name ? [body as StoredDoc] : ((body as { items: StoredDoc[] }).items ?? []);
    if (format === "json") return out(JSON.stringify(name ? body : { items }, null, 2));
    if (format === "yaml") return out(items.map((item) => stringify(item, { lineWidth: 0 })).join("---\n"));
    if (items.length === 0) return out(`No ${kind} resources.`);
    out(
      table([
        ["NAME", "VERSION", "AGE"],
        ...items.map((item) => [
          item.metadata.name,
          item.metadata.resourceVersion ?? "",
          age(item.metadata.updatedAt),
        ]),
      ]),
    );
  },

  async delete(args, out) {
    const { values, positionals } = parse(args, {}, "delete");
    if (values.help) return out(HELP.delete as string);
    const [kindArg, name, extra] = positionals;
    if (!kindArg || !name || extra !== undefined)
      throw new CliError(`delete: expected KIND NAME\n\n${HELP.delete}`, 2);
    const kind = resolveKind(kindArg);
    await apiOf(values).call("DELETE", `/v1/${kindPath(kind)}/${encodeURIComponent(name)}`);
    out(`${kind.toLowerCase()}/${name} deleted`);
  },

  async bootstrap(args, out) {
    const { values } = parse(
      args,
      {
        "node-id": { type: "string" },
        service: { type: "string" },
        labels: { type: "string" },
        xds: { type: "string" },
        "outbound-port": { type: "string" },
        "inbound-port": { type: "string" },
        "app-port": { type: "string" },
        "admin-port": { type: "string" },
        "xds-protocol": { type: "string" },
      },
      "bootstrap",
    );
    if (values.help) return out(HELP.bootstrap as string);
    const nodeId = values["node-id"] as string | undefined;
    const service = values.service as string | undefined;
    if (!nodeId) throw new CliError(`bootstrap: --node-id is required\n\n${HELP.bootstrap}`, 2);
    if (!service) throw new CliError(`bootstrap: --service is required\n\n${HELP.bootstrap}`, 2);
    const protocol = (values["xds-protocol"] as string | undefined) ?? "sotw";
    if (protocol !== "sotw" && protocol !== "delta") {
      throw new CliError(`--xds-protocol: expected sotw or delta, got '${protocol}'`, 2);
    }
    const appPort = parsePort(values["app-port"] as string | undefined, "--app-port");
    const proxy: ProxyIdentity = {
      nodeId,
      service,
      labels: parseLabels(values.labels as string | undefined),
      outboundPort: parsePort(
        values["outbound-port"] as string | undefined,
        "--outbound-port",
        DEFAULT_PORTS.outbound,
      ) as number,
      inboundPort: parsePort(
        values["inbound-port"] as string | undefined,
        "--inbound-port",
        DEFAULT_PORTS.inbound,
      ) as number,
      ...(appPort !== undefined ? { appPort } : {}),
      outboundAddress: "127.0.0.1",
      inboundAddress: "0.0.0.0",
      appAddress: "127.0.0.1",
    };
    try {
      out(
        bootstrapYaml({
          proxy,
          xds: (values.xds as string | undefined) ?? "127.0.0.1:5678",
          adminPort: parsePort(
            values["admin-port"] as string | undefined,
            "--admin-port",
            DEFAULT_PORTS.admin,
          ) as number,
          protocol,
        }).trimEnd(),
      );
    } catch (error) {
      throw new CliError((error as Error).message, 2);
    }
  },

  async status(args, out) {
    const { values } = parse(args, { output: { type: "string", short: "o" } }, "status");
    if (values.help) return out(HELP.status as string);
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
          ackedSummary(p.acked),
          String(p.nacks ?? 0),
          p.lastRejection
            ? `${shortType(p.lastRejection.typeUrl)} v${p.lastRejection.version}: ${p.lastRejection.message}`
            : "",
        ]),
      ]),
    );
  },

  async modules(args, out) {
    const [sub, ...rest] = args;
    if (sub === "--help" || sub === "-h" || sub === undefined) return out(HELP.modules as string);
    if (sub !== "push") throw new CliError(`modules: unknown subcommand '${sub}'\n\n${HELP.modules}`, 2);
    const { values, positionals } = parse(
      rest,
      { name: { type: "string" }, description: { type: "string" } },
      "modules",
    );
    if (values.help) return out(HELP.modules as string);
    const [file, extra] = positionals;
    const name = values.name as string | undefined;
    if (!file || extra !== undefined) throw new CliError(`modules push: expected FILE\n\n${HELP.modules}`, 2);
    if (!name) throw new CliError(`modules push: --name is required\n\n${HELP.modules}`, 2);
    let bytes: Buffer;
    try {
      bytes = await readFile(file);
    } catch (error) {
      throw new CliError(`cannot read '${file}': ${(error as NodeJS.ErrnoException).code ?? error}`);
    }
    const description = values.description
      ? `?description=${encodeURIComponent(values.description as string)}`
      : "";
    const { status, body } = await apiOf(values).call(
      "POST",
      `/v1/modules/${encodeURIComponent(name)}${description}`,
      {
        body: new Uint8Array(bytes),
        contentType: "application/wasm",
      },
    );
    const resource =
      (body as { resource?: { spec?: { sha256?: string } } }).resource ??
      (body as { spec?: { sha256?: string } });
    const sha = resource?.spec?.sha256 ?? "";
    out(`wasmmodule/${name} ${status === 201 ? "created" : "pushed"} (sha256 ${sha}, ${bytes.length} bytes)`);
  },
};

interface StatusRow {
  nodeId: string;
  service: string;
  protocol: string;
  acked: Record<string, string>;
  nacks?: number;
  lastRejection?: { typeUrl: string; version: string; message: string };
}

const shortType = (typeUrl: string) => typeUrl.slice(typeUrl.lastIndexOf(".") + 1);

function ackedSummary(acked: Record<string, string>): string {
  const versions = [...new Set(Object.values(acked))];
  return versions.length === 0 ? "-" : versions.length === 1 ? (versions[0] as string) : versions.join("/");
}

/** Runs one invocation; returns the exit code. Output goes through `out`, errors to stderr. */
export async function main(
  argv: string[],
  out: Out = (t) => process.stdout.write(`${t}\n`),
): Promise<number> {
  const [command, ...args] = argv;
  if (command === undefined || command === "--help" || command === "-h" || command === "help") {
    out(HELP.main as string);
    return command === undefined ? 2 : 0;
  }
  const run = commands[command];
  try {
    if (!run) throw new CliError(`unknown command '${command}'\n\n${HELP.main}`, 2);
    await run(args, out);
    return 0;
  } catch (error) {
    if (error instanceof CliError) {
      process.stderr.write(`wasmesh: ${error.message}\n`);
      return error.exitCode;
    }
    process.stderr.write(`wasmesh: ${(error as Error).stack ?? error}\n`);
    return 1;
  }
}
