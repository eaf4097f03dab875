// The data-plane agent (`wasmesh dataplane run`): it owns one sidecar. It picks the ports not
// given, starts the xDS proxy (Envoy's ADS goes through it, so that modules travel by digest and
// are fetched once), writes Envoy's bootstrap, starts and supervises Envoy, answers a readiness
// probe, holds the workload's key and certificate and serves them to Envoy over SDS (identity.ts),
// registers the Workload once the sidecar is ready and keeps its lease, and on shutdown takes the
// workload out of the mesh before it stops Envoy. dataplane/README.md tells the whole
// lifecycle and why the shutdown goes in that order.
//
// It reaches the control plane only as an agent on another host would: the HTTP API and xDS.
import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { bootstrap } from "../control-plane/envoy/bootstrap.ts";
import { DEFAULT_ADDRESSES, type ProxyIdentity } from "../control-plane/envoy/index.ts";
import { DEFAULT_STATS_INTERVAL_SECONDS } from "../schema/traffic-report.ts";
import { Envoy, EnvoyStartError } from "./envoy.ts";
import type { Token } from "./http.ts";
import { startWorkloadIdentity, type WorkloadIdentity } from "./identity.ts";
import { type MetricsServer, startMetricsServer } from "./metrics.ts";
import { type PortRequest, type Ports, pickPorts } from "./ports.ts";
import { type Readiness, type ReadinessServer, startReadiness } from "./ready.ts";
import { Registration } from "./registration.ts";
import { startStatsReporter } from "./stats.ts";
import { startXdsProxy, type XdsProxy } from "./xds-proxy.ts";

export interface AgentOptions {
  /** The Workload's name, and Envoy's node id. */
  name: string;
  service: string;
  labels: Record<string, string>;
  appPort: number;
  /** The Workload's address; undefined: the address this host reaches the control plane from. */
  address: string | undefined;
  zone: string | undefined;
  ports: PortRequest;
  /** The control plane's HTTP API, e.g. http://127.0.0.1:5681. */
  api: string;
  /**
   * The agent's API token: a dataplane token of its service (`wasmesh token dataplane`), for its
   * Workload and module bytes; a function is called for each call (a token file read again).
   */
  token: Token;
  /**
   * Whether the agent writes its Workload and keeps its lease (default true). On Kubernetes the
   * control plane makes the Workloads from EndpointSlices (kubernetes/discovery.ts): the injected
   * agent registers nothing (`--no-register`).
   */
  register?: boolean;
  /**
   * The address the readiness endpoint listens on (default 127.0.0.1): a kubelet probes the pod's
   * IP, so the injected sidecar serves it on 0.0.0.0 (`--ready-address`).
   */
  readyAddress?: string;
  /**
   * PEM: the CAs the control plane's certificate is verified with (--ca-file), for its API over
   * https and its xDS over TLS; default the system's. xDS is TLS when the API is https.
   */
  ca?: string;
  /** The control plane's xDS server, host:port. */
  xds: string;
  envoyBin: string;
  dataDir: string;
  leaseSeconds: number;
  drainSeconds: number;
  /** More Envoy flags (those after `--` on the command line). */
  envoyArgs: readonly string[];
  /** The lifetime asked of the CA for the workload's certificates (default the CA's, 24 h). */
  certValiditySeconds?: number;
  /**
   * How often Envoy's traffic counters are reported to the control plane (PUT
   * /v1/proxies/<name>/stats, stats.ts), in seconds; 0: never. Default 5.
   */
  statsIntervalSeconds?: number;
  /**
   * The sidecar's Prometheus endpoint, GET /metrics (metrics.ts): Envoy's stats a mesh dashboard
   * needs under stable names, merged with the app's own metrics (`appPath` on 127.0.0.1:`appPort`,
   * default the app's port). `port` undefined: a free port; 0: no endpoint. `address` default 127.0.0.1.
   */
  metrics?: { port?: number; address?: string; appPath?: string; appPort?: number };
  /** How often the trust bundle is checked (default 30 s). */
  bundleRefreshMs?: number;
  /** The agent's own lines. */
  log: (line: string) => void;
  /** Envoy's own output. */
  envoyOutput: (chunk: Buffer) => void;
}

/** The agent could not start; the message says what to fix. */
export class AgentError extends Error {
  override name = "AgentError";
}

export interface Agent {
  readonly ports: Ports;
  /** Where Envoy's ADS cluster points (the xDS proxy, on loopback). */
  readonly xdsProxyPort: number;
  /** The workload's certificate and its SDS server (renew() for tests and operators). */
  readonly identity: WorkloadIdentity;
  /** The Prometheus endpoint's port (--metrics-port); undefined when it is off. */
  readonly metricsPort: number | undefined;
  /**
   * The shutdown sequence (SIGTERM): readiness 503, the Workload deleted, Envoy serving on for the
   * drain time, then drained and stopped. A second call while it runs cuts the waits short.
   */
  shutdown(): Promise<void>;
}

