import { describe, expect, it } from "vitest";
import { ManualClock } from "../../host/index.ts";
import { MeshUnderTest } from "../support/mesh-host.ts";

const route = { name: "all", destinations: [{ cluster: "v1" }] };

describe("header rules", () => {
  it("sets, adds and removes request headers, and later rules see the changes", async () => {
    const mesh = await MeshUnderTest.start({
      headerRules: [
        {
          name: "rewrite",
          requestHeaders: {
            set: [{ name: "X-Env", value: "prod" }],
            add: [{ name: "x-tag", value: "b" }],
            remove: ["x-secret"],
          },
        },
        { name: "after", match: { headers: [{ name: "x-env", exact: "prod" }] }, deny: { status: 451 } },
      ],
      routes: [route],
    });
    const denied = mesh.request({ path: "/", headers: { "x-secret": "s", "x-tag": "a" } });
    expect(denied.status).toBe(451);
    expect(denied.responseHeaders.get("x-wasmesh-denied")).toBe("after");
  });

  it("changes request headers before the upstream and response headers before the client", async () => {
    const mesh = await MeshUnderTest.start({
      headerRules: [
        {
          name: "rewrite",
          requestHeaders: { set: [{ name: "x-env", value: "prod" }], remove: ["x-secret"] },
          responseHeaders: { set: [{ name: "x-mesh", value: "wasmesh" }], remove: ["x-upstream"] },
        },
      ],
      routes: [route],
    });
    const decision = mesh.request({ path: "/", headers: { "x-secret": "s", "x-env": "dev" } });
    expect(decision.upstreamHeaders?.get("x-env")).toBe("prod");
    expect(decision.upstreamHeaders?.has("x-secret")).toBe(false);
    expect(decision.responseHeaders.get("x-mesh")).toBe("wasmesh");
    expect(decision.responseHeaders.has("x-upstream")).toBe(false);
  });

  it("denies with the default status and a body naming the rule", async () => {
    const mesh = await MeshUnderTest.start({
      headerRules: [
        { name: "no-bots", match: { headers: [{ name: "user-agent", regex: ".*[Bb]ot.*" }] }, deny: {} },
      ],
      routes: [route],
    });
    const denied = mesh.request({ path: "/", headers: { "user-agent": "FriendlyBot/1.0" } });
    expect(denied).toMatchObject({ status: 403, cluster: null });
    expect(denied.body).toContain("no-bots");
    expect(mesh.request({ path: "/", headers: { "user-agent": "curl/8" } }).status).toBe(200);
    expect(mesh.metric("wasmesh.rule.no-bots.denied")).toBe(1);
  });

  it("matches methods, authority, header presence and absence, and query parameters", async () => {
    const mesh = await MeshUnderTest.start({
      headerRules: [
        {
          name: "narrow",
          match: {
            methods: ["post", "PUT"],
            authority: { suffix: ".internal" },
            headers: [
              { name: "x-token", present: true },
              { name: "x-debug", absent: true },
            ],
            query: [{ name: "dry", exact: "1" }],
          },
          deny: { status: 409 },
        },
      ],
      routes: [route],
    });
    const base = { method: "POST", path: "/x?dry=1", authority: "db.internal", headers: { "x-token": "t" } };
    expect(mesh.request(base).status).toBe(409);
    expect(mesh.request({ ...base, method: "GET" }).status).toBe(200);
    expect(mesh.request({ ...base, authority: "db.public" }).status).toBe(200);
    expect(mesh.request({ ...base, headers: {} }).status).toBe(200);
    expect(mesh.request({ ...base, headers: { "x-token": "t", "x-debug": "1" } }).status).toBe(200);
    expect(mesh.request({ ...base, path: "/x?dry=0" }).status).toBe(200);
    expect(mesh.request({ ...base, path: "/x" }).status).toBe(200);
  });

  it("supports exact, prefix, suffix, contains and regex on the path, and ignoreCase", async () => {
    const deny = (name: string, path: object) => ({ name, match: { path }, deny: {} });
    const mesh = await MeshUnderTest.start({
      headerRules: [
        deny("exact", { exact: "/exact" }),
        deny("prefix", { prefix: "/pre/" }),
        deny("suffix", { suffix: ".php" }),
        deny("contains", { contains: "/../" }),
        deny("regex", { regex: "/v[0-9]+/(users|groups)/\\d+" }),
        deny("nocase", { exact: "/shout", ignoreCase: true }),
      ],
      routes: [route],
    });
    const who = (path: string) => mesh.request({ path }).responseHeaders.get("x-wasmesh-denied") ?? "allowed";
    expect(who("/exact")).toBe("exact");
    expect(who("/exact/more")).toBe("allowed");
    expect(who("/pre/x")).toBe("prefix");
    expect(who("/index.php?x=1")).toBe("suffix");
    expect(who("/a/../b")).toBe("contains");
    expect(who("/v2/users/17")).toBe("regex");
    expect(who("/v2/users/17x")).toBe("allowed");
    expect(who("/SHOUT")).toBe("nocase");
  });

  it("injects an abort for the configured share of requests", async () => {
    const mesh = await MeshUnderTest.start({
      headerRules: [{ name: "chaos", fault: { abort: { status: 503, percent: 25 } } }],
      routes: [route],
    });
    const statuses = Array.from({ length: 2000 }, () => mesh.request({ path: "/" }).status);
    const aborted = statuses.filter((s) => s === 503).length;
    expect(aborted).toBeGreaterThan(400);
    expect(aborted).toBeLessThan(600);
    expect(mesh.metric("wasmesh.rule.chaos.aborted")).toBe(aborted);
  });

  it("delays a request, resuming it on a later tick", async () => {
    const clock = new ManualClock();
    const mesh = await MeshUnderTest.start(
      { headerRules: [{ name: "slow", fault: { delay: { ms: 200 } } }], routes: [route] },
      { clock },
    );
    const plugin = mesh.pick();
    const stream = plugin.newHttpStream();
    const result = stream.requestHeaders(
      [
        [":method", "GET"],
        [":path", "/"],
        [":authority", "a"],
      ],
      true,
    );
    expect(result.action).toBe("pause");
    expect(plugin.tickPeriodMs()).toBeGreaterThan(0);
    clock.advance(100);
    plugin.tick();
    expect(stream.paused).toBe(true);
    clock.advance(101);
    plugin.tick();
    expect(stream.paused).toBe(false);
    expect(plugin.tickPeriodMs()).toBe(0);
    stream.complete();
    expect(mesh.metric("wasmesh.rule.slow.delayed")).toBe(1);
  });
});

