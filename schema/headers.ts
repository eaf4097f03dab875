// The HTTP headers the filter module (assembly/filters/mesh.ts) sets, named once for TypeScript:
// the control plane's outbound route, the edge worker, the demo and the tests import them from
// here. AssemblyScript cannot import this file, so test/filters/reserved-headers.test.ts runs
// build/mesh.wasm through the TypeScript host and fails unless the module sets exactly these names.
// docs/filters.md documents them.

/** The cluster a routed request goes to: Envoy's `cluster_header`, the edge worker's origin. */
export const CLUSTER_HEADER = "x-wasmesh-cluster";

/**
 * Set by the routing filter's header rules (which the control plane writes, not the module) to say
 * which Route rule matched, so that the rule's header changes and faults apply only to the
 * requests it routes. Removed from the client's request first.
 */
export const RULE_HEADER = "x-wasmesh-rule";

/**
 * The mesh's own routing decision, which no upstream gets: Envoy's outbound route removes these
 * (`request_headers_to_remove`), and the edge worker does not forward them to an origin.
 */
export const ROUTING_HEADERS: readonly string[] = [CLUSTER_HEADER, RULE_HEADER];

/** On the local reply of a header rule's `deny`: the rule's name. */
export const DENIED_HEADER = "x-wasmesh-denied";

/** On the breaker's local 503: `open`, or `overflow` past `maxConcurrent`. */
export const CIRCUIT_HEADER = "x-wasmesh-circuit";

/** On the reply of a header rule's `fault.abort`: `abort`. */
export const FAULT_HEADER = "x-wasmesh-fault";
