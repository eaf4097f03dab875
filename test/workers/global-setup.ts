// Builds the worker once for the whole project with the script CI and users run, so that every
// test drives the bundle that ships. bundle.test.ts checks and reports what this build produced.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { promisify } from "node:util";
import type { TestProject } from "vitest/node";
import { RELEASE_WASM } from "../support/artifacts.ts";
import { ROOT } from "./harness.ts";

export interface WorkerBuild {
  /** What `npm run build:worker` printed (wrangler's upload size summary among it). */
  output: string;
  durationMs: number;
}

declare module "vitest" {
  export interface ProvidedContext {
    workerBuild: WorkerBuild;
  }
}

export default async function buildWorker(project: TestProject): Promise<void> {
  if (!existsSync(RELEASE_WASM))
    throw new Error(`${RELEASE_WASM} is missing: run npm run build:filters first`);
  const started = Date.now();
  try {
    const { stdout, stderr } = await promisify(execFile)("npm", ["run", "build:worker"], {
      cwd: ROOT,
      env: { ...process.env, WRANGLER_SEND_METRICS: "false", NO_COLOR: "1" },
    });
    project.provide("workerBuild", { output: `${stdout}${stderr}`, durationMs: Date.now() - started });
  } catch (error) {
    const { stdout = "", stderr = "" } = error as { stdout?: string; stderr?: string };
    throw new Error(`npm run build:worker failed:\n${stdout}${stderr}`);
  }
}
