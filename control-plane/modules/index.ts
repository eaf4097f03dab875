// The module registry: validation of uploaded Proxy-Wasm modules, their content-addressed bytes,
// and their publication as WasmModule resources.
export {
  createFileBlobStore,
  createMemoryBlobStore,
  type FileBlobStore,
  type FileBlobStoreOptions,
  isSha256,
  MODULES_DIR,
  type ModuleBlobStore,
  sha256Hex,
} from "./blobs.ts";
export {
  DEFAULT_VALIDATION_HEAP_MB,
  DEFAULT_VALIDATION_TIMEOUT_MS,
  defaultPoolSize,
  type IsolationLimits,
  ValidationPool,
  type ValidationPoolOptions,
  validateModuleIsolated,
} from "./isolate.ts";
export { declaredMemories, limitMemory, MEMORY_REQUEST_EXPORT, PAGE_BYTES } from "./memory-limit.ts";
export {
  BUILTIN_MODULE_PATH,
  createModuleRegistry,
  loadBuiltinModule,
  type ModuleRegistryOptions,
} from "./registry.ts";
export { type ModuleRegistry, ModuleRejectedError, type PushOptions, type PushResult } from "./types.ts";
export {
  ABI_VERSION,
  MAX_MODULE_BYTES,
  type ValidateOptions,
  type ValidateResult,
  validateModule,
} from "./validate.ts";
