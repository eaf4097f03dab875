// The `wasmesh` CLI as users run it: bin/wasmesh.js in a child process, against a real control
// plane (in this process, on a temp data dir and free ports), and `wasmesh server` itself as a
// child process. Bootstrap output through a real Envoy's `--mode validate`: test/envoy/cli-bootstrap.test.ts.
import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import {
  accessSync,
  constants,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse, parseAllDocuments } from "yaml";
import { KINDS as CLI_KINDS, IMPORTED_KINDS } from "../../control-plane/cli/kinds.ts";
import { TYPE_URL } from "../../control-plane/envoy/index.ts";
import { FIELDS as IMPORT_FIELDS } from "../../control-plane/imports/index.ts";
import { KINDS as MODEL_KINDS } from "../../control-plane/resources/index.ts";
import { type ControlPlane, startControlPlane } from "../../control-plane/server.ts";
import { RELEASE_WASM } from "../support/artifacts.ts";
import { compileAssemblyScript } from "../support/asc.ts";
import {
  adminTokenOf,
  apiOf,
  type Bootstrap,
  type CliResult,
  runCommand,
  WASMESH_BIN,
  waitForStatus,
  wasmesh,
} from "../support/control-plane.ts";
import { freePort, REPO_ROOT } from "../support/envoy.ts";
import { until } from "../support/wait.ts";
import { type AdsClient, connectAds } from "../support/xds-client.ts";

const MESH_YAML = join(REPO_ROOT, "deploy", "examples", "mesh.yaml");
const KINDS =
  "Service, Workload, Route, CircuitBreaker, AccessRule, MeshPolicy, WasmModule, WasmPlugin, Tracing, AccessLog, ImportedResource";

let plane: ControlPlane;
let api: string;
/** The control plane's admin token (wasmesh() sends it for `api`: useToken). */
let token: string;
let dataDir: string;
/** Scratch files (manifests, bootstraps, modules). */
let work: string;
const clients: AdsClient[] = [];

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), "wasmesh-cli-data-"));
  work = mkdtempSync(join(tmpdir(), "wasmesh-cli-work-"));
  plane = await startControlPlane({ dataDir, httpPort: 0, xdsPort: 0, log: () => {} });
  ({ api, token } = apiOf(plane));
});

afterAll(async () => {
  for (const client of clients) client.close();
  await plane?.close();
  rmSync(dataDir, { recursive: true, force: true });
  rmSync(work, { recursive: true, force: true });
});

/** `wasmesh <args>` against the test's control plane (through WASMESH_API). */
const cli = (args: string[], input?: string | Uint8Array): Promise<CliResult> =>
  wasmesh(args, { api, ...(input !== undefined ? { input } : {}) });

function file(name: string, contents: string | Uint8Array): string {
  const path = join(work, name);
  writeFileSync(path, contents);
  return path;
}

const stored = async (kind: string, name: string) => plane.store.get(kind as never, name);

/** A usage error: exit 2, `wasmesh: <message>` on stderr, nothing on stdout. */
function expectUsage(result: CliResult, message: string | RegExp): void {
  expect(result.stdout).toBe("");
  expect(result.stderr).toMatch(/^wasmesh: /);
  if (typeof message === "string") expect(result.stderr).toContain(message);
  else expect(result.stderr).toMatch(message);
  expect(result.code, result.stderr).toBe(2);
}

/** Any other failure: exit 1, a message and no stack trace. */
function expectFailure(result: CliResult, message: string | RegExp): void {
  expect(result.stderr).toMatch(/^wasmesh: /);
  if (typeof message === "string") expect(result.stderr).toContain(message);
  else expect(result.stderr).toMatch(message);
  expect(result.stderr).not.toMatch(/\n\s+at /);
  expect(result.code, result.stderr).toBe(1);
}

function expectOk(result: CliResult): void {
  expect(result.code, result.stderr).toBe(0);
}

describe("the bin", () => {
  it("is the package's bin, so that `npx wasmesh` runs it from the repository", () => {
    const pkg = JSON.parse(readFileSync(join(REPO_ROOT, "package.json"), "utf8")) as {
      bin?: Record<string, string>;
    };
    expect(pkg.bin).toEqual({ wasmesh: "bin/wasmesh.js" });
    expect(readFileSync(WASMESH_BIN, "utf8")).toMatch(/^#!\/usr\/bin\/env node\n/);
    accessSync(WASMESH_BIN, constants.X_OK);
  });

  it("runs as `npx wasmesh …` from the repository, exit codes and all", async () => {
    // npm 9+ runs a bin of the project's own package.json (it links the package into its npx
    // cache); --no makes sure nothing is ever fetched from the registry instead.
    const npx = (args: string[]) =>
      runCommand("npx", ["--no", "--", "wasmesh", ...args], {
        cwd: REPO_ROOT,
        env: {
          ...process.env,
          WASMESH_API: api,
          WASMESH_TOKEN: token,
          // The Node running the tests runs npx and the bin (whose shebang is `env node`).
          PATH: `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ""}`,
        },
      });
    const [ok, usage] = await Promise.all([npx(["get", "meshpolicies", "-o", "json"]), npx(["frob"])]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout)).toEqual({ items: [] });
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain("wasmesh: unknown command 'frob'");
  });

  it("knows every kind of the resource model and every kind apply converts (it lists them rather than load them)", () => {
    expect([...CLI_KINDS]).toEqual(MODEL_KINDS);
    expect(KINDS).toBe(MODEL_KINDS.join(", "));
    // Kubernetes' own v1 Service converts too, but is no imported kind of the CLI: `get service` and
    // `delete service` are the native Service (which it becomes, under discovery's name), and its
    // core group ("") names no qualified form; its original is an ImportedResource like any other.
    expect(IMPORTED_KINDS.map(([kind]) => kind).sort()).toEqual(
      Object.keys(IMPORT_FIELDS)
        .filter((kind) => kind !== "Service")
        .sort(),
    );
  });

  it("loads only the command it runs: --version, help and usage errors never load the server", async () => {
    // Every module Node loads, recorded by a load hook into a file per invocation.
    const hook = `data:text/javascript,${encodeURIComponent(
      'import { registerHooks } from "node:module"; import { appendFileSync } from "node:fs";' +
        "registerHooks({ load(url, context, next) {" +
        ' appendFileSync(process.env.WASMESH_TEST_LOADED, url + "\\n"); return next(url, context); } });',
    )}`;
    const loadedBy = async (args: string[]) => {
      const record = join(work, `loaded-${args.join("_").replace(/\W/g, "")}.txt`);
      const result = await runCommand(process.execPath, ["--import", hook, WASMESH_BIN, ...args], {
        env: { ...process.env, WASMESH_TEST_LOADED: record },
      });
      const urls = readFileSync(record, "utf8").trim().split("\n");
      const commands = urls.flatMap(
        (url) => /\/control-plane\/cli\/commands\/(\w+)\.ts$/.exec(url)?.[1] ?? [],
      );
      const server = urls.filter(
        (url) => url.endsWith("/control-plane/server.ts") || url.includes("/@grpc/"),
      );
      return { result, commands, server };
    };
    const [version, help, getHelp, unknown, serverHelp] = await Promise.all([
      loadedBy(["--version"]),
      loadedBy(["--help"]),
      loadedBy(["help", "get"]),
      loadedBy(["frob"]),
      loadedBy(["server", "--help"]),
    ]);
    expect(version.result.stdout).toMatch(/^wasmesh \d/);
    expect(help.result.code).toBe(0);
    expect(getHelp.result.stdout).toMatch(/^Usage: wasmesh get /);
    expect(unknown.result.code).toBe(2);
    expect(serverHelp.result.stdout).toMatch(/^Usage: wasmesh server /);
    expect([version, help, getHelp, unknown].map((run) => run.commands)).toEqual([[], [], ["get"], []]);
    expect(serverHelp.commands).toEqual(["server"]);
    // The server's own modules (and grpc-js) load only once `wasmesh server` starts one.
    for (const run of [version, help, getHelp, unknown, serverHelp]) expect(run.server).toEqual([]);
  });
});

