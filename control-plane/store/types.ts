// The resource store's contract. It stores generic resources (it knows nothing of the
// resource model in control-plane/resources/), so that the model and the store evolve
// separately and a PostgreSQL store can later replace the embedded SQLite one behind
// this interface. Every method is async for that reason, even though node:sqlite is not.

/**
 * Kinds named with this prefix are the control plane's own records (API tokens), kept in the same
 * database as the mesh but no part of it: list() without a kind leaves them out (list(kind) and
 * get() find them), writing them moves no store revision and wakes no watcher (nothing a proxy or
 * the edge is sent depends on them), and their resourceVersion counts the writes of that record
 * alone. One apply holds either internal kinds only or none (InvalidChangeError otherwise).
 */
export const INTERNAL_KIND_PREFIX = "internal:";

export const isInternalKind = (kind: string): boolean => kind.startsWith(INTERNAL_KIND_PREFIX);

/** A resource as the store returns it: the caller's document plus store-owned metadata. */
export interface StoredResource {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    labels?: Record<string, string>;
    /**
     * Decimal string of the store revision that last wrote this resource; only ever increases.
     * (An internal kind's: how many times this record was written.)
     */
    resourceVersion: string;
    /** ISO 8601 time of the first put (kept across updates). */
    createdAt: string;
    /** ISO 8601 time of the last put. */
    updatedAt: string;
  };
  spec: unknown;
}

/**
 * A resource as a caller writes it. `resourceVersion`, `createdAt` and `updatedAt` are owned
 * by the store: they are accepted (so a document read from the store can be written back)
 * but ignored. Only apiVersion, kind, metadata.name, metadata.labels and spec are stored.
 * spec must be JSON-serialisable; an undefined spec is stored as null.
 */
export interface ResourceInput {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    labels?: Record<string, string>;
    resourceVersion?: string;
    createdAt?: string;
    updatedAt?: string;
  };
  spec?: unknown;
}

/**
 * One change of an apply. expectedVersion is its optimistic-concurrency precondition:
 * - omitted (undefined): write unconditionally;
 * - a string: the resource must exist with exactly this resourceVersion;
 * - null: the resource must not exist (create-only; lets the API answer 409 to a create
 *   of an existing name without a racy read-then-write).
 */
export type Change =
  | { op: "put"; resource: ResourceInput; expectedVersion?: string | null }
  | { op: "delete"; kind: string; name: string; expectedVersion?: string | null };

export interface ApplyOptions {
  /**
   * Run every check (validation and versions) against the current state inside the same
   * transaction a real apply would use, then roll back: nothing is stored, the revision
   * does not move and no watcher is notified. The result is what the apply would return.
   */
  dryRun?: boolean;
}

/** What one change did, in the order of the changes given to apply(). */
export type AppliedChange =
  | { op: "put"; kind: string; name: string; created: boolean; resource: StoredResource }
  /** deleted is false when the resource did not exist (and no version was expected): a no-op. */
  | { op: "delete"; kind: string; name: string; deleted: boolean };

export interface ApplyResult {
  /**
   * The store revision after the apply. An apply that changes something bumps it by exactly
   * one however many changes it holds; an apply that changes nothing (no changes, or only
   * deletes of absent resources) commits nothing and leaves it as it was.
   */
  revision: number;
  changes: AppliedChange[];
}

/** A key that a committed apply changed. */
export interface ChangedKey {
  op: "put" | "delete";
  kind: string;
  name: string;
}

/** Sent to watchers once per committed apply that changed something. */
export interface WatchEvent {
  revision: number;
  /** Only the keys actually changed (no-op deletes are left out), in change order. */
  changes: ChangedKey[];
}

export type WatchListener = (event: WatchEvent) => void;

export interface ResourceStore {
  /** The resource, or undefined if absent. */
  get(kind: string, name: string): Promise<StoredResource | undefined>;
  /**
   * All resources (or those of one kind), ordered by kind then name, by Unicode code point. Without
   * a kind, internal kinds (INTERNAL_KIND_PREFIX) are left out.
   */
  list(kind?: string): Promise<StoredResource[]>;
  /**
   * All or nothing, in one transaction. Throws ConflictError if any precondition fails and
   * InvalidChangeError for a malformed change (including two changes to the same key), and
   * StoreUnwritableError when the storage cannot take the write; in every case nothing is stored
   * and the revision does not move.
   */
  apply(changes: readonly Change[], options?: ApplyOptions): Promise<ApplyResult>;
  /**
   * The current store revision: 0 for an empty new store, +1 per committed apply (of internal kinds:
   * +0).
   */
  revision(): Promise<number>;
  /**
   * Resolves if an apply could be stored now; rejects with StoreUnwritableError saying why not
   * (apply() then rejects with it too). Writes nothing: for readiness checks, cheap to call often.
   */
  checkWritable(): Promise<void>;
  /**
   * Called synchronously after each committed apply of this store instance (writes by other
   * processes sharing the database are not observed). Returns the unsubscribe function.
   * A listener that throws does not fail the apply (it has committed) or starve the others;
   * its error is logged.
   */
  watch(listener: WatchListener): () => void;
  /** Idempotent. Afterwards the other methods reject (watch: throws) with StoreClosedError. */
  close(): Promise<void>;
}
