// The agent's Workload in the control plane, over the public HTTP API (Contract 1 of issue 10):
// registered with PUT /v1/workloads/{name}, kept by PUT /v1/workloads/{name}/lease every third of
// its lease, registered again when the control plane has lost it (404), and deleted on shutdown.
// A control plane that is away is retried with back-off and never stops the agent: while it is
// away, the Workload stays until its lease lapses, and the next renewal that gets through registers
// it again if it was swept meanwhile.
import { failureOf, type HttpResponse, httpRequest, type Token } from "./http.ts";

export interface WorkloadSpec {
  name: string;
  service: string;
  /** Where other sidecars reach this one; undefined: the address this host reaches the API from. */
  address: string | undefined;
  /** The sidecar's inbound port: what other sidecars call. */
  port: number;
  appPort: number;
  labels: Record<string, string>;
  zone: string | undefined;
  leaseSeconds: number;
  /** Its sidecar takes mesh mTLS (the agent serves it a certificate): spec.mtls. */
  mtls?: boolean;
}

export interface RegistrationOptions {
  /** The API's base URL, e.g. http://127.0.0.1:5681. */
  api: string;
  /** The agent's token: a dataplane token of the Workload's service (or an admin token). */
  token?: Token;
  /** PEM: the CAs an https API's certificate is verified with. */
  ca?: string;
  workload: WorkloadSpec;
  log: (line: string) => void;
  /** Back-off after a failed call: from minMs, doubling to maxMs. */
  retry?: { minMs: number; maxMs: number };
  /** One call's time limit (default 5 s). */
  timeoutMs?: number;
}

/** The Workload resource the agent writes (Contract 1): the sidecar's inbound port is its port. */
export function workloadDocument(workload: WorkloadSpec, address: string): Record<string, unknown> {
  return {
    apiVersion: "wasmesh.io/v1alpha1",
    kind: "Workload",
    metadata: { name: workload.name },
    spec: {
      service: workload.service,
      address,
      port: workload.port,
      appPort: workload.appPort,
      ...(Object.keys(workload.labels).length > 0 ? { labels: workload.labels } : {}),
      ...(workload.zone !== undefined ? { zone: workload.zone } : {}),
      leaseSeconds: workload.leaseSeconds,
      ...(workload.mtls === true ? { mtls: true } : {}),
    },
  };
}

export class Registration {
  private readonly options: RegistrationOptions;
  private readonly url: string;
  private address: string | undefined;
  private registered = false;
  private started = false;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  /** The call under way, so that deregister() never races a registration that lands after it. */
  private inFlight: Promise<void> | undefined;
  private failures = 0;
  private renewed = 0;
  private firstRegistration: { promise: Promise<void>; resolve: () => void };

  constructor(options: RegistrationOptions) {
    this.options = options;
    this.url = `${options.api.replace(/\/$/, "")}/v1/workloads/${encodeURIComponent(options.workload.name)}`;
    this.address = options.workload.address;
    let resolve = () => {};
    const promise = new Promise<void>((r) => {
      resolve = r;
    });
    this.firstRegistration = { promise, resolve };
  }

  /** Leases renewed so far (for tests and logs). */
  get renewals(): number {
    return this.renewed;
  }

  /** Registers now, then keeps renewing until deregister(). */
  start(): void {
    this.started = true;
    this.schedule(0);
  }

  /** Resolves once the Workload has been written the first time. */
  registeredOnce(): Promise<void> {
    return this.firstRegistration.promise;
  }

  /**
   * Writes the Workload again now (after Envoy restarted: whatever changed meanwhile is put back).
   * Says whether it will: not before start() (the first registration waits for the sidecar to be
   * ready) nor after deregister().
   */
  reregister(): boolean {
    if (this.stopped || !this.started) return false;
    this.registered = false;
    if (this.inFlight === undefined) this.schedule(0);
    return true;
  }

