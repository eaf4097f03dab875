// mesh.wasm: header matching, routing with weighted split, and circuit breaking in one Proxy-Wasm
// module. A plugin runs the stages its configuration has sections for, in that order, so one
// filter instance can carry the whole chain (one Wasm crossing per callback) or an operator can
// run one instance per concern. The routing header is the contract with Envoy's router
// (`cluster_header: x-wasmesh-cluster`) and with the edge worker.
import {
  clearRouteCache,
  encodePath,
  FilterStatus,
  HeaderPair,
  HttpContext,
  logError,
  logInfo,
  nowMillis,
  nowNanos,
  RootContext,
  registerRootContext,
  requestHeaders,
  responseHeaders,
  setPropertyEncoded,
} from "../sdk";
import { Counter } from "../sdk/metrics";
import {
  Admission,
  abandonProbe,
  acquireSlot,
  admit,
  ensureBreakerState,
  lastAdmissionHadFailures,
  recordOutcome,
  releaseSlot,
  Transition,
} from "./breaker";
import {
  BreakerMetrics,
  BreakerPolicy,
  Destination,
  HeaderChanges,
  HeaderRule,
  MeshConfig,
  parseMeshConfig,
} from "./config";
import { matches } from "./match";
import { RequestView } from "./request";
import { chooseDestination } from "./split";

// The ABI callbacks this module needs. Every exported callback is a call from the proxy into the
// VM on each request, so the body and trailer callbacks (unused here) are left out.
export {
  proxy_abi_version_0_2_1,
  proxy_on_configure,
  proxy_on_context_create,
  proxy_on_delete,
  proxy_on_memory_allocate,
  proxy_on_request_headers,
  proxy_on_response_headers,
  proxy_on_tick,
  proxy_on_vm_start,
} from "../sdk/exports";

// The x-wasmesh-* headers this module sets. TypeScript (control plane, edge worker, tests) names
// them in schema/headers.ts, which AssemblyScript cannot import: test/filters/reserved-headers.test.ts
// fails when the built module and that file disagree.
const ROUTE_HEADER_BYTES = String.UTF8.encode("x-wasmesh-cluster");
/**
 * The route taken, as a property: Envoy keeps it in the stream's filter state as
 * `wasm.wasmesh_route`, which access logs print (%FILTER_STATE(wasm.wasmesh_route:PLAIN)%) after
 * the router has removed the mesh's own headers.
 */
const ROUTE_PROPERTY = encodePath(["wasmesh_route"]);
const STATUS_HEADER_BYTES = String.UTF8.encode(":status");
const CIRCUIT_HEADER = "x-wasmesh-circuit";
const DENIED_HEADER = "x-wasmesh-denied";
const FAULT_HEADER = "x-wasmesh-fault";

/** Tick granularity while delayed requests wait; delays are honoured to within this bound. */
const DELAY_TICK_MS: u32 = 5;

class DelayedRequest {
  constructor(
    public stream: MeshHttp,
    public resumeAtMs: u64,
  ) {}
}

class MeshRoot extends RootContext {
  config: MeshConfig | null = null;
  private counters: Map<string, Counter> = new Map<string, Counter>();
  private delayed: Array<DelayedRequest> = new Array<DelayedRequest>();
  private random: u32 = 1;

  onConfigure(configurationSize: u32): bool {
    const bytes = this.pluginConfiguration(configurationSize);
    if (bytes === null) {
      logError("wasmesh: invalid plugin configuration: (root): the proxy gave no configuration");
      return false;
    }
    const result = parseMeshConfig(bytes);
    const config = result.config;
    if (config === null) {
      // Envoy rejects the filter when on_configure fails; this line says why.
      logError("wasmesh: invalid plugin configuration: " + result.error);
      return false;
    }
    for (let i = 0; i < config.breakers.length; i++) {
      const policy = config.breakers[i];
      ensureBreakerState(policy);
      policy.metrics = new BreakerMetrics(policy);
    }
    for (let i = 0; i < config.routes.length; i++) {
      const destinations = config.routes[i].destinations;
      for (let j = 0; j < destinations.length; j++) {
        destinations[j].requests = this.counter("wasmesh.route." + destinations[j].cluster + ".requests");
      }
    }
    this.config = config;
    this.random = <u32>(nowNanos() ^ (nowNanos() >> 32)) | 1;
    logInfo(
      "wasmesh: configured " +
        config.headerRules.length.toString() +
        " header rules, " +
        config.routes.length.toString() +
        " routes, " +
        config.breakers.length.toString() +
        " breakers",
    );
    return true;
  }

  createHttpContext(contextId: u32): HttpContext | null {
    const config = this.config;
    if (config === null) return null;
    return new MeshHttp(contextId, this, config);
  }

  counter(name: string): Counter {
    if (this.counters.has(name)) return this.counters.get(name);
    const counter = new Counter(name);
    this.counters.set(name, counter);
    return counter;
  }

  /** True for `percent` percent of calls (xorshift32; faults need no cryptographic randomness). */
  roll(percent: f64): bool {
    if (percent >= 100) return true;
    if (percent <= 0) return false;
    let x = this.random;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    this.random = x;
    return <f64>(x % 10_000) < percent * 100;
  }

