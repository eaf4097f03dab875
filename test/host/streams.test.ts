// Stream behaviour: local replies, pause and continue, ticks, bodies, http calls, traps.
import { beforeAll, describe, expect, it } from "vitest";
import { type HostOptions, type HttpCallRequest, type PluginOptions, SharedData } from "../../host/index.ts";
import { header, messages, probeHost, probeModule, probeRequest } from "./probe.ts";

beforeAll(async () => {
  await probeModule();
}, 120_000);

async function start(options: PluginOptions = {}, hostOptions: Partial<HostOptions> = {}) {
  const host = await probeHost(hostOptions);
  const plugin = await host.createPlugin({ rootId: "probe", ...options });
  return { host, plugin };
}

const text = (bytes: Uint8Array | undefined) => new TextDecoder().decode(bytes);

describe("local replies", () => {
  it("ends the request and runs the plugin's response callbacks on the reply", async () => {
    const { host, plugin } = await start();
    const stream = plugin.newHttpStream();
    const result = stream.requestHeaders(probeRequest("local"), true);
    expect(result.action).toBe("pause");
    expect(header(result.headers, "x-r-local")).toBe("0");
    const reply = result.localResponse;
    expect(reply).toBeDefined();
    expect(reply?.status).toBe(403);
    expect(reply?.details).toBe("probe_denied"); // spaces become "_" as in Envoy
    expect(reply?.grpcStatus).toBeUndefined(); // -1: none
    expect(reply?.headers).toEqual([
      [":status", "403"],
      ["x-local", "seen"], // changed by on_response_headers
      ["content-type", "text/probe"], // given, so no text/plain
      ["x-probe-seen", "403|0"],
      ["x-r-reqpath", "0"], // the stopped request's headers are still there
    ]);
    expect(text(reply?.body)).toBe("nope [probe]"); // on_response_body ran on the reply body
    expect(host.metric("probe.responses")).toBe(1);
    // the upstream never answers this stream; nothing more reaches the module
    const before = host.logs.length;
    const late = stream.responseHeaders([[":status", "200"]], true);
    expect(late.localResponse).toBe(reply);
    expect(host.logs.length).toBe(before);
    expect(stream.paused).toBe(false);
  });

  it("reports the reply as the plugin's response callbacks leave it", async () => {
    const { plugin } = await start();
    const stream = plugin.newHttpStream();
    const reply = stream.requestHeaders(probeRequest("local-empty"), true).localResponse;
    expect(reply).toMatchObject({ status: 200, details: "empty_reply", grpcStatus: 3 });
    expect(reply?.headers).toContainEqual(["x-probe-seen", "204|1"]);
    expect(reply?.headers.some(([n]) => n === "content-length" || n === "content-type")).toBe(false);
    expect(reply?.body.byteLength).toBe(0);
  });

  it("keeps the first reply when the module sends two", async () => {
    const { plugin } = await start();
    const reply = plugin.newHttpStream().requestHeaders(probeRequest("local-twice"), true).localResponse;
    expect(reply).toMatchObject({ status: 401, details: "first" });
  });
});

