// Istio's resources as wasmesh's: networking.istio.io VirtualService → Route, DestinationRule →
// subsets (for the Routes) and CircuitBreakers, ServiceEntry → Services and static Workloads,
// WorkloadEntry → a static Workload, Gateway → nothing (the edge worker serves north-south traffic:
// warnings, and errors for what it cannot serve), security.istio.io PeerAuthentication → MeshPolicy's
// mTLS mode, AuthorizationPolicy → AccessRules (and MeshPolicy's defaultAccess), and
// extensions.istio.io WasmPlugin → a WasmPlugin running a module of the registry (ConvertOptions.modules),
// and telemetry.istio.io Telemetry → a Tracing and an AccessLog (the mesh's, or a service's).
//
// FIELDS below is the support matrix the converter runs on: every field of a document's spec is
// looked up there (unknown fields are warnings), `ignored` fields are warnings and `refused` fields
// errors, each with the reason; docs/imports.md lists the same table (a test compares them).
//
// Addressing (an Istio host or principal → a wasmesh service name), decided once here:
// - `ratings` in a resource of namespace `prod` (metadata.namespace, else --namespace) is
//   `ratings.prod`, as discovery names a Kubernetes Service; without a namespace (universal) it is
//   `ratings`. `ratings.prod`, `ratings.prod.svc` and `ratings.prod.svc.cluster.local` are
//   `ratings.prod` in both, except that a universal resource's `ratings.default…` is `ratings`
//   (a universal service's identity is namespace default's, ca/spiffe.ts). A `:port` is dropped (a
//   wasmesh service is addressed by name).
// - A host of another form (`api.example.com`) is a service only when a ServiceEntry of the input
//   declares it: the entry's service, its labels joined with '-' (`api-example-com`), which callers
//   must send as Host (serviceOfDeclaredHost, resolveHost; serviceOfHost itself refuses it).
// - A principal `<td>/ns/<ns>/sa/<sa>` is the service `<sa>.<ns>` in a namespaced resource; in a
//   universal one it is `<sa>` when <ns> is `default` (wasmesh's universal identity of a service,
//   ca/spiffe.ts), else `<sa>.<ns>`.
import {
  type AccessLog,
  type AccessRule,
  type CircuitBreaker,
  type MtlsMode,
  type Route,
  type RouteRule,
  type Service,
  ServiceName,
  type Tracing,
  type WasmPlugin,
  type Workload,
} from "../resources/index.ts";
import {
  auditFields,
  type Context,
  type FieldTable,
  ignored,
  isObj,
  type Obj,
  ok,
  partly,
  refused,
} from "./fields.ts";
import { isDnsLabel, nativeName } from "./naming.ts";
import {
  type AccessLogBackend,
  headerTag,
  literalTag,
  parseBackend,
  percentOf as percentage,
  type TraceTag,
} from "./telemetry.ts";
import {
  concatChanges,
  duration,
  type HeaderChanges,
  headerChanges,
  MAX_TIMEOUT_MS,
  native,
  percents,
} from "./translate.ts";
import type { ConvertOptions, SourceMesh } from "./types.ts";

export const NETWORKING = "networking.istio.io";
export const SECURITY = "security.istio.io";
export const EXTENSIONS = "extensions.istio.io";
export const TELEMETRY = "telemetry.istio.io";
const VERSIONS: Record<string, readonly string[]> = {
  [NETWORKING]: ["v1alpha3", "v1beta1", "v1"],
  [SECURITY]: ["v1beta1", "v1"],
  [EXTENSIONS]: ["v1alpha1"],
  [TELEMETRY]: ["v1alpha1", "v1"],
};
export const ISTIO_KINDS: Record<string, string> = {
  VirtualService: NETWORKING,
  DestinationRule: NETWORKING,
  ServiceEntry: NETWORKING,
  WorkloadEntry: NETWORKING,
  Gateway: NETWORKING,
  PeerAuthentication: SECURITY,
  AuthorizationPolicy: SECURITY,
  WasmPlugin: EXTENSIONS,
  Telemetry: TELEMETRY,
};

/** Istio's root namespace: its PeerAuthentication and AuthorizationPolicy hold for the whole mesh. */
export const ROOT_NAMESPACE = "istio-system";

/**
 * Where a Telemetry gives its tracing provider's backend, which Istio reads from MeshConfig's
 * extensionProviders and wasmesh has no copy of: `<protocol> <url>` as a native Tracing's backend,
 * e.g. `otlp-grpc http://otel-collector.observability:4317`.
 */
export const TRACING_BACKEND_ANNOTATION = "wasmesh.io/tracing-backend";

const OUTLIER_DETECTION =
  "a CircuitBreaker: wasmesh's breaker also opens the circuit for the whole subset (503 while open) after that many consecutive errors, where Istio only ejects hosts";

const SERVICE_ACCOUNT =
  "the Workload's serviceAccount (its identity); callers still send plain text: a static Workload takes no mTLS (a data-plane agent registers its own Workload for that)";
const LOCALITY = "the zone (<region>/<zone>/…) is the Workload's zone; region and subzone are not carried";
const NETWORK = "one network: every Workload is reached at its address";
const WEIGHT = "Workloads are balanced round robin, unweighted";

const MIRROR = ignored("mirroring is not supported: no copy of the traffic is sent");

function trafficPolicyFields(at: string): FieldTable {
  return {
    [at]: partly("outlierDetection and connectionPool.http.http2MaxRequests are carried (see below)"),
    [`${at}.outlierDetection`]: partly(OUTLIER_DETECTION),
    [`${at}.outlierDetection.consecutive5xxErrors`]: ok,
    [`${at}.outlierDetection.consecutiveGatewayErrors`]: partly(
      "wasmesh's breaker counts every 5xx, not only 502, 503 and 504",
    ),
    [`${at}.outlierDetection.consecutiveErrors`]: partly(
      "deprecated in Istio (502, 503 and 504); wasmesh's breaker counts every 5xx",
    ),
    [`${at}.outlierDetection.interval`]: ok,
    [`${at}.outlierDetection.baseEjectionTime`]: ok,
    [`${at}.outlierDetection.maxEjectionPercent`]: ok,
    [`${at}.outlierDetection.minHealthPercent`]: ignored("no panic threshold in wasmesh's breaker"),
    [`${at}.outlierDetection.splitExternalLocalOriginErrors`]: ignored(
      "local-origin errors are not counted apart",
    ),
    [`${at}.outlierDetection.consecutiveLocalOriginFailures`]: ignored(
      "local-origin errors are not counted apart",
    ),
    [`${at}.connectionPool`]: partly("only http.http2MaxRequests is carried"),
    [`${at}.connectionPool.tcp`]: ignored("no TCP connection limits in wasmesh"),
    [`${at}.connectionPool.http`]: partly("only http2MaxRequests is carried"),
    [`${at}.connectionPool.http.http2MaxRequests`]: partly(
      "the CircuitBreaker's maxConcurrent, when outlierDetection makes one",
    ),
    [`${at}.connectionPool.http.http1MaxPendingRequests`]: ignored("no pending-request limit in wasmesh"),
    [`${at}.connectionPool.http.maxRequestsPerConnection`]: ignored("no per-connection limit in wasmesh"),
    [`${at}.connectionPool.http.maxRetries`]: ignored("no limit on concurrent retries in wasmesh"),
    [`${at}.connectionPool.http.idleTimeout`]: ignored("no upstream idle timeout in wasmesh"),
    [`${at}.connectionPool.http.h2UpgradePolicy`]: ignored("the protocol follows the Service's port"),
    [`${at}.connectionPool.http.useClientProtocol`]: ignored("the protocol follows the Service's port"),
    [`${at}.connectionPool.http.maxConcurrentStreams`]: ignored("no HTTP/2 stream limit in wasmesh"),
    [`${at}.loadBalancer`]: ignored(
      "wasmesh balances round robin; consistentHash has no equivalent (a Route rule's sticky picks among destinations, not hosts)",
    ),
    [`${at}.tls`]: partly(
      "ISTIO_MUTUAL and DISABLE are warnings (wasmesh originates mesh mTLS itself, by MeshPolicy and Service modes); SIMPLE and MUTUAL are errors",
    ),
    [`${at}.portLevelSettings`]: ignored(
      "policies per port are not supported: the port's policy is not applied",
    ),
  };
}

