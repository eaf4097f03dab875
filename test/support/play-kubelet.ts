// Plays the kubelet for a Pod the API server stored (issue 12's proof: no kubelet runs here). The
// pod gets a network namespace of its own (pod-network.ts) and its IP in status; its volumes are
// made as the kubelet makes them (a projected service-account token minted with TokenRequest for
// the pod, ConfigMaps' and Secrets' keys as files, emptyDirs); its init containers run in order
// (a native sidecar, restartPolicy Always, is started and left running once its startup or
// readiness probe passes); then the test's own processes stand in for the app containers.
//
// A container runs from its command and args exactly as stored, with its environment (downward API
// fields resolved) and the mount paths mapped to the volumes' local folders, as its user
// (securityContext.runAsUser). The image is the wasmesh image: `wasmesh` and `envoy` are on PATH
// here as they are there (ENTRYPOINT `npx wasmesh` when a container gives no command).
import { type ChildProcess, spawn } from "node:child_process";
import { chmodSync, chownSync, mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import * as k8s from "@kubernetes/client-node";
import { WASMESH_BIN } from "./control-plane.ts";
import { envoyExecutable, REPO_ROOT } from "./envoy.ts";
import { commandLine, containerEnv } from "./kubelet.ts";
import type { PodNetwork } from "./pod-network.ts";
import { tempDir } from "./temp.ts";
import { until } from "./wait.ts";

/** The image's entrypoint, when a container gives no command. */
const ENTRYPOINT = ["wasmesh"];
/** Where the image has the package (deploy/Dockerfile's WORKDIR): this repository here. */
const IMAGE_PATHS: Record<string, string> = { "/app": REPO_ROOT };

export interface RunningContainer {
  name: string;
  child: ChildProcess;
  output(): string;
}

export interface RunningPod {
  name: string;
  namespace: string;
  uid: string;
  ip: string;
  netns: string;
  /** The native sidecars (init containers with restartPolicy Always), running. */
  sidecars: RunningContainer[];
  /** Runs a process in the pod's network namespace as `uid` (an app container's stand-in). */
  run(name: string, uid: number, argv: readonly string[]): RunningContainer;
  /** SIGTERM to every process, SIGKILL after a grace period, as the kubelet deletes a pod. */
  stop(): Promise<void>;
}

/** A folder on PATH with `wasmesh` and `envoy`, as the image has them. */
function imageBin(): string {
  const dir = tempDir("image-bin");
  const wasmesh = join(dir, "wasmesh");
  writeFileSync(wasmesh, `#!/bin/sh\nexec "${process.execPath}" "${WASMESH_BIN}" "$@"\n`);
  chmodSync(wasmesh, 0o755);
  symlinkSync(envoyExecutable(), join(dir, "envoy"));
  chmodSync(dir, 0o755);
  return dir;
}

function start(
  network: PodNetwork,
  netns: string,
  name: string,
  uid: number,
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
): RunningContainer {
  const child = spawn("ip", network.exec(netns, uid, argv), { env, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  const keep = (chunk: Buffer) => {
    output += chunk;
    if (output.length > 200_000) output = output.slice(-100_000);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  return { name, child, output: () => output };
}

async function stopAll(containers: readonly RunningContainer[]): Promise<void> {
  await Promise.all(
    containers.map(async ({ child }) => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
      await exited;
      clearTimeout(timer);
    }),
  );
}

/** A probe's HTTP GET from the host to the pod's IP, as the kubelet sends it. */
async function probe(
  podIp: string,
  probe: k8s.V1Probe | undefined,
  container: k8s.V1Container,
): Promise<boolean> {
  const get = probe?.httpGet;
  if (get === undefined) return true;
  const port =
    typeof get.port === "number"
      ? get.port
      : (container.ports?.find((p) => p.name === get.port)?.containerPort ?? Number(get.port));
  const scheme = (get.scheme ?? "HTTP").toLowerCase();
  try {
    const response = await fetch(`${scheme}://${podIp}:${port}${get.path ?? "/"}`, {
      signal: AbortSignal.timeout(2_000),
    });
    return response.status >= 200 && response.status < 400;
  } catch {
    return false;
  }
}

/**
 * Starts `pod` (as stored by the API server, after admission) in a new namespace of `network`: sets
 * its IP in status, makes its volumes, runs its init containers. Resolves once its native sidecars
 * are ready.
 */
export async function startPod(
  pod: k8s.V1Pod,
  options: { network: PodNetwork; kubeConfig: k8s.KubeConfig; readyTimeoutMs?: number },
): Promise<RunningPod> {
  const { network, kubeConfig } = options;
  const name = pod.metadata?.name ?? "";
  const namespace = pod.metadata?.namespace ?? "";
  const uid = pod.metadata?.uid ?? "";
  const spec = pod.spec ?? { containers: [] };
  const core = kubeConfig.makeApiClient(k8s.CoreV1Api);
  const { netns, ip: podIp } = network.addPod(name);

  // The pod's IP, as the kubelet reports it.
  const current = await core.readNamespacedPodStatus({ name, namespace });
  await core.replaceNamespacedPodStatus({
    name,
    namespace,
    body: {
      ...current,
      status: { ...current.status, phase: "Running", podIP: podIp, podIPs: [{ ip: podIp }] },
    },
  });

  // Volumes: local folders, readable by every container's user.
  const volumes = new Map<string, string>();
  const root = tempDir(`pod-${name}`);
  chmodSync(root, 0o755);
  for (const volume of spec.volumes ?? []) {
    const dir = join(root, volume.name);
    mkdirSync(dir, { recursive: true });
    chmodSync(dir, 0o777);
    volumes.set(volume.name, dir);
    for (const source of volume.projected?.sources ?? []) {
      const token = source.serviceAccountToken;
      if (token !== undefined) {
        const minted = await core.createNamespacedServiceAccountToken({
          name: spec.serviceAccountName ?? "default",
          namespace,
          body: {
            spec: {
              audiences: token.audience ? [token.audience] : [],
              expirationSeconds: token.expirationSeconds ?? 3600,
              boundObjectRef: { kind: "Pod", apiVersion: "v1", name, uid },
            },
          },
        });
        writeFileSync(join(dir, token.path), minted.status?.token ?? "", { mode: 0o644 });
      }
      if (source.configMap?.name !== undefined)
        await writeConfigMap(core, namespace, source.configMap.name, dir);
      for (const item of source.downwardAPI?.items ?? []) writeDownward(pod, item, dir);
    }
    for (const item of volume.downwardAPI?.items ?? []) writeDownward(pod, item, dir);
    if (volume.configMap?.name !== undefined)
      await writeConfigMap(core, namespace, volume.configMap.name, dir);
    if (volume.secret?.secretName !== undefined) {
      const secret = await core.readNamespacedSecret({ name: volume.secret.secretName, namespace });
      for (const [key, value] of Object.entries(secret.data ?? {}))
        writeFileSync(join(dir, key), Buffer.from(value, "base64"), { mode: 0o644 });
    }
  }

  const bin = imageBin();
  const fields: Record<string, string> = {
    "metadata.name": name,
    "metadata.namespace": namespace,
    "metadata.uid": uid,
    "status.podIP": podIp,
    "spec.serviceAccountName": spec.serviceAccountName ?? "default",
    "spec.nodeName": "play-kubelet",
  };

  /** A container's argv and environment, its mount paths mapped to the volumes' folders. */
  const prepare = (container: k8s.V1Container) => {
    const mounts: Record<string, string> = {};
    for (const m of container.volumeMounts ?? []) {
      const dir = volumes.get(m.name);
      if (dir === undefined)
        throw new Error(`pod ${name}: ${container.name} mounts unknown volume ${m.name}`);
      mounts[m.mountPath] = m.subPath ? join(dir, m.subPath) : dir;
    }
    const variables = containerEnv(container, fields);
    const argv = commandLine(container, variables, { ...mounts, ...IMAGE_PATHS }, ENTRYPOINT);
    // The image's node is this one.
    if (argv[0] === "node") argv[0] = process.execPath;
    const env: NodeJS.ProcessEnv = {
      ...variables,
      PATH: `${bin}:${process.env.PATH}`,
      HOME: join(root, `home-${container.name}`),
    };
    mkdirSync(env.HOME as string, { recursive: true });
    const user = container.securityContext?.runAsUser ?? spec.securityContext?.runAsUser ?? 0;
    if (user !== 0) chownSync(env.HOME as string, user, user);
    return { argv, env, user };
  };

  const sidecars: RunningContainer[] = [];
  const others: RunningContainer[] = [];
  const running = (): RunningPod => ({
    name,
    namespace,
    uid,
    ip: podIp,
    netns,
    sidecars,
    run(processName, user, argv) {
      const container = start(network, netns, processName, user, argv, process.env);
      others.push(container);
      return container;
    },
    stop: () => stopAll([...others, ...sidecars]),
  });

  for (const container of spec.initContainers ?? []) {
    const { argv, env, user } = prepare(container);
    const started = start(network, netns, container.name, user, argv, env);
    if (container.restartPolicy === "Always") {
      sidecars.push(started);
      const gate = container.startupProbe ?? container.readinessProbe;
      try {
        await until(
          () => `${name}/${container.name} to be ready; its output:\n${started.output()}`,
          async () => {
            if (started.child.exitCode !== null)
              throw new Error(
                `${name}/${container.name} exited ${started.child.exitCode}:\n${started.output()}`,
              );
            return probe(podIp, gate, container);
          },
          options.readyTimeoutMs ?? 90_000,
          250,
        );
      } catch (error) {
        await running().stop();
        throw error;
      }
      continue;
    }
    const code = await new Promise<number | null>((resolve) => started.child.once("exit", resolve));
    if (code !== 0) {
      await running().stop();
      throw new Error(`${name}: init container ${container.name} exited ${code}:\n${started.output()}`);
    }
  }
  return running();
}

/** A downward API file: a field of the pod as stored (labels, annotations, name, namespace, uid). */
function writeDownward(pod: k8s.V1Pod, item: k8s.V1DownwardAPIVolumeFile, dir: string): void {
  const path = item.fieldRef?.fieldPath;
  if (path === undefined)
    throw new Error(`downward API file ${item.path}: the play kubelet reads fieldRefs only`);
  const keyed = /^metadata\.(annotations|labels)\['(.+)'\]$/.exec(path);
  const metadata = pod.metadata ?? {};
  const fields: Record<string, string | undefined> = {
    "metadata.name": metadata.name,
    "metadata.namespace": metadata.namespace,
    "metadata.uid": metadata.uid,
  };
  const value = keyed
    ? (keyed[1] === "annotations" ? metadata.annotations : metadata.labels)?.[keyed[2] as string]
    : fields[path];
  if (value === undefined) throw new Error(`downward API file ${item.path}: the pod has no ${path}`);
  mkdirSync(dirname(join(dir, item.path)), { recursive: true });
  writeFileSync(join(dir, item.path), value, { mode: 0o644 });
}

async function writeConfigMap(
  core: k8s.CoreV1Api,
  namespace: string,
  name: string,
  dir: string,
): Promise<void> {
  const map = await core.readNamespacedConfigMap({ name, namespace });
  for (const [key, value] of Object.entries(map.data ?? {}))
    writeFileSync(join(dir, key), value, { mode: 0o644 });
}

/** The EndpointSlice the endpoints controller would make for `service` over these running pods. */
export async function publishEndpoints(
  kubeConfig: k8s.KubeConfig,
  namespace: string,
  service: string,
  ports: { name: string; port: number }[],
  pods: readonly RunningPod[],
): Promise<void> {
  const api = kubeConfig.makeApiClient(k8s.DiscoveryV1Api);
  const body: k8s.V1EndpointSlice = {
    metadata: { name: `${service}-play`, labels: { "kubernetes.io/service-name": service } },
    addressType: "IPv4",
    ports: ports.map((p) => ({ ...p, protocol: "TCP" })),
    endpoints: pods.map((pod) => ({
      addresses: [pod.ip],
      conditions: { ready: true },
      targetRef: { kind: "Pod", name: pod.name, namespace, uid: pod.uid },
    })),
  };
  try {
    await api.createNamespacedEndpointSlice({ namespace, body });
  } catch {
    const current = await api.readNamespacedEndpointSlice({ name: `${service}-play`, namespace });
    await api.replaceNamespacedEndpointSlice({
      name: `${service}-play`,
      namespace,
      body: { ...body, metadata: { ...body.metadata, resourceVersion: current.metadata?.resourceVersion } },
    });
  }
}
