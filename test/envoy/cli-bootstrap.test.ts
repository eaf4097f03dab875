// `wasmesh bootstrap` output through a real Envoy 1.37's `--mode validate`, for each kind of flags
// (SotW and delta, an app port, a DNS name and an IPv6 address for the control plane).
// test/control-plane/cli.test.ts covers the rest of the CLI without Envoy.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { type Bootstrap, type CliResult, runCommand, wasmesh } from "../support/control-plane.ts";
import { findEnvoy } from "../support/envoy.ts";
import { tempDir } from "../support/temp.ts";

const work = tempDir("cli-bootstrap");

function file(name: string, contents: string): string {
  const path = join(work, name);
  writeFileSync(path, contents);
  return path;
}

describe("bootstrap", () => {
  const base = ["bootstrap", "--node-id", "reviews-1", "--service", "reviews"];

  it("prints only node, admin and the ADS cluster, and a real Envoy accepts it", async () => {
    const envoy = findEnvoy();
    const variants: { name: string; args: string[]; api: string; xds: { address: string; type: string } }[] =
      [
        { name: "sotw", args: [], api: "GRPC", xds: { address: "127.0.0.1", type: "STATIC" } },
        {
          name: "delta-app",
          args: [
            "--xds-protocol",
            "delta",
            "--app-port",
            "9080",
            "--labels",
            "version=v2",
            "--admin-port",
            "19901",
          ],
          api: "DELTA_GRPC",
          xds: { address: "127.0.0.1", type: "STATIC" },
        },
        {
          name: "sotw-app-dns",
          args: [
            "--app-port",
            "9080",
            "--xds",
            "wasmesh-control-plane.wasmesh.svc:5678",
            "--xds-protocol",
            "sotw",
          ],
          api: "GRPC",
          xds: { address: "wasmesh-control-plane.wasmesh.svc", type: "STRICT_DNS" },
        },
        {
          name: "delta-ipv6",
          args: [
            "--xds-protocol",
            "delta",
            "--xds",
            "[::1]:5678",
            "--outbound-port",
            "25001",
            "--inbound-port",
            "25006",
          ],
          api: "DELTA_GRPC",
          xds: { address: "::1", type: "STATIC" },
        },
      ];
    const outputs = await Promise.all(variants.map((v) => wasmesh([...base, ...v.args])));
    for (const [i, variant] of variants.entries()) {
      const result = outputs[i] as CliResult;
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout).not.toMatch(/[&*]a\d/); // no YAML anchors or aliases
      const config = parse(result.stdout) as Bootstrap;
      expect(Object.keys(config).sort(), variant.name).toEqual([
        "admin",
        "dynamic_resources",
        "node",
        "static_resources",
      ]);
      expect(Object.keys(config.static_resources)).toEqual(["clusters"]);
      expect(config.static_resources.clusters.map((c) => c.name)).toEqual(["wasmesh-xds"]);
      const [cluster] = config.static_resources.clusters;
      expect(cluster?.type).toBe(variant.xds.type);
      expect(cluster?.load_assignment.endpoints[0]?.lb_endpoints[0]?.endpoint.address.socket_address).toEqual(
        { address: variant.xds.address, port_value: 5678 },
      );
      expect(Object.keys(config.dynamic_resources).sort()).toEqual([
        "ads_config",
        "cds_config",
        "lds_config",
      ]);
      expect(config.dynamic_resources.ads_config.api_type).toBe(variant.api);
      expect(config.admin.address.socket_address.address).toBe("127.0.0.1");
      const appPort = config.node.metadata["wasmesh.app_port"];
      expect(appPort).toBe(variant.args.includes("--app-port") ? "9080" : undefined);

      const path = file(`bootstrap-${variant.name}.yaml`, result.stdout);
      const validated = await runCommand(envoy, ["--mode", "validate", "-c", path, "-l", "warning"]);
      expect(validated.code, `${variant.name}: ${validated.stdout}${validated.stderr}`).toBe(0);
      expect(validated.stdout).toContain(`configuration '${path}' OK`);
    }
    // The check has teeth: Envoy refuses a bootstrap it cannot use.
    const broken = file(
      "bootstrap-broken.yaml",
      (outputs[0] as CliResult).stdout.replace("type: STATIC", "type: BOGUS"),
    );
    expect((await runCommand(envoy, ["--mode", "validate", "-c", broken, "-l", "warning"])).code).not.toBe(0);
  });
});
