// `wasmesh dataplane run`: the data-plane agent (dataplane/), which owns one sidecar. This file
// checks the flags (usage errors exit 2 and start nothing), then runs the agent until SIGTERM or
// SIGINT, and turns a sidecar that cannot start into `wasmesh: <why>` and exit 1.

import { isIP } from "node:net";
import type { AgentOptions } from "../../../dataplane/agent.ts";
import type { Token } from "../../../dataplane/http.ts";
import {
  type CommandName,
  caOf,
  noPositionals,
  type Out,
  type Parsed,
  parse,
  parseCount,
  parseLabels,
  parsePort,
  readTokenFile,
  str,
  usage,
} from "../args.ts";
import { CliError, DEFAULT_API } from "../client.ts";

const captureHelp = `Usage: wasmesh dataplane capture --outbound-port P --inbound-port P --proxy-uid UID
                             [--proxy-gid GID] [--exclude-outbound-ports P,...]
                             [--exclude-outbound-cidrs CIDR,...] [--exclude-inbound-ports P,...]
                             [--ipv6] [--dry-run] [--remove]

Installs the pod's traffic capture (the injected init container runs it, with NET_ADMIN and
NET_RAW): iptables rules in the nat table that redirect the app's outbound TCP connections to the
sidecar's outbound listener and connections from outside the pod to its inbound listener. The
sidecar's own connections (--proxy-uid) and loopback are never captured. Running it again replaces
the rules (chains WASMESH_*), it never adds a second set. Needs iptables-save and iptables-restore.
  --outbound-port P              the sidecar's outbound listener (dataplane run --outbound-port)
  --inbound-port P               the sidecar's inbound listener (dataplane run --inbound-port)
  --proxy-uid UID                the user the sidecar runs as (not 0): its connections go out as they are
  --proxy-gid GID                also leave this group's connections alone
  --exclude-outbound-ports P,... outbound connections to these ports are not captured (the control plane's)
  --exclude-outbound-cidrs C,... nor to these networks (each CIDR for its own family)
  --exclude-inbound-ports P,...  connections to these pod ports reach them directly (the ready port)
  --ipv6                         the same rules for IPv6 too (ip6tables); the listeners must then
                                 accept ::1 and IPv6 connections
  --dry-run                      print the iptables-restore input, change nothing
  --remove                       remove the rules instead (other rules stay)`;

