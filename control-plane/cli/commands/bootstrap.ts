// `wasmesh bootstrap`: an Envoy sidecar's bootstrap (../../envoy/bootstrap.ts); needs no control plane.
import { readFileSync } from "node:fs";
import type { ProxyIdentity } from "../../envoy/index.ts";
import {
  type CommandName,
  noPositionals,
  type Out,
  parse,
  parseLabels,
  parsePort,
  readTokenFile,
  str,
  usage,
  warn,
} from "../args.ts";

export const help = `Usage: wasmesh bootstrap --node-id ID --service NAME [--labels k=v,...] [--xds HOST:PORT]
                         [--outbound-port 15001] [--inbound-port 15006] [--app-port P]
                         [--inbound-address 0.0.0.0] [--admin-port 9901] [--xds-protocol sotw|delta]
                         [--token-file FILE] [--ca-file FILE]

Prints (YAML) the bootstrap of an Envoy sidecar: node identity, admin and the ADS cluster only;
everything else comes from the control plane over xDS. Needs no control plane to run. Start Envoy
on it with --disable-hot-restart (as its first lines say): without it, a second Envoy on the same
host fails with "unable to bind domain socket with base_id=0".
  --node-id ID          this proxy's unique id (required)
  --service NAME        the service it belongs to (required)
  --labels k=v,...      its workload labels, e.g. version=v2 (route subsets select on them)
  --xds HOST:PORT       the control plane's xDS server (default 127.0.0.1:5678)
  --outbound-port P     the listener the app sends outbound requests to (default 15001)
  --inbound-port P      the listener for requests to this workload (default 15006)
  --app-port P          the local app's port; without it there is no inbound listener
  --inbound-address A   the IP address the inbound listener binds (default 0.0.0.0, every
                        interface: sidecars on other hosts call this workload through it; give
                        the workload's own IP to expose less, or 127.0.0.1 when all its callers
                        are on this host)
  --admin-port P        Envoy's admin interface, on 127.0.0.1 (default 9901)
  --xds-protocol        sotw (state of the world, default) or delta (incremental xDS)
  --ca-file FILE        the control plane serves TLS (wasmesh server --tls): Envoy's xDS cluster
                        speaks TLS, verifying the server with this CA (<data>/ca-bundle.pem of
                        the server's data directory) and that it names the --xds host
  --token-file FILE     the token Envoy's ADS stream presents: a dataplane token of --service
                        (wasmesh token dataplane --service NAME > FILE). The control plane refuses
                        a stream without one (UNAUTHENTICATED) or of another service
                        (PERMISSION_DENIED). The bootstrap then holds the token: keep the file
                        readable by Envoy's user only`;

const command: CommandName = { name: "bootstrap", help };

