// A load-generator process for bench:xds: it drives a share of the simulated sidecars, each an
// AdsClient (test/support/xds-client.ts) on its own gRPC connection with Envoy's HTTP/2 windows
// (streams share connections only when BENCH_STREAMS_PER_CHANNEL says so), subscribing as Envoy
// does: CDS and LDS wildcard first, then EDS for the EDS clusters it got, RDS for the listeners'
// route configurations and ECDS for their filters, re-subscribing when those change; every response
// is ACKed as it arrives. Run with child_process.fork; commands and results travel over IPC.
//
// Times are epoch milliseconds (performance.timeOrigin + performance.now()), so that the bench
// process, which writes the change, and these processes, which see the ACKs, share one clock.
import * as grpc from "@grpc/grpc-js";
import { EXTENSION_TYPE, envoyProtos, messageType, TYPE_URL } from "../../control-plane/envoy/index.ts";
import type { SimulatedProxy } from "./bench-xds-mesh.ts";
import { type AdsClient, type AdsProtocol, connectAds, type ReceivedResource } from "./xds-client.ts";

export type ClientCommand =
  /** Connect these sidecars too, and report once all (old and new) are synced. */
  | {
      op: "connect";
      address: string;
      protocol: AdsProtocol;
      proxies: SimulatedProxy[];
      streamsPerChannel: number;
      timeoutMs: number;
    }
  /** Report when each proxy of `affected` services (all when null) ACKed `version`. */
  | { op: "await"; version: string; affected: string[] | null; timeoutMs: number; quietMs: number }
  | { op: "close" };

export type ClientReply =
  | { op: "synced"; proxies: number; responses: number }
  | {
      op: "acks";
      /** Per affected proxy that got there: epoch ms of its last ACK of a response labelled `version`. */
      ackedAt: number[];
      /** Affected proxies that did not ACK `version` within the time limit. */
      missing: number;
      /** Responses labelled `version` received by affected proxies. */
      responses: number;
      /** Proxies of unaffected services that were sent something labelled `version` anyway. */
      unaffectedPushed: number;
    }
  | { op: "closed" }
  | { op: "error"; message: string };

const { listener: LDS, route: RDS, cluster: CDS, endpoint: EDS, extensionConfig: ECDS } = TYPE_URL;
const TYPES = [CDS, EDS, LDS, RDS, ECDS] as const;
/** next() waits without a deadline: a stream that ends rejects it, which ends the loop. */
const FOREVER = 2 ** 31 - 1;
const now = () => performance.timeOrigin + performance.now();

interface AnyMessage {
  type_url?: string;
  value?: Uint8Array;
}

// Decoded with the message types looked up once and read as decoded (no toObject): this runs for
// every sidecar, and the load generator shares the machine with the server it measures.
const clusterType = messageType(CDS);
const listenerType = messageType(LDS);
const hcmType = messageType(EXTENSION_TYPE.httpConnectionManager);
const EDS_DISCOVERY = envoyProtos().lookupEnum("envoy.config.cluster.v3.Cluster.DiscoveryType").values.EDS;

/** EDS names Envoy would subscribe to: the service_name (or name) of every EDS cluster. */
function edsNames(clusters: ReceivedResource[]): string[] {
  const names: string[] = [];
  for (const r of clusters) {
    const c = clusterType.decode(r.bytes) as unknown as {
      name?: string;
      type?: number;
      eds_cluster_config?: { service_name?: string };
    };
    if (c.type === EDS_DISCOVERY) names.push(c.eds_cluster_config?.service_name || (c.name ?? ""));
  }
  return names.sort();
}

