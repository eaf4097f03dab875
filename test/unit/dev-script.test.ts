// `./dev`, the entry point of a fresh machine: with no task or a help flag it prints its own usage
// and provisions nothing. Run on a copy in an empty folder with a PATH that has bash, dirname and
// cat only (no node, no npm): anything that tried to provision would fail there, loudly.
// `./dev wasmesh ARGS` runs on a copy that looks provisioned (its Node 22 in .tools, its npm
// dependencies up to date), with an older `node` first on PATH, as on a machine with Node 20.
import { execFile } from "node:child_process";
import {
  accessSync,
  constants,
  copyFileSync,
  mkdirSync,
  readFileSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { REPO_ROOT } from "../support/envoy.ts";
import { tempDir } from "../support/temp.ts";

let dir: string;
let bin: string;

beforeAll(() => {
  dir = tempDir("dev");
  bin = join(dir, "bin");
  mkdirSync(bin);
  for (const tool of ["bash", "dirname", "cat"]) symlinkSync(which(tool), join(bin, tool));
  copyFileSync(join(REPO_ROOT, "dev"), join(dir, "dev"));
});

function which(tool: string): string {
  for (const folder of (process.env.PATH ?? "").split(delimiter)) {
    try {
      accessSync(join(folder, tool), constants.X_OK);
      return join(folder, tool);
    } catch {
      // not in this folder
    }
  }
  throw new Error(`${tool} is not on PATH`);
}

function dev(
  args: string[],
  where: { clone?: string; cwd?: string; path?: string } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      join(bin, "bash"),
      [join(where.clone ?? dir, "dev"), ...args],
      { env: { PATH: where.path ?? bin }, cwd: where.cwd ?? tmpdir(), timeout: 20_000 },
      (error, stdout, stderr) => {
        resolve({ code: error ? (typeof error.code === "number" ? error.code : -1) : 0, stdout, stderr });
      },
    );
  });
}

describe("./dev", () => {
  it("with no task, help, -h or --help prints its tasks and exits 0 without provisioning", async () => {
    const results = await Promise.all([dev([]), dev(["help"]), dev(["-h"]), dev(["--help"])]);
    for (const result of results) {
      expect(result.stderr).toBe("");
      expect(result.code).toBe(0);
      expect(result.stdout).toMatch(/^Usage: \.\/dev TASK \[args\]\n/);
      for (const task of ["demo", "test", "wasmesh", "setup", "<npm script>"]) {
        expect(result.stdout).toMatch(new RegExp(`^ {2}${task.replace(/[<>]/g, "\\$&")}\\s`, "m"));
      }
      expect(result.stdout).toBe(results[0]?.stdout);
    }
  });

  it("refuses an unknown option with its usage, exit 2", async () => {
    const result = await dev(["--frob"]);
    expect(result.code).toBe(2);
    expect(result.stdout).toBe("");
    expect(result.stderr).toMatch(/^\.\/dev: unknown option '--frob'\nUsage: \.\/dev TASK/);
  });

  it("provisions first for a real task (here it cannot: no node, no npm on PATH)", async () => {
    // The other cases ran in the same place: had they provisioned, they would have failed so.
    const result = await dev(["test"]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("need Node >= 22.18 (or any npm to fetch it)");
  });

  it("keeps the README's two commands and CI's", () => {
    const readme = readFileSync(join(REPO_ROOT, "README.md"), "utf8");
    expect(readme).toContain("./dev demo    #");
    expect(readme).toContain("./dev test    #");
    expect(readFileSync(join(REPO_ROOT, ".ci", "run"), "utf8")).toMatch(/^\.\/dev test$/m);
  });
});

describe("./dev wasmesh ARGS", () => {
  let clone: string;
  let caller: string;
  let oldNodeBin: string;

  beforeAll(() => {
    // A clone as ./dev leaves it: Node 22 in .tools/node22 (the one running this test), npm
    // dependencies installed after the lock was written (so ./dev installs nothing), the bin.
    clone = join(dir, "clone");
    const nodeBin = join(clone, ".tools", "node22", "node_modules", "node", "bin");
    mkdirSync(nodeBin, { recursive: true });
    symlinkSync(process.execPath, join(nodeBin, "node"));
    mkdirSync(join(clone, "bin"));
    symlinkSync(join(REPO_ROOT, "bin", "wasmesh.js"), join(clone, "bin", "wasmesh.js"));
    copyFileSync(join(REPO_ROOT, "dev"), join(clone, "dev"));
    writeFileSync(join(clone, "package-lock.json"), "{}");
    mkdirSync(join(clone, "node_modules"));
    writeFileSync(join(clone, "node_modules", ".package-lock.json"), "{}");
    const past = new Date(Date.now() - 60_000);
    utimesSync(join(clone, "package-lock.json"), past, past);
    // The machine's own Node, too old: running it fails the test loudly.
    oldNodeBin = join(dir, "old-node");
    mkdirSync(oldNodeBin);
    writeFileSync(
      join(oldNodeBin, "node"),
      `#!${which("bash")}\necho "the machine's old node ran" >&2\nexit 9\n`,
      {
        mode: 0o755,
      },
    );
    caller = join(dir, "elsewhere");
    mkdirSync(caller);
    writeFileSync(join(caller, "empty.yaml"), "");
  });

  const run = (args: string[]) =>
    dev(["wasmesh", ...args], { clone, cwd: caller, path: `${oldNodeBin}${delimiter}${bin}` });

  it("runs the CLI with the clone's Node 22, not the older one on PATH, and prints only the CLI's output", async () => {
    const version = JSON.parse(readFileSync(join(REPO_ROOT, "package.json"), "utf8")).version as string;
    const result = await run(["version", "--client"]);
    expect(result.stderr).toBe("");
    expect(result.stdout).toBe(`Client Version: ${version}\n`);
    expect(result.code).toBe(0);
  });

  it("runs in the caller's folder, so relative paths are the caller's", async () => {
    const result = await run(["apply", "-f", "empty.yaml"]);
    expect(result.stderr).toBe("wasmesh: 'empty.yaml' is empty: nothing to apply\n");
    expect(result.code).toBe(1);
  });

  it("is in the README, beside the PATH line for Node 22", () => {
    const readme = readFileSync(join(REPO_ROOT, "README.md"), "utf8");
    expect(readme).toMatch(/^\.\/dev wasmesh /m);
    expect(readme).toContain("export PATH=$PWD/.tools/node22/node_modules/node/bin:$PATH");
  });
});