export async function startAgent(options: AgentOptions): Promise<Agent> {
  const { log } = options;
  const register = options.register ?? true;
  const readyAddress = options.readyAddress ?? "127.0.0.1";
  const dataDir = resolve(options.dataDir);
  try {
    mkdirSync(dataDir, { recursive: true });
  } catch (error) {
    throw new AgentError(
      `cannot use the data directory --data ${options.dataDir}: ${(error as Error).message}`,
    );
  }
  // The metrics endpoint listens first, on its own port or a free one: pickPorts then never picks
  // that port for another. Envoy's admin port is read at each scrape.
  let adminPort: number | undefined;
  const metricsAddress = options.metrics?.address ?? "127.0.0.1";
  let metrics: MetricsServer | undefined;
  if (options.metrics?.port !== 0) {
    try {
      metrics = await startMetricsServer({
        service: options.service,
        workload: options.name,
        port: options.metrics?.port ?? 0,
        host: metricsAddress,
        adminPort: () => adminPort,
        ...(options.metrics?.appPath !== undefined
          ? { app: { path: options.metrics.appPath, port: options.metrics.appPort ?? options.appPort } }
          : {}),
      });
    } catch (error) {
      throw new AgentError(
        `cannot listen on ${metricsAddress}:${options.metrics?.port ?? 0} for the metrics endpoint (--metrics-port): ${(error as Error).message}`,
      );
    }
  }
  let ports: Ports;
  try {
    ports = await pickPorts(options.ports, [options.appPort]);
  } catch (error) {
    await metrics?.close();
    throw error;
  }
  adminPort = ports.admin;
  // (Not --metrics-port: without it, the metrics port is always a free one.)
  const picked = (Object.keys(ports) as (keyof Ports)[]).filter((k) => options.ports[k] === undefined);
  log(
    `ports: inbound ${ports.inbound}, outbound ${ports.outbound}, admin ${ports.admin}, ready ${ports.ready}, ` +
      `metrics ${metrics === undefined ? "off" : metrics.port}` +
      (picked.length > 0 ? ` (picked: ${picked.map((k) => `--${k}-port`).join(", ")})` : ""),
  );

  let stopping = false;
  let acked = false;
  const cleanups: (() => Promise<void>)[] = [];
  const cleanUp = async () => {
    for (const step of cleanups.reverse()) await step().catch(() => {});
  };
  if (metrics !== undefined) {
    const server = metrics;
    cleanups.push(() => server.close());
  }

  try {
    const proxy: XdsProxy = await startXdsProxy({
      upstream: options.xds,
      listen: { host: "127.0.0.1", port: 0 },
      dataDir,
      api: options.api,
      token: options.token,
      ...(options.api.startsWith("https:")
        ? { tls: options.ca !== undefined ? { ca: options.ca } : {} }
        : {}),
      log,
    });
    cleanups.push(() => proxy.close());
    void proxy.firstAck().then(() => {
      acked = true;
    });
    log(`xDS proxy on 127.0.0.1:${proxy.port}, to the control plane at ${options.xds} (API ${options.api})`);

    // The key, the certificate and the SDS socket Envoy's bootstrap names, before Envoy starts.
    let identity: WorkloadIdentity;
    try {
      identity = await startWorkloadIdentity({
        dataDir,
        api: options.api,
        token: options.token,
        ...(options.ca !== undefined ? { ca: options.ca } : {}),
        ...(options.certValiditySeconds !== undefined
          ? { certValiditySeconds: options.certValiditySeconds }
          : {}),
        ...(options.bundleRefreshMs !== undefined ? { bundleRefreshMs: options.bundleRefreshMs } : {}),
        log,
      });
    } catch (error) {
      throw new AgentError((error as Error).message);
    }
    cleanups.push(() => identity.close());

    const bootstrapPath = join(dataDir, "envoy-bootstrap.json");
    writeFileSync(bootstrapPath, `${JSON.stringify(bootstrapOf(options, ports, proxy.port), null, 2)}\n`);

    const registration = new Registration({
      api: options.api,
      token: options.token,
      ...(options.ca !== undefined ? { ca: options.ca } : {}),
      workload: {
        name: options.name,
        service: options.service,
        address: options.address,
        port: ports.inbound,
        appPort: options.appPort,
        labels: options.labels,
        zone: options.zone,
        leaseSeconds: options.leaseSeconds,
        // Its sidecar takes mTLS: callers with certificates originate it (translate/mtls.ts).
        mtls: true,
      },
      log,
    });
    const envoy = new Envoy({
      // Envoy runs in the data directory: a relative path means the user's working directory.
      bin: options.envoyBin.includes("/") ? resolve(options.envoyBin) : options.envoyBin,
      bootstrapPath,
      cwd: dataDir,
      adminPort: ports.admin,
      drainSeconds: options.drainSeconds,
      extraArgs: options.envoyArgs,
      log,
      output: options.envoyOutput,
      // Whatever happened to the Workload while Envoy was down, it is written again.
      onRestart: () => registration.reregister(),
    });

    const check = async (): Promise<Readiness> => {
      if (stopping) return { ready: false, reason: "shutting down" };
      const { live, state } = await envoy.live();
      if (!live) return { ready: false, reason: state };
      if (!acked) return { ready: false, reason: "Envoy has not acknowledged its first configuration yet" };
      // Without it the mTLS listeners and clusters wait for their secrets.
      if (identity.certificates.current === undefined) {
        const problem = identity.certificates.problem;
        return { ready: false, reason: `no workload certificate yet${problem ? `: ${problem}` : ""}` };
      }
      return { ready: true };
    };
    let readiness: ReadinessServer;
    try {
      readiness = await startReadiness(ports.ready, check, readyAddress);
    } catch (error) {
      throw new AgentError(
        `cannot listen on ${readyAddress}:${ports.ready} for the readiness endpoint (--ready-port): ${(error as Error).message}`,
      );
    }
    cleanups.push(() => readiness.close());

    try {
      await envoy.start();
    } catch (error) {
      if (error instanceof EnvoyStartError) throw new AgentError(error.message);
      throw error;
    }
    cleanups.push(() => envoy.stop());
    log(
      `Envoy started (pid ${envoy.pid}), admin on 127.0.0.1:${ports.admin}; readiness on http://${readyAddress}:${readiness.port}/ready`,
    );

    // The Workload is registered once the sidecar can serve it: before, other sidecars would send
    // requests to an inbound listener that is not there yet.
    void (async () => {
      await proxy.firstAck();
      while (!stopping && !(await check()).ready) await sleep(200);
      if (stopping) return;
      log("ready: Envoy is LIVE and has acknowledged its configuration");
      if (register) registration.start();
      else log("not registering a Workload (--no-register): the control plane discovers this one");
      const statsInterval = options.statsIntervalSeconds ?? DEFAULT_STATS_INTERVAL_SECONDS;
      if (statsInterval > 0) {
        const reporter = startStatsReporter({
          node: options.name,
          service: options.service,
          adminPort: ports.admin,
          api: options.api,
          token: options.token,
          ...(options.ca !== undefined ? { ca: options.ca } : {}),
          intervalSeconds: statsInterval,
          log,
        });
        cleanups.push(async () => reporter.stop());
      }
    })();

    let shutdown: Promise<void> | undefined;
    let cutShort: () => void = () => {};
    const cut = new Promise<void>((resolveCut) => {
      cutShort = resolveCut;
    });
    return {
      ports,
      xdsProxyPort: proxy.port,
      identity,
      metricsPort: metrics?.port,
      shutdown() {
        if (shutdown) {
          log("shutting down now (second signal): Envoy stops without waiting for the drain");
          cutShort();
          void envoy.stop();
          return shutdown;
        }
        stopping = true;
        shutdown = (async () => {
          log("shutting down: readiness answers 503");
          envoy.stopRestarting();
          if (register) await registration.deregister();
          log(
            `Envoy serves on for ${options.drainSeconds} s while the other sidecars learn the workload is gone`,
          );
          await Promise.race([sleep(options.drainSeconds * 1000), cut]);
          await envoy.drainAndStop();
          log("Envoy stopped");
          await cleanUp();
        })();
        return shutdown;
      },
    };
  } catch (error) {
    stopping = true;
    await cleanUp();
    throw error;
  }
}

/** Envoy's bootstrap: the sidecar's identity, its admin, and ADS through the xDS proxy. */
function bootstrapOf(options: AgentOptions, ports: Ports, proxyPort: number): Record<string, unknown> {
  const proxy: ProxyIdentity = {
    nodeId: options.name,
    service: options.service,
    labels: options.labels,
    outboundPort: ports.outbound,
    inboundPort: ports.inbound,
    appPort: options.appPort,
    outboundAddress: DEFAULT_ADDRESSES.outbound,
    inboundAddress: DEFAULT_ADDRESSES.inbound,
    appAddress: DEFAULT_ADDRESSES.app,
    // Modules arrive as files the xDS proxy keeps under the data directory (Contract 2).
    moduleDelivery: "local",
    // Its certificate and trust bundle come from the agent over SDS (identity.ts).
    sds: "agent",
  };
  return bootstrap({ proxy, xds: `127.0.0.1:${proxyPort}`, adminPort: ports.admin });
}

const sleep = (ms: number) => new Promise<void>((resolveSleep) => setTimeout(resolveSleep, ms));