/** Every field of each kind's spec the converter knows, with how far it is carried. */
export const FIELDS: Record<string, FieldTable> = {
  VirtualService: {
    "spec.hosts": ok,
    "spec.gateways": partly(
      '"mesh", plus gateways as a warning: no gateway runs the Route, the edge worker applies it to north-south requests; gateways without "mesh" are an error (sidecars would apply it too)',
    ),
    "spec.exportTo": ignored("visibility is not scoped: the Route applies to every sidecar"),
    "spec.http": ok,
    "spec.http[].name": ok,
    "spec.http[].match": ok,
    "spec.http[].match[].name": ok,
    "spec.http[].match[].uri": ok,
    "spec.http[].match[].authority": ok,
    "spec.http[].match[].headers": ok,
    "spec.http[].match[].withoutHeaders": partly("presence only ({}): absent"),
    "spec.http[].match[].queryParams": ok,
    "spec.http[].match[].method": partly("exact only"),
    "spec.http[].match[].ignoreUriCase": ok,
    "spec.http[].match[].scheme": refused("matching on the scheme is not supported"),
    "spec.http[].match[].port": refused("matching on the port is not supported"),
    "spec.http[].match[].sourceLabels": refused("matching on the caller's labels is not supported"),
    "spec.http[].match[].sourceNamespace": refused("matching on the caller's namespace is not supported"),
    "spec.http[].match[].gateways": refused("routing at gateways is not supported"),
    "spec.http[].match[].statPrefix": ignored("no per-match statistics"),
    "spec.http[].route": ok,
    "spec.http[].route[].destination": ok,
    "spec.http[].route[].destination.host": ok,
    "spec.http[].route[].destination.subset": ok,
    "spec.http[].route[].destination.port": ignored(
      "a destination is a service, reached on the port the request came to",
    ),
    "spec.http[].route[].weight": ok,
    "spec.http[].route[].headers": partly("with one destination only (a rule's header changes)"),
    "spec.http[].route[].headers.request": ok,
    "spec.http[].route[].headers.request.set": ok,
    "spec.http[].route[].headers.request.add": ok,
    "spec.http[].route[].headers.request.remove": ok,
    "spec.http[].route[].headers.response": ok,
    "spec.http[].route[].headers.response.set": ok,
    "spec.http[].route[].headers.response.add": ok,
    "spec.http[].route[].headers.response.remove": ok,
    "spec.http[].timeout": ok,
    "spec.http[].retries": ok,
    "spec.http[].retries.attempts": ok,
    "spec.http[].retries.perTryTimeout": ok,
    "spec.http[].retries.retryOn": partly("Envoy's condition names; status codes are errors"),
    "spec.http[].retries.retryRemoteLocalities": ignored("retries do not prefer other localities"),
    "spec.http[].retries.retryIgnorePreviousHosts": ignored("retries may pick the same host again"),
    "spec.http[].retries.backoff": ignored("Envoy's default back-off applies"),
    "spec.http[].fault": ok,
    "spec.http[].fault.delay": ok,
    "spec.http[].fault.delay.fixedDelay": ok,
    "spec.http[].fault.delay.percentage": ok,
    "spec.http[].fault.delay.percentage.value": ok,
    "spec.http[].fault.delay.percent": ok,
    "spec.http[].fault.delay.exponentialDelay": refused("exponential delays are not supported"),
    "spec.http[].fault.abort": ok,
    "spec.http[].fault.abort.httpStatus": ok,
    "spec.http[].fault.abort.percentage": ok,
    "spec.http[].fault.abort.percentage.value": ok,
    "spec.http[].fault.abort.grpcStatus": refused("gRPC status aborts are not supported"),
    "spec.http[].fault.abort.http2Error": refused("HTTP/2 error aborts are not supported"),
    "spec.http[].headers": ok,
    "spec.http[].headers.request": ok,
    "spec.http[].headers.request.set": ok,
    "spec.http[].headers.request.add": ok,
    "spec.http[].headers.request.remove": ok,
    "spec.http[].headers.response": ok,
    "spec.http[].headers.response.set": ok,
    "spec.http[].headers.response.add": ok,
    "spec.http[].headers.response.remove": ok,
    "spec.http[].redirect": refused("redirects are not supported"),
    "spec.http[].directResponse": refused("direct responses are not supported"),
    "spec.http[].delegate": refused("delegation is not supported"),
    "spec.http[].rewrite": refused("rewrites are not supported"),
    "spec.http[].mirror": MIRROR,
    "spec.http[].mirrors": MIRROR,
    "spec.http[].mirrorPercentage": MIRROR,
    "spec.http[].mirrorPercent": MIRROR,
    "spec.http[].corsPolicy": ignored("CORS is not answered by the mesh: the application's own headers hold"),
    "spec.tcp": refused("TCP routes are not supported"),
    "spec.tls": refused("TLS (SNI) routes are not supported"),
  },
  DestinationRule: {
    "spec.host": ok,
    "spec.subsets": ok,
    "spec.subsets[].name": ok,
    "spec.subsets[].labels": ok,
    ...trafficPolicyFields("spec.trafficPolicy"),
    ...trafficPolicyFields("spec.subsets[].trafficPolicy"),
    "spec.exportTo": ignored("visibility is not scoped: the policy applies to every sidecar"),
    "spec.workloadSelector": refused("a policy for some callers only is not supported"),
  },
  PeerAuthentication: {
    "spec.mtls": ok,
    "spec.mtls.mode": ok,
    "spec.selector": refused("mTLS per workload: set spec.mtls on the wasmesh Service instead"),
    "spec.portLevelMtls": refused("mTLS per port is not supported"),
  },
  AuthorizationPolicy: {
    "spec.selector": partly("matchLabels {app: <service>} only: the destination service"),
    "spec.selector.matchLabels": partly("{app: <service>} only"),
    "spec.targetRef": refused("policies attached to gateways are not supported"),
    "spec.targetRefs": refused("policies attached to gateways are not supported"),
    "spec.action": partly("ALLOW and DENY"),
    "spec.provider": refused("CUSTOM authorization is not supported"),
    "spec.rules": ok,
    "spec.rules[].from": ok,
    "spec.rules[].from[].source": ok,
    "spec.rules[].from[].source.principals": partly("exact <td>/ns/<ns>/sa/<sa> or *"),
    "spec.rules[].from[].source.namespaces": refused("AccessRules name source services, not namespaces"),
    "spec.rules[].from[].source.notNamespaces": refused("AccessRules name source services"),
    "spec.rules[].from[].source.notPrincipals": refused("negated sources are not supported"),
    "spec.rules[].from[].source.requestPrincipals": refused("end-user (JWT) identities are not supported"),
    "spec.rules[].from[].source.notRequestPrincipals": refused("end-user (JWT) identities are not supported"),
    "spec.rules[].from[].source.ipBlocks": refused("sources by IP address are not supported"),
    "spec.rules[].from[].source.notIpBlocks": refused("sources by IP address are not supported"),
    "spec.rules[].from[].source.remoteIpBlocks": refused("sources by IP address are not supported"),
    "spec.rules[].from[].source.notRemoteIpBlocks": refused("sources by IP address are not supported"),
    "spec.rules[].to": refused("AccessRules allow or deny a whole service: no operations (paths, methods)"),
    "spec.rules[].when": refused("conditions are not supported"),
  },
  ServiceEntry: {
    "spec.hosts": partly(
      "each a Service: <name>[.<namespace>[.svc.cluster.local]] by its name, another host by its labels joined with '-' (a warning: callers must send that name)",
    ),
    "spec.addresses": ignored("no virtual IPs: a wasmesh service is called by its name (Host)"),
    "spec.ports": ok,
    "spec.ports[].number": ok,
    "spec.ports[].name": ok,
    "spec.ports[].protocol": partly(
      "HTTP, HTTP2 (as http), GRPC and GRPC-WEB (as http); TCP, TLS, HTTPS and the others are errors: the mesh routes HTTP",
    ),
    "spec.ports[].targetPort": ok,
    "spec.location": partly(
      "MESH_INTERNAL, and MESH_EXTERNAL for plain HTTP to hosts a service name can address (a warning: no sidecar there)",
    ),
    "spec.resolution": partly(
      "STATIC, and DNS or DNS_ROUND_ROBIN (a Workload's address may be a host name); NONE needs endpoints or a workloadSelector",
    ),
    "spec.endpoints": ok,
    "spec.endpoints[].address": ok,
    "spec.endpoints[].ports": ok,
    "spec.endpoints[].labels": ok,
    "spec.endpoints[].serviceAccount": partly(SERVICE_ACCOUNT),
    "spec.endpoints[].locality": partly(LOCALITY),
    "spec.endpoints[].network": ignored(NETWORK),
    "spec.endpoints[].weight": ignored(WEIGHT),
    "spec.workloadSelector": partly(
      "selects the WorkloadEntries of the input; pods are Workloads of their Kubernetes Services (discovery), not of this one",
    ),
    "spec.workloadSelector.labels": ok,
    "spec.exportTo": ignored("visibility is not scoped: every sidecar may call the service"),
    "spec.subjectAltNames": ignored(
      "callers verify the service's own SPIFFE identities, when its Workloads take mTLS",
    ),
  },
  WorkloadEntry: {
    "spec.address": ok,
    "spec.ports": partly("one port: a Workload is reached on one"),
    "spec.labels": ok,
    "spec.serviceAccount": partly(SERVICE_ACCOUNT),
    "spec.locality": partly(LOCALITY),
    "spec.network": ignored(NETWORK),
    "spec.weight": ignored(WEIGHT),
  },
  Gateway: {
    "spec.selector": ignored(
      "wasmesh deploys no gateway: the edge worker serves north-south requests to every service, by Host",
    ),
    "spec.servers": partly(
      "produce nothing: each server's hosts and TLS are warnings, what the edge cannot serve errors",
    ),
    "spec.servers[].name": ok,
    "spec.servers[].port": ok,
    "spec.servers[].port.number": ignored("the edge serves the platform's ports (80 and 443)"),
    "spec.servers[].port.name": ok,
    "spec.servers[].port.protocol": partly("HTTP, HTTPS, HTTP2 and GRPC; TCP, TLS and the others are errors"),
    "spec.servers[].port.targetPort": ignored("the edge serves the platform's ports (80 and 443)"),
    "spec.servers[].hosts": partly(
      'a warning: the edge serves every service that outside callers may call (AccessRules with source "*", else MeshPolicy), by its service name as Host',
    ),
    "spec.servers[].bind": ignored("the edge serves the platform's addresses"),
    "spec.servers[].tls": partly(
      "SIMPLE (a warning: the edge terminates TLS with the zone's certificate, not this one) and httpsRedirect (a warning); MUTUAL, PASSTHROUGH and the others are errors",
    ),
    "spec.servers[].defaultEndpoint": refused("the edge forwards to Workloads, not to a default endpoint"),
  },
  WasmPlugin: {
    "spec.selector": partly(
      "matchLabels {app: <service>} only; none: every service (in Istio's root namespace or universal)",
    ),
    "spec.selector.matchLabels": partly("{app: <service>} only"),
    "spec.targetRef": refused("policies attached to gateways or waypoints are not supported: use selector"),
    "spec.targetRefs": refused("policies attached to gateways or waypoints are not supported: use selector"),
    "spec.url": partly(
      "names the WasmModule of the registry by its last path segment (without tag, digest or .wasm); wasmesh pulls no module",
    ),
    "spec.sha256": partly("the WasmModule of the registry with this digest (the module's bytes)"),
    "spec.imagePullPolicy": ignored("wasmesh pulls no module: the registry holds it (wasmesh modules push)"),
    "spec.imagePullSecret": ignored("wasmesh pulls no module: the registry holds it (wasmesh modules push)"),
    "spec.verificationKey": ignored("not implemented by Istio either; the registry pins modules by sha256"),
    "spec.pluginConfig": ok,
    "spec.pluginName": ok,
    "spec.phase": partly(
      "the order among plugins (a priority offset); AUTHN and AUTHZ plugins still run after wasmesh's access check (a warning)",
    ),
    "spec.priority": ok,
    "spec.failStrategy": partly(
      "FAIL_CLOSE; FAIL_OPEN and FAIL_RELOAD are warnings: a failing plugin fails the request",
    ),
    "spec.vmConfig": refused("environment variables for the plugin's VM are not supported"),
    "spec.match": partly("one mode: SERVER (inbound) or CLIENT (outbound)"),
    "spec.match[].mode": partly("SERVER or CLIENT"),
    "spec.match[].ports": refused("plugins for some ports only are not supported"),
    "spec.type": partly("HTTP; NETWORK is an error"),
  },
  Telemetry: {
    "spec.selector": partly(
      "matchLabels {app: <service>} (or service.istio.io/canonical-name): that service's Tracing and AccessLog; none: the mesh's (in Istio's root namespace or universal)",
    ),
    "spec.selector.matchLabels": partly(
      "{app: <service>} or {service.istio.io/canonical-name: <service>} only",
    ),
    "spec.targetRef": refused("policies attached to gateways or waypoints are not supported: use selector"),
    "spec.targetRefs": refused("policies attached to gateways or waypoints are not supported: use selector"),
    "spec.tracing": partly("one entry: a Tracing"),
    "spec.tracing[].match": partly(
      "CLIENT_AND_SERVER only: wasmesh traces both listeners of a sidecar alike",
    ),
    "spec.tracing[].match.mode": partly(
      "CLIENT_AND_SERVER only: wasmesh traces both listeners of a sidecar alike",
    ),
    "spec.tracing[].providers": partly(
      `one provider, named in MeshConfig's extensionProviders, which wasmesh does not read: the annotation ${TRACING_BACKEND_ANNOTATION} gives its backend; a service's Telemetry without it inherits the mesh Tracing's backend when it names no provider or the mesh Telemetry's`,
    ),
    "spec.tracing[].providers[].name": partly("see providers"),
    "spec.tracing[].randomSamplingPercentage": ok,
    "spec.tracing[].disableSpanReporting": partly(
      "false only: a sidecar that propagates trace context reports its spans (true is an error)",
    ),
    "spec.tracing[].customTags": partly("literal and header tags; environment tags are warnings"),
    "spec.tracing[].useRequestIdForTraceSampling": partly(
      "true, as wasmesh samples (Envoy draws from x-request-id); false is a warning",
    ),
    "spec.tracing[].enableIstioTags": ignored("wasmesh's spans carry no istio.* tags"),
    "spec.accessLogging": partly("an AccessLog: Istio's built-in envoy provider (stdout), or disabled"),
    "spec.accessLogging[].match": partly("CLIENT_AND_SERVER only: wasmesh logs both listeners of a sidecar"),
    "spec.accessLogging[].match.mode": partly(
      "CLIENT_AND_SERVER only: wasmesh logs both listeners of a sidecar",
    ),
    "spec.accessLogging[].providers": partly(
      "envoy (Istio's built-in provider: stdout, in wasmesh's default format); the others are MeshConfig's extensionProviders, which wasmesh does not read: errors",
    ),
    "spec.accessLogging[].providers[].name": partly("envoy only (stdout)"),
    "spec.accessLogging[].disabled": ok,
    "spec.accessLogging[].filter": refused("wasmesh logs every request: a CEL filter is not supported"),
    "spec.metrics": ignored(
      "wasmesh's metrics are always on, under their own names (docs/metrics.md): no provider, override or interval is carried",
    ),
  },
};

// --- Addressing ----------------------------------------------------------------------------------

const SERVICE_PATTERN = new RegExp(ServiceName.pattern as string);

