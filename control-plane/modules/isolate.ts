// Module validation off the main thread: a pool of worker threads, a time limit per validation,
// and memory bounds per worker. The smoke run calls into the uploaded module (VM start, configure,
// one request); a module that loops forever or grows its memory without bound would otherwise
// hang or exhaust the control plane that every sidecar depends on, and one slow validation would
// hold up every other push.
//
// CPU: a validation still running after a moment (healthy ones take milliseconds) has its thread
// moved to the lowest scheduling priority (Linux), so that modules spinning out their time limit
// leave the cores to healthy validations and to the rest of the control plane; such a worker is not
// reused. One idle worker is kept warm whenever the pool has room, so a push does not wait for a
// thread to start.
//
// Memory: a worker's JavaScript heap is capped by resourceLimits; the module's linear memory lives
// outside that heap, so validate.ts runs a copy of the module that cannot grow past the memory
// ceiling (memory-limit.ts). A validation thus holds at most the ceiling plus the heap cap, and the
// pool at most `size` of them.
import { availableParallelism, setPriority } from "node:os";
import { Worker } from "node:worker_threads";
import { DEFAULT_MEMORY_LIMIT_BYTES, mib } from "../../host/index.ts";
import type { ModuleCode } from "../envoy/index.ts";
import type { ConfigureJob, ConfigureResult, ConfigureVerdict } from "./configure.ts";
import type { ValidateOptions, ValidateResult } from "./validate.ts";

export interface IsolationLimits {
  /** Wall-clock bound of one validation, from when a worker takes it; default 10 s. */
  timeoutMs?: number;
  /** A worker's JS heap cap (V8 old generation), default 64 MiB. */
  maxHeapMb?: number;
  /** The module's memory ceiling (ValidateOptions.memoryLimitBytes), default the host's 128 MiB. */
  memoryLimitBytes?: number;
}

export interface ValidationPoolOptions extends IsolationLimits {
  /** Worker threads at most (default defaultPoolSize()); more validations wait their turn. */
  size?: number;
  /**
   * An idle worker exits after this long (default 30 s); the next validation starts a new one.
   * Infinity keeps idle workers (and the modules they keep warm) for the pool's lifetime.
   */
  idleMs?: number;
  /** A validation still running after this long runs at the lowest CPU priority (default 200 ms; Infinity: never). */
  lowerPriorityAfterMs?: number;
}

export const DEFAULT_VALIDATION_TIMEOUT_MS = 10_000;
export const DEFAULT_VALIDATION_HEAP_MB = 64;
const DEFAULT_IDLE_MS = 30_000;
const DEFAULT_LOWER_PRIORITY_AFTER_MS = 200;
/** The nice value of a validation that has run long (the lowest priority there is). */
const LOW_PRIORITY = 19;

/**
 * Twice the CPUs, at least 6 and at most 16. A healthy validation takes a few milliseconds of CPU;
 * a hostile one holds its worker until the time limit. More workers than cores keep healthy pushes
 * flowing while a few hostile ones run out their time (the per-client bound of the API keeps one
 * client from taking them all), and the cap bounds the memory the pool can hold.
 */
export function defaultPoolSize(cpus: number = availableParallelism()): number {
  return Math.min(16, Math.max(6, 2 * cpus));
}

/** What a worker is handed: a validation, or configurations to load into a module it may keep warm. */
export type WorkerRequest =
  | { kind: "validate"; bytes: Uint8Array; options: ValidateOptions }
  | { kind: "configure"; job: ConfigureJob };

interface Job {
  request: WorkerRequest;
  /** Answers the job: what the worker said, or why the pool could not get an answer (the message). */
  settle: (reply: WorkerReply | string) => void;
  /** The memory ceiling it runs under, for the time limit's message. */
  memoryLimitBytes: number;
}

interface PoolWorker {
  worker: Worker;
  /** The worker's OS thread id (Linux), for setPriority. */
  tid?: number;
  job?: Job;
  timer?: ReturnType<typeof setTimeout>;
  lowerTimer?: ReturnType<typeof setTimeout>;
  /** When its current job started (performance.now()). */
  startedAt?: number;
  /** Running at low priority: it cannot be raised again, so the worker is retired after its job. */
  lowered: boolean;
  /** The module digests it keeps warm for configure jobs (as it last said). */
  warm: Set<string>;
  /** Terminated or crashed: its events are no longer news. */
  gone: boolean;
}

/** What a worker posts about a job. */
export type WorkerReply =
  | { kind: "result"; result: ValidateResult }
  | { kind: "configured"; result: ConfigureResult };

/** What a worker posts: its thread id once started, then the reply to each job. */
export type WorkerMessage = { kind: "started"; tid?: number } | WorkerReply;

const SHUTTING_DOWN = "the control plane is shutting down";

const smokeFailure = (message: string): ValidateResult => ({
  ok: false,
  errors: [{ path: "module.smoke", message }],
});

