// A client of the agent's SDS server (dataplane/sds.ts) that speaks as Envoy's SDS subscription does:
// StreamSecrets over the Unix socket, state of the world, requests written by the test, responses
// decoded into the secrets they carry.
import * as grpc from "@grpc/grpc-js";
import { decodeMessage, SDS_STREAM_METHOD, SECRET_TYPE_URL } from "../../control-plane/envoy/index.ts";
import {
  type DecodedResponse,
  type DiscoveryRequest,
  decodeDiscoveryResponse,
  encodeDiscoveryRequest,
} from "../../control-plane/xds/codec.ts";

/** A Secret as decoded (the fields the agent sets). */
export interface DecodedSecret {
  name: string;
  tls_certificate?: { certificate_chain: { inline_string: string }; private_key: { inline_string: string } };
  validation_context?: { trusted_ca: { inline_string: string } };
}

export interface SdsStream {
  readonly responses: DecodedResponse[];
  send(request: Partial<DiscoveryRequest>): void;
  status(): grpc.StatusObject | undefined;
  close(): void;
}

/** The secrets of a response. */
export function secretsOf(response: DecodedResponse): DecodedSecret[] {
  return response.resources.map((r) => {
    if (r.typeUrl !== SECRET_TYPE_URL) throw new Error(`a resource of type ${r.typeUrl} in an SDS response`);
    return decodeMessage(SECRET_TYPE_URL, r.value) as unknown as DecodedSecret;
  });
}

/** The latest content of a secret on the stream, if any response held it. */
export function latestSecret(stream: SdsStream, name: string): DecodedSecret | undefined {
  for (const response of [...stream.responses].reverse()) {
    const secret = secretsOf(response).find((s) => s.name === name);
    if (secret) return secret;
  }
  return undefined;
}

const clients = new Set<grpc.Client>();

/** Opens a StreamSecrets stream on the socket; closeSdsClients() closes every client opened. */
export function connectSds(socketPath: string): SdsStream {
  const client = new grpc.Client(`unix:${socketPath}`, grpc.credentials.createInsecure());
  clients.add(client);
  const identity = (b: Buffer) => b;
  const call = client.makeBidiStreamRequest(SDS_STREAM_METHOD, identity, identity);
  const responses: DecodedResponse[] = [];
  let status: grpc.StatusObject | undefined;
  call.on("data", (bytes: Buffer) => responses.push(decodeDiscoveryResponse(bytes)));
  call.on("status", (s: grpc.StatusObject) => {
    status = s;
  });
  call.on("error", () => {});
  return {
    responses,
    send: (request) =>
      call.write(
        Buffer.from(
          encodeDiscoveryRequest({
            versionInfo: "",
            resourceNames: [],
            typeUrl: SECRET_TYPE_URL,
            responseNonce: "",
            ...request,
          }),
        ),
      ),
    status: () => status,
    close: () => call.cancel(),
  };
}

export function closeSdsClients(): void {
  for (const client of clients) client.close();
  clients.clear();
}
