// What the xDS server shares between the streams of a class (a response framed once, the same bytes
// written to every stream; delta streams' holdings), and its gRPC transport
// (control-plane/xds/transport.ts) at its edges, seen from grpc-js's client and from raw node:http2,
// on 127.0.0.1: statuses, and responses gzipped for a client that accepts it.

import * as http2 from "node:http2";
import { gunzipSync } from "node:zlib";
import * as grpc from "@grpc/grpc-js";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { ProxyConfig } from "../../control-plane/envoy/index.ts";
import { EXTENSION_TYPE, parseNodeIdentity, TYPE_URL } from "../../control-plane/envoy/index.ts";
import {
  DELTA_METHOD,
  decodeDiscoveryResponse,
  encodeDiscoveryRequest,
  frameMessage,
  SOTW_METHOD,
} from "../../control-plane/xds/codec.ts";
import { SnapshotCache, XdsServer } from "../../control-plane/xds/index.ts";
import { type AdsClient, connectAds } from "../support/xds-client.ts";

const ECDS = TYPE_URL.extensionConfig;
const FILTER = "wasmesh.test";
const OTHER = "wasmesh.other";

/** One class of proxy: filters whose values the tests change (and nothing else). */
let filters: Record<string, string>;
const config = (): ProxyConfig => ({
  [TYPE_URL.listener]: [],
  [TYPE_URL.route]: [],
  [TYPE_URL.cluster]: [],
  [TYPE_URL.endpoint]: [],
  [ECDS]: Object.entries(filters).map(([name, value]) => ({
    name,
    resource: { name, typed_config: { "@type": EXTENSION_TYPE.stringValue, value } },
  })),
});

/** The first request of a stream for the filter, as a proxy of service svc sends it. */
const firstRequest = (id: string) =>
  encodeDiscoveryRequest({
    versionInfo: "",
    node: { id, cluster: "svc", metadata: {} },
    resourceNames: [FILTER],
    typeUrl: ECDS,
    responseNonce: "",
  });

let server: XdsServer;
let address: string;
let clients: AdsClient[];

beforeEach(async () => {
  filters = { [FILTER]: "v1", [OTHER]: "o1" };
  clients = [];
  server = new XdsServer({
    cache: new SnapshotCache({ keyFor: () => "one", configFor: config }),
    parseNode: parseNodeIdentity,
  });
  address = `127.0.0.1:${await server.listen(0, "127.0.0.1")}`;
});

afterEach(async () => {
  for (const c of clients) c.close();
  await server.close();
});

async function proxy(id: string, protocol: "sotw" | "delta" = "sotw"): Promise<AdsClient> {
  const client = await connectAds({ address, node: { id, cluster: "svc" }, protocol });
  clients.push(client);
  return client;
}

/** A raw HTTP/2 stream to the server, and what comes back on it. */
async function rawCall(headers: http2.OutgoingHttpHeaders, body?: Uint8Array) {
  const session = http2.connect(`http://${address}`);
  try {
    const stream = session.request({ ":method": "POST", ...headers });
    stream.end(body);
    const result: { headers: http2.IncomingHttpHeaders; trailers: http2.IncomingHttpHeaders } = {
      headers: {},
      trailers: {},
    };
    stream.on("response", (h) => {
      result.headers = h;
    });
    stream.on("trailers", (t) => {
      result.trailers = t;
    });
    stream.resume();
    await new Promise((resolve) => stream.once("close", resolve));
    // The status comes in the trailers, or in the headers of a trailers-only response.
    const status = result.trailers["grpc-status"] ?? result.headers["grpc-status"];
    const message = result.trailers["grpc-message"] ?? result.headers["grpc-message"];
    return {
      ...result,
      status: status === undefined ? undefined : Number(status),
      message: decodeURI(String(message ?? "")),
    };
  } finally {
    session.close();
  }
}

/**
 * An ADS call that sends its first request and half-closes in one go (the server answers, then ends
 * the call): its headers, the bytes of its one response, its trailers.
 */
