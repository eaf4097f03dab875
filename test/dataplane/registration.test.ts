// The agent's Workload registration (dataplane/registration.ts) against the real control plane
// (startControlPlane on a SQLite file, with its lease sweeper): register, renew past a whole lease,
// register again when the Workload was deleted behind its back, retry with back-off while the
// control plane is away and never give up, and deregister. The agent as a whole, with Envoy:
// test/envoy/dataplane.test.ts.
import { renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { runOptions } from "../../control-plane/cli/commands/dataplane.ts";
import { createTokens } from "../../control-plane/security/tokens.ts";
import { type ControlPlane, startControlPlane } from "../../control-plane/server.ts";
import { openSqliteStore } from "../../control-plane/store/index.ts";
import type { Token } from "../../dataplane/http.ts";
import { Registration, type WorkloadSpec } from "../../dataplane/registration.ts";
import { apiFetch, apiOf } from "../support/control-plane.ts";
import { freePort } from "../support/envoy.ts";
import { tempDir } from "../support/temp.ts";
import { until } from "../support/wait.ts";

let plane: ControlPlane;
let api: string;
/** The agents' token: a dataplane token of service reviews, as `wasmesh token dataplane` issues. */
let agentToken: string;
const registrations: Registration[] = [];

/** A call with the control plane's admin token. */
async function call(base: string, method: string, path: string, body?: unknown) {
  const response = await apiFetch(`${base}${path}`, {
    method,
    ...(body !== undefined
      ? { body: JSON.stringify(body), headers: { "content-type": "application/json" } }
      : {}),
  });
  const text = await response.text();
  return { status: response.status, body: text ? (JSON.parse(text) as { spec?: unknown }) : undefined };
}

async function putService(base: string, name: string) {
  const put = await call(base, "PUT", `/v1/services/${name}`, {
    apiVersion: "wasmesh.io/v1alpha1",
    kind: "Service",
    metadata: { name },
    spec: { ports: [{ name: "http", port: 9080, protocol: "http" }] },
  });
  expect([200, 201]).toContain(put.status);
}

function spec(name: string, leaseSeconds = 6): WorkloadSpec {
  return {
    name,
    service: "reviews",
    address: "10.0.0.7",
    port: 15006,
    appPort: 9080,
    labels: { version: "v2" },
    zone: undefined,
    leaseSeconds,
  };
}

function register(
  base: string,
  workload: WorkloadSpec,
  lines: string[] = [],
  token: Token = agentToken,
): Registration {
  const registration = new Registration({
    api: base,
    token,
    workload,
    log: (line) => lines.push(line),
    retry: { minMs: 100, maxMs: 400 },
  });
  registrations.push(registration);
  registration.start();
  return registration;
}

beforeAll(async () => {
  plane = await startControlPlane({
    dataDir: tempDir("registration"),
    httpPort: 0,
    xdsPort: 0,
    log: () => {},
  });
  api = apiOf(plane).api;
  ({ secret: agentToken } = await plane.tokens.issue({ role: "dataplane", service: "reviews" }));
  await putService(api, "reviews");
});

afterEach(async () => {
  await Promise.all(registrations.splice(0).map((r) => r.deregister()));
});

afterAll(async () => {
  await plane?.close();
});

describe("Registration", () => {
  it("registers the Workload and keeps it past its lease by renewing it", async () => {
    const lines: string[] = [];
    const registration = register(api, spec("reviews-renewed"), lines);
    await registration.registeredOnce();
    const { status, body } = await call(api, "GET", "/v1/workloads/reviews-renewed");
    expect(status).toBe(200);
    expect(body?.spec).toEqual({
      service: "reviews",
      address: "10.0.0.7",
      port: 15006,
      appPort: 9080,
      labels: { version: "v2" },
      leaseSeconds: 6,
    });
    // Renewed every 2 s: after 4 renewals, more than a whole lease has passed since registering.
    await until("4 renewals", () => registration.renewals >= 4, 20_000, 50);
    expect((await call(api, "GET", "/v1/workloads/reviews-renewed")).status).toBe(200);
    expect(lines).toEqual([
      "registered workload/reviews-renewed (service reviews, 10.0.0.7:15006, app port 9080, lease 6 s)",
    ]);
  });

  it("writes it again when asked (Envoy restarted), but never before start() nor after deregister()", async () => {
    const lines: string[] = [];
    const registration = new Registration({
      api,
      token: agentToken,
      workload: spec("reviews-asked"),
      log: (l) => lines.push(l),
    });
    registrations.push(registration);
    // Envoy restarted before the sidecar was first ready: the first registration is still to come.
    expect(registration.reregister()).toBe(false);
    registration.start();
    await registration.registeredOnce();
    expect((await call(api, "DELETE", "/v1/workloads/reviews-asked")).status).toBe(200);
    expect(registration.reregister()).toBe(true);
    await until(
      "the Workload written again",
      async () => (await call(api, "GET", "/v1/workloads/reviews-asked")).status === 200,
      10_000,
      20,
    );
    expect(lines.filter((line) => line.startsWith("registered workload/reviews-asked"))).toHaveLength(2);
    await registration.deregister();
    expect(registration.reregister()).toBe(false);
  });

  it("reads --token-file again for each call: a token rotated in the file is the one sent", async () => {
    // As the kubelet rotates a pod's projected service-account token: the file is replaced in place
    // with a new token, and the old one stops being accepted.
    const file = join(tempDir("registration-token"), "token");
    const old = await plane.tokens.issue({ role: "dataplane", service: "reviews" });
    writeFileSync(file, `${old.secret}\n`);
    // The token as `wasmesh dataplane run --token-file` gives it to the agent.
    const options = await runOptions(
      [
        "--name",
        "reviews-rotated",
        "--service",
        "reviews",
        "--app-port",
        "9080",
        "--token-file",
        file,
        "--cp",
        api,
      ],
      () => {},
    );
    if (options === undefined) throw new Error("no options");
    const lines: string[] = [];
    const registration = register(api, spec("reviews-rotated", 6), lines, options.token);
    await registration.registeredOnce();
    const fresh = await plane.tokens.issue({ role: "dataplane", service: "reviews" });
    writeFileSync(`${file}.new`, `${fresh.secret}\n`);
    renameSync(`${file}.new`, file);
    await plane.tokens.revoke(old.token.id);
    const renewed = registration.renewals;
    await until("two renewals after the rotation", () => registration.renewals >= renewed + 2, 20_000, 50);
    expect(lines.filter((line) => /failed|401/.test(line))).toEqual([]);
  });

  it("registers the Workload again when it was deleted behind its back", async () => {
    const lines: string[] = [];
    const registration = register(api, spec("reviews-deleted"), lines);
    await registration.registeredOnce();
    expect((await call(api, "DELETE", "/v1/workloads/reviews-deleted")).status).toBe(200);
    // The next renewal finds no Workload (404), and the agent writes it again.
    await until(
      () => `the Workload back; the agent said: ${lines.join("\n")}`,
      async () => (await call(api, "GET", "/v1/workloads/reviews-deleted")).status === 200,
      10_000,
      50,
    );
    expect(
      lines.some((line) =>
        /^renewing the lease of workload\/reviews-deleted: HTTP 404: .*; registering it again$/.test(line),
      ),
    ).toBe(true);
  });

  it("retries with back-off while the control plane is away, and registers once it is there", async () => {
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    // The control plane to come, with the agent's token already in its store.
    const lateDir = tempDir("registration-late");
    const store = await openSqliteStore({ dataDir: lateDir });
    const { secret } = await createTokens(store).issue({ role: "dataplane", service: "reviews" });
    await store.close();
    const lines: string[] = [];
    const registration = register(base, spec("reviews-late"), lines, secret);
    await until("three failed attempts", () => lines.length >= 3, 10_000, 20);
    expect(lines.slice(0, 3).map((line) => /retrying in ([\d.]+) s$/.exec(line)?.[1])).toEqual([
      "0.1",
      "0.2",
      "0.4",
    ]);
    expect(lines[0]).toMatch(
      /^registering workload\/reviews-late at http:\/\/127\.0\.0\.1:\d+ failed \(connect ECONNREFUSED 127\.0\.0\.1:\d+\)/,
    );
    const late = await startControlPlane({
      dataDir: lateDir,
      httpPort: port,
      xdsPort: 0,
      log: () => {},
    });
    apiOf(late);
    try {
      await putService(base, "reviews");
      await registration.registeredOnce();
      expect((await call(base, "GET", "/v1/workloads/reviews-late")).status).toBe(200);
      expect(lines).toContain("the control plane answers again");
      expect(await registration.deregister()).toBe(true);
      expect((await call(base, "GET", "/v1/workloads/reviews-late")).status).toBe(404);
    } finally {
      await late.close();
    }
  });

  it("deregister deletes the Workload; when the control plane cannot be told, it says the lease will", async () => {
    const registration = register(api, spec("reviews-leaving"));
    await registration.registeredOnce();
    expect(await registration.deregister()).toBe(true);
    expect((await call(api, "GET", "/v1/workloads/reviews-leaving")).status).toBe(404);

    const lines: string[] = [];
    const away = new Registration({
      api: `http://127.0.0.1:${await freePort()}`,
      workload: spec("reviews-away"),
      log: (l) => lines.push(l),
    });
    expect(await away.deregister()).toBe(false);
    expect(lines).toEqual([
      expect.stringMatching(
        /^could not deregister workload\/reviews-away \(connect ECONNREFUSED .*\); the control plane removes it when its lease lapses \(6 s\)$/,
      ),
    ]);
  });
});
