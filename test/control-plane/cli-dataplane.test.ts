// `wasmesh dataplane run`'s command line, without Envoy: every usage error exits 2 naming its flag
// and starts nothing (no data directory, no Envoy, no module of the agent loaded), and the help.
// The agent itself, with real Envoy: test/envoy/dataplane.test.ts.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { runCommand, WASMESH_BIN } from "../support/control-plane.ts";
import { tempDir } from "../support/temp.ts";

const REQUIRED = ["--name", "reviews-1", "--service", "reviews", "--app-port", "9080"];

/**
 * `wasmesh <args>` in a fresh working directory (where the default --data would go), with a token in
 * $WASMESH_TOKEN unless `env` says otherwise (no usage error here gets as far as using it).
 */
async function run(args: string[], env: NodeJS.ProcessEnv = {}) {
  const cwd = tempDir("cli-dataplane");
  const result = await runCommand(process.execPath, [WASMESH_BIN, ...args], {
    cwd,
    env: { ...process.env, WASMESH_TOKEN: "wsm_never-used", ...env },
  });
  return { ...result, cwd };
}

/** `args` with the flag `name`'s value replaced (or the flag removed, for undefined). */
function withFlag(name: string, value: string | undefined): string[] {
  const args = [...REQUIRED];
  const at = args.indexOf(name);
  if (at >= 0) args.splice(at, 2);
  return value === undefined ? args : [...args, name, value];
}

