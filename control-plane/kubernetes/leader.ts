// Leader election for the control plane's Kubernetes mode (issue 12, §1, "Several replicas"): every
// replica serves xDS from its own watches, but the work that must happen once (certificate signing
// state, status updates, KV publishing) is done by the one replica holding a coordination.k8s.io/v1
// Lease. The algorithm is client-go's tools/leaderelection with its LeaseLock, in our own code:
//
// - A candidate reads the Lease every retry period. It takes it when there is none, when nobody
//   holds it (holderIdentity empty: released), or when the record has not changed for the lease's
//   duration *as observed here*: expiry is measured from the moment this replica last saw the record
//   change, on its own monotonic clock, never from the renewTime written by another machine, so the
//   replicas' clocks need not agree (only tick at about the same rate). A replica that starts next
//   to a held Lease therefore waits one full lease duration before it may take it.
// - Every write carries the resourceVersion it was computed from (optimistic concurrency): of two
//   candidates writing at once, one gets 409 Conflict and simply reads again next round.
// - The leader renews every retry period. It believes it leads only until renewDeadline after it
//   sent its last successful write, and steps down (onStoppedLeading) when that passes, whether or
//   not its requests ever came back. Another replica saw that write only after it was sent and waits
//   leaseDuration (> renewDeadline) from then, so the old leader has stopped before a new one starts.
// - Taking the Lease from another holder (or after a release) increments leaseTransitions; the
//   holder keeps acquireTime and the count when it renews.
// - stop() steps down and then releases the Lease (holderIdentity emptied, as client-go's
//   ReleaseOnCancel does), so that another replica takes over at once rather than after the lease
//   duration; onStoppedLeading has returned before the release is written.
// - Errors from the API server (network, timeouts, 5xx, 403) are logged and retried; nothing here
//   throws into the process after startLeaderElection returned.
//
// A replica that lost the Lease (its renewals failed) becomes a candidate again, so onStartedLeading
// and onStoppedLeading may alternate over a process's life.
//
// RBAC: the control plane's service account needs get, create and update on leases
// (coordination.k8s.io) in its namespace.
import * as k8s from "@kubernetes/client-node";
import { describeKubeError } from "./errors.ts";

export const DEFAULT_LEASE_DURATION_SECONDS = 15;
export const DEFAULT_RENEW_DEADLINE_SECONDS = 10;
export const DEFAULT_RETRY_PERIOD_SECONDS = 2;
/** A candidate waits retryPeriod × (1 + up to this) between attempts, so that replicas spread out (client-go's JitterFactor). */
const JITTER_FACTOR = 1.2;

export interface LeaderElectionOptions {
  /** The control plane's access to the API server (in-cluster, or --kubeconfig). */
  kubeConfig: k8s.KubeConfig;
  /** The Lease's namespace (the control plane's own). */
  namespace: string;
  /** The Lease's name, e.g. "wasmesh-control-plane-leader". */
  name: string;
  /** This replica's identity, unique among the replicas (e.g. its pod name). */
  identity: string;
  /** How long a holder that stops renewing keeps the Lease (as others observe it); default 15. */
  leaseDurationSeconds?: number;
  /** How long the leader keeps leading without a successful renewal; default 10, below the duration. */
  renewDeadlineSeconds?: number;
  /** How often candidates try and the leader renews; default 2, below the renew deadline. */
  retryPeriodSeconds?: number;
  /** This replica became the leader. An exception (or a rejected promise) is logged. */
  onStartedLeading(): void | Promise<void>;
  /** This replica is no longer the leader: stop the leader's work now. Awaited before the Lease is released or retaken. */
  onStoppedLeading(): void | Promise<void>;
  /** The Lease names a new holder (this replica included). */
  onNewLeader?(identity: string): void;
  log: (line: string) => void;
}

export interface LeaderElection {
  /** Whether this replica leads now: it holds the Lease and its last renewal is within the renew deadline. */
  isLeader(): boolean;
  /** The holder as last observed (undefined: none seen, or the Lease is released). */
  leader(): string | undefined;
  /**
   * Stops electing: steps down if leading (onStoppedLeading), then releases the Lease so that another
   * replica takes over at once. `{ release: false }` leaves the Lease as it is, as a replica that
   * died would (others take over after the lease duration).
   */
  stop(options?: { release?: boolean }): Promise<void>;
}

/** The part of a Lease that says who leads; it changing is what "the holder renewed" means. */
interface LeaseRecord {
  holderIdentity: string;
  leaseDurationSeconds: number | undefined;
  acquireTime: string | undefined;
  renewTime: string | undefined;
  leaseTransitions: number;
}