  delay(stream: MeshHttp, resumeAtMs: u64): void {
    if (this.delayed.length == 0) this.setTickPeriod(DELAY_TICK_MS);
    this.delayed.push(new DelayedRequest(stream, resumeAtMs));
  }

  forget(stream: MeshHttp): void {
    for (let i = 0; i < this.delayed.length; i++) {
      if (this.delayed[i].stream === stream) {
        this.delayed.splice(i, 1);
        break;
      }
    }
    if (this.delayed.length == 0) this.setTickPeriod(0);
  }

  onTick(): void {
    const now = nowMillis();
    const waiting = new Array<DelayedRequest>();
    const due = new Array<MeshHttp>();
    for (let i = 0; i < this.delayed.length; i++) {
      const entry = this.delayed[i];
      if (entry.resumeAtMs <= now) due.push(entry.stream);
      else waiting.push(entry);
    }
    this.delayed = waiting;
    if (waiting.length == 0) this.setTickPeriod(0);
    for (let i = 0; i < due.length; i++) due[i].resumeRequest();
  }

  breakerTransition(policy: BreakerPolicy, transition: Transition): void {
    const metrics = policy.metrics;
    if (transition == Transition.None || metrics === null) return;
    if (transition == Transition.Opened) {
      metrics.opened.increment();
      metrics.open.set(1);
    } else {
      metrics.closed.increment();
      metrics.open.set(0);
    }
  }
}

class MeshHttp extends HttpContext {
  private responseChanges: HeaderChanges[] | null = null;
  /** The breaker accounting for this request, when its destination has one. */
  private breaker: BreakerPolicy | null = null;
  private probe: bool = false;
  private admittedDuringFailures: bool = false;
  private holdsSlot: bool = false;
  private accounted: bool = false;
  private delayed: bool = false;

  constructor(
    contextId: u32,
    public mesh: MeshRoot,
    public config: MeshConfig,
  ) {
    super(contextId, mesh);
  }

  onRequestHeaders(headerCount: u32, endOfStream: bool): FilterStatus {
    const request = new RequestView();
    let headersChanged = false;

    let delayMs: u32 = 0;
    const rules = this.config.headerRules;
    for (let i = 0; i < rules.length; i++) {
      const rule = rules[i];
      if (!matches(rule.match, request)) continue;
      const changes = rule.requestHeaders;
      if (changes !== null && applyRequestChanges(changes, request)) headersChanged = true;
      const responseChanges = rule.responseHeaders;
      if (responseChanges !== null) {
        let pending = this.responseChanges;
        if (pending === null) {
          pending = new Array<HeaderChanges>();
          this.responseChanges = pending;
        }
        pending.push(responseChanges);
      }
      if (rule.denyStatus != 0) return this.deny(rule);
      if (rule.abortStatus != 0 && this.mesh.roll(rule.abortPercent)) return this.abort(rule);
      if (rule.delayMs != 0 && this.mesh.roll(rule.delayPercent)) {
        this.mesh.counter("wasmesh.rule." + rule.name + ".delayed").increment();
        if (rule.delayMs > delayMs) delayMs = rule.delayMs;
      }
    }

    let destination: Destination | null = null;
    const routes = this.config.routes;
    for (let i = 0; i < routes.length; i++) {
      const route = routes[i];
      if (!matches(route.match, request)) continue;
      const chosen = chooseDestination(route, request);
      destination = chosen;
      // Replacing the header also discards any value the client sent.
      requestHeaders.setEncoded(ROUTE_HEADER_BYTES, chosen.clusterBytes);
      setPropertyEncoded(ROUTE_PROPERTY, route.nameBytes);
      if (route.timeoutMs > 0)
        requestHeaders.set("x-envoy-upstream-rq-timeout-ms", route.timeoutMs.toString());
      if (route.retryAttempts >= 0) {
        // The router enforces retries best: hand them over in its own headers.
        requestHeaders.set("x-envoy-max-retries", route.retryAttempts.toString());
        requestHeaders.set("x-envoy-retry-on", route.retryOn);
        if (route.perTryTimeoutMs > 0) {
          requestHeaders.set("x-envoy-upstream-rq-per-try-timeout-ms", route.perTryTimeoutMs.toString());
        }
      }
      headersChanged = true;
      break;
    }
    if (destination === null && routes.length > 0) {
      // The routing header is ours alone: a client must not choose its own cluster.
      requestHeaders.removeEncoded(ROUTE_HEADER_BYTES);
      headersChanged = true;
    }

    if (destination !== null) {
      const policy = this.config.breakerFor(destination.cluster);
      const metrics = policy !== null ? policy.metrics : null;
      if (policy === null || metrics === null) {
        countRequest(destination);
      } else {
        const status = this.guard(policy);
        if (status == 0) {
          countRequest(destination);
        } else if (policy.fallback.length > 0) {
          metrics.fallback.increment();
          metrics.fallbackRequests.increment();
          requestHeaders.setEncoded(ROUTE_HEADER_BYTES, policy.fallbackBytes);
        } else {
          metrics.rejected.increment();
          const reason = status == 1 ? "open" : "overflow";
          this.sendLocalResponse(
            503,
            "circuit " + reason + "\n",
            [new HeaderPair(CIRCUIT_HEADER, reason)],
            "wasmesh_circuit_" + reason,
          );
          return FilterStatus.Pause;
        }
      }
    }

    // Envoy picked the route before this filter ran; make it look again at what we changed.
    if (headersChanged) clearRouteCache();

    if (delayMs > 0) {
      this.delayed = true;
      this.mesh.delay(this, nowMillis() + delayMs);
      return FilterStatus.Pause;
    }
    return FilterStatus.Continue;
  }