describe("usage", () => {
  it("--help lists the commands and exits 0", async () => {
    const results = await Promise.all([cli(["--help"]), cli(["-h"]), cli(["help"])]);
    for (const result of results) {
      expectOk(result);
      for (const command of [
        "server",
        "apply -f FILE",
        "get KIND",
        "delete KIND NAME",
        "bootstrap",
        "status",
        "describe KIND NAME",
        "inspect proxy NODE",
        "analyze",
      ]) {
        expect(result.stdout).toContain(command);
      }
      expect(result.stdout).toContain("modules push FILE");
      expect(result.stdout).toContain("--api URL");
      expect(result.stdout).toContain(KINDS);
    }
  });

  it("each command's --help names its options and exits 0", async () => {
    const expected: [string[], string[]][] = [
      [["server"], ["--data DIR", "--http-port", "--xds-port", "--address", "--edge-kv-account"]],
      [["apply"], ["-f, --file FILE", "--dry-run", "--api URL", "stdin"]],
      [["get"], ["KIND [NAME]", "-o, --output", "yaml", "json", KINDS]],
      [["delete"], ["KIND NAME", "--api URL", "still reference"]],
      [
        ["bootstrap"],
        [
          "--node-id ID",
          "--service NAME",
          "--labels",
          "--xds HOST:PORT",
          "--outbound-port",
          "--inbound-port",
          "--app-port",
          "--inbound-address",
          "--admin-port",
          "--xds-protocol",
          "--disable-hot-restart",
        ],
      ],
      [["version"], ["--client", "-o, --output", "--api URL"]],
      [["status"], ["-o, --output", "json", "--api URL"]],
      [["describe"], ["KIND NAME", "--api URL", "Service", "Route", "acknowledged"]],
      [
        ["inspect"],
        [
          "proxy NODE",
          "--type TYPE",
          "clusters",
          "listeners",
          "routes",
          "endpoints",
          "extensions",
          "yaml",
          "SHA256",
        ],
      ],
      [["analyze"], ["-o, --output", "Exit status", "Nobody calls", "no request", "--api URL"]],
      [
        ["modules", "push"],
        ["--name NAME", "--description", "--configuration JSON", "--root-id", "--api URL"],
      ],
      [["modules"], ["modules push FILE", "--name NAME"]],
      [
        ["token"],
        [
          "token create --role admin|read-only",
          "token dataplane --service S",
          "token list",
          "token revoke ID",
          "--ttl DURATION",
        ],
      ],
    ];
    // --help everywhere, and -h (the same option) once.
    const results = await Promise.all([
      ...expected.map(([command]) => cli([...command, "--help"])),
      cli(["get", "-h"]),
    ]);
    for (const [i, [command, options]] of expected.entries()) {
      const result = results[i] as CliResult;
      expectOk(result);
      expect(result.stdout).toMatch(new RegExp(`^Usage: wasmesh ${command.join(" ")}`));
      for (const option of options) expect(result.stdout, command.join(" ")).toContain(option);
      expect(result.stderr).toBe("");
    }
    expect(results.at(-1)).toEqual(results[2]);
    const [helpGet, helpNothing] = await Promise.all([cli(["help", "get"]), cli(["help", "nothing"])]);
    expect(helpGet).toEqual(results[2]);
    expectUsage(helpNothing, "help: unknown command 'nothing'");
  });

  it("no command prints the usage as an error, exit 2", async () => {
    const result = await cli([]);
    expectUsage(result, "wasmesh: a command is required");
    expect(result.stderr).toContain("Usage: wasmesh <command> [options]");
    expect(result.stderr).toContain("modules push FILE");
  });

  it("an unknown command, subcommand, option or value is a usage error, exit 2, saying which", async () => {
    const [command, option, first, subcommand, noSub, missing, extra, format, statusFormat] =
      await Promise.all([
        cli(["frob"]),
        cli(["--frob"]),
        cli(["get", "routes", "--bogus"]),
        cli(["modules", "pull"]),
        cli(["modules"]),
        cli(["get", "routes", "-o"]),
        cli(["status", "extra"]),
        cli(["get", "routes", "-o", "xml"]),
        cli(["status", "-o", "yaml"]),
      ]);
    expectUsage(
      command,
      "unknown command 'frob'; commands: server, apply, get, delete, bootstrap, dataplane, status, describe, inspect, analyze, token, ca, modules",
    );
    expect(command.stderr).toContain("Run 'wasmesh --help' for more.");
    expectUsage(option, "unknown option '--frob'");
    expectUsage(first, "wasmesh: get: unknown option '--bogus'");
    expect(first.stderr).toContain("Usage: wasmesh get KIND [NAME]");
    expect(first.stderr).toContain("Run 'wasmesh get --help' for more.");
    expectUsage(subcommand, "modules: unknown subcommand 'pull'");
    expectUsage(noSub, "modules: a subcommand is required (push)");
    expectUsage(missing, "get: option '-o, --output <value>' argument missing");
    expectUsage(extra, "status: unexpected argument 'extra'");
    expectUsage(format, "-o: expected one of table, wide, yaml, json, got 'xml'");
    expectUsage(statusFormat, "-o: expected one of table, json, got 'yaml'");
  });

  it("a name every JavaScript object has is no command (it once ran Object's constructor, exit 0)", async () => {
    const [command, help] = await Promise.all([cli(["constructor"]), cli(["help", "toString"])]);
    expectUsage(command, "unknown command 'constructor'; commands: server, apply");
    expectUsage(help, "help: unknown command 'toString'");
  });

  it("required arguments: missing ones are usage errors naming them", async () => {
    const results = await Promise.all([
      cli(["apply"]),
      cli(["apply", "-f", MESH_YAML, "extra"]),
      cli(["get"]),
      cli(["get", "routes", "reviews", "extra"]),
      cli(["delete", "route"]),
      cli(["modules", "push", "--name", "x"]),
      cli(["modules", "push", RELEASE_WASM]),
    ]);
    const messages = [
      "apply: -f FILE is required",
      "apply: unexpected argument 'extra'",
      "get: KIND is required",
      "get: unexpected argument 'extra'",
      "delete: KIND and NAME are required",
      "modules push: FILE is required",
      "modules push: --name is required",
    ];
    for (const [i, result] of results.entries()) expectUsage(result, messages[i] as string);
  });

  it("an unknown kind is a usage error listing the kinds", async () => {
    const [get, del] = await Promise.all([cli(["get", "gizmos"]), cli(["delete", "gizmo", "x"])]);
    expectUsage(get, `unknown kind 'gizmos'; kinds: ${KINDS}`);
    expectUsage(del, "unknown kind 'gizmo'");
  });
});