/** The wasmesh service an Istio host names (see the file's head), or why it names none. */
export function serviceOfHost(
  host: unknown,
  namespace: string | undefined,
): { ok: true; service: string } | { ok: false; message: string } {
  if (typeof host !== "string" || host === "") return { ok: false, message: "must be a host name" };
  const bare = host.replace(/:\d+$/, "").replace(/\.$/, "");
  if (bare.includes("*")) return { ok: false, message: `'${host}': wildcard hosts are not supported` };
  let labels = bare.split(".");
  if (labels.length >= 3 && labels[2] === "svc") {
    const rest = labels.slice(3).join(".");
    if (rest !== "" && rest !== "cluster.local") {
      return { ok: false, message: `'${host}': only the cluster domain cluster.local is known` };
    }
    labels = labels.slice(0, 2);
  }
  if (labels.length > 2) {
    return {
      ok: false,
      message: `'${host}' is no service of the mesh (<name>, <name>.<namespace> or <name>.<namespace>.svc.cluster.local), and no ServiceEntry of the input declares it`,
    };
  }
  // Universal services are namespace default's (their identity, ca/spiffe.ts universalIdentity).
  const service =
    labels.length === 1
      ? namespace !== undefined
        ? `${labels[0]}.${namespace}`
        : (labels[0] as string)
      : namespace === undefined && labels[1] === "default"
        ? (labels[0] as string)
        : labels.join(".");
  if (!SERVICE_PATTERN.test(service) || service.length > 127) {
    return { ok: false, message: `'${host}' gives '${service}', which is no valid service name` };
  }
  return { ok: true, service };
}

const HOST_NAME =
  /^(?=.{1,253}$)[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?)*$/;

/**
 * The service a ServiceEntry's host declares: serviceOfHost's name for a host of the mesh's form;
 * another host (`api.example.com`) is named by its labels joined with '-' (`api-example-com`), a
 * declared service (`renamed`: callers must send that name as Host).
 */
export function serviceOfDeclaredHost(
  host: unknown,
  namespace: string | undefined,
): { ok: true; service: string; renamed: boolean } | { ok: false; message: string } {
  const own = serviceOfHost(host, namespace);
  if (own.ok) return { ...own, renamed: false };
  if (typeof host !== "string") return own;
  const bare = host.toLowerCase().replace(/\.$/, "");
  if (bare.includes("*")) return { ok: false, message: `'${host}': wildcard hosts are not supported` };
  if (!HOST_NAME.test(bare))
    return { ok: false, message: `'${host}' is no host name (a ServiceEntry's hosts have no port)` };
  const service = bare.replaceAll(".", "-");
  if (service.length > 63) {
    return { ok: false, message: `'${host}' gives the service name '${service}', longer than 63 characters` };
  }
  return { ok: true, service, renamed: true };
}

/** serviceOfHost, except that a host a ServiceEntry of the input declares is that entry's service. */
export function resolveHost(
  host: unknown,
  namespace: string | undefined,
  index: Pick<IstioIndex, "hosts">,
): { ok: true; service: string } | { ok: false; message: string } {
  if (typeof host === "string") {
    const declared = index.hosts.get(host.toLowerCase().replace(/:\d+$/, "").replace(/\.$/, ""));
    if (declared !== undefined) return { ok: true, service: declared };
  }
  return serviceOfHost(host, namespace);
}

const PRINCIPAL = /^(?:[^/]+\/)?ns\/([^/]+)\/sa\/([^/]+)$/;

/** The source service an AuthorizationPolicy principal names (see the file's head). */
export function serviceOfPrincipal(
  principal: string,
  namespaced: boolean,
): { ok: true; service: string } | { ok: false; message: string } {
  if (principal === "*") return { ok: true, service: "*" };
  const m = PRINCIPAL.exec(principal);
  if (m === null) {
    return {
      ok: false,
      message: `'${principal}': only exact principals <trust-domain>/ns/<namespace>/sa/<service-account> or "*" are supported`,
    };
  }
  const [, ns, sa] = m as unknown as [string, string, string];
  const service = !namespaced && ns === "default" ? sa : `${sa}.${ns}`;
  if (!SERVICE_PATTERN.test(service)) {
    return { ok: false, message: `'${principal}' gives '${service}', which is no valid service name` };
  }
  return { ok: true, service };
}

// --- Conversion ----------------------------------------------------------------------------------

/** The subsets of every service a DestinationRule of the input defines: service → name → labels. */
export type SubsetIndex = Map<string, Map<string, Record<string, string>>>;

/** A ServiceEntry of the input with a workloadSelector: the services its WorkloadEntries join. */
export interface SelectingEntry {
  document: number;
  name: string;
  namespace: string | undefined;
  labels: Record<string, string>;
  services: string[];
  ports: readonly unknown[];
}

/** What Istio's documents of one input need to know of each other. */
export interface IstioIndex {
  subsets: SubsetIndex;
  /**
   * Hosts outside the mesh's naming (`api.example.com`) that a ServiceEntry of the input declares,
   * lower case, → its service (serviceOfDeclaredHost).
   */
  hosts: Map<string, string>;
  /** The ServiceEntries with a workloadSelector, for WorkloadEntries. */
  selectors: SelectingEntry[];
  /** The Gateways of the input, as `<namespace>/<name>` (`/<name>` when universal). */
  gateways: Set<string>;
  /** The modules of the registry (ConvertOptions.modules), for WasmPlugins. */
  modules: readonly { name: string; sha256: string }[];
  /**
   * The tracing providers the mesh's Telemetries of the input name (in the root namespace or
   * universal, without selector): a service's Telemetry naming one of them inherits that backend.
   */
  meshTracingProviders: Set<string>;
}

/** The apiVersion's group and version, if it is one of Istio's that is converted. */
export function istioKind(doc: Obj): { known: boolean; message?: string } {
  const apiVersion = typeof doc.apiVersion === "string" ? doc.apiVersion : "";
  const [group, version] = apiVersion.split("/");
  // Own keys only: "constructor/v1" names no group.
  if (group === undefined || !Object.hasOwn(VERSIONS, group)) return { known: false };
  const kind = String(doc.kind);
  if (!Object.hasOwn(ISTIO_KINDS, kind) || ISTIO_KINDS[kind] !== group) {
    return { known: true, message: `${group} kind '${kind}' is not supported yet` };
  }
  const versions = VERSIONS[group] as readonly string[];
  if (!versions.includes(version ?? "")) {
    return { known: true, message: `version '${version}' of ${group} is unknown (${versions.join(", ")})` };
  }
  return { known: true };
}

/** DestinationRule subsets of the input, by service, for VirtualService destinations to name. */
export function indexSubsets(
  documents: readonly { doc: Obj; namespace: string | undefined }[],
  declared: Pick<IstioIndex, "hosts"> = { hosts: new Map() },
): SubsetIndex {
  const index: SubsetIndex = new Map();
  for (const { doc, namespace } of documents) {
    if (doc.kind !== "DestinationRule" || !isObj(doc.spec)) continue;
    const host = resolveHost(doc.spec.host, namespace, declared);
    if (!host.ok) continue;
    const subsets = index.get(host.service) ?? new Map<string, Record<string, string>>();
    for (const s of Array.isArray(doc.spec.subsets) ? doc.spec.subsets : []) {
      if (isObj(s) && typeof s.name === "string" && isObj(s.labels)) {
        subsets.set(s.name, s.labels as Record<string, string>);
      }
    }
    index.set(host.service, subsets);
  }
  return index;
}

/** The index of Istio's documents of one input (SourceMesh.index). */
export function indexIstio(
  documents: readonly { doc: Obj; document?: number; name?: string; namespace: string | undefined }[],
  options: ConvertOptions = {},
): IstioIndex {
  const hosts = new Map<string, string>();
  const selectors: SelectingEntry[] = [];
  const gateways = new Set<string>();
  const meshTracingProviders = new Set<string>();
  for (const { doc, document, name, namespace } of documents) {
    const spec = isObj(doc.spec) ? doc.spec : {};
    if (doc.kind === "Gateway") gateways.add(`${namespace ?? ""}/${String(name ?? "")}`);
    if (doc.kind === "Telemetry" && spec.selector === undefined && isMeshNamespace(namespace)) {
      for (const t of Array.isArray(spec.tracing) ? spec.tracing : []) {
        for (const p of isObj(t) && Array.isArray(t.providers) ? t.providers : []) {
          if (isObj(p) && typeof p.name === "string") meshTracingProviders.add(p.name);
        }
      }
    }
    if (doc.kind !== "ServiceEntry") continue;
    const services: string[] = [];
    for (const h of Array.isArray(spec.hosts) ? spec.hosts : []) {
      const s = serviceOfDeclaredHost(h, namespace);
      if (!s.ok) continue;
      if (s.renamed) hosts.set((h as string).toLowerCase().replace(/\.$/, ""), s.service);
      if (!services.includes(s.service)) services.push(s.service);
    }
    const selector = isObj(spec.workloadSelector) ? spec.workloadSelector.labels : undefined;
    if (isObj(selector) && Object.values(selector).every((v) => typeof v === "string")) {
      selectors.push({
        document: document ?? -1,
        name: String(name ?? ""),
        namespace,
        labels: selector as Record<string, string>,
        services,
        ports: Array.isArray(spec.ports) ? spec.ports : [],
      });
    }
  }
  return {
    subsets: indexSubsets(documents, { hosts }),
    hosts,
    selectors,
    gateways,
    modules: options.modules ?? [],
    meshTracingProviders,
  };
}

type StringMatch = { exact?: string; prefix?: string; regex?: string; ignoreCase?: boolean };

function stringMatch(ctx: Context, value: unknown, path: string): StringMatch | undefined {
  if (!isObj(value)) {
    ctx.error(path, "must be a string match (exact, prefix or regex)");
    return undefined;
  }
  const keys = Object.keys(value);
  const known = keys.filter((k) => k === "exact" || k === "prefix" || k === "regex");
  if (keys.length !== 1 || known.length !== 1 || typeof value[keys[0] as string] !== "string") {
    ctx.error(
      path,
      `must have exactly one of exact, prefix, regex, as a string (has ${keys.join(", ") || "none"})`,
    );
    return undefined;
  }
  return { [known[0] as string]: value[known[0] as string] as string };
}

type NamedMatch = NonNullable<NonNullable<RouteRule["match"]>["headers"]>[number];

function namedMatches(ctx: Context, value: unknown, path: string, lower: boolean): NamedMatch[] {
  if (!isObj(value)) {
    ctx.error(path, "must be a map of names to string matches");
    return [];
  }
  const out: NamedMatch[] = [];
  for (const [raw, m] of Object.entries(value)) {
    const name = lower ? raw.toLowerCase() : raw;
    // Istio: an empty match is a presence check.
    if (isObj(m) && Object.keys(m).length === 0) {
      out.push({ name, present: true });
      continue;
    }
    const s = stringMatch(ctx, m, `${path}.${raw}`);
    if (s !== undefined) out.push({ name, ...s });
  }
  return out;
}

function percentOf(ctx: Context, fault: Obj, path: string): number | undefined {
  if (isObj(fault.percentage)) {
    const v = fault.percentage.value;
    if (typeof v !== "number" || v < 0 || v > 100) {
      ctx.error(`${path}.percentage.value`, "must be a number from 0 to 100");
      return undefined;
    }
    return v;
  }
  if (fault.percent !== undefined) {
    if (typeof fault.percent !== "number" || fault.percent < 0 || fault.percent > 100) {
      ctx.error(`${path}.percent`, "must be a number from 0 to 100");
      return undefined;
    }
    return fault.percent;
  }
  return undefined;
}

const RULE_NAME = /^[A-Za-z0-9._:-]{1,64}$/;