/** RDS and ECDS names the listeners refer to, read from their HTTP connection managers. */
function listenerRefs(listeners: ReceivedResource[]): { rds: string[]; ecds: string[] } {
  const rds = new Set<string>();
  const ecds = new Set<string>();
  for (const r of listeners) {
    const l = listenerType.decode(r.bytes) as unknown as {
      filter_chains?: { filters?: { typed_config?: AnyMessage }[] }[];
    };
    for (const chain of l.filter_chains ?? []) {
      for (const filter of chain.filters ?? []) {
        const any = filter.typed_config;
        if (any?.type_url !== EXTENSION_TYPE.httpConnectionManager || !any.value) continue;
        const hcm = hcmType.decode(any.value) as unknown as {
          rds?: { route_config_name?: string };
          http_filters?: { name?: string; config_discovery?: unknown }[];
        };
        if (hcm.rds?.route_config_name) rds.add(hcm.rds.route_config_name);
        for (const f of hcm.http_filters ?? []) if (f.config_discovery && f.name) ecds.add(f.name);
      }
    }
  }
  return { rds: [...rds].sort(), ecds: [...ecds].sort() };
}

class SimSidecar {
  readonly proxy: SimulatedProxy;
  client: AdsClient | undefined;
  /** Version label → epoch ms of the last response so labelled (ACKed in the same tick it arrived). */
  readonly lastAckAt = new Map<string, number>();
  readonly responsesByVersion = new Map<string, number>();
  private readonly subscribed = new Map<string, string[]>();
  private readonly received = new Set<string>();

  constructor(proxy: SimulatedProxy) {
    this.proxy = proxy;
  }

  /** Every type has had a response. */
  get synced(): boolean {
    return this.received.size === TYPES.length;
  }

  async start(channel: grpc.Client, protocol: AdsProtocol, timeoutMs: number, onResponse: () => void) {
    await new Promise<void>((resolve, reject) =>
      channel.waitForReady(Date.now() + timeoutMs, (error) => (error ? reject(error) : resolve())),
    );
    const client = await connectAds({
      address: "",
      client: channel,
      node: { id: this.proxy.nodeId, cluster: this.proxy.service, metadata: this.proxy.metadata },
      protocol,
      // The bench measures the server: the client decodes only what Envoy must read to know its
      // next subscriptions (listeners, clusters), below.
      decode: false,
      keepHistory: false,
    });
    this.client = client;
    for (const typeUrl of TYPES) void this.loop(client, typeUrl, onResponse);
    // Envoy's order on an ADS stream: clusters, then listeners; the rest follows from them.
    client.subscribe(CDS);
    client.subscribe(LDS);
  }

  private async loop(client: AdsClient, typeUrl: string, onResponse: () => void): Promise<void> {
    for (;;) {
      let response: Awaited<ReturnType<AdsClient["next"]>>;
      try {
        response = await client.next(typeUrl, FOREVER);
      } catch {
        return; // the stream ended
      }
      const at = performance.timeOrigin + response.at;
      this.lastAckAt.set(response.version, at);
      this.responsesByVersion.set(response.version, (this.responsesByVersion.get(response.version) ?? 0) + 1);
      this.received.add(typeUrl);
      if (typeUrl === CDS) this.follow(client, EDS, edsNames(client.held(CDS)));
      else if (typeUrl === LDS) {
        const refs = listenerRefs(client.held(LDS));
        this.follow(client, RDS, refs.rds);
        this.follow(client, ECDS, refs.ecds);
      }
      onResponse();
    }
  }

  /** Subscribes to exactly `names` for a non-wildcard type, sending only when the set changed. */
  private follow(client: AdsClient, typeUrl: string, names: string[]): void {
    const before = this.subscribed.get(typeUrl) ?? [];
    if (before.length === names.length && before.every((n, i) => n === names[i])) return;
    this.subscribed.set(typeUrl, names);
    if (client.protocol === "sotw") client.subscribe(typeUrl, names);
    else {
      const gone = before.filter((n) => !names.includes(n));
      if (gone.length > 0) client.unsubscribe(typeUrl, gone);
      client.subscribe(typeUrl, names);
    }
  }

  close(): void {
    this.client?.close();
  }
}

const sidecars: SimSidecar[] = [];
const channels: grpc.Client[] = [];
let lastResponseAt = 0;
let responseCount = 0;
const onResponse = () => {
  lastResponseAt = now();
  responseCount++;
};

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until `done` holds and no response has arrived for quietMs, or the deadline passes. */
async function settle(done: () => boolean, quietMs: number, deadline: number): Promise<void> {
  while (Date.now() < deadline) {
    if (done() && now() - lastResponseAt >= quietMs) return;
    await sleep(Math.min(50, quietMs));
  }
}

