// Issue 12's proof, end to end on a real API server: two control plane replicas in Kubernetes mode
// behind one address (a TCP balancer standing in for their Service), a labelled namespace with the
// seeds' canary (productpage calling reviews, whose pods are v1 and v2), Pods created through the
// API server and injected by the webhook, and this test playing the kubelet: each Pod runs in a
// network namespace of its own, its init containers (the traffic capture, then the native sidecar:
// the agent and Envoy) started from the stored spec, with real Envoys loading the real module.
// Then, with the same sidecar processes and the same pod UIDs throughout (no pod restarted):
// a Route applied as a custom object splits 90/10, then 0/100; a WasmPlugin's configuration and a
// new module version reach the sidecars under load with no failed request; a bad Route is refused by
// the webhook with its field path; and killing the leader replica loses nothing.
import { readFileSync } from "node:fs";
import https from "node:https";
import * as k8s from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { resourceOf } from "../../control-plane/kubernetes/crds.ts";
import type { ControlPlane } from "../../control-plane/server.ts";
import { RELEASE_WASM } from "../support/artifacts.ts";
import { freePort, REPO_ROOT } from "../support/envoy.ts";
import { type ApiServer, startApiServer } from "../support/kubernetes.ts";
import { freshNamespace, installCrds, startReplica } from "../support/kubernetes-mesh.ts";
import type { LoadResult } from "../support/load.ts";
import { publishEndpoints, type RunningPod, startPod } from "../support/play-kubelet.ts";
import { canMakePods, createPodNetwork, type PodNetwork, runIn } from "../support/pod-network.ts";
import { tagModule } from "../support/tag-module.ts";
import { startTcpBalancer, type TcpBalancer } from "../support/tcp-balancer.ts";
import { until } from "../support/wait.ts";

const skipReason = canMakePods();
const APP_UID = 1001;
const APP_PORT = 9080;
/** The sidecar's outbound listener (the injector's default), where the load generator calls. */
const OUTBOUND_PORT = 15001;
/** The sidecar's Envoy admin (the injector's default, on the pod's loopback). */
const ENVOY_ADMIN_PORT = 15000;

/** An app container's stand-in: answers with its name in x-upstream. */
const APP = `
const [name, port] = process.argv.slice(1);
require("node:http").createServer((req, res) => {
  res.writeHead(200, { "x-upstream": name, "content-type": "text/plain" });
  res.end(name + "\\n");
}).listen(Number(port), "0.0.0.0");
`;

