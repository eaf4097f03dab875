// The authenticated control plane (issue 11, §3), against `wasmesh server` as users run it (a child
// process on a SQLite file, real HTTP): every route but /healthz and /readyz needs a bearer token;
// none, a malformed, unknown, revoked or expired one is a 401; a read-only token cannot write; a
// dataplane token does only what its service's agent needs; a request naming a host the server does
// not serve (DNS rebinding) and a cross-origin browser write are refused; the admin token of a new
// data directory is in a 0600 file, and in the credentials file the CLI finds by itself; token
// secrets are never listed nor stored; and tokens are no part of the mesh (no kind, no revision, no
// push). Each refusal counts into `refused`, printed at the end: the figures of the closing note.
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, statSync } from "node:fs";
import http from "node:http";
import { connect } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTokens } from "../../control-plane/security/tokens.ts";
import { createMemoryStore, openSqliteStore } from "../../control-plane/store/index.ts";
import { RELEASE_WASM } from "../support/artifacts.ts";
import {
  adminTokenOf,
  type ControlPlaneProcess,
  metricSum,
  runCommand,
  startControlPlaneProcess,
  WASMESH_BIN,
  wasmesh,
} from "../support/control-plane.ts";
import { tempDir } from "../support/temp.ts";
import { connectAds } from "../support/xds-client.ts";

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  // biome-ignore lint/suspicious/noExplicitAny: assertions navigate arbitrary JSON
  body: any;
  text: string;
}

/** Requests tried and refused per case, for the closing note. */
const tally = new Map<string, { tried: number; refused: number }>();
function count(what: string, reply: Reply, refusedStatus: number): Reply {
  const entry = tally.get(what) ?? { tried: 0, refused: 0 };
  entry.tried++;
  if (reply.status === refusedStatus) entry.refused++;
  tally.set(what, entry);
  return reply;
}

let cp: ControlPlaneProcess;
const API_HOST = "wasmesh.test";

/** One HTTP request with exactly these headers (fetch would not let a test set Host). */
function send(
  method: string,
  path: string,
  options: { token?: string; headers?: Record<string, string>; body?: unknown } = {},
): Promise<Reply> {
  const body =
    options.body === undefined
      ? undefined
      : typeof options.body === "string"
        ? options.body
        : JSON.stringify(options.body);
  const headers: Record<string, string> = {
    host: `127.0.0.1:${cp.httpPort}`,
    ...(options.token !== undefined ? { authorization: `Bearer ${options.token}` } : {}),
    ...(body !== undefined
      ? {
          "content-type": typeof options.body === "string" ? "application/yaml" : "application/json",
          "content-length": String(Buffer.byteLength(body)),
        }
      : {}),
    ...options.headers,
  };
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: "127.0.0.1", port: cp.httpPort, method, path, headers, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let parsed: unknown;
          try {
            parsed = JSON.parse(text);
          } catch {
            parsed = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: parsed, text });
        });
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

const resource = (kind: string, name: string, spec: unknown) => ({
  apiVersion: "wasmesh.io/v1alpha1",
  kind,
  metadata: { name },
  spec,
});
const service = (name: string) =>
  resource("Service", name, { ports: [{ name: "http", port: 9080, protocol: "http" }] });
const workload = (name: string, of: string) =>
  resource("Workload", name, {
    service: of,
    address: "10.0.0.9",
    port: 15006,
    appPort: 9080,
    leaseSeconds: 30,
  });

function expectRefused(reply: Reply, status: number, code: string, message?: RegExp): void {
  expect(reply.status, reply.text).toBe(status);
  expect(reply.body?.error?.code, reply.text).toBe(code);
  if (message) expect(reply.body.error.message).toMatch(message);
}

let admin: string;

beforeAll(async () => {
  cp = await startControlPlaneProcess({ extraArgs: ["--api-host", API_HOST] });
  admin = cp.token;
  for (const name of ["reviews", "ratings"])
    expect((await send("POST", "/v1/services", { token: admin, body: service(name) })).status).toBe(201);
  expect(
    (await send("PUT", "/v1/workloads/ratings-1", { token: admin, body: workload("ratings-1", "ratings") }))
      .status,
  ).toBe(201);
});

