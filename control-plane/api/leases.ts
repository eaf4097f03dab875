// Workload leases (issue 10): a Workload with spec.leaseSeconds stays while its data-plane agent
// renews its lease (PUT /v1/workloads/<name>/lease), and is deleted when the lease lapses, so the
// workload of an agent that died leaves the mesh after a bounded time. The delete is an ordinary
// write (the writer: one revision, a push, the endpoint gone from every sidecar). Renewals live in
// memory, not in the store: a renewal is no revision and pushes nothing. So that a control plane
// restart removes nothing alive, every leased Workload found at start gets a whole lease (grace),
// as does every leased Workload written since (registering is a sign of life).
import type { MetricsRegistry } from "../metrics.ts";
import type { ResourceStore, StoredResource, WatchEvent } from "../store/index.ts";
import { ConflictError } from "../store/index.ts";
import { ApiError, notFound } from "./errors.ts";
import type { Writer } from "./writer.ts";

const KIND = "Workload";

export interface LeaseKeeperOptions {
  store: ResourceStore;
  /** Deletes lapsed Workloads as any other write does. */
  writer: Writer;
  /** Where wasmesh_workload_leases and wasmesh_workload_lease_expirations_total are registered. */
  metrics?: MetricsRegistry;
  log?: (line: string) => void;
  /** The clock, in milliseconds since the epoch (default Date.now): tests move it instead of waiting. */
  now?: () => number;
  /** How often lapsed leases are looked for (default 1000 ms; leases are 5 s or longer). */
  sweepIntervalMs?: number;
  /**
   * Whether this process sweeps now (default always). With several replicas over one store, only
   * the leader does, so that one lapse is one delete (kubernetes/leader.ts).
   */
  sweeps?: () => boolean;
}

export interface LeaseKeeper {
  /**
   * Gives every leased Workload in the store a whole lease, follows the store's writes and starts
   * the sweeper.
   */
  start(): Promise<void>;
  /**
   * Renews Workload `name`'s lease for `ttlSeconds` (default its spec.leaseSeconds) from now, and
   * says until when. 404 if there is no such Workload, 409 if it has no spec.leaseSeconds.
   */
  renew(name: string, ttlSeconds?: number): Promise<Date>;
  /** A Workload was written (even unchanged): a leased one gets a whole lease from now. */
  written(workload: StoredResource): void;
  /** Deletes the Workloads whose lease has lapsed; resolves with their names. Run by the sweeper. */
  sweep(): Promise<string[]>;
  /** Stops the sweeper and stops following the store. */
  close(): Promise<void>;
}

interface Lease {
  seconds: number;
  expiresAt: number;
  /** The resourceVersion the lease is for: the delete applies only over it. */
  version: string;
  /** A delete of it failed and was logged: said once, tried again at every sweep. */
  failed?: boolean;
}

/** spec.leaseSeconds of a stored Workload, if it has one. */
function leaseSecondsOf(workload: StoredResource): number | undefined {
  const seconds = (workload.spec as { leaseSeconds?: unknown } | null)?.leaseSeconds;
  return typeof seconds === "number" ? seconds : undefined;
}