describe.skipIf(skipReason !== undefined)(
  "issue 12's proof: a Kubernetes mesh, the kubelet played here",
  () => {
    let server: ApiServer;
    let network: PodNetwork;
    let custom: k8s.CustomObjectsApi;
    let core: k8s.CoreV1Api;
    let system: string;
    let bookinfo: string;
    const replicas: ControlPlane[] = [];
    const balancers: TcpBalancer[] = [];
    let apiBalancer: TcpBalancer;
    let xdsBalancer: TcpBalancer;
    /** The API of the first replica over https (the mesh CA's certificate), with the admin token. */
    let admin: (
      path: string,
      body: Uint8Array | string,
      contentType: string,
    ) => Promise<{ status: number; text: string }>;
    const pods = new Map<string, RunningPod>();
    let reviewsClusterIp = "";

    async function replica(identity: string, apiUrl: string, xdsAddress: string): Promise<ControlPlane> {
      const plane = await startReplica(server, system, identity, {
        address: "0.0.0.0",
        tls: "mesh-ca",
        builtinModule: RELEASE_WASM,
        kubernetes: {
          injection: { image: "ghcr.io/wasmesh/control-plane:0.1.0", api: apiUrl, xds: xdsAddress },
        },
      });
      replicas.push(plane);
      return plane;
    }

    /** The load generator (support/load.ts) inside productpage's pod, as its app would call. */
    async function loadFromProductpage(
      requests: number,
      ratePerSecond: number,
      concurrency = 4,
    ): Promise<LoadResult> {
      const productpage = pods.get("productpage") as RunningPod;
      const options = {
        url: `http://127.0.0.1:${OUTBOUND_PORT}/`,
        headers: { host: "reviews" },
        requests,
        concurrency,
        ratePerSecond,
        timeoutMs: 10_000,
        recordHeader: "x-tag",
      };
      const { code, output } = await runIn(network, productpage.netns, APP_UID, [
        process.execPath,
        `${REPO_ROOT}/test/support/load-cli.ts`,
        JSON.stringify(options),
      ]);
      if (code !== 0) throw new Error(`the load generator failed: ${output}`);
      const result = JSON.parse(output.trim().split("\n").at(-1) ?? "{}");
      return { ...result, statuses: new Map(), byUpstream: new Map(Object.entries(result.byUpstream)) };
    }

    const applyRoute = async (weights: [number, number]) => {
      const body = {
        apiVersion: "wasmesh.io/v1alpha1",
        kind: "Route",
        metadata: { name: "reviews-canary", namespace: system },
        spec: {
          service: `reviews.${bookinfo}`,
          rules: [
            {
              name: "split",
              destinations: [
                { service: `reviews.${bookinfo}`, subset: { version: "v1" }, weight: weights[0] },
                { service: `reviews.${bookinfo}`, subset: { version: "v2" }, weight: weights[1] },
              ],
            },
          ],
        },
      };
      const { group, version, plural } = resourceOf("Route");
      const where = { group, version, plural, namespace: system, name: "reviews-canary" };
      const current = await custom.getNamespacedCustomObject(where).catch(() => undefined);
      if (current === undefined) await custom.createNamespacedCustomObject({ ...where, body });
      else
        await custom.replaceNamespacedCustomObject({
          ...where,
          body: {
            ...body,
            metadata: {
              ...body.metadata,
              resourceVersion: (current as k8s.KubernetesObject).metadata?.resourceVersion,
            },
          },
        });
    };

    /** Who answers `count` calls from productpage: counts by upstream. */
    const answers = async (count: number) => (await loadFromProductpage(count, 200)).byUpstream;

    beforeAll(async () => {
      server = await startApiServer();
      custom = server.kubeConfig.makeApiClient(k8s.CustomObjectsApi);
      core = server.kubeConfig.makeApiClient(k8s.CoreV1Api);
      await installCrds(server);
      system = await freshNamespace(server, "wasmesh-system");
      bookinfo = await freshNamespace(server, "bookinfo", { "wasmesh.io/sidecar-injection": "enabled" });
      network = createPodNetwork(
        Math.random().toString(36).slice(2, 6),
        200 + Math.floor(Math.random() * 50),
      );

      // One address for both replicas, as their Service gives sidecars.
      const [apiPort, xdsPort] = [await freePort(), await freePort()];
      apiBalancer = await startTcpBalancer(network.hostIp, apiPort, []);
      xdsBalancer = await startTcpBalancer(network.hostIp, xdsPort, []);
      balancers.push(apiBalancer, xdsBalancer);
      const apiUrl = `https://${network.hostIp}:${apiPort}`;
      const xdsAddress = `${network.hostIp}:${xdsPort}`;
      const first = await replica("replica-a", apiUrl, xdsAddress);
      const second = await replica("replica-b", apiUrl, xdsAddress);
      apiBalancer.setBackends(replicas.map((r) => `127.0.0.1:${r.httpPort}`));
      xdsBalancer.setBackends(replicas.map((r) => `127.0.0.1:${r.xdsPort}`));
      await until(
        "a leader and its webhook registrations",
        async () => {
          if (!replicas.some((r) => r.leader?.isLeader())) return false;
          const hooks = server.kubeConfig.makeApiClient(k8s.AdmissionregistrationV1Api);
          const [validating, mutating] = await Promise.all([
            hooks.listValidatingWebhookConfiguration(),
            hooks.listMutatingWebhookConfiguration(),
          ]);
          return validating.items.length > 0 && mutating.items.length > 0;
        },
        30_000,
      );

      const ca = (first.tls?.caFile ?? second.tls?.caFile) as string;
      const token = readFileSync(first.adminTokenFile, "utf8").trim();
      const trusted = readFileSync(ca, "utf8");
      admin = (path, body, contentType) =>
        new Promise((resolve, reject) => {
          const request = https.request(
            `https://127.0.0.1:${first.httpPort}${path}`,
            {
              method: "POST",
              ca: trusted,
              headers: { authorization: `Bearer ${token}`, "content-type": contentType },
            },
            (response) => {
              let text = "";
              response.on("data", (chunk: Buffer) => {
                text += chunk;
              });
              response.on("end", () => resolve({ status: response.statusCode ?? 0, text }));
            },
          );
          request.once("error", reject);
          request.end(body);
        });

      // The canary's Kubernetes objects: service accounts, Services, and Pods as Deployments would make them.
      for (const account of ["productpage", "reviews"])
        await core.createNamespacedServiceAccount({
          namespace: bookinfo,
          body: { metadata: { name: account } },
        });
      for (const name of ["productpage", "reviews"]) {
        const created = await core.createNamespacedService({
          namespace: bookinfo,
          body: {
            metadata: { name },
            spec: {
              selector: { app: name },
              ports: [{ name: "http", port: APP_PORT, targetPort: APP_PORT }],
            },
          },
        });
        if (name === "reviews") reviewsClusterIp = created.spec?.clusterIP ?? "";
      }
      const podSpecs = [
        { name: "productpage", app: "productpage", version: "v1", account: "productpage" },
        { name: "reviews-v1", app: "reviews", version: "v1", account: "reviews" },
        { name: "reviews-v2", app: "reviews", version: "v2", account: "reviews" },
      ];
      for (const p of podSpecs) {
        await core.createNamespacedPod({
          namespace: bookinfo,
          body: {
            metadata: { name: p.name, labels: { app: p.app, version: p.version } },
            spec: {
              serviceAccountName: p.account,
              containers: [
                {
                  name: "app",
                  image: "example.com/bookinfo:1",
                  ports: [{ name: "http", containerPort: APP_PORT }],
                  securityContext: { runAsUser: APP_UID },
                },
              ],
            },
          },
        });
        const stored = await core.readNamespacedPod({ name: p.name, namespace: bookinfo });
        const running = await startPod(stored, { network, kubeConfig: server.kubeConfig });
        // Cluster DNS: the Service's names, as a pod's resolver (with its namespace's search path) has them.
        network.setHosts(running.netns, {
          [reviewsClusterIp]: ["reviews", `reviews.${bookinfo}`, `reviews.${bookinfo}.svc.cluster.local`],
        });
        running.run("app", APP_UID, [process.execPath, "-e", APP, "--", p.name, String(APP_PORT)]);
        pods.set(p.name, running);
      }
      // The endpoints controller's part: the ready pods behind each Service.
      await publishEndpoints(
        server.kubeConfig,
        bookinfo,
        "productpage",
        [{ name: "http", port: APP_PORT }],
        [pods.get("productpage") as RunningPod],
      );
      await publishEndpoints(
        server.kubeConfig,
        bookinfo,
        "reviews",
        [{ name: "http", port: APP_PORT }],
        [pods.get("reviews-v1") as RunningPod, pods.get("reviews-v2") as RunningPod],
      );
      await until(
        "productpage's sidecar to reach both reviews pods",
        async () => {
          const seen = await answers(40);
          return (seen.get("reviews-v1") ?? 0) > 0 && (seen.get("reviews-v2") ?? 0) > 0;
        },
        90_000,
        500,
      );
    }, 300_000);

    afterAll(async () => {
      for (const pod of pods.values()) await pod.stop();
      for (const plane of replicas) await plane.close();
      for (const balancer of balancers) await balancer.close();
      network?.destroy();
      await server?.stop();
    }, 120_000);

    /** The pods' UIDs and sidecar processes as first started: nothing may restart them. */
    let original: Map<string, { uid: string; pids: (number | undefined)[] }>;

    it("creating Pods in a labelled namespace stores them with the capture and the native sidecar", async () => {
      original = new Map(
        [...pods].map(([name, pod]) => [name, { uid: pod.uid, pids: pod.sidecars.map((s) => s.child.pid) }]),
      );
      for (const name of pods.keys()) {
        const stored = await core.readNamespacedPod({ name, namespace: bookinfo });
        const init = stored.spec?.initContainers ?? [];
        expect(
          init.map((c) => c.name),
          name,
        ).toEqual(["wasmesh-capture", "wasmesh-sidecar"]);
        expect(init[1]?.restartPolicy).toBe("Always");
        expect(stored.metadata?.annotations?.["wasmesh.io/sidecar"]).toBe("injected");
      }
      // The capture sends the app's call to a Service (by its name: its cluster IP) through its sidecar.
      const productpage = pods.get("productpage") as RunningPod;
      const { code, output } = await runIn(network, productpage.netns, APP_UID, [
        process.execPath,
        "-e",
        `fetch("http://reviews:${APP_PORT}/").then(async (r) => console.log(r.status, r.headers.get("x-upstream"), r.headers.get("server")))`,
      ]);
      expect(code, output).toBe(0);
      expect(output).toMatch(/^200 reviews-v[12] envoy/m);
    });

    it("a Route applied as a custom object splits 90/10, then 0/100, with the same pods and sidecars", async () => {
      await applyRoute([90, 10]);
      let seen = new Map<string, number>();
      await until(
        "a 90/10 split",
        async () => {
          seen = await answers(400);
          const v2 = (seen.get("reviews-v2") ?? 0) / 400;
          return v2 > 0.04 && v2 < 0.2;
        },
        60_000,
        500,
      );
      expect((seen.get("reviews-v1") ?? 0) + (seen.get("reviews-v2") ?? 0)).toBe(400);

      await applyRoute([0, 100]);
      await until("everything to v2", async () => (await answers(50)).get("reviews-v2") === 50, 60_000, 500);
      expect(await answers(300)).toEqual(new Map([["reviews-v2", 300]]));

      for (const [name, pod] of pods) {
        const stored = await core.readNamespacedPod({ name, namespace: bookinfo });
        expect(stored.metadata?.uid, name).toBe(original.get(name)?.uid);
        expect(
          pod.sidecars.map((s) => s.child.pid),
          name,
        ).toEqual(original.get(name)?.pids);
        for (const sidecar of pod.sidecars)
          expect(sidecar.child.exitCode, `${name}: ${sidecar.output()}`).toBeNull();
      }
    });

    it("a WasmPlugin's configuration and a new module version reach the sidecars under load, with no failed request", async () => {
      const push = async (version: 1 | 2) => {
        const response = await admin("/v1/modules/tagger", await tagModule(version), "application/wasm");
        expect(response.status, response.text).toBeLessThan(300);
      };
      const plugin = async (tag: string) => {
        const response = await admin(
          "/v1/apply",
          JSON.stringify({
            apiVersion: "wasmesh.io/v1alpha1",
            kind: "WasmPlugin",
            metadata: { name: "tagger" },
            spec: {
              module: "tagger",
              services: [`reviews.${bookinfo}`],
              direction: "inbound",
              configuration: { tag },
            },
          }),
          "application/json",
        );
        expect(response.status, response.text).toBe(200);
      };
      await push(1);
      await plugin("a");
      await until(
        "the plugin on reviews' sidecars",
        // Many connections at once (every worker of both Envoys): the attachment is complete.
        async () => (await loadFromProductpage(200, 400, 16)).recorded.every((v) => v === '1 {"tag":"a"}'),
        60_000,
        500,
      );
      // Attaching the plugin changed reviews' inbound listener: connections opened before keep the
      // old filter chain until Envoy has drained them (the agent's --drain-seconds). Changes of its
      // configuration and module, below, travel as ECDS and apply to every connection at once.
      for (const name of ["reviews-v1", "reviews-v2"])
        await until(
          `${name}'s old inbound listener to be drained`,
          async () => {
            const pod = pods.get(name) as RunningPod;
            const { output } = await runIn(network, pod.netns, 0, [
              process.execPath,
              "-e",
              `fetch("http://127.0.0.1:${ENVOY_ADMIN_PORT}/stats?filter=total_listeners_draining").then(async (r) => console.log(await r.text()))`,
            ]);
            return /total_listeners_draining: 0\b/.test(output);
          },
          30_000,
          250,
        );

      // 30 s of load: the new module, pushed at 8 s, has the rest to reach every worker of both
      // sidecars (the agent fetches it, Envoy compiles it), which takes longer on a loaded machine.
      const load = loadFromProductpage(1_800, 60);
      await new Promise((resolve) => setTimeout(resolve, 3_000));
      await plugin("b");
      await new Promise((resolve) => setTimeout(resolve, 5_000));
      await push(2);
      const result = await load;
      expect(result.errorMessages).toEqual([]);
      expect(result.ok).toBe(1_800);
      // Every answer went through the plugin, in one of its three states: the first ones the first
      // configuration, the last ones the new module with the second.
      const states = ['1 {"tag":"a"}', '1 {"tag":"b"}', '2 {"tag":"b"}'];
      expect(result.recorded.filter((v) => !states.includes(v))).toEqual([]);
      expect(new Set(result.recorded)).toEqual(new Set(states));
      expect(new Set(result.recorded.slice(0, 100))).toEqual(new Set([states[0]]));
      expect(new Set(result.recorded.slice(-100))).toEqual(new Set([states[2]]));
    }, 180_000);

    it("a bad Route is refused by the webhook with its field path, and nothing changes", async () => {
      const { group, version, plural } = resourceOf("Route");
      const refused = await custom
        .createNamespacedCustomObject({
          group,
          version,
          plural,
          namespace: system,
          body: {
            apiVersion: "wasmesh.io/v1alpha1",
            kind: "Route",
            metadata: { name: "broken", namespace: system },
            spec: {
              service: `reviews.${bookinfo}`,
              rules: [
                {
                  name: "split",
                  destinations: [
                    { service: `reviews.${bookinfo}`, subset: { version: "v1" }, weight: 60 },
                    { service: `reviews.${bookinfo}`, subset: { version: "v2" }, weight: 60 },
                  ],
                },
              ],
            },
          },
        })
        .then(
          () => "created",
          (error: { body?: unknown }) => String(error.body),
        );
      expect(refused).toContain("denied the request");
      expect(refused).toMatch(/spec\.rules\[0\]\.destinations/);
      expect(await answers(100)).toEqual(new Map([["reviews-v2", 100]]));
    });

    it("killing the leader replica loses nothing: traffic goes on, and the next change arrives through the other", async () => {
      const leader = replicas.find((r) => r.leader?.isLeader());
      const other = replicas.find((r) => r !== leader && !r.leader?.isLeader());
      if (leader === undefined || other === undefined) throw new Error("no leader among the replicas");
      const load = loadFromProductpage(600, 60);
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      // The Service stops sending to the pod as it goes.
      apiBalancer.setBackends([`127.0.0.1:${other.httpPort}`]);
      xdsBalancer.setBackends([`127.0.0.1:${other.xdsPort}`]);
      await leader.close();
      const result = await load;
      expect(result.errorMessages).toEqual([]);
      expect(result.ok).toBe(600);
      await until("the other replica to lead", () => other.leader?.isLeader() === true, 20_000);

      // The sidecars reconnect to the remaining replica, and a change reaches them from it.
      await applyRoute([100, 0]);
      await until("everything to v1", async () => (await answers(50)).get("reviews-v1") === 50, 90_000, 500);
      for (const [name, pod] of pods) {
        expect(
          pod.sidecars.map((s) => s.child.pid),
          name,
        ).toEqual(original.get(name)?.pids);
        for (const sidecar of pod.sidecars)
          expect(sidecar.child.exitCode, `${name}: ${sidecar.output()}`).toBeNull();
      }
    }, 180_000);
  },
);