describe("apply, get, delete", () => {
  it("applies a multi-document YAML file, and again: unchanged", async () => {
    const first = await cli(["apply", "-f", MESH_YAML]);
    expectOk(first);
    expect(first.stdout.trim().split("\n")).toEqual([
      "service/reviews created",
      "service/productpage created",
      "workload/reviews-v1-a created",
      "workload/reviews-v2-a created",
      "workload/productpage-a created",
      "route/reviews created",
      "circuitbreaker/reviews-v2 created",
      "accessrule/productpage-to-reviews created",
      "meshpolicy/default created",
      "wasmplugin/reviews-tagging created",
    ]);
    expect(await plane.store.list()).toHaveLength(10);
    const again = await cli(["apply", "-f", MESH_YAML]);
    expectOk(again);
    expect(again.stdout.trim().split("\n")).toHaveLength(10);
    expect(again.stdout).not.toMatch(/created|configured/);
    expect(again.stdout).toContain("route/reviews unchanged");
  });

  it("--dry-run validates and stores nothing", async () => {
    const revision = await plane.store.revision();
    const manifest = file("dry.yaml", service("dry-run-only"));
    const result = await cli(["apply", "--dry-run", "-f", manifest]);
    expectOk(result);
    // The outcome, then what would be created (apply --dry-run's diff against what is stored).
    const [outcome, ...diff] = result.stdout.trim().split("\n");
    expect(outcome).toBe("service/dry-run-only created (dry run)");
    expect(diff.slice(0, 3)).toEqual([
      "--- /dev/null",
      "+++ service/dry-run-only (applied)",
      "@@ -0,0 +1,9 @@",
    ]);
    expect(diff).toContain("+  name: dry-run-only");
    expect(await stored("Service", "dry-run-only")).toBeUndefined();
    expect(await plane.store.revision()).toBe(revision);
  });

  it("reads stdin with -f -", async () => {
    const result = await cli(
      ["apply", "-f", "-"],
      `${service("ratings")}---\n${workload("ratings-a", "ratings")}`,
    );
    expectOk(result);
    expect(result.stdout.trim().split("\n")).toEqual([
      "service/ratings created",
      "workload/ratings-a created",
    ]);
    expect(await stored("Workload", "ratings-a")).toMatchObject({ spec: { service: "ratings" } });
  });

  it("reads a .json file (an array of resources)", async () => {
    const manifest = file(
      "details.json",
      JSON.stringify([parse(service("details")), parse(workload("details-a", "details"))], null, 2),
    );
    const result = await cli(["apply", "-f", manifest]);
    expectOk(result);
    expect(result.stdout.trim().split("\n")).toEqual([
      "service/details created",
      "workload/details-a created",
    ]);
    expect(await stored("Service", "details")).toBeDefined();
  });

  it("refuses an invalid manifest with exit 1, the field paths, and stores nothing", async () => {
    const revision = await plane.store.revision();
    const manifest = file(
      "bad.yaml",
      `${service("half-applied")}---
apiVersion: wasmesh.io/v1alpha1
kind: Route
metadata: { name: bad }
spec:
  service: reviews
  rules:
    - destinations:
        - service: reviews
          weight: -3
`,
    );
    const result = await cli(["apply", "-f", manifest]);
    expectFailure(result, "wasmesh: 1 document is invalid; nothing was applied");
    expect(result.stderr).toContain("spec.rules[0].name: is required");
    expect(result.stderr).toContain("spec.rules[0].destinations[0].weight:");
    expect(result.stdout).toBe("");
    expect(await stored("Service", "half-applied")).toBeUndefined();
    expect(await plane.store.revision()).toBe(revision);
  });

  it("reports unreadable, empty and malformed input with exit 1", async () => {
    const [missing, empty, yaml, json] = await Promise.all([
      cli(["apply", "-f", join(work, "nope.yaml")]),
      cli(["apply", "-f", "-"], "  \n"),
      cli(["apply", "-f", "-"], "kind: [\n"),
      cli(["apply", "-f", file("broken.json", "{ not json")]),
    ]);
    expectFailure(missing, `cannot read '${join(work, "nope.yaml")}': no such file or directory (ENOENT)`);
    expectFailure(empty, "stdin is empty: nothing to apply");
    expectFailure(yaml, "the request body is not valid YAML");
    expectFailure(json, /wasmesh: .*JSON/);
  });

  it("refuses invalid UTF-8 (file or stdin), YAML tags, deep nesting and NUL characters, saying where", async () => {
    const revision = await plane.store.revision();
    // A description saved as Latin-1: "café" with é as the single byte 0xe9.
    const before = Buffer.from(`${service("latin1")}  description: caf`);
    const latin1 = Buffer.concat([before, Buffer.from([0xe9]), Buffer.from("\n")]);
    const line = before.toString().split("\n").length;
    const where = `byte 0xe9 at offset ${before.length} (line ${line}); save it as UTF-8`;
    const path = file("latin1.yaml", latin1);
    const deep = `{"apiVersion":"wasmesh.io/v1alpha1","kind":"WasmPlugin","metadata":{"name":"deep"},"spec":{"module":"mesh","services":["*"],"configuration":{"x":${"[".repeat(100_000)}${"]".repeat(100_000)}}}}`;
    const [fromFile, fromStdin, tagged, nested, nul] = await Promise.all([
      cli(["apply", "-f", path]),
      cli(["apply", "-f", "-"], latin1),
      cli(
        ["apply", "-f", "-"],
        `${service("first")}---\n${service("tagged")}  description: !!js/function 'f'\n`,
      ),
      cli(["apply", "-f", file("deep.json", deep)]),
      cli(["apply", "-f", "-"], `${service("nul")}  description: "a\\0b"\n`),
    ]);
    expect(fromFile.stderr).toBe(`wasmesh: '${path}' is not valid UTF-8: ${where}\n`);
    expect(fromStdin.stderr).toBe(`wasmesh: stdin is not valid UTF-8: ${where}\n`);
    expect(tagged.stderr).toBe(
      "wasmesh: 1 document is invalid; nothing was applied\n" +
        "  document 1 (line 20) spec.description: YAML tag !!js/function is not allowed: resources hold plain data (maps, lists, strings, numbers, booleans, null)\n",
    );
    expect(nested.stderr).toBe(
      "wasmesh: 1 document is invalid; nothing was applied\n" +
        `  document 0 WasmPlugin/deep spec.configuration.x${"[0]".repeat(61)}: nested more than 64 levels deep (objects and arrays)\n`,
    );
    expect(nul.stderr).toBe(
      "wasmesh: 1 document is invalid; nothing was applied\n" +
        "  document 0 spec.description: contains a NUL character (\\u0000)\n",
    );
    for (const result of [fromFile, fromStdin, tagged, nested, nul]) expectFailure(result, /^wasmesh: /);
    expect(await plane.store.revision()).toBe(revision);
  });

  it("prints the API's warnings on stderr and still applies", async () => {
    const route = `apiVersion: wasmesh.io/v1alpha1
kind: Route
metadata: { name: ratings-v9 }
spec:
  service: ratings
  rules:
    - name: all
      destinations:
        - service: ratings
          subset: { version: v9 }
`;
    const result = await cli(["apply", "-f", "-"], route);
    expectOk(result);
    expect(result.stdout.trim()).toBe("route/ratings-v9 created");
    expect(result.stderr).toBe(
      "warning: Route/ratings-v9 spec.rules[0].destinations[0].subset: selects no workload of Service 'ratings'\n",
    );
  });

  it("get KIND prints a table", async () => {
    const result = await cli(["get", "services"]);
    expectOk(result);
    const lines = result.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^NAME\s+PORTS\s+AGE$/);
    expect(lines.slice(1).map((l) => l.split(/\s+/)[0])).toEqual([
      "details",
      "productpage",
      "ratings",
      "reviews",
    ]);
    const empty = await cli(["get", "wasmmodules"]);
    expectOk(empty);
    expect(empty.stdout).toBe("No WasmModule resources.\n");
  });

  it("accepts a kind in any case, singular or plural", async () => {
    const results = await Promise.all(
      ["route", "routes", "Route", "ROUTES"].map((kind) => cli(["get", kind, "-o", "json"])),
    );
    for (const result of results) {
      expectOk(result);
      expect(result.stdout).toBe(results[0]?.stdout);
    }
    const policies = await Promise.all([cli(["get", "meshpolicies"]), cli(["get", "MeshPolicy", "default"])]);
    for (const result of policies) {
      expectOk(result);
      expect(result.stdout).toMatch(/^default\s+deny\s+\d+s$/m);
    }
  });

  it("get -o yaml prints documents that apply -f takes back unchanged", async () => {
    const one = await cli(["get", "route", "reviews", "-o", "yaml"]);
    expectOk(one);
    const doc = parse(one.stdout) as { kind: string; metadata: { name: string; resourceVersion: string } };
    expect(doc).toMatchObject({ kind: "Route", metadata: { name: "reviews" } });
    expect(doc.metadata.resourceVersion).toMatch(/^\d+$/);
    const back = await cli(["apply", "-f", file("reviews.yaml", one.stdout)]);
    expectOk(back);
    expect(back.stdout).toBe("route/reviews unchanged\n");

    // A whole kind, through a pipe.
    const all = await cli(["get", "workloads", "-o", "yaml"]);
    expectOk(all);
    expect(parseAllDocuments(all.stdout).map((d) => d.get("kind"))).toEqual(Array(5).fill("Workload"));
    const piped = await cli(["apply", "-f", "-"], all.stdout);
    expectOk(piped);
    expect(piped.stdout.trim().split("\n")).toHaveLength(5);
    expect(piped.stdout).not.toMatch(/created|configured/);

    // Edited: configured; the stale copy then conflicts, as its resourceVersion says.
    const edited = one.stdout.replace("timeoutMs: 2000", "timeoutMs: 2500");
    expect(edited).not.toBe(one.stdout);
    const configured = await cli(["apply", "-f", "-"], edited);
    expectOk(configured);
    expect(configured.stdout).toBe("route/reviews configured\n");
    const stale = await cli(["apply", "-f", "-"], one.stdout);
    expectFailure(stale, "Route 'reviews' has changed");
  });

  it("get -o json prints the API's JSON: a list as {items}, a name as the resource", async () => {
    const [list, one] = await Promise.all([
      cli(["get", "circuitbreakers", "-o", "json"]),
      cli(["get", "circuitbreaker", "reviews-v2", "-o", "json"]),
    ]);
    expectOk(list);
    expectOk(one);
    const items = (JSON.parse(list.stdout) as { items: { metadata: { name: string } }[] }).items;
    expect(items.map((i) => i.metadata.name)).toEqual(["reviews-v2"]);
    expect(JSON.parse(one.stdout)).toMatchObject({
      kind: "CircuitBreaker",
      metadata: { name: "reviews-v2" },
    });
  });

  it("get shows each kind's own columns; -o wide shows more", async () => {
    // A Workload as the data-plane agent registers it: its app port behind the sidecar, a lease.
    const agent = await cli(
      ["apply", "-f", "-"],
      JSON.stringify({
        apiVersion: "wasmesh.io/v1alpha1",
        kind: "Workload",
        metadata: { name: "reviews-agent" },
        spec: { service: "reviews", address: "10.0.1.20", port: 15006, appPort: 9080, leaseSeconds: 120 },
      }),
    );
    expectOk(agent);
    // deploy/examples/mesh.yaml as applied above (the Route's timeout edited since).
    const cases: [string[], Record<string, string>, Record<string, string>][] = [
      [
        ["service", "reviews"],
        { NAME: "reviews", PORTS: "9080/http" },
        { PORTS: "http:9080/http", LABELS: "app.kubernetes.io/part-of=bookinfo" },
      ],
      [
        ["workload", "reviews-v1-a"],
        {
          NAME: "reviews-v1-a",
          SERVICE: "reviews",
          ADDRESS: "10.0.1.11",
          PORT: "9080",
          LABELS: "version=v1",
        },
        { ZONE: "zone-a", "APP PORT": "<none>", LEASE: "<none>" },
      ],
      [
        ["workload", "reviews-agent"],
        { NAME: "reviews-agent", SERVICE: "reviews", ADDRESS: "10.0.1.20", PORT: "15006", LABELS: "<none>" },
        { ZONE: "<none>", "APP PORT": "9080", LEASE: "2m" },
      ],
      [
        ["route", "reviews"],
        {
          NAME: "reviews",
          SERVICE: "reviews",
          RULES: "2",
          DESTINATIONS:
            "testers: reviews{version=v2}; canary: reviews{version=v1} 90%, reviews{version=v2} 10%",
        },
        { LABELS: "<none>" },
      ],
      [
        ["circuitbreaker", "reviews-v2"],
        {
          NAME: "reviews-v2",
          SERVICE: "reviews",
          SUBSET: "version=v2",
          ERRORS: "5",
          INTERVAL: "10s",
          EJECTION: "30s",
          "MAX CONCURRENT": "100",
        },
        { "MAX EJECTION": "5m", "MAX EJECTED": "50%", FALLBACK: "reviews{version=v1}" },
      ],
      [
        ["accessrule", "productpage-to-reviews"],
        { NAME: "productpage-to-reviews", SOURCE: "productpage", DESTINATION: "reviews", ACTION: "allow" },
        {},
      ],
      [["meshpolicy", "default"], { NAME: "default", "DEFAULT ACCESS": "deny" }, {}],
      [
        ["wasmplugin", "reviews-tagging"],
        {
          NAME: "reviews-tagging",
          MODULE: "mesh",
          SERVICES: "reviews",
          DIRECTION: "inbound",
          PRIORITY: "10",
        },
        { "ROOT ID": "<none>" },
      ],
    ];
    const results = await Promise.all(
      cases.flatMap(([args]) => [cli(["get", ...args]), cli(["get", ...args, "-o", "wide"])]),
    );
    for (const [i, [args, columns, wideColumns]] of cases.entries()) {
      const table = results[2 * i] as CliResult;
      const wide = results[2 * i + 1] as CliResult;
      expectOk(table);
      expectOk(wide);
      const row = tableRows(table.stdout)[0] as Record<string, string>;
      expect(Object.keys(row), args[0]).toEqual([...Object.keys(columns), "AGE"]);
      expect(row, args[0]).toMatchObject(columns);
      expect(row.AGE).toMatch(/^\d+[smhd]$/);
      const wideRow = tableRows(wide.stdout)[0] as Record<string, string>;
      // The table's columns (some showing more), then AGE, then the wide ones.
      expect(Object.keys(wideRow).slice(0, Object.keys(row).length), args[0]).toEqual(Object.keys(row));
      expect(wideRow, args[0]).toMatchObject(wideColumns);
      expect(wideRow.VERSION, args[0]).toMatch(/^\d+$/);
    }
    expectOk(await cli(["delete", "workload", "reviews-agent"]));
  });

  it("get of a missing resource is exit 1 naming it", async () => {
    expectFailure(await cli(["get", "route", "nosuch"]), "wasmesh: Route 'nosuch' does not exist");
  });

  it("delete removes a resource, and refuses one still referenced, saying by what", async () => {
    const refused = await cli(["delete", "service", "ratings"]);
    expectFailure(refused, "cannot delete Service 'ratings'");
    // Each reference once, as a reference (not as "Service 'ratings' does not exist").
    expect(refused.stderr).toBe(
      [
        "wasmesh: cannot delete Service 'ratings': still referenced by 2 resources (3 references); change or delete them first",
        "  Route/ratings-v9 spec.service: refers to Service 'ratings'",
        "  Route/ratings-v9 spec.rules[0].destinations[0].service: refers to Service 'ratings'",
        "  Workload/ratings-a spec.service: refers to Service 'ratings'",
        "",
      ].join("\n"),
    );
    expect(await stored("Service", "ratings")).toBeDefined();

    for (const [kind, name] of [
      ["route", "ratings-v9"],
      ["workloads", "ratings-a"],
      ["Service", "ratings"],
    ] as const) {
      const result = await cli(["delete", kind, name]);
      expectOk(result);
      expect(result.stdout).toBe(`${kind.toLowerCase().replace(/s$/, "")}/${name} deleted\n`);
    }
    expect(await stored("Service", "ratings")).toBeUndefined();
    expectFailure(await cli(["delete", "service", "ratings"]), "Service 'ratings' does not exist");
  });
});