function convertHttpRoute(
  ctx: Context,
  http: Obj,
  i: number,
  index: IstioIndex,
  usedNames: Set<string>,
): RouteRule[] {
  const subsets = index.subsets;
  const at = `spec.http[${i}]`;
  const base: Omit<RouteRule, "name" | "match"> = {
    destinations: [] as unknown as RouteRule["destinations"],
  };

  // Destinations.
  const route = Array.isArray(http.route) ? http.route : [];
  if (route.length === 0) {
    // A redirect, direct response or delegation is refused by the field audit already.
    if (http.redirect !== undefined || http.directResponse !== undefined || http.delegate !== undefined)
      return [];
    ctx.error(
      `${at}.route`,
      "is required: a route without destinations (redirect, direct response) is not supported",
    );
    return [];
  }
  const dests: { service: string; subset?: Record<string, string>; weight: number; at: string }[] = [];
  let destHeaders: { request?: HeaderChanges; response?: HeaderChanges } = {};
  route.forEach((r, j) => {
    const rat = `${at}.route[${j}]`;
    if (!isObj(r) || !isObj(r.destination)) {
      ctx.error(`${rat}.destination`, "is required");
      return;
    }
    const host = resolveHost(r.destination.host, ctx.namespace, index);
    if (!host.ok) {
      ctx.error(`${rat}.destination.host`, host.message);
      return;
    }
    let subset: Record<string, string> | undefined;
    if (r.destination.subset !== undefined) {
      const name = String(r.destination.subset);
      subset = subsets.get(host.service)?.get(name);
      if (subset === undefined) {
        ctx.error(
          `${rat}.destination.subset`,
          `subset '${name}' of '${host.service}' is defined by no DestinationRule in the input`,
        );
        return;
      }
    }
    const weight = r.weight === undefined ? (route.length === 1 ? 100 : 0) : r.weight;
    if (typeof weight !== "number" || !Number.isInteger(weight) || weight < 0) {
      ctx.error(`${rat}.weight`, "must be a whole number, 0 or more");
      return;
    }
    if (isObj(r.headers)) {
      if (route.length > 1) {
        ctx.error(`${rat}.headers`, "header changes per destination are supported with one destination only");
      } else {
        destHeaders = {
          request: headerChanges(ctx, r.headers.request, `${rat}.headers.request`),
          response: headerChanges(ctx, r.headers.response, `${rat}.headers.response`),
        };
      }
    }
    // Istio sends a repeated destination its weights' sum: so does the merged one.
    const same = dests.find((d) => d.service === host.service && sameLabels(d.subset, subset));
    if (same !== undefined) same.weight += weight;
    else dests.push({ service: host.service, ...(subset !== undefined ? { subset } : {}), weight, at: rat });
  });
  if (dests.length !== route.length && dests.length === 0) return [];
  const total = dests.reduce((a, d) => a + d.weight, 0);
  if (dests.length > 0 && total === 0) {
    ctx.error(`${at}.route`, "the weights add up to 0: no destination would take traffic");
    return [];
  }
  const shares = percents(dests.map((d) => d.weight));
  if (dests.length > 1 && total !== 100) {
    ctx.warn(`${at}.route`, `weights add up to ${total}: scaled to percentages (${shares.join("/")})`);
  }
  base.destinations = dests.map((d, j) => ({
    service: d.service,
    ...(d.subset !== undefined ? { subset: { ...d.subset } } : {}),
    ...(dests.length > 1 ? { weight: shares[j] as number } : {}),
  })) as RouteRule["destinations"];

  // Timeout, retries, faults, header changes.
  if (http.timeout !== undefined) {
    const ms = duration(ctx, http.timeout, `${at}.timeout`);
    if (ms !== undefined && ms > 0) base.timeoutMs = ms;
    else if (ms === 0) {
      // Istio's 0s turns the timeout off; wasmesh's routes have one (Envoy's 15s without timeoutMs).
      base.timeoutMs = MAX_TIMEOUT_MS;
      ctx.warn(
        `${at}.timeout`,
        `no timeout cannot be expressed: the longest wasmesh allows, ${MAX_TIMEOUT_MS}ms (1h)`,
      );
    }
  }
  if (isObj(http.retries)) {
    const r = http.retries;
    const attempts = r.attempts ?? 0;
    if (typeof attempts !== "number" || !Number.isInteger(attempts) || attempts < 0 || attempts > 10) {
      ctx.error(`${at}.retries.attempts`, "must be a whole number from 0 to 10 (wasmesh's limit)");
    } else {
      const retries: NonNullable<RouteRule["retries"]> = { attempts };
      if (r.perTryTimeout !== undefined) {
        const ms = duration(ctx, r.perTryTimeout, `${at}.retries.perTryTimeout`);
        if (ms !== undefined && ms > 0) retries.perTryTimeoutMs = ms;
      }
      if (r.retryOn !== undefined) {
        const conditions = String(r.retryOn)
          .split(",")
          .map((c) => c.trim())
          .filter((c) => c !== "");
        const codes = conditions.filter((c) => /^\d+$/.test(c));
        if (codes.length > 0) {
          ctx.error(
            `${at}.retries.retryOn`,
            `retrying on status codes (${codes.join(", ")}) is not supported: use Envoy's conditions such as 5xx, gateway-error, retriable-4xx`,
          );
        } else retries.on = conditions.join(",");
      }
      base.retries = retries;
    }
  }
  if (isObj(http.fault)) {
    const fault: NonNullable<RouteRule["fault"]> = {};
    const f = http.fault;
    if (isObj(f.delay) && f.delay.exponentialDelay === undefined) {
      const ms = duration(ctx, f.delay.fixedDelay, `${at}.fault.delay.fixedDelay`);
      const percent = percentOf(ctx, f.delay, `${at}.fault.delay`);
      if (ms !== undefined && ms > 0) fault.delay = { ms, ...(percent !== undefined ? { percent } : {}) };
    }
    if (isObj(f.abort) && f.abort.grpcStatus === undefined && f.abort.http2Error === undefined) {
      const status = f.abort.httpStatus;
      if (typeof status !== "number" || !Number.isInteger(status) || status < 200 || status > 599) {
        ctx.error(`${at}.fault.abort.httpStatus`, "must be an HTTP status from 200 to 599");
      } else {
        const percent = percentOf(ctx, f.abort, `${at}.fault.abort`);
        fault.abort = { status, ...(percent !== undefined ? { percent } : {}) };
      }
    }
    if (fault.abort !== undefined || fault.delay !== undefined) base.fault = fault;
  }
  const headers = isObj(http.headers) ? http.headers : {};
  const requestHeaders = concatChanges(
    headerChanges(ctx, headers.request, `${at}.headers.request`),
    destHeaders.request,
  );
  const responseHeaders = concatChanges(
    headerChanges(ctx, headers.response, `${at}.headers.response`),
    destHeaders.response,
  );
  if (requestHeaders !== undefined) base.requestHeaders = requestHeaders;
  if (responseHeaders !== undefined) base.responseHeaders = responseHeaders;

  // Matches: Istio's list is "any of"; each becomes a rule of its own, in order, with the same action.
  const given = typeof http.name === "string" && RULE_NAME.test(http.name) && !usedNames.has(http.name);
  const ruleBase = given ? (http.name as string) : `http-${i}`;
  const matches = Array.isArray(http.match) && http.match.length > 0 ? http.match : [undefined];
  return matches.map((m, j) => {
    const name = matches.length > 1 ? `${ruleBase}-m${j}` : ruleBase;
    usedNames.add(name);
    const match = m === undefined ? undefined : convertMatch(ctx, m, `${at}.match[${j}]`);
    return { name, ...(match !== undefined ? { match } : {}), ...base } as RouteRule;
  });
}

function sameLabels(a: Record<string, string> | undefined, b: Record<string, string> | undefined): boolean {
  const ak = Object.keys(a ?? {});
  return ak.length === Object.keys(b ?? {}).length && ak.every((k) => a?.[k] === b?.[k]);
}

function convertMatch(ctx: Context, m: unknown, at: string): RouteRule["match"] {
  if (!isObj(m)) {
    ctx.error(at, "must be a match");
    return undefined;
  }
  const match: NonNullable<RouteRule["match"]> = {};
  if (m.uri !== undefined) {
    const s = stringMatch(ctx, m.uri, `${at}.uri`);
    if (s !== undefined) match.path = m.ignoreUriCase === true ? { ...s, ignoreCase: true } : s;
  }
  if (m.authority !== undefined) {
    const s = stringMatch(ctx, m.authority, `${at}.authority`);
    if (s !== undefined) match.authority = s;
  }
  if (m.method !== undefined) {
    const s = stringMatch(ctx, m.method, `${at}.method`);
    if (s?.exact !== undefined) match.methods = [s.exact];
    else if (s !== undefined) ctx.error(`${at}.method`, "only exact methods are supported");
  }
  const headers = m.headers === undefined ? [] : namedMatches(ctx, m.headers, `${at}.headers`, true);
  if (m.withoutHeaders !== undefined) {
    for (const h of namedMatches(ctx, m.withoutHeaders, `${at}.withoutHeaders`, true)) {
      if (h.present === true) headers.push({ name: h.name, absent: true });
      else
        ctx.error(
          `${at}.withoutHeaders.${h.name}`,
          "only {} (the header is absent) is supported: a negated value match is not",
        );
    }
  }
  if (headers.length > 0) match.headers = headers;
  if (m.queryParams !== undefined) {
    const query = namedMatches(ctx, m.queryParams, `${at}.queryParams`, false);
    if (query.length > 0) match.query = query;
  }
  return Object.keys(match).length > 0 ? match : undefined;
}

export function convertVirtualService(ctx: Context, doc: Obj, index: IstioIndex, base: string): Route[] {
  const spec = isObj(doc.spec) ? doc.spec : {};
  if (Array.isArray(spec.gateways)) {
    const mesh = spec.gateways.includes("mesh");
    spec.gateways.forEach((g, i) => {
      if (g === "mesh") return;
      if (mesh) {
        // `<namespace>/<name>`, or `<name>` in the VirtualService's own namespace.
        const ref = String(g).includes("/") ? String(g) : `${ctx.namespace ?? ""}/${String(g)}`;
        const known = index.gateways.has(ref) ? " (a Gateway of the input, which produces nothing)" : "";
        ctx.warn(
          `spec.gateways[${i}]`,
          `gateway '${String(g)}'${known} does not run the Route: wasmesh has no gateways; the edge worker applies the service's Route to north-south requests (Host: the service's name) as sidecars do`,
        );
      }
    });
    if (!mesh) {
      ctx.error(
        "spec.gateways",
        'names gateways only: a wasmesh Route applies to every sidecar (Istio\'s "mesh") and at the edge, where Istio would apply it at the gateways only; add "mesh" to route the sidecars\' calls too',
      );
      return [];
    }
  }
  const hosts = Array.isArray(spec.hosts) ? spec.hosts : [];
  if (hosts.length === 0) ctx.error("spec.hosts", "is required: the services whose traffic this routes");
  const http = Array.isArray(spec.http) ? spec.http : [];
  if (http.length === 0) {
    if (spec.tcp === undefined && spec.tls === undefined)
      ctx.error("spec.http", "is required: no HTTP routes");
    return [];
  }
  const usedNames = new Set<string>();
  const rules = http.flatMap((h, i) => {
    if (isObj(h)) return convertHttpRoute(ctx, h, i, index, usedNames);
    ctx.error(`spec.http[${i}]`, "must be a route (a mapping)");
    return [];
  });
  const last = http[http.length - 1];
  if (isObj(last) && Array.isArray(last.match) && last.match.length > 0) {
    ctx.warn(
      `spec.http[${http.length - 1}].match`,
      "requests no route matches go to the whole service in wasmesh; Istio answers them 404 (add a last route without match to say where they go)",
    );
  }
  const services: string[] = [];
  hosts.forEach((h, i) => {
    const s = resolveHost(h, ctx.namespace, index);
    if (!s.ok) ctx.error(`spec.hosts[${i}]`, s.message);
    else if (!services.includes(s.service)) services.push(s.service);
  });
  if (rules.length === 0) return [];
  return services.map(
    (service): Route =>
      native("Route", services.length === 1 ? base : nativeName(base, service), {
        service,
        rules: structuredClone(rules),
      }),
  );
}

interface BreakerSettings {
  consecutiveErrors: number;
  intervalMs: number;
  baseEjectionMs: number;
  maxEjectionPercent: number;
  maxConcurrent?: number;
}

