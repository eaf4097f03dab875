// Other meshes' resources (Istio, Kuma, Consul) as wasmesh's: converting documents (convert.ts, one
// file per mesh beside it) and planning what applying or deleting originals does to the store
// (apply.ts). The API and the CLI import this file only.
export { type ImportPlan, type IncomingDocument, importedName, planImports } from "./apply.ts";
export { convert, FIELDS, isForeign, MESHES, sourceOf } from "./convert.ts";
export { parseDuration, wholeMillis } from "./durations.ts";
export type { FieldSupport, FieldTable, Support } from "./fields.ts";
export { serviceOfHost, serviceOfPrincipal } from "./istio.ts";
export { isDnsLabel, nativeName } from "./naming.ts";
export * from "./types.ts";