afterAll(async () => {
  await cp?.stop();
  const lines = [...tally].map(([what, { tried, refused }]) => `  ${what}: ${refused}/${tried} refused`);
  console.log(`requests refused per case:\n${lines.join("\n")}`);
});

describe("bearer tokens", () => {
  it("/healthz and /readyz answer without a token; everything else is a 401 without one", async () => {
    expect((await send("GET", "/healthz")).status).toBe(200);
    expect((await send("GET", "/readyz")).status).toBe(200);
    const routes: [string, string][] = [
      ["GET", "/v1/services"],
      ["GET", "/v1/workloads/ratings-1"],
      ["POST", "/v1/apply"],
      ["PUT", "/v1/services/reviews"],
      ["DELETE", "/v1/services/ratings"],
      ["GET", "/v1/status"],
      ["GET", "/metrics"],
      ["GET", "/v1/openapi.json"],
      ["GET", "/v1/edge/config"],
      ["GET", "/v1/tokens"],
      ["POST", "/v1/tokens"],
      ["GET", "/v1/no-such-route"],
    ];
    for (const [method, path] of routes) {
      const reply = count("no token", await send(method, path, method === "GET" ? {} : { body: {} }), 401);
      expectRefused(reply, 401, "unauthenticated", /needs a bearer token/);
      expect(reply.headers["www-authenticate"], `${method} ${path}`).toBe('Bearer realm="wasmesh"');
    }
    // Nothing was written by any of them.
    expect((await send("GET", "/v1/services", { token: admin })).body.items).toHaveLength(2);
  });

  it("a malformed, unknown, revoked or expired token is a 401 saying which, never echoing it", async () => {
    const unknown = `wsm_${"A".repeat(43)}`;
    const cases: [string, Record<string, string>, RegExp][] = [
      ["malformed header", { authorization: "Basic YWRtaW46YWRtaW4=" }, /must be 'Bearer <token>'/],
      ["not a token", { authorization: "Bearer hunter2" }, /not a wasmesh token/],
      ["unknown token", { authorization: `Bearer ${unknown}` }, /no such token/],
    ];
    for (const [what, headers, message] of cases) {
      for (const [method, path] of [
        ["GET", "/v1/services"],
        ["POST", "/v1/apply"],
      ] as const) {
        const reply = count(
          what,
          await send(method, path, { headers, ...(method === "POST" ? { body: service("x") } : {}) }),
          401,
        );
        expectRefused(reply, 401, "unauthenticated", message);
        expect(reply.headers["www-authenticate"]).toMatch(
          /^Bearer realm="wasmesh", error="invalid_(token|request)"$/,
        );
        expect(reply.text).not.toContain("hunter2");
        expect(reply.text).not.toContain(unknown);
      }
    }

    // Revoked with the CLI: it worked before, it is refused after.
    const created = await wasmesh(["token", "create", "--role", "read-only", "--name", "soon revoked"], {
      api: cp.api,
    });
    expect(created.code, created.stderr).toBe(0);
    const secret = created.stdout.trim();
    const id = /^token ([0-9a-f]{16}) /.exec(created.stderr)?.[1] as string;
    expect((await send("GET", "/v1/services", { token: secret })).status).toBe(200);
    const revoke = await wasmesh(["token", "revoke", id], { api: cp.api });
    expect(revoke.code, revoke.stderr).toBe(0);
    expect(revoke.stdout).toBe(`token ${id} revoked\n`);
    for (const path of ["/v1/services", "/metrics", "/v1/edge/config"]) {
      const reply = count("revoked token", await send("GET", path, { token: secret }), 401);
      expectRefused(reply, 401, "unauthenticated", new RegExp(`token ${id} was revoked at `));
    }

    // Expired: issued into the server's database by another process, an hour ago, for a minute.
    const store = await openSqliteStore({ dataDir: cp.dataDir });
    const hourAgo = () => new Date(Date.now() - 3600_000);
    const expired = await createTokens(store, hourAgo).issue({ role: "admin", ttlSeconds: 60 });
    await store.close();
    for (const path of ["/v1/services", "/v1/tokens"]) {
      const reply = count("expired token", await send("GET", path, { token: expired.secret }), 401);
      expectRefused(reply, 401, "unauthenticated", new RegExp(`token ${expired.token.id} expired at `));
    }
    // The CLI says where the refused token came from.
    const cli = await wasmesh(["get", "services"], { api: cp.api, token: expired.secret });
    expect(cli.code).toBe(1);
    expect(cli.stderr).toContain("expired at");
    expect(cli.stderr).toContain("the token from $WASMESH_TOKEN was refused");
  });

  it("a read-only token reads everything but tokens, and every write is a 403 that stores nothing", async () => {
    const created = await wasmesh(["token", "create", "--role", "read-only"], { api: cp.api });
    const reader = created.stdout.trim();
    for (const path of [
      "/v1/services",
      "/v1/workloads/ratings-1",
      "/v1/status",
      "/metrics",
      "/v1/openapi.json",
      "/v1/edge/config",
    ])
      expect((await send("GET", path, { token: reader })).status, path).toBe(200);
    const before = (await send("GET", "/healthz")).body.revision;
    const writes: [string, string, unknown][] = [
      ["POST", "/v1/apply", `${JSON.stringify(service("new"))}`],
      ["POST", "/v1/services", service("new")],
      ["PUT", "/v1/services/reviews", service("reviews")],
      ["DELETE", "/v1/workloads/ratings-1", undefined],
      ["PUT", "/v1/workloads/ratings-1/lease", {}],
      ["POST", "/v1/tokens", { role: "admin" }],
      ["DELETE", `/v1/tokens/${"0".repeat(16)}`, undefined],
      ["GET", "/v1/tokens", undefined],
    ];
    for (const [method, path, body] of writes) {
      const reply = count(
        "read-only token, write or tokens",
        await send(method, path, { token: reader, ...(body !== undefined ? { body } : {}) }),
        403,
      );
      expectRefused(reply, 403, "forbidden", /is read-only: /);
    }
    expect((await send("GET", "/healthz")).body.revision).toBe(before);
    expect(
      (await send("GET", "/v1/services", { token: admin })).body.items.map(
        (s: { metadata: { name: string } }) => s.metadata.name,
      ),
    ).toEqual(["ratings", "reviews"]);
  });

  it("a dataplane token registers, renews and deletes its service's Workloads and fetches modules, and nothing else", async () => {
    const issued = await wasmesh(["token", "dataplane", "--service", "reviews"], { api: cp.api });
    expect(issued.code, issued.stderr).toBe(0);
    expect(issued.stderr).toMatch(/^token [0-9a-f]{16} \(dataplane of service reviews\) created/);
    const agent = issued.stdout.trim();

    // What its agent does.
    expect(
      (await send("PUT", "/v1/workloads/reviews-1", { token: agent, body: workload("reviews-1", "reviews") }))
        .status,
    ).toBe(201);
    expect((await send("PUT", "/v1/workloads/reviews-1/lease", { token: agent, body: {} })).status).toBe(200);
    const mesh = createHash("sha256").update(readFileSync(RELEASE_WASM)).digest("hex");
    const bytes = await send("GET", `/v1/modules/mesh/${mesh}.wasm`, { token: agent });
    expect(bytes.status).toBe(200);
    expect(bytes.headers["content-type"]).toBe("application/wasm");
    expect((await send("DELETE", "/v1/workloads/reviews-1", { token: agent })).status).toBe(200);

    // Another service's Workloads: not registered, taken over, renewed or deleted.
    const others: [string, string, unknown, RegExp][] = [
      [
        "PUT",
        "/v1/workloads/ratings-2",
        workload("ratings-2", "ratings"),
        /as written is of service 'ratings'/,
      ],
      [
        "PUT",
        "/v1/workloads/ratings-1",
        workload("ratings-1", "reviews"),
        /as stored is of service 'ratings'/,
      ],
      ["PUT", "/v1/workloads/ratings-1/lease", {}, /as stored is of service 'ratings'/],
      ["DELETE", "/v1/workloads/ratings-1", undefined, /as stored is of service 'ratings'/],
    ];
    for (const [method, path, body, message] of others) {
      const reply = count(
        "dataplane token, another service's Workload",
        await send(method, path, { token: agent, ...(body !== undefined ? { body } : {}) }),
        403,
      );
      expectRefused(reply, 403, "forbidden", message);
      expect(reply.body.error.message).toContain("is a dataplane token of service 'reviews'");
    }
    expect((await send("GET", "/v1/workloads/ratings-1", { token: admin })).body.spec.service).toBe(
      "ratings",
    );
    expect((await send("GET", "/v1/workloads/ratings-2", { token: admin })).status).toBe(404);

    // Anything an agent does not do.
    const outside: [string, string, unknown][] = [
      ["GET", "/v1/workloads", undefined],
      ["GET", "/v1/routes", undefined],
      ["GET", "/v1/status", undefined],
      ["GET", "/metrics", undefined],
      ["POST", "/v1/apply", JSON.stringify(workload("reviews-2", "reviews"))],
      ["POST", "/v1/services", service("evil")],
      ["POST", "/v1/tokens", { role: "admin" }],
      ["GET", "/v1/edge/config", undefined],
    ];
    for (const [method, path, body] of outside) {
      const reply = count(
        "dataplane token, outside an agent's routes",
        await send(method, path, { token: agent, ...(body !== undefined ? { body } : {}) }),
        403,
      );
      expectRefused(
        reply,
        403,
        "forbidden",
        /may register, renew and delete that service's Workloads and fetch module bytes/,
      );
    }
    expect((await send("GET", "/v1/services/evil", { token: admin })).status).toBe(404);
  });
});