describe("pause and continue", () => {
  it("pauses a request and resumes it from on_tick through the effective context", async () => {
    const { host, plugin } = await start();
    const stream = plugin.newHttpStream();
    expect(plugin.tick()).toBe(false); // no period yet
    const result = stream.requestHeaders(probeRequest("pause"), true);
    expect(result.action).toBe("pause");
    expect(stream.paused).toBe(true);
    // set from the HTTP context, it is the root's period
    expect(plugin.tickPeriodMs()).toBe(10);
    expect(host.nextTickDelayMs()).toBe(10);
    expect(host.advanceTime(10)).toBe(1);
    expect(stream.paused).toBe(true);
    expect(host.advanceTime(15)).toBe(1);
    expect(stream.paused).toBe(false);
    expect(stream.resumed).toBe(1);
    expect(stream.requestHeaderPairs).toContainEqual(["x-resumed", "tick2"]);
    expect(plugin.tickPeriodMs()).toBe(0);
    expect(host.nextTickDelayMs()).toBeUndefined();
    expect(messages(host).filter((m) => m.startsWith("tick"))).toEqual(["tick 1 root 1", "tick 2 root 1"]);
  });

  it("lets a runtime drive ticks itself: plugin.tick() and runDueTicks()", async () => {
    const { host, plugin } = await start();
    const stream = plugin.newHttpStream();
    stream.requestHeaders(probeRequest("pause"), true);
    expect(host.runDueTicks()).toBe(0); // not due yet
    expect(plugin.tick()).toBe(true);
    host.clock.advance?.(10);
    expect(host.runDueTicks()).toBe(1);
    expect(stream.paused).toBe(false);
  });

  it("holds body data while stopped at headers and replays it on continue", async () => {
    const { host, plugin } = await start();
    const stream = plugin.newHttpStream();
    stream.requestHeaders(probeRequest("pause"), false);
    const body = stream.requestBody("abc", true);
    expect(body).toMatchObject({ action: "pause" });
    expect(body.body.byteLength).toBe(0);
    host.advanceTime(20);
    expect(stream.paused).toBe(false);
    expect(text(stream.releasedBody("request"))).toBe("abc");
  });

  it("hands released body bytes to a streaming embedder once each (takeReleasedBody)", async () => {
    const { host, plugin } = await start();
    const stream = plugin.newHttpStream();
    stream.requestHeaders(probeRequest("pause"), false);
    stream.requestBody("ab", false);
    expect(stream.takeReleasedBody("request").byteLength).toBe(0);
    host.advanceTime(20); // the module continues from a tick: the held chunk goes on then
    expect(text(stream.takeReleasedBody("request"))).toBe("ab");
    expect(text(stream.requestBody("cd", true).body)).toBe("cd");
    expect(text(stream.takeReleasedBody("request"))).toBe("cd");
    // Taken bytes are forgotten: the stream holds no copy of what went on.
    expect(stream.takeReleasedBody("request").byteLength).toBe(0);
    expect(stream.releasedBody("request").byteLength).toBe(0);
  });

  it("replays held body and trailers in order on continue", async () => {
    const { host, plugin } = await start();
    const stream = plugin.newHttpStream();
    stream.requestHeaders(probeRequest("pause"), false);
    expect(stream.requestBody("a", false).action).toBe("pause");
    expect(stream.requestBody("b", false).action).toBe("pause");
    expect(stream.requestTrailers([["x-t", "1"]]).action).toBe("pause");
    expect(stream.requestTrailerPairs).toEqual([["x-t", "1"]]);
    host.advanceTime(20);
    expect(text(stream.releasedBody("request"))).toBe("ab");
    expect(stream.requestTrailerPairs).toEqual([
      ["x-t", "1"],
      ["x-trailer-seen", "1"],
    ]);
  });

  it("treats a continue inside the same callback as no pause at all", async () => {
    const { plugin } = await start();
    const stream = plugin.newHttpStream();
    expect(stream.requestHeaders(probeRequest("pause-continue-now"), true).action).toBe("continue");
    expect(stream.paused).toBe(false);
  });

  it("answers a paused request locally from on_tick", async () => {
    const { host, plugin } = await start();
    const stream = plugin.newHttpStream();
    stream.requestHeaders(probeRequest("pause-local"), true);
    host.advanceTime(10);
    expect(stream.paused).toBe(false);
    expect(stream.localResponse?.status).toBe(429);
    expect(stream.localResponse?.headers).toContainEqual(["x-probe-seen", "429|0"]);
    expect(text(stream.localResponse?.body)).toBe("later [probe]");
  });

  it("pauses and resumes a response", async () => {
    const { host, plugin } = await start();
    const stream = plugin.newHttpStream();
    stream.requestHeaders(probeRequest(""), true);
    const response = stream.responseHeaders(
      [
        [":status", "200"],
        ["x-probe-resp", "pause"],
      ],
      true,
    );
    expect(response.action).toBe("pause");
    expect(stream.responsePaused).toBe(true);
    host.advanceTime(10);
    expect(stream.responsePaused).toBe(false);
  });

  it("resets the stream on proxy_close_stream", async () => {
    const { plugin } = await start();
    const stream = plugin.newHttpStream();
    const result = stream.requestHeaders(probeRequest("close"), true);
    expect(result).toMatchObject({ action: "pause", reset: true });
    expect(stream.reset).toBe(true);
  });
});