const monotonic = () => performance.now();

/** A MicroTime as the API server wants it: RFC 3339 with six fractional digits. */
const microTime = () => new k8s.V1MicroTime(Date.now());

/** The client deserializes MicroTime as the string it received; a Date (ours) as its serialized form. */
function timeText(value: unknown): string | undefined {
  if (value instanceof Date) return value.toISOString();
  return typeof value === "string" ? value : undefined;
}

/** A time read back from the Lease, in ms, if it parses. */
function keptTime(text: string | undefined): number | undefined {
  const ms = text === undefined ? Number.NaN : Date.parse(text);
  return Number.isNaN(ms) ? undefined : ms;
}

function recordOf(lease: k8s.V1Lease): LeaseRecord {
  const spec = lease.spec ?? {};
  return {
    holderIdentity: spec.holderIdentity ?? "",
    leaseDurationSeconds: spec.leaseDurationSeconds,
    acquireTime: timeText(spec.acquireTime),
    renewTime: timeText(spec.renewTime),
    leaseTransitions: spec.leaseTransitions ?? 0,
  };
}

const sameRecord = (a: LeaseRecord, b: LeaseRecord) =>
  a.holderIdentity === b.holderIdentity &&
  a.leaseDurationSeconds === b.leaseDurationSeconds &&
  a.acquireTime === b.acquireTime &&
  a.renewTime === b.renewTime &&
  a.leaseTransitions === b.leaseTransitions;

const statusOf = (error: unknown) => (error instanceof k8s.ApiException ? error.code : undefined);

/** Client options that abort the request on `signal` (the client has no timeout of its own). */
function abortingOn(signal: AbortSignal): k8s.ConfigurationOptions {
  return {
    middleware: [
      {
        pre: (context) => {
          context.setSignal(signal);
          return new k8s.Observable(Promise.resolve(context));
        },
        post: (context) => new k8s.Observable(Promise.resolve(context)),
      },
    ],
    middlewareMergeStrategy: "append",
  };
}

function checkOptions(options: LeaderElectionOptions): { leaseMs: number; renewMs: number; retryMs: number } {
  const seconds = (field: string, value: number) => {
    if (!Number.isFinite(value) || value <= 0)
      throw new Error(`leader election: ${field} must be a positive number of seconds, not ${value}`);
    return value * 1000;
  };
  const leaseMs = seconds(
    "leaseDurationSeconds",
    options.leaseDurationSeconds ?? DEFAULT_LEASE_DURATION_SECONDS,
  );
  const renewMs = seconds(
    "renewDeadlineSeconds",
    options.renewDeadlineSeconds ?? DEFAULT_RENEW_DEADLINE_SECONDS,
  );
  const retryMs = seconds("retryPeriodSeconds", options.retryPeriodSeconds ?? DEFAULT_RETRY_PERIOD_SECONDS);
  // The safety argument at the top of the file needs the leader to give up before others may take over.
  if (renewMs >= leaseMs)
    throw new Error("leader election: renewDeadlineSeconds must be less than leaseDurationSeconds");
  if (retryMs * JITTER_FACTOR >= renewMs)
    throw new Error(
      `leader election: renewDeadlineSeconds must exceed ${JITTER_FACTOR} × retryPeriodSeconds`,
    );
  if (!Number.isInteger(options.leaseDurationSeconds ?? DEFAULT_LEASE_DURATION_SECONDS))
    throw new Error(
      "leader election: leaseDurationSeconds must be a whole number (the Lease stores seconds)",
    );
  for (const [field, value] of [
    ["namespace", options.namespace],
    ["name", options.name],
    ["identity", options.identity],
  ] as const) {
    if (!value) throw new Error(`leader election: ${field} is required`);
  }
  return { leaseMs, renewMs, retryMs };
}

