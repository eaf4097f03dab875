// The mesh CA's certificates in real Envoys (issue 11, §1; the mTLS configuration itself comes with
// §2): two sidecars on static configuration, "reviews" calling "ratings". ratings' inbound listener
// requires a client certificate from the mesh's bundle whose URI SAN is reviews' SPIFFE ID (Envoy's
// match_typed_subject_alt_names), and tells its app who called (x-forwarded-client-cert); reviews'
// cluster verifies ratings' SPIFFE ID. The right pair completes the handshake and the request; a
// client expecting another server identity, a client certificate of another service, one of another
// mesh's CA and plain text are each refused, and Envoy's own TLS counters say why.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type CertificateAuthority,
  DEFAULT_TRUST_DOMAIN,
  type IssuedCertificate,
  universalIdentity,
} from "../../control-plane/ca/index.ts";
import { type OpenedCa, openTestCa, operatorPki, workloadRequest } from "../support/ca.ts";
import {
  type EnvoyProcess,
  freePort,
  loopbackCluster,
  startEnvoy,
  staticBootstrap,
} from "../support/envoy.ts";
import { sendHttp } from "../support/mesh-envoy.ts";
import { startUpstream, type Upstream } from "../support/upstreams.ts";

const id = (service: string) => `spiffe://${DEFAULT_TRUST_DOMAIN}/ns/default/sa/${service}`;

interface Credentials {
  key: string;
  issued: IssuedCertificate;
}

async function credentials(ca: CertificateAuthority, service: string): Promise<Credentials> {
  const request = await workloadRequest();
  return {
    key: request.privateKeyPem,
    issued: await ca.issue({ csr: request.csr, identity: universalIdentity(service) }),
  };
}

/** Envoy's CommonTlsContext: our certificate chain and key, the bundle, and the peer's SPIFFE ID to require. */
function commonTls(own: Credentials, bundle: string, peer: string): object {
  return {
    tls_certificates: [
      {
        certificate_chain: { inline_string: own.issued.certificateChain },
        private_key: { inline_string: own.key },
      },
    ],
    validation_context: {
      trusted_ca: { inline_string: bundle },
      match_typed_subject_alt_names: [{ san_type: "URI", matcher: { exact: peer } }],
    },
  };
}

const TLS = "envoy.transport_sockets.tls";
const upstreamTls = (common: object) => ({
  transport_socket: {
    name: TLS,
    typed_config: {
      "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
      common_tls_context: common,
    },
  },
});