describe("DNS rebinding and cross-origin writes", () => {
  it("answers 421 to a request naming a host it does not serve, whatever the token, /healthz included", async () => {
    for (const host of [`evil.example:${cp.httpPort}`, "evil.example", `${API_HOST}.evil.example`]) {
      for (const path of ["/v1/services", "/healthz"]) {
        const reply = count(
          "rebinding Host",
          await send("GET", path, { token: admin, headers: { host } }),
          421,
        );
        expectRefused(reply, 421, "misdirected", /does not serve the host .*DNS rebinding/);
      }
    }
    const write = count(
      "rebinding Host",
      await send("POST", "/v1/services", {
        token: admin,
        body: service("rebound"),
        headers: { host: "evil.example" },
      }),
      421,
    );
    expect(write.status).toBe(421);
    expect((await send("GET", "/v1/services/rebound", { token: admin })).status).toBe(404);
    // A Host that is no host name: the HTTP layer refuses it before anything else (a bare 400).
    for (const host of ["a/b", "127.0.0.1@evil.example"]) {
      const reply = count(
        "rebinding Host",
        await send("GET", "/v1/services", { token: admin, headers: { host } }),
        400,
      );
      expect(reply.status, host).toBe(400);
    }
    // No Host at all (HTTP/1.0 allows that): no name to check, refused too.
    const bare = await new Promise<string>((resolve, reject) => {
      const socket = connect(cp.httpPort, "127.0.0.1", () =>
        socket.end(`GET /v1/services HTTP/1.0\r\nAuthorization: Bearer ${admin}\r\n\r\n`),
      );
      let answer = "";
      socket.on("data", (chunk: Buffer) => {
        answer += chunk.toString("utf8");
      });
      socket.on("end", () => resolve(answer));
      socket.on("error", reject);
    });
    count(
      "rebinding Host",
      { status: Number(bare.split(" ")[1]), headers: {}, body: undefined, text: bare },
      421,
    );
    expect(bare).toMatch(/^HTTP\/1\.[01] 421 /);
    expect(bare).toContain("(no Host header)");
    // What it serves: its addresses, localhost and --api-host.
    for (const host of [
      `127.0.0.1:${cp.httpPort}`,
      `localhost:${cp.httpPort}`,
      "[::1]:5681",
      "10.1.2.3",
      API_HOST,
      `${API_HOST.toUpperCase()}:443`,
    ])
      expect((await send("GET", "/v1/services", { token: admin, headers: { host } })).status, host).toBe(200);
  });

  it("refuses a browser's cross-origin write, with a valid token too, and lets same-origin ones and reads through", async () => {
    const cases: Record<string, string>[] = [
      { origin: "http://evil.example" },
      { origin: `http://localhost:${cp.httpPort}` },
      { origin: "null" },
      { "sec-fetch-site": "cross-site" },
      { "sec-fetch-site": "same-site" },
    ];
    for (const headers of cases) {
      const reply = count(
        "cross-origin write",
        await send("POST", "/v1/services", { token: admin, body: service("csrf"), headers }),
        403,
      );
      expectRefused(reply, 403, "forbidden", /another origin|browser request cannot change anything/);
    }
    expect((await send("GET", "/v1/services/csrf", { token: admin })).status).toBe(404);
    const same = await send("POST", "/v1/services", {
      token: admin,
      body: service("same-origin"),
      headers: { origin: `http://127.0.0.1:${cp.httpPort}`, "sec-fetch-site": "same-origin" },
    });
    expect(same.status, same.text).toBe(201);
    const read = await send("GET", "/v1/services", {
      token: admin,
      headers: { origin: "http://evil.example", "sec-fetch-site": "cross-site" },
    });
    expect(read.status).toBe(200);
    expect(read.headers["access-control-allow-origin"]).toBeUndefined();
    expect((await send("DELETE", "/v1/services/same-origin", { token: admin })).status).toBe(200);
  });
});

