// Translation: the mesh's resources compiled into the xDS resources of ONE proxy, by one generator
// per concern (clusters and endpoints, listeners and routes, the routing filter's configuration,
// ECDS). A pure function of (resources, proxy identity, module codes): the same input
// gives deep-equal output whatever the order of the resources and whatever the node id.
import type { Resource } from "../resources/index.ts";
import { TYPE_URL } from "../xds/protos.ts";
import { clusterResources, endpointResources } from "./clusters.ts";
import { extensionResources, pluginFilter, pluginsFor, routingFilter } from "./extensions.ts";
import { listenerResources, routeResources } from "./listeners.ts";
import { indexMesh } from "./mesh.ts";
import { routingFilterConfig } from "./routing-filter.ts";
import type { ModuleCode, ProxyConfig, ProxyIdentity } from "./types.ts";

export { isIpAddress } from "./addresses.ts";
export { adsConfigSource } from "./enums.ts";
export {
  type EnvoyNode,
  type NodeIdentityResult,
  nodeMetadata,
  parseNodeIdentity,
  proxyClassKey,
} from "./identity.ts";
export {
  CLUSTER_HEADER,
  defaultDenyName,
  defaultRouteName,
  INBOUND,
  inboundCluster,
  OUTBOUND,
  OUTBOUND_CLUSTER_PREFIX,
  outboundCluster,
  pluginFilterName,
  ROUTING_FILTER,
  RULE_HEADER,
  ruleName,
  STRIP_RULE_HEADER,
} from "./names.ts";
export {
  type AccessDecision,
  accessDecision,
  authorityMatch,
  routingFilterConfig,
} from "./routing-filter.ts";
export * from "./types.ts";

export interface TranslateOptions {
  /** Module code by module name, including the built-in "mesh". */
  modules: ReadonlyMap<string, ModuleCode>;
}

export function translateProxy(
  resources: readonly Resource[],
  proxy: ProxyIdentity,
  options: TranslateOptions,
): ProxyConfig {
  const mesh = indexMesh(resources);
  const routing = routingFilter(routingFilterConfig(mesh, proxy.service));
  const outbound = [...pluginsFor(mesh, proxy, "outbound").map((p) => pluginFilter(p, "outbound")), routing];
  // Without an app there is no inbound listener, so nothing to run there.
  const inbound =
    proxy.appPort === undefined
      ? []
      : pluginsFor(mesh, proxy, "inbound").map((p) => pluginFilter(p, "inbound"));

  return {
    [TYPE_URL.listener]: listenerResources(proxy, {
      outbound: outbound.map((f) => f.name),
      inbound: inbound.map((f) => f.name),
    }),
    [TYPE_URL.route]: routeResources(proxy),
    [TYPE_URL.cluster]: clusterResources(mesh, proxy),
    [TYPE_URL.endpoint]: endpointResources(mesh),
    [TYPE_URL.extensionConfig]: extensionResources([...outbound, ...inbound], options.modules),
  };
}
