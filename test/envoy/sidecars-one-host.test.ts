// Two sidecars on one host, each from `wasmesh bootstrap` and started with the README's Envoy
// command exactly (no harness flags such as --base-id): both must come up, where Envoy's default
// hot restart would stop the second ("unable to bind domain socket with base_id=0"). One binds its
// inbound listener to 127.0.0.1 (--inbound-address), the other keeps the default, every interface:
// Envoy's admin /listeners shows where each is bound, and connections show what that means.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type ControlPlaneProcess,
  dataplaneToken,
  startControlPlaneProcess,
  wasmesh,
} from "../support/control-plane.ts";
import { type EnvoyProcess, freePort, REPO_ROOT, startEnvoy } from "../support/envoy.ts";
import { tempDir } from "../support/temp.ts";
import { startUpstream, type Upstream } from "../support/upstreams.ts";

let cp: ControlPlaneProcess;
let app: Upstream;
/** reviews.token, as the README makes it: wasmesh token dataplane --service reviews > reviews.token */
let tokenFile: string;
const envoys: EnvoyProcess[] = [];

/** The README's command for a sidecar (`envoy -c envoy.yaml …`), as arguments after `-c FILE`. */
function readmeEnvoyArgs(): string[] {
  const readme = readFileSync(join(REPO_ROOT, "README.md"), "utf8");
  const line = /^envoy -c envoy\.yaml(.*)$/m.exec(readme);
  if (!line) throw new Error("README.md has no `envoy -c envoy.yaml …` line");
  return (line[1] ?? "").trim().split(/\s+/).filter(Boolean);
}

interface Started {
  envoy: EnvoyProcess;
  inboundPort: number;
}

async function sidecar(nodeId: string, extra: string[]): Promise<Started> {
  const [outboundPort, inboundPort, adminPort] = [await freePort(), await freePort(), await freePort()];
  const bootstrap = await wasmesh([
    "bootstrap",
    "--node-id",
    nodeId,
    "--service",
    "reviews",
    "--xds",
    cp.xds,
    "--outbound-port",
    String(outboundPort),
    "--inbound-port",
    String(inboundPort),
    "--app-port",
    String(app.port),
    "--admin-port",
    String(adminPort),
    "--token-file",
    tokenFile,
    ...extra,
  ]);
  expect(bootstrap.code, bootstrap.stderr).toBe(0);
  const envoy = await startEnvoy({ bootstrap: bootstrap.stdout, name: nodeId, userArgs: readmeEnvoyArgs() });
  envoys.push(envoy);
  return { envoy, inboundPort };
}

/** GET / on host:port: the status, or the connection error's code. */
async function get(host: string, port: number): Promise<number | string> {
  try {
    const response = await fetch(`http://${host}:${port}/`, { headers: { connection: "close" } });
    await response.text();
    return response.status;
  } catch (error) {
    return ((error as Error).cause as NodeJS.ErrnoException | undefined)?.code ?? String(error);
  }
}

beforeAll(async () => {
  cp = await startControlPlaneProcess();
  app = await startUpstream({ name: "reviews-app" });
  tokenFile = join(tempDir("one-host"), "reviews.token");
  writeFileSync(tokenFile, `${await dataplaneToken(cp.api, "reviews")}\n`, { mode: 0o600 });
});

afterAll(async () => {
  await Promise.all(envoys.map((e) => e.stop()));
  await app?.close();
  await cp?.stop();
});

describe("sidecars on one host, started as the README says", () => {
  it("both come up; --inbound-address binds the inbound listener there, the default every interface", async () => {
    expect(readmeEnvoyArgs()).toContain("--disable-hot-restart");
    // One after the other, so that the second starts while the first holds what it holds.
    const local = await sidecar("reviews-local", ["--inbound-address", "127.0.0.1"]);
    const open = await sidecar("reviews-open", []);

    const [localListener, openListener] = await Promise.all([
      local.envoy.waitForListener("inbound"),
      open.envoy.waitForListener("inbound"),
    ]);
    expect(localListener).toEqual({ name: "inbound", address: "127.0.0.1", port: local.inboundPort });
    expect(openListener).toEqual({ name: "inbound", address: "0.0.0.0", port: open.inboundPort });

    // 127.0.0.2 is this host too (all of 127/8 is loopback), but not the address the first binds.
    app.reset();
    expect(await get("127.0.0.1", local.inboundPort)).toBe(200);
    expect(await get("127.0.0.2", local.inboundPort)).toBe("ECONNREFUSED");
    expect(await get("127.0.0.2", open.inboundPort)).toBe(200);
    expect(app.count).toBe(2);
  });
});
