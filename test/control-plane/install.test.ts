// `wasmesh` outside the clone, as the README installs it: `npm install -g <clone>` and `npm link`
// into a temporary npm prefix, then the command by name through PATH from another folder, against
// a real control plane. And what the bin says where it cannot run: a packed copy under
// node_modules, a Node without type stripping, an older Node.
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, realpathSync, symlinkSync } from "node:fs";
import { delimiter, dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ControlPlane, startControlPlane } from "../../control-plane/server.ts";
import { apiFetch, apiOf, runCommand } from "../support/control-plane.ts";
import { REPO_ROOT } from "../support/envoy.ts";
import { tempDir } from "../support/temp.ts";

const VERSION = (JSON.parse(readFileSync(join(REPO_ROOT, "package.json"), "utf8")) as { version: string })
  .version;
/** The Node running the tests (>= 22.18): npm runs under it, as `wasmesh`'s shebang does. */
const NODE_DIR = dirname(process.execPath);

let plane: ControlPlane;
let api: string;
let token: string;
let scratch: string;
/** Neither the clone nor a parent of it: where a user runs `wasmesh`. */
let elsewhere: string;

beforeAll(async () => {
  scratch = tempDir("install");
  elsewhere = join(scratch, "elsewhere");
  mkdirSync(elsewhere);
  plane = await startControlPlane({ dataDir: join(scratch, "data"), httpPort: 0, xdsPort: 0, log: () => {} });
  ({ api, token } = apiOf(plane));
  const created = await apiFetch(`${api}/v1/services`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      apiVersion: "wasmesh.io/v1alpha1",
      kind: "Service",
      metadata: { name: "reviews" },
      spec: { ports: [{ name: "http", port: 9080, protocol: "http" }] },
    }),
  });
  expect(created.status).toBe(201);
});

afterAll(async () => {
  await plane?.close();
});

/** A command, given a minute (npm installs). */
const run = (command: string, args: string[], options: { cwd: string; env: NodeJS.ProcessEnv }) =>
  runCommand(command, args, { timeout: 60_000, ...options });

/** npm with the test's Node first on PATH, as the README says to run it. */
const npm = (args: string[], cwd: string, env: NodeJS.ProcessEnv = {}) =>
  run("npm", [...args, "--no-audit", "--no-fund"], {
    cwd,
    env: { ...process.env, ...env, PATH: `${NODE_DIR}${delimiter}${process.env.PATH ?? ""}` },
  });

/** `wasmesh …` by name, found on PATH in the prefix's bin, run from `elsewhere`. */
const installed = (
  prefix: string,
  args: string[],
  pathAfter = `${NODE_DIR}${delimiter}${process.env.PATH}`,
) =>
  run("wasmesh", args, {
    cwd: elsewhere,
    env: {
      HOME: process.env.HOME,
      WASMESH_TOKEN: token,
      PATH: `${join(prefix, "bin")}${delimiter}${pathAfter}`,
    },
  });

async function expectWorking(prefix: string): Promise<void> {
  // A link to the clone, not a copy: Node strips types only outside node_modules.
  expect(realpathSync(join(prefix, "lib", "node_modules", "wasmesh"))).toBe(realpathSync(REPO_ROOT));
  const [version, get, bootstrap] = await Promise.all([
    installed(prefix, ["version", "--api", api]),
    installed(prefix, ["get", "services", "--api", api]),
    installed(prefix, ["bootstrap", "--node-id", "reviews-1", "--service", "reviews"]),
  ]);
  expect(version.stderr).toBe("");
  expect(version.stdout).toBe(`Client Version: ${VERSION}\nServer Version: ${VERSION} (${api})\n`);
  expect(version.code).toBe(0);
  expect(get.stderr).toBe("");
  expect(get.stdout).toMatch(/^NAME\s+PORTS\s+AGE\nreviews\s+9080\/http\s+\d+s\n$/);
  expect(get.code).toBe(0);
  expect(bootstrap.code, bootstrap.stderr).toBe(0);
  expect(bootstrap.stdout).toContain("id: reviews-1");
}