describe("modules push", () => {
  const mesh = () => readFileSync(RELEASE_WASM);
  const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");
  const kib = (bytes: number) => `${(bytes / 1024).toFixed(1)}KiB`;

  it("uploads a module under a name; the same bytes again are unchanged", async () => {
    const size = mesh().length;
    const sha = sha256(mesh());
    const first = await cli([
      "modules",
      "push",
      RELEASE_WASM,
      "--name",
      "tagger",
      "--description",
      "the mesh",
    ]);
    expectOk(first);
    expect(first.stdout).toBe(`wasmmodule/tagger created (sha256 ${sha}, ${size} bytes)\n`);
    expect(await stored("WasmModule", "tagger")).toMatchObject({
      spec: { sha256: sha, size, abiVersion: "0.2.1", description: "the mesh" },
    });
    const again = await cli([
      "modules",
      "push",
      RELEASE_WASM,
      "--name",
      "tagger",
      "--description",
      "the mesh",
    ]);
    expectOk(again);
    expect(again.stdout).toBe(`wasmmodule/tagger unchanged (sha256 ${sha}, ${size} bytes)\n`);
    const described = await cli(["modules", "push", RELEASE_WASM, "--name", "tagger", "--description", "v2"]);
    expectOk(described);
    expect(described.stdout).toMatch(/^wasmmodule\/tagger configured /);
    const listed = await cli(["get", "wasmmodules"]);
    // A digest prefix and the size, as the table shows them.
    expect(listed.stdout).toMatch(
      new RegExp(`^tagger\\s+${sha.slice(0, 12)}\\s+${kib(size)}\\s+\\d+s$`, "m"),
    );
  });

  it("get wasmmodules lists the pushed modules, never the built-in 'mesh', which get explains", async () => {
    const [list, wide, builtin] = await Promise.all([
      cli(["get", "wasmmodules", "-o", "json"]),
      cli(["get", "wasmmodules", "-o", "wide"]),
      cli(["get", "wasmmodule", "mesh"]),
    ]);
    expectOk(list);
    const names = (JSON.parse(list.stdout) as { items: { metadata: { name: string } }[] }).items.map(
      (i) => i.metadata.name,
    );
    expect(names).toContain("tagger");
    expect(names).not.toContain("mesh");
    // The WasmPlugin of deploy/examples/mesh.yaml runs the built-in.
    expect(await stored("WasmPlugin", "reviews-tagging")).toMatchObject({ spec: { module: "mesh" } });
    const tagger = tableRows(wide.stdout).find((r) => r.NAME === "tagger");
    expect(tagger).toMatchObject({ SHA256: sha256(mesh()), SIZE: kib(mesh().length), ABI: "0.2.1" });
    expectFailure(
      builtin,
      `wasmesh: WasmModule 'mesh' does not exist: "mesh" is the built-in module (build/mesh.wasm), part of the control plane rather than a stored WasmModule`,
    );
  });

  it("smoke-runs with --configuration: refused is exit 1 with the module's reason; not JSON is exit 2", async () => {
    const [accepted, refused, notJson] = await Promise.all([
      cli(["modules", "push", RELEASE_WASM, "--name", "configured", "--configuration", '{"routes":[]}']),
      cli(["modules", "push", RELEASE_WASM, "--name", "refused", "--configuration", '{"bogus":1}']),
      cli(["modules", "push", RELEASE_WASM, "--name", "refused", "--configuration", "{bogus"]),
    ]);
    expectOk(accepted);
    expect(accepted.stdout).toMatch(/^wasmmodule\/configured created/);
    expectFailure(refused, "wasmesh: the module was rejected");
    expect(refused.stderr).toContain(
      "configuration: refused by the module: wasmesh: invalid plugin configuration: bogus",
    );
    expectUsage(notJson, "--configuration: not JSON");
    expect(await stored("WasmModule", "refused")).toBeUndefined();
  });

  it("refuses a file that is not a module, or not there, or a bad name, storing nothing", async () => {
    const [notWasm, missing, badName] = await Promise.all([
      cli(["modules", "push", join(REPO_ROOT, "package.json"), "--name", "junk"]),
      cli(["modules", "push", join(work, "nope.wasm"), "--name", "junk"]),
      cli(["modules", "push", RELEASE_WASM, "--name", "Bad_Name"]),
    ]);
    expectFailure(notWasm, "wasmesh: the module was rejected");
    expect(notWasm.stderr).toContain("module: not a WebAssembly binary");
    expectFailure(missing, `cannot read '${join(work, "nope.wasm")}': no such file or directory (ENOENT)`);
    expectFailure(badName, 'name: invalid module name "Bad_Name"');
    expect(await stored("WasmModule", "junk")).toBeUndefined();
  });

  it("prints what validation could not check (Wasmesh-Warning) as warnings", async () => {
    const picky = await compileAssemblyScript(
      "test/fixtures/modules/refuse-config.ts",
      ["--config", "asconfig.json", "--target", "release"],
      { baseDir: REPO_ROOT },
    );
    const result = await cli(["modules", "push", file("picky.wasm", picky), "--name", "picky"]);
    expectOk(result);
    expect(result.stdout).toMatch(/^wasmmodule\/picky created /);
    expect(result.stderr).toMatch(
      /^warning: the module refused every default configuration \(.*refuse-config: no configuration is good enough.*\), so no request was run through it; push it with a configuration to test one\n$/,
    );
  }, 60_000);

  it("sends --description, --configuration and --root-id, and prints each warning header on its own", async () => {
    // A stand-in for the API: it records the request and answers with two warnings, commas and all.
    let seen: { url: string; type: string | undefined; bytes: number } | undefined;
    const fake = createServer((req: IncomingMessage, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        seen = { url: req.url ?? "", type: req.headers["content-type"], bytes: Buffer.concat(chunks).length };
        if (req.method === "GET") {
          res.writeHead(404, { "content-type": "application/json" }).end('{"error":{"message":"no"}}');
          return;
        }
        res.setHeader("Wasmesh-Warning", ["first, with a comma", "second; and, more"]);
        res.writeHead(201, { "content-type": "application/json" });
        res.end(JSON.stringify({ kind: "WasmModule", metadata: { name: "m" }, spec: { sha256: "ab" } }));
      });
    });
    await new Promise<void>((resolve) => fake.listen(0, "127.0.0.1", resolve));
    try {
      const port = (fake.address() as AddressInfo).port;
      const result = await wasmesh([
        "modules",
        "push",
        RELEASE_WASM,
        "--name",
        "m",
        "--description",
        "a b&c",
        "--configuration",
        '{"routes": []}',
        "--root-id",
        "my_root",
        "--api",
        `http://127.0.0.1:${port}`,
      ]);
      expectOk(result);
      expect(result.stderr).toBe("warning: first, with a comma\nwarning: second; and, more\n");
      expect(result.stdout).toBe(`wasmmodule/m created (sha256 ab, ${mesh().length} bytes)\n`);
      const url = new URL(seen?.url ?? "", "http://x");
      expect(url.pathname).toBe("/v1/modules/m");
      expect(Object.fromEntries(url.searchParams)).toEqual({
        description: "a b&c",
        configuration: '{"routes": []}',
        rootId: "my_root",
      });
      expect(seen).toMatchObject({ type: "application/wasm", bytes: mesh().length });
    } finally {
      await new Promise((resolve) => fake.close(resolve));
    }
  });
});

