// deploy/kubernetes/sidecar-example.yaml with a real Envoy: the initContainer's exact
// `wasmesh bootstrap` command prints a bootstrap that Envoy 1.37 accepts (`envoy --mode validate`).
// test/unit/deploy.test.ts checks the rest of deploy/ without Envoy.
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { WASMESH_BIN } from "../support/control-plane.ts";
import { flag, sidecarExample } from "../support/deploy.ts";
import { findEnvoy } from "../support/envoy.ts";
import { tempDir } from "../support/temp.ts";

const dir = tempDir("deploy-bootstrap");

describe("sidecar-example.yaml", () => {
  it("the initContainer's exact command prints a bootstrap that Envoy 1.37 validates", () => {
    const { bootstrapArgs, script } = sidecarExample();
    expect(bootstrapArgs, script).toBeDefined();
    // The Secret's file, as Kubernetes mounts it (a dataplane token of the service).
    const token = join(dir, "token");
    writeFileSync(token, `wsm_${"E".repeat(43)}`);
    const args = (bootstrapArgs ?? []).map((a) =>
      a.replace("$(POD_NAME)", "reviews-v1-5d8f9c-x7k2q").replace("/var/run/wasmesh/token", token),
    );
    const yaml = execFileSync(process.execPath, [WASMESH_BIN, ...args], { encoding: "utf8" });
    const bootstrap = parse(yaml) as {
      node: { id: string; cluster: string };
      dynamic_resources: { ads_config: { grpc_services: { initial_metadata?: unknown }[] } };
    };
    expect(bootstrap.node).toMatchObject({ id: "reviews-v1-5d8f9c-x7k2q", cluster: flag(args, "--service") });
    expect(bootstrap.dynamic_resources.ads_config.grpc_services[0]?.initial_metadata).toEqual([
      { key: "authorization", value: `Bearer wsm_${"E".repeat(43)}` },
    ]);

    const file = join(dir, "bootstrap.yaml");
    writeFileSync(file, yaml);
    const validated = execFileSync(findEnvoy(), ["--mode", "validate", "-c", file, "--log-level", "warn"], {
      encoding: "utf8",
      timeout: 30_000,
    });
    expect(validated).toContain(`configuration '${file}' OK`);
  });
});