/** A trafficPolicy's CircuitBreaker settings (Istio's defaults where a field is absent), or none. */
function breakerSettings(ctx: Context, policy: Obj, at: string): BreakerSettings | undefined {
  const od = isObj(policy.outlierDetection) ? policy.outlierDetection : undefined;
  const pool =
    isObj(policy.connectionPool) && isObj(policy.connectionPool.http) ? policy.connectionPool.http : {};
  if (od === undefined) {
    if (pool.http2MaxRequests !== undefined) {
      ctx.warn(
        `${at}.connectionPool.http.http2MaxRequests`,
        "not carried: wasmesh limits concurrent requests in a CircuitBreaker, which only outlierDetection makes",
      );
    }
    return undefined;
  }
  const odAt = `${at}.outlierDetection`;
  ctx.warn(odAt, OUTLIER_DETECTION);
  const count = (key: string): number | undefined => {
    const v = od[key];
    if (v === undefined) return undefined;
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0) {
      ctx.error(`${odAt}.${key}`, "must be a whole number, 0 or more");
      return undefined;
    }
    return v;
  };
  const c5xx = count("consecutive5xxErrors");
  const gateway = count("consecutiveGatewayErrors");
  const legacy = count("consecutiveErrors");
  for (const [key, v] of [
    ["consecutiveGatewayErrors", gateway],
    ["consecutiveErrors", legacy],
  ] as const) {
    if (v === undefined) continue;
    ctx.warn(
      `${odAt}.${key}`,
      c5xx !== undefined
        ? "not carried: consecutive5xxErrors is the breaker's threshold"
        : "counted over every 5xx, not only 502, 503 and 504",
    );
  }
  const consecutiveErrors = c5xx ?? gateway ?? legacy ?? 5;
  if (consecutiveErrors === 0) return undefined; // Istio: 0 turns the detection off
  if (consecutiveErrors > 10_000) {
    ctx.error(`${odAt}`, `${consecutiveErrors} consecutive errors is beyond wasmesh's limit of 10000`);
    return undefined;
  }
  const ms = (key: string, fallback: number): number | undefined => {
    if (od[key] === undefined) return fallback;
    return duration(ctx, od[key], `${odAt}.${key}`, { max: 86_400_000, zero: "refused" });
  };
  const intervalMs = ms("interval", 10_000);
  const baseEjectionMs = ms("baseEjectionTime", 30_000);
  const percent = od.maxEjectionPercent ?? 10;
  if (typeof percent !== "number" || !Number.isInteger(percent) || percent < 0 || percent > 100) {
    ctx.error(`${odAt}.maxEjectionPercent`, "must be a whole number from 0 to 100");
    return undefined;
  }
  if (intervalMs === undefined || baseEjectionMs === undefined) return undefined;
  const settings: BreakerSettings = {
    consecutiveErrors,
    intervalMs,
    baseEjectionMs,
    maxEjectionPercent: percent,
  };
  const max = pool.http2MaxRequests;
  if (max !== undefined) {
    if (typeof max !== "number" || !Number.isInteger(max) || max < 1 || max > 1_000_000) {
      ctx.error(`${at}.connectionPool.http.http2MaxRequests`, "must be a whole number from 1 to 1000000");
    } else settings.maxConcurrent = max;
  }
  return settings;
}

function checkTls(ctx: Context, policy: Obj, at: string): void {
  if (!isObj(policy.tls)) return;
  const mode = policy.tls.mode ?? "DISABLE"; // Istio's default mode
  if (mode === "ISTIO_MUTUAL" || mode === "DISABLE") {
    ctx.warn(
      `${at}.tls.mode`,
      `${mode} is not carried: wasmesh originates mesh mTLS itself to sidecars that take it, by MeshPolicy's and the Service's mTLS mode`,
    );
  } else {
    ctx.error(
      `${at}.tls.mode`,
      `${String(mode)}: TLS to the destination with other certificates is not supported`,
    );
  }
}

export function convertDestinationRule(
  ctx: Context,
  doc: Obj,
  base: string,
  index: Pick<IstioIndex, "hosts"> = { hosts: new Map() },
): CircuitBreaker[] {
  const spec = isObj(doc.spec) ? doc.spec : {};
  const host = resolveHost(spec.host, ctx.namespace, index);
  if (!host.ok) {
    ctx.error("spec.host", host.message);
    return [];
  }
  const service = host.service;
  const out: CircuitBreaker[] = [];
  const breaker = (
    name: string,
    settings: BreakerSettings,
    subset?: Record<string, string>,
  ): CircuitBreaker =>
    native("CircuitBreaker", name, {
      service,
      ...(subset !== undefined ? { subset: { ...subset } } : {}),
      ...settings,
    });
  const top = isObj(spec.trafficPolicy) ? spec.trafficPolicy : {};
  checkTls(ctx, top, "spec.trafficPolicy");
  const topSettings = breakerSettings(ctx, top, "spec.trafficPolicy");
  if (topSettings !== undefined) out.push(breaker(base, topSettings));
  const subsets = Array.isArray(spec.subsets) ? spec.subsets : [];
  const seen = new Set<string>();
  subsets.forEach((s, i) => {
    const at = `spec.subsets[${i}]`;
    if (!isObj(s) || typeof s.name !== "string" || s.name === "") {
      ctx.error(`${at}.name`, "is required");
      return;
    }
    if (seen.has(s.name)) ctx.error(`${at}.name`, `duplicate subset '${s.name}'`);
    seen.add(s.name);
    if (!isObj(s.labels) || Object.keys(s.labels).length === 0) {
      ctx.error(`${at}.labels`, "is required: a subset is the workloads with these labels");
      return;
    }
    const own = isObj(s.trafficPolicy) ? s.trafficPolicy : {};
    checkTls(ctx, own, `${at}.trafficPolicy`);
    // Istio merges a subset's policy over the top one by setting: an outlierDetection or a
    // connectionPool of the subset's replaces the top one's.
    const merged: Obj = {
      outlierDetection: own.outlierDetection ?? top.outlierDetection,
      connectionPool: own.connectionPool ?? top.connectionPool,
    };
    // An inherited outlierDetection was reported where it is written: not again at the subset.
    const inherited = `${at}.trafficPolicy.outlierDetection`;
    const subsetCtx: Context =
      own.outlierDetection !== undefined
        ? ctx
        : {
            ...ctx,
            warn: (path, message) => (path.startsWith(inherited) ? undefined : ctx.warn(path, message)),
            error: (path, message) => (path.startsWith(inherited) ? undefined : ctx.error(path, message)),
          };
    const settings =
      own.outlierDetection !== undefined || own.connectionPool !== undefined
        ? breakerSettings(subsetCtx, merged, `${at}.trafficPolicy`)
        : topSettings;
    if (settings !== undefined) {
      out.push(breaker(nativeName(base, s.name), settings, s.labels as Record<string, string>));
    }
  });
  return out;
}

const MODES: Record<string, MtlsMode> = { STRICT: "strict", PERMISSIVE: "permissive", DISABLE: "disabled" };

/** PeerAuthentication: the mesh-wide mTLS mode, or undefined (UNSET, or an error reported). */
export function convertPeerAuthentication(ctx: Context, doc: Obj): MtlsMode | undefined {
  const spec = isObj(doc.spec) ? doc.spec : {};
  if (spec.selector !== undefined) return undefined; // refused by the field audit
  if (ctx.namespace !== undefined && ctx.namespace !== ROOT_NAMESPACE) {
    ctx.error(
      "metadata.namespace",
      `a mode for namespace '${ctx.namespace}': wasmesh sets mTLS for the mesh (this in Istio's root namespace, ${ROOT_NAMESPACE}) or per Service (spec.mtls)`,
    );
    return undefined;
  }
  const mode = isObj(spec.mtls) ? spec.mtls.mode : undefined;
  if (mode === undefined || mode === "UNSET") return undefined;
  const native = MODES[String(mode)];
  if (native === undefined)
    ctx.error("spec.mtls.mode", `must be STRICT, PERMISSIVE, DISABLE or UNSET (got ${JSON.stringify(mode)})`);
  return native;
}

export interface AccessResult {
  rules: AccessRule[];
  /** An ALLOW policy with no rules for the whole mesh: MeshPolicy's defaultAccess deny. */
  denyByDefault: boolean;
  /** Destinations a DENY policy closes to every source ("*"). */
  deniedToAll: string[];
}

export function convertAuthorizationPolicy(ctx: Context, doc: Obj, base: string): AccessResult {
  const result: AccessResult = { rules: [], denyByDefault: false, deniedToAll: [] };
  const spec = isObj(doc.spec) ? doc.spec : {};
  const action = spec.action ?? "ALLOW";
  if (action !== "ALLOW" && action !== "DENY") {
    ctx.error("spec.action", `${String(action)} is not supported: ALLOW and DENY are`);
    return result;
  }
  const namespaced = ctx.namespace !== undefined;
  const rules = Array.isArray(spec.rules) ? spec.rules : [];
  let destination: string | undefined;
  if (spec.selector !== undefined) {
    const labels = isObj(spec.selector) && isObj(spec.selector.matchLabels) ? spec.selector.matchLabels : {};
    const keys = Object.keys(labels);
    if (keys.length !== 1 || keys[0] !== "app" || typeof labels.app !== "string") {
      ctx.error(
        "spec.selector.matchLabels",
        "must be {app: <service>}: wasmesh's AccessRules name the destination service, not workloads by labels",
      );
      return result;
    }
    const s = serviceOfHost(labels.app, ctx.namespace);
    if (!s.ok) {
      ctx.error("spec.selector.matchLabels.app", s.message);
      return result;
    }
    destination = s.service;
  } else if (namespaced && ctx.namespace !== ROOT_NAMESPACE) {
    ctx.error(
      "spec.selector",
      `is required outside ${ROOT_NAMESPACE}: a policy for every workload of namespace '${ctx.namespace}' has no AccessRule form (they name one destination service)`,
    );
    return result;
  } else {
    // Mesh-wide: only "allow nothing" (an ALLOW policy without rules) has a native form.
    if (action === "ALLOW" && rules.length === 0) result.denyByDefault = true;
    else {
      ctx.error(
        "spec.rules",
        "a mesh-wide policy with rules has no AccessRule form (they name one destination service); only an ALLOW policy without rules (allow nothing) is carried, as MeshPolicy defaultAccess: deny",
      );
    }
    return result;
  }

  // The sources the policy's rules name; "*" for a rule without `from` (any caller).
  const sources: string[] = [];
  let usable = true;
  rules.forEach((rule, i) => {
    if (!isObj(rule)) return;
    if (rule.to !== undefined || rule.when !== undefined) usable = false; // refused by the audit
    const from = Array.isArray(rule.from) ? rule.from : undefined;
    if (from === undefined) {
      sources.push("*");
      return;
    }
    from.forEach((f, j) => {
      const src = isObj(f) && isObj(f.source) ? f.source : {};
      const principals = Array.isArray(src.principals) ? src.principals : undefined;
      if (principals === undefined) {
        usable = false;
        if (Object.keys(src).every((k) => k === "principals")) {
          ctx.error(`spec.rules[${i}].from[${j}].source.principals`, "is required: the source services");
        }
        return;
      }
      principals.forEach((p, k) => {
        const path = `spec.rules[${i}].from[${j}].source.principals[${k}]`;
        const s = serviceOfPrincipal(String(p), namespaced);
        if (!s.ok) {
          ctx.error(path, s.message);
          usable = false;
          return;
        }
        if (namespaced && s.service !== "*") {
          ctx.warn(
            path,
            `taken as Service '${s.service}': wasmesh's AccessRule names the caller's service, whose workloads must run as this service account`,
          );
        }
        if (!sources.includes(s.service)) sources.push(s.service);
      });
    });
  });
  if (!usable) return result;
  const rule = (source: string, access: "allow" | "deny"): AccessRule =>
    native("AccessRule", nativeName(base, source === "*" ? "any" : source), {
      source,
      destination: destination as string,
      action: access,
    });
  if (action === "DENY") {
    result.rules = sources.map((s) => rule(s, "deny"));
    if (sources.includes("*")) result.deniedToAll.push(destination);
    return result;
  }
  // ALLOW: the named sources are allowed and, as in Istio once an ALLOW policy applies, every other
  // caller is refused ("*" deny, which a source's own rule overrides), unless a rule allows any.
  result.rules = sources.map((s) => rule(s, "allow"));
  if (!sources.includes("*")) result.rules.push(rule("*", "deny"));
  return result;
}

// --- ServiceEntry and WorkloadEntry ---------------------------------------------------------------

type ServicePort = Service["spec"]["ports"][number];

/** Istio's port protocols wasmesh serves, as a Service port's protocol (HTTP2: see FIELDS). */
const PROTOCOLS: Record<string, ServicePort["protocol"]> = {
  HTTP: "http",
  HTTP2: "http",
  GRPC: "grpc",
  "GRPC-WEB": "http",
};