export const help = `Usage: wasmesh dataplane run --name NAME --service SERVICE --app-port PORT --token-file FILE
                             [--labels k=v,...]
                             [--address ADDR] [--zone Z] [--inbound-port P] [--outbound-port P]
                             [--admin-port P] [--ready-port P] [--cp URL] [--xds HOST:PORT]
                             [--ca-file FILE] [--ready-address ADDR] [--no-register]
                             [--envoy PATH] [--data DIR] [--lease-seconds N] [--drain-seconds N]
                             [--cert-ttl SECONDS] [--stats-interval SECONDS]
                             [--metrics-port P] [--metrics-address ADDR]
                             [--app-metrics-path PATH] [--app-metrics-port P] [-- ENVOY FLAGS...]

Runs a sidecar: writes Envoy's bootstrap, starts Envoy and restarts it (with back-off) if it dies,
registers the workload with the control plane once the sidecar is ready and renews its lease, and
serves a readiness probe. Modules reach Envoy by digest through the agent, fetched once into
--data. The agent makes the workload's key, gets its certificate from the control plane against a
CSR, renews it at about half its life and serves both to Envoy over SDS (a Unix socket in --data),
for mTLS between sidecars; the key is never written to disk nor sent anywhere. SIGTERM or SIGINT: readiness turns 503, the Workload is deleted, Envoy serves on for the
drain time while the other sidecars learn it, then drains and stops; exit 0. A second signal stops
Envoy at once. Exits 1 with Envoy's reason when Envoy cannot start.
  --name NAME           the Workload's name and Envoy's node id (required)
  --service SERVICE     the service this workload serves (required)
  --app-port PORT       the local app's port, behind the inbound listener (required)
  --token-file FILE     the agent's API token: a dataplane token of SERVICE, from
                        wasmesh token dataplane --service SERVICE > FILE (required, unless
                        $WASMESH_TOKEN holds one), or on Kubernetes the pod's projected
                        service-account token; read again for each call, so a token the
                        kubelet rotates in place is followed
  --labels k=v,...      the workload's labels, e.g. version=v2 (route subsets select on them)
  --address ADDR        where other sidecars reach this one (default: the address this host
                        reaches the control plane from)
  --zone Z              the workload's zone
  --inbound-port P      the listener other sidecars call (the Workload's port; it binds 0.0.0.0)
  --outbound-port P     the listener the app sends outbound requests to, on 127.0.0.1
  --admin-port P        Envoy's admin interface, on 127.0.0.1
  --ready-port P        the readiness endpoint, GET http://127.0.0.1:P/ready (200 when Envoy is
                        LIVE and has acknowledged its first configuration, and the workload has
                        its certificate; else 503 and why)
                        Ports not given are picked free, and the first line says which.
  --ready-address ADDR  where the readiness endpoint listens (default 127.0.0.1; 0.0.0.0 for a
                        kubelet's probe, which comes to the pod's IP)
  --no-register         write no Workload and keep no lease: on Kubernetes the control plane
                        makes the pod's Workload from its EndpointSlices (the injected sidecar)
  --cp URL              the control plane's HTTP API (default $WASMESH_API, else ${DEFAULT_API};
                        --api is the same)
  --xds HOST:PORT       the control plane's xDS server (default: --cp's host, port 5678)
  --ca-file FILE        with an https --cp (wasmesh server --tls): the CA its certificate is
                        verified with, for the API and for xDS, which is then TLS too (default
                        $WASMESH_CA_FILE, else the CA file the credentials file names for --cp,
                        else the system's CAs); Envoy reaches the agent on loopback in plain text
  --envoy PATH          the Envoy binary (default: envoy, found on PATH)
  --data DIR            the agent's directory: Envoy's bootstrap and the module cache; Envoy
                        runs in it (default .wasmesh-dataplane/NAME)
  --lease-seconds N     the Workload is removed this long after the agent stops renewing it,
                        e.g. when it is killed (5-3600, default 30; renewed every third of it)
  --drain-seconds N     on shutdown, how long Envoy serves on after the Workload is deleted, and
                        then drains its connections (Envoy's --drain-time-s) (0-600, default 5)
  --cert-ttl SECONDS    the lifetime asked for the workload's certificates (600-2592000; default
                        the control plane's, 24 h, which also caps it)
  --stats-interval SECONDS  how often Envoy's traffic counters (requests and 5xx per outbound
                        cluster, circuits, denials) are reported to the control plane, PUT
                        /v1/proxies/NAME/stats, for GET /v1/traffic (0-3600, default 5; 0: never)
  --metrics-port P      the sidecar's Prometheus endpoint, GET http://127.0.0.1:P/metrics: the
                        mesh's request, latency, route, circuit and denial metrics from Envoy
                        under stable wasmesh_ names, and the app's own (docs/metrics.md)
                        (default a free port, like the ports above; 0: no endpoint)
  --metrics-address ADDR  where the metrics endpoint listens (default 127.0.0.1; 0.0.0.0 for a
                        Prometheus that scrapes the pod's IP)
  --app-metrics-path PATH  the app's own metrics endpoint, e.g. /metrics, merged into the
                        sidecar's (the scrape has 2 s; wasmesh_app_metrics_up says whether it answered)
  --app-metrics-port P  the port of the app's metrics endpoint (default --app-port)
  -- ENVOY FLAGS...     more flags for Envoy, e.g. -- --concurrency 2 --log-level warning

${captureHelp}`;