describe("status", () => {
  it("says when no proxy is connected", async () => {
    const [table, json] = await Promise.all([cli(["status"]), cli(["status", "-o", "json"])]);
    expectOk(table);
    expect(table.stdout).toBe("No proxies connected.\n");
    expectOk(json);
    expect(JSON.parse(json.stdout)).toEqual({ proxies: [], edges: [] });
  });

  it("shows a connected proxy, what it acknowledged, and its last rejection", async () => {
    const address = `127.0.0.1:${plane.xdsPort}`;
    const good = await connectAds({ address, node: { id: "cli-probe-1", cluster: "reviews" } });
    clients.push(good);
    await good.fetch(TYPE_URL.cluster);
    const revision = String(await plane.store.revision());

    const result = await cli(["status"]);
    expectOk(result);
    const [header, row] = result.stdout.trimEnd().split("\n");
    expect(header).toMatch(/^NODE\s+SERVICE\s+XDS\s+ACKED\s+NACKS\s+LAST REJECTION$/);
    expect(row?.split(/\s+/)).toEqual(["cli-probe-1", "reviews", "sotw", revision, "0"]);

    const bad = await connectAds({
      address,
      node: { id: "cli-probe-2", cluster: "productpage" },
      protocol: "delta",
      reject: (response) => (response.typeUrl === TYPE_URL.cluster ? "test:\nrefused on purpose" : undefined),
    });
    clients.push(bad);
    await bad.fetch(TYPE_URL.cluster);
    // The NACK travels after the response: wait until the control plane has recorded it.
    await waitForStatus(api, (proxies) => proxies.some((p) => p.nodeId === "cli-probe-2" && p.nacks > 0));
    const status = await cli(["status"]);
    expectOk(status);
    expect(status.stdout).toMatch(
      new RegExp(
        `^cli-probe-2\\s+productpage\\s+delta\\s+\\S+\\s+1\\s+Cluster v${revision}: test: refused on purpose$`,
        "m",
      ),
    );
    expect(status.stdout).toMatch(/^cli-probe-1\s+reviews\s+sotw/m);

    const json = JSON.parse((await cli(["status", "-o", "json"])).stdout) as {
      proxies: { nodeId: string }[];
    };
    expect(json.proxies.map((p) => p.nodeId).sort()).toEqual(["cli-probe-1", "cli-probe-2"]);
  });
});

