// The README's main command must keep working: run the demo once and check what it reports.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { REPO_ROOT } from "../support/envoy.ts";

describe("the demo mesh (./dev demo)", () => {
  it("runs the control plane, a sidecar driven over xDS, and shows the split, the header route and a denial", async () => {
    const { stdout } = await promisify(execFile)(process.execPath, ["scripts/demo.ts", "--once"], {
      cwd: REPO_ROOT,
      timeout: 60_000,
    });
    expect(stdout).toContain("100 requests to reviews, 90/10 canary  -> v1 90, v2 10");
    expect(stdout).toContain("x-user: tester                         -> reviews-v2");
    expect(stdout).toContain(
      "productpage -> ratings                 -> 403 (x-wasmesh-denied: no-ratings-from-productpage)",
    );
  });
});
