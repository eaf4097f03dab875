// Leader election on a coordination.k8s.io/v1 Lease (control-plane/kubernetes/leader.ts, issue 12 §1
// "Several replicas") against the real API server: electors in this process play replicas. Short
// durations (a 3 s lease, a 2 s renew deadline, a 0.5 s retry period) keep the file quick; the
// bounds on waits are generous (15 s), there for a test that would otherwise hang, not to measure.
//
// Throughout, a monitor checks the property that matters most: never two leaders at once. It is
// checked at every transition (onStartedLeading while another has not called onStoppedLeading) and
// by sampling every elector's isLeader() every few milliseconds.
import { connect, createServer, type Server, type Socket } from "node:net";
import * as k8s from "@kubernetes/client-node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type LeaderElection, startLeaderElection } from "../../control-plane/kubernetes/leader.ts";
import { type ApiServer, startApiServer } from "../support/kubernetes.ts";
import { until } from "../support/wait.ts";

let server: ApiServer;
let coordination: k8s.CoordinationV1Api;

beforeAll(async () => {
  server = await startApiServer();
  coordination = server.kubeConfig.makeApiClient(k8s.CoordinationV1Api);
}, 120_000);

afterAll(async () => {
  await server?.stop();
});

const LEASE = "wasmesh-control-plane-leader";
const FAST = { leaseDurationSeconds: 3, renewDeadlineSeconds: 2, retryPeriodSeconds: 0.5 };
const MICRO_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/;

/** A namespace of its own per test: without a controller manager, deleted namespaces never go away. */
async function freshNamespace(prefix: string): Promise<string> {
  const name = `${prefix}-${Math.random().toString(36).slice(2, 8)}`;
  await server.kubeConfig.makeApiClient(k8s.CoreV1Api).createNamespace({ body: { metadata: { name } } });
  return name;
}

interface Replica {
  id: string;
  election: LeaderElection;
  logs: string[];
  newLeaders: string[];
}

// The monitor: every replica started by a test, the transitions in order, and any moment two led.
let replicas: Replica[] = [];
let events: string[] = [];
let violations: string[] = [];
let leading = new Set<string>();
let sampler: ReturnType<typeof setInterval> | undefined;

function startSampling(): void {
  sampler ??= setInterval(() => {
    const leaders = replicas.filter((r) => r.election.isLeader()).map((r) => r.id);
    if (leaders.length > 1) violations.push(`sampled: ${leaders.join(" and ")} both lead`);
  }, 5);
}

afterEach(async () => {
  clearInterval(sampler);
  sampler = undefined;
  await Promise.all(replicas.map((r) => r.election.stop()));
  replicas = [];
  events = [];
  violations = [];
  leading = new Set();
});

function replica(
  id: string,
  namespace: string,
  timing: Partial<typeof FAST> = FAST,
  kubeConfig: k8s.KubeConfig = server.kubeConfig,
): Replica {
  const logs: string[] = [];
  const newLeaders: string[] = [];
  const election = startLeaderElection({
    kubeConfig,
    namespace,
    name: LEASE,
    identity: id,
    ...timing,
    onStartedLeading: () => {
      if (leading.size > 0) violations.push(`${id} started leading while ${[...leading].join(", ")} led`);
      leading.add(id);
      events.push(`${id} started`);
    },
    onStoppedLeading: () => {
      leading.delete(id);
      events.push(`${id} stopped`);
    },
    onNewLeader: (identity) => newLeaders.push(identity),
    log: (line) => logs.push(line),
  });
  const started = { id, election, logs, newLeaders };
  replicas.push(started);
  startSampling();
  return started;
}

async function readLease(namespace: string): Promise<k8s.V1Lease> {
  return coordination.readNamespacedLease({ name: LEASE, namespace });
}

async function leaderOf(...candidates: Replica[]): Promise<Replica> {
  let found: Replica | undefined;
  await until(
    () => `one of ${candidates.map((c) => c.id).join(", ")} to lead; events: ${events.join("; ")}`,
    () => {
      found = candidates.find((c) => c.election.isLeader());
      return found !== undefined;
    },
    15_000,
  );
  return found as Replica;
}