describe("version", () => {
  const VERSION = (JSON.parse(readFileSync(join(REPO_ROOT, "package.json"), "utf8")) as { version: string })
    .version;

  it("prints the CLI's version and the control plane's", async () => {
    const [text, json] = await Promise.all([cli(["version"]), cli(["version", "-o", "json"])]);
    expectOk(text);
    expect(text.stderr).toBe("");
    expect(text.stdout).toBe(`Client Version: ${VERSION}\nServer Version: ${VERSION} (${api})\n`);
    expectOk(json);
    expect(JSON.parse(json.stdout)).toEqual({
      client: { version: VERSION },
      server: { api, version: VERSION },
    });
  });

  it("says when the control plane cannot be reached, and still exits 0", async () => {
    const closed = `http://127.0.0.1:${await freePort()}`;
    const [text, json] = await Promise.all([
      cli(["version", "--api", closed]),
      cli(["version", "--api", closed, "-o", "json"]),
    ]);
    expectOk(text);
    expect(text.stdout).toBe(`Client Version: ${VERSION}\n`);
    expect(text.stderr).toBe(
      `warning: server version unknown: cannot reach the control plane at ${closed} (connection refused, ECONNREFUSED); start it with \`wasmesh server\`, or pass --api URL (or set WASMESH_API)\n`,
    );
    expectOk(json);
    expect(JSON.parse(json.stdout)).toMatchObject({
      client: { version: VERSION },
      server: { api: closed, error: expect.stringContaining("cannot reach the control plane") },
    });
  });

  it("--version and version --client print the CLI's version without calling the control plane", async () => {
    const closed = `http://127.0.0.1:${await freePort()}`;
    const [flag, client, withApi] = await Promise.all([
      wasmesh(["--version"], { api: closed }),
      wasmesh(["version", "--client"], { api: closed }),
      wasmesh(["--api", closed, "--version"]),
    ]);
    for (const result of [flag, client, withApi]) {
      expectOk(result);
      expect(result.stderr).toBe("");
    }
    expect(flag.stdout).toBe(`wasmesh ${VERSION}\n`);
    expect(withApi.stdout).toBe(flag.stdout);
    expect(client.stdout).toBe(`Client Version: ${VERSION}\n`);
  });
});

describe("kubernetes crds", () => {
  it("prints the CRDs, deploy/kubernetes/crds.yaml's content, without calling the control plane", async () => {
    const closed = `http://127.0.0.1:${await freePort()}`;
    const result = await wasmesh(["kubernetes", "crds"], { api: closed });
    expectOk(result);
    expect(result.stderr).toBe("");
    expect(result.stdout).toBe(readFileSync(join(REPO_ROOT, "deploy", "kubernetes", "crds.yaml"), "utf8"));
    const kinds = parseAllDocuments(result.stdout).map(
      (d) => (d.toJS() as { spec: { names: { kind: string } } }).spec.names.kind,
    );
    expect(kinds).toEqual(MODEL_KINDS);
  });

  it("--imports prints the other meshes' kinds' CRDs, deploy/other-meshes/crds.yaml's content", async () => {
    const result = await cli(["kubernetes", "crds", "--imports"]);
    expectOk(result);
    expect(result.stdout).toBe(readFileSync(join(REPO_ROOT, "deploy", "other-meshes", "crds.yaml"), "utf8"));
    expect(result.stdout).toContain("name: virtualservices.networking.istio.io");
  });

  it("is a usage error without its subcommand or with another", async () => {
    const [none, other, extra] = await Promise.all([
      cli(["kubernetes"]),
      cli(["kubernetes", "install"]),
      cli(["kubernetes", "crds", "more"]),
    ]);
    expectUsage(none, "kubernetes: a subcommand is required (crds)");
    expectUsage(other, "kubernetes: unknown subcommand 'install'");
    expectUsage(extra, "kubernetes crds: unexpected argument 'more'");
  });
});