/** A ServiceEntry's ports as a Service's, with each port's targetPort; errors at `spec.ports`. */
function entryPorts(
  ctx: Context | undefined,
  ports: readonly unknown[],
): { port: ServicePort; targetPort: number | undefined }[] {
  const out: { port: ServicePort; targetPort: number | undefined }[] = [];
  ports.forEach((p, i) => {
    const at = `spec.ports[${i}]`;
    if (!isObj(p)) {
      ctx?.error(at, "must be a port (number, name, protocol)");
      return;
    }
    const number = p.number;
    if (typeof number !== "number" || !Number.isInteger(number) || number < 1 || number > 65_535) {
      ctx?.error(`${at}.number`, "must be a port number from 1 to 65535");
      return;
    }
    const name = typeof p.name === "string" ? p.name : undefined;
    // Istio's naming convention says the protocol when none is written: `http-web`, `grpc`.
    const given = typeof p.protocol === "string" ? p.protocol : name?.split("-")[0];
    const protocol = given === undefined ? undefined : PROTOCOLS[given.toUpperCase()];
    if (protocol === undefined) {
      ctx?.error(
        `${at}.protocol`,
        given === undefined
          ? "is required: wasmesh must know that the port speaks HTTP (HTTP, HTTP2, GRPC)"
          : `${given}: the mesh routes HTTP only (HTTP, HTTP2, GRPC, GRPC-WEB); TCP and TLS to a service are not supported`,
      );
      return;
    }
    if (given?.toUpperCase() === "HTTP2") {
      ctx?.warn(
        `${at}.protocol`,
        "HTTP2 is carried as http: sidecars call the Workloads over HTTP/1.1 (a GRPC port gets HTTP/2)",
      );
    }
    const portName = name ?? `${protocol}-${number}`;
    if (!isDnsLabel(portName)) {
      ctx?.error(`${at}.name`, `'${portName}' is no DNS label, as a wasmesh Service's port names are`);
      return;
    }
    let targetPort: number | undefined;
    if (p.targetPort !== undefined) {
      const t = p.targetPort;
      if (typeof t !== "number" || !Number.isInteger(t) || t < 1 || t > 65_535) {
        ctx?.error(`${at}.targetPort`, "must be a port number from 1 to 65535");
        return;
      }
      targetPort = t;
    }
    out.push({ port: { name: portName, port: number, protocol }, targetPort });
  });
  return out;
}

/** Where a Workload of the ports' service is reached: one port, or the error's path and message. */
function workloadPort(
  ports: readonly { port: ServicePort; targetPort: number | undefined }[],
  own: unknown,
  at: string,
): { ok: true; port: number } | { ok: false; path: string; message: string } {
  const named = isObj(own) ? own : {};
  for (const [k, v] of Object.entries(named)) {
    if (typeof v !== "number" || !Number.isInteger(v) || v < 1 || v > 65_535) {
      return { ok: false, path: `${at}.${k}`, message: "must be a port number from 1 to 65535" };
    }
  }
  const targets = [
    ...new Set(ports.map((p) => (named[p.port.name] as number | undefined) ?? p.targetPort ?? p.port.port)),
  ];
  if (targets.length === 1) return { ok: true, port: targets[0] as number };
  if (targets.length === 0) {
    return {
      ok: false,
      path: at,
      message: "no port: the ServiceEntry declares none, and the entry names none",
    };
  }
  return {
    ok: false,
    path: at,
    message: `the service's ports reach this workload on ports ${targets.join(", ")}: a wasmesh Workload is reached on one port (give every port the same target)`,
  };
}

/** An endpoint's or WorkloadEntry's fields, as a Workload's spec (without service and port). */
function workloadFields(
  ctx: Context,
  entry: Obj,
  at: string,
): Omit<Workload["spec"], "service" | "port"> | undefined {
  const prefix = at === "" ? "" : `${at}.`;
  const address = entry.address;
  if (typeof address !== "string" || address === "") {
    ctx.error(`${prefix}address`, "is required: the workload's IP address or host name");
    return undefined;
  }
  if (address.startsWith("unix://")) {
    ctx.error(
      `${prefix}address`,
      "a Unix domain socket is not supported: a Workload has an IP address or host name",
    );
    return undefined;
  }
  const spec: Omit<Workload["spec"], "service" | "port"> = { address };
  if (entry.labels !== undefined) {
    if (!isObj(entry.labels) || !Object.values(entry.labels).every((v) => typeof v === "string")) {
      ctx.error(`${prefix}labels`, "must be a map of label names to strings");
      return undefined;
    }
    if (Object.keys(entry.labels).length > 0) spec.labels = { ...(entry.labels as Record<string, string>) };
  }
  if (typeof entry.locality === "string" && entry.locality !== "") {
    const zone = entry.locality.split("/")[1];
    if (zone !== undefined && zone !== "") {
      spec.zone = zone;
      if (entry.locality.split("/").length > 2) {
        ctx.warn(`${prefix}locality`, `the zone '${zone}' is carried; the subzone is not`);
      }
    } else ctx.warn(`${prefix}locality`, "names no zone (<region>/<zone>): not carried");
  }
  if (typeof entry.serviceAccount === "string" && entry.serviceAccount !== "") {
    spec.serviceAccount = entry.serviceAccount;
    ctx.warn(`${prefix}serviceAccount`, SERVICE_ACCOUNT);
  }
  return spec;
}

/** A Workload's spec, its fields in the schema's order. */
function workloadSpec(
  service: string,
  fields: Omit<Workload["spec"], "service" | "port">,
  port: number,
): Workload["spec"] {
  const { address, ...rest } = fields;
  return { service, address, port, ...rest };
}

const LOCATIONS = ["MESH_INTERNAL", "MESH_EXTERNAL"];
const RESOLUTIONS = ["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN"];

/**
 * ServiceEntry: a Service per host (its ports), and a static Workload (no lease: it stays until
 * deleted) per endpoint and host; with a workloadSelector, the WorkloadEntries it selects are the
 * Workloads; with DNS resolution and neither, the host itself is the Workload's address.
 */
export function convertServiceEntry(ctx: Context, doc: Obj, base: string): (Service | Workload)[] {
  const spec = isObj(doc.spec) ? doc.spec : {};
  const location = spec.location ?? "MESH_EXTERNAL"; // Istio's default
  const resolution = spec.resolution ?? "NONE"; // Istio's default
  if (!LOCATIONS.includes(String(location))) {
    ctx.error("spec.location", `must be MESH_INTERNAL or MESH_EXTERNAL (got ${JSON.stringify(location)})`);
    return [];
  }
  if (!RESOLUTIONS.includes(String(resolution))) {
    ctx.error(
      "spec.resolution",
      `must be NONE, STATIC, DNS or DNS_ROUND_ROBIN (got ${JSON.stringify(resolution)})`,
    );
    return [];
  }
  const external = location === "MESH_EXTERNAL";
  const hosts = Array.isArray(spec.hosts) ? spec.hosts : [];
  if (hosts.length === 0) ctx.error("spec.hosts", "is required: the names the service is called by");
  const services: { service: string; host: string }[] = [];
  hosts.forEach((h, i) => {
    const s = serviceOfDeclaredHost(h, ctx.namespace);
    if (!s.ok) {
      ctx.error(`spec.hosts[${i}]`, s.message);
      return;
    }
    if (s.renamed && external) {
      ctx.error(
        `spec.hosts[${i}]`,
        `'${String(h)}' cannot be a wasmesh service name (callers send the service's name as Host, and an external server would receive '${s.service}'); wasmesh reaches external hosts of the form <name>.<domain> only`,
      );
      return;
    }
    if (s.renamed) {
      ctx.warn(
        `spec.hosts[${i}]`,
        `declared as Service '${s.service}': a wasmesh service answers to its name, so callers must send Host '${s.service}' instead of '${String(h)}' (VirtualServices and DestinationRules of the input naming the host mean it)`,
      );
    }
    if (!services.some((x) => x.service === s.service))
      services.push({ service: s.service, host: String(h) });
  });
  const ports = Array.isArray(spec.ports) ? spec.ports : [];
  if (ports.length === 0) ctx.error("spec.ports", "is required: a wasmesh Service has at least one port");
  const portList = entryPorts(ctx, ports);
  const endpoints = Array.isArray(spec.endpoints) ? spec.endpoints : [];
  const selector = spec.workloadSelector;
  if (selector !== undefined && endpoints.length > 0) {
    ctx.error("spec.workloadSelector", "and spec.endpoints are exclusive (as in Istio)");
    return [];
  }
  if (selector !== undefined) {
    const labels = isObj(selector) ? selector.labels : undefined;
    if (!isObj(labels) || Object.keys(labels).length === 0) {
      ctx.error("spec.workloadSelector.labels", "is required: the labels of the WorkloadEntries it selects");
      return [];
    }
    ctx.warn(
      "spec.workloadSelector",
      "selects the WorkloadEntries of the input (in its namespace), which become the service's Workloads; pods it would select are Workloads of their Kubernetes Services (discovery), not of this one",
    );
  }
  if (
    selector === undefined &&
    endpoints.length === 0 &&
    resolution !== "DNS" &&
    resolution !== "DNS_ROUND_ROBIN"
  ) {
    ctx.error(
      resolution === "STATIC" ? "spec.endpoints" : "spec.resolution",
      resolution === "STATIC"
        ? "is required with STATIC resolution (or a workloadSelector): the addresses of the service's Workloads"
        : "NONE without endpoints (passing calls on to the address the caller connected to) is not supported: give endpoints, or DNS resolution of the hosts",
    );
    return [];
  }
  // A port in error would leave the Service without it, and every Workload's port in doubt.
  if (portList.length !== ports.length) return [];
  if (external) {
    ctx.warn(
      "spec.location",
      "MESH_EXTERNAL: its Workloads have no sidecar, so callers send them plain HTTP (no mTLS) and AccessRules naming the service as destination are not enforced there",
    );
  }
  const out: (Service | Workload)[] = services.map(({ service }) =>
    native("Service", service, { ports: portList.map((p) => ({ ...p.port })) }),
  );
  if (selector !== undefined) return out;
  // The Workloads: each endpoint, else (DNS) each host itself, for each host's service.
  const many = services.length > 1;
  if (endpoints.length === 0) {
    for (const { service, host } of services) {
      const port = workloadPort(portList, undefined, "spec.ports");
      if (!port.ok) {
        ctx.error(port.path, port.message);
        return [];
      }
      out.push(
        native("Workload", many ? nativeName(base, service) : base, {
          service,
          address: host.toLowerCase().replace(/\.$/, ""),
          port: port.port,
        }),
      );
    }
    return out;
  }
  endpoints.forEach((e, i) => {
    const at = `spec.endpoints[${i}]`;
    if (!isObj(e)) {
      ctx.error(at, "must be an endpoint (address, ports, labels)");
      return;
    }
    const fields = workloadFields(ctx, e, at);
    const port = workloadPort(portList, e.ports, `${at}.ports`);
    if (!port.ok) ctx.error(port.path, port.message);
    if (fields === undefined || !port.ok) return;
    for (const { service } of services) {
      out.push(
        native(
          "Workload",
          many ? nativeName(base, service, String(i)) : nativeName(base, String(i)),
          workloadSpec(service, fields, port.port),
        ),
      );
    }
  });
  return out;
}

/**
 * WorkloadEntry: a static Workload of each service whose ServiceEntry of the input selects it
 * (workloadSelector, in its namespace), else of the Kubernetes service its `app` label names, as
 * Istio's Kubernetes Services select WorkloadEntries.
 */
