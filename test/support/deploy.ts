// deploy/kubernetes's manifests as the tests read them: every document parsed (a YAML error fails
// the test), the resources and containers looked up by kind and name, and the sidecar example's
// initContainer command split into its `wasmesh bootstrap` arguments and the file it writes.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { expect } from "vitest";
import { parseAllDocuments } from "yaml";
import { REPO_ROOT } from "./envoy.ts";

export const KUBERNETES_DIR = join(REPO_ROOT, "deploy", "kubernetes");

export interface Probe {
  httpGet?: { path: string; port: string | number };
  tcpSocket?: { port: string | number };
}
export interface Container {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  ports?: { name?: string; containerPort: number }[];
  env?: { name: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[];
  volumeMounts?: { name: string; mountPath: string }[];
  readinessProbe?: Probe;
  livenessProbe?: Probe;
}
export interface PodTemplate {
  metadata: { labels: Record<string, string> };
  spec: {
    serviceAccountName?: string;
    initContainers?: Container[];
    containers: Container[];
    volumes?: { name: string; emptyDir?: object }[];
  };
}
export interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
  spec?: unknown;
}
export interface ServiceSpec {
  selector: Record<string, string>;
  ports: { name: string; port: number; targetPort: string | number; appProtocol?: string }[];
}
export interface StatefulSetSpec {
  replicas: number;
  serviceName: string;
  selector: { matchLabels: Record<string, string> };
  template: PodTemplate;
  volumeClaimTemplates: { metadata: { name: string } }[];
}
export interface DeploymentSpec {
  selector: { matchLabels: Record<string, string> };
  template: PodTemplate;
}

/** Every document of a manifest file; a YAML error fails the test with its message. */
export function documents(file: string): Manifest[] {
  const docs = parseAllDocuments(readFileSync(join(KUBERNETES_DIR, file), "utf8"));
  if (!Array.isArray(docs)) throw new Error(`${file}: no documents`);
  return docs.map((doc, i) => {
    expect(
      doc.errors.map((e) => e.message),
      `${file} document ${i}`,
    ).toEqual([]);
    return doc.toJS() as Manifest;
  });
}

export function only<T>(manifests: Manifest[], kind: string): Manifest & { spec: T } {
  const found = manifests.filter((m) => m.kind === kind);
  expect(found, kind).toHaveLength(1);
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

/** sidecar-example.yaml: its Deployment, the pod's containers, and what the initContainer runs. */
export function sidecarExample() {
  const manifests = documents("sidecar-example.yaml");
  const deployment = only<DeploymentSpec>(manifests, "Deployment");
  const template = deployment.spec.template;
  const init = container(template, "wasmesh-bootstrap", true);
  // sh -c "npx wasmesh bootstrap … > FILE"
  const script = (init.args ?? [])[0] ?? "";
  const match = /^npx wasmesh (bootstrap [^>"']+?) > (\S+)$/.exec(script);
  return {
    manifests,
    deployment,
    template,
    init,
    envoy: container(template, "envoy"),
    app: container(template, "app"),
    script,
    /** `bootstrap --node-id $(POD_NAME) …`, split; undefined when the script is not that command. */
    bootstrapArgs: match?.[1]?.split(/\s+/),
    /** The file the bootstrap is written to. */
    bootstrapFile: match?.[2],
  };
}