describe("the admin token of a new data directory, and the CLI", () => {
  it("is in <data>/admin-token and the credentials file, both 0600 (as the database), and the CLI finds it from any folder", async () => {
    const config = tempDir("auth-config");
    const server = await startControlPlaneProcess({ env: { XDG_CONFIG_HOME: config } });
    try {
      const file = join(server.dataDir, "admin-token");
      const mode = (path: string) => (statSync(path).mode & 0o777).toString(8);
      expect(mode(file)).toBe("600");
      expect(mode(join(server.dataDir, "wasmesh.db"))).toBe("600");
      const credentials = join(config, "wasmesh", "credentials.json");
      expect(mode(credentials)).toBe("600");
      expect(mode(join(config, "wasmesh"))).toBe("700");
      const token = adminTokenOf(server.dataDir);
      expect(token).toMatch(/^wsm_[A-Za-z0-9_-]{43}$/);
      expect(JSON.parse(readFileSync(credentials, "utf8")).apis[server.api].token).toBe(token);
      expect(server.logs()).toContain(`created an admin token in ${file}`);
      expect(server.logs()).not.toContain(token);

      // No flag, no token in the environment, another folder: the credentials file, by API URL.
      const elsewhere = tempDir("auth-elsewhere");
      mkdirSync(join(elsewhere, "deeper"));
      const env: NodeJS.ProcessEnv = { ...process.env, XDG_CONFIG_HOME: config, WASMESH_API: server.api };
      delete env.WASMESH_TOKEN;
      const cli = (args: string[], extra: NodeJS.ProcessEnv = {}) =>
        runCommand(process.execPath, [WASMESH_BIN, ...args], {
          cwd: join(elsewhere, "deeper"),
          env: { ...env, ...extra },
        });
      const found = await cli(["get", "services"]);
      expect(found.code, found.stderr).toBe(0);
      expect(found.stdout).toBe("No Service resources.\n");
      // localhost finds the same entry.
      expect(
        (await cli(["get", "services", "--api", server.api.replace("127.0.0.1", "localhost")])).code,
      ).toBe(0);
      // $WASMESH_TOKEN comes before the file, --token before both.
      const wrong = `wsm_${"B".repeat(43)}`;
      const fromEnv = await cli(["get", "services"], { WASMESH_TOKEN: wrong });
      expect(fromEnv.code).toBe(1);
      expect(fromEnv.stderr).toContain("the token from $WASMESH_TOKEN was refused");
      expect((await cli(["get", "services", "--token", token], { WASMESH_TOKEN: wrong })).code).toBe(0);
      expect((await cli(["--token", wrong, "get", "services"])).stderr).toContain(
        "the token from --token was refused",
      );
      // Without the file, the CLI says where a token comes from.
      const none = await cli(["get", "services"], { XDG_CONFIG_HOME: tempDir("auth-empty-config") });
      expect(none.code).toBe(1);
      expect(none.stderr).toContain("no token was given (--token, $WASMESH_TOKEN, or the credentials file");

      // A restart keeps the token (no new one), and saves it again for the URL.
      await server.stop();
    } finally {
      await server.stop();
    }
  });

  it("a restart on the same data directory keeps the admin token; one that was revoked is replaced", async () => {
    const dataDir = tempDir("auth-restart");
    const first = await startControlPlaneProcess({ dataDir });
    const token = first.token;
    await first.stop();
    const second = await startControlPlaneProcess({ dataDir });
    expect(second.token).toBe(token);
    expect(second.logs()).not.toContain("created an admin token");
    // Revoke it with itself: the next start makes a new one, since no admin token is valid.
    const id = (await wasmesh(["token", "list", "-o", "json"], { api: second.api })).stdout;
    const own = (JSON.parse(id).items as { id: string; role: string }[]).find((t) => t.role === "admin")
      ?.id as string;
    expect((await wasmesh(["token", "revoke", own], { api: second.api })).code).toBe(0);
    expect((await wasmesh(["get", "services"], { api: second.api, token })).code).toBe(1);
    await second.stop();
    const third = await startControlPlaneProcess({ dataDir });
    try {
      expect(third.token).not.toBe(token);
      expect(third.logs()).toContain("created an admin token");
      expect((await wasmesh(["get", "services"], { api: third.api })).code).toBe(0);
    } finally {
      await third.stop();
    }
  });

  it("warns loudly when it listens on a non-loopback address without TLS", async () => {
    const open = await startControlPlaneProcess({ extraArgs: ["--address", "0.0.0.0"] });
    try {
      expect(open.logs()).toMatch(/WARNING: listening on 0\.0\.0\.0 without TLS/);
    } finally {
      await open.stop();
    }
    expect(cp.logs()).not.toContain("WARNING");
  });
});

