// `wasmesh server`: the control plane's pieces wired together. The store is the source of truth;
// every committed write (API, CLI, module push) bumps its revision, and the xDS server recomputes
// each connected proxy's configuration and pushes what changed, labelled with that revision.
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync } from "node:fs";
import https from "node:https";
import { type AddressInfo, isIP } from "node:net";
import { join } from "node:path";
import { serve } from "@hono/node-server";
import type { KubeConfig, V1Service } from "@kubernetes/client-node";
import {
  createApi,
  createLeaseKeeper,
  createWriter,
  type LeaseKeeper,
  type LeaseKeeperOptions,
} from "./api/index.ts";
import {
  type CertificateAuthority,
  type CertificateAuthorityOptions,
  openCertificateAuthority,
} from "./ca/index.ts";
import { createKvPublisher, type KvPublisherOptions } from "./edge/kv.ts";
import { createEdgeConfigSource } from "./edge/source.ts";
import type { ProxyIdentity } from "./envoy/index.ts";
import { parseNodeIdentity } from "./envoy/index.ts";
import {
  ADMIN_TOKEN_SECRET,
  CA_KEK_SECRET,
  checkCrdsInstalled,
  createConfigMapBlobStore,
  createImportAdmission,
  createImportReconciler,
  createInjectionAdmission,
  createKubeClient,
  createValidatingAdmission,
  type DiscoveredMesh,
  discoverMesh,
  ensureWebhookConfiguration,
  INJECT_PATH,
  type InjectionConfig,
  type KubeClient,
  type KubernetesResourceStore,
  type LeaderElection,
  type LeaderElectionOptions,
  mutatingWebhookConfiguration,
  openKubernetesStore,
  secretValue,
  sharedSecret,
  startLeaderElection,
  startWebhookServer,
  VALIDATE_IMPORTS_PATH,
  VALIDATE_PATH,
  validatingWebhookConfiguration,
  type WebhookTarget,
  withServiceAccountTokens,
  writeSecret,
} from "./kubernetes/index.ts";
import { MetricsRegistry } from "./metrics.ts";
import {
  createFileBlobStore,
  createModuleRegistry,
  loadBuiltinModule,
  MODULES_DIR,
  ValidationPool,
  type ValidationPoolOptions,
} from "./modules/index.ts";
import { createConfigurationCheck, createRevisionSource, type MeshRevision } from "./revision/index.ts";
import { ADMIN_TOKEN_FILE, ensureAdminToken } from "./security/admin-token.ts";
import { saveCaFile, saveToken, writePrivate } from "./security/credentials.ts";
import { authenticateProxy } from "./security/proxy-auth.ts";
import { type ServerTls, serverNames, startServerTls } from "./security/tls.ts";
import { createTokens, type Tokens } from "./security/tokens.ts";
import { openSqliteStore, type ResourceStore, StoreUnwritableError } from "./store/index.ts";
import { proxyClassKey } from "./translate/index.ts";
import { VERSION } from "./version.ts";
import { SnapshotCache, XdsServer } from "./xds/index.ts";

