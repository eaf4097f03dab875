// A private, real Kubernetes API server for tests (issue 12, §4): etcd and kube-apiserver (and
// kubectl, for the manifests' test) built by scripts/install-kubernetes.sh into .tools/kubernetes
// (KUBERNETES_TOOLS overrides), started on loopback with a data directory of their own and stopped
// with the test file.
//
// No kubelet, controller manager or scheduler runs: nothing starts containers, creates default
// service accounts, finishes deleting namespaces or makes EndpointSlices. So the API server runs
// with the flags that work without them (--endpoint-reconciler-type=none, the ServiceAccount
// admission plugin disabled), tests use fresh namespaces, and a test that needs EndpointSlices
// creates them for the pods it creates. Authentication is a static token file: one admin in
// system:masters, which RBAC lets do anything; RBAC is on, so other identities are checked.
import { type ChildProcess, spawn } from "node:child_process";
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { accessSync, constants, createWriteStream, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as k8s from "@kubernetes/client-node";
import { freePort, REPO_ROOT } from "./envoy.ts";
import { tempDir } from "./temp.ts";
import { until } from "./wait.ts";

export const KUBERNETES_TOOLS = process.env.KUBERNETES_TOOLS ?? join(REPO_ROOT, ".tools", "kubernetes");
const INSTALL_HINT = "Run `./dev setup` (or `bash scripts/install-kubernetes.sh`) to build them.";

/** The path of a binary the install script builds, or an error saying how to get it. */
export function kubernetesBinary(name: "kube-apiserver" | "etcd" | "kubectl"): string {
  const path = join(KUBERNETES_TOOLS, name);
  try {
    accessSync(path, constants.X_OK);
  } catch {
    throw new Error(`${name} not found at ${path}. ${INSTALL_HINT}`);
  }
  return path;
}

export interface ApiServer {
  /** https://127.0.0.1:<port> */
  readonly url: string;
  /** The admin's bearer token (system:masters). */
  readonly token: string;
  /** A kubeconfig (as a client-node KubeConfig) for the admin; the server's certificate is self-signed. */
  readonly kubeConfig: k8s.KubeConfig;
  /** The same as a kubeconfig file, for processes (`--kubeconfig`). */
  readonly kubeconfigPath: string;
  /** Both processes' output so far, for error messages. */
  logs(): string;
  stop(): Promise<void>;
}

interface Running {
  child: ChildProcess;
  exited: Promise<void>;
}

function run(name: string, bin: string, args: string[], logFile: string, output: string[]): Running {
  const child = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
  const log = createWriteStream(logFile);
  const keep = (chunk: Buffer) => {
    log.write(chunk);
    output.push(`[${name}] ${chunk.toString("utf8")}`);
    if (output.length > 400) output.splice(0, output.length - 400);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return { child, exited };
}

async function stopProcess(running: Running): Promise<void> {
  if (running.child.exitCode !== null || running.child.signalCode !== null) return;
  running.child.kill("SIGTERM");
  const timer = setTimeout(() => running.child.kill("SIGKILL"), 10_000);
  await running.exited;
  clearTimeout(timer);
}

/** Starts etcd and kube-apiserver on loopback; resolves once /readyz answers ok. */
export async function startApiServer(): Promise<ApiServer> {
  const apiserverBin = kubernetesBinary("kube-apiserver");
  const etcdBin = kubernetesBinary("etcd");
  const dir = tempDir("kube");
  const output: string[] = [];
  const logs = () => output.join("");

  const [etcdClient, etcdPeer, securePort] = [await freePort(), await freePort(), await freePort()];
  const etcd = run(
    "etcd",
    etcdBin,
    [
      "--name",
      "test",
      "--data-dir",
      join(dir, "etcd"),
      "--listen-client-urls",
      `http://127.0.0.1:${etcdClient}`,
      "--advertise-client-urls",
      `http://127.0.0.1:${etcdClient}`,
      "--listen-peer-urls",
      `http://127.0.0.1:${etcdPeer}`,
      "--initial-advertise-peer-urls",
      `http://127.0.0.1:${etcdPeer}`,
      "--initial-cluster",
      `test=http://127.0.0.1:${etcdPeer}`,
      "--log-level",
      "warn",
    ],
    join(dir, "etcd.log"),
    output,
  );

  const token = randomBytes(24).toString("base64url");
  writeFileSync(join(dir, "tokens.csv"), `${token},admin,admin-uid,"system:masters"\n`, { mode: 0o600 });
  // Service account tokens need a signing key even when nothing issues them.
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  writeFileSync(join(dir, "sa.key"), privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });
  writeFileSync(join(dir, "sa.pub"), publicKey.export({ type: "spki", format: "pem" }));
  mkdirSync(join(dir, "certs"), { recursive: true });
  const apiserver = run(
    "kube-apiserver",
    apiserverBin,
    [
      `--etcd-servers=http://127.0.0.1:${etcdClient}`,
      "--bind-address=127.0.0.1",
      "--advertise-address=127.0.0.1",
      `--secure-port=${securePort}`,
      `--cert-dir=${join(dir, "certs")}`,
      `--token-auth-file=${join(dir, "tokens.csv")}`,
      "--authorization-mode=RBAC",
      "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
      `--service-account-key-file=${join(dir, "sa.pub")}`,
      `--service-account-signing-key-file=${join(dir, "sa.key")}`,
      "--service-cluster-ip-range=10.96.0.0/16",
      // Without a kubelet or controller manager: nothing reconciles the kubernetes Service's
      // endpoints, and nothing creates the default ServiceAccount the admission plugin waits for.
      "--endpoint-reconciler-type=none",
      "--disable-admission-plugins=ServiceAccount",
      "--v=0",
    ],
    join(dir, "kube-apiserver.log"),
    output,
  );
  const url = `https://127.0.0.1:${securePort}`;

  const kubeConfig = new k8s.KubeConfig();
  kubeConfig.loadFromOptions({
    clusters: [{ name: "test", server: url, skipTLSVerify: true }],
    users: [{ name: "admin", token }],
    contexts: [{ name: "test", cluster: "test", user: "admin" }],
    currentContext: "test",
  });
  const kubeconfigPath = join(dir, "kubeconfig");
  writeFileSync(kubeconfigPath, kubeConfig.exportConfig(), { mode: 0o600 });

  const stop = async () => {
    await stopProcess(apiserver);
    await stopProcess(etcd);
  };
  try {
    await until(
      () => `kube-apiserver on ${url} to be ready; its output:\n${logs().slice(-4000)}`,
      async () => {
        if (apiserver.child.exitCode !== null)
          throw new Error(`kube-apiserver exited:\n${logs().slice(-4000)}`);
        if (etcd.child.exitCode !== null) throw new Error(`etcd exited:\n${logs().slice(-4000)}`);
        try {
          const response = await fetchInsecure(`${url}/readyz`, token);
          return response.status === 200;
        } catch {
          return false;
        }
      },
      60_000,
      200,
    );
  } catch (error) {
    await stop();
    throw error;
  }
  return { url, token, kubeConfig, kubeconfigPath, logs, stop };
}

/** GET with a bearer token against the server's self-signed certificate. */
async function fetchInsecure(url: string, token: string): Promise<{ status: number; body: string }> {
  const https = await import("node:https");
  return new Promise((resolve, reject) => {
    const req = https.request(
      url,
      { headers: { authorization: `Bearer ${token}` }, rejectUnauthorized: false, timeout: 2000 },
      (res) => {
        let body = "";
        res.on("data", (chunk: Buffer) => {
          body += chunk.toString("utf8");
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on("timeout", () => req.destroy(new Error("timed out")));
    req.on("error", reject);
    req.end();
  });
}