/** Starts campaigning for the Lease `namespace/name` in the background; see the top of this file. */
export function startLeaderElection(options: LeaderElectionOptions): LeaderElection {
  const { leaseMs, renewMs, retryMs } = checkOptions(options);
  const { namespace, name, identity, log } = options;
  const leaseSeconds = leaseMs / 1000;
  const api = options.kubeConfig.makeApiClient(k8s.CoordinationV1Api);

  /** The Lease as last read or written, and when (monotonic) its record last changed. */
  let observed: { lease: k8s.V1Lease; record: LeaseRecord; changedAt: number } | undefined;
  let reportedLeader: string | undefined;
  /** While leading: the monotonic time until which this replica may act as the leader. */
  let leadingUntil = 0;
  let leading = false;
  let deadlineTimer: ReturnType<typeof setTimeout> | undefined;
  /** When this replica last stepped down: an answer to a request sent before then does not make it lead again. */
  let steppedDownAt = Number.NEGATIVE_INFINITY;
  /** onStoppedLeading's run, awaited before this replica may lead again or release. */
  let steppingDown: Promise<void> = Promise.resolve();
  let lastError: string | undefined;

  const stopping = new AbortController();
  let wake: (() => void) | undefined;

  const runCallback = async (what: string, callback: () => void | Promise<void>) => {
    try {
      await callback();
    } catch (error) {
      log(`leader election: ${what} failed: ${describeKubeError(error)}`);
    }
  };

  function observe(lease: k8s.V1Lease): void {
    const record = recordOf(lease);
    if (!observed || !sameRecord(observed.record, record))
      observed = { lease, record, changedAt: monotonic() };
    else observed = { ...observed, lease };
    const holder = record.holderIdentity;
    // A release ends a term: the next holder is a new leader even if it is the same replica.
    if (!holder) reportedLeader = undefined;
    if (holder && holder !== reportedLeader) {
      reportedLeader = holder;
      if (holder !== identity) log(`leader election: ${namespace}/${name} is held by ${holder}`);
      try {
        options.onNewLeader?.(holder);
      } catch (error) {
        log(`leader election: onNewLeader failed: ${describeKubeError(error)}`);
      }
    }
  }

  /** Whether the observed holder (another replica) may still be acting: its record changed within its duration. */
  function heldByAnother(): boolean {
    if (!observed) return false;
    const { record, changedAt } = observed;
    if (!record.holderIdentity || record.holderIdentity === identity) return false;
    // The holder's own duration rules (a release writes 1 s); a record without one gets ours.
    const durationMs =
      record.leaseDurationSeconds && record.leaseDurationSeconds > 0
        ? record.leaseDurationSeconds * 1000
        : leaseMs;
    return monotonic() < changedAt + durationMs;
  }

  function stepDown(reason: string): void {
    if (!leading) return;
    leading = false;
    leadingUntil = 0;
    steppedDownAt = monotonic();
    clearTimeout(deadlineTimer);
    log(`leader election: ${identity} stopped leading ${namespace}/${name}: ${reason}`);
    const previous = steppingDown;
    steppingDown = previous.then(() => runCallback("onStoppedLeading", options.onStoppedLeading));
  }

  function leadUntil(sentAt: number): void {
    // A renewal that was under way when this replica stepped down: the next round renews afresh,
    // once onStoppedLeading has finished.
    if (!leading && sentAt < steppedDownAt) return;
    leadingUntil = sentAt + renewMs;
    clearTimeout(deadlineTimer);
    // Steps down on time even while a renewal hangs: the abort below ends it at the same moment.
    deadlineTimer = setTimeout(
      () => stepDown("no renewal within the renew deadline"),
      leadingUntil - monotonic(),
    );
    deadlineTimer.unref();
    if (!leading) {
      leading = true;
      log(`leader election: ${identity} leads ${namespace}/${name}`);
      void runCallback("onStartedLeading", options.onStartedLeading);
    }
  }

  /** A signal for one request: the stop, and a timeout (a leader's ends at its deadline, when a late answer is of no use). */
  function requestSignal(): AbortSignal {
    const limit = leading ? Math.max(0, leadingUntil - monotonic()) : renewMs;
    return AbortSignal.any([stopping.signal, AbortSignal.timeout(Math.max(1, Math.floor(limit)))]);
  }

  function desiredSpec(previous: LeaseRecord | undefined): k8s.V1LeaseSpec {
    const now = microTime();
    const renewing = previous?.holderIdentity === identity;
    return {
      holderIdentity: identity,
      leaseDurationSeconds: leaseSeconds,
      // The holder keeps its acquireTime and the count; taking it from another (or after a release) is a transition.
      acquireTime:
        renewing && keptTime(previous.acquireTime)
          ? new k8s.V1MicroTime(keptTime(previous.acquireTime) as number)
          : now,
      renewTime: now,
      leaseTransitions: renewing ? previous.leaseTransitions : (previous?.leaseTransitions ?? -1) + 1,
    };
  }

  /** Writes `lease` with this replica as holder, conditional on its resourceVersion; true if it took. */
  async function write(lease: k8s.V1Lease): Promise<boolean> {
    const sentAt = monotonic();
    const body: k8s.V1Lease = {
      apiVersion: "coordination.k8s.io/v1",
      kind: "Lease",
      metadata: { ...lease.metadata, name, namespace },
      spec: { ...lease.spec, ...desiredSpec(recordOf(lease)) },
    };
    try {
      const written = await api.replaceNamespacedLease(
        { name, namespace, body },
        abortingOn(requestSignal()),
      );
      observe(written);
      leadUntil(sentAt);
      return true;
    } catch (error) {
      // 409: another replica wrote first; the next read shows who.
      if (statusOf(error) === 409) return false;
      throw error;
    }
  }

  /** One round of client-go's tryAcquireOrRenew. Throws on errors other than losing a race. */
  async function tryAcquireOrRenew(): Promise<void> {
    // The leader's fast path: renew the Lease it last wrote without reading it first.
    if (leading && observed?.record.holderIdentity === identity) {
      try {
        if (await write(observed.lease)) return;
      } catch (error) {
        if (stopping.signal.aborted) throw error;
        // Fall through to reading it: a failure there is the one logged.
      }
    }
    let current: k8s.V1Lease;
    try {
      current = await api.readNamespacedLease({ name, namespace }, abortingOn(requestSignal()));
    } catch (error) {
      if (statusOf(error) !== 404) throw error;
      const sentAt = monotonic();
      try {
        const created = await api.createNamespacedLease(
          {
            namespace,
            body: {
              apiVersion: "coordination.k8s.io/v1",
              kind: "Lease",
              metadata: { name, namespace },
              spec: desiredSpec(undefined),
            },
          },
          abortingOn(requestSignal()),
        );
        observe(created);
        leadUntil(sentAt);
      } catch (createError) {
        if (statusOf(createError) !== 409) throw createError;
        // Another replica created it first.
      }
      return;
    }
    observe(current);
    if (heldByAnother()) {
      // Someone else holds a live Lease; a leader that finds this has been replaced.
      stepDown(`the Lease is held by ${observed?.record.holderIdentity}`);
      return;
    }
    if (!(await write(current))) stepDown("another replica wrote the Lease first");
  }

  function sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        wake = undefined;
        resolve();
      }
      wake = done;
    });
  }

  async function campaign(): Promise<void> {
    while (!stopping.signal.aborted) {
      // A replica that just stepped down finishes its leader's work before it may lead again.
      await steppingDown;
      if (stopping.signal.aborted) break;
      try {
        await tryAcquireOrRenew();
        lastError = undefined;
      } catch (error) {
        if (stopping.signal.aborted) break;
        const text = describeKubeError(error);
        // One line per distinct failure, not one per retry, while the API server is unreachable.
        if (text !== lastError) log(`leader election: ${namespace}/${name}: ${text}; retrying`);
        lastError = text;
      }
      if (stopping.signal.aborted) break;
      await sleep(leading ? retryMs : retryMs * (1 + Math.random() * JITTER_FACTOR));
    }
  }

  async function release(): Promise<void> {
    // Read first: a renewal aborted by stop() may have landed, moving the resourceVersion on.
    for (let attempt = 0; attempt < 3; attempt++) {
      const signal = AbortSignal.timeout(renewMs);
      try {
        const current = await api.readNamespacedLease({ name, namespace }, abortingOn(signal));
        if (recordOf(current).holderIdentity !== identity) return;
        const now = microTime();
        await api.replaceNamespacedLease(
          {
            name,
            namespace,
            body: {
              ...current,
              // client-go's release: no holder, and a 1 s duration for readers that only look at the time.
              spec: {
                ...current.spec,
                holderIdentity: "",
                leaseDurationSeconds: 1,
                acquireTime: now,
                renewTime: now,
              },
            },
          },
          abortingOn(signal),
        );
        log(`leader election: ${identity} released ${namespace}/${name}`);
        return;
      } catch (error) {
        if (statusOf(error) === 409) continue;
        log(
          `leader election: releasing ${namespace}/${name} failed (${describeKubeError(error)}); it expires instead`,
        );
        return;
      }
    }
  }

  log(`leader election: ${identity} campaigning for ${namespace}/${name}`);
  const running = campaign();
  let stopped: Promise<void> | undefined;

  return {
    isLeader: () => leading && monotonic() < leadingUntil,
    leader: () => (leading ? identity : observed?.record.holderIdentity || undefined),
    stop(stopOptions = {}) {
      stopped ??= (async () => {
        const held = leading || observed?.record.holderIdentity === identity;
        stopping.abort();
        wake?.();
        await running;
        stepDown("stopping");
        await steppingDown;
        if (held && stopOptions.release !== false) await release();
      })();
      return stopped;
    },
  };
}
