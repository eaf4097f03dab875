// Circuit breaking per destination cluster. The state lives in the proxy's shared data, guarded by
// compare-and-swap, so every worker thread (every VM of the plugin) sees one breaker: with
// `--concurrency 2` it opens after N failures in total, not N per thread.
import { getSharedDataEncoded, logWarn, setSharedDataEncoded, WasmResult } from "../sdk";
import { BreakerPolicy } from "./config";

export enum CircuitState {
  Closed = 0,
  Open = 1,
  HalfOpen = 2,
}

export enum Admission {
  Allow,
  /** The single request let through after the ejection time to test the destination. */
  Probe,
  Reject,
}

export enum Transition {
  None,
  Opened,
  Closed,
}

const STATE_BYTES = 40;
const MAX_CAS_ATTEMPTS = 32;

class BreakerState {
  state: CircuitState = CircuitState.Closed;
  consecutive: u32 = 0;
  ejections: u32 = 0;
  probeInFlight: bool = false;
  windowStartMs: u64 = 0;
  openUntilMs: u64 = 0;
  lastChangeMs: u64 = 0;

  static decode(data: ArrayBuffer | null): BreakerState {
    const s = new BreakerState();
    if (data === null || data.byteLength < STATE_BYTES) return s;
    const p = changetype<usize>(data);
    s.state = <CircuitState>load<u32>(p);
    s.consecutive = load<u32>(p, 4);
    s.ejections = load<u32>(p, 8);
    s.probeInFlight = load<u32>(p, 12) != 0;
    s.windowStartMs = load<u64>(p, 16);
    s.openUntilMs = load<u64>(p, 24);
    s.lastChangeMs = load<u64>(p, 32);
    return s;
  }

  encode(): ArrayBuffer {
    const data = new ArrayBuffer(STATE_BYTES);
    const p = changetype<usize>(data);
    store<u32>(p, this.state);
    store<u32>(p, this.consecutive, 4);
    store<u32>(p, this.ejections, 8);
    store<u32>(p, this.probeInFlight ? 1 : 0, 12);
    store<u64>(p, this.windowStartMs, 16);
    store<u64>(p, this.openUntilMs, 24);
    store<u64>(p, this.lastChangeMs, 32);
    return data;
  }
}

/**
 * Whether the state read at the last admit() had failures counted. A request admitted while the
 * count was 0 that then succeeds needs no write: a success resets the failures that came before
 * it started, and on the common healthy path that saves a shared-data read per request.
 */
let admittedDuringFailures: bool = false;

export function lastAdmissionHadFailures(): bool {
  return admittedDuringFailures;
}

/** Creates the shared entry if no VM has yet; never resets a breaker that is already tracking. */
export function ensureBreakerState(policy: BreakerPolicy): void {
  const key = policy.stateKey;
  if (getSharedDataEncoded(key).data === null) setSharedDataEncoded(key, new BreakerState().encode(), 0);
  const active = policy.activeKey;
  if (policy.maxConcurrent > 0 && getSharedDataEncoded(active).data === null) {
    setSharedDataEncoded(active, new ArrayBuffer(4), 0);
  }
}

/** Whether a request to the policy's cluster may go upstream now. */
export function admit(policy: BreakerPolicy, nowMs: u64): Admission {
  const key = policy.stateKey;
  for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
    const shared = getSharedDataEncoded(key);
    const s = BreakerState.decode(shared.data);
    admittedDuringFailures = s.consecutive > 0;
    if (s.state == CircuitState.Closed) return Admission.Allow;
    if (s.state == CircuitState.Open && nowMs < s.openUntilMs) return Admission.Reject;
    // A probe whose request vanished without a response must not hold the circuit half-open forever.
    if (
      s.state == CircuitState.HalfOpen &&
      s.probeInFlight &&
      nowMs - s.lastChangeMs < <u64>policy.baseEjectionMs
    ) {
      return Admission.Reject;
    }
    s.state = CircuitState.HalfOpen;
    s.probeInFlight = true;
    s.lastChangeMs = nowMs;
    if (setSharedDataEncoded(key, s.encode(), shared.cas) == WasmResult.Ok) return Admission.Probe;
  }
  return Admission.Reject;
}

