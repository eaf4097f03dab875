// deploy/: every Kubernetes manifest parses, and what it runs agrees with the CLI, the control
// plane's code and the other manifests (flags, ports, names, namespaces, labels, volumes); the
// Dockerfile copies every file the CLI loads. No cluster and no kubectl here: the API server's own
// checks (kubectl kustomize, apply --dry-run=server, RBAC, the Deployment's flags starting a real
// control plane in Kubernetes mode) are in test/kubernetes/deploy.test.ts.
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { MESH_NAMESPACE_SELECTOR } from "../../control-plane/kubernetes/discovery.ts";
import { validatingWebhookConfiguration } from "../../control-plane/kubernetes/webhooks.ts";
import { validateResource } from "../../control-plane/resources/index.ts";
import { WASMESH_BIN } from "../support/control-plane.ts";
import {
  CANARY_DIR,
  type Container,
  container,
  controlPlaneOf,
  type DeploymentSpec,
  documents,
  flag,
  KUBERNETES_DIR,
  type Manifest,
  only,
  PRODUCTION_DIR,
  port,
  type ServiceSpec,
} from "../support/deploy.ts";
import { REPO_ROOT } from "../support/envoy.ts";

/** A kustomization's resources, and the documents of the files among them. */
function kustomization(dir: string) {
  const { resources } = parse(readFileSync(join(dir, "kustomization.yaml"), "utf8")) as {
    resources: string[];
  };
  const files = resources.filter((r) => /\.ya?ml$/.test(r));
  return { resources, files, manifests: files.flatMap((f) => documents(join(dir, f))) };
}

const base = kustomization(KUBERNETES_DIR);
const { deployment, server, args, service } = controlPlaneOf(base.manifests);
const namespace = only<unknown>(base.manifests, "Namespace").metadata.name;
const CLUSTER_SCOPED = new Set([
  "Namespace",
  "CustomResourceDefinition",
  "ClusterRole",
  "ClusterRoleBinding",
]);

