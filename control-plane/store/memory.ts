// In-memory ResourceStore for unit tests of other layers (API, translation, xDS). Same
// semantics as the SQLite store (the shared suite in test/control-plane/store.test.ts runs
// against both); not durable. Documents are kept as JSON text, exactly like the SQLite
// store, so callers get fresh copies and cannot alter stored state through a returned object.

import { compareResources, type ExistingEntry, planApply, Watchers } from "./core.ts";
import { StoreClosedError } from "./errors.ts";
import {
  type ApplyOptions,
  type ApplyResult,
  type Change,
  isInternalKind,
  type ResourceStore,
  type StoredResource,
  type WatchListener,
} from "./types.ts";

export interface MemoryStoreOptions {
  /** Clock for createdAt/updatedAt; tests inject a fixed one. Defaults to the system clock. */
  now?: () => Date;
}

interface Entry extends ExistingEntry {
  json: string;
}

class MemoryStore implements ResourceStore {
  readonly #now: () => Date;
  readonly #watchers = new Watchers();
  // kind -> name -> entry
  readonly #entries = new Map<string, Map<string, Entry>>();
  #revision = 0;
  #closed = false;

  constructor(options: MemoryStoreOptions) {
    this.#now = options.now ?? (() => new Date());
  }

  #assertOpen(): void {
    if (this.#closed) throw new StoreClosedError();
  }

  async get(kind: string, name: string): Promise<StoredResource | undefined> {
    this.#assertOpen();
    const entry = this.#entries.get(kind)?.get(name);
    return entry === undefined ? undefined : JSON.parse(entry.json);
  }

  async list(kind?: string): Promise<StoredResource[]> {
    this.#assertOpen();
    const groups =
      kind === undefined
        ? [...this.#entries].flatMap(([k, group]) => (isInternalKind(k) ? [] : [group]))
        : [this.#entries.get(kind) ?? new Map()];
    const resources: StoredResource[] = [];
    for (const group of groups) for (const entry of group.values()) resources.push(JSON.parse(entry.json));
    return resources.sort(compareResources);
  }

  async apply(changes: readonly Change[], options: ApplyOptions = {}): Promise<ApplyResult> {
    this.#assertOpen();
    // planApply throws before anything below runs, so a rejected apply changes nothing.
    const plan = planApply(
      changes,
      (kind, name) => this.#entries.get(kind)?.get(name),
      this.#revision,
      this.#now(),
    );
    if (options.dryRun || plan.writes.length === 0) return plan.result;
    for (const write of plan.writes) {
      if (write.op === "put") {
        let group = this.#entries.get(write.kind);
        if (group === undefined) {
          group = new Map();
          this.#entries.set(write.kind, group);
        }
        group.set(write.name, {
          version: String(write.version),
          createdAt: write.createdAt,
          json: write.json,
        });
      } else {
        const group = this.#entries.get(write.kind);
        group?.delete(write.name);
        if (group?.size === 0) this.#entries.delete(write.kind);
      }
    }
    if (plan.event !== undefined) {
      this.#revision = plan.event.revision;
      this.#watchers.notify(plan.event);
    }
    return plan.result;
  }

  async revision(): Promise<number> {
    this.#assertOpen();
    return this.#revision;
  }

  async checkWritable(): Promise<void> {
    this.#assertOpen();
  }

  watch(listener: WatchListener): () => void {
    this.#assertOpen();
    return this.#watchers.add(listener);
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#watchers.clear();
  }
}

export function createMemoryStore(options: MemoryStoreOptions = {}): ResourceStore {
  return new MemoryStore(options);
}