/**
 * Envoy's default HTTP/2 windows (initial_stream_window_size and initial_connection_window_size,
 * 256 MiB): with Node's 64 KiB default, every response larger than that (an ECDS resource with the
 * module inline is ~80 KiB) would wait a round trip for a WINDOW_UPDATE, which Envoy never does.
 */
const ENVOY_WINDOW = 256 * 1024 * 1024;

function newChannel(address: string): grpc.Client {
  return new grpc.Client(address, grpc.credentials.createInsecure(), {
    // Its own connection, as each sidecar has.
    "grpc.use_local_subchannel_pool": 1,
    "grpc-node.flow_control_window": ENVOY_WINDOW,
  });
}

async function connect(command: Extract<ClientCommand, { op: "connect" }>): Promise<ClientReply> {
  const fresh = command.proxies.map((p) => new SimSidecar(p));
  sidecars.push(...fresh);
  // Sidecars share channels only when asked to (a cheaper load generator, a less realistic server).
  const channelOf = new Map<SimSidecar, grpc.Client>();
  let channel: grpc.Client | undefined;
  for (const [i, sidecar] of fresh.entries()) {
    if (!channel || i % command.streamsPerChannel === 0) {
      channel = newChannel(command.address);
      channels.push(channel);
    }
    channelOf.set(sidecar, channel);
  }
  // A bounded number of connection attempts in flight, as sidecars of a rolling deploy would.
  const CONCURRENCY = 64;
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < fresh.length) {
        const sidecar = fresh[next++] as SimSidecar;
        await sidecar.start(
          channelOf.get(sidecar) as grpc.Client,
          command.protocol,
          command.timeoutMs,
          onResponse,
        );
      }
    }),
  );
  const deadline = Date.now() + command.timeoutMs;
  await settle(() => sidecars.every((s) => s.synced), 300, deadline);
  const behind = sidecars.filter((s) => !s.synced).length;
  if (behind > 0)
    return { op: "error", message: `${behind} sidecars not synced within ${command.timeoutMs} ms` };
  return { op: "synced", proxies: sidecars.length, responses: responseCount };
}

async function awaitVersion(command: Extract<ClientCommand, { op: "await" }>): Promise<ClientReply> {
  const affected = command.affected === null ? null : new Set(command.affected);
  const isAffected = (s: SimSidecar) => affected === null || affected.has(s.proxy.service);
  const mine = sidecars.filter(isAffected);
  await settle(
    () => mine.every((s) => s.lastAckAt.has(command.version)),
    command.quietMs,
    Date.now() + command.timeoutMs,
  );
  const ackedAt: number[] = [];
  let responses = 0;
  for (const s of mine) {
    const at = s.lastAckAt.get(command.version);
    if (at !== undefined) ackedAt.push(at);
    responses += s.responsesByVersion.get(command.version) ?? 0;
  }
  const unaffectedPushed = sidecars.filter((s) => !isAffected(s) && s.lastAckAt.has(command.version)).length;
  return { op: "acks", ackedAt, missing: mine.length - ackedAt.length, responses, unaffectedPushed };
}

const reply = (message: ClientReply) => process.send?.(message);

process.on("message", (command: ClientCommand) => {
  const run = async (): Promise<ClientReply> => {
    switch (command.op) {
      case "connect":
        return connect(command);
      case "await":
        return awaitVersion(command);
      case "close":
        for (const s of sidecars) s.close();
        for (const c of channels) c.close();
        return { op: "closed" };
    }
  };
  run().then(
    (result) => {
      reply(result);
      // Done: leave (the streams are cancelled), so that the bench never has to kill us.
      if (result.op === "closed") setImmediate(() => process.disconnect());
    },
    (error: unknown) =>
      reply({
        op: "error",
        message: error instanceof Error ? (error.stack ?? error.message) : String(error),
      }),
  );
});
// The bench going away (even killed) closes the IPC channel: leave with it.
process.on("disconnect", () => process.exit(0));
