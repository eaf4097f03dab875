// Errors the store throws. Classes (not codes) so the API layer can map them with
// instanceof: ConflictError -> 409, InvalidChangeError -> 400, StoreClosedError and
// StoreUnwritableError -> 503.

/** An optimistic-concurrency precondition failed; the whole apply was rejected. */
export class ConflictError extends Error {
  // resourceKind/resourceName rather than kind/name: Error already owns `name` (the class
  // name that stack traces and logs print).
  readonly resourceKind: string;
  readonly resourceName: string;
  /** The version the change expected; null when it expected the resource to be absent. */
  readonly expected: string | null;
  /** The stored version; null when the resource does not exist. */
  readonly actual: string | null;

  constructor(kind: string, name: string, expected: string | null, actual: string | null) {
    const want = expected === null ? "no existing resource" : `resourceVersion "${expected}"`;
    const found = actual === null ? "it does not exist" : `found resourceVersion "${actual}"`;
    super(`conflict on ${kind}/${name}: expected ${want}, but ${found}`);
    this.name = "ConflictError";
    this.resourceKind = kind;
    this.resourceName = name;
    this.expected = expected;
    this.actual = actual;
  }
}

/** A change is malformed (bad op, missing kind/name, same key twice, unserialisable spec). */
export class InvalidChangeError extends Error {
  /** Index of the offending change in the apply's change list. */
  readonly index: number;

  constructor(index: number, reason: string) {
    super(`change ${index}: ${reason}`);
    this.name = "InvalidChangeError";
    this.index = index;
  }
}

export class StoreClosedError extends Error {
  constructor() {
    super("the resource store is closed");
    this.name = "StoreClosedError";
  }
}

/**
 * Nothing can be stored right now, for a reason outside the request: a read-only database or file
 * system, a full disk, a lock another process holds, an I/O error. Reads may still work.
 */
export class StoreUnwritableError extends Error {
  /** Why, in the storage's words, e.g. "attempt to write a readonly database". */
  readonly reason: string;

  constructor(reason: string, options?: { cause?: unknown }) {
    super(`the resource store cannot be written: ${reason}`, options);
    this.name = "StoreUnwritableError";
    this.reason = reason;
  }
}