describe("wasmesh dataplane run: usage", () => {
  it("exits 2 naming the flag, and starts nothing, for each usage error", async () => {
    const emptyFile = join(tempDir("cli-dataplane-token"), "empty.token");
    writeFileSync(emptyFile, "\n");
    const cases: [string[], RegExp][] = [
      [["dataplane"], /dataplane: a subcommand is required \(run, capture\)/],
      [["dataplane", "start"], /dataplane: unknown subcommand 'start'/],
      [["dataplane", "run", ...REQUIRED, "--frob"], /dataplane: unknown option '--frob'/],
      [
        ["dataplane", "run", ...REQUIRED, "--cp", "http://127.0.0.1:5681", "--ca-file", emptyFile],
        /--ca-file: the control plane is reached over plain http/,
      ],
      [
        [
          "dataplane",
          "run",
          ...REQUIRED,
          "--cp",
          "https://127.0.0.1:5681",
          "--ca-file",
          "/nonexistent/ca.pem",
        ],
        /--ca-file: cannot read the CA file \/nonexistent\/ca\.pem/,
      ],
      [["dataplane", "run", ...REQUIRED, "extra"], /dataplane: unexpected argument 'extra'/],
      [["dataplane", "run", ...withFlag("--name", undefined)], /dataplane run: --name is required/],
      [["dataplane", "run", ...withFlag("--service", undefined)], /dataplane run: --service is required/],
      [["dataplane", "run", ...withFlag("--app-port", undefined)], /dataplane run: --app-port is required/],
      [
        ["dataplane", "run", ...withFlag("--app-port", "0")],
        /--app-port: expected a port number 1-65535, got '0'/,
      ],
      [["dataplane", "run", ...withFlag("--app-port", "http")], /--app-port: expected a port number 1-65535/],
      [
        ["dataplane", "run", ...REQUIRED, "--inbound-port", "70000"],
        /--inbound-port: expected a port number 1-65535/,
      ],
      [["dataplane", "run", ...REQUIRED, "--outbound-port", "-1"], /--outbound-port/],
      [["dataplane", "run", ...REQUIRED, "--admin-port", "1.5"], /--admin-port: expected a port number/],
      [["dataplane", "run", ...REQUIRED, "--ready-port", ""], /--ready-port: expected a port number/],
      [
        ["dataplane", "run", ...REQUIRED, "--inbound-port", "9080"],
        /--app-port and --inbound-port are both 9080/,
      ],
      [
        ["dataplane", "run", ...REQUIRED, "--admin-port", "19000", "--ready-port", "19000"],
        /--admin-port and --ready-port are both 19000/,
      ],
      [["dataplane", "run", ...withFlag("--name", "Reviews_1")], /--name: /],
      [["dataplane", "run", ...withFlag("--service", "Reviews")], /--service: /],
      [["dataplane", "run", ...REQUIRED, "--labels", "version"], /--labels: expected k=v/],
      [
        ["dataplane", "run", ...REQUIRED, "--labels", "version=v 1"],
        /--labels \(version\): Expected string to match/,
      ],
      [["dataplane", "run", ...REQUIRED, "--zone", "zone a"], /--zone: /],
      [["dataplane", "run", ...REQUIRED, "--address", "a b"], /--address: /],
      [
        ["dataplane", "run", ...REQUIRED, "--lease-seconds", "4"],
        /--lease-seconds: expected a whole number 5-3600/,
      ],
      [["dataplane", "run", ...REQUIRED, "--lease-seconds", "3601"], /--lease-seconds: /],
      [
        ["dataplane", "run", ...REQUIRED, "--drain-seconds", "601"],
        /--drain-seconds: expected a whole number 0-600/,
      ],
      [
        ["dataplane", "run", ...REQUIRED, "--stats-interval", "3601"],
        /--stats-interval: expected a whole number 0-3600/,
      ],
      [["dataplane", "run", ...REQUIRED, "--cp", "127.0.0.1:5681"], /--cp: expected the API's http\(s\) URL/],
      [
        ["dataplane", "run", ...REQUIRED, "--cp", "http://a:1", "--api", "http://b:2"],
        /--cp and --api name different/,
      ],
      [
        ["dataplane", "run", ...REQUIRED, "--xds", "control-plane"],
        /--xds: expected HOST:PORT, got 'control-plane'/,
      ],
      [
        ["dataplane", "run", ...REQUIRED, "--token-file", "/nonexistent/reviews.token"],
        /--token-file: cannot read \/nonexistent\/reviews\.token: ENOENT/,
      ],
      [["dataplane", "run", ...REQUIRED, "--token-file", emptyFile], /--token-file: .* is empty/],
    ];
    const results = await Promise.all(cases.map(([args]) => run(args)));
    for (const [i, [args, message]] of cases.entries()) {
      const result = results[i] as Awaited<ReturnType<typeof run>>;
      const what = `wasmesh ${args.join(" ")}\n${result.stderr}`;
      expect(result.code, what).toBe(2);
      expect(result.stderr, what).toMatch(/^wasmesh: /);
      expect(result.stderr, what).toMatch(message);
      expect(result.stdout, what).toBe("");
      expect(existsSync(join(result.cwd, ".wasmesh-dataplane")), what).toBe(false);
    }
  });

  it("needs a token, from --token-file or $WASMESH_TOKEN, and says how to get one", async () => {
    const result = await run(["dataplane", "run", ...REQUIRED], { WASMESH_TOKEN: "" });
    expect(result.code, result.stderr).toBe(2);
    expect(result.stderr).toMatch(
      /dataplane run: --token-file is required \(or \$WASMESH_TOKEN\): .*wasmesh token dataplane --service reviews > reviews\.token/,
    );
    expect(existsSync(join(result.cwd, ".wasmesh-dataplane"))).toBe(false);
  });

  it("a bad $WASMESH_API is a usage error of --cp, its default", async () => {
    const result = await run(["dataplane", "run", ...REQUIRED], { WASMESH_API: "not a url" });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/--cp: expected the API's http\(s\) URL, e\.g\. .*, got 'not a url'/);
  });

  it("--help names every flag and exits 0; the main help lists the command", async () => {
    const [help, runHelp, main] = await Promise.all([
      run(["dataplane", "--help"]),
      run(["dataplane", "run", "--help"]),
      run(["--help"]),
    ]);
    expect(help.code).toBe(0);
    expect(runHelp.stdout).toBe(help.stdout);
    expect(help.stdout).toMatch(/^Usage: wasmesh dataplane run /);
    for (const flag of [
      "--name NAME",
      "--service SERVICE",
      "--app-port PORT",
      "--labels",
      "--address",
      "--zone",
      "--inbound-port",
      "--outbound-port",
      "--admin-port",
      "--ready-port",
      "--cp URL",
      "--xds HOST:PORT",
      "--envoy PATH",
      "--data DIR",
      "--lease-seconds",
      "--drain-seconds",
      "--stats-interval SECONDS",
      "-- ENVOY FLAGS",
    ]) {
      expect(help.stdout).toContain(flag);
    }
    expect(main.stdout).toMatch(/^ {2}dataplane run {7}run a sidecar/m);
  });

  it("loads none of the agent (nor grpc-js) for its help or a usage error", async () => {
    const hook = `data:text/javascript,${encodeURIComponent(
      'import { registerHooks } from "node:module"; import { appendFileSync } from "node:fs";' +
        "registerHooks({ load(url, context, next) {" +
        ' appendFileSync(process.env.WASMESH_TEST_LOADED, url + "\\n"); return next(url, context); } });',
    )}`;
    for (const args of [
      ["dataplane", "--help"],
      ["dataplane", "run", "--name", "reviews-1"],
    ]) {
      const record = join(tempDir("cli-dataplane-loads"), "loaded.txt");
      const result = await runCommand(process.execPath, ["--import", hook, WASMESH_BIN, ...args], {
        env: { ...process.env, WASMESH_TEST_LOADED: record },
      });
      expect(result.code).toBe(args.includes("--help") ? 0 : 2);
      const urls = readFileSync(record, "utf8").trim().split("\n");
      expect(urls.some((url) => url.endsWith("/control-plane/cli/commands/dataplane.ts"))).toBe(true);
      expect(urls.filter((url) => url.includes("/dataplane/") && !url.includes("/cli/commands/"))).toEqual(
        [],
      );
      expect(urls.filter((url) => url.includes("/@grpc/"))).toEqual([]);
    }
  });
});