const command: CommandName = { name: "dataplane", help };

const DEFAULT_LEASE_SECONDS = 30;
const DEFAULT_DRAIN_SECONDS = 5;
const XDS_PORT = 5678;

export async function run(args: string[], out: Out): Promise<undefined> {
  const [sub, ...rest] = args;
  if (sub === "--help" || sub === "-h") return out(help);
  if (sub === undefined) throw usage(command, "dataplane: a subcommand is required (run, capture)");
  if (sub === "capture") return capture(rest, out);
  if (sub !== "run") throw usage(command, `dataplane: unknown subcommand '${sub}'`);
  const options = await runOptions(rest, out);
  if (options === undefined) return undefined;

  const { startAgent, AgentError } = await import("../../../dataplane/agent.ts");
  let agent: Awaited<ReturnType<typeof startAgent>> | undefined;
  let signalled: string | undefined;
  let finished = () => {};
  const done = new Promise<void>((resolve) => {
    finished = resolve;
  });
  const onSignal = (signal: string) => {
    signalled = signal;
    // A signal during the start is acted on once the agent is up (or has failed).
    if (!agent) return;
    out(`${signal} received`);
    agent.shutdown().then(finished, (error: unknown) => {
      process.stderr.write(`wasmesh: shutdown failed: ${(error as Error).stack ?? error}\n`);
      process.exit(1);
    });
  };
  process.on("SIGTERM", () => onSignal("SIGTERM"));
  process.on("SIGINT", () => onSignal("SIGINT"));
  try {
    agent = await startAgent(options);
  } catch (error) {
    if (error instanceof AgentError) throw new CliError(error.message);
    throw error;
  }
  if (signalled) onSignal(signalled);
  await done;
  return undefined;
}

/**
 * `dataplane run`'s arguments (those after `run`) as the agent's options, every problem a usage
 * error naming its flag; undefined after printing the help. Exported for tests: e.g. that the
 * injected sidecar's command line is one this command takes.
 */
export async function runOptions(args: string[], out: Out): Promise<AgentOptions | undefined> {
  // Everything after `--` is Envoy's.
  const split = args.indexOf("--");
  const envoyArgs = split < 0 ? [] : args.slice(split + 1);
  const { values, positionals } = parse(
    split < 0 ? args : args.slice(0, split),
    {
      name: { type: "string" },
      service: { type: "string" },
      "app-port": { type: "string" },
      "token-file": { type: "string" },
      labels: { type: "string" },
      address: { type: "string" },
      zone: { type: "string" },
      "inbound-port": { type: "string" },
      "outbound-port": { type: "string" },
      "admin-port": { type: "string" },
      "ready-port": { type: "string" },
      "ready-address": { type: "string" },
      "no-register": { type: "boolean" },
      cp: { type: "string" },
      xds: { type: "string" },
      envoy: { type: "string" },
      data: { type: "string" },
      "lease-seconds": { type: "string" },
      "drain-seconds": { type: "string" },
      "cert-ttl": { type: "string" },
      "stats-interval": { type: "string" },
      "metrics-port": { type: "string" },
      "metrics-address": { type: "string" },
      "app-metrics-path": { type: "string" },
      "app-metrics-port": { type: "string" },
    },
    command,
  );
  if (values.help) {
    out(help);
    return undefined;
  }
  noPositionals(positionals, command);
  return agentOptions(values, envoyArgs, out);
}

/**
 * The agent's token: the file's (first line), else $WASMESH_TOKEN; a usage error without one. The
 * file is read now (a usage error if it cannot be) and again for each call the agent makes, since the
 * kubelet rotates a projected service-account token in place; a read that fails then (the file
 * being replaced) keeps the last token read.
 */