describe("bodies and trailers", () => {
  it("buffers a request body and applies Envoy's three buffer edits", async () => {
    const { host, plugin } = await start();
    const stream = plugin.newHttpStream();
    expect(stream.requestHeaders(probeRequest("body,append"), false).action).toBe("continue");
    const first = stream.requestBody("hello ", false);
    expect(first.action).toBe("pause");
    expect(stream.paused).toBe(true);
    const second = stream.requestBody("world", true);
    expect(second.action).toBe("continue");
    expect(text(second.body)).toBe("<HELLO WORLD!");
    // replace, append, prepend Ok; an edit in the middle BadArgument
    expect(messages(host)).toContain("body edits 0002");

    const headers = stream.responseHeaders(
      [
        [":status", "200"],
        ["content-length", "6"],
      ],
      false,
    );
    expect(header(headers.headers, "content-length")).toBeUndefined();
    expect(stream.responseBody("abc", false)).toMatchObject({ action: "pause" });
    expect(text(stream.responseBody("def", true).body)).toBe("abcdef [probe]");
    expect(text(stream.releasedBody("response"))).toBe("abcdef [probe]");
  });

  it("lets on_request_trailers edit the trailers", async () => {
    const { plugin } = await start();
    const stream = plugin.newHttpStream();
    stream.requestHeaders(probeRequest(""), false);
    expect(stream.requestBody("x", false).action).toBe("continue");
    const trailers = stream.requestTrailers([["x-t", "1"]]);
    expect(trailers.trailers).toEqual([
      ["x-t", "1"],
      ["x-trailer-seen", "1"],
    ]);
  });
});

describe("http calls", () => {
  it("sends the call to the handler and delivers the response to the root context", async () => {
    const calls: HttpCallRequest[] = [];
    const { host, plugin } = await start(
      {},
      {
        httpCall: async (request) => {
          calls.push(request);
          return { headers: [[":status", "200"]], body: "ok" };
        },
      },
    );
    const stream = plugin.newHttpStream();
    const result = stream.requestHeaders(probeRequest("http"), true);
    expect(header(result.headers, "x-r-http-call")).toBe("0|1");
    expect(stream.paused).toBe(true);
    await host.settle();
    expect(calls).toEqual([
      {
        upstream: "auth-cluster",
        headers: [
          [":method", "GET"],
          [":path", "/auth"],
          [":authority", "auth"],
        ],
        body: new TextEncoder().encode("question"),
        trailers: [],
        timeoutMs: 500,
      },
    ]);
    expect(stream.paused).toBe(false);
    // token | header count | :status | body | trailer pairs | get_status code | message
    expect(header(stream.requestHeaderPairs, "x-r-http")).toBe("1|1|200|ok|0|0|");
  });

  it("reports a failed call as a reset through proxy_get_status", async () => {
    const { host, plugin } = await start(
      {},
      {
        httpCall: () => {
          throw new Error("connection refused");
        },
      },
    );
    const stream = plugin.newHttpStream();
    stream.requestHeaders(probeRequest("http"), true);
    await host.settle();
    expect(header(stream.requestHeaderPairs, "x-r-http")).toBe("1|0|||0|11|reset");
  });

  it("answers Unimplemented without a handler", async () => {
    const { plugin } = await start();
    const result = plugin.newHttpStream().requestHeaders(probeRequest("http"), true);
    expect(header(result.headers, "x-r-http-call")).toBe("12|0");
    expect(result.action).toBe("continue");
  });
});