function hcm(statPrefix: string, routes: object[], extra: object = {}): object {
  return {
    name: "envoy.filters.network.http_connection_manager",
    typed_config: {
      "@type":
        "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
      stat_prefix: statPrefix,
      route_config: { name: statPrefix, virtual_hosts: [{ name: "all", domains: ["*"], routes }] },
      http_filters: [
        {
          name: "envoy.filters.http.router",
          typed_config: { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" },
        },
      ],
      ...extra,
    },
  };
}

const route = (prefix: string, cluster: string) => ({ match: { prefix }, route: { cluster } });

/**
 * ratings' inbound listener: requires a client certificate of `bundle` naming reviews' SPIFFE ID,
 * and tells the app who called (the verified peer's URI SAN, in x-forwarded-client-cert).
 */
function inboundListener(name: string, port: number, own: Credentials, bundle: string): object {
  return {
    name,
    address: { socket_address: { address: "127.0.0.1", port_value: port } },
    filter_chains: [
      {
        filters: [
          hcm(name, [route("/", "app")], {
            forward_client_cert_details: "SANITIZE_SET",
            set_current_client_cert_details: { uri: true },
          }),
        ],
        transport_socket: {
          name: TLS,
          typed_config: {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            require_client_certificate: true,
            common_tls_context: commonTls(own, bundle, id("reviews")),
          },
        },
      },
    ],
  };
}

let opened: OpenedCa;
let stranger: OpenedCa;
/** A CA signing with an operator's intermediate: leaves chain to the operator's root. */
let operator: OpenedCa;
let byoInboundPort: number;
let app: Upstream;
let ratings: EnvoyProcess;
let reviews: EnvoyProcess;
let outboundPort: number;
let inboundPort: number;

beforeAll(async () => {
  opened = await openTestCa();
  stranger = await openTestCa();
  operator = await openTestCa({ external: (await operatorPki({ levels: 2 })).external });
  const operatorBundle = (await operator.ca.trustBundle()).pem;
  const byoRatings = await credentials(operator.ca, "ratings");
  const byoReviews = await credentials(operator.ca, "reviews");
  const { ca } = opened;
  const bundle = (await ca.trustBundle()).pem;
  const ratingsCreds = await credentials(ca, "ratings");
  const reviewsCreds = await credentials(ca, "reviews");
  const paymentsCreds = await credentials(ca, "payments");
  // reviews' identity, from a CA that is not this mesh's.
  const strangerCreds = await credentials(stranger.ca, "reviews");

  app = await startUpstream({ name: "ratings-app" });
  inboundPort = await freePort();
  byoInboundPort = await freePort();
  outboundPort = await freePort();

  ratings = await startEnvoy({
    name: "ratings",
    bootstrap: staticBootstrap({
      adminPort: 0,
      nodeId: "ratings",
      listeners: [
        inboundListener("inbound", inboundPort, ratingsCreds, bundle),
        // The same, with the operator's intermediate: each side presents leaf + two intermediates.
        inboundListener("inbound_byo", byoInboundPort, byoRatings, operatorBundle),
      ],
      clusters: [loopbackCluster("app", app.port)],
    }),
  });

  const toRatings = (name: string, own: Credentials, expectServer: string) =>
    loopbackCluster(name, inboundPort, { extra: upstreamTls(commonTls(own, bundle, expectServer)) });
  reviews = await startEnvoy({
    name: "reviews",
    bootstrap: staticBootstrap({
      adminPort: 0,
      nodeId: "reviews",
      listeners: [
        {
          name: "outbound",
          address: { socket_address: { address: "127.0.0.1", port_value: outboundPort } },
          filter_chains: [
            {
              filters: [
                hcm("outbound", [
                  route("/right", "ratings"),
                  route("/wrong-server", "expects-payments"),
                  route("/as-payments", "as-payments"),
                  route("/stranger", "stranger"),
                  route("/plain", "plain"),
                  route("/byo", "byo"),
                ]),
              ],
            },
          ],
        },
      ],
      clusters: [
        toRatings("ratings", reviewsCreds, id("ratings")),
        // reviews' certificate, but expecting ratings to be payments.
        toRatings("expects-payments", reviewsCreds, id("payments")),
        // A mesh certificate of a service ratings does not accept.
        toRatings("as-payments", paymentsCreds, id("ratings")),
        // reviews' identity signed by another CA.
        toRatings("stranger", strangerCreds, id("ratings")),
        loopbackCluster("plain", inboundPort),
        loopbackCluster("byo", byoInboundPort, {
          extra: upstreamTls(commonTls(byoReviews, operatorBundle, id("ratings"))),
        }),
      ],
    }),
  });
});

afterAll(async () => {
  await reviews?.stop();
  await ratings?.stop();
  await app?.close();
  await opened?.close();
  await stranger?.close();
  await operator?.close();
});

/** A counter of Envoy's stats, 0 when absent. */
async function counter(envoy: EnvoyProcess, name: string): Promise<number> {
  return (await envoy.stats(`^${name.replace(/[.]/g, "\\.")}$`)).get(name) ?? 0;
}

const inboundStat = (name: string) => `listener.127.0.0.1_${inboundPort}.ssl.${name}`;

describe("mTLS between two Envoys with the mesh CA's certificates", () => {
  it("completes the handshake both ways and the app sees the caller's SPIFFE ID", async () => {
    const before = app.count;
    const response = await sendHttp(outboundPort, { path: "/right" });
    expect(response.status).toBe(200);
    expect(response.body).toBe("ratings-app");
    expect(app.count).toBe(before + 1);
    const xfcc = String(app.requests[app.requests.length - 1]?.headers["x-forwarded-client-cert"]);
    expect(xfcc).toContain(`By=${id("ratings")}`);
    expect(xfcc).toContain(`URI=${id("reviews")}`);
    expect(await counter(reviews, "cluster.ratings.ssl.handshake")).toBeGreaterThanOrEqual(1);
    expect(await counter(ratings, inboundStat("handshake"))).toBeGreaterThanOrEqual(1);
  });

  it("refuses a server whose SPIFFE ID is not the one expected (the client's validation)", async () => {
    const before = app.count;
    const failures = await counter(reviews, "cluster.expects-payments.ssl.fail_verify_san");
    const response = await sendHttp(outboundPort, { path: "/wrong-server" });
    expect(response.status).toBe(503);
    expect(await counter(reviews, "cluster.expects-payments.ssl.fail_verify_san")).toBeGreaterThan(failures);
    expect(app.count).toBe(before);
  });

  it("refuses a mesh client certificate of a service the listener does not accept (the server's validation)", async () => {
    const before = app.count;
    const failures = await counter(ratings, inboundStat("fail_verify_san"));
    const response = await sendHttp(outboundPort, { path: "/as-payments" });
    expect(response.status).toBe(503);
    expect(await counter(ratings, inboundStat("fail_verify_san"))).toBeGreaterThan(failures);
    expect(app.count).toBe(before);
  });

  it("works the same with an operator's intermediate: each side presents its leaf and two intermediates", async () => {
    const before = app.count;
    const response = await sendHttp(outboundPort, { path: "/byo" });
    expect(response.status).toBe(200);
    expect(app.count).toBe(before + 1);
    expect(String(app.requests[app.requests.length - 1]?.headers["x-forwarded-client-cert"])).toContain(
      `URI=${id("reviews")}`,
    );
    expect(
      await counter(ratings, `listener.127.0.0.1_${byoInboundPort}.ssl.handshake`),
    ).toBeGreaterThanOrEqual(1);
  });

  it("refuses a certificate of another CA with the right SPIFFE ID, and plain text", async () => {
    const before = app.count;
    const failures = await counter(ratings, inboundStat("fail_verify_error"));
    expect((await sendHttp(outboundPort, { path: "/stranger" })).status).toBe(503);
    expect(await counter(ratings, inboundStat("fail_verify_error"))).toBeGreaterThan(failures);
    const errors = await counter(ratings, inboundStat("connection_error"));
    expect((await sendHttp(outboundPort, { path: "/plain" })).status).toBe(503);
    expect(await counter(ratings, inboundStat("connection_error"))).toBeGreaterThan(errors);
    expect(app.count).toBe(before);
    // And the right pair still works afterwards.
    expect((await sendHttp(outboundPort, { path: "/right" })).status).toBe(200);
  });
});