export interface ControlPlaneOptions {
  dataDir: string;
  httpPort: number;
  xdsPort: number;
  address?: string;
  /** Path of the built-in module (default build/mesh.wasm). */
  builtinModule?: string;
  /**
   * Module validation: its worker pool (size, time limit per validation, the modules' memory
   * ceiling; defaults in modules/isolate.ts) and how many validations one client may run at once.
   */
  validation?: Pick<ValidationPoolOptions, "size" | "timeoutMs" | "memoryLimitBytes"> & {
    perClient?: number;
  };
  /**
   * Load what each write would configure into the modules before committing it, and refuse what
   * they refuse (default true; revision/check.ts). Off only to measure what the check costs.
   */
  checkConfigurations?: boolean;
  /**
   * Workload leases: the clock and how often lapsed leases are looked for (api/leases.ts; default
   * Date.now and every second). Tests move the clock instead of waiting out leases.
   */
  leases?: Pick<LeaseKeeperOptions, "now" | "sweepIntervalMs">;
  /**
   * Host names the API is reached by (besides IP addresses and localhost, always served); a
   * request for any other name is refused (DNS rebinding). `wasmesh server --api-host`.
   */
  apiHosts?: readonly string[];
  /**
   * Save the data directory's admin token here for the CLI on this machine, under this server's
   * API URL (security/credentials.ts; `wasmesh server` passes the user's credentials file).
   */
  credentialsFile?: string;
  /**
   * The mesh CA (ca/): the trust domain and workload certificate lifetime of a new CA, the
   * key-encryption key, an operator's intermediate. Unset ones come from the environment
   * (WASMESH_TRUST_DOMAIN, WASMESH_CA_KEK_FILE, WASMESH_CA_KEK, WASMESH_CA_DIR) or the defaults.
   */
  ca?: Pick<
    CertificateAuthorityOptions,
    "trustDomain" | "kek" | "external" | "workloadValiditySeconds" | "env"
  >;
  /**
   * TLS on the API and xDS ports (security/tls.ts): "mesh-ca", a certificate the mesh CA issues for
   * the server's names (--api-host names, the address, loopback), renewed without a restart, its
   * trust bundle in <data>/ca-bundle.pem; or a certificate and key given as PEM files. Default none.
   */
  tls?: "mesh-ca" | { certFile: string; keyFile: string };
  /** Lifetime of the mesh CA's server certificate (default the CA's workload validity). */
  tlsValiditySeconds?: number;
  /** Also write the edge configuration into this Workers KV key after each change (edge/kv.ts). */
  edgeKv?: Omit<KvPublisherOptions, "source" | "log" | "fetch">;
  /** Kubernetes mode (issue 12; `wasmesh server --kubernetes`): the store is the Kubernetes API. */
  kubernetes?: KubernetesModeOptions;
  log?: (line: string) => void;
}

export interface KubernetesModeOptions {
  kubeConfig: KubeConfig;
  /** The control plane's namespace: its resources, Secrets, module ConfigMaps and leader Lease. */
  namespace: string;
  /** This replica's name among the replicas (its pod's name). */
  identity: string;
  /** A label selector of the namespaces whose Services and Pods are the mesh's (default wasmesh.io/sidecar-injection=enabled). */
  meshNamespaces?: string;
  /** Lease timings (kubernetes/leader.ts defaults: 15 s lease, 10 s renew deadline, 2 s retry). */
  leaderElection?: Pick<
    LeaderElectionOptions,
    "leaseDurationSeconds" | "renewDeadlineSeconds" | "retryPeriodSeconds"
  >;
  /**
   * The admission webhooks' server: its port, the names in its certificate (the webhook Service's
   * DNS names), and how the API server reaches it (the registrations the leader keeps).
   */
  webhooks?: { port: number; address?: string; names: readonly string[]; target: WebhookTarget };
  /** The audiences of the agents' projected service-account tokens (TokenReview; default the API server's). */
  tokenAudiences?: readonly string[];
  /**
   * Sidecar injection (kubernetes/injection.ts; with `webhooks`): the image, and how sidecars reach
   * the control plane. Their token's audience is tokenAudiences' first, the CA they trust the mesh's.
   */
  injection?: Omit<InjectionConfig, "controlPlaneNamespace" | "caBundle" | "tokenAudience">;
}

export interface ControlPlane {
  httpPort: number;
  xdsPort: number;
  store: ResourceStore;
  xds: XdsServer;
  /** Workload leases; sweep() deletes the lapsed ones now, as the sweeper does on its interval. */
  leases: LeaseKeeper;
  /** The API tokens (security/tokens.ts). */
  tokens: Tokens;
  /** <data>/admin-token: the admin token a data directory without a valid one got at start. */
  adminTokenFile: string;
  /** The mesh CA; undefined when it did not exist and the store could not be written to create it. */
  ca: CertificateAuthority | undefined;
  /** The API and xDS ports' certificate, with --tls. */
  tls: ServerTls | undefined;
  /** Kubernetes mode: the leader election, and the admission webhooks' port. */
  leader: LeaderElection | undefined;
  webhookPort: number | undefined;
  close(): Promise<void>;
}

/** 127.0.0.0/8, ::1 and localhost: reachable from this host only. */
function isLoopback(address: string): boolean {
  const bare = address.replace(/^\[(.*)\]$/, "$1");
  if (bare === "localhost" || bare === "::1") return true;
  return isIP(bare) === 4 && bare.startsWith("127.");
}

