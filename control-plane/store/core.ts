// Logic shared by every ResourceStore implementation, so that the SQLite store and the
// in-memory one cannot drift apart: change validation, optimistic-concurrency checks,
// the shape of stored documents and results, key ordering and watcher fan-out.
// Implementations only supply "what is stored under (kind, name) right now" and execute
// the planned writes inside their own transaction.

import { Buffer } from "node:buffer";
import { ConflictError, InvalidChangeError } from "./errors.ts";
import {
  type AppliedChange,
  type ApplyResult,
  type Change,
  type ChangedKey,
  isInternalKind,
  type ResourceInput,
  type StoredResource,
  type WatchEvent,
  type WatchListener,
} from "./types.ts";

/** What the planner needs to know about a stored resource. */
export interface ExistingEntry {
  version: string;
  createdAt: string;
}

export type Lookup = (kind: string, name: string) => ExistingEntry | undefined;

export type PlannedWrite =
  | { op: "put"; kind: string; name: string; version: number; createdAt: string; json: string }
  | { op: "delete"; kind: string; name: string };

export interface ApplyPlan {
  result: ApplyResult;
  /** Empty when the apply changes nothing: the caller then commits nothing. */
  writes: PlannedWrite[];
  /**
   * The event to send once the writes have committed, with the revision to store; undefined when
   * writes is empty, or when they are of internal kinds only (no revision, no watcher).
   */
  event: WatchEvent | undefined;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isNonEmptyString(value: unknown): value is string {
  return typeof value === "string" && value.length > 0;
}

type ValidChange =
  | { op: "put"; kind: string; name: string; resource: ResourceInput; expected: string | null | undefined }
  | { op: "delete"; kind: string; name: string; expected: string | null | undefined };

// Inputs come from the API layer, possibly straight from parsed JSON, so the types are
// checked at runtime too: a malformed change must fail the apply, not corrupt the store.
function validateChange(change: unknown, index: number): ValidChange {
  if (!isRecord(change)) throw new InvalidChangeError(index, "not an object");
  const expected = change.expectedVersion;
  if (expected !== undefined && expected !== null && typeof expected !== "string") {
    throw new InvalidChangeError(index, "expectedVersion must be a string, null or absent");
  }
  if (change.op === "put") {
    const resource = change.resource;
    if (!isRecord(resource)) throw new InvalidChangeError(index, "put without a resource object");
    if (!isNonEmptyString(resource.apiVersion)) {
      throw new InvalidChangeError(index, "resource.apiVersion must be a non-empty string");
    }
    if (!isNonEmptyString(resource.kind)) {
      throw new InvalidChangeError(index, "resource.kind must be a non-empty string");
    }
    const metadata = resource.metadata;
    if (!isRecord(metadata) || !isNonEmptyString(metadata.name)) {
      throw new InvalidChangeError(index, "resource.metadata.name must be a non-empty string");
    }
    const labels = metadata.labels;
    if (labels !== undefined) {
      if (!isRecord(labels) || !Object.values(labels).every((v) => typeof v === "string")) {
        throw new InvalidChangeError(index, "resource.metadata.labels must map strings to strings");
      }
    }
    return {
      op: "put",
      kind: resource.kind,
      name: metadata.name,
      // The fields above were just checked; the rest of ResourceInput is optional.
      resource: resource as unknown as ResourceInput,
      expected,
    };
  }
  if (change.op === "delete") {
    if (!isNonEmptyString(change.kind) || !isNonEmptyString(change.name)) {
      throw new InvalidChangeError(index, "delete needs a non-empty kind and name");
    }
    return { op: "delete", kind: change.kind, name: change.name, expected };
  }
  throw new InvalidChangeError(index, `unknown op ${JSON.stringify(change.op)} (expected "put" or "delete")`);
}

/** The document as stored: only the known fields, store-owned metadata filled in. */
function storedJson(
  resource: ResourceInput,
  version: number,
  createdAt: string,
  updatedAt: string,
  index: number,
) {
  const labels = resource.metadata.labels;
  const metadata: StoredResource["metadata"] = {
    name: resource.metadata.name,
    ...(labels === undefined ? {} : { labels }),
    resourceVersion: String(version),
    createdAt,
    updatedAt,
  };
  const doc: StoredResource = {
    apiVersion: resource.apiVersion,
    kind: resource.kind,
    metadata,
    spec: resource.spec === undefined ? null : resource.spec,
  };
  try {
    return JSON.stringify(doc);
  } catch (error) {
    throw new InvalidChangeError(index, `resource is not JSON-serialisable: ${(error as Error).message}`);
  }
}

/**
 * Validates the changes, checks every precondition against `lookup` (the state at the start
 * of the transaction) and computes the writes. Throws InvalidChangeError or ConflictError
 * before anything is written, which is what makes an apply all or nothing in the memory
 * store; the SQLite store additionally runs it inside BEGIN IMMEDIATE.
 */
export function planApply(
  changes: readonly Change[],
  lookup: Lookup,
  currentRevision: number,
  now: Date,
): ApplyPlan {
  if (!Array.isArray(changes)) throw new InvalidChangeError(-1, "changes must be an array");
  const valid = changes.map((change: unknown, index) => validateChange(change, index));

  // Two changes to one key would make the result depend on an ordering rule callers would
  // have to know about (and the second one's expectedVersion could never be right).
  const seen = new Set<string>();
  valid.forEach((change, index) => {
    const key = JSON.stringify([change.kind, change.name]);
    if (seen.has(key)) {
      throw new InvalidChangeError(
        index,
        `${change.kind}/${change.name} appears more than once in one apply`,
      );
    }
    seen.add(key);
  });

  // The control plane's own records never share an apply with the mesh: they move no revision.
  const internal = valid.length > 0 && valid.every((change) => isInternalKind(change.kind));
  valid.forEach((change, index) => {
    if (!internal && isInternalKind(change.kind)) {
      throw new InvalidChangeError(
        index,
        `${change.kind} is internal and cannot be applied with other kinds`,
      );
    }
  });

  const existing = valid.map((change) => lookup(change.kind, change.name));
  valid.forEach((change, index) => {
    if (change.expected === undefined) return;
    const actual = existing[index]?.version ?? null;
    if (actual !== change.expected)
      throw new ConflictError(change.kind, change.name, change.expected, actual);
  });

  const newRevision = currentRevision + 1;
  const timestamp = now.toISOString();
  const writes: PlannedWrite[] = [];
  const applied: AppliedChange[] = [];
  const keys: ChangedKey[] = [];
  valid.forEach((change, index) => {
    const before = existing[index];
    const { kind, name } = change;
    if (change.op === "put") {
      const createdAt = before?.createdAt ?? timestamp;
      const version = internal ? Number(before?.version ?? 0) + 1 : newRevision;
      const json = storedJson(change.resource, version, createdAt, timestamp, index);
      writes.push({ op: "put", kind, name, version, createdAt, json });
      applied.push({ op: "put", kind, name, created: before === undefined, resource: JSON.parse(json) });
      keys.push({ op: "put", kind, name });
    } else if (before === undefined) {
      applied.push({ op: "delete", kind, name, deleted: false });
    } else {
      writes.push({ op: "delete", kind, name });
      applied.push({ op: "delete", kind, name, deleted: true });
      keys.push({ op: "delete", kind, name });
    }
  });

  if (writes.length === 0 || internal) {
    return { result: { revision: currentRevision, changes: applied }, writes, event: undefined };
  }
  return {
    result: { revision: newRevision, changes: applied },
    writes,
    event: { revision: newRevision, changes: keys },
  };
}

/**
 * Orders strings by Unicode code point, which is byte order of their UTF-8 encoding and so
 * the order SQLite's default BINARY collation gives `ORDER BY kind, name`. (JavaScript's
 * default sort compares UTF-16 code units, which disagrees above U+FFFF.)
 */
export function compareCodePoints(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}

export function compareResources(a: StoredResource, b: StoredResource): number {
  return compareCodePoints(a.kind, b.kind) || compareCodePoints(a.metadata.name, b.metadata.name);
}

/** Watcher registry with the delivery rules of ResourceStore.watch. */
export class Watchers {
  // One entry per subscription, so subscribing the same function twice gives two
  // independent subscriptions.
  readonly #entries = new Set<{ listener: WatchListener }>();

  add(listener: WatchListener): () => void {
    const entry = { listener };
    this.#entries.add(entry);
    return () => {
      this.#entries.delete(entry);
    };
  }

  notify(event: WatchEvent): void {
    // Snapshot: a listener that (un)subscribes during delivery affects the next event only.
    for (const entry of [...this.#entries]) {
      try {
        // Each listener gets its own copy so one cannot alter what the next one sees.
        entry.listener(structuredClone(event));
      } catch (error) {
        // The apply has committed; failing its caller would invite a retry of a write that
        // succeeded, and skipping the remaining listeners would leave them stale.
        console.error("wasmesh store: a watch listener threw; the apply is committed", error);
      }
    }
  }

  clear(): void {
    this.#entries.clear();
  }
}