describe("deploy/kubernetes, the Kustomize base", () => {
  it("lists every manifest of its directory, each document a named resource in wasmesh-system", () => {
    const yaml = readdirSync(KUBERNETES_DIR).filter((f) => /\.ya?ml$/.test(f) && f !== "kustomization.yaml");
    expect(base.files.sort()).toEqual(yaml.sort());
    expect(namespace).toBe("wasmesh-system");
    for (const doc of base.manifests) {
      if (doc.kind === "CustomResourceDefinition") {
        // Generated from the resource model (npm run gen:crds); a CRD is named <plural>.<group>.
        expect(doc.apiVersion).toBe("apiextensions.k8s.io/v1");
        expect(doc.metadata.name).toMatch(/^[a-z]+\.wasmesh\.io$/);
        continue;
      }
      expect(doc.metadata.name, doc.kind).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
      expect(doc.metadata.namespace, `${doc.kind} ${doc.metadata.name}`).toBe(
        CLUSTER_SCOPED.has(doc.kind) ? undefined : namespace,
      );
    }
    expect(base.manifests.map((m) => m.kind).filter((k) => k !== "CustomResourceDefinition")).toEqual([
      "Namespace",
      "ServiceAccount",
      "Role",
      "RoleBinding",
      "ClusterRole",
      "ClusterRoleBinding",
      "Deployment",
      "Service",
      "PodDisruptionBudget",
    ]);
  });

  it("runs `wasmesh server --kubernetes` (the package's bin, as the image holds it) with flags the CLI accepts", () => {
    expect(server.image).toBe("ghcr.io/wasmesh/control-plane:0.1.0");
    expect(server.command).toEqual(["node", "/app/bin/wasmesh.js"]);
    const pkg = JSON.parse(readFileSync(join(REPO_ROOT, "package.json"), "utf8")) as {
      bin: Record<string, string>;
    };
    expect(pkg.bin.wasmesh).toBe("bin/wasmesh.js");
    const dockerfile = readFileSync(join(REPO_ROOT, "deploy", "Dockerfile"), "utf8");
    const runtime = dockerfile.slice(dockerfile.lastIndexOf("\nFROM "));
    expect(runtime).toMatch(/^WORKDIR \/app$/m);
    expect(runtime).toMatch(/^COPY bin \.\/bin$/m);

    expect(args.slice(0, 2)).toEqual(["server", "--kubernetes"]);
    const help = execFileSync(process.execPath, [WASMESH_BIN, "server", "--help"], { encoding: "utf8" });
    for (const arg of args.filter((a) => a.startsWith("--"))) expect(help).toContain(arg);
    expect(flag(args, "--address")).toBe("0.0.0.0");
    expect(args).toContain("--tls");
  });

  it("two replicas on the ports its flags name, and one Service for the API, xDS and the webhooks", () => {
    const spec = deployment.spec;
    expect(spec.replicas).toBe(2);
    expect(spec.template.metadata.labels).toMatchObject(spec.selector.matchLabels);
    expect(spec.template.metadata.labels).toMatchObject(service.spec.selector);
    expect(port(server, "http")).toBe(Number(flag(args, "--http-port")));
    expect(port(server, "grpc")).toBe(Number(flag(args, "--xds-port")));
    expect(port(server, "webhook")).toBe(Number(flag(args, "--webhook-port")));
    expect(service.spec.ports).toEqual([
      { name: "http", port: 5681, targetPort: "http", appProtocol: "https" },
      { name: "grpc", port: 5678, targetPort: "grpc", appProtocol: "grpc" },
      { name: "webhook", port: 443, targetPort: "webhook", appProtocol: "https" },
    ]);
    // The API is reached by the Service's names: requests naming another host are refused.
    const hosts = args.flatMap((a, i) => (args[i - 1] === "--api-host" ? [a] : []));
    expect(hosts).toEqual([
      `${service.metadata.name}.${namespace}.svc`,
      `${service.metadata.name}.${namespace}.svc.cluster.local`,
    ]);
    const pdb = only<{ minAvailable: number; selector: { matchLabels: Record<string, string> } }>(
      base.manifests,
      "PodDisruptionBudget",
    );
    expect(pdb.spec.minAvailable).toBe(1);
    expect(spec.template.metadata.labels).toMatchObject(pdb.spec.selector.matchLabels);
  });

  it("the webhook registrations the leader writes name this Service and its webhook port", () => {
    // No --webhook-service: the default, this Service. The registration is the code's (webhooks.ts).
    expect(args).not.toContain("--webhook-service");
    expect(args).not.toContain("--webhook-url");
    const registration = validatingWebhookConfiguration(
      { service: { namespace, name: "wasmesh-control-plane" } },
      "bundle",
    ) as { webhooks: { clientConfig: { service: { name: string; namespace: string; port: number } } }[] };
    const target = registration.webhooks[0]?.clientConfig.service;
    expect(target?.name).toBe(service.metadata.name);
    expect(target?.namespace).toBe(service.metadata.namespace);
    expect(service.spec.ports.find((p) => p.port === target?.port)?.targetPort).toBe("webhook");
  });

  it("probes /healthz and /readyz over HTTPS, as the server serves with --tls", () => {
    const scheme = args.includes("--tls") ? "HTTPS" : "HTTP";
    expect(server.startupProbe?.httpGet).toEqual({ path: "/healthz", port: "http", scheme });
    expect(server.livenessProbe?.httpGet).toEqual({ path: "/healthz", port: "http", scheme });
    expect(server.readinessProbe?.httpGet).toEqual({ path: "/readyz", port: "http", scheme });
  });

  it("non-root, a read-only root file system, and --data, $XDG_CONFIG_HOME and /tmp on emptyDir volumes", () => {
    const pod = deployment.spec.template.spec;
    expect(pod.securityContext).toMatchObject({
      runAsNonRoot: true,
      runAsUser: 1000,
      seccompProfile: { type: "RuntimeDefault" },
    });
    expect(server.securityContext).toEqual({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ["ALL"] },
    });
    const emptyDirs = new Set((pod.volumes ?? []).filter((v) => v.emptyDir !== undefined).map((v) => v.name));
    const writable = (server.volumeMounts ?? []).filter((m) => emptyDirs.has(m.name)).map((m) => m.mountPath);
    const config = server.env?.find((e) => e.name === "XDG_CONFIG_HOME")?.value ?? "";
    for (const path of [flag(args, "--data"), config, "/tmp"])
      expect(
        writable.some((mount) => path === mount || path.startsWith(`${mount}/`)),
        path,
      ).toBe(true);
  });

  it("gives the pod its name (the leader election's identity) and namespace, and resources", () => {
    for (const [name, fieldPath] of [
      ["POD_NAME", "metadata.name"],
      ["POD_NAMESPACE", "metadata.namespace"],
    ])
      expect(server.env).toContainEqual({ name, valueFrom: { fieldRef: { fieldPath } } });
    const resources = (server as Container & { resources?: { requests?: object; limits?: object } })
      .resources;
    expect(resources?.requests).toMatchObject({ cpu: expect.any(String), memory: expect.any(String) });
    expect(resources?.limits).toMatchObject({ memory: expect.any(String) });
  });

  it("binds its Role and ClusterRole to the Deployment's service account", () => {
    const account = only<unknown>(base.manifests, "ServiceAccount");
    expect(deployment.spec.template.spec.serviceAccountName).toBe(account.metadata.name);
    const subject = { kind: "ServiceAccount", name: account.metadata.name, namespace };
    for (const [binding, role] of [
      ["RoleBinding", "Role"],
      ["ClusterRoleBinding", "ClusterRole"],
    ] as const) {
      const bound = only<unknown>(base.manifests, binding) as Manifest & {
        roleRef: { kind: string; name: string };
        subjects: unknown[];
      };
      expect(bound.subjects).toEqual([subject]);
      expect(bound.roleRef.kind).toBe(role);
      expect(bound.roleRef.name).toBe(only(base.manifests, role).metadata.name);
    }
  });
});

