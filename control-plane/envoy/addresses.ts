// Addresses as Envoy wants them. Envoy takes only IP literals where it binds (listeners) and where it
// does not resolve (STATIC and EDS endpoints); a host name needs a STRICT_DNS cluster.
import type { Address } from "./types.generated.ts";

const IPV4 = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

/** An IPv4 or IPv6 literal (IPv6 without brackets), as opposed to a host name. */
export function isIpAddress(address: string): boolean {
  if (address.includes(":")) return URL.canParse(`http://[${address}]/`);
  return IPV4.test(address);
}

export function socketAddress(address: string, port: number): Address {
  return { socket_address: { address, port_value: port } };
}