async function halfClosedCall(extra: http2.OutgoingHttpHeaders) {
  const session = http2.connect(`http://${address}`);
  try {
    const stream = session.request({
      ":method": "POST",
      ":path": SOTW_METHOD,
      "content-type": "application/grpc",
      ...extra,
    });
    const chunks: Buffer[] = [];
    let headers: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    stream.on("response", (h) => {
      headers = h;
    });
    stream.on("trailers", (t) => {
      trailers = t;
    });
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.end(frameMessage(firstRequest(`raw-${Math.random()}`)));
    await new Promise((resolve) => stream.once("close", resolve));
    return { headers, body: Buffer.concat(chunks), trailers };
  } finally {
    session.close();
  }
}

describe("xDS transport", () => {
  it("frames (and compresses) a push's response once for every proxy of a class, not once per stream", async () => {
    const proxies = await Promise.all(Array.from({ length: 20 }, (_, i) => proxy(`p-${i}`)));
    await Promise.all(proxies.map((p) => p.fetch(ECDS, [FILTER])));

    // Every buffer allocated to frame a response (grpc-js's server framed each message it sent in
    // one of its own: serializeMessage), counted by size while the push runs.
    const allocUnsafe = Buffer.allocUnsafe;
    const framings: number[] = [];
    const spy = vi.spyOn(Buffer, "allocUnsafe").mockImplementation((size: number) => {
      if (/\b(serializeMessage|frameMessage)\b/.test(new Error().stack ?? "")) framings.push(size);
      return allocUnsafe(size);
    });
    try {
      filters[FILTER] = "x".repeat(100_000);
      await server.update("2");
      await server.waitForAck("2");
    } finally {
      spy.mockRestore();
    }
    for (const p of proxies) expect(p.held(ECDS)[0]?.bytes.length).toBeGreaterThan(100_000);
    // grpc-js's client accepts gzip: the response framed once as encoded, and once compressed.
    const [compressed, identity] = framings.sort((a, b) => a - b);
    expect(framings).toHaveLength(2);
    expect(identity).toBeGreaterThan(100_000);
    expect(compressed).toBeLessThan(1_000);
  });

  it("gzips a large response for a client that accepts gzip, and nothing for one that does not (Envoy's)", async () => {
    // Repetitive, as the routing filter's JSON is.
    filters[FILTER] = JSON.stringify(
      Array.from({ length: 200 }, (_, i) => ({ name: `svc-${i}`, weight: 90, cluster: `outbound|svc-${i}` })),
    );
    const agent = await halfClosedCall({ "grpc-accept-encoding": "identity,deflate,gzip" });
    expect(agent.headers["grpc-encoding"]).toBe("gzip");
    expect(agent.body[0]).toBe(1);
    expect(agent.body.readUInt32BE(1)).toBe(agent.body.length - 5);
    const inflated = decodeDiscoveryResponse(gunzipSync(agent.body.subarray(5)));
    expect(inflated.resources).toHaveLength(1);

    const envoy = await halfClosedCall({});
    expect(envoy.headers["grpc-encoding"]).toBeUndefined();
    expect(envoy.body[0]).toBe(0);
    const plain = envoy.body.subarray(5);
    expect(decodeDiscoveryResponse(plain)).toEqual(inflated);
    console.log(`a ${plain.length}-byte response went as ${agent.body.length - 5} bytes gzipped`);
    expect(plain.length).toBeGreaterThan(10_000);
    expect(agent.body.length).toBeLessThan(plain.length / 5);

    // A short one goes as it is on a gzip call: the flag byte says so.
    filters[FILTER] = "v1";
    await server.update("2");
    const short = await halfClosedCall({ "grpc-accept-encoding": "gzip" });
    expect(short.headers["grpc-encoding"]).toBe("gzip");
    expect(short.body[0]).toBe(0);
    expect(decodeDiscoveryResponse(short.body.subarray(5)).resources).toHaveLength(1);
  });

  it("gives delta proxies of a class what each holds, after one of them subscribes to less", async () => {
    const [a, b] = [await proxy("a", "delta"), await proxy("b", "delta")];
    for (const p of [a, b])
      expect((await p.fetch(ECDS, [FILTER, OTHER])).map((r) => r.name).sort()).toEqual([OTHER, FILTER]);
    a.unsubscribe(ECDS, [OTHER]);
    // Once the server has read the unsubscription (its answer to a later request has come).
    await a.barrier(ECDS, FILTER);
    filters = { [FILTER]: "v2", [OTHER]: "o2" };
    await server.update("2");
    await server.waitForAck("2");
    const last = (p: AdsClient) =>
      p.responses
        .at(-1)
        ?.resources.map((r) => r.name)
        .sort();
    expect(last(a)).toEqual([FILTER]);
    expect(last(b)).toEqual([OTHER, FILTER]);

    // Subscribed again, a gets what it no longer holds; b, holding everything, is sent nothing more.
    const before = b.responses.length;
    a.drain(ECDS);
    a.subscribe(ECDS, [OTHER]);
    expect((await a.next(ECDS)).resources.map((r) => r.name)).toEqual([OTHER]);
    filters = { [FILTER]: "v3", [OTHER]: "o2" };
    await server.update("3");
    await server.waitForAck("3");
    expect(last(a)).toEqual([FILTER]);
    expect(b.responses.slice(before).map((r) => r.resources.map((x) => x.name))).toEqual([[FILTER]]);
  });

  it("answers a method it does not serve or a compression it does not offer with UNIMPLEMENTED, and a call that is not gRPC with HTTP 415", async () => {
    const client = new grpc.Client(address, grpc.credentials.createInsecure());
    try {
      const call = client.makeBidiStreamRequest(
        "/envoy.service.discovery.v3.AggregatedDiscoveryService/NoSuchMethod",
        (b: Buffer) => b,
        (b: Buffer) => b,
      );
      call.on("error", () => {});
      const status = await new Promise<grpc.StatusObject>((resolve) => call.on("status", resolve));
      expect(status.code).toBe(grpc.status.UNIMPLEMENTED);
      expect(status.details).toContain("NoSuchMethod");
    } finally {
      client.close();
    }

    const notGrpc = await rawCall({ ":path": SOTW_METHOD, "content-type": "application/json" });
    expect(notGrpc.headers[":status"]).toBe(415);
    const compressed = await rawCall({
      ":path": SOTW_METHOD,
      "content-type": "application/grpc",
      "grpc-encoding": "gzip",
    });
    expect(compressed.status).toBe(grpc.status.UNIMPLEMENTED);
    expect(compressed.message).toContain("gzip");
  });

  it("ends a call whose request is compressed without asking, too large or unreadable, naming why", async () => {
    const flagged = frameMessage(firstRequest("p-1"));
    flagged[0] = 1;
    const compressed = await rawCall({ ":path": SOTW_METHOD, "content-type": "application/grpc" }, flagged);
    expect(compressed.headers[":status"]).toBe(200);
    expect(compressed.status).toBe(grpc.status.INTERNAL);
    expect(compressed.message).toContain("compressed");

    // Only the prefix of a 5 MiB message: the call ends before the rest could be sent.
    const huge = Buffer.alloc(5);
    huge.writeUInt32BE(5 * 1024 * 1024, 1);
    const tooLarge = await rawCall({ ":path": DELTA_METHOD, "content-type": "application/grpc" }, huge);
    expect(tooLarge.status).toBe(grpc.status.RESOURCE_EXHAUSTED);

    const garbage = frameMessage(Buffer.from([0xff, 0xff, 0xff]));
    const unreadable = await rawCall({ ":path": SOTW_METHOD, "content-type": "application/grpc" }, garbage);
    expect(unreadable.status).toBe(grpc.status.INTERNAL);
    expect(unreadable.message).toMatch(/^Error deserializing request/);
    expect(server.status()).toEqual([]);
  });

  it("sends responses, then the status in trailers; a proxy that half-closes gets OK", async () => {
    const { headers, body, trailers } = await halfClosedCall({});
    expect(headers[":status"]).toBe(200);
    expect(headers["content-type"]).toBe("application/grpc+proto");
    expect(body.readUInt32BE(1)).toBe(body.length - 5);
    const response = decodeDiscoveryResponse(body.subarray(5));
    expect(response).toMatchObject({ typeUrl: ECDS, versionInfo: "0" });
    expect(response.resources).toHaveLength(1);
    expect(trailers["grpc-status"]).toBe(String(grpc.status.OK));
  });
});