/** The API URLs a CLI on this host reaches the server by (keys of the credentials file). */
function localUrls(address: string, port: number, scheme: "http" | "https"): string[] {
  const bare = address.replace(/^\[(.*)\]$/, "$1");
  const wildcard = bare === "0.0.0.0" || bare === "::";
  const own = isIP(bare) === 6 ? `[${bare}]` : bare;
  return [
    `${scheme}://127.0.0.1:${port}`,
    ...(wildcard || isLoopback(address) ? [] : [`${scheme}://${own}:${port}`]),
  ];
}

/**
 * The mesh CA, created in the store at the first start so that a data directory has its root (and
 * <data>/ca-kek) before any sidecar asks; POST /v1/certificates signs with it. A CA that cannot
 * be opened (its key-encryption key missing or wrong, a damaged record, another trust domain) stops
 * the start; a store that cannot be written only leaves a new data directory without a CA until a
 * restart, as it does the rest of the writes.
 */
async function openMeshCa(
  options: ControlPlaneOptions,
  store: ResourceStore,
  log: (line: string) => void,
): Promise<CertificateAuthority | undefined> {
  try {
    return await openCertificateAuthority({ ...options.ca, store, dataDir: options.dataDir, log });
  } catch (error) {
    if (!(error instanceof StoreUnwritableError)) throw error;
    log(`wasmesh: the mesh CA cannot be created now: ${error.message}`);
    return undefined;
  }
}

/** The module registry's blobs in dataDir, relative to it. */
function blobFiles(dataDir: string): string[] {
  const dir = join(dataDir, MODULES_DIR);
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((name) => name.endsWith(".wasm"))
    .map((name) => join(MODULES_DIR, name));
}

/**
 * On Kubernetes, the CA's key-encryption key is one for every replica: from the environment or the
 * options when given (e.g. a Secret an operator manages), else Secret wasmesh-ca-kek, made by the
 * first replica that finds none.
 */
async function withSharedKek(
  options: ControlPlaneOptions,
  client: KubeClient | undefined,
  log: (line: string) => void,
): Promise<ControlPlaneOptions> {
  const kube = options.kubernetes;
  const env = options.ca?.env ?? process.env;
  if (kube === undefined || client === undefined || options.ca?.kek !== undefined) return options;
  if (env.WASMESH_CA_KEK !== undefined || env.WASMESH_CA_KEK_FILE !== undefined) return options;
  const { value, created } = await sharedSecret(client, kube.namespace, CA_KEK_SECRET, "key", () =>
    randomBytes(32),
  );
  if (created)
    log(`wasmesh: created the CA's key-encryption key in Secret ${kube.namespace}/${CA_KEK_SECRET}`);
  return { ...options, ca: { ...options.ca, kek: { key: new Uint8Array(value) } } };
}

/**
 * The admission webhooks' HTTPS server (a certificate from the mesh CA for the webhook Service's
 * names, renewed without a restart) and their registrations, which the leader keeps current.
 */
