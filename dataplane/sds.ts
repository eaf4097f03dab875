// The agent's SDS server (issue 11): Envoy gets the workload's certificate and the mesh's trust
// bundle from the agent, over gRPC (envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets,
// state of the world) on a Unix socket in the agent's data directory, as istio-agent serves its
// Envoy. The private key is made by the agent and goes nowhere else.
//
// Why a Unix socket, not loopback TCP: whoever can connect is handed the private key. A loopback
// port is open to every process on the host; the socket lives in a directory only the agent's user
// may enter (0700), so only that user (Envoy runs as it) can reach it.
//
// Secrets change under open streams: update() pushes the new version to every stream that asked for
// it, and Envoy swaps its TLS contexts in place, so a renewal or a new trust bundle restarts nothing
// and closes no connection (connections already open keep the handshake they made).
//
// The protocol, per stream: Envoy asks for names (`default`, `ROOTCA`; Envoy opens one stream per
// secret it needs); the server answers with those of them it has, once it has any, and again
// whenever their content changes. A request that changes nothing (an ACK, or a NACK of the current
// version) is not answered: answering a NACK with the same content would loop. A name the server
// does not have yet is left out until it has it; Envoy waits for it (its listener or cluster warms
// until then).
import { createHash } from "node:crypto";
import { chmodSync, mkdirSync, rmSync } from "node:fs";
import { dirname, relative, resolve } from "node:path";
import * as grpc from "@grpc/grpc-js";
import {
  certificateSecret,
  encodeMessage,
  SDS_STREAM_METHOD,
  SECRET_TYPE_URL,
  type Secret,
  trustBundleSecret,
} from "../control-plane/envoy/index.ts";
import {
  decodeDiscoveryRequest,
  encodeAny,
  encodeDiscoveryResponse,
  type WireResource,
} from "../control-plane/xds/codec.ts";
import { shutdownGrpcServer } from "./grpc-server.ts";

export interface SdsServerOptions {
  /** The socket's path (absolute, or relative to the process's working directory). */
  socketPath: string;
  log?: (line: string) => void;
}

/** What the server hands out; each part is replaced as a whole. */
export interface SdsSecrets {
  /** The `default` secret: the chain Envoy presents (leaf first) and its PKCS#8 PEM key. */
  certificate?: { certificateChain: string; privateKey: string };
  /** The `ROOTCA` secret: the PEM roots peers must chain to. */
  trustBundle?: string;
}

export interface SdsServer {
  /** The socket's absolute path. */
  readonly socketPath: string;
  /** Replaces the secrets given and pushes what changed to every stream that asked for it. */
  update(secrets: SdsSecrets): void;
  /** The version of a secret as it is sent (a digest of its content); undefined until it is set. */
  version(name: string): string | undefined;
  /** Streams open now, and the names each asked for (tests, logs). */
  streams(): string[][];
  /** Requests received and responses sent so far (tests). */
  readonly requests: number;
  readonly responses: number;
  close(): Promise<void>;
}

/** The longest path a Unix socket may have on Linux (sun_path is 108 bytes, NUL included). */
const MAX_SOCKET_PATH = 107;

type Bytes = Buffer;
const identity = (bytes: Bytes) => bytes;
/** StreamSecrets with messages as bytes: decoded and encoded here with the Envoy protos. */
const SDS_SERVICE: grpc.ServiceDefinition = {
  StreamSecrets: {
    path: SDS_STREAM_METHOD,
    requestStream: true,
    responseStream: true,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  },
};

interface Held {
  secret: Secret;
  version: string;
  any: Uint8Array;
}

interface Stream {
  call: grpc.ServerDuplexStream<Bytes, Bytes>;
  names: string[];
  /** What the last response held: its version, empty before the first. */
  sent: string;
  nonce: number;
  /** Envoy's node id, from its first request, for the logs. */
  node: string;
}

/** The path to bind: the shorter of the absolute path and the one relative to the working directory. */
function bindPath(socketPath: string): string {
  const absolute = resolve(socketPath);
  const fromCwd = relative(process.cwd(), absolute);
  const shortest = fromCwd.length < absolute.length && !fromCwd.startsWith("..") ? fromCwd : absolute;
  if (Buffer.byteLength(shortest) > MAX_SOCKET_PATH) {
    throw new Error(
      `the SDS socket ${absolute} is longer than the ${MAX_SOCKET_PATH} bytes a Unix socket path may have: give a shorter --data`,
    );
  }
  return shortest;
}