describe("wasmesh installed from the clone", () => {
  it("npm install -g <clone> puts a working wasmesh on PATH, from any folder", async () => {
    const prefix = join(scratch, "global");
    const install = await npm(["install", "-g", "--prefix", prefix, REPO_ROOT], elsewhere);
    expect(install.code, install.stderr).toBe(0);
    await expectWorking(prefix);
  });

  it("npm link in the clone does the same", async () => {
    const prefix = join(scratch, "linked");
    const link = await npm(["link"], REPO_ROOT, { npm_config_prefix: prefix });
    expect(link.code, link.stderr).toBe(0);
    await expectWorking(prefix);
  });

  it("a packed copy under node_modules says it cannot run and how to install instead", async () => {
    const packs = join(scratch, "packs");
    mkdirSync(packs);
    const pack = await npm(["pack", "--pack-destination", packs, "--silent"], REPO_ROOT);
    expect(pack.code, pack.stderr).toBe(0);
    // Laid out as `npm install -g <tarball>` would (a copy in lib/node_modules, the bin linked),
    // without fetching dependencies from the registry: the bin stops before it needs any.
    const prefix = join(scratch, "packed");
    const copy = join(prefix, "lib", "node_modules", "wasmesh");
    mkdirSync(copy, { recursive: true });
    mkdirSync(join(prefix, "bin"));
    execFileSync("tar", ["-xzf", join(packs, pack.stdout.trim()), "-C", copy, "--strip-components", "1"]);
    symlinkSync("../lib/node_modules/wasmesh/bin/wasmesh.js", join(prefix, "bin", "wasmesh"));

    const result = await installed(prefix, ["version"]);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe("");
    expect(result.stderr).toContain(`wasmesh: this copy of wasmesh is under node_modules (${copy})`);
    expect(result.stderr).toContain("`npm install -g <clone>` or `npm link` in the clone");
    expect(result.stderr).not.toContain("ERR_");
  });
});

describe("the bin under a Node that cannot run it", () => {
  it("with type stripping turned off, says so (not ERR_UNKNOWN_FILE_EXTENSION)", async () => {
    const result = await run(
      process.execPath,
      ["--no-experimental-strip-types", join(REPO_ROOT, "bin", "wasmesh.js"), "version"],
      {
        cwd: elsewhere,
        env: { PATH: process.env.PATH ?? "" },
      },
    );
    expect(result.code).toBe(1);
    expect(result.stdout).toBe("");
    expect(result.stderr).toBe(
      `wasmesh: this Node.js (${process.version}) has its TypeScript type stripping turned off, which wasmesh needs: drop --no-experimental-strip-types (from the command line or NODE_OPTIONS).\n`,
    );
  });

  // The machine's own Node, when it is older than 22.18 (this project's CI machines have Node 20).
  const old = olderNode();
  it.skipIf(old === undefined)(
    `an older Node (${old?.version}) gets the Node it needs and where to find it`,
    async () => {
      const prefix = join(scratch, "old-node");
      const install = await npm(["install", "-g", "--prefix", prefix, REPO_ROOT], elsewhere);
      expect(install.code, install.stderr).toBe(0);
      // The shebang's `env node` finds the older Node first.
      const result = await installed(prefix, ["version"], `${old?.dir}${delimiter}${process.env.PATH}`);
      expect(result.code).toBe(1);
      expect(result.stdout).toBe("");
      expect(result.stderr).toMatch(
        new RegExp(
          `^wasmesh: needs Node.js >= 22\\.18, .*; this is Node.js ${old?.version.replace(/\./g, "\\.")} \\(`,
        ),
      );
      expect(result.stderr).toContain(
        `export PATH=${join(realpathSync(REPO_ROOT), ".tools", "node22", "node_modules", "node", "bin")}:$PATH`,
      );
      // Or the same command through ./dev, which provisions that Node and runs it.
      expect(result.stderr).toContain(`\n  ${join(realpathSync(REPO_ROOT), "dev")} wasmesh version\n`);
      expect(result.stderr).not.toContain("ERR_");
    },
  );
});

/** A `node` on PATH that cannot strip types (older than 22.18), other than the one running the tests. */
function olderNode(): { dir: string; version: string } | undefined {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (!dir || dir === NODE_DIR) continue;
    try {
      const [version, typescript] = execFileSync(
        join(dir, "node"),
        ["-p", "process.version + ' ' + Boolean(process.features.typescript)"],
        { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] },
      )
        .trim()
        .split(" ");
      if (typescript === "false" && version) return { dir, version };
    } catch {
      // no node here
    }
  }
  return undefined;
}