export async function run(args: string[], out: Out): Promise<undefined> {
  const { values, positionals } = parse(
    args,
    {
      "node-id": { type: "string" },
      service: { type: "string" },
      labels: { type: "string" },
      xds: { type: "string" },
      "outbound-port": { type: "string" },
      "inbound-port": { type: "string" },
      "app-port": { type: "string" },
      "inbound-address": { type: "string" },
      "admin-port": { type: "string" },
      "xds-protocol": { type: "string" },
      "token-file": { type: "string" },
    },
    command,
  );
  if (values.help) return out(help);
  noPositionals(positionals, command);
  const nodeId = str(values["node-id"]);
  const service = str(values.service);
  if (!nodeId) throw usage(command, "bootstrap: --node-id is required");
  if (!service) throw usage(command, "bootstrap: --service is required");
  // The YAML printer and Envoy's vocabulary, once the required flags are there.
  const [
    { bootstrapYaml, parseHostPort },
    { nodeMetadata, parseNodeIdentity, DEFAULT_ADDRESSES, DEFAULT_PORTS, NODE_METADATA },
  ] = await Promise.all([import("../../envoy/bootstrap.ts"), import("../../envoy/index.ts")]);
  const protocol = str(values["xds-protocol"]) ?? "sotw";
  if (protocol !== "sotw" && protocol !== "delta") {
    throw usage(command, `--xds-protocol: expected sotw or delta, got '${protocol}'`);
  }
  const xds = str(values.xds) ?? "127.0.0.1:5678";
  try {
    parseHostPort(xds, "--xds");
  } catch (error) {
    throw usage(command, (error as Error).message);
  }
  const ports = {
    "--outbound-port": parsePort(str(values["outbound-port"]), "--outbound-port", DEFAULT_PORTS.outbound),
    "--inbound-port": parsePort(str(values["inbound-port"]), "--inbound-port", DEFAULT_PORTS.inbound),
    "--app-port": parsePort(str(values["app-port"]), "--app-port"),
    "--admin-port": parsePort(str(values["admin-port"]), "--admin-port", DEFAULT_PORTS.admin),
  };
  // Every one of them is bound on this host (the app's by the app): two equal ones cannot both work.
  const seen = new Map<number, string>();
  for (const [flag, port] of Object.entries(ports)) {
    if (port === undefined) continue;
    const other = seen.get(port);
    if (other) throw usage(command, `${other} and ${flag} are both ${port}; they must differ`);
    seen.set(port, flag);
  }
  const appPort = ports["--app-port"];
  const proxy: ProxyIdentity = {
    nodeId,
    service,
    labels: parseLabels(str(values.labels)),
    outboundPort: ports["--outbound-port"] as number,
    inboundPort: ports["--inbound-port"] as number,
    ...(appPort !== undefined ? { appPort } : {}),
    outboundAddress: DEFAULT_ADDRESSES.outbound,
    inboundAddress: str(values["inbound-address"]) ?? DEFAULT_ADDRESSES.inbound,
    appAddress: DEFAULT_ADDRESSES.app,
    // Envoy run by hand has no agent to fetch module files: the code comes inline.
    moduleDelivery: "inline",
  };
  // The control plane refuses a stream whose identity it cannot read; say so now, not at run time.
  const identity = parseNodeIdentity({ id: nodeId, cluster: service, metadata: nodeMetadata(proxy) });
  if (!identity.ok) {
    const flags: Record<string, string> = {
      [`node.metadata["${NODE_METADATA.service}"]`]: "--service",
      [`node.metadata["${NODE_METADATA.labels}"]`]: "--labels",
      [`node.metadata["${NODE_METADATA.inboundAddress}"]`]: "--inbound-address",
    };
    let message = identity.error.replace(/^invalid node identity: /, "");
    for (const [field, flag] of Object.entries(flags)) message = message.replaceAll(field, flag);
    throw usage(command, `bootstrap: the control plane would refuse this identity: ${message}`);
  }
  const tokenFile = str(values["token-file"]);
  let token: string | undefined;
  if (tokenFile !== undefined) token = readTokenFile(command, tokenFile);
  else {
    warn(
      `no --token-file: the control plane refuses this Envoy's ADS stream (UNAUTHENTICATED) until its bootstrap carries a token (wasmesh token dataplane --service ${service})`,
    );
  }
  const caFile = str(values["ca-file"]);
  let xdsCa: string | undefined;
  if (caFile !== undefined) {
    try {
      xdsCa = readFileSync(caFile, "utf8");
    } catch (error) {
      throw usage(
        command,
        `--ca-file: cannot read ${caFile}: ${(error as NodeJS.ErrnoException).code ?? error}`,
      );
    }
    if (!xdsCa.includes("-----BEGIN CERTIFICATE-----"))
      throw usage(command, `--ca-file: ${caFile} holds no PEM certificate`);
  }
  out(
    bootstrapYaml({
      proxy,
      xds,
      adminPort: ports["--admin-port"] as number,
      protocol,
      ...(token !== undefined ? { token } : {}),
      ...(xdsCa !== undefined ? { xdsCa } : {}),
    }).trimEnd(),
  );
}