export async function startSdsServer(options: SdsServerOptions): Promise<SdsServer> {
  const log = options.log ?? (() => {});
  const socketPath = resolve(options.socketPath);
  const target = bindPath(socketPath);
  // Only the agent's user may enter the directory, so only it can connect (see the header).
  const dir = dirname(socketPath);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  // A socket left by an agent that was killed would make the bind fail (EADDRINUSE).
  rmSync(socketPath, { force: true });

  const held = new Map<string, Held>();
  const streams = new Set<Stream>();
  let requests = 0;
  let responses = 0;

  const hold = (secret: Secret) => {
    const any = encodeAny(SECRET_TYPE_URL, encodeMessage(SECRET_TYPE_URL, secret));
    const version = createHash("sha256").update(any).digest("hex").slice(0, 16);
    const before = held.get(secret.name as string);
    if (before?.version === version) return false;
    held.set(secret.name as string, { secret, version, any });
    return true;
  };

  /** Answers the stream if what it asked for has a content it was not sent yet. */
  const answer = (stream: Stream) => {
    const present = stream.names.filter((name) => held.has(name));
    if (present.length === 0) return;
    const version = present.map((name) => `${name}=${held.get(name)?.version}`).join(",");
    if (version === stream.sent) return;
    stream.sent = version;
    stream.nonce++;
    const resources: WireResource[] = present.map((name) => {
      const h = held.get(name) as Held;
      return { name, version: h.version, any: h.any };
    });
    responses++;
    stream.call.write(
      Buffer.from(encodeDiscoveryResponse(version, SECRET_TYPE_URL, String(stream.nonce), resources)),
    );
  };

  const open = (call: grpc.ServerDuplexStream<Bytes, Bytes>) => {
    const stream: Stream = { call, names: [], sent: "", nonce: 0, node: "" };
    streams.add(stream);
    const gone = () => streams.delete(stream);
    call.on("data", (bytes: Bytes) => {
      requests++;
      let request: ReturnType<typeof decodeDiscoveryRequest>;
      try {
        request = decodeDiscoveryRequest(bytes);
      } catch (error) {
        call.emit("error", {
          code: grpc.status.INVALID_ARGUMENT,
          details: `wasmesh SDS: cannot read the request: ${(error as Error).message}`,
        });
        return;
      }
      if (request.node?.id) stream.node = request.node.id;
      if (request.typeUrl !== SECRET_TYPE_URL) {
        call.emit("error", {
          code: grpc.status.INVALID_ARGUMENT,
          details: `wasmesh SDS serves ${SECRET_TYPE_URL} only, not ${request.typeUrl || "(no type_url)"}`,
        });
        return;
      }
      if (request.errorDetail) {
        log(
          `sds: Envoy${stream.node ? ` ${stream.node}` : ""} refused ${request.resourceNames.join(", ")}: ${request.errorDetail.message}`,
        );
      }
      const names = [...new Set(request.resourceNames)].sort();
      if (names.join("\u0000") !== stream.names.join("\u0000")) {
        stream.names = names;
        // What it asks for now has not been sent on this stream, whatever was before.
        stream.sent = "";
      }
      answer(stream);
    });
    call.on("end", () => {
      gone();
      call.end();
    });
    for (const event of ["cancelled", "close", "error"] as const) call.on(event, gone);
  };

  const server = new grpc.Server();
  server.addService(SDS_SERVICE, { StreamSecrets: open });
  await new Promise<void>((resolveBind, reject) =>
    server.bindAsync(`unix:${target}`, grpc.ServerCredentials.createInsecure(), (error) =>
      error ? reject(error) : resolveBind(),
    ),
  ).catch((error: unknown) => {
    throw new Error(`SDS: cannot listen on ${socketPath}: ${(error as Error).message}`);
  });
  // Belt and braces behind the directory's mode: the socket itself for its owner only.
  chmodSync(socketPath, 0o600);
  log(`sds: serving Envoy's certificates on ${socketPath}`);

  let closing: Promise<void> | undefined;
  return {
    socketPath,
    update(secrets) {
      let changed = false;
      if (secrets.certificate !== undefined) {
        changed =
          hold(certificateSecret(secrets.certificate.certificateChain, secrets.certificate.privateKey)) ||
          changed;
      }
      if (secrets.trustBundle !== undefined)
        changed = hold(trustBundleSecret(secrets.trustBundle)) || changed;
      if (changed) for (const stream of streams) answer(stream);
    },
    version: (name) => held.get(name)?.version,
    streams: () => [...streams].map((s) => [...s.names]),
    get requests() {
      return requests;
    },
    get responses() {
      return responses;
    },
    close() {
      closing ??= (async () => {
        for (const stream of streams) stream.call.end();
        await shutdownGrpcServer(server);
        rmSync(socketPath, { force: true });
      })();
      return closing;
    },
  };
}