describe("deploy/overlays/production", () => {
  it("is an overlay of the base", () => {
    const overlay = kustomization(PRODUCTION_DIR);
    expect(overlay.resources).toContain(relative(PRODUCTION_DIR, KUBERNETES_DIR));
  });
});

describe("deploy/examples/canary", () => {
  const canary = kustomization(CANARY_DIR);
  const demo = only<unknown>(canary.manifests, "Namespace");
  const reviews = only<ServiceSpec>(canary.manifests, "Service", "reviews");
  const route = only<{
    service: string;
    rules: { destinations: { service: string; subset: Record<string, string>; weight: number }[] }[];
  }>(canary.manifests, "Route");
  const deployments = canary.manifests.filter((m) => m.kind === "Deployment") as (Manifest & {
    spec: DeploymentSpec;
  })[];

  it("a namespace labelled for injection (what discovery selects), its objects in it", () => {
    const [key, value] = MESH_NAMESPACE_SELECTOR.split("=") as [string, string];
    expect(demo.metadata.labels?.[key]).toBe(value);
    for (const m of canary.manifests.filter((m) => m.kind !== "Namespace" && m.kind !== "Route"))
      expect(m.metadata.namespace, `${m.kind} ${m.metadata.name}`).toBe(demo.metadata.name);
  });

  it("a 90/10 Route in the control plane's namespace over reviews' v1 and v2 pods, by the name discovery gives it", () => {
    expect(route.metadata.namespace).toBe(namespace);
    const { metadata, ...rest } = route as Manifest & Record<string, unknown>;
    const { namespace: _ns, ...named } = metadata;
    const checked = validateResource({ ...rest, metadata: named });
    expect(checked.ok ? [] : checked.errors).toEqual([]);
    expect(route.spec.service).toBe(`${reviews.metadata.name}.${demo.metadata.name}`);
    const destinations = route.spec.rules[0]?.destinations ?? [];
    expect(destinations.map((d) => [d.service, d.subset, d.weight])).toEqual([
      [route.spec.service, { version: "v1" }, 90],
      [route.spec.service, { version: "v2" }, 10],
    ]);
    // Each subset selects the pods of one Deployment, all of them behind the Service.
    for (const destination of destinations) {
      const selected = deployments.filter((d) =>
        Object.entries({ ...reviews.spec.selector, ...destination.subset }).every(
          ([k, v]) => d.spec.template.metadata.labels[k] === v,
        ),
      );
      expect(
        selected.map((d) => d.metadata.name),
        JSON.stringify(destination.subset),
      ).toEqual([`reviews-${destination.subset.version}`]);
    }
  });

  it("the apps: reviews answers on the Service's target port, the client calls it; the image is the control plane's", () => {
    for (const d of deployments) {
      expect(d.spec.template.metadata.labels).toMatchObject(d.spec.selector.matchLabels);
      for (const c of d.spec.template.spec.containers) expect(c.image, d.metadata.name).toBe(server.image);
    }
    const target = reviews.spec.ports[0];
    for (const version of ["v1", "v2"]) {
      const app = container(
        only<DeploymentSpec>(deployments, "Deployment", `reviews-${version}`).spec.template,
        "reviews",
      );
      expect(port(app, String(target?.targetPort))).toBe(9080);
      expect(app.args?.[0]).toContain(".listen(9080)");
    }
    const client = container(
      only<DeploymentSpec>(deployments, "Deployment", "client").spec.template,
      "client",
    );
    expect(client.args?.[0]).toContain(`"http://${reviews.metadata.name}:${target?.port}/"`);
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

  it("copies every directory the CLI loads, the built-in module and the web console", () => {
    const copied = [...runtime.matchAll(/^COPY (?:--from=\S+ )?(?:\S+ )*?(\S+) \.\/(\S+)$/gm)].map(
      (m) => m[2],
    );
    for (const dir of topLevelDirsLoadedFrom(WASMESH_BIN)) expect(copied, dir).toContain(dir);
    expect(runtime).toContain("COPY --from=build /app/build/mesh.wasm ./build/mesh.wasm");
    // The web console, served at /gui (control-plane/api/gui.ts).
    expect(dockerfile).toMatch(/^RUN npm run build:gui$/m);
    expect(runtime).toContain("COPY --from=build /app/build/gui ./build/gui");
  });

  it("holds what the injected containers run: Envoy (the version the tests run) and iptables", () => {
    const envoyVersion = /^ENVOY_VERSION=([0-9.]+)$/m.exec(
      readFileSync(join(REPO_ROOT, "scripts", "install-envoy.sh"), "utf8"),
    )?.[1];
    expect(envoyVersion).toBeDefined();
    expect(dockerfile).toMatch(new RegExp(`^FROM envoyproxy/envoy:v${envoyVersion} AS envoy$`, "m"));
    expect(runtime).toContain("COPY --from=envoy /usr/local/bin/envoy /usr/local/bin/envoy");
    expect(runtime).toMatch(/apt-get install -y --no-install-recommends iptables/);
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
