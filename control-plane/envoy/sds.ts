// SDS as a sidecar run by the data-plane agent speaks it (issue 11): the agent serves its Envoy two
// secrets over a Unix socket in its data directory, the workload's certificate with its private key
// and the mesh's trust bundle, and never the control plane, so the key stays on the workload's host
// (as istio-agent serves its Envoy). The names and the config source are shared by the agent's
// bootstrap (the static cluster), translation (the TLS contexts that name the secrets) and the agent's
// SDS server (dataplane/sds.ts).
import { envoyEnum } from "./enums.ts";
import { EXTENSION_TYPE } from "./protos.ts";
import type { ConfigSource, Secret } from "./types.generated.ts";

/** The static cluster of the agent's bootstrap that reaches its SDS server. */
export const SDS_CLUSTER = "wasmesh-sds";

/** The secret holding the workload's certificate chain and private key (Istio's name). */
export const CERTIFICATE_SECRET = "default";

/** The secret holding the trust bundle: every root of the mesh CA (Istio's name). */
export const TRUST_BUNDLE_SECRET = "ROOTCA";

/**
 * The agent's SDS socket, relative to its data directory, which is Envoy's working directory: the
 * bootstrap names it relatively, as the module files are, so that a deep data directory does not
 * run into the 107 bytes a socket path may have.
 */
export const SDS_SOCKET = "sds/sds.sock";

export const SECRET_TYPE_URL = EXTENSION_TYPE.secret;

export const SDS_SERVICE_NAME = "envoy.service.secret.v3.SecretDiscoveryService";
export const SDS_STREAM_METHOD = `/${SDS_SERVICE_NAME}/StreamSecrets`;

/** Where Envoy gets a secret: the agent's SDS server, state of the world over gRPC. */
export function sdsConfigSource(): ConfigSource {
  const v3 = envoyEnum("envoy.config.core.v3.ApiVersion", "V3");
  return {
    api_config_source: {
      api_type: envoyEnum("envoy.config.core.v3.ApiConfigSource.ApiType", "GRPC"),
      transport_api_version: v3,
      grpc_services: [{ envoy_grpc: { cluster_name: SDS_CLUSTER } }],
    },
    resource_api_version: v3,
  };
}

/** The `default` secret: the certificate chain (leaf first) and its PKCS#8 PEM key. */
export function certificateSecret(certificateChain: string, privateKey: string): Secret {
  return {
    name: CERTIFICATE_SECRET,
    tls_certificate: {
      certificate_chain: { inline_string: certificateChain },
      private_key: { inline_string: privateKey },
    },
  };
}

/** The `ROOTCA` secret: the PEM roots a peer's certificate must chain to. */
export function trustBundleSecret(bundle: string): Secret {
  return { name: TRUST_BUNDLE_SECRET, validation_context: { trusted_ca: { inline_string: bundle } } };
}