export function convertWorkloadEntry(ctx: Context, doc: Obj, index: IstioIndex, base: string): Workload[] {
  const spec = isObj(doc.spec) ? doc.spec : {};
  const fields = workloadFields(ctx, spec, "spec");
  if (fields === undefined) return [];
  const labels = fields.labels ?? {};
  const selecting = index.selectors.filter(
    (s) => s.namespace === ctx.namespace && Object.entries(s.labels).every(([k, v]) => labels[k] === v),
  );
  const targets: { service: string; port: number }[] = [];
  if (selecting.length > 0) {
    for (const entry of selecting) {
      const port = workloadPort(entryPorts(undefined, entry.ports), spec.ports, "spec.ports");
      if (!port.ok) {
        ctx.error(port.path, `${port.message} (ServiceEntry '${entry.name}', document ${entry.document})`);
        return [];
      }
      for (const service of entry.services) {
        if (!targets.some((t) => t.service === service)) targets.push({ service, port: port.port });
      }
    }
  } else {
    if (typeof labels.app !== "string") {
      ctx.error(
        "spec.labels",
        "no ServiceEntry of the input selects this WorkloadEntry (workloadSelector.labels, in its namespace), and it has no app label naming its service",
      );
      return [];
    }
    const s = resolveHost(labels.app, ctx.namespace, index);
    if (!s.ok) {
      ctx.error("spec.labels.app", s.message);
      return [];
    }
    const own = isObj(spec.ports) ? Object.values(spec.ports) : [];
    const distinct = [...new Set(own)];
    if (distinct.length !== 1 || typeof distinct[0] !== "number") {
      ctx.error(
        "spec.ports",
        distinct.length === 0
          ? `is required: no ServiceEntry of the input gives the port of service '${s.service}' (app label)`
          : "must name one port: a wasmesh Workload is reached on one",
      );
      return [];
    }
    const port = distinct[0];
    if (!Number.isInteger(port) || port < 1 || port > 65_535) {
      ctx.error("spec.ports", "must be port numbers from 1 to 65535");
      return [];
    }
    ctx.warn(
      "spec.labels.app",
      `taken as a Workload of Service '${s.service}' (a Kubernetes Service selecting app: ${labels.app}); no ServiceEntry of the input selects it`,
    );
    targets.push({ service: s.service, port });
  }
  return targets.map(
    ({ service, port }): Workload =>
      native(
        "Workload",
        targets.length === 1 ? base : nativeName(base, service),
        workloadSpec(service, fields, port),
      ),
  );
}

// --- Gateway -------------------------------------------------------------------------------------

const GATEWAY_PROTOCOLS = ["HTTP", "HTTPS", "HTTP2", "GRPC"];

/**
 * Gateway: nothing. wasmesh deploys no gateway: the edge worker serves north-south requests to
 * every service that outside callers may call, by its name as Host. What a server says that
 * the edge does anyway is a warning; what it cannot serve (TCP, client certificates, passthrough)
 * is an error.
 */
export function convertGateway(ctx: Context, doc: Obj): [] {
  const spec = isObj(doc.spec) ? doc.spec : {};
  const servers = Array.isArray(spec.servers) ? spec.servers : [];
  if (servers.length === 0) ctx.error("spec.servers", "is required");
  servers.forEach((server, i) => {
    const at = `spec.servers[${i}]`;
    if (!isObj(server)) {
      ctx.error(at, "must be a server (port, hosts, tls)");
      return;
    }
    const protocol = isObj(server.port) ? String(server.port.protocol ?? "").toUpperCase() : "";
    if (!GATEWAY_PROTOCOLS.includes(protocol)) {
      ctx.error(
        `${at}.port.protocol`,
        `${protocol === "" ? "is required" : protocol}: the edge serves HTTP and HTTPS only (HTTP, HTTPS, HTTP2, GRPC)`,
      );
    }
    const hosts = Array.isArray(server.hosts) ? server.hosts.map(String) : [];
    ctx.warn(
      `${at}.hosts`,
      `${hosts.join(", ") || "(none)"}: not carried: wasmesh has no gateway; the edge worker serves every service that outside callers may call (AccessRules with source "*", else MeshPolicy's defaultAccess), with the service's name as Host`,
    );
    if (isObj(server.tls)) {
      const tls = server.tls;
      // Istio's default mode is PASSTHROUGH; an HTTP server's tls says httpsRedirect only.
      const mode = tls.mode ?? (protocol === "HTTP" ? undefined : "PASSTHROUGH");
      if (tls.httpsRedirect === true) {
        ctx.warn(`${at}.tls.httpsRedirect`, "not carried: redirecting to HTTPS is the edge's zone setting");
      }
      if (mode === "SIMPLE") {
        ctx.warn(
          `${at}.tls`,
          "the edge terminates TLS with the certificate of its zone (the platform's), not with this server's (credentialName, serverCertificate)",
        );
      } else if (mode !== undefined) {
        ctx.error(
          `${at}.tls.mode`,
          `${String(mode)}: the edge terminates TLS itself, without client certificates or passthrough (SIMPLE only)`,
        );
      }
    } else if (protocol === "HTTPS") {
      ctx.error(`${at}.tls`, "is required with HTTPS (as in Istio)");
    }
  });
  return [];
}

// --- WasmPlugin ----------------------------------------------------------------------------------

/**
 * Istio runs plugins by phase (AUTHN, then AUTHZ, then STATS, then the unspecified phase), each by
 * priority; wasmesh by one priority: a phase is an offset, so that the order is kept, and a plugin
 * without phase or priority has wasmesh's default, 0.
 */
const PHASE_OFFSET: Record<string, number> = {
  AUTHN: 3_000_000,
  AUTHZ: 2_000_000,
  STATS: 1_000_000,
  UNSPECIFIED_PHASE: 0,
};
const MAX_PHASE_PRIORITY = 999_999;

/** The registry module name a url names: its last path segment, without tag, digest or extension. */
export function moduleNameOfUrl(url: string): string {
  const path = url.replace(/^[a-z]+:\/\//i, "").replace(/[?#].*$/, "");
  const last =
    path
      .split("/")
      .filter((s) => s !== "")
      .pop() ?? "";
  return last
    .replace(/@sha256:[0-9a-f]*$/i, "")
    .replace(/:[^:]*$/, "")
    .replace(/\.wasm$/i, "")
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, "-")
    .replace(/^-+|-+$/g, "");
}

export function convertWasmPlugin(ctx: Context, doc: Obj, index: IstioIndex, base: string): WasmPlugin[] {
  const spec = isObj(doc.spec) ? doc.spec : {};
  if (spec.vmConfig !== undefined || spec.targetRef !== undefined || spec.targetRefs !== undefined) return []; // refused by the audit
  const type = spec.type ?? "HTTP";
  if (type !== "HTTP" && type !== "UNSPECIFIED_PLUGIN_TYPE") {
    ctx.error("spec.type", `${String(type)}: wasmesh runs HTTP plugins only`);
    return [];
  }

  // The module.
  let module: string | undefined;
  const url = typeof spec.url === "string" ? spec.url : undefined;
  if (typeof spec.sha256 === "string" && spec.sha256 !== "") {
    const found = index.modules.find((m) => m.sha256 === spec.sha256);
    if (found === undefined) {
      ctx.error(
        "spec.sha256",
        `no module of the registry has this digest${url?.startsWith("oci://") || (url !== undefined && !url.includes("://")) ? " (for an OCI image Istio's sha256 is the image's digest, not the module's: leave it out to take the module by its name)" : ""}: push the module first (wasmesh modules push FILE --name NAME)`,
      );
      return [];
    }
    module = found.name;
  } else if (url !== undefined && url !== "") {
    const name = moduleNameOfUrl(url);
    const found = index.modules.find((m) => m.name === name);
    if (found === undefined || !isDnsLabel(name)) {
      ctx.error(
        "spec.url",
        isDnsLabel(name)
          ? `wasmesh pulls no module: it runs module '${name}' (the url's last path segment) of the registry, which has none of that name: push it first (wasmesh modules push FILE --name ${name})`
          : `names no module: its last path segment gives no module name`,
      );
      return [];
    }
    module = found.name;
    if (/@sha256:/i.test(url)) {
      ctx.warn(
        "spec.url",
        `the digest pins an image wasmesh does not pull: module '${name}' of the registry runs, whichever version it holds`,
      );
    }
  } else {
    ctx.error("spec.url", "is required: the module (by its name in the registry) or spec.sha256");
    return [];
  }

  // The services.
  let services: string[];
  if (spec.selector !== undefined) {
    const labels = isObj(spec.selector) && isObj(spec.selector.matchLabels) ? spec.selector.matchLabels : {};
    const keys = Object.keys(labels);
    if (keys.length !== 1 || keys[0] !== "app" || typeof labels.app !== "string") {
      ctx.error(
        "spec.selector.matchLabels",
        "must be {app: <service>}: a wasmesh WasmPlugin runs in the sidecars of services, not of workloads by labels (a gateway's neither)",
      );
      return [];
    }
    const s = resolveHost(labels.app, ctx.namespace, index);
    if (!s.ok) {
      ctx.error("spec.selector.matchLabels.app", s.message);
      return [];
    }
    services = [s.service];
  } else if (ctx.namespace !== undefined && ctx.namespace !== ROOT_NAMESPACE) {
    ctx.error(
      "spec.selector",
      `is required outside ${ROOT_NAMESPACE}: a plugin for every workload of namespace '${ctx.namespace}' has no WasmPlugin form (it names services, or "*" for all of the mesh)`,
    );
    return [];
  } else services = ["*"];

  // Direction and order.
  let direction: "inbound" | "outbound" = "inbound";
  if (Array.isArray(spec.match) && spec.match.length > 0) {
    const modes = new Set(spec.match.map((m) => (isObj(m) ? String(m.mode ?? "CLIENT_AND_SERVER") : "")));
    const [mode] = modes;
    if (modes.size !== 1 || (mode !== "SERVER" && mode !== "CLIENT")) {
      ctx.error(
        modes.size === 1 ? "spec.match[0].mode" : "spec.match",
        `${[...modes].join(", ")}: a wasmesh WasmPlugin runs in one direction, SERVER (inbound) or CLIENT (outbound); make one plugin per direction`,
      );
      return [];
    }
    if (mode === "CLIENT") direction = "outbound";
  }
  const phase = String(spec.phase ?? "UNSPECIFIED_PHASE");
  if (!Object.hasOwn(PHASE_OFFSET, phase)) {
    ctx.error(
      "spec.phase",
      `must be AUTHN, AUTHZ, STATS or UNSPECIFIED_PHASE (got ${JSON.stringify(spec.phase)})`,
    );
    return [];
  }
  if ((phase === "AUTHN" || phase === "AUTHZ") && direction === "inbound") {
    ctx.warn(
      "spec.phase",
      `${phase}: the plugin runs after wasmesh's access check (AccessRules), where Istio runs it before authorization; it runs before the other plugins, as in Istio`,
    );
  }
  const own = spec.priority ?? 0;
  if (typeof own !== "number" || !Number.isInteger(own) || Math.abs(own) > MAX_PHASE_PRIORITY) {
    ctx.error(
      "spec.priority",
      `must be a whole number from -${MAX_PHASE_PRIORITY} to ${MAX_PHASE_PRIORITY}: wasmesh orders phases by priority offsets of 1000000`,
    );
    return [];
  }
  const priority = (PHASE_OFFSET[phase] as number) + own;
  const fail = spec.failStrategy ?? "FAIL_CLOSE";
  if (fail === "FAIL_OPEN" || fail === "FAIL_RELOAD") {
    ctx.warn(
      "spec.failStrategy",
      `${fail} is not carried: a plugin that fails (a fatal error, a crash) fails the requests it sees, as FAIL_CLOSE`,
    );
  } else if (fail !== "FAIL_CLOSE") {
    ctx.error(
      "spec.failStrategy",
      `must be FAIL_CLOSE, FAIL_OPEN or FAIL_RELOAD (got ${JSON.stringify(fail)})`,
    );
    return [];
  }
  if (spec.pluginConfig !== undefined && !isObj(spec.pluginConfig)) {
    ctx.error("spec.pluginConfig", "must be a mapping (the plugin's configuration)");
    return [];
  }
  let rootId: string | undefined;
  if (spec.pluginName !== undefined) {
    if (typeof spec.pluginName !== "string" || spec.pluginName === "" || spec.pluginName.length > 256) {
      ctx.error("spec.pluginName", "must be a name of 1 to 256 characters");
      return [];
    }
    rootId = spec.pluginName;
  }
  return [
    native("WasmPlugin", base, {
      module,
      services,
      ...(rootId !== undefined ? { rootId } : {}),
      configuration: structuredClone(isObj(spec.pluginConfig) ? spec.pluginConfig : {}),
      direction,
      ...(priority !== 0 ? { priority } : {}),
    }),
  ];
}

// --- Telemetry -----------------------------------------------------------------------------------

/** Whether a resource of this namespace speaks for the whole mesh (Istio's root namespace, or universal). */
const isMeshNamespace = (namespace: string | undefined): boolean =>
  namespace === undefined || namespace === ROOT_NAMESPACE;

