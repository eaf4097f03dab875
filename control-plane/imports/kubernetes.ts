// A plain Kubernetes `v1` `Service` as wasmesh's native Service (issue 13: `wasmesh apply -f svc.yaml`
// in universal mode, where no discovery reads the cluster). The Service is named as Kubernetes
// discovery names it (kubernetes/discovery.ts): `<name>.<namespace>` when the document has a
// namespace (its own, else --namespace), `<name>` when universal (serviceOfHost's rules). Its ports
// are discovery's too: each TCP ServicePort by its name (else `port-<number>`) and number, with the
// protocol its appProtocol, else its name's prefix, says (portProtocol; http when neither does).
//
// What a wasmesh Service cannot carry is a warning (the field table): the selector (a wasmesh Service
// lists no pods: its Workloads register themselves, or discovery makes them in Kubernetes mode),
// targetPort and nodePort, the cluster IPs, session affinity, traffic policies, load balancer fields.
// An ExternalName service (a DNS alias, no workloads of the mesh) is an error. A port that speaks
// something else than HTTP or gRPC (`tcp-…`, `tls`, `https`, `mongo`…) is kept as a `tcp` port, as
// discovery keeps it, with a warning: the Service declares it, but no sidecar routes it (the mesh
// routes HTTP and gRPC). UDP and SCTP ports are left out with a warning; a Service left without ports
// is an error.
import { API_VERSION, type Service } from "../resources/index.ts";
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
import { serviceOfHost } from "./istio.ts";
import { isDnsLabel } from "./naming.ts";
import type { SourceMesh } from "./types.ts";

type ServicePort = Service["spec"]["ports"][number];
type Protocol = ServicePort["protocol"];

// appProtocol values (Kubernetes' own `kubernetes.io/…`, IANA names, Istio's) and the protocol
// the mesh serves them with: gRPC is its HTTP/2 upstream; what the app encrypts itself is opaque TCP.
export const APP_PROTOCOLS: Readonly<Record<string, Protocol>> = {
  http: "http",
  "kubernetes.io/ws": "http",
  http2: "grpc",
  h2c: "grpc",
  "kubernetes.io/h2c": "grpc",
  grpc: "grpc",
  "grpc-web": "http",
  tcp: "tcp",
  tls: "tcp",
  https: "tcp",
  "kubernetes.io/wss": "tcp",
  mongo: "tcp",
  mysql: "tcp",
  redis: "tcp",
};

/**
 * A ServicePort's protocol for the mesh: its appProtocol when it has one the mesh knows, else its
 * name's prefix (`http`, `http-…`, `grpc-…`, `http2-…`, `tcp-…`, `tls-…`, `https-…`), as Istio's
 * protocol selection; http otherwise. Discovery (Kubernetes mode) and this converter share it.
 */
export function portProtocol(port: { name?: string; appProtocol?: string }): Protocol {
  return portProtocolWhy(port).protocol;
}

function portProtocolWhy(port: { name?: string; appProtocol?: string }): {
  protocol: Protocol;
  from: "appProtocol" | "name" | "default";
} {
  const app = port.appProtocol?.toLowerCase();
  if (app !== undefined && APP_PROTOCOLS[app] !== undefined)
    return { protocol: APP_PROTOCOLS[app], from: "appProtocol" };
  const prefix = (port.name ?? "").toLowerCase().split("-")[0] ?? "";
  const named = APP_PROTOCOLS[prefix];
  return named !== undefined ? { protocol: named, from: "name" } : { protocol: "http", from: "default" };
}

const LB =
  "a load balancer is Kubernetes', not the mesh's: outside callers reach services through wasmesh's edge";

