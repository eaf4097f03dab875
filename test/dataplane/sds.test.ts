// The agent's SDS server (dataplane/sds.ts) over real gRPC on its Unix socket, with a grpc-js client
// that speaks as Envoy's SDS subscription does (StreamSecrets, state of the world): what is sent
// before and after the secrets exist, ACKs and NACKs answered by nothing, a renewal pushed on the
// open stream, the socket reachable by its owner only.
import { statSync } from "node:fs";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { afterEach, describe, expect, it } from "vitest";
import { CERTIFICATE_SECRET, SECRET_TYPE_URL, TRUST_BUNDLE_SECRET } from "../../control-plane/envoy/index.ts";
import type { DecodedResponse } from "../../control-plane/xds/codec.ts";
import { type SdsServer, startSdsServer } from "../../dataplane/sds.ts";
import { closeSdsClients, connectSds, type SdsStream, secretsOf } from "../support/sds-client.ts";
import { tempDir } from "../support/temp.ts";
import { until } from "../support/wait.ts";

const servers: SdsServer[] = [];
afterEach(async () => {
  closeSdsClients();
  for (const server of servers.splice(0)) await server.close();
});

async function serve(): Promise<SdsServer> {
  const server = await startSdsServer({ socketPath: join(tempDir("sds"), "sds", "sds.sock") });
  servers.push(server);
  return server;
}

const connect = (server: SdsServer): SdsStream => connectSds(server.socketPath);
const secrets = secretsOf;

const CERT = {
  certificateChain: "-----BEGIN CERTIFICATE-----\nA\n",
  privateKey: "-----BEGIN PRIVATE KEY-----\nK\n",
};
const RENEWED = {
  certificateChain: "-----BEGIN CERTIFICATE-----\nB\n",
  privateKey: "-----BEGIN PRIVATE KEY-----\nL\n",
};

/** Waits until the server has seen `n` open streams asking for something (the request arrived). */
const streamsAsking = (server: SdsServer, n: number) =>
  until(
    () => `${n} SDS streams with names (have ${JSON.stringify(server.streams())})`,
    () => server.streams().filter((names) => names.length > 0).length === n,
  );