function tokenOf(file: string | undefined, service: string): Token {
  if (file !== undefined) {
    let last = readTokenFile(command, file);
    return () => {
      try {
        last = readTokenFile(command, file);
      } catch {
        // Kept: the next call reads it again.
      }
      return last;
    };
  }
  if (process.env.WASMESH_TOKEN) return process.env.WASMESH_TOKEN;
  throw usage(
    command,
    `dataplane run: --token-file is required (or $WASMESH_TOKEN): the agent's token, e.g. from ` +
      `wasmesh token dataplane --service ${service} > ${service}.token`,
  );
}

/** The flags as the agent's options; every problem is a usage error naming its flag. */
async function agentOptions(values: Parsed["values"], envoyArgs: string[], out: Out): Promise<AgentOptions> {
  const name = str(values.name);
  const service = str(values.service);
  const appPortText = str(values["app-port"]);
  if (!name) throw usage(command, "dataplane run: --name is required");
  if (!service) throw usage(command, "dataplane run: --service is required");
  if (!appPortText) throw usage(command, "dataplane run: --app-port is required");
  const ports = {
    "--app-port": parsePort(appPortText, "--app-port") as number,
    "--inbound-port": parsePort(str(values["inbound-port"]), "--inbound-port"),
    "--outbound-port": parsePort(str(values["outbound-port"]), "--outbound-port"),
    "--admin-port": parsePort(str(values["admin-port"]), "--admin-port"),
    "--ready-port": parsePort(str(values["ready-port"]), "--ready-port"),
    // 0 turns the endpoint off: no port to compare.
    "--metrics-port":
      str(values["metrics-port"]) === "0"
        ? undefined
        : parsePort(str(values["metrics-port"]), "--metrics-port"),
  };
  // All of them are bound on this host (the app's by the app): two equal ones cannot both work.
  const seen = new Map<number, string>();
  for (const [flag, port] of Object.entries(ports)) {
    if (port === undefined) continue;
    const other = seen.get(port);
    if (other) throw usage(command, `${other} and ${flag} are both ${port}; they must differ`);
    seen.set(port, flag);
  }
  const token = tokenOf(str(values["token-file"]), service);
  const leaseSeconds =
    parseCount(str(values["lease-seconds"]), "--lease-seconds", 5, 3600) ?? DEFAULT_LEASE_SECONDS;
  const drainSeconds =
    parseCount(str(values["drain-seconds"]), "--drain-seconds", 0, 600) ?? DEFAULT_DRAIN_SECONDS;
  // The CA's bounds for a workload certificate (ca/authority.ts).
  const certValiditySeconds = parseCount(str(values["cert-ttl"]), "--cert-ttl", 600, 30 * 24 * 3600);
  const statsIntervalSeconds = parseCount(str(values["stats-interval"]), "--stats-interval", 0, 3600);
  const metricsOff = str(values["metrics-port"]) === "0";
  const metricsAddress = str(values["metrics-address"]);
  if (metricsAddress !== undefined && isIP(metricsAddress) === 0)
    throw usage(
      command,
      `--metrics-address: expected an IP address such as 0.0.0.0, got '${metricsAddress}'`,
    );
  const appMetricsPath = str(values["app-metrics-path"]);
  if (appMetricsPath !== undefined && !/^\/[\x21-\x7e]*$/.test(appMetricsPath))
    throw usage(command, `--app-metrics-path: expected a path such as /metrics, got '${appMetricsPath}'`);
  const appMetricsPort = parsePort(str(values["app-metrics-port"]), "--app-metrics-port");
  if (appMetricsPort !== undefined && appMetricsPath === undefined)
    throw usage(command, "--app-metrics-port needs --app-metrics-path (the app's metrics endpoint)");
  if (metricsOff && appMetricsPath !== undefined)
    throw usage(command, "--app-metrics-path: the metrics endpoint is off (--metrics-port 0)");
  const metrics = {
    ...(metricsOff
      ? { port: 0 }
      : ports["--metrics-port"] !== undefined
        ? { port: ports["--metrics-port"] }
        : {}),
    ...(metricsAddress !== undefined ? { address: metricsAddress } : {}),
    ...(appMetricsPath !== undefined ? { appPath: appMetricsPath } : {}),
    ...(appMetricsPort !== undefined ? { appPort: appMetricsPort } : {}),
  };

  const cp = str(values.cp);
  const apiFlag = str(values.api);
  if (cp !== undefined && apiFlag !== undefined && cp !== apiFlag) {
    throw usage(command, `--cp and --api name different control planes ('${cp}', '${apiFlag}'); give one`);
  }
  const apiText = cp ?? apiFlag ?? (process.env.WASMESH_API || DEFAULT_API);
  const api = URL.parse(apiText);
  if (!api || (api.protocol !== "http:" && api.protocol !== "https:")) {
    throw usage(command, `--cp: expected the API's http(s) URL, e.g. ${DEFAULT_API}, got '${apiText}'`);
  }

  // Envoy's vocabulary and the resource model, once the flags above are there.
  const [{ parseHostPort }, { validateResource }, { workloadDocument }] = await Promise.all([
    import("../../envoy/bootstrap.ts"),
    import("../../resources/index.ts"),
    import("../../../dataplane/registration.ts"),
  ]);
  if (values["ca-file"] !== undefined && api.protocol !== "https:")
    throw usage(
      command,
      `--ca-file: the control plane is reached over plain http (--cp ${apiText}); give its https URL`,
    );
  const ca = caOf(values, api.href.replace(/\/$/, ""));
  const xds = str(values.xds) ?? `${api.hostname}:${XDS_PORT}`;
  try {
    parseHostPort(xds, "--xds");
  } catch (error) {
    throw usage(command, (error as Error).message);
  }
  const address = str(values.address);
  const readyAddress = str(values["ready-address"]);
  if (readyAddress !== undefined && isIP(readyAddress) === 0)
    throw usage(command, `--ready-address: expected an IP address such as 0.0.0.0, got '${readyAddress}'`);
  const workload = {
    name,
    service,
    address,
    port: ports["--inbound-port"] ?? 15006,
    appPort: ports["--app-port"],
    labels: parseLabels(str(values.labels)),
    zone: str(values.zone),
    leaseSeconds,
  };
  // The Workload the agent will write, checked now as the control plane will check it, so that a
  // bad name or label is a usage error rather than a registration retried for ever. (The inbound
  // port and address stand in for the ones picked later.)
  const checked = validateResource(workloadDocument(workload, address ?? "127.0.0.1"));
  if (!checked.ok) {
    const flags: Record<string, string> = {
      "metadata.name": "--name",
      "spec.service": "--service",
      "spec.labels": "--labels",
      "spec.zone": "--zone",
      "spec.address": "--address",
    };
    const [first] = checked.errors;
    const path = first?.path ?? "";
    const [field, flag] = Object.entries(flags).find(([f]) => path === f || path.startsWith(`${f}.`)) ?? [];
    // A label names its key: spec.labels.version is `--labels` key `version`.
    const where =
      flag && field && path !== field ? `${flag} (${path.slice(field.length + 1)})` : (flag ?? path);
    throw usage(command, `${where}: ${first?.message ?? "invalid"}`);
  }
  return {
    name,
    service,
    labels: workload.labels,
    appPort: workload.appPort,
    address,
    zone: workload.zone,
    ports: {
      inbound: ports["--inbound-port"],
      outbound: ports["--outbound-port"],
      admin: ports["--admin-port"],
      ready: ports["--ready-port"],
    },
    api: api.href.replace(/\/$/, ""),
    token,
    ...(values["no-register"] ? { register: false } : {}),
    ...(readyAddress !== undefined ? { readyAddress } : {}),
    ...(ca !== undefined ? { ca: ca.pem } : {}),
    xds,
    envoyBin: str(values.envoy) ?? "envoy",
    dataDir: str(values.data) ?? `.wasmesh-dataplane/${name}`,
    leaseSeconds,
    drainSeconds,
    ...(certValiditySeconds !== undefined ? { certValiditySeconds } : {}),
    ...(statsIntervalSeconds !== undefined ? { statsIntervalSeconds } : {}),
    ...(Object.keys(metrics).length > 0 ? { metrics } : {}),
    envoyArgs,
    log: (line) => out(line),
    envoyOutput: (chunk) => {
      process.stderr.write(chunk);
    },
  };
}