describe("dataplane tokens of services discovered on Kubernetes", () => {
  it("bind to <name>.<namespace>, and refuse a name with another dot", async () => {
    const tokens = createTokens(createMemoryStore());
    const { token } = await tokens.issue({ role: "dataplane", service: "reviews.bookinfo" });
    expect(token).toMatchObject({ role: "dataplane", service: "reviews.bookinfo" });
    await expect(tokens.issue({ role: "dataplane", service: "reviews.bookinfo.svc" })).rejects.toMatchObject({
      path: "service",
    });
  });
});

describe("tokens are secrets, and no part of the mesh", () => {
  it("lists no secret nor hash, in the API or the CLI, and stores only the sha256", async () => {
    const made = await Promise.all([
      wasmesh(["token", "create", "--role", "admin", "--name", "ci", "--ttl", "1h30m"], { api: cp.api }),
      wasmesh(["token", "dataplane", "--service", "ratings", "--name", "ratings agents"], { api: cp.api }),
    ]);
    const secrets = made.map((r) => r.stdout.trim());
    for (const secret of secrets) expect(secret).toMatch(/^wsm_[A-Za-z0-9_-]{43}$/);
    const api = await send("GET", "/v1/tokens", { token: admin });
    const table = await wasmesh(["token", "list"], { api: cp.api });
    const json = await wasmesh(["token", "list", "-o", "json"], { api: cp.api });
    for (const text of [api.text, table.stdout, json.stdout]) {
      for (const secret of [...secrets, admin]) expect(text).not.toContain(secret);
      expect(text).not.toContain("sha256");
    }
    const items = api.body.items as Record<string, unknown>[];
    for (const item of items)
      expect(Object.keys(item).sort()).toEqual(
        expect.arrayContaining(["createdAt", "id", "revoked", "role"]),
      );
    expect(items.find((t) => t.name === "ci")).toMatchObject({
      role: "admin",
      revoked: false,
      expiresAt: expect.any(String),
    });
    expect(items.find((t) => t.name === "ratings agents")).toMatchObject({
      role: "dataplane",
      service: "ratings",
    });
    expect(table.stdout).toMatch(/^ID\s+NAME\s+ROLE\s+SERVICE\s+CREATED\s+EXPIRES\s+STATUS\n/);
    // The database file and its WAL hold the hashes, never a secret.
    const db = ["wasmesh.db", "wasmesh.db-wal"]
      .map((name) => readFileSync(join(cp.dataDir, name)).toString("latin1"))
      .join("");
    for (const secret of [...secrets, admin]) {
      expect(db).not.toContain(secret);
      expect(db).toContain(createHash("sha256").update(secret).digest("hex"));
    }
  });

  it("has no kind: get, apply and the OpenAPI know nothing of it, and a token write moves no revision and pushes nothing", async () => {
    const [getKind, getInternal] = await Promise.all([
      wasmesh(["get", "apitokens"], { api: cp.api }),
      wasmesh(["get", "internal:ApiToken"], { api: cp.api }),
    ]);
    for (const result of [getKind, getInternal]) {
      expect(result.code).toBe(2);
      expect(result.stderr).toContain("unknown kind");
    }
    const document = {
      apiVersion: "wasmesh.io/v1alpha1",
      kind: "internal:ApiToken",
      metadata: { name: "0123456789abcdef" },
      spec: { role: "admin", sha256: "0".repeat(64) },
    };
    for (const body of [JSON.stringify(document), [document]]) {
      const applied = count(
        "token kind through apply",
        await send("POST", "/v1/apply", { token: admin, body }),
        400,
      );
      expect(applied.status, applied.text).toBe(400);
      expect(applied.text).toMatch(/kind/);
    }
    for (const path of ["/v1/internal:apitokens", "/v1/apitokens", "/v1/internal:ApiToken/0123456789abcdef"])
      expect(
        count("token kind through the resource routes", await send("GET", path, { token: admin }), 404)
          .status,
        path,
      ).toBe(404);
    const tokens = (await send("GET", "/v1/tokens", { token: admin })).body.items as { id: string }[];
    expect(tokens.map((t) => t.id)).not.toContain("0123456789abcdef");
    const openapi = (await send("GET", "/v1/openapi.json", { token: admin })).text;
    expect(openapi).not.toContain("internal:");
    expect(openapi).not.toContain("ApiToken");
    expect(openapi).not.toMatch(/"sha256"[^}]*"Token"/);
    // /metrics counts the mesh's resources only.
    expect(await metricSum(cp.api, "wasmesh_resources")).toBe(
      (await send("GET", "/v1/services", { token: admin })).body.items.length + 1,
    );

    // A proxy connected: tokens issued and revoked move no revision, compile nothing, push nothing.
    const CDS = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
    const proxy = await connectAds({ address: cp.xds, node: { id: "watcher-1", cluster: "reviews" } });
    try {
      await proxy.fetch(CDS);
      const before = {
        revision: (await send("GET", "/healthz")).body.revision as number,
        compiles: await metricSum(cp.api, "wasmesh_revision_compiles_total"),
        responses: proxy.received(CDS),
      };
      for (let i = 0; i < 5; i++) {
        const { body } = await send("POST", "/v1/tokens", { token: admin, body: { role: "read-only" } });
        expect((await send("DELETE", `/v1/tokens/${body.id}`, { token: admin })).status).toBe(200);
      }
      expect((await send("GET", "/healthz")).body.revision).toBe(before.revision);
      // A mesh write afterwards: the very next response the proxy gets is its revision's, the
      // next one (the stream is ordered: a push for the tokens would have come first).
      expect(
        (await send("POST", "/v1/services", { token: admin, body: service("after-tokens") })).status,
      ).toBe(201);
      const next = await proxy.next(CDS);
      expect(next.version).toBe(String(before.revision + 1));
      expect(next.resources.map((r) => r.name)).toContain("outbound|after-tokens");
      expect(proxy.received(CDS)).toBe(before.responses + 1);
      expect(await metricSum(cp.api, "wasmesh_revision_compiles_total")).toBe(before.compiles + 1);
    } finally {
      proxy.close();
    }
  });
});