async function startWebhooks(
  config: NonNullable<KubernetesModeOptions["webhooks"]>,
  client: KubeClient,
  deps: {
    namespace: string;
    injection: KubernetesModeOptions["injection"];
    tokenAudience: string | undefined;
    store: KubernetesResourceStore;
    ca: CertificateAuthority | undefined;
    check: Parameters<typeof createValidatingAdmission>[0]["check"];
    blobs: { has(sha256: string): Promise<boolean> };
    dataDir: string;
    log: (line: string) => void;
  },
) {
  const { ca, log } = deps;
  if (ca === undefined) throw new Error("the admission webhooks need the mesh CA, which could not be opened");
  // Its own directory: the API's --tls writes the same bundle file in the data directory.
  const dir = join(deps.dataDir, "webhooks");
  mkdirSync(dir, { recursive: true });
  const tls = await startServerTls({ ca, names: config.names, dataDir: dir, log });
  const validate = createValidatingAdmission({
    store: deps.store,
    ...(deps.check ? { check: deps.check } : {}),
    hasModule: (sha256) => deps.blobs.has(sha256),
    log,
  });
  const injection = deps.injection;
  const inject =
    injection &&
    createInjectionAdmission({
      config: async () => ({
        ...injection,
        controlPlaneNamespace: deps.namespace,
        ...(deps.tokenAudience !== undefined ? { tokenAudience: deps.tokenAudience } : {}),
        // Read for each pod: a CA rotation reaches the pods created from then on.
        ...(injection.api.startsWith("https:") ? { caBundle: (await ca.trustBundle()).pem } : {}),
      }),
      async namespaceMetadata(name) {
        const namespace = await client.find(`/api/v1/namespaces/${encodeURIComponent(name)}`);
        return namespace === undefined
          ? undefined
          : { labels: namespace.metadata?.labels ?? {}, annotations: namespace.metadata?.annotations ?? {} };
      },
      async services(namespace) {
        const { body } = await client.request<{ items?: V1Service[] }>(
          "GET",
          `/api/v1/namespaces/${encodeURIComponent(namespace)}/services`,
        );
        return body.items ?? [];
      },
      log,
    });
  const server = await startWebhookServer({
    port: config.port,
    address: config.address ?? "0.0.0.0",
    tls: tls.material,
    handlers: {
      [VALIDATE_PATH]: validate,
      // Other meshes' objects (kubernetes/imports.ts).
      [VALIDATE_IMPORTS_PATH]: createImportAdmission({
        store: deps.store,
        client,
        ...(deps.check ? { check: deps.check } : {}),
        log,
      }),
      ...(inject ? { [INJECT_PATH]: inject } : {}),
    },
    log,
  });
  tls.onRenew((material) => server.setCertificate(material));
  log(`wasmesh: admission webhooks on https://${config.address ?? "0.0.0.0"}:${server.port}`);
  return {
    port: server.port,
    async register() {
      const bundle = (await ca.trustBundle()).pem;
      await ensureWebhookConfiguration(client, validatingWebhookConfiguration(config.target, bundle));
      if (inject)
        await ensureWebhookConfiguration(
          client,
          mutatingWebhookConfiguration(config.target, bundle, { controlPlaneNamespace: deps.namespace }),
        );
    },
    async close() {
      await server.close();
      tls.close();
    },
  };
}

