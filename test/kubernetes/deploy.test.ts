// deploy/'s Kubernetes manifests checked by a real API server (issue 12, §3), with a real kubectl:
// `kubectl kustomize` builds the base, the production overlay and the canary example; `kubectl apply
// -k --dry-run=server` takes each through the API server's validation and admission (schemas, the
// CRDs' structural schemas, strict field validation, Pod Security "restricted" in wasmesh-system,
// enforced on the control plane's pod) without a warning, and refuses broken copies with the field;
// the RBAC, applied for real, lets the control plane's service account make every call the control
// plane makes and nothing more; and the Deployment's own arguments start `wasmesh server
// --kubernetes` with that service account's token.
// The tests run in order: the dry runs need the CRDs and namespaces the first ones create, the last
// ones the base applied for real. No kubelet runs here: nothing pulls an image or starts a pod.
import { type ChildProcess, spawn } from "node:child_process";
import { cpSync, readFileSync, writeFileSync } from "node:fs";
import https from "node:https";
import { join } from "node:path";
import * as k8s from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { crds, FOREIGN_KINDS } from "../../control-plane/kubernetes/crds.ts";
import { ADMIN_TOKEN_SECRET } from "../../control-plane/kubernetes/secrets.ts";
import {
  MUTATING_WEBHOOK,
  VALIDATE_PATH,
  VALIDATING_WEBHOOK,
} from "../../control-plane/kubernetes/webhooks.ts";
import { type CliResult, runCommand, WASMESH_BIN } from "../support/control-plane.ts";
import {
  CANARY_DIR,
  controlPlaneOf,
  type DeploymentSpec,
  flag,
  KUBERNETES_DIR,
  type Manifest,
  only,
  type PodTemplate,
  PRODUCTION_DIR,
  parseDocuments,
  withFlag,
} from "../support/deploy.ts";
import { freePort } from "../support/envoy.ts";
import { type ApiServer, kubernetesBinary, startApiServer } from "../support/kubernetes.ts";
import { tempDir } from "../support/temp.ts";
import { until } from "../support/wait.ts";

const NAMESPACE = "wasmesh-system";
const ACCOUNT = "wasmesh-control-plane";
const LEASE = "wasmesh-control-plane";

let server: ApiServer;
const children: ChildProcess[] = [];

/** kubectl with the admin's kubeconfig (or `kubeconfig`); never throws on a failed exit. */
function kubectl(args: string[], kubeconfig = server.kubeconfigPath): Promise<CliResult> {
  return runCommand(kubernetesBinary("kubectl"), ["--kubeconfig", kubeconfig, ...args], { timeout: 60_000 });
}

async function build(dir: string): Promise<Manifest[]> {
  const built = await kubectl(["kustomize", dir]);
  expect(built.code, built.stderr).toBe(0);
  return parseDocuments(built.stdout, `kubectl kustomize ${dir}`);
}

/** kubectl apply -k DIR --dry-run=server: what the API server says of every object. */
const dryRun = (dir: string) => kubectl(["apply", "-k", dir, "--dry-run=server"]);

/** A copy of a kustomization directory with `file` changed by `edit` (which must change it). */
function brokenCopy(dir: string, file: string, edit: (text: string) => string): string {
  const copy = tempDir("deploy-broken");
  cpSync(dir, copy, { recursive: true });
  const text = readFileSync(join(copy, file), "utf8");
  const changed = edit(text);
  expect(changed, `the edit of ${file}`).not.toBe(text);
  writeFileSync(join(copy, file), changed);
  return copy;
}

/** A file holding the Pod a Deployment makes (its template, changed by `edit`): Pod Security's enforcement applies to it. */
function podOf(
  deployment: Manifest & { spec: DeploymentSpec },
  edit: (spec: PodTemplate["spec"]) => void = () => undefined,
): string {
  const { metadata, spec } = structuredClone(deployment.spec.template);
  edit(spec);
  const file = join(tempDir("deploy-pod"), "pod.json");
  const pod = {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      ...metadata,
      name: `${deployment.metadata.name}-0`,
      namespace: deployment.metadata.namespace,
    },
    spec,
  };
  writeFileSync(file, JSON.stringify(pod));
  return file;
}

beforeAll(async () => {
  server = await startApiServer();
}, 120_000);

afterAll(async () => {
  for (const child of children) child.kill("SIGKILL");
  await server?.stop();
});

