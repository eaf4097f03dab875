// `wasmesh modules push FILE --name NAME`: uploads a Proxy-Wasm module version.
import { apiOf, type CommandName, type Out, parse, str, usage, warn } from "../args.ts";
import { readBytes } from "../input.ts";

export const help = `Usage: wasmesh modules push FILE --name NAME [--description TEXT] [--configuration JSON]
                            [--root-id ID] [--api URL]

Uploads a Proxy-Wasm module version. The control plane validates it (WebAssembly, Proxy-Wasm ABI
0.2.1 exports, a smoke run in the TypeScript host) and stores it by sha256; WasmPlugins that name
it pick it up. What validation could not check is printed as warnings.
  --name NAME           the module (WasmModule resource) name (required)
  --description TEXT    stored with this version
  --configuration JSON  plugin configuration for the smoke run (not stored); a module that
                        refuses it is rejected
  --root-id ID          plugin root_id for the smoke run`;

const command: CommandName = { name: "modules", help };

/** A WasmModule as the API answers it, what this command reads of it. */
interface StoredModule {
  metadata: { resourceVersion?: string };
  spec?: { sha256?: string };
}

export async function run(args: string[], out: Out): Promise<undefined> {
  const [sub, ...rest] = args;
  if (sub === "--help" || sub === "-h") return out(help);
  if (sub === undefined) throw usage(command, "modules: a subcommand is required (push)");
  if (sub !== "push") throw usage(command, `modules: unknown subcommand '${sub}'`);
  const { values, positionals } = parse(
    rest,
    {
      name: { type: "string" },
      description: { type: "string" },
      configuration: { type: "string" },
      "root-id": { type: "string" },
    },
    command,
  );
  if (values.help) return out(help);
  const [file, extra] = positionals;
  const name = str(values.name);
  if (!file) throw usage(command, "modules push: FILE is required");
  if (extra !== undefined) throw usage(command, `modules push: unexpected argument '${extra}'`);
  if (!name) throw usage(command, "modules push: --name is required");
  const configuration = str(values.configuration);
  if (configuration !== undefined) {
    try {
      JSON.parse(configuration);
    } catch (error) {
      throw usage(command, `--configuration: not JSON: ${(error as Error).message}`);
    }
  }
  const api = apiOf(values);
  const bytes = await readBytes(file);
  const query = new URLSearchParams();
  const description = str(values.description);
  const rootId = str(values["root-id"]);
  if (description !== undefined) query.set("description", description);
  if (configuration !== undefined) query.set("configuration", configuration);
  if (rootId !== undefined) query.set("rootId", rootId);
  const path = `/v1/modules/${encodeURIComponent(name)}${query.size > 0 ? `?${query}` : ""}`;
  // The API answers 200 both for a new version and for the same bytes again; what was there
  // before tells the two apart.
  const before = (await api.tryGet(`/v1/wasmmodules/${encodeURIComponent(name)}`)) as
    | StoredModule
    | undefined;
  const { status, body, header } = await api.call("POST", path, {
    body: new Uint8Array(bytes),
    contentType: "application/wasm",
  });
  for (const warning of header("wasmesh-warning")) warn(warning);
  const resource = body as StoredModule;
  const action =
    status === 201
      ? "created"
      : before?.metadata.resourceVersion === resource.metadata.resourceVersion
        ? "unchanged"
        : "configured";
  out(`wasmmodule/${name} ${action} (sha256 ${resource.spec?.sha256 ?? "?"}, ${bytes.length} bytes)`);
}