export async function startControlPlane(options: ControlPlaneOptions): Promise<ControlPlane> {
  const log = options.log ?? ((line: string) => console.log(line));
  const address = options.address ?? "127.0.0.1";
  mkdirSync(options.dataDir, { recursive: true });

  const builtin = await loadBuiltinModule(options.builtinModule);
  const kube = options.kubernetes;
  const kubeClient = kube && createKubeClient(kube.kubeConfig);
  let store: ResourceStore;
  let discovered: DiscoveredMesh | undefined;
  if (kube !== undefined && kubeClient !== undefined) {
    await checkCrdsInstalled(kubeClient);
    // The cluster's Services and Pods, as read-only Services and Workloads of the mesh.
    discovered = await discoverMesh({
      kubeConfig: kube.kubeConfig,
      ...(kube.meshNamespaces !== undefined ? { namespaceSelector: kube.meshNamespaces } : {}),
      log,
    });
    const kubeStore = await openKubernetesStore({
      kubeConfig: kube.kubeConfig,
      namespace: kube.namespace,
      derived: discovered,
      log,
    });
    await kubeStore.synced;
    store = kubeStore;
  } else {
    // Module blobs without a database: the database was lost, this is no new directory.
    store = await openSqliteStore({
      dataDir: options.dataDir,
      otherData: () => blobFiles(options.dataDir),
    });
  }
  const ca = await openMeshCa(await withSharedKek(options, kubeClient, log), store, log);
  const metrics = new MetricsRegistry();
  const ownTokens = createTokens(store);
  // On Kubernetes an agent proves its pod with its service-account token (TokenReview).
  const tokens =
    kube === undefined
      ? ownTokens
      : withServiceAccountTokens(ownTokens, {
          kubeConfig: kube.kubeConfig,
          namespacedServices: true,
          ...(kube.tokenAudiences ? { audiences: kube.tokenAudiences } : {}),
          log,
        });
  let admin: Awaited<ReturnType<typeof ensureAdminToken>>;
  try {
    if (kubeClient !== undefined && kube !== undefined) {
      // Every replica serves with the one admin token operators read from the Secret.
      const shared = await secretValue(kubeClient, kube.namespace, ADMIN_TOKEN_SECRET, "token");
      if (shared !== undefined)
        writePrivate(join(options.dataDir, ADMIN_TOKEN_FILE), `${shared.toString("utf8").trim()}\n`);
    }
    admin = await ensureAdminToken(tokens, options.dataDir);
    if (admin.created) log(`wasmesh: created an admin token in ${admin.file} (readable by its owner only)`);
    if (admin.created && admin.secret !== undefined && kubeClient !== undefined && kube !== undefined) {
      await writeSecret(kubeClient, kube.namespace, ADMIN_TOKEN_SECRET, "token", Buffer.from(admin.secret));
      log(`wasmesh: the admin token is in Secret ${kube.namespace}/${ADMIN_TOKEN_SECRET} (data.token)`);
    }
  } catch (error) {
    // A store that cannot be written still serves reads and xDS: start, and say what is missing.
    if (!(error instanceof StoreUnwritableError)) throw error;
    admin = { file: join(options.dataDir, ADMIN_TOKEN_FILE), secret: undefined, created: false };
    log(
      `wasmesh: no valid admin token, and none can be created: ${error.message}. The API refuses requests ` +
        "without a token until the store can be written and the server is restarted",
    );
  }
  const validation = options.validation ?? {};
  const pool = new ValidationPool(validation);
  const blobs =
    kube !== undefined && kubeClient !== undefined
      ? createConfigMapBlobStore({
          client: kubeClient,
          namespace: kube.namespace,
          dataDir: options.dataDir,
          log,
        })
      : createFileBlobStore(options.dataDir);
  const modules = createModuleRegistry({
    store,
    blobs,
    builtin,
    validate: (bytes, validateOptions) => pool.validate(bytes, validateOptions),
    // The code sidecars get declares the same ceiling as its maximum memory.
    memoryLimitBytes: pool.memoryLimitBytes,
  });

  // The configuration checks of writes (revision/check.ts). The routing filter's runs under the API's
  // write lock, in the built-in module: a lane of its own, one worker kept with the module warm, so
  // it never waits behind user modules' checks nor starts a thread; the same time limit and memory
  // ceiling as validations. WasmPlugins of user modules are checked in the validation pool, before
  // the lock.
  const routingLane = new ValidationPool({
    size: 1,
    idleMs: Number.POSITIVE_INFINITY,
    lowerPriorityAfterMs: Number.POSITIVE_INFINITY,
    timeoutMs: pool.timeoutMs,
    memoryLimitBytes: pool.memoryLimitBytes,
  });
  const check =
    options.checkConfigurations === false
      ? undefined
      : createConfigurationCheck({
          builtin,
          moduleBytes: (sha256) => modules.bytes(sha256),
          configure: (code, rootId, configurations) =>
            (code.sha256 === builtin.sha256 ? routingLane : pool).configure(code, rootId, configurations),
        });
  // Started now, so the first write finds the worker up and the module compiled.
  if (check) void routingLane.configure(builtin, "wasmesh", ["{}"]);

  // One load and compile per store revision, for xDS, GET /v1/edge/config and the KV publisher.
  const revisions = createRevisionSource({
    store,
    codes: (refs) => modules.codes(refs),
    metrics,
    // The SPIFFE IDs the sidecars' mTLS verifies name the CA's trust domain.
    ...(ca !== undefined ? { trustDomain: ca.trustDomain } : {}),
    log,
  });
  /** The revision the xDS server serves: it moves only with xds.update, so versions and content agree. */
  let pushed: MeshRevision = await revisions.current();

  const xds = new XdsServer({
    metrics,
    parseNode: parseNodeIdentity,
    // Each stream proves the service its node claims (security/proxy-auth.ts).
    authenticate: (metadata, claimed) => authenticateProxy(tokens, metadata, claimed),
    cache: new SnapshotCache({
      keyFor: (proxy: ProxyIdentity) => proxyClassKey(proxy),
      configFor: (proxy: ProxyIdentity) => pushed.mesh.translate(proxy),
    }),
    log: (level, message, fields) =>
      log(`xds ${level}: ${message}${fields ? ` ${JSON.stringify(fields)}` : ""}`),
  });

  // Reloads run one at a time, newest revision wins: a burst of writes costs one push each at most.
  let reloading: Promise<void> = Promise.resolve();
  const refresh = () => {
    reloading = reloading.then(async () => {
      const next = await revisions.current();
      if (next.revision <= pushed.revision) return;
      pushed = next;
      xds.update(String(pushed.revision));
    });
    reloading = reloading.catch((error: unknown) => log(`wasmesh: reload failed: ${(error as Error).stack}`));
    return reloading;
  };
  store.watch(() => void refresh());
  xds.update(String(pushed.revision));

  let tls: ServerTls | undefined;
  if (options.tls === "mesh-ca") {
    if (ca === undefined)
      throw new Error(
        "--tls needs the mesh CA, which could not be created now: give --tls-cert and --tls-key",
      );
    tls = await startServerTls({
      ca,
      names: serverNames(address, options.apiHosts ?? []),
      dataDir: options.dataDir,
      log,
      ...(options.tlsValiditySeconds !== undefined ? { validitySeconds: options.tlsValiditySeconds } : {}),
    });
  } else if (options.tls !== undefined) {
    tls = await startServerTls({ ...options.tls, dataDir: options.dataDir, log });
  }
  const xdsPort = await xds.listen(options.xdsPort, address, tls?.material);

  // The store's current revision (not the one xDS last pushed), so that GET /v1/edge/config right
  // after a write already answers for it; the same MeshRevision the xDS reload then pushes.
  const edge = createEdgeConfigSource(revisions);
  const edgeKv = options.edgeKv && createKvPublisher({ ...options.edgeKv, source: edge, log });
  // Work done once for all replicas (lapsed leases, KV publishing, the webhook registrations) is the
  // leader's; outside Kubernetes this process is the only one.
  let leading = kube === undefined;
  if (edgeKv) {
    // Apart from the xDS reload: publishing runs in the background and never delays a push.
    store.watch(() => {
      if (leading) edgeKv.notify();
    });
    if (leading) edgeKv.notify();
  }

  // The control plane's own writes (lapsed leases, other meshes' objects from the cluster) are
  // written as the API writes: a writer of the same store takes the same lock, and the modules
  // check the result.
  const ownWriter = createWriter(
    store,
    undefined,
    (message, error) => log(error === undefined ? message : `${message}: ${(error as Error).stack ?? error}`),
    check,
  );
  // Every leased Workload stored starts with a whole lease.
  const leases = createLeaseKeeper({
    store,
    writer: ownWriter,
    metrics,
    log,
    ...options.leases,
    sweeps: () => leading,
  });
  await leases.start();

  const webhooks =
    kube?.webhooks === undefined || kubeClient === undefined
      ? undefined
      : await startWebhooks(kube.webhooks, kubeClient, {
          namespace: kube.namespace,
          injection: kube.injection,
          tokenAudience: kube.tokenAudiences?.[0],
          store: store as KubernetesResourceStore,
          ca,
          check,
          blobs,
          dataDir: options.dataDir,
          log,
        });
  // Other meshes' objects in the cluster, kept in step with the store's ImportedResources by the
  // leader (kubernetes/imports.ts), written as the API writes.
  const imports =
    kube === undefined || kubeClient === undefined
      ? undefined
      : createImportReconciler({
          client: kubeClient,
          store: store as KubernetesResourceStore,
          writer: ownWriter,
          ...(check ? { check } : {}),
          identity: kube.identity,
          log,
        });
  const leader =
    kube === undefined
      ? undefined
      : startLeaderElection({
          kubeConfig: kube.kubeConfig,
          namespace: kube.namespace,
          name: "wasmesh-control-plane",
          identity: kube.identity,
          ...kube.leaderElection,
          log,
          async onStartedLeading() {
            leading = true;
            log(`wasmesh: ${kube.identity} leads the control plane replicas`);
            edgeKv?.notify();
            imports?.start();
            await webhooks?.register();
          },
          async onStoppedLeading() {
            leading = false;
            await imports?.stop();
          },
        });

  // A token revoked through the API ends the ADS streams it opened at once: they would otherwise be
  // served until they reconnect.
  const revocable: Tokens = {
    ...tokens,
    async revoke(id) {
      const token = await tokens.revoke(id);
      if (token?.revoked) xds.endStreams(id, `token ${id} was revoked`);
      return token;
    },
  };
  const app = createApi({
    store,
    auth: { tokens: revocable, hosts: options.apiHosts ?? [] },
    modules,
    leases,
    status: () => xds.status(),
    sentTo: (nodeId) => xds.sentTo(nodeId),
    moduleCodes: () => pushed.modules,
    metrics,
    ...(ca !== undefined ? { ca } : {}),
    // Clients on this machine trust a rotation's next root from the step on, not 30 s later; the API
    // server, calling the webhooks, too.
    onCaRotation: () => {
      void tls?.refreshBundle();
      if (leading)
        void webhooks
          ?.register()
          .catch((error: unknown) => log(`wasmesh: webhook registration: ${(error as Error).message}`));
    },
    version: VERSION,
    edge,
    ...(check ? { check } : {}),
    ...(validation.perClient !== undefined ? { validationsPerClient: validation.perClient } : {}),
    validationRetryAfterSeconds: Math.ceil(pool.timeoutMs / 1000),
  });
  const http = serve({
    fetch: app.fetch,
    port: options.httpPort,
    hostname: address,
    ...(tls ? { createServer: https.createServer, serverOptions: tls.material } : {}),
  });
  await new Promise<void>((resolve, reject) => {
    http.once("listening", resolve);
    http.once("error", reject);
  });
  const httpPort = (http.address() as AddressInfo).port;
  // A renewed certificate for the connections opened from now on, on both ports.
  tls?.onRenew((material) => {
    xds.setCertificate(material);
    (http as https.Server).setSecureContext(material);
  });

  const scheme = tls ? "https" : "http";
  log(
    `wasmesh control plane: API ${scheme}://${address}:${httpPort}  xDS ${tls ? "grpcs" : "grpc"}://${address}:${xdsPort}  data ${options.dataDir}  (revision ${pushed.revision})` +
      (tls?.caFile ? `  CA bundle ${tls.caFile}` : ""),
  );
  if (!isLoopback(address) && !tls) {
    log(
      `wasmesh: WARNING: listening on ${address} without TLS. API tokens, the mesh's configuration and module ` +
        "bytes cross the network in plain text, readable and replayable by anyone on the path. Start the " +
        "server with --tls (a certificate from the mesh CA; clients trust <data>/ca-bundle.pem) or --tls-cert " +
        "and --tls-key, or keep it on a private network.",
    );
  }
  if (options.credentialsFile !== undefined) {
    const urls = localUrls(address, httpPort, scheme);
    try {
      if (admin.secret !== undefined)
        saveToken(urls, admin.secret, { path: options.credentialsFile, dataDir: options.dataDir });
      // The CLI on this machine trusts the mesh CA's certificate for these URLs with no flag.
      if (tls?.caFile !== undefined) saveCaFile(urls, tls.caFile, { path: options.credentialsFile });
    } catch (error) {
      // The CLI can still be given the token (--token, $WASMESH_TOKEN); the server runs on.
      log(`wasmesh: cannot save the admin token in ${options.credentialsFile}: ${(error as Error).message}`);
    }
  }

  let closed = false;
  return {
    httpPort,
    xdsPort,
    store,
    xds,
    leases,
    tokens,
    adminTokenFile: admin.file,
    ca,
    tls,
    leader,
    webhookPort: webhooks?.port,
    async close() {
      if (closed) return;
      closed = true;
      // Hand the lead over at once rather than after the lease lapses.
      await leader?.stop();
      await imports?.stop();
      await webhooks?.close();
      await new Promise<void>((resolve) => {
        http.close(() => resolve());
        // Keep-alive connections would hold close() open.
        (http as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
      });
      tls?.close();
      await leases.close();
      await xds.close();
      await pool.close();
      await routingLane.close();
      await edgeKv?.close();
      await reloading;
      await store.close();
      await discovered?.discovery.close();
    },
  };
}
