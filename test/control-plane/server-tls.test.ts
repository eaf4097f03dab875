// TLS on the control plane's ports (issue 11, §3): `wasmesh server --tls` serves the API over HTTPS
// and xDS over TLS (ALPN h2) with a certificate from the mesh CA naming the server's hosts, which
// verifies against <data>/ca-bundle.pem; plain HTTP to the TLS port fails; the CLI on the same
// machine needs no flag (the credentials file names the CA file), and a wrong CA file is a clear
// certificate error; a renewal reaches both ports without a restart; --tls-cert/--tls-key serve the
// certificate given. Real processes and sockets throughout.
import { X509Certificate } from "node:crypto";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import { isIP } from "node:net";
import { join } from "node:path";
import tls from "node:tls";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startControlPlane } from "../../control-plane/server.ts";
import { OPENSSL, selfSigned } from "../support/ca.ts";
import {
  type ControlPlaneProcess,
  runCommand,
  startControlPlaneProcess,
  WASMESH_BIN,
} from "../support/control-plane.ts";
import { tempDir } from "../support/temp.ts";
import { connectAds } from "../support/xds-client.ts";

const API_HOST = "wasmesh.test";
const LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener";

interface Presented {
  certificate: X509Certificate;
  authorized: boolean;
  error: string | undefined;
  alpn: string | false;
}

/** A TLS handshake with `port`, trusting `ca`, as a client naming `servername`. */
function handshake(port: number, ca: string, servername: string, alpn?: string[]): Promise<Presented> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect(
      {
        host: "127.0.0.1",
        port,
        ca,
        servername,
        rejectUnauthorized: false,
        ...(alpn ? { ALPNProtocols: alpn } : {}),
      },
      () => {
        const peer = socket.getPeerX509Certificate() as X509Certificate;
        // The identity check the clients make (https, grpc-js) on top of the chain's.
        const named = isIP(servername) !== 0 ? peer.checkIP(servername) : peer.checkHost(servername);
        const identity =
          named === undefined ? new Error(`the certificate does not name ${servername}`) : undefined;
        resolve({
          certificate: peer,
          authorized: socket.authorized && identity === undefined,
          error: socket.authorizationError?.toString() ?? identity?.message,
          alpn: socket.alpnProtocol ?? false,
        });
        socket.end();
      },
    );
    socket.on("error", reject);
  });
}

function httpsGet(url: string, ca: string, token?: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = https.get(
      url,
      { ca, agent: false, headers: token ? { authorization: `Bearer ${token}` } : {} },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString() }));
      },
    );
    req.on("error", reject);
  });
}