  /**
   * Stops renewing and deletes the Workload. Resolves true when it is gone (deleted, or not there),
   * false when the control plane could not be told (the lease removes it then).
   */
  async deregister(): Promise<boolean> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.inFlight;
    const { name, leaseSeconds } = this.options.workload;
    let outcome: HttpResponse | Error;
    try {
      outcome = await httpRequest(this.url, { method: "DELETE", timeoutMs: this.timeoutMs, ...this.auth });
      if (outcome.status === 200 || outcome.status === 404) {
        this.options.log(`deregistered workload/${name}`);
        return true;
      }
    } catch (error) {
      outcome = error as Error;
    }
    this.options.log(
      `could not deregister workload/${name} (${failureOf(outcome)}); the control plane removes it when its lease lapses (${leaseSeconds} s)`,
    );
    return false;
  }

  private get auth(): { token?: Token; ca?: string } {
    return {
      ...(this.options.token !== undefined ? { token: this.options.token } : {}),
      ...(this.options.ca !== undefined ? { ca: this.options.ca } : {}),
    };
  }

  private get timeoutMs(): number {
    return this.options.timeoutMs ?? 5_000;
  }

  private schedule(delayMs: number): void {
    clearTimeout(this.timer);
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.inFlight = this.step().finally(() => {
        this.inFlight = undefined;
      });
    }, delayMs);
  }

  /** One call: register when not registered, else renew; then schedule the next. */
  private async step(): Promise<void> {
    const { workload, log } = this.options;
    const renewMs = (workload.leaseSeconds * 1000) / 3;
    let outcome: HttpResponse | Error;
    const wasRegistered = this.registered;
    try {
      outcome = wasRegistered
        ? await httpRequest(`${this.url}/lease`, {
            method: "PUT",
            json: {},
            timeoutMs: this.timeoutMs,
            ...this.auth,
          })
        : await this.register();
    } catch (error) {
      outcome = error as Error;
    }
    if (this.stopped) return;
    if (!(outcome instanceof Error) && outcome.status >= 200 && outcome.status < 300) {
      if (this.failures > 0) log("the control plane answers again");
      this.failures = 0;
      if (wasRegistered) this.renewed++;
      if (!wasRegistered) {
        this.registered = true;
        log(
          `registered workload/${workload.name} (service ${workload.service}, ${this.address}:${workload.port}, app port ${workload.appPort}, lease ${workload.leaseSeconds} s)`,
        );
        this.firstRegistration.resolve();
      }
      // A reregister() during the call asked for another write.
      this.schedule(this.registered ? renewMs : 0);
      return;
    }
    if (wasRegistered && !(outcome instanceof Error) && [400, 404, 409].includes(outcome.status)) {
      // 404: the Workload was removed (its lease lapsed while the control plane was out of reach,
      // or someone deleted it); 400/409: it is there without a lease (replaced by hand). Either
      // way, the agent's Workload is written again at once.
      log(`renewing the lease of workload/${workload.name}: ${failureOf(outcome)}; registering it again`);
      this.registered = false;
      this.schedule(0);
      return;
    }
    const { minMs, maxMs } = this.options.retry ?? { minMs: 500, maxMs: 10_000 };
    const delay = Math.min(maxMs, renewMs, minMs * 2 ** this.failures);
    this.failures++;
    log(
      `${wasRegistered ? "renewing the lease of" : "registering"} workload/${workload.name} at ${this.options.api} failed (${failureOf(outcome)}); retrying in ${(delay / 1000).toFixed(1)} s`,
    );
    this.schedule(delay);
  }

  private async register(): Promise<HttpResponse> {
    if (this.address === undefined) {
      // The address this host reaches the control plane from is the one other hosts reach it on
      // (Consul's default advertise address works the same way): asked once, then kept.
      const probe = await httpRequest(`${this.options.api.replace(/\/$/, "")}/healthz`, {
        timeoutMs: this.timeoutMs,
        ...(this.options.ca !== undefined ? { ca: this.options.ca } : {}),
      });
      this.address = advertised(probe.localAddress);
    }
    return httpRequest(this.url, {
      method: "PUT",
      json: workloadDocument(this.options.workload, this.address),
      timeoutMs: this.timeoutMs,
      ...this.auth,
    });
  }
}

/** A socket's local address as a Workload address: IPv4-mapped IPv6 unwrapped. */
function advertised(localAddress: string | undefined): string {
  if (localAddress === undefined) throw new Error("the connection to the control plane has no local address");
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(localAddress);
  // The inbound listener binds 0.0.0.0 (IPv4): reached over IPv6 loopback, the host is 127.0.0.1.
  if (localAddress === "::1") return "127.0.0.1";
  return mapped?.[1] ?? localAddress;
}