describe("malformed and hostile requests", () => {
  const config = {
    headerRules: [{ name: "deny-admin", match: { path: { prefix: "/admin" } }, deny: {} }],
    routes: [
      {
        name: "regex",
        match: { headers: [{ name: "x-big", regex: "(a|aa)*b" }] },
        destinations: [{ cluster: "v2" }],
      },
      route,
    ],
  };

  it("routes a request without :path by its other attributes", async () => {
    const mesh = await MeshUnderTest.start(config);
    expect(mesh.request({})).toMatchObject({ status: 200, cluster: "v1" });
  });

  it("handles a 64 KiB header value against a regex in linear time", async () => {
    const mesh = await MeshUnderTest.start(config);
    expect(mesh.request({ path: "/", headers: { "x-big": "a".repeat(65_536) } }).cluster).toBe("v1");
    expect(mesh.request({ path: "/", headers: { "x-big": `${"a".repeat(65_536)}b` } }).cluster).toBe("v2");
  });

  it("handles a thousand headers, odd bytes and empty values", async () => {
    const mesh = await MeshUnderTest.start(config);
    const headers: Record<string, string> = {};
    for (let i = 0; i < 1000; i++) headers[`x-h${i}`] = i % 2 ? "" : "\u00ff\u00fe\u0080 \t!";
    expect(mesh.request({ path: "/admin", headers }).status).toBe(403);
    expect(mesh.request({ path: "/ok", headers }).cluster).toBe("v1");
  });

  it("keeps serving after many requests (memory is reclaimed between streams)", async () => {
    const mesh = await MeshUnderTest.start(config);
    const before = mesh.memoryBytes();
    for (let i = 0; i < 5000; i++)
      mesh.request({ path: `/item/${i}`, headers: { "x-big": "a".repeat(512) } });
    expect(mesh.request({ path: "/" }).cluster).toBe("v1");
    expect(mesh.memoryBytes()).toBeLessThan(before + 4 * 1024 * 1024);
  });
});