export class ValidationPool {
  readonly size: number;
  readonly timeoutMs: number;
  readonly memoryLimitBytes: number;
  readonly #heapMb: number;
  readonly #idleMs: number;
  readonly #lowerAfterMs: number;
  readonly #workers = new Set<PoolWorker>();
  readonly #idle: PoolWorker[] = [];
  readonly #queue: Job[] = [];
  #closed = false;

  constructor(options: ValidationPoolOptions = {}) {
    this.size = Math.max(1, Math.floor(options.size ?? defaultPoolSize()));
    this.timeoutMs = options.timeoutMs ?? DEFAULT_VALIDATION_TIMEOUT_MS;
    this.memoryLimitBytes = options.memoryLimitBytes ?? DEFAULT_MEMORY_LIMIT_BYTES;
    this.#heapMb = options.maxHeapMb ?? DEFAULT_VALIDATION_HEAP_MB;
    this.#idleMs = options.idleMs ?? DEFAULT_IDLE_MS;
    this.#lowerAfterMs = options.lowerPriorityAfterMs ?? DEFAULT_LOWER_PRIORITY_AFTER_MS;
  }

  /** Validations being run by a worker now. */
  get running(): number {
    return this.#workers.size - this.#idle.length;
  }

  /** Validations waiting for a worker. */
  get queued(): number {
    return this.#queue.length;
  }