describe("--api", () => {
  it("says when the control plane cannot be reached, exit 1", async () => {
    const closed = `http://127.0.0.1:${await freePort()}`;
    const [flag, env] = await Promise.all([
      cli(["get", "routes", "--api", closed]),
      wasmesh(["status"], { api: closed }),
    ]);
    for (const result of [flag, env]) {
      expectFailure(
        result,
        `wasmesh: cannot reach the control plane at ${closed} (connection refused, ECONNREFUSED); start it with \`wasmesh server\``,
      );
    }
  });

  it("refuses a malformed URL, exit 2", async () => {
    const [notUrl, ftp, empty] = await Promise.all([
      cli(["status", "--api", "not-a-url"]),
      cli(["status", "--api", "ftp://127.0.0.1/"]),
      cli(["--api"]),
    ]);
    expectUsage(notUrl, "--api: not a URL: 'not-a-url'");
    expectUsage(ftp, "--api: must be an http(s) URL");
    expectUsage(empty, "--api: a URL is required");
  });

  it("is WASMESH_API by default, overridden by --api, before or after the command", async () => {
    const closed = `http://127.0.0.1:${await freePort()}`;
    const [fromEnv, after, before, beforeEq] = await Promise.all([
      wasmesh(["get", "services"], { api }),
      wasmesh(["get", "services", "--api", api], { api: closed, token }),
      wasmesh(["--api", api, "get", "services"], { api: closed, token }),
      wasmesh([`--api=${api}`, "get", "services"], { api: closed, token }),
    ]);
    for (const result of [fromEnv, after, before, beforeEq]) {
      expectOk(result);
      expect(result.stdout).toMatch(/^reviews\s/m);
    }
  });
});

describe("bootstrap", () => {
  const base = ["bootstrap", "--node-id", "reviews-1", "--service", "reviews"];

  it("needs --node-id and --service, exit 2 naming the flag", async () => {
    const [noId, noService, emptyId] = await Promise.all([
      cli(["bootstrap", "--service", "reviews"]),
      cli(["bootstrap", "--node-id", "reviews-1"]),
      cli(["bootstrap", "--node-id", "", "--service", "reviews"]),
    ]);
    expectUsage(noId, "bootstrap: --node-id is required");
    expectUsage(noService, "bootstrap: --service is required");
    expectUsage(emptyId, "bootstrap: --node-id is required");
  });

  it("refuses bad ports, addresses, protocols, labels and names, exit 2", async () => {
    const cases: [string[], string][] = [
      [["--app-port", "70000"], "--app-port: expected a port number 1-65535, got '70000'"],
      [["--admin-port", "abc"], "--admin-port: expected a port number 1-65535, got 'abc'"],
      [["--outbound-port", "0"], "--outbound-port: expected a port number 1-65535, got '0'"],
      [["--inbound-port", "15001"], "--outbound-port and --inbound-port are both 15001; they must differ"],
      [["--app-port", "9901"], "--app-port and --admin-port are both 9901; they must differ"],
      [["--xds", "nope"], "--xds: expected HOST:PORT, got 'nope'"],
      [["--xds", "cp:0"], "--xds: expected HOST:PORT, got 'cp:0'"],
      [["--xds", "cp:99999"], "--xds: expected HOST:PORT, got 'cp:99999'"],
      [["--xds-protocol", "rest"], "--xds-protocol: expected sotw or delta, got 'rest'"],
      [["--labels", "=v2"], "--labels: expected k=v[,k=v...], got '=v2'"],
      [["--labels", "version"], "--labels: expected k=v[,k=v...], got 'version'"],
      [["--labels", "version=v1,version=v2"], "--labels: 'version' is given twice"],
      [["--labels", "version=v 2"], "the control plane would refuse this identity: --labels:"],
      [
        ["--service", "Bad_Name"],
        'the control plane would refuse this identity: --service: must be a service name (got "Bad_Name")',
      ],
      [["--frob"], "bootstrap: unknown option '--frob'"],
      [["extra"], "bootstrap: unexpected argument 'extra'"],
    ];
    const results = await Promise.all(cases.map(([args]) => cli([...base, ...args])));
    for (const [i, result] of results.entries()) expectUsage(result, (cases[i] as [string[], string])[1]);
  });

  it("--inbound-address goes into the node metadata; a host name is refused, exit 2", async () => {
    const [v4, v6, name, empty, defaulted] = await Promise.all([
      cli([...base, "--app-port", "9080", "--inbound-address", "127.0.0.1"]),
      cli([...base, "--app-port", "9080", "--inbound-address", "::1"]),
      cli([...base, "--inbound-address", "localhost"]),
      cli([...base, "--inbound-address", ""]),
      cli(base),
    ]);
    const inbound = (result: CliResult) => {
      expectOk(result);
      return (parse(result.stdout) as Bootstrap).node.metadata["wasmesh.inbound_address"];
    };
    expect(inbound(v4)).toBe("127.0.0.1");
    expect(inbound(v6)).toBe("::1");
    // Every interface unless told: other hosts' sidecars call the workload through it.
    expect(inbound(defaulted)).toBe("0.0.0.0");
    expectUsage(
      name,
      'the control plane would refuse this identity: --inbound-address: must be an IPv4 or IPv6 address (got "localhost")',
    );
    expectUsage(empty, "--inbound-address: must be an IPv4 or IPv6 address");
  });

  it("starts with how to run Envoy on it, --disable-hot-restart included", async () => {
    const result = await cli(base);
    expectOk(result);
    expect(result.stdout.split("\n").slice(0, 3)).toEqual([
      "# An Envoy sidecar's bootstrap from `wasmesh bootstrap`. Saved as envoy.yaml, start it with:",
      "#   envoy -c envoy.yaml --disable-hot-restart --drain-time-s 5",
      "# --disable-hot-restart lets several sidecars run on one host.",
    ]);
    // The README gives the same command.
    expect(readFileSync(join(REPO_ROOT, "README.md"), "utf8")).toContain(
      "\nenvoy -c envoy.yaml --disable-hot-restart --drain-time-s 5\n",
    );
  });

  it("--token-file puts the token in the ADS stream's initial metadata; without it, a warning says the stream will be refused", async () => {
    const token = `wsm_${"D".repeat(43)}`;
    const [withToken, missing, empty, without] = await Promise.all([
      cli([...base, "--token-file", file("reviews.token", `${token}\n`)]),
      cli([...base, "--token-file", join(work, "nope.token")]),
      cli([...base, "--token-file", file("empty.token", "")]),
      cli(base),
    ]);
    expectOk(withToken);
    expect(withToken.stderr).toBe("");
    const ads = (
      parse(withToken.stdout) as { dynamic_resources: { ads_config: { grpc_services: unknown[] } } }
    ).dynamic_resources.ads_config.grpc_services;
    expect(ads).toEqual([
      {
        envoy_grpc: { cluster_name: "wasmesh-xds" },
        initial_metadata: [{ key: "authorization", value: `Bearer ${token}` }],
      },
    ]);
    expectUsage(missing, `--token-file: cannot read ${join(work, "nope.token")}: ENOENT`);
    expectUsage(empty, "--token-file: ");
    expectOk(without);
    expect(without.stderr).toContain(
      "warning: no --token-file: the control plane refuses this Envoy's ADS stream (UNAUTHENTICATED)",
    );
    expect(without.stdout).not.toContain("initial_metadata");
  });

  it("parses --labels into the node metadata the control plane reads", async () => {
    const result = await cli([...base, "--labels", "version=v2, zone = eu-1,empty="]);
    expectOk(result);
    const node = (parse(result.stdout) as { node: Record<string, unknown> }).node;
    expect(node).toEqual({
      id: "reviews-1",
      cluster: "reviews",
      metadata: {
        "wasmesh.service": "reviews",
        "wasmesh.labels": { version: "v2", zone: "eu-1", empty: "" },
        "wasmesh.outbound_port": "15001",
        "wasmesh.inbound_port": "15006",
        "wasmesh.outbound_address": "127.0.0.1",
        "wasmesh.inbound_address": "0.0.0.0",
        "wasmesh.app_address": "127.0.0.1",
      },
    });
  });
});

