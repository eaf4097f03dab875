// The resource model's public surface: schemas and types (schema.ts), validation of one resource and
// of references across a set (validate.ts), and parsing of YAML/JSON manifests (manifests.ts).
export {
  formatManifestError,
  type ManifestError,
  type ManifestResult,
  parseManifests,
  parseYaml,
  type YamlResult,
} from "./manifests.ts";
export {
  AccessRule,
  API_VERSION,
  CircuitBreaker,
  KINDS,
  type Kind,
  Labels,
  MESH_MODULE,
  MeshPolicy,
  Metadata,
  Resource,
  ResourceName,
  Route,
  RouteDestination,
  RouteRule,
  resourceSchemas,
  Service,
  ServicePort,
  Subset,
  WasmModule,
  WasmPlugin,
  Workload,
} from "./schema.ts";
export {
  type FieldError,
  MAX_DEPTH,
  type ReferenceError,
  type ReferenceResult,
  type ResourceResult,
  selects,
  type ValidateOptions,
  validateReferences,
  validateResource,
} from "./validate.ts";
