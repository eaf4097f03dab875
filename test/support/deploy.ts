// deploy/'s Kubernetes manifests as the tests read them: every document parsed (a YAML error fails
// the test), resources looked up by kind and name, and the control plane's Deployment with its
// container and `wasmesh server` arguments. The directories are Kustomize roots: the base
// (deploy/kubernetes), the production overlay and the canary example.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { expect } from "vitest";
import { parseAllDocuments } from "yaml";
import { REPO_ROOT } from "./envoy.ts";

export const DEPLOY_DIR = join(REPO_ROOT, "deploy");
/** The base: kubectl apply -k deploy/kubernetes. */
export const KUBERNETES_DIR = join(DEPLOY_DIR, "kubernetes");
export const PRODUCTION_DIR = join(DEPLOY_DIR, "overlays", "production");
export const CANARY_DIR = join(DEPLOY_DIR, "examples", "canary");

export interface Probe {
  httpGet?: { path: string; port: string | number; scheme?: string };
  tcpSocket?: { port: string | number };
}
export interface Container {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  ports?: { name?: string; containerPort: number }[];
  env?: { name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[];
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[];
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  startupProbe?: Probe;
  securityContext?: {
    allowPrivilegeEscalation?: boolean;
    readOnlyRootFilesystem?: boolean;
    capabilities?: { drop?: string[] };
  };
}
export interface PodTemplate {
  metadata: { labels: Record<string, string> };
  spec: {
    serviceAccountName?: string;
    securityContext?: { runAsNonRoot?: boolean; runAsUser?: number; seccompProfile?: { type: string } };
    initContainers?: Container[];
    containers: Container[];
    volumes?: { name: string; emptyDir?: object }[];
  };
}
export interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  spec?: unknown;
}
export interface ServiceSpec {
  selector: Record<string, string>;
  ports: { name: string; port: number; targetPort: string | number; appProtocol?: string }[];
}
export interface DeploymentSpec {
  replicas: number;
  selector: { matchLabels: Record<string, string> };
  template: PodTemplate;
}

/** Every document of a YAML stream; a YAML error fails the test with its message. */
export function parseDocuments(text: string, name: string): Manifest[] {
  return parseAllDocuments(text).flatMap((doc, i) => {
    expect(
      doc.errors.map((e) => e.message),
      `${name} document ${i}`,
    ).toEqual([]);
    const js = doc.toJS() as Manifest | null;
    return js === null ? [] : [js];
  });
}

/** Every document of a manifest file (absolute, or relative to deploy/). */
export function documents(file: string): Manifest[] {
  return parseDocuments(readFileSync(file.startsWith("/") ? file : join(DEPLOY_DIR, file), "utf8"), file);
}

export function only<T>(manifests: Manifest[], kind: string, name?: string): Manifest & { spec: T } {
  const found = manifests.filter((m) => m.kind === kind && (name === undefined || m.metadata.name === name));
  expect(found, `${kind} ${name ?? ""}`).toHaveLength(1);
  return found[0] as Manifest & { spec: T };
}

export function container(template: PodTemplate, name: string, init = false): Container {
  const list = init ? (template.spec.initContainers ?? []) : template.spec.containers;
  const found = list.find((c) => c.name === name);
  if (!found) throw new Error(`no ${init ? "initContainer" : "container"} '${name}'`);
  return found;
}

export function port(c: Container, name: string): number {
  const found = c.ports?.find((p) => p.name === name);
  if (!found) throw new Error(`container '${c.name}' has no port '${name}'`);
  return found.containerPort;
}

/** The value following `flag` in an argument list. */
export function flag(args: readonly string[], name: string): string {
  const i = args.indexOf(name);
  expect(i, `${name} in ${args.join(" ")}`).toBeGreaterThanOrEqual(0);
  return args[i + 1] as string;
}

/** Replaces the value following `name` (for running the manifest's flags outside a pod). */
export function withFlag(args: readonly string[], name: string, value: string): string[] {
  const i = args.indexOf(name);
  if (i < 0) throw new Error(`${name} is not in ${args.join(" ")}`);
  const out = [...args];
  out[i + 1] = value;
  return out;
}

/** The control plane in a set of manifests (the base's, or an overlay's build). */
export function controlPlaneOf(manifests: Manifest[]) {
  const deployment = only<DeploymentSpec>(manifests, "Deployment", "wasmesh-control-plane");
  const server = container(deployment.spec.template, "control-plane");
  return {
    deployment,
    server,
    /** `server --kubernetes …`: what follows the command. */
    args: server.args ?? [],
    service: only<ServiceSpec>(manifests, "Service", "wasmesh-control-plane"),
  };
}