  /** validateModule in a worker of the pool, with the pool's time and memory limits. */
  validate(bytes: Uint8Array, options: ValidateOptions = {}): Promise<ValidateResult> {
    if (this.#closed) return Promise.resolve(smokeFailure(SHUTTING_DOWN));
    const limited = { memoryLimitBytes: this.memoryLimitBytes, ...options };
    return new Promise((resolve) => {
      this.#queue.push({
        request: { kind: "validate", bytes, options: limited },
        settle: (reply) =>
          resolve(
            typeof reply === "string"
              ? smokeFailure(reply)
              : reply.kind === "result"
                ? reply.result
                : smokeFailure("the worker answered a validation with something else"),
          ),
        memoryLimitBytes: limited.memoryLimitBytes ?? this.memoryLimitBytes,
      });
      this.#dispatch();
    });
  }

  /**
   * The module's verdict on each configuration (configure.ts), in a worker of the pool, with the
   * pool's time and memory limits over the whole batch: a module still configuring when the time is
   * up has every configuration of the batch refused with the reason. A worker that has the module
   * warm is preferred, so its VM is reused.
   */
  configure(
    code: ModuleCode,
    rootId: string,
    configurations: readonly string[],
  ): Promise<ConfigureVerdict[]> {
    const refuseAll = (error: string) =>
      configurations.map((): ConfigureVerdict => ({ ok: false, error, transient: true }));
    if (this.#closed) return Promise.resolve(refuseAll(SHUTTING_DOWN));
    if (configurations.length === 0) return Promise.resolve([]);
    return new Promise((resolve) => {
      const job: ConfigureJob = {
        sha256: code.sha256,
        bytes: code.bytes,
        rootId,
        configurations,
        memoryLimitBytes: this.memoryLimitBytes,
      };
      this.#queue.push({
        request: { kind: "configure", job },
        settle: (reply) =>
          resolve(
            typeof reply === "string"
              ? refuseAll(reply)
              : reply.kind === "configured"
                ? reply.result.verdicts
                : refuseAll("the worker answered a configuration check with something else"),
          ),
        memoryLimitBytes: this.memoryLimitBytes,
      });
      this.#dispatch();
    });
  }

  /** Stops every worker; validations still running or waiting are answered with a failure. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const job of this.#queue.splice(0)) job.settle(SHUTTING_DOWN);
    const workers = [...this.#workers];
    for (const entry of workers) this.#retire(entry, SHUTTING_DOWN);
    await Promise.all(workers.map((entry) => entry.worker.terminate()));
  }

  #dispatch(): void {
    while (this.#queue.length > 0) {
      const job = this.#queue[0] as Job;
      let entry = this.#takeIdle(job);
      if (!entry) {
        if (this.#workers.size >= this.size) return;
        entry = this.#spawn();
      }
      this.#queue.shift();
      this.#start(entry, job);
    }
    // A warm spare for the next push, while there is room for one.
    if (
      !this.#closed &&
      this.#idle.length === 0 &&
      this.#workers.size > 0 &&
      this.#workers.size < this.size
    ) {
      this.#idleFrom(this.#spawn());
    }
  }

  /** An idle worker for `job`: for a configure job, preferably one that has its module warm. */
  #takeIdle(job: Job): PoolWorker | undefined {
    const digest = job.request.kind === "configure" ? job.request.job.sha256 : undefined;
    const at = digest === undefined ? -1 : this.#idle.findLastIndex((entry) => entry.warm.has(digest));
    if (at >= 0) return this.#idle.splice(at, 1)[0];
    return this.#idle.pop();
  }

  #spawn(): PoolWorker {
    const worker = new Worker(new URL("./validate-worker.ts", import.meta.url), {
      resourceLimits: { maxOldGenerationSizeMb: this.#heapMb },
    });
    const entry: PoolWorker = { worker, lowered: false, gone: false, warm: new Set() };
    this.#workers.add(entry);
    worker.on("message", (message: WorkerMessage) => {
      if (entry.gone) return;
      if (message.kind === "started") {
        if (message.tid !== undefined) entry.tid = message.tid;
        // A job handed over before the worker said its thread id may already be due to be lowered.
        if (entry.job && entry.lowerTimer === undefined && entry.lowered === false)
          this.#scheduleLowering(entry);
      } else if (entry.job) {
        if (message.kind === "configured") entry.warm = new Set(message.result.warm);
        this.#finish(entry, message);
      }
    });
    worker.once("error", (error: Error) => {
      const message =
        (error as NodeJS.ErrnoException).code === "ERR_WORKER_OUT_OF_MEMORY"
          ? `ran out of memory during the smoke run: its JavaScript heap is limited to ${this.#heapMb} MiB ` +
            "(a module that logs or allocates through the host without end?)"
          : `validation failed: ${error.message}`;
      this.#retire(entry, message);
    });
    worker.once("exit", (code) => this.#retire(entry, `validation stopped unexpectedly (exit ${code})`));
    return entry;
  }

  #start(entry: PoolWorker, job: Job): void {
    clearTimeout(entry.timer);
    entry.worker.ref();
    entry.job = job;
    entry.startedAt = performance.now();
    this.#scheduleLowering(entry);
    entry.timer = setTimeout(() => {
      // The module's memory cannot have passed the ceiling (validate.ts caps it), so a timeout is
      // time spent running, not memory: say both.
      const limit = mib(job.memoryLimitBytes);
      this.#retire(
        entry,
        `did not finish within ${this.timeoutMs} ms: it was still running (a loop that never returns?); ` +
          `its memory stayed within the ${limit} limit`,
      );
    }, this.timeoutMs);
    const request = job.request;
    // A module the worker has warm is not sent again.
    const message: WorkerRequest =
      request.kind === "configure" && entry.warm.has(request.job.sha256)
        ? { kind: "configure", job: { ...request.job, bytes: undefined } }
        : request;
    entry.worker.postMessage(message);
  }

  /** Lowers the worker's priority once its job has run #lowerAfterMs (when its thread id is known). */
  #scheduleLowering(entry: PoolWorker): void {
    clearTimeout(entry.lowerTimer);
    entry.lowerTimer = undefined;
    if (entry.tid === undefined || entry.startedAt === undefined) return;
    if (!Number.isFinite(this.#lowerAfterMs)) return;
    const tid = entry.tid;
    const wait = Math.max(0, this.#lowerAfterMs - (performance.now() - entry.startedAt));
    entry.lowerTimer = setTimeout(() => {
      if (entry.gone || !entry.job) return;
      try {
        setPriority(tid, LOW_PRIORITY);
        entry.lowered = true;
      } catch {
        // Not permitted or not supported here: the time limit still bounds it.
      }
    }, wait);
  }

  #finish(entry: PoolWorker, reply: WorkerReply): void {
    clearTimeout(entry.timer);
    clearTimeout(entry.lowerTimer);
    const job = entry.job;
    entry.job = undefined;
    entry.startedAt = undefined;
    if (entry.lowered) this.#retire(entry);
    else this.#idleFrom(entry);
    job?.settle(reply);
    this.#dispatch();
  }

  /** Keeps a worker for the next job; idle workers neither keep the process alive nor stay for ever. */
  #idleFrom(entry: PoolWorker): void {
    entry.worker.unref();
    clearTimeout(entry.timer);
    entry.timer = undefined;
    if (Number.isFinite(this.#idleMs)) {
      entry.timer = setTimeout(() => this.#retire(entry), this.#idleMs);
      entry.timer.unref();
    }
    this.#idle.push(entry);
  }

  /** Ends a worker (a stuck one is terminated) and answers its job, if it had one, with `reason`. */
  #retire(entry: PoolWorker, reason?: string): void {
    if (entry.gone) return;
    entry.gone = true;
    clearTimeout(entry.timer);
    clearTimeout(entry.lowerTimer);
    this.#workers.delete(entry);
    const idle = this.#idle.indexOf(entry);
    if (idle >= 0) this.#idle.splice(idle, 1);
    void entry.worker.terminate();
    const job = entry.job;
    entry.job = undefined;
    if (job) job.settle(reason ?? "validation stopped unexpectedly");
    if (!this.#closed) this.#dispatch();
  }
}

/** One validation in a worker of its own (a pool of one, closed after). */
export async function validateModuleIsolated(
  bytes: Uint8Array,
  options: ValidateOptions = {},
  limits: IsolationLimits = {},
): Promise<ValidateResult> {
  const pool = new ValidationPool({ ...limits, size: 1 });
  try {
    return await pool.validate(bytes, options);
  } finally {
    await pool.close();
  }
}
