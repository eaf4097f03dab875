// The edge worker's body path in real workerd, with a module that acts on bodies: the SDK probe
// (test/fixtures/sdk-probe) in place of mesh.wasm in the same bundle, so the worker's script, the
// host and the glue are what ships. Small bodies of known length are read whole, larger ones and
// those of unknown length stream; both go through the module's body callbacks, both ways.
import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { probeBytes } from "../sdk/probe.ts";
import { startUpstream, type Upstream } from "../support/upstreams.ts";
import {
  type ConfigServer,
  type EdgeWorker,
  edgeConfig,
  startConfigServer,
  startEdgeWorker,
} from "./harness.ts";

let echo: Upstream;
/** Answers "small and chunked" in two writes 50 ms apart, without a Content-Length. */
let chunked: http.Server;
let control: ConfigServer;
let worker: EdgeWorker;

beforeAll(async () => {
  echo = await startUpstream({ name: "echo" });
  chunked = http.createServer((_req, res) => {
    res.writeHead(200, { "x-upstream": "chunked" });
    res.write("small ");
    setTimeout(() => res.end("and chunked"), 50);
  });
  await new Promise<void>((resolve) => chunked.listen(0, "127.0.0.1", resolve));
  control = await startConfigServer();
  // The probe ignores this configuration; the client names the cluster (x-wasmesh-cluster) itself.
  control.serve(
    edgeConfig(
      "bodies",
      { routes: [{ name: "all", destinations: [{ cluster: "echo" }] }] },
      {
        echo: [echo.url],
        chunked: [`http://127.0.0.1:${(chunked.address() as AddressInfo).port}`],
      },
    ),
  );
  worker = await startEdgeWorker({ vars: { CONFIG_URL: control.url }, module: await probeBytes() });
}, 60_000);

afterAll(async () => {
  await worker?.close();
  await echo?.close();
  await control?.close();
  chunked?.closeAllConnections();
  await new Promise((resolve) => chunked?.close(resolve));
});

/** One request to the worker, naming the cluster and the probe's operation. */
function send(options: { path?: string; cluster: string; op: string; body?: string; chunked?: boolean }) {
  return worker.send({
    method: options.body === undefined ? "GET" : "POST",
    path: options.path ?? "/bodies",
    headers: { "x-wasmesh-cluster": options.cluster, "x-op": options.op },
    ...(options.body !== undefined ? { body: options.body } : {}),
    ...(options.chunked ? { chunked: true } : {}),
  });
}

describe("request bodies through the module", () => {
  it("a small body of known length goes to the module whole; the origin gets what it made, with its length", async () => {
    echo.reset();
    const answer = await send({ cluster: "echo", op: "body-buffer", body: "abc" });
    expect(answer.status).toBe(200);
    expect(echo.requests.map((r) => r.body)).toEqual(["[abc]"]);
    expect(echo.requests[0]?.headers["content-length"]).toBe("5");
  });

  it("a body of unknown length streams through the module, which may hold it to the end", async () => {
    echo.reset();
    const payload = "z".repeat(64 * 1024);
    const answer = await send({ cluster: "echo", op: "body-buffer", body: payload, chunked: true });
    expect(answer.status).toBe(200);
    expect(echo.requests[0]?.body).toBe(`[${payload}]`);
    expect(echo.requests[0]?.headers["content-length"]).toBeUndefined();
  });

  it("a large body of known length streams chunk by chunk, and the module sees all of it", async () => {
    echo.reset();
    const payload = "y".repeat(256 * 1024);
    // "garbage": the module allocates in every body callback and leaves the chunk as it is.
    const answer = await send({ cluster: "echo", op: "garbage", body: payload });
    expect(answer.status).toBe(200);
    expect(echo.requests[0]?.body).toBe(payload);
    expect(echo.requests[0]?.headers["content-length"]).toBe(String(payload.length));
  });
});

describe("response bodies through the module", () => {
  it("a small response of known length goes to the module whole; the client gets what it made", async () => {
    const answer = await send({ cluster: "echo", op: "resp-body" });
    expect(answer.status).toBe(200);
    expect(answer.headers.get("x-upstream")).toBe("echo");
    expect(answer.body).toBe("resp:echo");
    expect(answer.headers.get("content-length")).toBe(String("resp:echo".length));
  });

  it("a response of unknown length streams through the module, which may hold it to the end", async () => {
    const answer = await send({ cluster: "chunked", op: "resp-body" });
    expect(answer.status).toBe(200);
    expect(answer.headers.get("x-upstream")).toBe("chunked");
    expect(answer.body).toBe("resp:small and chunked");
  });
});