describe("deploy/ on a real API server", () => {
  it("kubectl kustomize builds the base, the production overlay (its changes on the base's objects) and the canary example", async () => {
    const base = await build(KUBERNETES_DIR);
    const production = await build(PRODUCTION_DIR);
    const canary = await build(CANARY_DIR);
    const names = (manifests: Manifest[]) => manifests.map((m) => `${m.kind}/${m.metadata.name}`).sort();
    expect(names(production)).toEqual(names(base));
    expect(names(base)).toContain(`CustomResourceDefinition/${crds()[0]?.metadata.name}`);

    const before = controlPlaneOf(base);
    const after = controlPlaneOf(production);
    expect(after.deployment.spec.replicas).toBe(3);
    expect(flag(after.args, "--validation-workers")).toBe("8");
    expect(after.args.filter((a) => !["4", "8"].includes(a))).toEqual(
      before.args.filter((a) => !["4", "8"].includes(a)),
    );
    const affinity = (after.deployment.spec.template.spec as { affinity?: { podAntiAffinity?: object } })
      .affinity?.podAntiAffinity;
    expect(Object.keys(affinity ?? {})).toEqual(["requiredDuringSchedulingIgnoredDuringExecution"]);
    expect(only<{ minAvailable: number }>(production, "PodDisruptionBudget").spec.minAvailable).toBe(2);

    expect(canary.map((m) => m.kind).sort()).toEqual([
      "Deployment",
      "Deployment",
      "Deployment",
      "Namespace",
      "Route",
      "Service",
      "Service",
    ]);
  });

  it("the API server accepts the base, the overlay and the example (apply --dry-run=server), without a warning", async () => {
    // Custom objects cannot be dry-run before their CRD exists, nor objects in a namespace that does
    // not: both are created for real first, from the manifests themselves.
    const crdsFile = join(KUBERNETES_DIR, "crds.yaml");
    for (const file of [
      crdsFile,
      join(KUBERNETES_DIR, "namespace.yaml"),
      join(CANARY_DIR, "namespace.yaml"),
    ]) {
      const applied = await kubectl(["apply", "-f", file]);
      expect(applied.code, applied.stderr).toBe(0);
    }
    const established = await kubectl([
      "wait",
      "--for=condition=Established",
      "--timeout=60s",
      "-f",
      crdsFile,
    ]);
    expect(established.code, established.stderr).toBe(0);

    for (const dir of [KUBERNETES_DIR, PRODUCTION_DIR, CANARY_DIR]) {
      const result = await dryRun(dir);
      expect(result.code, `${dir}: ${result.stderr}`).toBe(0);
      // No warning either: Pod Security (wasmesh-system enforces "restricted"), deprecated APIs,
      // unknown fields all say theirs on stderr.
      expect(result.stderr, dir).toBe("");
      const objects = await build(dir);
      const lines = result.stdout.trim().split("\n");
      expect(lines, dir).toHaveLength(objects.length);
      for (const line of lines) expect(line, dir).toMatch(/ \(server dry run\)$/);
    }
    // Pod Security is enforced on pods (on a Deployment it only warns): the control plane's pod,
    // as its Deployment makes it, is admitted in wasmesh-system.
    const pod = await kubectl([
      "apply",
      "--dry-run=server",
      "-f",
      podOf(controlPlaneOf(await build(KUBERNETES_DIR)).deployment),
    ]);
    expect(pod.code, pod.stderr).toBe(0);
    expect(pod.stderr).toBe("");
  });

  it("refuses a broken copy with the field; Pod Security warns of a Deployment breaking the namespace's level and refuses its pod", async () => {
    const refused = async (dir: string, field: RegExp) => {
      const result = await dryRun(dir);
      expect(result.code, result.stdout).not.toBe(0);
      expect(result.stderr).toMatch(field);
    };
    // A port out of range: the built-in schema's validation.
    await refused(
      brokenCopy(KUBERNETES_DIR, "control-plane.yaml", (t) =>
        t.replace("containerPort: 5681", "containerPort: 70000"),
      ),
      /spec\.template\.spec\.containers\[0\]\.ports\[0\]\.containerPort: Invalid value: 70000/,
    );
    // A misspelt field: refused, not pruned (kubectl asks for strict field validation).
    await refused(
      brokenCopy(KUBERNETES_DIR, "control-plane.yaml", (t) => t.replace("readinessProbe:", "readinesProbe:")),
      /unknown field "spec\.template\.spec\.containers\[0\]\.readinesProbe"/,
    );
    // The RBAC naming a role that is not there is accepted (RBAC allows it), but a bad verb list is not.
    await refused(
      brokenCopy(KUBERNETES_DIR, "rbac.yaml", (t) => t.replace('verbs: ["create"]', "verbs: []")),
      /rules\[\d\]\.verbs: Required value/,
    );
    // A Route weight over 100: the CRD's structural schema, generated from the resource model.
    await refused(
      brokenCopy(CANARY_DIR, "route.yaml", (t) => t.replace("weight: 90", "weight: 101")),
      /spec\.rules\[0\]\.destinations\[0\]\.weight: Invalid value: 101/,
    );
    // Accepted, with Pod Security's warning: the no-warning check above can fail.
    const insecure = await dryRun(
      brokenCopy(KUBERNETES_DIR, "control-plane.yaml", (t) =>
        t.replace("allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true"),
      ),
    );
    expect(insecure.code, insecure.stderr).toBe(0);
    expect(insecure.stderr).toMatch(
      /Warning: would violate PodSecurity "restricted:latest": allowPrivilegeEscalation/,
    );
    // And such a pod is refused.
    const { deployment } = controlPlaneOf(await build(KUBERNETES_DIR));
    const rootPod = await kubectl([
      "apply",
      "--dry-run=server",
      "-f",
      podOf(deployment, (spec) => {
        spec.securityContext = { ...spec.securityContext, runAsNonRoot: false, runAsUser: 0 };
      }),
    ]);
    expect(rootPod.code).not.toBe(0);
    expect(rootPod.stderr).toMatch(/violates PodSecurity "restricted:latest": .*runAsNonRoot/);
  });
});

