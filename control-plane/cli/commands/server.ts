// `wasmesh server`: the control plane (HTTP API and xDS server) in this process, until a signal.
import { DEFAULT_KV_API_BASE, DEFAULT_KV_KEY, type KvTarget } from "../../edge/kv.ts";
import { VERSION } from "../../version.ts";
import {
  type CommandName,
  noPositionals,
  type Out,
  type Parsed,
  parse,
  parseCount,
  parsePort,
  str,
  usage,
} from "../args.ts";
import { CliError } from "../client.ts";

export const help = `Usage: wasmesh server [--data DIR] [--http-port 5681] [--xds-port 5678] [--address 127.0.0.1]
                      [--api-host NAME]... [--tls | --tls-cert FILE --tls-key FILE]
                      [--edge-kv-account ID --edge-kv-namespace NS [--edge-kv-key KEY]]
                      [--module-memory-limit MIB] [--validation-workers N]
                      [--validations-per-client N] [--validation-timeout SECONDS]
                      [--kubernetes [--kubeconfig FILE] [--namespace NS] [--webhook-port 9443]
                       [--webhook-service NAME | --webhook-url URL] [--token-audience AUD]
                       [--sidecar-image IMAGE] [--sidecar-cp URL] [--sidecar-xds HOST:PORT]]

Runs the control plane: the HTTP API (--http-port) and the gRPC xDS server (--xds-port), with the
resources in an embedded SQLite database under --data (default .wasmesh/). Port 0 picks a free
port (the startup line says which). SIGINT or SIGTERM shuts it down.
  --address          interface both servers listen on (0.0.0.0 for sidecars on other hosts;
                     without --tls, it warns)
  --tls              the API over HTTPS and xDS over TLS, with a certificate the mesh CA issues
                     for the --api-host names, the address and localhost/127.0.0.1, renewed
                     without a restart; clients trust DIR/ca-bundle.pem (the CLI on this machine
                     by itself, through the credentials file; agents and bootstrap: --ca-file)
  --tls-cert FILE, --tls-key FILE
                     the same with this certificate (PEM, its chain after it) and key instead
  --api-host NAME    a host name the API is reached by (repeatable), e.g. wasmesh.example.com:
                     requests naming another host are refused (DNS rebinding); IP addresses and
                     localhost are always served

Every API call but /healthz and /readyz needs a bearer token. A data directory without a valid
admin token gets one at start, in DIR/admin-token (owner only), also saved for the API's URL in
the credentials file the CLI reads (~/.config/wasmesh/credentials.json, or under
$XDG_CONFIG_HOME): wasmesh commands on this machine need no --token.
  --module-memory-limit MIB
                     linear memory a module may use (default 128, at most 1024: Envoy's own cap);
                     module validation refuses a module that asks for more
  --validation-workers N
                     module validations run at once (default twice the CPUs, from 6 to 16)
  --validations-per-client N
                     how many of those one client address may run (default 2); more get 429
  --validation-timeout SECONDS
                     time one module validation may take (default 10)
  --edge-kv-account, --edge-kv-namespace
                     after each change, write the edge configuration into this Cloudflare
                     Workers KV namespace (when its version changed; retried in the background),
                     with the API token in $CLOUDFLARE_API_TOKEN
  --edge-kv-key      the KV key (default ${DEFAULT_KV_KEY})
  --edge-kv-api-base Cloudflare's API (default ${DEFAULT_KV_API_BASE})

Kubernetes mode (--kubernetes): the resources are wasmesh's custom resources in --namespace (the
pod's own when run in a cluster, else wasmesh-system; install the CRDs first:
deploy/kubernetes/crds.yaml), module bytes immutable ConfigMaps there, the admin token and the
CA's key-encryption key Secrets there; every replica serves, one leads (a Lease). Agents prove their
pod with its service-account token. Without --kubeconfig: in-cluster, else $KUBECONFIG or
~/.kube/config.
  --webhook-port     the admission webhooks' HTTPS port (default 9443; 0 picks one)
  --webhook-service  the Service in front of the webhooks (default wasmesh-control-plane): the
                     name in their certificate and in the registrations the leader keeps
  --webhook-url      the API server calls the webhooks at this https URL instead (outside a cluster)
  --token-audience   the audience of the agents' projected service-account tokens, which TokenReview
                     checks and injected sidecars are given (default wasmesh)

Sidecar injection: pods created in namespaces labelled wasmesh.io/sidecar-injection=enabled get
the traffic capture and the agent as a native sidecar (control-plane/README.md, injection.ts).
  --sidecar-image    the image they run (default ghcr.io/wasmesh/control-plane:<this version>)
  --sidecar-cp       the API as sidecars reach it (default https://SERVICE.NAMESPACE.svc:5681 with
                     --tls, else http://…, SERVICE the --webhook-service); with https they verify
                     it with the mesh's trust bundle: --api-host must name its host
  --sidecar-xds      the xDS server as sidecars reach it (default SERVICE.NAMESPACE.svc:5678)`;

