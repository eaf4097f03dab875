// The control plane's resource store. Other layers depend on ResourceStore only;
// openSqliteStore is the default implementation, createMemoryStore the one for unit tests.

export { ConflictError, InvalidChangeError, StoreClosedError, StoreUnwritableError } from "./errors.ts";
export { createMemoryStore, type MemoryStoreOptions } from "./memory.ts";
export {
  DATABASE_FILE,
  openSqliteStore,
  SCHEMA_VERSION,
  type SqliteResourceStore,
  type SqliteStoreOptions,
} from "./sqlite.ts";
export type {
  AppliedChange,
  ApplyOptions,
  ApplyResult,
  Change,
  ChangedKey,
  ResourceInput,
  ResourceStore,
  StoredResource,
  WatchEvent,
  WatchListener,
} from "./types.ts";
export { INTERNAL_KIND_PREFIX, isInternalKind } from "./types.ts";