/** Istio's canonical service name label, which defaults to the app label. */
const CANONICAL_NAME = "service.istio.io/canonical-name";

/** The one mode wasmesh has: both listeners alike. */
function bothDirections(ctx: Context, match: unknown, at: string, what: string): boolean {
  if (match === undefined) return true;
  const mode = isObj(match) ? (match.mode ?? "CLIENT_AND_SERVER") : undefined;
  if (mode === "CLIENT_AND_SERVER") return true;
  ctx.error(
    `${at}.match.mode`,
    `${JSON.stringify(mode)}: wasmesh ${what} both listeners of a sidecar (inbound and outbound) alike; only CLIENT_AND_SERVER is carried`,
  );
  return false;
}

/**
 * Telemetry → a Tracing (spec.tracing) and an AccessLog (spec.accessLogging), the mesh's (no
 * selector, in Istio's root namespace or universal) or a service's (selector.matchLabels app). Istio
 * takes a tracing provider's backend from MeshConfig's extensionProviders, which wasmesh has no copy
 * of: the annotation TRACING_BACKEND_ANNOTATION gives it, and nothing else does. The mesh's Tracing
 * needs one (an error naming the provider, else spec.tracing[i]); a service's inherits the mesh
 * Tracing's when it names no provider, or one the input's mesh Telemetry names; another provider
 * without the annotation is an error (its spans would reach another collector).
 */
export function convertTelemetry(
  ctx: Context,
  doc: Obj,
  index: IstioIndex,
  base: string,
): (Tracing | AccessLog)[] {
  const spec = isObj(doc.spec) ? doc.spec : {};
  if (spec.targetRef !== undefined || spec.targetRefs !== undefined) return []; // refused by the audit
  let service: string | undefined;
  if (spec.selector !== undefined) {
    const labels = isObj(spec.selector) && isObj(spec.selector.matchLabels) ? spec.selector.matchLabels : {};
    const keys = Object.keys(labels);
    const key = keys[0];
    if (keys.length !== 1 || (key !== "app" && key !== CANONICAL_NAME) || typeof labels[key] !== "string") {
      ctx.error(
        "spec.selector.matchLabels",
        `must be {app: <service>} (or {${CANONICAL_NAME}: <service>}): a wasmesh Tracing or AccessLog applies to a service's sidecars, not to workloads by labels`,
      );
      return [];
    }
    const s = resolveHost(labels[key], ctx.namespace, index);
    if (!s.ok) {
      ctx.error(`spec.selector.matchLabels.${key}`, s.message);
      return [];
    }
    service = s.service;
  } else if (!isMeshNamespace(ctx.namespace)) {
    ctx.error(
      "spec.selector",
      `is required outside ${ROOT_NAMESPACE}: telemetry for every workload of namespace '${ctx.namespace}' has no native form (a Tracing or AccessLog is the mesh's or one service's)`,
    );
    return [];
  }
  const scope = service !== undefined ? { service } : {};
  const out: (Tracing | AccessLog)[] = [];
  const tracing = Array.isArray(spec.tracing) ? spec.tracing : [];
  if (tracing.length > 1) {
    ctx.error(
      "spec.tracing",
      "has more than one entry: a wasmesh Tracing is one configuration for both listeners",
    );
    return [];
  }
  const t = tracing[0];
  if (isObj(t)) {
    const made = telemetryTracing(ctx, doc, t, index, service);
    if (made !== undefined) out.push(native("Tracing", base, { ...scope, ...made }) as Tracing);
  }
  const logging = Array.isArray(spec.accessLogging) ? spec.accessLogging : [];
  if (logging.length > 0) {
    let enabled = false;
    let usable = true;
    logging.forEach((entry, i) => {
      const at = `spec.accessLogging[${i}]`;
      const l = isObj(entry) ? entry : {};
      if (l.filter !== undefined) usable = false; // refused by the audit
      if (!bothDirections(ctx, l.match, at, "logs")) usable = false;
      if (l.disabled !== undefined && typeof l.disabled !== "boolean") {
        ctx.error(`${at}.disabled`, "must be true or false");
        usable = false;
        return;
      }
      if (l.disabled === true) return;
      const providers = Array.isArray(l.providers) ? l.providers : [];
      if (providers.length === 0) {
        ctx.error(
          `${at}.providers`,
          "is required: Istio's default provider comes from MeshConfig (defaultProviders.accessLogging), which wasmesh does not read; name envoy (Istio's built-in provider, stdout)",
        );
        usable = false;
      }
      providers.forEach((p, j) => {
        const name = isObj(p) ? p.name : undefined;
        if (name === "envoy") enabled = true;
        else {
          ctx.error(
            `${at}.providers[${j}].name`,
            `${JSON.stringify(name)}: only envoy (Istio's built-in provider, stdout) is carried; the others are MeshConfig's extensionProviders, which wasmesh does not read (apply a native AccessLog with a file backend instead)`,
          );
          usable = false;
        }
      });
    });
    if (usable) {
      const backends: AccessLogBackend[] = enabled ? [{ stdout: {} }] : [];
      out.push(native("AccessLog", base, { ...scope, backends }) as AccessLog);
    }
  }
  return out;
}

/** One tracing entry of a Telemetry as a Tracing's spec (without service), or undefined after an error. */
function telemetryTracing(
  ctx: Context,
  doc: Obj,
  t: Obj,
  index: IstioIndex,
  service: string | undefined,
): Omit<Tracing["spec"], "service"> | undefined {
  const at = "spec.tracing[0]";
  let usable = bothDirections(ctx, t.match, at, "traces");
  if (t.disableSpanReporting === true) {
    ctx.error(
      `${at}.disableSpanReporting`,
      "a sidecar that propagates trace context but reports no spans is not supported: wasmesh's sidecars report the spans of the requests they trace (leave the service out of tracing with randomSamplingPercentage: 0, which keeps callers' sampled decisions)",
    );
    usable = false;
  }
  if (t.useRequestIdForTraceSampling === false) {
    ctx.warn(
      `${at}.useRequestIdForTraceSampling`,
      "not carried: wasmesh's sidecars draw the sampling decision from x-request-id (Envoy's default)",
    );
  }
  // The backend: the annotation's, or (a service's) the mesh Tracing's.
  const metadata = isObj(doc.metadata) ? doc.metadata : {};
  const annotations = isObj(metadata.annotations) ? metadata.annotations : {};
  const given = annotations[TRACING_BACKEND_ANNOTATION];
  let backend: Tracing["spec"]["backend"];
  if (given !== undefined) {
    const b = parseBackend(given);
    if (!b.ok) {
      ctx.error(`metadata.annotations.${TRACING_BACKEND_ANNOTATION}`, b.message);
      return undefined;
    }
    backend = b.backend;
  }
  const providers = Array.isArray(t.providers) ? t.providers : [];
  if (providers.length > 1) {
    ctx.error(`${at}.providers`, "names more than one provider: a wasmesh Tracing has one backend");
    return undefined;
  }
  const first = isObj(providers[0]) ? providers[0].name : undefined;
  const provider = typeof first === "string" && first !== "" ? first : undefined;
  if (providers.length === 1 && provider === undefined) {
    ctx.error(`${at}.providers[0].name`, "is required: the provider's name");
    return undefined;
  }
  if (backend === undefined) {
    const how = `give its backend as the annotation ${TRACING_BACKEND_ANNOTATION}: '<protocol> <url>' (otlp-grpc, otlp-http or zipkin, e.g. 'otlp-grpc http://otel-collector.observability:4317')`;
    if (service === undefined) {
      ctx.error(
        provider !== undefined ? `${at}.providers[0].name` : at,
        `${provider !== undefined ? `provider '${provider}'` : "Istio's default provider (MeshConfig defaultProviders.tracing)"}: its backend is in MeshConfig's extensionProviders, which wasmesh does not read, and the mesh's Tracing needs one: ${how}`,
      );
      return undefined;
    }
    if (provider !== undefined && !index.meshTracingProviders.has(provider)) {
      ctx.error(
        `${at}.providers[0].name`,
        `provider '${provider}' is not the one the input's mesh Telemetry names: its backend is in MeshConfig's extensionProviders, which wasmesh does not read; ${how}, or leave providers out to inherit the mesh Tracing's backend`,
      );
      return undefined;
    }
  }
  let sampling: Tracing["spec"]["sampling"];
  if (t.randomSamplingPercentage !== undefined) {
    const p = percentage(ctx, t.randomSamplingPercentage, `${at}.randomSamplingPercentage`);
    if (p === undefined) usable = false;
    else sampling = { randomPercent: p };
  }
  const tags: TraceTag[] = [];
  if (t.customTags !== undefined) {
    if (!isObj(t.customTags)) {
      ctx.error(`${at}.customTags`, "must be a map of tag names to literal or header");
      return undefined;
    }
    for (const [name, value] of Object.entries(t.customTags)) {
      const tat = `${at}.customTags.${name}`;
      const v = isObj(value) ? value : {};
      const kinds = Object.keys(v);
      let tag: TraceTag | undefined;
      if (kinds.length !== 1) {
        ctx.error(tat, "must have exactly one of literal, header, environment");
        usable = false;
        continue;
      }
      if (isObj(v.literal)) {
        tag = literalTag(ctx, name, v.literal.value, { tag: tat, literal: `${tat}.literal.value` });
      } else if (isObj(v.header)) {
        tag = headerTag(ctx, name, v.header.name, v.header.defaultValue, {
          tag: tat,
          header: `${tat}.header.name`,
          fallback: `${tat}.header.defaultValue`,
        });
      } else if (v.environment !== undefined) {
        ctx.warn(
          `${tat}.environment`,
          "not carried: a tag from the proxy's environment variables has no wasmesh form (sidecars tag from request headers or literals)",
        );
        continue;
      } else {
        ctx.error(tat, "must have exactly one of literal, header, environment");
        usable = false;
        continue;
      }
      if (tag === undefined) usable = false;
      else tags.push(tag);
    }
  }
  if (!usable) return undefined;
  return {
    ...(backend !== undefined ? { backend } : {}),
    ...(sampling !== undefined ? { sampling } : {}),
    ...(tags.length > 0 ? { tags } : {}),
  };
}

// --- The mesh ------------------------------------------------------------------------------------

export const istio: SourceMesh<IstioIndex> = {
  name: "Istio",
  fields: FIELDS,
  identify(doc) {
    const known = istioKind(doc);
    if (!known.known) return undefined;
    const kind = typeof doc.kind === "string" ? doc.kind : "";
    const metadata = isObj(doc.metadata) ? doc.metadata : {};
    const name = typeof metadata.name === "string" ? metadata.name : "";
    if (known.message !== undefined) return { kind, name, error: { path: "kind", message: known.message } };
    return {
      kind,
      name,
      ...(typeof metadata.namespace === "string" ? { namespace: metadata.namespace } : {}),
    };
  },
  index: indexIstio,
  translate(ctx, doc, index, base) {
    if (isObj(doc.spec)) auditFields(doc.spec, "spec", FIELDS[ctx.kind] ?? {}, ctx);
    switch (ctx.kind) {
      case "VirtualService":
        return { resources: convertVirtualService(ctx, doc, index, base) };
      case "DestinationRule":
        return { resources: convertDestinationRule(ctx, doc, base, index) };
      case "ServiceEntry":
        return { resources: convertServiceEntry(ctx, doc, base) };
      case "WorkloadEntry":
        return { resources: convertWorkloadEntry(ctx, doc, index, base) };
      case "Gateway":
        return { resources: convertGateway(ctx, doc) };
      case "WasmPlugin":
        return { resources: convertWasmPlugin(ctx, doc, index, base) };
      case "Telemetry":
        return { resources: convertTelemetry(ctx, doc, index, base) };
      case "PeerAuthentication": {
        const mtls = convertPeerAuthentication(ctx, doc);
        return { resources: [], ...(mtls !== undefined ? { mtls } : {}) };
      }
      case "AuthorizationPolicy": {
        const access = convertAuthorizationPolicy(ctx, doc, base);
        return {
          resources: access.rules,
          denyByDefault: access.denyByDefault,
          deniedToAll: access.deniedToAll,
        };
      }
      default:
        return { resources: [] };
    }
  },
};
