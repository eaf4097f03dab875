// The agent's xDS proxy (dataplane/xds-proxy.ts) over real gRPC, between a raw ADS client that
// speaks like Envoy (test/support/xds-client.ts) and a stand-in control plane that records every
// request it receives and sends the responses a test writes, nonce by nonce. So the protocol of a
// held or dropped response can be read exactly: what the control plane is told, in which order,
// and what the client gets. test/dataplane/xds-proxy-control-plane.test.ts runs the proxy against
// the real control plane.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { decodeMessage, EXTENSION_TYPE, encodeMessage, TYPE_URL } from "../../control-plane/envoy/index.ts";
import {
  adsServiceDefinition,
  type DeltaDiscoveryRequest,
  type DiscoveryRequest,
  encodeAny,
  encodeDeltaDiscoveryResponse,
  encodeDiscoveryResponse,
  type WireResource,
} from "../../control-plane/xds/codec.ts";
import { startXdsProxy, type XdsProxy } from "../../dataplane/xds-proxy.ts";
import { type ModuleServer, sha256, startModuleServer } from "../support/module-server.ts";
import { tempDir } from "../support/temp.ts";
import { until } from "../support/wait.ts";
import {
  type AdsClient,
  type AdsProtocol,
  connectAds,
  type ReceivedResponse,
} from "../support/xds-client.ts";

const ECDS = TYPE_URL.extensionConfig;
const EDS = TYPE_URL.endpoint;
const CDS = TYPE_URL.cluster;
const LDS = TYPE_URL.listener;

type AnyRequest = DiscoveryRequest | DeltaDiscoveryRequest;

/** A control plane that answers nothing by itself: it records requests, and a test sends responses. */
interface StandIn {
  readonly address: string;
  /** Every request received, on every stream, in order. */
  readonly requests: AnyRequest[];
  /** Streams opened so far. */
  readonly streams: number;
  /** Writes a response on the latest stream. */
  send(bytes: Uint8Array): void;
  /** Ends the latest stream with a status. */
  end(code: grpc.status, details: string): void;
  close(): Promise<void>;
}

async function startStandIn(): Promise<StandIn> {
  const requests: AnyRequest[] = [];
  let call: grpc.ServerDuplexStream<AnyRequest, Uint8Array> | undefined;
  let streams = 0;
  const serve = (c: grpc.ServerDuplexStream<AnyRequest, Uint8Array>) => {
    call = c;
    streams++;
    c.on("data", (request: AnyRequest) => requests.push(request));
    c.on("end", () => c.end());
    c.on("error", () => {});
  };
  const server = new grpc.Server();
  server.addService(adsServiceDefinition(), {
    StreamAggregatedResources: serve,
    DeltaAggregatedResources: serve,
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, bound) =>
      error ? reject(error) : resolve(bound),
    ),
  );
  const latest = () => {
    if (!call) throw new Error("no stream open on the stand-in control plane");
    return call;
  };
  return {
    address: `127.0.0.1:${port}`,
    requests,
    get streams() {
      return streams;
    },
    send: (bytes) => void latest().write(bytes),
    end: (code, details) => void latest().emit("error", { code, details }),
    close: () => new Promise((resolve) => server.tryShutdown(() => resolve())),
  };
}

/** An ECDS resource: a Wasm filter whose code is the local file of `module` at `sha`. */
function wasmFilter(name: string, module: string, sha: string, configuration = "{}"): WireResource {
  const bytes = encodeMessage(ECDS, {
    name,
    typed_config: {
      "@type": EXTENSION_TYPE.wasmFilter,
      config: {
        name,
        vm_config: {
          vm_id: module,
          runtime: "envoy.wasm.runtime.v8",
          code: { local: { filename: `modules/${module}/${sha}.wasm` } },
        },
        configuration: { "@type": EXTENSION_TYPE.stringValue, value: configuration },
      },
    },
  });
  return { name, version: sha256(bytes).slice(0, 16), any: encodeAny(ECDS, bytes) };
}

function endpoints(name: string): WireResource {
  const bytes = encodeMessage(EDS, { cluster_name: name });
  return { name, version: sha256(bytes).slice(0, 16), any: encodeAny(EDS, bytes) };
}

