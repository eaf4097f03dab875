// Translation: the mesh's resources compiled into the xDS resources of ONE proxy, by one generator
// per concern (clusters and endpoints, listeners and routes, the routing filter's configuration,
// ECDS). A pure function of (resources, proxy identity, module codes): the same input
// gives deep-equal output whatever the order of the resources and whatever the node id.

import { DEFAULT_TRUST_DOMAIN } from "../ca/spiffe.ts";
import {
  type ModuleCode,
  type ModuleDelivery,
  type ProxyConfig,
  type ProxyIdentity,
  TYPE_URL,
  type TypedExtensionConfig,
  type XdsResource,
} from "../envoy/index.ts";
import type { Resource, WasmPlugin } from "../resources/index.ts";
import { accessRbac, accessResource } from "./access.ts";
import { endpointResources, outboundClusterResources, withInboundCluster } from "./clusters.ts";
import {
  type Direction,
  extensionResource,
  pluginFilter,
  pluginsFor,
  routingFilter,
  sortedByName,
  type WasmFilter,
} from "./extensions.ts";
import { listenerResources, routeResources } from "./listeners.ts";
import { indexMesh } from "./mesh.ts";
import { downstreamMtls, hasSds, mtlsMode } from "./mtls.ts";
import { assembleRoutingConfig, denialsFor, namespaceOf, routingParts } from "./routing-filter.ts";
import { sidecarTelemetry } from "./telemetry.ts";

export { proxyClassKey } from "./class-key.ts";
export {
  type AccessDecision,
  accessDecision,
  authorityMatch,
  routingFilterConfig,
} from "./routing-filter.ts";

export interface TranslateOptions {
  /** Module code by module name, including the built-in "mesh". */
  modules: ReadonlyMap<string, ModuleCode>;
  /** The mesh CA's trust domain, which every SPIFFE ID names (default wasmesh.local). */
  trustDomain?: string;
}

export function translateProxy(
  resources: readonly Resource[],
  proxy: ProxyIdentity,
  options: TranslateOptions,
): ProxyConfig {
  return compileMesh(resources, options).translate(proxy);
}

/** One set of resources, ready to translate for any proxy. */
export interface CompiledMesh {
  /** translateProxy for these resources; deep-equal output, with what proxies share shared. */
  translate(proxy: ProxyIdentity): ProxyConfig;
}

/**
 * Compiles the resources once for every proxy that asks: the index, and what proxies have in
 * common (the outbound clusters, the endpoints, the routing filter for each set of denials, each
 * WasmPlugin's filter, and their ECDS resources), each made the first time a proxy needs it. The
 * proxies that share a piece get the same object, which the xDS snapshot cache encodes once
 * (xds/snapshot.ts): a write to a mesh of many services costs one translation of the shared parts
 * and a little per proxy class, rather than a whole translation per class.
 */
export function compileMesh(resources: readonly Resource[], options: TranslateOptions): CompiledMesh {
  const mesh = indexMesh(resources);
  const trustDomain = options.trustDomain ?? DEFAULT_TRUST_DOMAIN;
  const made = new Map<string, unknown>();
  const once = <T>(key: string, make: () => T): T => {
    if (made.has(key)) return made.get(key) as T;
    const value = make();
    made.set(key, value);
    return value;
  };
  /** A filter and its ECDS resource for each module delivery, each made once, when first asked for. */
  const withEcds = (filter: WasmFilter) => {
    const byDelivery = new Map<ModuleDelivery, XdsResource<TypedExtensionConfig>>();
    const ecds = (delivery: ModuleDelivery) => {
      let resource = byDelivery.get(delivery);
      if (resource === undefined) {
        resource = extensionResource(filter, options.modules, delivery);
        byDelivery.set(delivery, resource);
      }
      return resource;
    };
    return { filter, ecds };
  };
  const plugin = (p: WasmPlugin, direction: Direction) =>
    once(`plugin ${direction} ${p.metadata.name}`, () => withEcds(pluginFilter(p, direction)));

  return {
    translate(proxy) {
      // Sources of one namespace (whose short names they call by) that may call the same services
      // get the same routing filter.
      const namespace = namespaceOf(proxy.service);
      const denials = denialsFor(mesh, proxy.service);
      const routing = once(`routing ${namespace ?? ""} ${JSON.stringify(denials)}`, () => {
        const parts = once(`routing parts ${namespace ?? ""}`, () => routingParts(mesh, namespace));
        return withEcds(routingFilter(assembleRoutingConfig(parts, denials, proxy.service)));
      });
      const outbound = [...pluginsFor(mesh, proxy, "outbound").map((p) => plugin(p, "outbound")), routing];
      // Without an app there is no inbound listener, so nothing to run there.
      const inbound =
        proxy.appPort === undefined
          ? []
          : pluginsFor(mesh, proxy, "inbound").map((p) => plugin(p, "inbound"));

      // TLS only for a sidecar whose agent serves it certificates (mtls.ts).
      const sds = hasSds(proxy);
      const inboundMode = sds ? mtlsMode(mesh, mesh.service(proxy.service)) : "disabled";
      const telemetry = once(`telemetry ${proxy.service}`, () => sidecarTelemetry(mesh, proxy.service));
      return {
        [TYPE_URL.listener]: listenerResources(
          proxy,
          { outbound: outbound.map((f) => f.filter.name), inbound: inbound.map((f) => f.filter.name) },
          inboundMode === "disabled"
            ? undefined
            : {
                mode: inboundMode,
                transportSocket: once("downstream mtls", () => downstreamMtls(trustDomain)),
              },
          { tracing: telemetry.tracing, accessLog: telemetry.accessLog },
        ),
        [TYPE_URL.route]: routeResources(proxy, telemetry.routeTracing),
        [TYPE_URL.cluster]: withInboundCluster(
          [
            ...(sds
              ? once("outbound clusters mtls", () => outboundClusterResources(mesh, { trustDomain }))
              : once("outbound clusters", () => outboundClusterResources(mesh))),
            ...telemetry.clusters,
          ],
          mesh,
          proxy,
        ),
        [TYPE_URL.endpoint]: [...once("endpoints", () => endpointResources(mesh))],
        [TYPE_URL.extensionConfig]: sortedByName([
          ...[...outbound, ...inbound].map((f) => f.ecds(proxy.moduleDelivery)),
          // The destination's access check, on the mTLS chain.
          ...(inboundMode === "disabled" || proxy.appPort === undefined
            ? []
            : [
                once(`access ${proxy.service}`, () =>
                  accessResource(accessRbac(mesh, proxy.service, trustDomain)),
                ),
              ]),
        ]),
      };
    },
  };
}
