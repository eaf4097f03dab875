// The README's main command must keep working: run the demo once and check what it reports (every
// workload behind a sidecar its agent runs and registers). The split it prints is the Route's weights as the store holds them and what the upstreams counted,
// so a mesh file with other weights prints other figures.
import { execFile } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { DEMO_MESH_FILE } from "../../scripts/demo-mesh.ts";
import { REPO_ROOT } from "../support/envoy.ts";
import { tempDir } from "../support/temp.ts";

const work = tempDir("demo-test");

async function demo(...args: string[]): Promise<string> {
  const { stdout } = await promisify(execFile)(process.execPath, ["scripts/demo.ts", "--once", ...args], {
    cwd: REPO_ROOT,
    timeout: 60_000,
  });
  return stdout;
}

/** The demo's split lines: the weights it read from the store, and the counts and shares it printed. */
function printedSplit(stdout: string) {
  const weights = /^ {2}split of Route reviews in the store {4}-> (.*)$/m.exec(stdout)?.[1];
  const measured =
    /^ {2}100 requests to reviews, measured {6}-> v1 (\d+) \(([\d.]+)%\), v2 (\d+) \(([\d.]+)%\)$/m.exec(
      stdout,
    );
  expect(measured, stdout).not.toBeNull();
  const [v1, v1Share, v2, v2Share] = (measured ?? []).slice(1).map(Number);
  return { weights, v1, v1Share, v2, v2Share };
}

describe("the demo mesh (./dev demo)", () => {
  it("runs the control plane and a sidecar per workload through the agent, and shows the split, the header route and a denial", async () => {
    const stdout = await demo();
    // Each workload's sidecar, run by an agent that registered it (the mesh file has no Workloads).
    for (const name of ["productpage-1", "reviews-v1-1", "reviews-v2-1", "ratings-1"])
      expect(stdout).toMatch(new RegExp(`^ {2}${name} +inbound :\\d+ -> app :\\d+ +outbound :\\d+`, "m"));
    expect(printedSplit(stdout)).toEqual({
      weights: "rule canary: version=v1 90, version=v2 10",
      v1: 90,
      v1Share: 90,
      v2: 10,
      v2Share: 10,
    });
    expect(stdout).toContain("x-user: tester                         -> reviews-v2");
    expect(stdout).toContain(
      "productpage -> ratings                 -> 403 (x-wasmesh-denied: no-ratings-from-productpage)",
    );
  });

  it("prints the split of the mesh it was given, as measured: other weights, other figures", async () => {
    const mesh = readFileSync(DEMO_MESH_FILE, "utf8");
    const changed = mesh
      .replace("subset: { version: v1 }, weight: 90", "subset: { version: v1 }, weight: 30")
      .replace("subset: { version: v2 }, weight: 10", "subset: { version: v2 }, weight: 70");
    expect(changed).not.toBe(mesh);
    const file = join(work, "mesh-30-70.yaml");
    writeFileSync(file, changed);

    expect(printedSplit(await demo("--mesh", file))).toEqual({
      weights: "rule canary: version=v1 30, version=v2 70",
      v1: 30,
      v1Share: 30,
      v2: 70,
      v2Share: 70,
    });
  });
});