const command: CommandName = { name: "server", help };

const HOST_NAME =
  /^[A-Za-z0-9](?:[-A-Za-z0-9]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*\.?$/;

export async function run(args: string[], out: Out): Promise<"serving" | undefined> {
  const { values, positionals } = parse(
    args,
    {
      data: { type: "string" },
      "http-port": { type: "string" },
      "xds-port": { type: "string" },
      address: { type: "string" },
      "api-host": { type: "string", multiple: true },
      tls: { type: "boolean" },
      "tls-cert": { type: "string" },
      "tls-key": { type: "string" },
      "edge-kv-account": { type: "string" },
      "edge-kv-namespace": { type: "string" },
      "edge-kv-key": { type: "string" },
      "edge-kv-api-base": { type: "string" },
      "module-memory-limit": { type: "string" },
      "validation-workers": { type: "string" },
      "validations-per-client": { type: "string" },
      "validation-timeout": { type: "string" },
      kubernetes: { type: "boolean" },
      kubeconfig: { type: "string" },
      namespace: { type: "string" },
      "webhook-port": { type: "string" },
      "webhook-service": { type: "string" },
      "webhook-url": { type: "string" },
      "token-audience": { type: "string" },
      "sidecar-image": { type: "string" },
      "sidecar-cp": { type: "string" },
      "sidecar-xds": { type: "string" },
    },
    command,
  );
  if (values.help) return out(help);
  noPositionals(positionals, command);
  const httpPort = parsePort(str(values["http-port"]), "--http-port", 5681, 0) as number;
  const xdsPort = parsePort(str(values["xds-port"]), "--xds-port", 5678, 0) as number;
  if (httpPort !== 0 && httpPort === xdsPort) {
    throw usage(command, `--http-port and --xds-port are both ${httpPort}; they must differ`);
  }
  const dataDir = str(values.data) ?? ".wasmesh";
  const address = str(values.address) ?? "127.0.0.1";
  const apiHosts = (values["api-host"] as unknown as string[] | undefined) ?? [];
  for (const name of apiHosts) {
    if (!HOST_NAME.test(name))
      throw usage(
        command,
        `--api-host: expected a host name such as wasmesh.example.com (no scheme, no port), got '${name}'`,
      );
  }
  const tlsCert = str(values["tls-cert"]);
  const tlsKey = str(values["tls-key"]);
  if ((tlsCert === undefined) !== (tlsKey === undefined))
    throw usage(command, tlsCert === undefined ? "--tls-key needs --tls-cert" : "--tls-cert needs --tls-key");
  if (tlsCert === "" || tlsKey === "")
    throw usage(command, `${tlsCert === "" ? "--tls-cert" : "--tls-key"}: must not be empty`);
  const tls =
    tlsCert !== undefined && tlsKey !== undefined
      ? { certFile: tlsCert, keyFile: tlsKey }
      : values.tls
        ? ("mesh-ca" as const)
        : undefined;
  const edgeKv = edgeKvOptions(values);
  const memoryMib = parseCount(str(values["module-memory-limit"]), "--module-memory-limit", 1, 1024);
  const workers = parseCount(str(values["validation-workers"]), "--validation-workers", 1, 64);
  const perClient = parseCount(str(values["validations-per-client"]), "--validations-per-client", 1, 64);
  const timeoutS = parseCount(str(values["validation-timeout"]), "--validation-timeout", 1, 600);
  const validation = {
    ...(memoryMib !== undefined ? { memoryLimitBytes: memoryMib * 1024 * 1024 } : {}),
    ...(workers !== undefined ? { size: workers } : {}),
    ...(perClient !== undefined ? { perClient } : {}),
    ...(timeoutS !== undefined ? { timeoutMs: timeoutS * 1000 } : {}),
  };
  const kubernetes = kubernetesFlags(values, tls !== undefined);
  // Imported here, after the flags are checked, so that a usage error costs no server start-up.
  const [{ startControlPlane }, grpc, { credentialsPath }] = await Promise.all([
    import("../../server.ts"),
    import("@grpc/grpc-js"),
    import("../../security/credentials.ts"),
  ]);
  // grpc-js logs a failed bind ("E No address added out of total 1 resolved") before the start
  // fails; startupError says the same in full, so that one line goes. Other lines stay as they were.
  const grpcLog =
    (prefix: string) =>
    (message: unknown, ...rest: unknown[]) =>
      console.error(`${prefix} ${message}`, ...rest);
  grpc.setLogger({
    error: (message: unknown, ...rest: unknown[]) => {
      if (!String(message).startsWith("No address added")) grpcLog("E")(message, ...rest);
    },
    info: grpcLog("I"),
    debug: grpcLog("D"),
  });
  let plane: Awaited<ReturnType<typeof startControlPlane>>;
  try {
    plane = await startControlPlane({
      dataDir,
      httpPort,
      xdsPort,
      address,
      apiHosts,
      ...(tls !== undefined ? { tls } : {}),
      credentialsFile: credentialsPath(),
      ...(edgeKv ? { edgeKv } : {}),
      ...(kubernetes ? { kubernetes: await kubernetesMode(kubernetes, tls !== undefined) } : {}),
      validation,
      log: (line) => out(line),
    });
  } catch (error) {
    throw new CliError(startupError(error, { httpPort, xdsPort, address, dataDir }));
  }
  let stopping = false;
  const stop = (signal: string) => {
    // A second signal while closing changes nothing: close() is already bounded.
    if (stopping) return;
    stopping = true;
    out(`wasmesh: ${signal}, shutting down`);
    plane.close().then(
      () => process.exit(0),
      (error: unknown) => {
        process.stderr.write(`wasmesh: shutdown failed: ${(error as Error).message}\n`);
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));
  return "serving";
}

interface KubernetesFlags {
  kubeconfig: string | undefined;
  namespace: string | undefined;
  webhookPort: number;
  webhookService: string;
  webhookUrl: string | undefined;
  tokenAudience: string;
  sidecar: { image: string; cp: string | undefined; xds: string | undefined };
}

/** The --kubernetes flags, checked; undefined without --kubernetes. */
function kubernetesFlags(values: Parsed["values"], tls: boolean): KubernetesFlags | undefined {
  const given = [
    "kubeconfig",
    "namespace",
    "webhook-port",
    "webhook-service",
    "webhook-url",
    "token-audience",
    "sidecar-image",
    "sidecar-cp",
    "sidecar-xds",
  ].filter((flag) => values[flag] !== undefined);
  if (!values.kubernetes) {
    if (given.length > 0) throw usage(command, `--${given[0]} needs --kubernetes`);
    return undefined;
  }
  const namespace = str(values.namespace);
  const DNS_LABEL = /^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?$/;
  if (namespace !== undefined && !DNS_LABEL.test(namespace))
    throw usage(command, `--namespace: '${namespace}' is not a namespace name`);
  const webhookService = str(values["webhook-service"]) ?? "wasmesh-control-plane";
  if (!DNS_LABEL.test(webhookService))
    throw usage(command, `--webhook-service: '${webhookService}' is not a Service name`);
  const webhookUrl = str(values["webhook-url"]);
  if (webhookUrl !== undefined && URL.parse(webhookUrl)?.protocol !== "https:")
    throw usage(command, `--webhook-url: the API server calls webhooks over https only, got '${webhookUrl}'`);
  if (webhookUrl !== undefined && values["webhook-service"] !== undefined)
    throw usage(command, "--webhook-service and --webhook-url are two answers to one question: give one");
  const tokenAudience = str(values["token-audience"]) ?? "wasmesh";
  if (tokenAudience === "") throw usage(command, "--token-audience: must not be empty");
  const sidecarCp = str(values["sidecar-cp"]);
  const cpProtocol = sidecarCp === undefined ? undefined : URL.parse(sidecarCp)?.protocol;
  if (sidecarCp !== undefined && cpProtocol !== "https:" && cpProtocol !== "http:")
    throw usage(command, `--sidecar-cp: expected the API's http(s) URL, got '${sidecarCp}'`);
  if (cpProtocol === "https:" && !tls)
    throw usage(command, "--sidecar-cp: an https URL needs --tls (the API serves plain http without it)");
  const sidecarXds = str(values["sidecar-xds"]);
  if (sidecarXds !== undefined && !/^[^\s:/]+:[0-9]{1,5}$/.test(sidecarXds))
    throw usage(command, `--sidecar-xds: expected HOST:PORT, got '${sidecarXds}'`);
  const sidecarImage = str(values["sidecar-image"]) ?? `ghcr.io/wasmesh/control-plane:${VERSION}`;
  if (sidecarImage === "") throw usage(command, "--sidecar-image: must not be empty");
  return {
    tokenAudience,
    sidecar: { image: sidecarImage, cp: sidecarCp, xds: sidecarXds },
    kubeconfig: str(values.kubeconfig),
    namespace,
    webhookPort: parsePort(str(values["webhook-port"]), "--webhook-port", 9443, 0) as number,
    webhookService,
    webhookUrl,
  };
}

/** Where the service account's files are in a pod. */
const IN_CLUSTER = "/var/run/secrets/kubernetes.io/serviceaccount";

/** ControlPlaneOptions.kubernetes from the flags: the kubeconfig loaded, the namespace and names found. */
async function kubernetesMode(flags: KubernetesFlags, tls: boolean) {
  const [{ KubeConfig }, { existsSync, readFileSync }, { hostname }] = await Promise.all([
    import("@kubernetes/client-node"),
    import("node:fs"),
    import("node:os"),
  ]);
  const kubeConfig = new KubeConfig();
  const inCluster = existsSync(`${IN_CLUSTER}/token`) && process.env.KUBERNETES_SERVICE_HOST !== undefined;
  if (flags.kubeconfig !== undefined) kubeConfig.loadFromFile(flags.kubeconfig);
  else if (inCluster) kubeConfig.loadFromCluster();
  else kubeConfig.loadFromDefault();
  const namespace =
    flags.namespace ??
    (inCluster ? readFileSync(`${IN_CLUSTER}/namespace`, "utf8").trim() : undefined) ??
    process.env.POD_NAMESPACE ??
    "wasmesh-system";
  const service = `${flags.webhookService}.${namespace}.svc`;
  return {
    kubeConfig,
    namespace,
    identity: process.env.POD_NAME ?? hostname(),
    tokenAudiences: [flags.tokenAudience],
    // Sidecars reach the control plane through its Service (deploy/: ports 5681 and 5678).
    injection: {
      image: flags.sidecar.image,
      api: flags.sidecar.cp ?? `${tls ? "https" : "http"}://${service}:5681`,
      xds: flags.sidecar.xds ?? `${service}:5678`,
    },
    webhooks: {
      port: flags.webhookPort,
      names:
        flags.webhookUrl !== undefined
          ? [new URL(flags.webhookUrl).hostname.replace(/^\[(.*)\]$/, "$1")]
          : [
              service,
              `${service}.cluster.local`,
              flags.webhookService,
              `${flags.webhookService}.${namespace}`,
            ],
      target:
        flags.webhookUrl !== undefined
          ? { url: flags.webhookUrl }
          : { service: { namespace, name: flags.webhookService } },
    },
  };
}

/** The --edge-kv-* flags as ControlPlaneOptions.edgeKv; undefined without them. */
function edgeKvOptions(values: Parsed["values"]): KvTarget | undefined {
  const accountId = str(values["edge-kv-account"]);
  const namespaceId = str(values["edge-kv-namespace"]);
  const key = str(values["edge-kv-key"]);
  const apiBase = str(values["edge-kv-api-base"]);
  if (accountId === undefined && namespaceId === undefined) {
    if (key !== undefined || apiBase !== undefined) {
      throw usage(
        command,
        "--edge-kv-key and --edge-kv-api-base need --edge-kv-account and --edge-kv-namespace",
      );
    }
    return undefined;
  }
  if (!accountId || !namespaceId) {
    throw usage(command, "--edge-kv-account and --edge-kv-namespace go together");
  }
  if (key === "") throw usage(command, "--edge-kv-key: must not be empty");
  if (apiBase !== undefined && !/^https?:$/.test(URL.parse(apiBase)?.protocol ?? "")) {
    throw usage(command, `--edge-kv-api-base: expected an http(s) URL, got '${apiBase}'`);
  }
  const token = process.env.CLOUDFLARE_API_TOKEN;
  if (!token) {
    throw usage(command, "--edge-kv-account: set CLOUDFLARE_API_TOKEN to a token that can edit Workers KV");
  }
  return { accountId, namespaceId, token, ...(key ? { key } : {}), ...(apiBase ? { apiBase } : {}) };
}

/** A failed start, as one line a user can act on. */
function startupError(
  error: unknown,
  where: { httpPort: number; xdsPort: number; address: string; dataDir: string },
): string {
  const e = error as NodeJS.ErrnoException;
  const message = e.message ?? String(error);
  // node:net says "listen EADDRINUSE: address already in use 127.0.0.1:5681"; grpc-js wraps the same
  // text in "No address added out of total 1 resolved errors: [...]".
  const listen = /listen (E[A-Z]+): (.+?) (\S+):(\d+)/.exec(message);
  if (listen) {
    const [, code, words, host, portText] = listen;
    const port = Number(portText);
    const which =
      port === where.xdsPort
        ? "the xDS server (--xds-port)"
        : port === where.httpPort
          ? "the API (--http-port)"
          : "";
    const hint =
      code === "EADDRINUSE"
        ? "; another process (another wasmesh server?) is using it: stop it or choose another port"
        : code === "EACCES"
          ? "; ports below 1024 need privileges: choose another port"
          : code === "EADDRNOTAVAIL"
            ? `; --address ${where.address} is not an address of this host`
            : "";
    return `cannot listen on ${host}:${port}${which ? ` for ${which}` : ""}: ${words} (${code})${hint}`;
  }
  if (e.code && e.path !== undefined) {
    return `cannot use the data directory --data ${where.dataDir}: ${/^[A-Z]+: ([^,]+)/.exec(message)?.[1] ?? message} (${e.code})`;
  }
  return `cannot start the control plane: ${message}`;
}