export const FIELDS: Record<string, FieldTable> = {
  Service: {
    "spec.ports": ok,
    "spec.ports[].name": partly(
      "the port's name (else port-<number>), as discovery names it; its prefix (http-, grpc-, tcp-…) gives the protocol when no appProtocol does",
    ),
    "spec.ports[].port": ok,
    "spec.ports[].protocol": partly(
      "TCP (the default); a UDP or SCTP port is left out, with a warning: the mesh carries TCP only",
    ),
    "spec.ports[].appProtocol": partly(
      "http, kubernetes.io/ws and grpc-web as http; grpc, http2, h2c and kubernetes.io/h2c as grpc; tcp, tls, https, kubernetes.io/wss, mongo, mysql and redis as tcp (declared, not routed: a warning); another value is a warning, the name decides",
    ),
    "spec.ports[].targetPort": ignored(
      "a wasmesh Service has no endpoints of its own: each Workload says the port it is called on",
    ),
    "spec.ports[].nodePort": ignored("no node ports: the mesh routes by service name"),
    "spec.type": partly(
      "ClusterIP, and NodePort and LoadBalancer as a mesh service only (a warning); ExternalName is an error: a DNS alias has no workloads of the mesh",
    ),
    "spec.externalName": refused("an ExternalName service is a DNS alias with no workloads of the mesh"),
    "spec.selector": ignored(
      "selects pods, which a wasmesh Service does not list: its Workloads register themselves (a data-plane agent's), or, in Kubernetes mode, discovery makes them from the EndpointSlices",
    ),
    "spec.clusterIP": ignored("callers reach a wasmesh service by its name, not a virtual IP"),
    "spec.clusterIPs": ignored("callers reach a wasmesh service by its name, not a virtual IP"),
    "spec.ipFamilies": ignored("callers reach a wasmesh service by its name, not a virtual IP"),
    "spec.ipFamilyPolicy": ignored("callers reach a wasmesh service by its name, not a virtual IP"),
    "spec.externalIPs": ignored("callers reach a wasmesh service by its name, not a virtual IP"),
    "spec.sessionAffinity": ignored("no session affinity: sidecars balance requests round robin"),
    "spec.sessionAffinityConfig": ignored("no session affinity: sidecars balance requests round robin"),
    "spec.externalTrafficPolicy": ignored("traffic from outside the cluster is Kubernetes', not the mesh's"),
    "spec.internalTrafficPolicy": ignored(
      "sidecars choose among all the service's Workloads (zone-aware by the Workloads' zone)",
    ),
    "spec.trafficDistribution": ignored(
      "sidecars choose among all the service's Workloads (zone-aware by the Workloads' zone)",
    ),
    "spec.publishNotReadyAddresses": ignored(
      "Workloads are called while their lease (or, in Kubernetes mode, their readiness) holds",
    ),
    "spec.loadBalancerIP": ignored(LB),
    "spec.loadBalancerSourceRanges": ignored(LB),
    "spec.loadBalancerClass": ignored(LB),
    "spec.allocateLoadBalancerNodePorts": ignored(LB),
    "spec.healthCheckNodePort": ignored(LB),
  },
};

