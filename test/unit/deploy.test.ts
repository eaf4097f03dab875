// deploy/: every Kubernetes manifest parses, and what its pods run agrees with the CLI, with Envoy
// and with each other (names, namespaces, ports, volumes). No cluster here: the control plane's
// exact server flags are run through the real `wasmesh server`, and the Dockerfile is checked to
// copy every file the CLI loads. (The initContainer's exact bootstrap command goes through a real
// Envoy's `--mode validate` in test/envoy/deploy.test.ts.)
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import http from "node:http";
import { dirname, join, relative, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { DEFAULT_PORTS } from "../../control-plane/envoy/index.ts";
import { WASMESH_BIN } from "../support/control-plane.ts";
import {
  type Container,
  container,
  documents,
  flag,
  KUBERNETES_DIR,
  only,
  port,
  type ServiceSpec,
  type StatefulSetSpec,
  sidecarExample,
} from "../support/deploy.ts";
import { ENVOY_VERSION, freePort, REPO_ROOT } from "../support/envoy.ts";
import { tempDir } from "../support/temp.ts";
import { until } from "../support/wait.ts";

/** Replaces the value following `name` (for running the manifest's flags outside a pod). */
function withFlag(args: readonly string[], name: string, value: string): string[] {
  const out = [...args];
  out[out.indexOf(name) + 1] = value;
  return out;
}

const files = readdirSync(KUBERNETES_DIR).filter((f) => /\.ya?ml$/.test(f));
const controlPlane = documents("control-plane.yaml");
const namespace = only<unknown>(controlPlane, "Namespace").metadata.name;
const service = only<ServiceSpec>(controlPlane, "Service");
const statefulSet = only<StatefulSetSpec>(controlPlane, "StatefulSet");
const server = container(statefulSet.spec.template, "control-plane");

const cleanup: (() => void)[] = [];
afterAll(() => {
  for (const undo of cleanup.reverse()) undo();
});

describe("deploy/kubernetes", () => {
  it("holds the three manifests, every document a named resource", () => {
    expect(files.sort()).toEqual(["control-plane.yaml", "crds.yaml", "sidecar-example.yaml"]);
    for (const file of files) {
      for (const doc of documents(file)) {
        if (file === "crds.yaml") {
          // Generated from the resource model (npm run gen:crds); a CRD is named <plural>.<group>.
          expect(doc.apiVersion, file).toBe("apiextensions.k8s.io/v1");
          expect(doc.kind, file).toBe("CustomResourceDefinition");
          expect(doc.metadata.name, file).toMatch(/^[a-z]+\.wasmesh\.io$/);
          continue;
        }
        expect(doc.apiVersion, file).toMatch(/^(v1|apps\/v1)$/);
        expect(doc.metadata.name, `${file} ${doc.kind}`).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
      }
    }
  });
});

describe("control-plane.yaml", () => {
  it("a namespace, a service account, one StatefulSet replica on a volume, a Service for both ports", () => {
    expect(controlPlane.map((m) => m.kind).sort()).toEqual([
      "Namespace",
      "Service",
      "ServiceAccount",
      "StatefulSet",
    ]);
    expect(namespace).toBe("wasmesh-system");
    for (const m of controlPlane.filter((m) => m.kind !== "Namespace"))
      expect(m.metadata.namespace).toBe(namespace);

    const spec = statefulSet.spec;
    expect(spec.replicas).toBe(1); // SQLite: a single writer
    expect(spec.serviceName).toBe(service.metadata.name);
    expect(spec.template.spec.serviceAccountName).toBe(only(controlPlane, "ServiceAccount").metadata.name);
    expect(spec.template.metadata.labels).toMatchObject(spec.selector.matchLabels);
    expect(spec.template.metadata.labels).toMatchObject(service.spec.selector);

    // The server's data directory is the claimed volume.
    const args = [...(server.command ?? []), ...(server.args ?? [])];
    const data = flag(args, "--data");
    const claims = spec.volumeClaimTemplates.map((t) => t.metadata.name);
    expect(server.volumeMounts?.filter((v) => claims.includes(v.name)).map((v) => v.mountPath)).toEqual([
      data,
    ]);
  });

  it("runs `npx wasmesh server` on all interfaces, with the Service and probes on its ports", () => {
    expect(server.image).toBe("ghcr.io/wasmesh/control-plane:0.1.0");
    const args = [...(server.command ?? []), ...(server.args ?? [])];
    expect(args).toEqual([
      "npx",
      "wasmesh",
      "server",
      "--data",
      "/var/lib/wasmesh",
      "--address",
      "0.0.0.0",
      "--http-port",
      "5681",
      "--xds-port",
      "5678",
      "--api-host",
      "wasmesh-control-plane.wasmesh-system.svc",
      "--api-host",
      "wasmesh-control-plane.wasmesh-system.svc.cluster.local",
    ]);
    // `npx wasmesh` in the image's /app runs the package's own bin.
    const pkg = JSON.parse(readFileSync(join(REPO_ROOT, "package.json"), "utf8")) as {
      bin: Record<string, string>;
    };
    expect(pkg.bin.wasmesh).toBe("bin/wasmesh.js");

    expect(port(server, "http")).toBe(Number(flag(args, "--http-port")));
    expect(port(server, "grpc")).toBe(Number(flag(args, "--xds-port")));
    for (const probe of [server.readinessProbe, server.livenessProbe]) {
      expect(probe?.httpGet).toEqual({ path: "/healthz", port: "http" });
    }
    expect(service.spec.ports).toEqual([
      { name: "http", port: 5681, targetPort: "http", appProtocol: "http" },
      { name: "grpc", port: 5678, targetPort: "grpc", appProtocol: "grpc" },
    ]);
  });

  it("passes only flags `wasmesh server` accepts, and with them the server starts and answers the probe path", async () => {
    const args = (server.args ?? []).slice(1); // after "server"
    const help = execFileSync(process.execPath, [WASMESH_BIN, "server", "--help"], { encoding: "utf8" });
    for (const arg of args.filter((a) => a.startsWith("--"))) expect(help).toContain(arg);

    // The same flags with values this machine can use: a temp data dir, free loopback ports.
    const dataDir = tempDir("deploy");
    const httpPort = await freePort();
    let local = withFlag(args, "--data", dataDir);
    local = withFlag(local, "--address", "127.0.0.1");
    local = withFlag(local, "--http-port", String(httpPort));
    local = withFlag(local, "--xds-port", String(await freePort()));
    const child: ChildProcess = spawn(process.execPath, [WASMESH_BIN, "server", ...local], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    cleanup.push(() => child.kill("SIGKILL"));
    let output = "";
    child.stdout?.on("data", (chunk: Buffer) => {
      output += chunk.toString("utf8");
    });
    child.stderr?.on("data", (chunk: Buffer) => {
      output += chunk.toString("utf8");
    });
    await until(
      () => `wasmesh server to start:\n${output}`,
      () => {
        if (child.exitCode !== null) throw new Error(`wasmesh server exited:\n${output}`);
        return output.includes("wasmesh control plane: API");
      },
      20_000,
    );
    const probe = server.readinessProbe?.httpGet?.path ?? "";
    const health = await fetch(`http://127.0.0.1:${httpPort}${probe}`);
    expect(health.status).toBe(200);
    // Reached by the Service's name, as agents in the cluster reach it: served; another name is not.
    const token = readFileSync(join(dataDir, "admin-token"), "utf8").trim();
    const byName = (host: string) =>
      new Promise<number>((resolve, reject) => {
        const req = http.get(
          {
            host: "127.0.0.1",
            port: httpPort,
            path: "/v1/services",
            headers: { host, authorization: `Bearer ${token}` },
          },
          (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          },
        );
        req.on("error", reject);
      });
    expect(await byName("wasmesh-control-plane.wasmesh-system.svc:5681")).toBe(200);
    expect(await byName("wasmesh-control-plane.wasmesh-system.svc.cluster.local")).toBe(200);
    expect(await byName("wasmesh-control-plane.evil.example:5681")).toBe(421);
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGTERM");
    await exited;
  });
});

describe("sidecar-example.yaml", () => {
  const { manifests, deployment, template, init, envoy, app, script, bootstrapArgs, bootstrapFile } =
    sidecarExample();

  it("an initContainer writes the bootstrap with `wasmesh bootstrap` into a volume Envoy reads", () => {
    expect(manifests.map((m) => m.kind)).toEqual(["Deployment"]);
    expect(template.metadata.labels).toMatchObject(deployment.spec.selector.matchLabels);
    expect(init.command).toEqual(["sh", "-c"]);
    expect(init.args).toHaveLength(1);
    expect(bootstrapArgs, script).toBeDefined();
    expect(init.image).toBe(server.image);
    // $(POD_NAME) is expanded by Kubernetes from this variable: one node id per pod.
    expect(init.env).toContainEqual({
      name: "POD_NAME",
      valueFrom: { fieldRef: { fieldPath: "metadata.name" } },
    });

    const file = bootstrapFile ?? "";
    const shared = template.spec.volumes?.filter((v) => v.emptyDir !== undefined).map((v) => v.name) ?? [];
    const mountOf = (c: Container) => c.volumeMounts?.find((m) => shared.includes(m.name));
    expect(mountOf(init)?.name).toBeDefined();
    expect(mountOf(envoy)?.name).toBe(mountOf(init)?.name);
    expect(dirname(file)).toBe(mountOf(init)?.mountPath);
    expect(dirname(file)).toBe(mountOf(envoy)?.mountPath);

    expect(envoy.image).toBe(`envoyproxy/envoy:v${ENVOY_VERSION}`);
    const envoyArgs = [...(envoy.command ?? []), ...(envoy.args ?? [])];
    expect(flag(envoyArgs, "-c")).toBe(file);
    expect(flag(envoyArgs, "--drain-time-s")).toBe("5");
  });

  it("points the sidecar at the control plane's Service and at the app's port", () => {
    const args = bootstrapArgs ?? [];
    const grpc = service.spec.ports.find((p) => p.name === "grpc")?.port;
    expect(flag(args, "--xds")).toBe(`${service.metadata.name}.${namespace}.svc:${grpc}`);
    expect(Number(flag(args, "--app-port"))).toBe(port(app, "http"));
    expect(flag(args, "--node-id")).toBe("$(POD_NAME)");
    // The labels route subsets select on, as the pods carry them.
    expect(flag(args, "--labels")).toBe(`version=${template.metadata.labels.version}`);
    // The inbound listener (the bootstrap's default port) is what the pod exposes and probes.
    expect(args).not.toContain("--inbound-port");
    expect(port(envoy, "mesh-inbound")).toBe(DEFAULT_PORTS.inbound);
    expect(envoy.readinessProbe?.tcpSocket?.port).toBe(DEFAULT_PORTS.inbound);
  });

  it("gives the bootstrap a dataplane token of the service from a Secret, mounted in the initContainer only", () => {
    const args = bootstrapArgs ?? [];
    const file = flag(args, "--token-file") ?? "";
    const volume = template.spec.volumes?.find((v) => (v as { secret?: unknown }).secret !== undefined) as
      | { name: string; secret: { secretName: string; defaultMode?: number } }
      | undefined;
    expect(volume?.secret.secretName).toBe(`${flag(args, "--service")}-dataplane-token`);
    expect(init.volumeMounts).toContainEqual({
      name: volume?.name,
      mountPath: dirname(file),
      readOnly: true,
    });
    expect(envoy.volumeMounts?.map((m) => m.name)).not.toContain(volume?.name);
    expect(app.volumeMounts?.map((m) => m.name) ?? []).not.toContain(volume?.name);
  });
});

describe("deploy/Dockerfile", () => {
  const dockerfile = readFileSync(join(REPO_ROOT, "deploy", "Dockerfile"), "utf8");
  const runtime = dockerfile.slice(dockerfile.lastIndexOf("\nFROM "));

  it("Node 22, the filters built, a non-root user, the server as the default command", () => {
    expect(dockerfile).toMatch(/^FROM node:22-\S+ AS build$/m);
    expect(runtime).toMatch(/^FROM node:22-\S+$/m);
    expect(dockerfile).toMatch(/^RUN npm run build:filters$/m);
    expect(runtime).toMatch(/^USER node$/m);
    expect(runtime).toMatch(/^ENTRYPOINT \["npx", "wasmesh"\]$/m);
    expect(existsSync(join(REPO_ROOT, "deploy", "Dockerfile.dockerignore"))).toBe(true);
  });

  it("copies every directory the CLI loads, and the built-in module", () => {
    const copied = [...runtime.matchAll(/^COPY (?:--from=\S+ )?(?:\S+ )*?(\S+) \.\/(\S+)$/gm)].map(
      (m) => m[2],
    );
    for (const dir of topLevelDirsLoadedFrom(WASMESH_BIN)) expect(copied, dir).toContain(dir);
    expect(runtime).toContain("COPY --from=build /app/build/mesh.wasm ./build/mesh.wasm");
  });
});

/**
 * The repository's top-level directories holding a file reachable from `entry` through relative
 * static imports, dynamic imports and `new URL("…", import.meta.url)` (the validation worker).
 */
function topLevelDirsLoadedFrom(entry: string): Set<string> {
  const seen = new Set<string>();
  const queue = [entry];
  const specifier = /(?:from\s+|import\(\s*|new URL\(\s*)"(\.{1,2}\/[^"]+)"/g;
  for (let file = queue.pop(); file !== undefined; file = queue.pop()) {
    if (seen.has(file)) continue;
    seen.add(file);
    if (!/\.[cm]?[jt]s$/.test(file)) continue;
    for (const m of readFileSync(file, "utf8").matchAll(specifier)) {
      const target = resolve(dirname(file), m[1] as string);
      if (existsSync(target) && /\.[cm]?[jt]s$/.test(target)) queue.push(target);
    }
  }
  return new Set([...seen].map((f) => relative(REPO_ROOT, f).split("/")[0] as string));
}