describe("wasmesh server --tls", () => {
  let cp: ControlPlaneProcess;
  let config: string;
  let bundle: string;

  beforeAll(async () => {
    config = tempDir("xdg");
    cp = await startControlPlaneProcess({
      extraArgs: ["--tls", "--api-host", API_HOST],
      env: { XDG_CONFIG_HOME: config },
    });
    bundle = readFileSync(join(cp.dataDir, "ca-bundle.pem"), "utf8");
  }, 60_000);
  afterAll(async () => {
    await cp?.stop();
  });

  const cli = (args: string[], env: NodeJS.ProcessEnv = {}) =>
    runCommand(process.execPath, [WASMESH_BIN, ...args], {
      // No token nor CA from the test's environment: what the CLI finds by itself.
      env: { PATH: process.env.PATH, HOME: config, XDG_CONFIG_HOME: config, ...env },
    });

  it("writes the mesh CA's bundle to <data>/ca-bundle.pem, readable by all", () => {
    expect(statSync(join(cp.dataDir, "ca-bundle.pem")).mode & 0o777).toBe(0o644);
    expect(bundle).toMatch(/^-----BEGIN CERTIFICATE-----/);
    expect(cp.logs()).toMatch(/API https:\/\/127\.0\.0\.1:\d+ {2}xDS grpcs:\/\//);
  });

  it("serves the API over HTTPS with a certificate for its names that verifies against the bundle", async () => {
    for (const name of ["localhost", "127.0.0.1", API_HOST]) {
      const presented = await handshake(cp.httpPort, bundle, name);
      expect(presented.authorized, `${name}: ${presented.error}`).toBe(true);
    }
    const presented = await handshake(cp.httpPort, bundle, "elsewhere.example");
    expect(presented.authorized).toBe(false);
    expect(presented.certificate.subjectAltName).toContain(`DNS:${API_HOST}`);
    expect(presented.certificate.subjectAltName).toContain("IP Address:127.0.0.1");
    expect(presented.certificate.ca).toBe(false);
    const health = await httpsGet(`${cp.api}/healthz`, bundle);
    expect(health.status).toBe(200);
    // Another CA's bundle does not verify it.
    const other = await handshake(cp.httpPort, otherCa(), "localhost");
    expect(other.authorized).toBe(false);
  });

  it("refuses plain HTTP on the TLS port", async () => {
    const outcome = await new Promise<string>((resolve) => {
      const req = http.get(`http://127.0.0.1:${cp.httpPort}/healthz`, { agent: false }, (res) =>
        resolve(`HTTP ${res.statusCode}`),
      );
      req.on("error", (error: NodeJS.ErrnoException) => resolve(`error ${error.code ?? error.message}`));
    });
    expect(outcome).toMatch(/^error /);
  });

  it("serves xDS over TLS with ALPN h2, to a gRPC client trusting the bundle only", async () => {
    const presented = await handshake(cp.xdsPort, bundle, "localhost", ["h2"]);
    expect(presented.authorized, presented.error).toBe(true);
    expect(presented.alpn).toBe("h2");
    const client = new grpc.Client(
      `localhost:${cp.xdsPort}`,
      grpc.credentials.createSsl(Buffer.from(bundle)),
    );
    const ads = await connectAds({
      address: `localhost:${cp.xdsPort}`,
      client,
      node: { id: "web-1", cluster: "web" },
      token: cp.token,
    });
    try {
      ads.subscribe(LISTENER);
      const response = await ads.next(LISTENER);
      expect(response.resources.map((r) => r.name)).toContain("outbound");
    } finally {
      ads.close();
    }
    // A plain-text gRPC client gets nothing.
    const plain = new grpc.Client(`127.0.0.1:${cp.xdsPort}`, grpc.credentials.createInsecure());
    const ready = await new Promise<Error | undefined>((resolve) =>
      plain.waitForReady(Date.now() + 2000, (error) => resolve(error)),
    );
    plain.close();
    expect(ready).toBeInstanceOf(Error);
  });

  it("rewrites ca-bundle.pem at a rotation step: the next root is trusted on this machine at once", async () => {
    const added = await cli(["ca", "rotate", "add-next", "--api", cp.api]);
    expect(added.code, added.stderr).toBe(0);
    const after = readFileSync(join(cp.dataDir, "ca-bundle.pem"), "utf8");
    expect(after.match(/BEGIN CERTIFICATE/g)).toHaveLength(2);
    expect(after.startsWith(bundle)).toBe(true);
    expect(statSync(join(cp.dataDir, "ca-bundle.pem")).mode & 0o777).toBe(0o644);
    // Abandoned: the bundle is back to the one root.
    const id = /^([0-9a-f]{16})\s+next\b/m.exec(added.stdout)?.[1] as string;
    expect((await cli(["ca", "rotate", "remove", "--id", id, "--api", cp.api])).code).toBe(0);
    expect(readFileSync(join(cp.dataDir, "ca-bundle.pem"), "utf8")).toBe(bundle);
  });

  it("the CLI on the same machine needs no flag; a wrong CA file is a certificate error", async () => {
    const credentials = JSON.parse(readFileSync(join(config, "wasmesh", "credentials.json"), "utf8"));
    expect(credentials.apis[cp.api]).toMatchObject({ caFile: join(cp.dataDir, "ca-bundle.pem") });
    const get = await cli(["get", "routes", "--api", cp.api]);
    expect(get.code, get.stderr).toBe(0);
    const wrong = join(tempDir("wrong-ca"), "other.pem");
    writeFileSync(wrong, otherCa());
    for (const args of [["--ca-file", wrong], []] as string[][]) {
      const env = args.length === 0 ? { WASMESH_CA_FILE: wrong } : {};
      const refused = await cli(["get", "routes", "--api", cp.api, ...args], env);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(
        new RegExp(
          `presented a certificate that does not verify against the CA file ${wrong} \\(from (--ca-file|\\$WASMESH_CA_FILE)\\)`,
        ),
      );
    }
  });
});

let otherCaPem: string | undefined;
/** A self-signed CA certificate that has nothing to do with the mesh. */
function otherCa(): string {
  otherCaPem ??= selfSigned("/CN=Other CA").pem;
  return otherCaPem;
}

describe.skipIf(!OPENSSL)("wasmesh server --tls-cert --tls-key", () => {
  it("serves the certificate given, on both ports", async () => {
    const { certFile, keyFile, pem: given } = selfSigned("/CN=cp.example", "DNS:cp.example,IP:127.0.0.1");
    const cp = await startControlPlaneProcess({
      extraArgs: ["--tls-cert", certFile, "--tls-key", keyFile],
    });
    try {
      for (const port of [cp.httpPort, cp.xdsPort]) {
        const presented = await handshake(port, given, "cp.example");
        expect(presented.authorized, presented.error).toBe(true);
        expect(presented.certificate.fingerprint256).toBe(new X509Certificate(given).fingerprint256);
      }
      expect((await httpsGet(`${cp.api}/healthz`, given)).status).toBe(200);
    } finally {
      await cp.stop();
    }
  }, 60_000);

  it("refuses a key that is not the certificate's, naming both flags; one without the other is a usage error", async () => {
    const [a, b] = [selfSigned("/CN=a"), selfSigned("/CN=b")] as const;
    const data = tempDir("cp");
    const run = (args: string[]) =>
      runCommand(process.execPath, [
        WASMESH_BIN,
        "server",
        "--data",
        data,
        "--http-port",
        "0",
        "--xds-port",
        "0",
        ...args,
      ]);
    const mismatch = await run(["--tls-cert", a.certFile, "--tls-key", b.keyFile]);
    expect(mismatch.code).toBe(1);
    expect(mismatch.stderr).toContain(`--tls-cert ${a.certFile} and --tls-key ${b.keyFile} cannot be used`);
    const alone = await run(["--tls-cert", a.certFile]);
    expect(alone.code).toBe(2);
    expect(alone.stderr).toMatch(/--tls-cert needs --tls-key/);
  }, 60_000);
});

describe("renewal", () => {
  it("a renewed certificate is served on both ports without a restart", async () => {
    const dataDir = tempDir("renew");
    const plane = await startControlPlane({
      dataDir,
      httpPort: 0,
      xdsPort: 0,
      tls: "mesh-ca",
      log: () => {},
    });
    try {
      const bundle = readFileSync(join(dataDir, "ca-bundle.pem"), "utf8");
      const before = await Promise.all(
        [plane.httpPort, plane.xdsPort].map((port) => handshake(port, bundle, "localhost")),
      );
      await plane.tls?.renew();
      expect(plane.tls?.issued).toBe(2);
      for (const [i, port] of [plane.httpPort, plane.xdsPort].entries()) {
        const after = await handshake(port, bundle, "localhost");
        expect(after.authorized, after.error).toBe(true);
        expect(after.certificate.serialNumber).not.toBe(before[i]?.certificate.serialNumber);
      }
    } finally {
      await plane.close();
    }
  }, 60_000);
});

describe("the non-loopback warning", () => {
  it("tells to use --tls, and is not given with it", async () => {
    const plain = await startControlPlaneProcess({ extraArgs: ["--address", "0.0.0.0"] });
    try {
      expect(plain.logs()).toMatch(
        /WARNING: listening on 0\.0\.0\.0 without TLS.*Start the server with --tls/,
      );
    } finally {
      await plain.stop();
    }
    const secure = await startControlPlaneProcess({ extraArgs: ["--address", "0.0.0.0", "--tls"] });
    try {
      expect(secure.logs()).not.toContain("WARNING");
      // Bound to every interface: the certificate names this machine's addresses too.
      const bundle = readFileSync(join(secure.dataDir, "ca-bundle.pem"), "utf8");
      const presented = await handshake(secure.httpPort, bundle, "127.0.0.1");
      expect(presented.authorized, presented.error).toBe(true);
    } finally {
      await secure.stop();
    }
  }, 60_000);
});