describe("the control plane's RBAC, applied for real", () => {
  const user = `system:serviceaccount:${NAMESPACE}:${ACCOUNT}`;
  /** Whether the service account may: a SubjectAccessReview, as the authorizer decides a request. */
  async function may(
    verb: string,
    group: string,
    resource: string,
    where: { namespace?: string; name?: string } = {},
  ): Promise<boolean> {
    const review = await server.kubeConfig.makeApiClient(k8s.AuthorizationV1Api).createSubjectAccessReview({
      body: {
        spec: {
          user,
          groups: ["system:serviceaccounts", `system:serviceaccounts:${NAMESPACE}`, "system:authenticated"],
          resourceAttributes: { verb, group, resource, ...where },
        },
      },
    });
    return review.status?.allowed === true;
  }
  type Call = [verb: string, group: string, resource: string, where?: { namespace?: string; name?: string }];
  const inNamespace = { namespace: NAMESPACE };
  const storeVerbs = ["get", "list", "watch", "create", "update", "delete"];
  const namespacedKinds = crds().filter((c) => c.spec.scope === "Namespaced");
  const clusterKinds = crds().filter((c) => c.spec.scope === "Cluster");

  /** Every call control-plane/kubernetes/*.ts makes, and where. */
  const calls: Call[] = [
    // store.ts: the custom objects (namespaced ones in its namespace) and its internal records.
    ...namespacedKinds.flatMap((c) =>
      storeVerbs.map((verb): Call => [verb, "wasmesh.io", c.spec.names.plural, inNamespace]),
    ),
    ...clusterKinds.flatMap((c) => storeVerbs.map((verb): Call => [verb, "wasmesh.io", c.spec.names.plural])),
    ...storeVerbs.map((verb): Call => [verb, "", "secrets", inNamespace]),
    // blobs.ts: module bytes.
    ["get", "", "configmaps", inNamespace],
    ["create", "", "configmaps", inNamespace],
    // leader.ts: its Lease.
    ["create", "coordination.k8s.io", "leases", inNamespace],
    ["get", "coordination.k8s.io", "leases", { ...inNamespace, name: LEASE }],
    ["update", "coordination.k8s.io", "leases", { ...inNamespace, name: LEASE }],
    // discovery.ts: every namespace's.
    ...["list", "watch"].flatMap((verb): Call[] => [
      [verb, "", "namespaces"],
      [verb, "", "services"],
      [verb, "", "pods"],
      [verb, "discovery.k8s.io", "endpointslices"],
    ]),
    // imports.ts: other meshes' objects in every namespace, and Events on those it cannot convert.
    ...FOREIGN_KINDS.flatMap((k) => ["list", "watch"].map((verb): Call => [verb, k.group, k.plural])),
    ["create", "", "events", { namespace: "bookinfo" }],
    // The injector (server.ts): a new pod's namespace (its label) and its namespace's Services.
    ["get", "", "namespaces", { name: "bookinfo" }],
    ["list", "", "services", { namespace: "bookinfo" }],
    // token-review.ts: an agent's token, and its pod in any namespace.
    ["create", "authentication.k8s.io", "tokenreviews"],
    ["get", "", "pods", { namespace: "bookinfo" }],
    // webhooks.ts: the registrations.
    ...(
      [
        ["validatingwebhookconfigurations", VALIDATING_WEBHOOK],
        ["mutatingwebhookconfigurations", MUTATING_WEBHOOK],
      ] as const
    ).flatMap(([resource, name]): Call[] => [
      ["create", "admissionregistration.k8s.io", resource],
      ["get", "admissionregistration.k8s.io", resource, { name }],
      ["update", "admissionregistration.k8s.io", resource, { name }],
    ]),
  ];
  /** What it has no business doing. */
  const beyond: Call[] = [
    ["delete", "", "nodes"],
    ["list", "", "secrets"],
    ["get", "", "secrets", { namespace: "kube-system", name: "anything" }],
    ["list", "", "secrets", { namespace: "default" }],
    ["create", "", "pods", inNamespace],
    ["delete", "", "pods", { namespace: "bookinfo" }],
    ["update", "", "configmaps", inNamespace],
    ["delete", "", "configmaps", inNamespace],
    ["update", "coordination.k8s.io", "leases", { ...inNamespace, name: "another-lease" }],
    ["get", "coordination.k8s.io", "leases", { namespace: "kube-system", name: LEASE }],
    ["create", "wasmesh.io", "routes", { namespace: "default" }],
    [
      "update",
      "admissionregistration.k8s.io",
      "validatingwebhookconfigurations",
      { name: "another-webhook" },
    ],
    [
      "delete",
      "admissionregistration.k8s.io",
      "validatingwebhookconfigurations",
      { name: VALIDATING_WEBHOOK },
    ],
    ["update", "admissionregistration.k8s.io", "mutatingwebhookconfigurations", { name: "another-injector" }],
    ["create", "authorization.k8s.io", "subjectaccessreviews"],
    ["create", "rbac.authorization.k8s.io", "clusterrolebindings"],
    ["create", "networking.istio.io", "virtualservices", { namespace: "bookinfo" }],
    ["delete", "", "events", { namespace: "bookinfo" }],
    ["update", "apiextensions.k8s.io", "customresourcedefinitions", { name: crds()[0]?.metadata.name ?? "" }],
  ];
  const describeCall = ([verb, group, resource, where]: Call) =>
    `${verb} ${group ? `${group}/` : ""}${resource}${where?.name ? `/${where.name}` : ""} in ${where?.namespace ?? "the cluster"}`;

  beforeAll(async () => {
    const applied = await kubectl(["apply", "-k", KUBERNETES_DIR]);
    expect(applied.code, applied.stderr).toBe(0);
  });

  it("lets the control plane's service account make every call the control plane makes", async () => {
    const denied: string[] = [];
    for (const call of calls) if (!(await may(...call))) denied.push(describeCall(call));
    expect(denied).toEqual([]);
  });

  it("and nothing beyond them", async () => {
    const allowed: string[] = [];
    for (const call of beyond) if (await may(...call)) allowed.push(describeCall(call));
    expect(allowed).toEqual([]);
  });

  it("the Deployment's own arguments start `wasmesh server --kubernetes` as that service account: it leads, registers the webhook on the Service, and is ready over TLS", async () => {
    const { args, service, server: cp } = controlPlaneOf(await build(KUBERNETES_DIR));
    // The service account's token (TokenRequest), as the pod would get it, in a kubeconfig.
    const minted = await kubectl(["create", "token", ACCOUNT, "--namespace", NAMESPACE, "--duration", "1h"]);
    expect(minted.code, minted.stderr).toBe(0);
    const kubeconfig = new k8s.KubeConfig();
    kubeconfig.loadFromOptions({
      clusters: [{ name: "test", server: server.url, skipTLSVerify: true }],
      users: [{ name: ACCOUNT, token: minted.stdout.trim() }],
      contexts: [{ name: "test", cluster: "test", user: ACCOUNT }],
      currentContext: "test",
    });
    const dir = tempDir("deploy-server");
    const kubeconfigPath = join(dir, "kubeconfig");
    writeFileSync(kubeconfigPath, kubeconfig.exportConfig(), { mode: 0o600 });

    // The same flags, with what this machine can use: loopback, free ports, a temp data directory.
    const httpPort = await freePort();
    let local = withFlag(args, "--data", join(dir, "data"));
    local = withFlag(local, "--address", "127.0.0.1");
    local = withFlag(local, "--http-port", String(httpPort));
    local = withFlag(local, "--xds-port", String(await freePort()));
    local = withFlag(local, "--webhook-port", String(await freePort()));
    const podName = "wasmesh-control-plane-7d9c5b-x2k8q";
    const env = Object.fromEntries(
      (cp.env ?? []).flatMap((e) =>
        e.value !== undefined ? [[e.name, e.value.replace("/var/lib/wasmesh", join(dir, "data"))]] : [],
      ),
    ) as Record<string, string>;
    const child = spawn(process.execPath, [WASMESH_BIN, ...local, "--kubeconfig", kubeconfigPath], {
      env: { ...process.env, ...env, POD_NAME: podName, POD_NAMESPACE: NAMESPACE },
      stdio: ["ignore", "pipe", "pipe"],
    });
    children.push(child);
    let output = "";
    child.stdout?.on("data", (chunk: Buffer) => {
      output += chunk.toString("utf8");
    });
    child.stderr?.on("data", (chunk: Buffer) => {
      output += chunk.toString("utf8");
    });
    const admin = server.kubeConfig;
    const webhooks = admin.makeApiClient(k8s.AdmissionregistrationV1Api);
    try {
      await until(
        () => `wasmesh server to start:\n${output}`,
        () => {
          if (child.exitCode !== null) throw new Error(`wasmesh server exited:\n${output}`);
          return output.includes("wasmesh control plane: API");
        },
        60_000,
        100,
      );
      // The probes' paths, over HTTPS with the mesh CA's certificate (the bundle --tls writes).
      const ca = readFileSync(join(dir, "data", "ca-bundle.pem"), "utf8");
      for (const probe of [cp.startupProbe, cp.readinessProbe, cp.livenessProbe]) {
        expect(probe?.httpGet?.scheme).toBe("HTTPS");
        expect(await httpsGet(httpPort, probe?.httpGet?.path ?? "", ca), probe?.httpGet?.path).toBe(200);
      }
      // One replica: it leads (the Lease's get, create and update), and registers the validating
      // webhook on the Service's webhook port with the mesh CA's bundle (create).
      const leases = admin.makeApiClient(k8s.CoordinationV1Api);
      await until(
        () => `${podName} to hold the Lease:\n${output}`,
        async () =>
          (await leases.readNamespacedLease({ name: LEASE, namespace: NAMESPACE }).catch(() => undefined))
            ?.spec?.holderIdentity === podName,
        30_000,
        200,
      );
      await until(
        () => `the webhook registration:\n${output}`,
        () =>
          webhooks.readValidatingWebhookConfiguration({ name: VALIDATING_WEBHOOK }).then(
            () => true,
            () => false,
          ),
        30_000,
        200,
      );
      const registration = await webhooks.readValidatingWebhookConfiguration({ name: VALIDATING_WEBHOOK });
      const hook = registration.webhooks?.[0];
      const webhookPort = service.spec.ports.find((p) => p.name === "webhook")?.port;
      expect(hook?.clientConfig.service).toEqual({
        namespace: NAMESPACE,
        name: service.metadata.name,
        port: webhookPort,
        path: VALIDATE_PATH,
      });
      expect(Buffer.from(hook?.clientConfig.caBundle ?? "", "base64").toString("utf8")).toContain(
        "-----BEGIN CERTIFICATE-----",
      );
      // The admin token operators read from the Secret (created: secrets' create) opens the API.
      const secret = await admin
        .makeApiClient(k8s.CoreV1Api)
        .readNamespacedSecret({ name: ADMIN_TOKEN_SECRET, namespace: NAMESPACE });
      const token = Buffer.from(secret.data?.token ?? "", "base64")
        .toString("utf8")
        .trim();
      expect(await httpsGet(httpPort, "/v1/services", ca, token)).toBe(200);
      // Nothing it tried was refused.
      expect(output).not.toMatch(/forbidden|HTTP 403/i);
    } finally {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      await exited;
      // Its registration would send later writes of wasmesh resources to a Service nothing serves here.
      await webhooks
        .deleteValidatingWebhookConfiguration({ name: VALIDATING_WEBHOOK })
        .catch(() => undefined);
    }
  });
});

/** GET https://127.0.0.1:port/path, verified with `ca`: the status. */
function httpsGet(port: number, path: string, ca: string, token?: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = https.get(
      {
        host: "127.0.0.1",
        port,
        path,
        ca,
        headers: token ? { authorization: `Bearer ${token}` } : {},
      },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on("error", reject);
  });
}