export function createLeaseKeeper(options: LeaseKeeperOptions): LeaseKeeper {
  const { store, writer } = options;
  const log = options.log ?? ((line: string) => console.log(line));
  const now = options.now ?? Date.now;
  const sweepIntervalMs = options.sweepIntervalMs ?? 1000;
  const leases = new Map<string, Lease>();
  const expirations = options.metrics?.counter(
    "wasmesh_workload_lease_expirations_total",
    "Leased Workloads deleted because their lease was not renewed in time",
  );
  options.metrics
    ?.gauge("wasmesh_workload_leases", "Workloads with a lease (spec.leaseSeconds), read at scrape")
    .collect(() => [[{}, leases.size]]);

  /** Follows `workload` as stored: a whole lease from now if it is leased, none otherwise. */
  function track(workload: StoredResource): Lease | undefined {
    const name = workload.metadata.name;
    const seconds = leaseSecondsOf(workload);
    if (seconds === undefined) {
      leases.delete(name);
      return undefined;
    }
    const lease = { seconds, expiresAt: now() + seconds * 1000, version: workload.metadata.resourceVersion };
    leases.set(name, lease);
    return lease;
  }

  /** Store events are handled in order, one at a time (a put needs the resource read back). */
  let following: Promise<void> = Promise.resolve();
  function follow(event: WatchEvent): void {
    for (const change of event.changes) {
      if (change.kind !== KIND) continue;
      // Synchronously: a renewal right after a delete must find no lease.
      if (change.op === "delete") leases.delete(change.name);
    }
    const puts = event.changes.filter((c) => c.kind === KIND && c.op === "put");
    if (puts.length === 0) return;
    following = following.then(async () => {
      for (const { name } of puts) {
        try {
          const workload = await store.get(KIND, name);
          if (workload === undefined) leases.delete(name);
          else track(workload);
        } catch (error) {
          log(`wasmesh: cannot read Workload '${name}' for its lease: ${(error as Error).message}`);
        }
      }
    });
  }

  async function expire(name: string, lease: Lease): Promise<boolean> {
    // A renewal that arrives while this delete waits for the write lock comes too late: the
    // agent's next renewal then gets a 404, and it registers again.
    try {
      await writer.write([{ op: "delete", kind: KIND, name, expectedVersion: lease.version }]);
    } catch (error) {
      // Rewritten or deleted meanwhile: the store's events bring the lease up to date.
      if (error instanceof ConflictError || (error instanceof ApiError && error.status === 404)) return false;
      // E.g. the store cannot be written now: the next sweep tries again.
      if (!lease.failed) {
        log(
          `wasmesh: cannot delete Workload '${name}', whose lease lapsed (trying again): ${(error as Error).message}`,
        );
      }
      lease.failed = true;
      return false;
    }
    if (leases.get(name) === lease) leases.delete(name);
    expirations?.inc();
    const lapsed = new Date(lease.expiresAt).toISOString();
    log(
      `wasmesh: deleted Workload '${name}': its lease (${lease.seconds} s) was not renewed and lapsed at ${lapsed}`,
    );
    return true;
  }

  /** Sweeps run one after the other: a call during one gets a whole sweep of its own after it. */
  let sweeps: Promise<unknown> = Promise.resolve();
  let sweeping = false;
  function sweep(): Promise<string[]> {
    const run = sweeps.then(sweepOnce);
    sweeps = run.catch(() => undefined);
    return run;
  }
  async function sweepOnce(): Promise<string[]> {
    await following;
    const deleted: string[] = [];
    for (const [name, lease] of [...leases]) {
      // Looked at again right before each delete: a renewal may have come in meanwhile.
      if (leases.get(name) !== lease || lease.expiresAt > now()) continue;
      if (await expire(name, lease)) deleted.push(name);
    }
    return deleted;
  }

  let timer: NodeJS.Timeout | undefined;
  let unwatch: (() => void) | undefined;

  return {
    async start() {
      unwatch = store.watch(follow);
      for (const workload of await store.list(KIND)) track(workload);
      timer = setInterval(() => {
        if (sweeping) return; // a slow sweep (a write waiting for the lock) is not queued behind
        if (options.sweeps !== undefined && !options.sweeps()) return;
        sweeping = true;
        sweep()
          .catch((error: unknown) => log(`wasmesh: lease sweep failed: ${(error as Error).stack}`))
          .finally(() => {
            sweeping = false;
          });
      }, sweepIntervalMs);
      // Pending sweeps never keep the process alive.
      timer.unref();
    },

    async renew(name, ttlSeconds) {
      await following;
      let lease = leases.get(name);
      if (lease === undefined) {
        const workload = await store.get(KIND, name);
        if (workload === undefined) throw notFound(`Workload '${name}' does not exist`);
        lease = track(workload);
        if (lease === undefined) {
          throw new ApiError(
            409,
            "conflict",
            `Workload '${name}' has no spec.leaseSeconds: it is not leased (set spec.leaseSeconds to have its agent keep it alive)`,
            [{ kind: KIND, name, path: "spec.leaseSeconds", message: "is not set" }],
          );
        }
      }
      lease.expiresAt = now() + (ttlSeconds ?? lease.seconds) * 1000;
      return new Date(lease.expiresAt);
    },

    written(workload) {
      track(workload);
    },

    sweep,

    async close() {
      if (timer !== undefined) clearInterval(timer);
      timer = undefined;
      unwatch?.();
      unwatch = undefined;
      await sweeps;
      await following;
    },
  };
}
