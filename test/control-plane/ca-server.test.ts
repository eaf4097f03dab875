// The mesh CA in `wasmesh server`'s start (control-plane/server.ts): a new data directory gets its
// root and <data>/ca-kek (0600) at the first start, without moving the mesh's revision; a restart
// keeps the root; a data directory whose ca-kek is gone does not start, and says which file.
import { existsSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { KEK_FILE, universalIdentity } from "../../control-plane/ca/index.ts";
import { startControlPlane } from "../../control-plane/server.ts";
import { RELEASE_WASM } from "../support/artifacts.ts";
import { verifyWithNode, workloadRequest } from "../support/ca.ts";
import { tempDir } from "../support/temp.ts";

async function start(dataDir: string, logs: string[] = []) {
  return startControlPlane({
    dataDir,
    httpPort: 0,
    xdsPort: 0,
    builtinModule: RELEASE_WASM,
    log: (line) => logs.push(line),
    ca: { env: {} },
  });
}

describe("the mesh CA at the control plane's start", () => {
  it("is created with the data directory, keeps its root across restarts, and moves no revision", async () => {
    const dataDir = tempDir("ca-server");
    const logs: string[] = [];
    const first = await start(dataDir, logs);
    let bundle: string;
    try {
      expect(first.ca?.created).toBe(true);
      expect(
        logs.some((line) => /created the mesh CA \(trust domain wasmesh\.local, generated root/.test(line)),
      ).toBe(true);
      expect(statSync(join(dataDir, KEK_FILE)).mode & 0o777).toBe(0o600);
      expect(await first.store.revision()).toBe(0);
      bundle = (await first.ca?.trustBundle())?.pem ?? "";
      expect(bundle).toContain("BEGIN CERTIFICATE");
    } finally {
      await first.close();
    }
    const second = await start(dataDir);
    try {
      expect(second.ca?.created).toBe(false);
      expect((await second.ca?.trustBundle())?.pem).toBe(bundle);
      const { csr } = await workloadRequest();
      const issued = await second.ca?.issue({ csr, identity: universalIdentity("reviews") });
      verifyWithNode(issued?.certificate ?? "", "", bundle);
    } finally {
      await second.close();
    }
  });

  it("does not start on a data directory whose CA key-encryption key is gone, and names the file", async () => {
    const dataDir = tempDir("ca-server-kek");
    await (await start(dataDir)).close();
    rmSync(join(dataDir, KEK_FILE));
    await expect(start(dataDir)).rejects.toThrow(`${join(dataDir, KEK_FILE)} does not exist`);
    expect(existsSync(join(dataDir, KEK_FILE))).toBe(false);
  });
});