/** `wasmesh dataplane capture`: the pod's iptables rules (dataplane/capture.ts). */
async function capture(args: string[], out: Out): Promise<undefined> {
  const captureCommand: CommandName = { name: "dataplane capture", help: captureHelp };
  const { values, positionals } = parse(
    args,
    {
      "outbound-port": { type: "string" },
      "inbound-port": { type: "string" },
      "proxy-uid": { type: "string" },
      "proxy-gid": { type: "string" },
      "exclude-outbound-ports": { type: "string" },
      "exclude-outbound-cidrs": { type: "string" },
      "exclude-inbound-ports": { type: "string" },
      ipv6: { type: "boolean" },
      "dry-run": { type: "boolean" },
      remove: { type: "boolean" },
    },
    captureCommand,
  );
  if (values.help) return out(captureHelp);
  noPositionals(positionals, captureCommand);
  const { applyCapture, captureRules, CaptureError, checkCaptureOptions, removeCapture } = await import(
    "../../../dataplane/capture.ts"
  );
  const families: (4 | 6)[] = values.ipv6 ? [4, 6] : [4];
  const failed = (error: unknown) => (error instanceof CaptureError ? new CliError(error.message) : error);
  if (values.remove) {
    if (values["dry-run"]) throw usage(captureCommand, "dataplane capture: --remove and --dry-run: give one");
    await removeCapture(families).catch((error: unknown) => {
      throw failed(error);
    });
    return out("capture: rules removed");
  }
  const required = (flag: string): string => {
    const value = str(values[flag]);
    if (value === undefined) throw usage(captureCommand, `dataplane capture: --${flag} is required`);
    return value;
  };
  const list = (flag: string): string[] =>
    (str(values[flag]) ?? "")
      .split(",")
      .map((item) => item.trim())
      .filter((item) => item !== "");
  const ports = (flag: string): number[] => list(flag).map((p) => parsePort(p, `--${flag}`) as number);
  const options = {
    outboundPort: parsePort(required("outbound-port"), "--outbound-port") as number,
    inboundPort: parsePort(required("inbound-port"), "--inbound-port") as number,
    proxyUid: parseCount(required("proxy-uid"), "--proxy-uid", 1, 0xffff_fffe) as number,
    proxyGid: parseCount(str(values["proxy-gid"]), "--proxy-gid", 1, 0xffff_fffe),
    excludeOutboundPorts: ports("exclude-outbound-ports"),
    excludeOutboundCidrs: list("exclude-outbound-cidrs"),
    excludeInboundPorts: ports("exclude-inbound-ports"),
  };
  try {
    checkCaptureOptions(options);
  } catch (error) {
    if (error instanceof CaptureError) throw usage(captureCommand, `dataplane capture: ${error.message}`);
    throw error;
  }
  if (values["dry-run"]) {
    return out(
      families
        .map((f) =>
          [`# ${f === 4 ? "iptables" : "ip6tables"}-restore --noflush`, ...captureRules(options, f)].join(
            "\n",
          ),
        )
        .join("\n"),
    );
  }
  await applyCapture(options, families).catch((error: unknown) => {
    throw failed(error);
  });
  return out(
    `capture: installed (outbound to ${options.outboundPort}, inbound to ${options.inboundPort}, ` +
      `except uid ${options.proxyUid}; ${families.map((f) => `IPv${f}`).join(", ")})`,
  );
}