/** Kubernetes' Service (core `v1`): the one kind of Kubernetes' own API that is converted. */
function convertService(ctx: Context, doc: Obj): Service[] {
  const spec = isObj(doc.spec) ? doc.spec : {};
  const type = spec.type ?? "ClusterIP";
  if (type === "ExternalName") {
    ctx.error(
      "spec.type",
      "ExternalName: a DNS alias has no workloads of the mesh (declare the external host's service natively)",
    );
    return [];
  }
  if (type === "NodePort" || type === "LoadBalancer") {
    ctx.warn(
      "spec.type",
      `${String(type)}: converted as a mesh service only; ${type === "NodePort" ? "node ports are Kubernetes', not the mesh's" : LB}`,
    );
  } else if (type !== "ClusterIP") {
    ctx.error(
      "spec.type",
      `must be ClusterIP, NodePort, LoadBalancer or ExternalName (got ${JSON.stringify(type)})`,
    );
    return [];
  }
  const name = serviceOfHost(ctx.name, ctx.namespace);
  if (!name.ok) {
    ctx.error("metadata.name", name.message);
    return [];
  }
  const given = Array.isArray(spec.ports) ? spec.ports : [];
  if (given.length === 0) {
    ctx.error(
      "spec.ports",
      "is required: a wasmesh Service has at least one port (a headless Service without ports has nothing to route to)",
    );
    return [];
  }
  const ports: ServicePort[] = [];
  let failed = false;
  given.forEach((p, i) => {
    const at = `spec.ports[${i}]`;
    if (!isObj(p)) {
      ctx.error(at, "must be a ServicePort (name, port, protocol)");
      failed = true;
      return;
    }
    const transport = p.protocol ?? "TCP";
    if (transport !== "TCP") {
      ctx.warn(`${at}.protocol`, `${String(transport)}: left out, the mesh carries TCP only`);
      return;
    }
    const number = p.port;
    if (typeof number !== "number" || !Number.isInteger(number) || number < 1 || number > 65_535) {
      ctx.error(`${at}.port`, "must be a port number from 1 to 65535");
      failed = true;
      return;
    }
    const portName = typeof p.name === "string" && p.name !== "" ? p.name : `port-${number}`;
    if (!isDnsLabel(portName)) {
      ctx.error(`${at}.name`, `'${portName}' is no DNS label, as a wasmesh Service's port names are`);
      failed = true;
      return;
    }
    if (ports.some((q) => q.name === portName)) {
      ctx.error(`${at}.name`, `'${portName}' names two ports`);
      failed = true;
      return;
    }
    const appProtocol = typeof p.appProtocol === "string" ? p.appProtocol : undefined;
    const { protocol, from } = portProtocolWhy({
      name: portName,
      ...(appProtocol !== undefined ? { appProtocol } : {}),
    });
    if (appProtocol !== undefined && from !== "appProtocol") {
      ctx.warn(
        `${at}.appProtocol`,
        `'${appProtocol}' is no protocol wasmesh knows: the port's ${from === "name" ? "name" : "default"} says ${protocol}`,
      );
    } else if (from === "default") {
      ctx.warn(
        `${at}.name`,
        `neither its name ('${portName}') nor an appProtocol says its protocol: taken as http (give appProtocol, or a name such as http-…, grpc-…, tcp-…)`,
      );
    }
    if (protocol === "tcp") {
      ctx.warn(
        from === "appProtocol" ? `${at}.appProtocol` : `${at}.name`,
        "not HTTP or gRPC: kept as a tcp port, which the Service declares but no sidecar routes (the mesh routes HTTP and gRPC)",
      );
    }
    ports.push({ name: portName, port: number, protocol });
  });
  if (failed) return [];
  if (ports.length === 0) {
    ctx.error("spec.ports", "has no TCP port: a wasmesh Service has at least one");
    return [];
  }
  return [{ apiVersion: API_VERSION, kind: "Service", metadata: { name: name.service }, spec: { ports } }];
}

export const kubernetes: SourceMesh<undefined> = {
  name: "Kubernetes",
  fields: FIELDS,
  identify(doc) {
    // Core v1 only (apiVersion `v1`, no group), and of its kinds only Service: a ConfigMap or Pod of
    // the same files is not claimed (an error then says no mesh converts it).
    if (doc.apiVersion !== "v1" || doc.kind !== "Service") return undefined;
    const metadata = isObj(doc.metadata) ? doc.metadata : {};
    const name = typeof metadata.name === "string" ? metadata.name : "";
    return {
      kind: "Service",
      name,
      ...(typeof metadata.namespace === "string" ? { namespace: metadata.namespace } : {}),
    };
  },
  index: () => undefined,
  translate(ctx, doc) {
    if (isObj(doc.spec)) auditFields(doc.spec, "spec", FIELDS.Service ?? {}, ctx);
    return { resources: convertService(ctx, doc) };
  },
};