describe("server", () => {
  it("refuses bad flags, exit 2", async () => {
    const results = await Promise.all([
      cli(["server", "--http-port", "http"]),
      cli(["server", "--xds-port", "65536"]),
      cli(["server", "--http-port", "7000", "--xds-port", "7000"]),
      cli(["server", "--module-delivery", "remote"]),
      cli(["server", "extra"]),
    ]);
    const messages = [
      "--http-port: expected a port number 0-65535, got 'http'",
      "--xds-port: expected a port number 0-65535, got '65536'",
      "--http-port and --xds-port are both 7000; they must differ",
      "server: unknown option '--module-delivery'",
      "server: unexpected argument 'extra'",
    ];
    for (const [i, result] of results.entries()) expectUsage(result, messages[i] as string);
  });

  it("says which port is in use, exit 1 without a stack trace", async () => {
    const data = mkdtempSync(join(work, "busy-"));
    const [http, xds] = await Promise.all([
      cli(["server", "--data", data, "--http-port", String(plane.httpPort), "--xds-port", "0"]),
      cli(["server", "--data", data, "--http-port", "0", "--xds-port", String(plane.xdsPort)]),
    ]);
    expectFailure(
      http,
      `wasmesh: cannot listen on 127.0.0.1:${plane.httpPort} for the API (--http-port): address already in use (EADDRINUSE)`,
    );
    expectFailure(
      xds,
      `wasmesh: cannot listen on 127.0.0.1:${plane.xdsPort} for the xDS server (--xds-port): address already in use (EADDRINUSE)`,
    );
  });

  it("refuses a data directory whose database was emptied or lost, exit 1, saying what to do", async () => {
    const emptied = mkdtempSync(join(work, "emptied-"));
    writeFileSync(join(emptied, "wasmesh.db"), "");
    const lost = mkdtempSync(join(work, "lost-"));
    const blob = join("modules", `${"ab".repeat(32)}.wasm`);
    mkdirSync(join(lost, "modules"));
    writeFileSync(join(lost, blob), "a module's bytes");
    // Through runCommand(), whose time limit kills a server that started instead of refusing.
    const [fromEmptied, fromLost] = await Promise.all(
      [emptied, lost].map((data) =>
        runCommand(
          process.execPath,
          [WASMESH_BIN, "server", "--data", data, "--http-port", "0", "--xds-port", "0"],
          {
            timeout: 15_000,
          },
        ),
      ),
    );
    const advice = "Restore wasmesh.db from a backup, or start on a new data directory (--data)";
    expectFailure(
      fromEmptied as CliResult,
      `wasmesh: cannot start the control plane: ${join(emptied, "wasmesh.db")} is empty (0 bytes)`,
    );
    expect(fromEmptied?.stderr).toContain(advice);
    expectFailure(
      fromLost as CliResult,
      `wasmesh: cannot start the control plane: ${join(lost, "wasmesh.db")} is missing, but ${blob} is in ${lost}`,
    );
    expect(fromLost?.stderr).toContain(advice);
    // Nothing was created or changed.
    expect(readFileSync(join(emptied, "wasmesh.db")).length).toBe(0);
    expect(readdirSync(lost)).toEqual(["modules"]);
  });

  it("says when the data directory cannot be used, exit 1", async () => {
    const notADir = file("not-a-dir", "");
    const result = await cli([
      "server",
      "--data",
      join(notADir, "data"),
      "--http-port",
      "0",
      "--xds-port",
      "0",
    ]);
    expectFailure(
      result,
      `cannot use the data directory --data ${join(notADir, "data")}: not a directory (ENOTDIR)`,
    );
  });

  it("serves until SIGTERM, then shuts down cleanly with exit 0, proxies connected or not", async () => {
    const data = mkdtempSync(join(work, "server-"));
    const child = spawn(
      process.execPath,
      [WASMESH_BIN, "server", "--data", data, "--http-port", "0", "--xds-port", "0"],
      {
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.once("exit", (code, signal) => resolve({ code, signal })),
    );
    try {
      const output = collect(child);
      const started = await waitForLine(
        output,
        /API http:\/\/127\.0\.0\.1:(\d+)\s+xDS grpc:\/\/127\.0\.0\.1:(\d+)/,
      );
      const [, httpPort, xdsPort] = started;
      const health = await fetch(`http://127.0.0.1:${httpPort}/healthz`);
      expect(health.status).toBe(200);
      const proxy = await connectAds({
        address: `127.0.0.1:${xdsPort}`,
        node: { id: "bye-1", cluster: "reviews" },
        token: adminTokenOf(data),
      });
      clients.push(proxy);
      await proxy.fetch(TYPE_URL.cluster);

      child.kill("SIGTERM");
      expect(await exited).toEqual({ code: 0, signal: null });
      expect(output.stdout).toContain("wasmesh: SIGTERM, shutting down");
      expect(output.stderr).toBe("");
      expect((await proxy.status).code).not.toBe(0); // the stream was ended, not left hanging
    } finally {
      child.kill("SIGKILL");
      await exited;
    }
  });
});

// ---------------------------------------------------------------------------------------------

function service(name: string): string {
  return `apiVersion: wasmesh.io/v1alpha1
kind: Service
metadata:
  name: ${name}
spec:
  ports:
    - name: http
      port: 9080
      protocol: http
`;
}

function workload(name: string, serviceName: string): string {
  return `apiVersion: wasmesh.io/v1alpha1
kind: Workload
metadata:
  name: ${name}
spec:
  service: ${serviceName}
  address: 10.0.9.${name.length}
  port: 9080
  labels:
    version: v1
`;
}

/** A `get` table as rows of header → cell (cells are 2 or more spaces apart; headers may hold one). */
function tableRows(text: string): Record<string, string>[] {
  const [header = "", ...rows] = text.trimEnd().split("\n");
  const names = header.split(/ {2,}/);
  return rows.map((line) =>
    Object.fromEntries(line.split(/ {2,}/).map((cell, i) => [names[i] ?? `#${i}`, cell])),
  );
}

function collect(child: ChildProcess): { stdout: string; stderr: string } {
  const output = { stdout: "", stderr: "" };
  child.stdout?.on("data", (chunk: Buffer) => {
    output.stdout += chunk.toString("utf8");
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    output.stderr += chunk.toString("utf8");
  });
  return output;
}

async function waitForLine(
  output: { stdout: string; stderr: string },
  pattern: RegExp,
): Promise<RegExpExecArray> {
  // The output only grows: once found, the line stays found.
  const found = () => pattern.exec(output.stdout);
  await until(
    () => `${pattern}:\n${output.stdout}${output.stderr}`,
    () => found() !== null,
    15_000,
  );
  return found() as RegExpExecArray;
}
