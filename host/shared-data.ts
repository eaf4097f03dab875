// What Envoy keeps per process across its worker VMs: shared data (key/value with CAS), shared
// queues and stats. Several ProxyWasmHost instances given one SharedData behave like the VMs of
// one Envoy with --concurrency N. Shared data and queues are partitioned by vm_id, as in Envoy.
import { Status } from "./abi.ts";
import { MetricStore } from "./metrics.ts";

export interface SharedValue {
  value: Uint8Array;
  cas: number;
}

/** Whoever registered a queue: told when something is enqueued (Envoy posts to its thread). */
export interface QueueListener {
  queueReady(contextId: number, token: number): void;
}

interface Queue {
  items: Uint8Array[];
  listener: QueueListener;
  contextId: number;
}

export class SharedData {
  /** Stats are process-wide in Envoy too, so VMs sharing this store share metrics. */
  readonly metrics: MetricStore;
  private readonly data = new Map<string, Map<string, SharedValue>>();
  private cas = 1;
  private readonly queueTokens = new Map<string, number>();
  private readonly queues = new Map<number, Queue>();
  private nextToken = 1;

  constructor(options: { metrics?: MetricStore } = {}) {
    this.metrics = options.metrics ?? new MetricStore();
  }

  /** Envoy's nextCas: a process-wide counter that never hands out 0. */
  private nextCas(): number {
    const cas = this.cas;
    this.cas = (this.cas + 1) >>> 0 || 1;
    return cas;
  }

  get(key: string, vmId = ""): SharedValue | undefined {
    const entry = this.data.get(vmId)?.get(key);
    return entry && { value: entry.value.slice(), cas: entry.cas };
  }

  /**
   * cas 0 always writes; a nonzero cas must match the current one, except for a key that does not
   * exist yet, which Envoy writes whatever the cas. Every write gets a fresh cas.
   */
  set(key: string, value: Uint8Array | string, cas = 0, vmId = ""): Status {
    let map = this.data.get(vmId);
    if (!map) {
      map = new Map();
      this.data.set(vmId, map);
    }
    const current = map.get(key);
    if (current && cas !== 0 && cas !== current.cas) return Status.CasMismatch;
    const bytes = typeof value === "string" ? new TextEncoder().encode(value) : value.slice();
    map.set(key, { value: bytes, cas: this.nextCas() });
    return Status.Ok;
  }

  keys(vmId = ""): string[] {
    return [...(this.data.get(vmId)?.keys() ?? [])];
  }

  /** Registers (or re-registers, keeping queued items) the queue `name` of a vm_id. */
  registerQueue(vmId: string, name: string, listener: QueueListener, contextId: number): number {
    const key = `${vmId}\0${name}`;
    let token = this.queueTokens.get(key);
    if (token === undefined) {
      while (this.nextToken === 0 || this.queues.has(this.nextToken))
        this.nextToken = (this.nextToken + 1) >>> 0;
      token = this.nextToken++;
      this.queueTokens.set(key, token);
      this.queues.set(token, { items: [], listener, contextId });
    }
    const queue = this.queues.get(token) as Queue;
    queue.listener = listener;
    queue.contextId = contextId;
    return token;
  }

  /** The token of a registered queue, or 0 (Envoy's "not found"). */
  resolveQueue(vmId: string, name: string): number {
    return this.queueTokens.get(`${vmId}\0${name}`) ?? 0;
  }

  enqueue(token: number, value: Uint8Array): Status {
    const queue = this.queues.get(token);
    if (!queue) return Status.NotFound;
    queue.items.push(value.slice());
    queue.listener.queueReady(queue.contextId, token);
    return Status.Ok;
  }

  dequeue(token: number): { status: Status; value?: Uint8Array } {
    const queue = this.queues.get(token);
    if (!queue) return { status: Status.NotFound };
    const value = queue.items.shift();
    return value ? { status: Status.Ok, value } : { status: Status.Empty };
  }
}