/** The local file a received ECDS resource names. */
function filenameOf(resource: Record<string, unknown>): string {
  const typed = resource.typed_config as { value: Uint8Array };
  const wasm = decodeMessage(EXTENSION_TYPE.wasmFilter, typed.value) as {
    config: { vm_config: { code: { local: { filename: string } } } };
  };
  return wasm.config.vm_config.code.local.filename;
}

/** Distinct module-like blobs (the proxy does not load them; Envoy would). */
let made = 0;
function blob(): Uint8Array {
  made++;
  return new TextEncoder().encode(`module bytes #${made} ${"x".repeat(1000)}`);
}

describe.each<AdsProtocol>(["sotw", "delta"])(
  "xDS proxy (%s) against a stand-in control plane",
  (protocol) => {
    let modules: ModuleServer;
    let upstream: StandIn;
    let proxy: XdsProxy;
    let client: AdsClient;
    let dataDir: string;
    /** Per ECDS response the client got, whether every file it names was there, whole, at arrival. */
    let filesAtArrival: boolean[];
    const open: { close(): Promise<void> | void }[] = [];

    /** A response of `typeUrl` with `nonce`, for the stand-in to send, in the stream's protocol. */
    const response = (typeUrl: string, version: string, nonce: string, resources: WireResource[]) =>
      protocol === "sotw"
        ? encodeDiscoveryResponse(version, typeUrl, nonce, resources)
        : encodeDeltaDiscoveryResponse(version, typeUrl, nonce, resources, []);

    /** Waits for the stand-in to have received `n` requests, and returns the n-th. */
    const request = async (n: number): Promise<AnyRequest> => {
      await until(
        () => `request #${n} at the control plane (has ${JSON.stringify(upstream.requests, null, 1)})`,
        () => upstream.requests.length >= n,
      );
      return upstream.requests[n - 1] as AnyRequest;
    };

    beforeAll(async () => {
      modules = await startModuleServer();
      open.push(modules);
      return async () => {
        for (const c of open.reverse()) await c.close();
      };
    });

    const start = async () => {
      upstream = await startStandIn();
      dataDir = tempDir("xds-proxy");
      proxy = await startXdsProxy({
        upstream: upstream.address,
        listen: { host: "127.0.0.1", port: 0 },
        dataDir,
        api: modules.url,
        moduleFetch: { attempts: 2, backoffMs: 10 },
      });
      filesAtArrival = [];
      client = await connectAds({
        address: `127.0.0.1:${proxy.port}`,
        node: { id: "reviews-1", cluster: "reviews", metadata: { "wasmesh.module_delivery": "local" } },
        protocol,
        // Runs as each response arrives, before its ACK.
        reject: (r: ReceivedResponse) => {
          if (r.typeUrl === ECDS)
            filesAtArrival.push(
              r.resources.every((resource) => {
                const file = join(dataDir, filenameOf(resource.resource));
                const sha = /([0-9a-f]{64})\.wasm$/.exec(file)?.[1];
                return existsSync(file) && sha256(readFileSync(file)) === sha;
              }),
            );
          return undefined;
        },
      });
    };
    afterEach(async () => {
      client?.close();
      await proxy?.close();
      await upstream?.close();
    });

    it("relays requests and responses as they are, and each ECDS response only once the modules it names are on disk, verified", async () => {
      await start();
      expect(proxy.synced()).toBe(false);
      const mesh = blob();
      modules.add(mesh);
      client.subscribe(ECDS, ["routing"]);
      client.subscribe(EDS, ["barrier"]);
      const first = (await request(1)) as AnyRequest;
      expect(first.typeUrl).toBe(ECDS);
      // The node passes through untouched: the agent wrote it in the bootstrap.
      expect(first.node).toEqual({
        id: "reviews-1",
        cluster: "reviews",
        metadata: { "wasmesh.module_delivery": "local" },
      });
      await request(2);

      upstream.send(response(EDS, "1", "e1", [endpoints("barrier")]));
      // Twenty pushes of one module version, each with another configuration.
      for (let i = 1; i <= 20; i++)
        upstream.send(
          response(ECDS, String(i), `n${i}`, [wasmFilter("routing", "mesh", sha256(mesh), `{"i":${i}}`)]),
        );
      await client.waitFor(() => client.received(ECDS) === 20);
      expect(client.responses.map((r) => `${r.typeUrl === ECDS ? "ecds" : "eds"} ${r.nonce}`)).toEqual([
        "eds e1",
        ...Array.from({ length: 20 }, (_, i) => `ecds n${i + 1}`),
      ]);
      expect(filesAtArrival).toEqual(Array(20).fill(true));
      expect(modules.fetches(sha256(mesh))).toBe(1);
      expect(proxy.fetches).toBe(1);
      // Every ACK reached the control plane as the client wrote it.
      await until("the last ACK", () => upstream.requests.some((r) => r.responseNonce === "n20"));
      expect(upstream.requests.filter((r) => r.typeUrl === ECDS && r.responseNonce !== "").length).toBe(20);
      expect(upstream.requests.every((r) => r.errorDetail === undefined)).toBe(true);

      // A new version is fetched once; the old one stays (Envoy may still use it).
      const next = blob();
      modules.add(next);
      upstream.send(response(ECDS, "21", "n21", [wasmFilter("routing", "mesh", sha256(next))]));
      await client.waitFor(() => client.received(ECDS) === 21);
      expect(filesAtArrival.at(-1)).toBe(true);
      expect(proxy.fetches).toBe(2);
      expect(existsSync(join(dataDir, "modules", "mesh", `${sha256(mesh)}.wasm`))).toBe(true);
    });

    it("holds the responses behind an ECDS response that waits for its module, in order", async () => {
      await start();
      const slow = blob();
      modules.add(slow);
      let release: () => void = () => {};
      modules.faults.push({ wait: new Promise<void>((resolve) => (release = resolve)) });
      client.subscribe(ECDS, ["routing"]);
      client.subscribe(EDS, ["barrier"]);
      await request(2);
      upstream.send(response(ECDS, "1", "n1", [wasmFilter("routing", "mesh", sha256(slow))]));
      await until("the module download to start", () => modules.fetches(sha256(slow)) === 1);
      upstream.send(response(EDS, "2", "e2", [endpoints("barrier")]));
      release();
      await client.waitFor(() => client.received(EDS) === 1 && client.received(ECDS) === 1);
      expect(client.responses.map((r) => r.nonce)).toEqual(["n1", "e2"]);
      expect(filesAtArrival).toEqual([true]);
    });

    it("drops an ECDS response whose module does not verify and NACKs it to the control plane for Envoy", async () => {
      await start();
      const good = blob();
      const bad = blob();
      modules.add(good);
      modules.add(bad);
      client.subscribe(ECDS, ["routing"]);
      client.subscribe(EDS, ["barrier"]);
      await request(2);
      upstream.send(response(ECDS, "1", "n1", [wasmFilter("routing", "mesh", sha256(good))]));
      await client.waitFor(() => client.received(ECDS) === 1);
      const ack = await request(3);
      expect(ack.responseNonce).toBe("n1");

      // The bad version's download waits until the client has changed its subscription, so the NACK
      // is seen to carry the latest one; the bytes then come tampered.
      let release: () => void = () => {};
      modules.faults.push({ wait: new Promise<void>((resolve) => (release = resolve)), tamper: true });
      upstream.send(response(ECDS, "2", "n2", [wasmFilter("routing", "mesh", sha256(bad))]));
      await until("the module download to start", () => modules.fetches(sha256(bad)) === 1);
      upstream.send(response(EDS, "3", "e3", [endpoints("barrier")]));
      client.subscribe(ECDS, ["routing", "extra"]);
      // Passed on as the client wrote it, while the response waits: answering n1.
      const changed = await request(4);
      expect(changed.responseNonce).toBe(protocol === "sotw" ? "n1" : "");
      release();

      const nack = await request(5);
      expect(nack.typeUrl).toBe(ECDS);
      expect(nack.responseNonce).toBe("n2");
      expect(nack.errorDetail?.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(nack.errorDetail?.message).toContain(`module mesh sha256 ${sha256(bad)}: digest mismatch`);
      if (protocol === "sotw") {
        const sotw = nack as DiscoveryRequest;
        // What the client runs, and all it subscribes to now.
        expect(sotw.versionInfo).toBe("1");
        expect(sotw.resourceNames).toEqual(["routing", "extra"]);
      } else {
        const delta = nack as DeltaDiscoveryRequest;
        expect([delta.subscribe, delta.unsubscribe]).toEqual([[], []]);
      }
      // The client never sees n2; the response behind it comes after the NACK.
      await client.waitFor(() => client.received(EDS) === 1);
      expect(client.responses.map((r) => r.nonce)).toEqual(["n1", "e3"]);
      expect(client.held(ECDS).map((r) => filenameOf(r.resource))).toEqual([
        `modules/mesh/${sha256(good)}.wasm`,
      ]);
      expect((await request(6)).responseNonce).toBe("e3");
      expect(existsSync(join(dataDir, "modules", "mesh", `${sha256(bad)}.wasm`))).toBe(false);

      // The client's next request still answers n1, the last response it got.
      if (protocol === "sotw") client.subscribe(ECDS, ["routing"]);
      else client.unsubscribe(ECDS, ["extra"]);
      const after = await request(7);
      if (protocol === "sotw") {
        // Passed on as answering n2, still refusing it: the control plane ignores an older nonce.
        expect(after.responseNonce).toBe("n2");
        expect(after.errorDetail).toEqual(nack.errorDetail);
        expect((after as DiscoveryRequest).resourceNames).toEqual(["routing"]);
        expect((after as DiscoveryRequest).versionInfo).toBe("1");
      } else {
        // Delta subscriptions apply whatever the nonce: passed on unchanged.
        expect(after.responseNonce).toBe("n1");
        expect(after.errorDetail).toBeUndefined();
      }

      // A response forwarded again ends that: the client's answers pass unchanged.
      upstream.send(response(ECDS, "4", "n4", [wasmFilter("routing", "mesh", sha256(good), '{"v":4}')]));
      await client.waitFor(() => client.received(ECDS) === 2);
      const ack4 = await request(8);
      expect([ack4.responseNonce, ack4.errorDetail]).toEqual(["n4", undefined]);
      client.subscribe(ECDS, ["routing", "more"]);
      const later = await request(9);
      expect([later.responseNonce, later.errorDetail]).toEqual([protocol === "sotw" ? "n4" : "", undefined]);
    });

    it.runIf(protocol === "delta")(
      "after a drop, asks once per later ECDS response for the dropped resources it did not bring",
      async () => {
        await start();
        const good = blob();
        const bad = blob();
        modules.add(good);
        modules.add(bad);
        modules.tamper.add(sha256(bad));
        client.subscribe(ECDS, ["a", "b"]);
        await request(1);
        upstream.send(
          response(ECDS, "1", "n1", [
            wasmFilter("a", "mesh", sha256(good)),
            wasmFilter("b", "mesh", sha256(good)),
          ]),
        );
        expect((await request(2)).responseNonce).toBe("n1");
        // a's new module is damaged: the response is dropped, b's new configuration with it.
        upstream.send(
          response(ECDS, "2", "n2", [
            wasmFilter("a", "tagger", sha256(bad)),
            wasmFilter("b", "mesh", sha256(good), '{"b":2}'),
          ]),
        );
        expect((await request(3)).errorDetail?.message).toContain("digest mismatch");
        // A later push brings b again, not a: once forwarded, a is asked for again (and only a).
        upstream.send(response(ECDS, "3", "n3", [wasmFilter("b", "mesh", sha256(good), '{"b":3}')]));
        await client.waitFor(() => client.received(ECDS) === 2);
        await request(6);
        const again = upstream.requests.slice(3, 6) as DeltaDiscoveryRequest[];
        expect(again.map((r) => [r.responseNonce, r.subscribe, r.unsubscribe, r.errorDetail])).toEqual(
          expect.arrayContaining([
            ["", [], ["a"], undefined],
            ["", ["a"], [], undefined],
            ["n3", [], [], undefined],
          ]),
        );
        // The unsubscription comes before the subscription.
        const order = again.map((r) =>
          r.unsubscribe.length ? "unsubscribe" : r.subscribe.length ? "subscribe" : "ack",
        );
        expect(order.indexOf("unsubscribe")).toBeLessThan(order.indexOf("subscribe"));
        // The control plane answers with a's current version: still damaged, dropped and NACKed
        // again, and nothing more is asked for until another response goes through.
        upstream.send(response(ECDS, "3", "n4", [wasmFilter("a", "tagger", sha256(bad))]));
        expect((await request(7)).responseNonce).toBe("n4");
        upstream.send(response(EDS, "3", "e1", [endpoints("barrier")]));
        client.subscribe(EDS, ["barrier"]);
        await client.waitFor(() => client.received(EDS) === 1);
        expect((await request(9)).responseNonce).toBe("e1");
        expect(upstream.requests.slice(7).map((r) => r.typeUrl)).toEqual([EDS, EDS]);
        modules.tamper.delete(sha256(bad));
      },
    );

    it("NACKs with INTERNAL when the module cannot be fetched, and fetches it again for a later response", async () => {
      await start();
      const missing = blob();
      client.subscribe(ECDS, ["routing"]);
      await request(1);
      upstream.send(response(ECDS, "1", "n1", [wasmFilter("tagger", "tagger", sha256(missing))]));
      const nack = await request(2);
      expect(nack.responseNonce).toBe("n1");
      expect(nack.errorDetail?.code).toBe(grpc.status.INTERNAL);
      expect(nack.errorDetail?.message).toMatch(
        new RegExp(`module tagger sha256 ${sha256(missing)}: GET \\S+ answered 404`),
      );
      expect(client.received(ECDS)).toBe(0);

      modules.add(missing);
      upstream.send(response(ECDS, "2", "n2", [wasmFilter("tagger", "tagger", sha256(missing))]));
      await client.waitFor(() => client.received(ECDS) === 1);
      expect(filesAtArrival).toEqual([true]);
      expect(modules.fetches(sha256(missing))).toBe(2);
    });

    it("is synced while the client has a stream and ACKed every type it subscribed to, clusters and listeners among them; a stream's end passes through", async () => {
      await start();
      const mesh = blob();
      modules.add(mesh);
      let firstAck = false;
      void proxy.firstAck().then(() => (firstAck = true));
      client.subscribe(EDS, ["barrier"]);
      await request(1);
      upstream.send(response(EDS, "1", "e1", [endpoints("barrier")]));
      await request(2);
      // Endpoints alone are no configuration: Envoy has yet to ask for clusters and listeners.
      expect(proxy.synced()).toBe(false);
      client.subscribe(CDS, []);
      client.subscribe(LDS, []);
      client.subscribe(ECDS, ["routing"]);
      await request(5);
      upstream.send(response(CDS, "1", "c1", []));
      upstream.send(response(LDS, "1", "l1", []));
      await request(7);
      // Three of four types ACKed.
      expect(proxy.synced()).toBe(false);
      expect(firstAck).toBe(false);
      upstream.send(response(ECDS, "1", "n1", [wasmFilter("routing", "mesh", sha256(mesh))]));
      await proxy.firstAck();
      expect(proxy.synced()).toBe(true);
      expect((await request(8)).responseNonce).toBe("n1");

      // The control plane ends the stream: so does the proxy, with the same status.
      upstream.end(grpc.status.UNAVAILABLE, "going away");
      const status = await client.status;
      expect(status).toEqual({ code: grpc.status.UNAVAILABLE, details: "going away" });
      await until("the proxy to see the stream end", () => !proxy.synced());

      // A new stream (Envoy reconnecting) gets a new control plane stream, and starts unsynced.
      client.close();
      client = await connectAds({ address: `127.0.0.1:${proxy.port}`, node: { id: "reviews-1" }, protocol });
      client.subscribe(CDS, []);
      client.subscribe(LDS, []);
      await until("a second upstream stream", () => upstream.streams === 2);
      await request(10);
      expect(proxy.synced()).toBe(false);
      upstream.send(response(CDS, "2", "c2", []));
      upstream.send(response(LDS, "2", "l2", []));
      await until("the ACKs on the new stream", () => proxy.synced());
    });
  },
);