  /** 0 when the request may go upstream, 1 when the circuit is open, 2 when it is full. */
  private guard(policy: BreakerPolicy): i32 {
    if (policy.maxConcurrent > 0) {
      if (!acquireSlot(policy)) return 2;
      this.holdsSlot = true;
    }
    const admission = admit(policy, nowMillis());
    if (admission == Admission.Reject) {
      this.releaseSlot(policy);
      return 1;
    }
    this.breaker = policy;
    this.probe = admission == Admission.Probe;
    this.admittedDuringFailures = lastAdmissionHadFailures();
    return 0;
  }

  private releaseSlot(policy: BreakerPolicy): void {
    if (!this.holdsSlot) return;
    this.holdsSlot = false;
    releaseSlot(policy);
  }

  private deny(rule: HeaderRule): FilterStatus {
    this.mesh.counter("wasmesh.rule." + rule.name + ".denied").increment();
    this.sendLocalResponse(
      rule.denyStatus,
      rule.denyBody,
      [new HeaderPair(DENIED_HEADER, rule.name)],
      "wasmesh_denied",
    );
    return FilterStatus.Pause;
  }

  private abort(rule: HeaderRule): FilterStatus {
    this.mesh.counter("wasmesh.rule." + rule.name + ".aborted").increment();
    this.sendLocalResponse(
      rule.abortStatus,
      "fault injected by wasmesh rule " + rule.name + "\n",
      [new HeaderPair(FAULT_HEADER, "abort")],
      "wasmesh_fault_abort",
    );
    return FilterStatus.Pause;
  }

  onResponseHeaders(headerCount: u32, endOfStream: bool): FilterStatus {
    const pending = this.responseChanges;
    if (pending !== null) {
      for (let i = 0; i < pending.length; i++) applyResponseChanges(pending[i]);
    }
    const policy = this.breaker;
    if (policy !== null && !this.accounted) {
      const status = responseHeaders.getEncoded(STATUS_HEADER_BYTES);
      const code = status !== null ? I32.parseInt(status) : 0;
      this.finish(policy, code >= 500 || code == 0);
    }
    return FilterStatus.Continue;
  }

  onDelete(): void {
    if (this.delayed) this.mesh.forget(this);
    // No response headers means the client went away: Envoy answers upstream resets, connect
    // failures and timeouts with its own 5xx, which onResponseHeaders has counted. A client
    // leaving says nothing about the upstream, so it is no failure; a probe is handed back.
    const policy = this.breaker;
    if (policy !== null && !this.accounted) {
      this.accounted = true;
      this.releaseSlot(policy);
      if (this.probe) abandonProbe(policy);
    }
  }

  private finish(policy: BreakerPolicy, failed: bool): void {
    this.accounted = true;
    this.releaseSlot(policy);
    // Healthy path: admitted with no failures counted and succeeded, so there is nothing to reset.
    if (!failed && !this.probe && !this.admittedDuringFailures) return;
    this.mesh.breakerTransition(policy, recordOutcome(policy, nowMillis(), failed, this.probe));
  }
}

function countRequest(destination: Destination): void {
  const requests = destination.requests;
  if (requests !== null) requests.increment();
}

function applyRequestChanges(changes: HeaderChanges, request: RequestView): bool {
  for (let i = 0; i < changes.toRemove.length; i++) {
    requestHeaders.remove(changes.toRemove[i]);
    request.noteRemove(changes.toRemove[i]);
  }
  for (let i = 0; i < changes.toSet.length; i++) {
    const h = changes.toSet[i];
    requestHeaders.set(h.name, h.value);
    request.noteSet(h.name, h.value);
  }
  for (let i = 0; i < changes.toAdd.length; i++) {
    const h = changes.toAdd[i];
    requestHeaders.add(h.name, h.value);
    request.noteAdd(h.name, h.value);
  }
  return changes.toRemove.length + changes.toSet.length + changes.toAdd.length > 0;
}

function applyResponseChanges(changes: HeaderChanges): void {
  for (let i = 0; i < changes.toRemove.length; i++) responseHeaders.remove(changes.toRemove[i]);
  for (let i = 0; i < changes.toSet.length; i++)
    responseHeaders.set(changes.toSet[i].name, changes.toSet[i].value);
  for (let i = 0; i < changes.toAdd.length; i++)
    responseHeaders.add(changes.toAdd[i].name, changes.toAdd[i].value);
}

registerRootContext("", (contextId: u32): RootContext => new MeshRoot(contextId));
