// Issue 14 §1's proof: the web console at /gui in a real headless Chromium (Debian's chromium at
// /usr/bin/chromium, scripts/install-chromium.sh, driven by playwright-core: no browser download),
// against `wasmesh server` with the demo mesh (deploy/demo/mesh.yaml: reviews split 90/10), signed
// in with a read-only token made by `wasmesh token create`. The page shows what the API holds:
// 90 and 10, then 50 and 50 after a PUT without a reload, an open circuit as open, a proxy's NACK
// with Envoy's text, an edge worker's poll with the text of its rejection. Each page's screenshot is kept under test-artifacts/gui/.
import { mkdirSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApi } from "../../control-plane/api/index.ts";
import { TYPE_URL } from "../../control-plane/envoy/index.ts";
import { pluginFilterName, ROUTING_FILTER } from "../../control-plane/resources/names.ts";
import { openSqliteStore } from "../../control-plane/store/index.ts";
import { DEMO_MESH_FILE } from "../../scripts/demo-mesh.ts";
import {
  apiFetch,
  type ControlPlaneProcess,
  startControlPlaneProcess,
  waitForStatus,
  wasmesh,
} from "../support/control-plane.ts";
import { REPO_ROOT } from "../support/envoy.ts";
import { tagModule } from "../support/tag-module.ts";
import { tempDir } from "../support/temp.ts";
import { type AdsClient, connectAds } from "../support/xds-client.ts";

const CHROMIUM = process.env.CHROMIUM_BIN ?? "/usr/bin/chromium";
const ARTIFACTS = join(REPO_ROOT, "test-artifacts", "gui");
const CONSOLE_DIR = join(REPO_ROOT, "build", "gui");

/** What Envoy says of a cluster it refuses (its error_detail), as the fake proxy NACKs with. */
const ENVOY_REJECTION =
  "Error adding/updating cluster(s) outbound|reviews|version=v1: LOGICAL_DNS clusters must have a single " +
  "locality_lb_endpoint and a single lb_endpoint";

const workload = (name: string, service: string, port: number, labels: Record<string, string>) =>
  JSON.stringify({
    apiVersion: "wasmesh.io/v1alpha1",
    kind: "Workload",
    metadata: { name },
    spec: { service, address: "127.0.0.1", port, labels },
  });

const canary = (v1: number, v2: number) => ({
  apiVersion: "wasmesh.io/v1alpha1",
  kind: "Route",
  metadata: { name: "reviews" },
  spec: {
    service: "reviews",
    rules: [
      {
        name: "canary",
        destinations: [
          { service: "reviews", subset: { version: "v1" }, weight: v1 },
          { service: "reviews", subset: { version: "v2" }, weight: v2 },
        ],
      },
    ],
  },
});

/** Waits until the element `selector` reads `expected` (trimmed), and returns what it reads. */
async function textOf(page: Page, selector: string, expected: string | RegExp): Promise<string> {
  const pattern =
    typeof expected === "string" ? `^${expected.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$` : expected.source;
  try {
    await page.waitForFunction(
      ([sel, source]) =>
        new RegExp(source as string).test(document.querySelector(sel as string)?.textContent?.trim() ?? ""),
      [selector, pattern],
      { timeout: 15_000 },
    );
  } catch {
    const actual = await page
      .locator(selector)
      .first()
      .textContent({ timeout: 1000 })
      .catch(() => null);
    throw new Error(`${selector}: expected ${String(expected)}, the page shows ${JSON.stringify(actual)}`);
  }
  return ((await page.locator(selector).first().textContent()) ?? "").trim();
}

const shot = (page: Page, name: string) =>
  page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });

describe("the web console at /gui", () => {
  let plane: ControlPlaneProcess;
  let browser: Browser;
  let page: Page;
  let readOnly: string;
  const clients: AdsClient[] = [];
  /** Every URL the page requested: nothing but the control plane's own. */
  const requested: string[] = [];

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    plane = await startControlPlaneProcess();
    const mesh = [
      readFileSync(DEMO_MESH_FILE, "utf8"),
      workload("reviews-v1-1", "reviews", 9081, { version: "v1" }),
      workload("reviews-v2-1", "reviews", 9082, { version: "v2" }),
      workload("ratings-1", "ratings", 9083, {}),
      workload("productpage-1", "productpage", 9084, {}),
    ].join("\n---\n");
    const applied = await apiFetch(`${plane.api}/v1/apply`, {
      method: "POST",
      headers: { "content-type": "application/yaml" },
      body: mesh,
    });
    expect(applied.status, await applied.clone().text()).toBe(200);
    const created = await wasmesh(["token", "create", "--role", "read-only", "--name", "console"], {
      api: plane.api,
    });
    expect(created.code, created.stderr).toBe(0);
    readOnly = created.stdout.trim();
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
      ],
    });
    page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    page.on("request", (request) => requested.push(request.url()));
  });

  afterAll(async () => {
    for (const client of clients) client.close();
    await browser?.close();
    await plane?.stop();
  });

  it("serves its files without a token, with content types and cache headers; its data needs one", async () => {
    const index = await fetch(`${plane.api}/gui/`);
    expect(index.status).toBe(200);
    expect(index.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect(index.headers.get("cache-control")).toBe("no-cache");
    expect(index.headers.get("content-security-policy")).toContain("default-src 'self'");
    const html = await index.text();
    expect((await fetch(`${plane.api}/gui`)).status).toBe(200);
    const head = await fetch(`${plane.api}/gui/`, { method: "HEAD" });
    expect([head.status, head.headers.get("content-type"), await head.text()]).toEqual([
      200,
      "text/html; charset=utf-8",
      "",
    ]);
    const script = /src="(\/gui\/assets\/[^"]+\.js)"/.exec(html)?.[1];
    expect(script, html).toBeDefined();
    const asset = await fetch(`${plane.api}${script}`);
    expect(asset.status).toBe(200);
    expect(asset.headers.get("content-type")).toBe("text/javascript; charset=utf-8");
    expect(asset.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");
    const etag = asset.headers.get("etag") ?? "";
    expect((await fetch(`${plane.api}${script}`, { headers: { "if-none-match": etag } })).status).toBe(304);
    // No external asset: no URL in the page or its bundle names another origin.
    expect(html).not.toMatch(/(?:src|href)="(?:https?:)?\/\//);
    expect((await fetch(`${plane.api}/gui/assets/missing.js`)).status).toBe(404);
    expect((await fetch(`${plane.api}/gui/assets/%2e%2e%2f%2e%2e%2fpackage.json`)).status).toBe(404);
    expect((await fetch(`${plane.api}/v1/services`)).status).toBe(401);
  });

  it("answers 503 with what to run when the console is not built", async () => {
    const store = await openSqliteStore({ dataDir: tempDir("gui-store") });
    try {
      const app = createApi({ store, auth: "none", consoleDir: tempDir("gui-empty"), log: () => {} });
      const response = await app.request("/gui/");
      expect(response.status).toBe(503);
      const body = (await response.json()) as { error: { code: string; message: string } };
      expect(body.error.code).toBe("unavailable");
      expect(body.error.message).toContain("npm run build:gui");
    } finally {
      await store.close();
    }
  });

  it("asks for a token, then shows the mesh as a graph of its services", async () => {
    await page.goto(`${plane.api}/gui/`);
    // The API answered 401: the login form. A token it refuses is said so, with the API's reason.
    await page.locator("form.login input[name=token]").fill("wsm_not-a-token");
    await page.locator("form.login button[type=submit]").click();
    expect(await textOf(page, "form.login .error", /refused/)).toContain("the bearer token was refused");
    await page.locator("form.login input[name=token]").fill(readOnly);
    await page.locator("form.login button[type=submit]").click();
    for (const service of ["productpage", "reviews", "ratings"])
      await page.locator(`svg.graph [data-node="${service}"]`).waitFor();
    expect(await textOf(page, "main h1", "Mesh")).toBe("Mesh");
    // The token is the session's, not the origin's forever.
    expect(await page.evaluate(() => sessionStorage.getItem("wasmesh.token"))).toBe(readOnly);
    await shot(page, "mesh");
  });

  it("shows no traffic, and no error, while GET /v1/traffic answers 404", async () => {
    await page.route("**/v1/traffic", (route) =>
      route.fulfill({
        status: 404,
        contentType: "application/json",
        body: JSON.stringify({ error: { code: "not_found", message: "no route", details: [] } }),
      }),
    );
    try {
      await page.goto(`${plane.api}/gui/#/`);
      await page.reload();
      expect(await textOf(page, "header .status", /^live/)).toMatch(/^live · /);
      await page.locator('svg.graph [data-node="reviews"]').waitFor();
      expect(await page.locator("main").textContent()).not.toContain("traffic over");
      expect(await page.locator(".error").count()).toBe(0);
    } finally {
      await page.unroute("**/v1/traffic");
    }
  });

  it("shows the service's 90/10 split as 90 and 10, then a changed route's 50 and 50 without a reload", async () => {
    await page.goto(`${plane.api}/gui/#/services/reviews`);
    const weight = (subset: string) =>
      `[data-route="reviews"] [data-rule="canary"] [data-subset="${subset}"] .weight`;
    expect(await textOf(page, weight("version=v1"), "90%")).toBe("90%");
    expect(await textOf(page, weight("version=v2"), "10%")).toBe("10%");
    // The testers rule sends everything to v2.
    expect(
      await textOf(
        page,
        '[data-route="reviews"] [data-rule="testers"] [data-subset="version=v2"] .weight',
        "100%",
      ),
    ).toBe("100%");
    for (const name of ["reviews-v1-1", "reviews-v2-1"])
      await page.locator(`[data-workload="${name}"]`).waitFor();
    await shot(page, "service-reviews-90-10");

    // A mark on this document: still there after the change means no reload happened.
    await page.evaluate(() => {
      (window as unknown as { mark: string }).mark = "before";
    });
    const put = await plane.request("PUT", "/v1/routes/reviews", canary(50, 50));
    expect(put.status, JSON.stringify(put.body)).toBe(200);
    expect(await textOf(page, weight("version=v1"), "50%")).toBe("50%");
    expect(await textOf(page, weight("version=v2"), "50%")).toBe("50%");
    expect(await page.evaluate(() => (window as unknown as { mark?: string }).mark)).toBe("before");
    await shot(page, "service-reviews-50-50");
  });

  it("shows an open circuit as open", async () => {
    // GET /v1/traffic, fed by a sidecar's report through the API (as an agent sends it).
    const report = await plane.request("PUT", "/v1/proxies/productpage-1/stats", {
      service: "productpage",
      at: new Date().toISOString(),
      clusters: { "outbound|reviews|version=v1": { requests: 100, errors5xx: 1 } },
      circuits: { "outbound|reviews|version=v2": { open: true, rejected: 4 } },
      denials: {},
    });
    expect(report.status, JSON.stringify(report.body)).toBe(204);
    await page.goto(`${plane.api}/gui/#/services/reviews`);
    const state = '[data-breaker="reviews-v2"] .state';
    expect(await textOf(page, state, /^open/)).toBe("open at productpage-1");
    await shot(page, "service-reviews-circuit-open");
    await page.goto(`${plane.api}/gui/#/`);
    await page.locator('svg.graph [data-edge="productpage->reviews"]').waitFor();
    await shot(page, "mesh-traffic");
  });

  it("shows each proxy's acknowledged revision, and a NACK with Envoy's text", async () => {
    const address = plane.xds;
    const good = await connectAds({ address, node: { id: "reviews-v1-1", cluster: "reviews" } });
    clients.push(good);
    await good.fetch(TYPE_URL.cluster);
    const bad = await connectAds({
      address,
      node: { id: "productpage-1", cluster: "productpage" },
      reject: (response) => (response.typeUrl === TYPE_URL.cluster ? ENVOY_REJECTION : undefined),
    });
    clients.push(bad);
    await bad.fetch(TYPE_URL.cluster);
    const [status] = (
      await waitForStatus(plane.api, (proxies) =>
        proxies.some((p) => p.nodeId === "productpage-1" && p.nacks > 0),
      )
    ).filter((p) => p.nodeId === "productpage-1");

    await page.goto(`${plane.api}/gui/#/proxies`);
    const rejection = await textOf(page, '[data-proxy="productpage-1"] .rejection pre', ENVOY_REJECTION);
    expect(rejection).toBe(ENVOY_REJECTION);
    expect(await textOf(page, '[data-proxy="productpage-1"] .rejection', /Cluster version/)).toContain(
      `Cluster version ${status?.lastRejection?.version}`,
    );
    const synced = (
      await waitForStatus(plane.api, (ps) => ps.some((p) => p.nodeId === "reviews-v1-1" && p.syncedVersion))
    ).find((p) => p.nodeId === "reviews-v1-1")?.syncedVersion;
    expect(await textOf(page, '[data-proxy="reviews-v1-1"] .revision .synced', `revision ${synced}`)).toBe(
      `revision ${synced}`,
    );
    expect(await textOf(page, '[data-proxy="reviews-v1-1"] .rejection', "none")).toBe("none");
    // A Workload whose sidecar has no stream now.
    expect(await textOf(page, '[data-proxy="ratings-1"] .warn', "not connected")).toBe("not connected");
    await shot(page, "proxies");
  });

  it("lists an edge worker that polls: behind, the version it serves and the text of its rejection", async () => {
    // What an edge worker sends (workers/src/config-source.ts), with the read-only token it polls with:
    // once while it serves an old version, then with why it refused the current one.
    const url = `${plane.api}/v1/edge/config`;
    const headers = { authorization: `Bearer ${readOnly}`, "wasmesh-edge-name": "edge-eu" };
    const first = await fetch(url, { headers: { ...headers, "if-none-match": '"old"' } });
    expect(first.status).toBe(200);
    const etag = first.headers.get("etag") as string;
    await first.body?.cancel();
    const refusal = `the module refused configuration ${etag.slice(1, -1)}: route "canary": no such cluster`;
    const second = await fetch(url, {
      headers: { ...headers, "if-none-match": etag, "wasmesh-edge-rejected": refusal },
    });
    expect(second.status).toBe(304);

    await page.goto(`${plane.api}/gui/#/proxies`);
    const row = '[data-edge-worker="edge-eu"]';
    expect(await textOf(page, `${row} .rejection pre`, refusal)).toBe(refusal);
    expect(await textOf(page, `${row} .state`, "behind")).toBe("behind");
    expect(await textOf(page, `${row} .serving .version`, "old")).toBe("old");
    await shot(page, "proxies-edge");
  });

  it("shows each module's versions by digest and the plugins that use it", async () => {
    const wasm = await tagModule(1);
    const pushed = await apiFetch(`${plane.api}/v1/modules/tagger`, {
      method: "POST",
      headers: { "content-type": "application/wasm" },
      body: wasm,
    });
    expect(pushed.status, await pushed.clone().text()).toBe(201);
    const { spec } = (await pushed.json()) as { spec: { sha256: string } };
    const plugin = await plane.request("PUT", "/v1/wasmplugins/tagger", {
      apiVersion: "wasmesh.io/v1alpha1",
      kind: "WasmPlugin",
      metadata: { name: "tagger" },
      spec: { module: "tagger", services: ["reviews"], direction: "outbound", configuration: { tag: "a" } },
    });
    expect(plugin.status, JSON.stringify(plugin.body)).toBe(201);
    // A proxy of reviews that subscribes to its Wasm filters, as Envoy does (ECDS).
    const reviews = await connectAds({
      address: plane.xds,
      node: { id: "reviews-v2-1", cluster: "reviews" },
    });
    clients.push(reviews);
    await reviews.fetch(TYPE_URL.extensionConfig, [ROUTING_FILTER, pluginFilterName("outbound", "tagger")]);

    await page.goto(`${plane.api}/gui/#/modules`);
    const card = '[data-module="tagger"]';
    expect(await textOf(page, `${card} [data-digest="${spec.sha256}"] .proxies`, "reviews-v2-1")).toBe(
      "reviews-v2-1",
    );
    // The built-in module, which every proxy runs (its routing filter).
    await page.locator('[data-module="mesh"]').waitFor();
    expect(await textOf(page, `${card} [data-digest="${spec.sha256}"] code`, spec.sha256.slice(0, 12))).toBe(
      spec.sha256.slice(0, 12),
    );
    expect(await textOf(page, `${card} [data-plugin="tagger"]`, /tagger/)).toBe(
      "tagger (outbound on reviews)",
    );
    await shot(page, "modules");
    // The proxy's own row names the module versions it runs.
    await page.goto(`${plane.api}/gui/#/proxies`);
    expect(await textOf(page, '[data-proxy="reviews-v2-1"] .modules', /tagger/)).toContain(
      `tagger ${spec.sha256.slice(0, 12)}`,
    );
    await shot(page, "proxies-modules");
  });

  it("loaded nothing from anywhere but the control plane, in a bundle that stays small", () => {
    const origin = new URL(plane.api).origin;
    const foreign = requested.filter((url) => !url.startsWith(`${origin}/`) && !url.startsWith("data:"));
    expect(foreign).toEqual([]);
    const assets = join(CONSOLE_DIR, "assets");
    const gzipped = readdirSync(assets).reduce(
      (sum, file) => sum + gzipSync(readFileSync(join(assets, file))).length,
      0,
    );
    console.log(`gui: build/gui/assets gzipped: ${(gzipped / 1024).toFixed(1)} KiB`);
    expect(gzipped).toBeLessThan(40 * 1024);
  });
});