/** Accounts for one finished request; `failed` covers 5xx answers, gateway errors and resets. */
export function recordOutcome(policy: BreakerPolicy, nowMs: u64, failed: bool, wasProbe: bool): Transition {
  const key = policy.stateKey;
  for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
    const shared = getSharedDataEncoded(key);
    const s = BreakerState.decode(shared.data);
    let transition = Transition.None;
    if (s.state == CircuitState.HalfOpen) {
      // Only the probe decides; answers to requests admitted before the circuit opened are stale.
      if (!wasProbe) return Transition.None;
      if (failed) {
        open(policy, s, nowMs);
        transition = Transition.Opened;
      } else {
        s.state = CircuitState.Closed;
        s.consecutive = 0;
        s.probeInFlight = false;
        s.lastChangeMs = nowMs;
        transition = Transition.Closed;
      }
    } else if (s.state == CircuitState.Open) {
      return Transition.None;
    } else if (!failed) {
      if (s.consecutive == 0) return Transition.None; // the common case costs no write
      s.consecutive = 0;
    } else {
      if (s.consecutive == 0 || nowMs - s.windowStartMs > <u64>policy.intervalMs) {
        s.consecutive = 1;
        s.windowStartMs = nowMs;
      } else {
        s.consecutive++;
      }
      if (s.consecutive >= policy.consecutiveErrors) {
        open(policy, s, nowMs);
        transition = Transition.Opened;
      }
    }
    if (setSharedDataEncoded(key, s.encode(), shared.cas) == WasmResult.Ok) return transition;
  }
  logWarn("wasmesh: breaker " + policy.cluster + ": state update lost after repeated contention");
  return Transition.None;
}

/** The probe ended without an answer: let the next request probe instead. */
export function abandonProbe(policy: BreakerPolicy): void {
  const key = policy.stateKey;
  for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
    const shared = getSharedDataEncoded(key);
    const s = BreakerState.decode(shared.data);
    if (s.state != CircuitState.HalfOpen || !s.probeInFlight) return;
    s.probeInFlight = false;
    if (setSharedDataEncoded(key, s.encode(), shared.cas) == WasmResult.Ok) return;
  }
}

function open(policy: BreakerPolicy, s: BreakerState, nowMs: u64): void {
  // Like Envoy's outlier detection, each healthy interval since the last change forgives one
  // earlier ejection, and each ejection in a row lengthens the next one.
  if (s.state == CircuitState.Closed) {
    const healthyIntervals = (nowMs - s.lastChangeMs) / <u64>policy.intervalMs;
    s.ejections = healthyIntervals >= <u64>s.ejections ? 0 : s.ejections - <u32>healthyIntervals;
  }
  s.ejections++;
  const duration = min(<u64>policy.baseEjectionMs * <u64>s.ejections, <u64>policy.maxEjectionMs);
  s.state = CircuitState.Open;
  s.openUntilMs = nowMs + duration;
  s.probeInFlight = false;
  s.consecutive = 0;
  s.lastChangeMs = nowMs;
}

/** Takes one of the cluster's concurrent-request slots; false when all are in use. */
export function acquireSlot(policy: BreakerPolicy): bool {
  return adjustActive(policy, 1);
}

export function releaseSlot(policy: BreakerPolicy): void {
  adjustActive(policy, -1);
}

function adjustActive(policy: BreakerPolicy, delta: i32): bool {
  const key = policy.activeKey;
  for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
    const shared = getSharedDataEncoded(key);
    const data = shared.data;
    const active: u32 = data !== null && data.byteLength >= 4 ? load<u32>(changetype<usize>(data)) : 0;
    if (delta > 0 && active >= policy.maxConcurrent) return false;
    const next: u32 = delta > 0 ? active + 1 : active > 0 ? active - 1 : 0;
    const out = new ArrayBuffer(4);
    store<u32>(changetype<usize>(out), next);
    if (setSharedDataEncoded(key, out, shared.cas) == WasmResult.Ok) return true;
  }
  return false;
}
