// Weighted destination choice: smooth weighted round-robin (deterministic: 90/10 gives exactly
// 9 of every 10 requests to the first destination on each worker thread), or a hash of a header
// or cookie when the route is sticky so one user keeps seeing one version.
import { Destination, Route } from "./config";
import { RequestView } from "./request";

export function chooseDestination(route: Route, request: RequestView): Destination {
  const destinations = route.destinations;
  if (destinations.length == 1) return destinations[0];
  let key: string | null = null;
  if (route.stickyHeader.length > 0) key = request.header(route.stickyHeader);
  else if (route.stickyCookie.length > 0) key = request.cookie(route.stickyCookie);
  if (key !== null) return byHash(route, fnv1a(key));
  return smoothRoundRobin(route);
}

function byHash(route: Route, hash: u32): Destination {
  let point = hash % route.totalWeight;
  const destinations = route.destinations;
  for (let i = 0; i < destinations.length; i++) {
    const weight = destinations[i].weight;
    if (point < weight) return destinations[i];
    point -= weight;
  }
  return destinations[destinations.length - 1];
}

/** nginx's smooth weighted round-robin: spreads the minority evenly instead of in bursts. */
function smoothRoundRobin(route: Route): Destination {
  const destinations = route.destinations;
  const current = route.current;
  let best = 0;
  for (let i = 0; i < destinations.length; i++) {
    current[i] += destinations[i].weight;
    if (current[i] > current[best]) best = i;
  }
  current[best] -= route.totalWeight;
  return destinations[best];
}

/** 32-bit FNV-1a over the UTF-16 code units; stable across proxies, threads and restarts. */
export function fnv1a(s: string): u32 {
  let hash: u32 = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    const c = <u32>s.charCodeAt(i);
    hash = (hash ^ (c & 0xff)) * 0x01000193;
    hash = (hash ^ (c >> 8)) * 0x01000193;
  }
  return hash;
}
