// Builds the console once for the gui project with the script CI and users run (`npm run
// build:gui`, into build/gui/), so that the tests drive the bundle `wasmesh server` serves.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { REPO_ROOT } from "../support/envoy.ts";

export default async function buildConsole(): Promise<void> {
  try {
    await promisify(execFile)("npm", ["run", "build:gui"], {
      cwd: REPO_ROOT,
      env: { ...process.env, NO_COLOR: "1" },
    });
  } catch (error) {
    const { stdout = "", stderr = "" } = error as { stdout?: string; stderr?: string };
    throw new Error(`npm run build:gui failed:\n${stdout}${stderr}`);
  }
}