/** A TCP relay to the API server that can be cut as a network partition would: requests hang, unanswered. */
async function partitionableProxy(target: string): Promise<{
  kubeConfig: k8s.KubeConfig;
  cut(): void;
  heal(): void;
  close(): Promise<void>;
}> {
  const { hostname, port } = new URL(target);
  const sockets = new Set<Socket>();
  const pairs: Array<[Socket, Socket]> = [];
  let partitioned = false;
  const blackhole = (socket: Socket) => {
    socket.removeAllListeners("data");
    socket.on("data", () => {});
    socket.resume();
  };
  const proxy: Server = createServer((client) => {
    sockets.add(client);
    client.on("error", () => {});
    client.on("close", () => sockets.delete(client));
    if (partitioned) return blackhole(client);
    const upstream = connect(Number(port), hostname);
    sockets.add(upstream);
    upstream.on("error", () => client.destroy());
    upstream.on("close", () => sockets.delete(upstream));
    client.on("close", () => upstream.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
    pairs.push([client, upstream]);
  });
  await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
  const address = proxy.address();
  if (address === null || typeof address === "string") throw new Error("the proxy has no port");
  const kubeConfig = new k8s.KubeConfig();
  kubeConfig.loadFromOptions({
    clusters: [{ name: "proxied", server: `https://127.0.0.1:${address.port}`, skipTLSVerify: true }],
    users: [{ name: "admin", token: server.token }],
    contexts: [{ name: "proxied", cluster: "proxied", user: "admin" }],
    currentContext: "proxied",
  });
  return {
    kubeConfig,
    cut() {
      partitioned = true;
      for (const [client, upstream] of pairs.splice(0)) {
        client.unpipe(upstream);
        upstream.unpipe(client);
        blackhole(client);
        blackhole(upstream);
      }
    },
    heal() {
      partitioned = false;
      // The connections that went dark stay dark, as after a real partition: clients reconnect.
      for (const socket of sockets) socket.destroy();
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
    },
  };
}

describe("leader election on a Lease", () => {
  it("of two replicas exactly one leads, the Lease names it and it renews", async () => {
    const namespace = await freshNamespace("leader-one");
    const a = replica("replica-a", namespace);
    const b = replica("replica-b", namespace);
    const leader = await leaderOf(a, b);
    const follower = leader === a ? b : a;
    await until(
      `${follower.id} to see ${leader.id} lead`,
      () => follower.election.leader() === leader.id,
      15_000,
    );
    expect(follower.election.isLeader()).toBe(false);
    expect(leader.election.leader()).toBe(leader.id);
    expect(follower.newLeaders).toEqual([leader.id]);
    expect(events).toEqual([`${leader.id} started`]);

    const first = await readLease(namespace);
    expect(first.spec?.holderIdentity).toBe(leader.id);
    expect(first.spec?.leaseDurationSeconds).toBe(3);
    expect(first.spec?.leaseTransitions).toBe(0);
    // MicroTime on the wire: RFC 3339 with six fractional digits (the client hands it back as received).
    expect(String(first.spec?.acquireTime)).toMatch(MICRO_TIME);
    expect(String(first.spec?.renewTime)).toMatch(MICRO_TIME);

    // The leader renews: renewTime moves on, the holder, acquireTime and the count stay.
    let renewed: k8s.V1Lease | undefined;
    await until(
      "the leader to renew the Lease",
      async () => {
        renewed = await readLease(namespace);
        return String(renewed.spec?.renewTime) !== String(first.spec?.renewTime);
      },
      15_000,
      100,
    );
    expect(renewed?.spec?.holderIdentity).toBe(leader.id);
    expect(String(renewed?.spec?.acquireTime)).toBe(String(first.spec?.acquireTime));
    expect(renewed?.spec?.leaseTransitions).toBe(0);
    expect(leader.election.isLeader()).toBe(true);
    expect(follower.election.isLeader()).toBe(false);
    expect(violations).toEqual([]);
  });

  it("stop() releases the Lease: the other replica takes over at once, not after the lease duration", async () => {
    const namespace = await freshNamespace("leader-release");
    // A 60 s lease: without the release the other could not lead within the 15 s waited below.
    const slow = { leaseDurationSeconds: 60, renewDeadlineSeconds: 40, retryPeriodSeconds: 0.5 };
    const a = replica("replica-a", namespace, slow);
    await leaderOf(a);
    const b = replica("replica-b", namespace, slow);
    await until("replica-b to see replica-a lead", () => b.election.leader() === "replica-a", 15_000);

    await a.election.stop();
    expect(a.election.isLeader()).toBe(false);
    await leaderOf(b);
    expect(a.logs.join("\n")).toContain("replica-a released");

    const lease = await readLease(namespace);
    expect(lease.spec?.holderIdentity).toBe("replica-b");
    expect(lease.spec?.leaseTransitions).toBe(1);
    expect(lease.spec?.leaseDurationSeconds).toBe(60);
    expect(events).toEqual(["replica-a started", "replica-a stopped", "replica-b started"]);
    expect(violations).toEqual([]);
  });

  it("a leader that dies without releasing is replaced once its lease expires, one transition more", async () => {
    const namespace = await freshNamespace("leader-dies");
    const a = replica("replica-a", namespace);
    await leaderOf(a);
    const b = replica("replica-b", namespace);
    await until("replica-b to see replica-a lead", () => b.election.leader() === "replica-a", 15_000);
    const before = await readLease(namespace);

    await a.election.stop({ release: false });
    // Nothing was released: the Lease still names the dead replica.
    expect((await readLease(namespace)).spec?.holderIdentity).toBe("replica-a");
    await leaderOf(b);

    const after = await readLease(namespace);
    expect(after.spec?.holderIdentity).toBe("replica-b");
    expect(after.spec?.leaseTransitions).toBe((before.spec?.leaseTransitions ?? 0) + 1);
    expect(String(after.spec?.acquireTime)).not.toBe(String(before.spec?.acquireTime));
    expect(b.newLeaders).toEqual(["replica-a", "replica-b"]);
    expect(violations).toEqual([]);
  });

  it("a leader cut off from the API server steps down before another takes over; never two leaders", async () => {
    const namespace = await freshNamespace("leader-partition");
    const proxy = await partitionableProxy(server.url);
    try {
      const a = replica("replica-a", namespace, FAST, proxy.kubeConfig);
      await leaderOf(a);
      const b = replica("replica-b", namespace);
      await until("replica-b to see replica-a lead", () => b.election.leader() === "replica-a", 15_000);

      // Its requests now hang unanswered: it must give up on its own at the renew deadline.
      proxy.cut();
      await leaderOf(b);
      expect(events).toEqual(["replica-a started", "replica-a stopped", "replica-b started"]);
      expect(a.election.isLeader()).toBe(false);
      expect(a.logs.join("\n")).toContain("no renewal within the renew deadline");
      // Its hanging request was aborted at the deadline; the failure is logged once it settles (which,
      // on a loaded machine, may be after the other replica already leads).
      await until("replica-a to log its aborted request", () =>
        a.logs.join("\n").includes("no answer in time; retrying"),
      );

      // Back on the network, it follows the new leader and does not take the Lease back.
      proxy.heal();
      await until("replica-a to see replica-b lead", () => a.election.leader() === "replica-b", 15_000);
      expect(a.election.isLeader()).toBe(false);
      expect(b.election.isLeader()).toBe(true);
      expect((await readLease(namespace)).spec?.holderIdentity).toBe("replica-b");
      expect(violations).toEqual([]);
    } finally {
      await Promise.all(replicas.map((r) => r.election.stop()));
      await proxy.close();
    }
  });

  it("respects a Lease another holder keeps renewing, though its clock is an hour behind", async () => {
    const namespace = await freshNamespace("leader-foreign");
    // Another holder whose clock is an hour slow: by the renewTime it writes, its Lease looks long
    // expired to anyone who compared it with their own clock.
    const skew = -3600_000;
    const stamp = () => new k8s.V1MicroTime(Date.now() + skew);
    let lease = await coordination.createNamespacedLease({
      namespace,
      body: {
        metadata: { name: LEASE },
        spec: {
          holderIdentity: "other-controller",
          leaseDurationSeconds: 3,
          acquireTime: stamp(),
          renewTime: stamp(),
          leaseTransitions: 4,
        },
      },
    });
    const a = replica("replica-a", namespace);
    const b = replica("replica-b", namespace);
    await until(
      "both replicas to see other-controller hold the Lease",
      () => a.election.leader() === "other-controller" && b.election.leader() === "other-controller",
      15_000,
    );

    // It renews every 0.5 s for over two lease durations. Each renewal is conditional on the
    // resourceVersion it read back last, so one replica writing the Lease in between fails it (409).
    for (let renewal = 0; renewal < 16; renewal++) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      lease = await coordination.replaceNamespacedLease({
        name: LEASE,
        namespace,
        body: { ...lease, spec: { ...lease.spec, renewTime: stamp() } },
      });
    }
    expect(lease.spec?.holderIdentity).toBe("other-controller");
    expect(a.election.isLeader() || b.election.isLeader()).toBe(false);
    expect(events).toEqual([]);

    // It stops renewing: a replica takes over after the lease duration, one transition more.
    const leader = await leaderOf(a, b);
    const taken = await readLease(namespace);
    expect(taken.spec?.holderIdentity).toBe(leader.id);
    expect(taken.spec?.leaseTransitions).toBe(5);
    expect(violations).toEqual([]);
  });

  it("takes over from a holder that stopped renewing though its clock is an hour ahead", async () => {
    const namespace = await freshNamespace("leader-ahead");
    // A renewTime an hour in the future: by the remote clock the Lease looks live for an hour.
    const future = new k8s.V1MicroTime(Date.now() + 3600_000);
    await coordination.createNamespacedLease({
      namespace,
      body: {
        metadata: { name: LEASE },
        spec: { holderIdentity: "gone", leaseDurationSeconds: 3, acquireTime: future, renewTime: future },
      },
    });
    const a = replica("replica-a", namespace);
    await until("replica-a to see the old holder", () => a.election.leader() === "gone", 15_000);
    await leaderOf(a);
    const taken = await readLease(namespace);
    expect(taken.spec?.holderIdentity).toBe("replica-a");
    expect(taken.spec?.leaseTransitions).toBe(1);
  });

  it("a takeover computed from a stale read is refused (409): it does not lead, and follows the winner", async () => {
    const namespace = await freshNamespace("leader-race");
    const stamp = () => new k8s.V1MicroTime(Date.now());
    await coordination.createNamespacedLease({
      namespace,
      body: {
        metadata: { name: LEASE },
        spec: { holderIdentity: "gone", leaseDurationSeconds: 3, acquireTime: stamp(), renewTime: stamp() },
      },
    });
    // The interleaving is forced: replica-a's client, just before it sends its first write (its
    // takeover, once "gone" has expired), lets another controller take the Lease. replica-a's write
    // was computed from the Lease it read before; the API server decides.
    let intruder: k8s.V1Lease | undefined;
    const writeRefusals: number[] = [];
    const kubeConfig = new k8s.KubeConfig();
    kubeConfig.loadFromString(server.kubeConfig.exportConfig());
    const makeApiClient = kubeConfig.makeApiClient.bind(kubeConfig);
    kubeConfig.makeApiClient = ((type: Parameters<typeof makeApiClient>[0]) => {
      const api = makeApiClient(type);
      if (api instanceof k8s.CoordinationV1Api) {
        const replace = api.replaceNamespacedLease.bind(api);
        api.replaceNamespacedLease = async (param, options) => {
          if (!intruder) {
            const current = await readLease(namespace);
            intruder = await coordination.replaceNamespacedLease({
              name: LEASE,
              namespace,
              body: {
                ...current,
                spec: {
                  ...current.spec,
                  holderIdentity: "intruder",
                  acquireTime: stamp(),
                  renewTime: stamp(),
                  leaseTransitions: (current.spec?.leaseTransitions ?? 0) + 1,
                },
              },
            });
          }
          return replace(param, options).catch((error: unknown) => {
            writeRefusals.push(error instanceof k8s.ApiException ? error.code : -1);
            throw error;
          });
        };
      }
      return api;
    }) as typeof kubeConfig.makeApiClient;

    const a = replica("replica-a", namespace, FAST, kubeConfig);
    await until(
      "replica-a to see the intruder hold the Lease",
      () => a.election.leader() === "intruder",
      15_000,
    );
    // The intruder keeps it for over two lease durations; each renewal is conditional, so a write
    // of replica-a's in between would fail it.
    for (let renewal = 0; renewal < 14; renewal++) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      const held: k8s.V1Lease = intruder as k8s.V1Lease;
      intruder = await coordination.replaceNamespacedLease({
        name: LEASE,
        namespace,
        body: { ...held, spec: { ...held.spec, renewTime: stamp() } },
      });
    }
    expect(intruder?.spec?.holderIdentity).toBe("intruder");
    expect(writeRefusals).toEqual([409]);
    expect(events).toEqual([]);
    expect(a.election.isLeader()).toBe(false);
    // Then it stops renewing, and replica-a takes over as usual.
    await leaderOf(a);
    expect((await readLease(namespace)).spec?.leaseTransitions).toBe(2);
  });

  it("logs and retries what the API server refuses, and leads once RBAC allows the documented verbs", async () => {
    const namespace = await freshNamespace("leader-rbac");
    // The admin impersonating a user with no role yet: every call is refused (403).
    const asElector = new k8s.KubeConfig();
    asElector.loadFromOptions({
      clusters: [{ name: "test", server: server.url, skipTLSVerify: true }],
      users: [{ name: "elector", token: server.token, impersonateUser: "wasmesh-elector" }],
      contexts: [{ name: "test", cluster: "test", user: "elector" }],
      currentContext: "test",
    });
    const a = replica("replica-a", namespace, FAST, asElector);
    await until("the refusal to be logged", () => a.logs.some((line) => line.includes("HTTP 403")), 15_000);
    expect(a.election.isLeader()).toBe(false);

    // What control-plane/kubernetes/leader.ts says the control plane needs: get, create, update on leases.
    const rbac = server.kubeConfig.makeApiClient(k8s.RbacAuthorizationV1Api);
    await rbac.createNamespacedRole({
      namespace,
      body: {
        metadata: { name: "leader-election" },
        rules: [
          { apiGroups: ["coordination.k8s.io"], resources: ["leases"], verbs: ["get", "create", "update"] },
        ],
      },
    });
    await rbac.createNamespacedRoleBinding({
      namespace,
      body: {
        metadata: { name: "leader-election" },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "leader-election" },
        subjects: [{ apiGroup: "rbac.authorization.k8s.io", kind: "User", name: "wasmesh-elector" }],
      },
    });
    await leaderOf(a);
    // It renews with those verbs alone, and releases with them.
    const first = await readLease(namespace);
    await until(
      "the leader to renew the Lease",
      async () => String((await readLease(namespace)).spec?.renewTime) !== String(first.spec?.renewTime),
      15_000,
      100,
    );
    await a.election.stop();
    expect((await readLease(namespace)).spec?.holderIdentity).toBe("");
  });

  it("refuses timings that could let two replicas lead at once, naming the field", () => {
    const base = {
      kubeConfig: server.kubeConfig,
      namespace: "default",
      name: LEASE,
      identity: "x",
      onStartedLeading: () => {},
      onStoppedLeading: () => {},
      log: () => {},
    };
    expect(() =>
      startLeaderElection({ ...base, leaseDurationSeconds: 10, renewDeadlineSeconds: 10 }),
    ).toThrow(/renewDeadlineSeconds must be less than leaseDurationSeconds/);
    expect(() => startLeaderElection({ ...base, renewDeadlineSeconds: 2, retryPeriodSeconds: 2 })).toThrow(
      /renewDeadlineSeconds must exceed 1.2 × retryPeriodSeconds/,
    );
    expect(() => startLeaderElection({ ...base, leaseDurationSeconds: -1 })).toThrow(/leaseDurationSeconds/);
    expect(() => startLeaderElection({ ...base, identity: "" })).toThrow(/identity is required/);
  });
});