describe("the agent's SDS server", () => {
  it("answers a request once it has the secret, and pushes a renewal on the open stream", async () => {
    const server = await serve();
    const stream = connect(server);
    stream.send({ resourceNames: [CERTIFICATE_SECRET], node: { id: "w1", cluster: "a", metadata: {} } });
    await streamsAsking(server, 1);
    // Nothing to send yet: Envoy waits (its cluster or listener warms).
    expect(stream.responses).toEqual([]);
    expect(server.responses).toBe(0);

    server.update({ certificate: CERT });
    await until("the first response", () => stream.responses.length === 1);
    const first = stream.responses[0] as DecodedResponse;
    expect(first.typeUrl).toBe(SECRET_TYPE_URL);
    expect(secrets(first)).toEqual([
      {
        name: CERTIFICATE_SECRET,
        tls_certificate: {
          certificate_chain: { inline_string: CERT.certificateChain },
          private_key: { inline_string: CERT.privateKey },
        },
      },
    ]);

    // The ACK is not answered; the same content set again sends nothing either.
    stream.send({
      resourceNames: [CERTIFICATE_SECRET],
      versionInfo: first.versionInfo,
      responseNonce: first.nonce,
    });
    await until("the ACK received", () => server.requests === 2);
    server.update({ certificate: CERT });
    // A renewal goes out on the same stream, and is the second response: nothing came in between.
    server.update({ certificate: RENEWED });
    await until("the renewal", () =>
      stream.responses.some(
        (r) => secrets(r)[0]?.tls_certificate?.private_key.inline_string === RENEWED.privateKey,
      ),
    );
    expect(stream.responses).toHaveLength(2);
    const second = stream.responses[1] as DecodedResponse;
    expect(second.versionInfo).not.toBe(first.versionInfo);
    expect(second.nonce).not.toBe(first.nonce);
    expect(secrets(second)[0]?.tls_certificate?.private_key.inline_string).toBe(RENEWED.privateKey);
    expect(server.responses).toBe(2);
    expect(stream.status()).toBeUndefined();
  });

  it("sends only the names asked for, the trust bundle as a validation context", async () => {
    const server = await serve();
    server.update({ certificate: CERT, trustBundle: "-----BEGIN CERTIFICATE-----\nR\n" });
    const roots = connect(server);
    roots.send({ resourceNames: [TRUST_BUNDLE_SECRET] });
    await until("the ROOTCA response", () => roots.responses.length === 1);
    expect(secrets(roots.responses[0] as DecodedResponse)).toEqual([
      {
        name: TRUST_BUNDLE_SECRET,
        validation_context: { trusted_ca: { inline_string: "-----BEGIN CERTIFICATE-----\nR\n" } },
      },
    ]);
    // Both names on one stream: both in one response (in name order).
    const both = connect(server);
    both.send({ resourceNames: [TRUST_BUNDLE_SECRET, CERTIFICATE_SECRET] });
    await until("the response with both", () => both.responses.length === 1);
    expect(secrets(both.responses[0] as DecodedResponse).map((s) => s.name)).toEqual([
      TRUST_BUNDLE_SECRET,
      CERTIFICATE_SECRET,
    ]);
    // A new certificate goes to the stream that asked for it, not to the one that asked for ROOTCA.
    server.update({ certificate: RENEWED });
    await until("the renewal on the stream of both", () => both.responses.length === 2);
    expect(roots.responses).toHaveLength(1);
    // A name nobody holds is left out.
    const unknown = connect(server);
    unknown.send({ resourceNames: ["other"] });
    await streamsAsking(server, 3);
    server.update({ trustBundle: "-----BEGIN CERTIFICATE-----\nS\n" });
    await until(
      "the new bundle on both ROOTCA streams",
      () => roots.responses.length === 2 && both.responses.length === 3,
    );
    expect(unknown.responses).toEqual([]);
  });

  it("does not answer a NACK with the same content again (no loop), but sends the next content", async () => {
    const lines: string[] = [];
    const server = await startSdsServer({
      socketPath: join(tempDir("sds"), "sds", "sds.sock"),
      log: (line) => lines.push(line),
    });
    servers.push(server);
    server.update({ certificate: CERT });
    const stream = connect(server);
    stream.send({ resourceNames: [CERTIFICATE_SECRET] });
    await until("the first response", () => stream.responses.length === 1);
    const first = stream.responses[0] as DecodedResponse;
    stream.send({
      resourceNames: [CERTIFICATE_SECRET],
      versionInfo: "",
      responseNonce: first.nonce,
      errorDetail: { code: 3, message: "Failed to load certificate chain" },
    });
    await until("the NACK logged", () => lines.some((l) => l.includes("Failed to load certificate chain")));
    server.update({ certificate: RENEWED });
    await until("the next content", () =>
      stream.responses.some(
        (r) => secrets(r)[0]?.tls_certificate?.private_key.inline_string === RENEWED.privateKey,
      ),
    );
    // The second response is the new content: the NACK got none.
    expect(stream.responses).toHaveLength(2);
  });

  it("refuses a request for another type", async () => {
    const server = await serve();
    const stream = connect(server);
    stream.send({ typeUrl: "type.googleapis.com/envoy.config.cluster.v3.Cluster", resourceNames: ["x"] });
    await until("the stream's status", () => stream.status() !== undefined);
    expect(stream.status()?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(stream.status()?.details).toMatch(/serves .*Secret only/);
  });

  it("listens in a directory only its owner may enter, on a socket only its owner may open", async () => {
    const server = await serve();
    expect(statSync(join(server.socketPath, "..")).mode & 0o777).toBe(0o700);
    expect(statSync(server.socketPath).mode & 0o777).toBe(0o600);
    expect(statSync(server.socketPath).isSocket()).toBe(true);
  });

  it("binds again over a socket a killed agent left behind, and refuses a path too long for a socket", async () => {
    const dir = tempDir("sds");
    const first = await startSdsServer({ socketPath: join(dir, "sds", "sds.sock") });
    // Not closed: as if the agent had been killed, the socket file stays.
    const second = await startSdsServer({ socketPath: join(dir, "sds", "sds.sock") });
    servers.push(second);
    second.update({ certificate: CERT });
    const stream = connect(second);
    stream.send({ resourceNames: [CERTIFICATE_SECRET] });
    await until("an answer from the second server", () => stream.responses.length === 1);
    await first.close().catch(() => {});
    await expect(startSdsServer({ socketPath: join("/", "x".repeat(120), "sds.sock") })).rejects.toThrow(
      /longer than the 107 bytes/,
    );
  });
});
