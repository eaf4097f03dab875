// Proxies whose configuration is the same form a class: the xDS server computes and encodes a
// class's configuration once for all of its proxies.
import type { ProxyIdentity } from "../envoy/index.ts";

/**
 * Everything in the identity that the translation reads. The node id and the labels are left out:
 * the configuration of a sidecar depends on its service and its listeners, not on which instance it
 * is, so every instance of a service shares one memoized configuration. A discovered service's
 * name holds its namespace (`reviews.bookinfo`), whose short names its routing filter answers to,
 * so the service covers that too.
 */
export function proxyClassKey(proxy: ProxyIdentity): string {
  return JSON.stringify([
    proxy.service,
    proxy.outboundAddress,
    proxy.outboundPort,
    proxy.inboundAddress,
    proxy.inboundPort,
    proxy.appAddress,
    proxy.appPort ?? null,
    // Inline bytes or a file name: the ECDS resources differ, so inline and local are two classes.
    proxy.moduleDelivery,
    // With SDS the clusters and the inbound listener carry TLS; without, plain text.
    proxy.sds ?? null,
  ]);
}