describe("traps", () => {
  it("fails the stream with Envoy's 503 and reports the module's abort message", async () => {
    const { host, plugin } = await start();
    const stream = plugin.newHttpStream();
    const result = stream.requestHeaders(probeRequest("trap"), true);
    expect(result.action).toBe("pause");
    expect(result.localResponse).toEqual({
      status: 503,
      headers: [[":status", "503"]],
      body: new Uint8Array(0),
      details: "wasm_fail_stream",
      grpcStatus: 14,
    });
    expect(stream.failure).toMatchObject({
      callback: "proxy_on_request_headers",
      contextId: stream.contextId,
      message: "RuntimeError: unreachable",
    });
    expect(stream.failure?.moduleMessage).toMatch(/^probe abort: probe trap at /);
    expect(host.failure).toBe(stream.failure);
    expect(plugin.failure).toBe(host.failure);
    const report = host.logs.find((e) => e.source === "host" && e.levelName === "critical");
    expect(report?.message).toMatch(
      /wasm VM failed in proxy_on_request_headers\(2\): RuntimeError: unreachable/,
    );
    stream.complete(); // must not call the failed VM
  });

  it("fails every later stream of the VM closed, without calling the module", async () => {
    const sharedData = new SharedData();
    const { host, plugin } = await start({}, { sharedData });
    const other = await host.createPlugin({ rootId: "other" });
    plugin.newHttpStream().requestHeaders(probeRequest("trap"), true);
    const count = host.logs.length;
    for (const p of [plugin, other]) {
      const stream = p.newHttpStream();
      const result = stream.requestHeaders(probeRequest("args"), true);
      expect(result.localResponse?.status).toBe(503);
      expect(header(result.headers, "x-r-args")).toBeUndefined();
      expect(stream.failure).toBe(host.failure);
      stream.complete();
    }
    expect(host.logs.length).toBe(count);
    // another VM over the same store keeps serving
    const healthy = await start({}, { sharedData });
    const result = healthy.plugin.newHttpStream().requestHeaders(probeRequest("args"), true);
    expect(result.localResponse).toBeUndefined();
  });

  it("lets streams through a failed VM when the plugin fails open", async () => {
    const { host } = await start();
    const open = await host.createPlugin({ rootId: "open", failOpen: true });
    const closed = await host.createPlugin({ rootId: "closed" });
    closed.newHttpStream().requestHeaders(probeRequest("trap"), true);
    const stream = open.newHttpStream();
    const result = stream.requestHeaders(probeRequest("args"), true);
    expect(result).toMatchObject({ action: "continue" });
    expect(result.localResponse).toBeUndefined();
    expect(stream.responseHeaders([[":status", "200"]], true).action).toBe("continue");
  });

  it("fails a stream that traps in the response phase", async () => {
    const { plugin } = await start();
    const stream = plugin.newHttpStream();
    stream.requestHeaders(probeRequest(""), true);
    const result = stream.responseHeaders(
      [
        [":status", "200"],
        ["x-probe-resp", "trap"],
      ],
      true,
    );
    expect(result.localResponse?.details).toBe("wasm_fail_stream");
    expect(stream.failure?.callback).toBe("proxy_on_response_headers");
  });

  it("marks the VM failed when on_tick traps", async () => {
    const { host, plugin } = await start({ configuration: "tick-trap" });
    plugin.newHttpStream().requestHeaders(probeRequest("pause"), true);
    host.advanceTime(10);
    expect(host.failure?.callback).toBe("proxy_on_tick");
    expect(host.failure?.moduleMessage).toMatch(/tick trap/);
    expect(plugin.tick()).toBe(false);
  });
});
