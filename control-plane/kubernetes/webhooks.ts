// The admission webhooks' HTTPS server and their registrations (issue 12, §1 and §2). The API server
// calls webhooks over TLS only and checks the certificate against the caBundle of the registration:
// the server presents a certificate the mesh CA issues for the webhook Service's names, and the
// leader replica keeps the registrations' caBundle equal to the mesh's trust bundle (so a CA rotation
// reaches them), as Istio's istiod patches its own webhook configurations.
import https from "node:https";
import type { AddressInfo } from "node:net";
import type { AdmissionHandler, AdmissionReview } from "./admission.ts";
import { KubeApiError, type KubeClient, type KubeObject } from "./client.ts";
import { FOREIGN_GROUPS, FOREIGN_KINDS, GROUP, VERSION } from "./crds.ts";
import { INJECTION_ENABLED, INJECTION_LABEL } from "./injection.ts";
import { markerWebhooks } from "./markers.ts";

/** The largest AdmissionReview read (a Pod or a resource with its old version fits many times). */
const MAX_REVIEW_BYTES = 8 * 1024 * 1024;

export const VALIDATE_PATH = "/validate";
/** Other meshes' objects (kubernetes/imports.ts). */
export const VALIDATE_IMPORTS_PATH = "/validate-imports";
export const INJECT_PATH = "/inject";
export const VALIDATING_WEBHOOK = "wasmesh-validation";
export const MUTATING_WEBHOOK = "wasmesh-sidecar-injector";

export interface WebhookServer {
  readonly port: number;
  /** A renewed certificate for the connections opened from now on. */
  setCertificate(material: { cert: string; key: string }): void;
  close(): Promise<void>;
}

export async function startWebhookServer(options: {
  port: number;
  address: string;
  tls: { cert: string; key: string };
  handlers: Partial<Record<string, AdmissionHandler>>;
  log: (line: string) => void;
}): Promise<WebhookServer> {
  const server = https.createServer({ cert: options.tls.cert, key: options.tls.key }, (req, res) => {
    const reply = (status: number, body: unknown) => {
      res.writeHead(status, { "Content-Type": "application/json" });
      res.end(JSON.stringify(body));
    };
    const handler = options.handlers[new URL(req.url ?? "/", "https://webhook").pathname];
    if (req.method !== "POST" || handler === undefined) {
      reply(404, { message: `no webhook at ${req.method} ${req.url}` });
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_REVIEW_BYTES) req.destroy();
      else chunks.push(chunk);
    });
    req.on("end", () => {
      let review: AdmissionReview;
      try {
        review = JSON.parse(Buffer.concat(chunks).toString("utf8")) as AdmissionReview;
        if (review.request?.uid === undefined) throw new Error("no request.uid");
      } catch (error) {
        reply(400, { message: `not an AdmissionReview: ${(error as Error).message}` });
        return;
      }
      handler(review).then(
        (answered) => reply(200, answered),
        (error: unknown) => {
          // A bug here must not let a resource through unchecked: refuse, and say so in the log.
          options.log(`wasmesh webhook: ${req.url} failed: ${(error as Error).stack ?? String(error)}`);
          reply(200, {
            apiVersion: "admission.k8s.io/v1",
            kind: "AdmissionReview",
            response: {
              uid: review.request?.uid,
              allowed: false,
              status: { code: 500, message: `wasmesh webhook failed: ${(error as Error).message}` },
            },
          });
        },
      );
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.address, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    setCertificate: (material) => server.setSecureContext(material),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** Where the API server reaches the webhooks: the Service in front of the control plane, or a URL. */
export type WebhookTarget =
  | { service: { namespace: string; name: string; port?: number } }
  /** https://host:port, without a path (tests: the control plane on loopback). */
  | { url: string };

function clientConfig(target: WebhookTarget, path: string, caBundle: string) {
  const bundle = Buffer.from(caBundle).toString("base64");
  return "url" in target
    ? { url: `${target.url.replace(/\/$/, "")}${path}`, caBundle: bundle }
    : { service: { ...target.service, port: target.service.port ?? 443, path }, caBundle: bundle };
}

/**
 * The ValidatingWebhookConfiguration of wasmesh's kinds. Failure policy Fail: while no replica
 * answers, writes of wasmesh resources are refused rather than stored unchecked (the mesh keeps
 * running on what it has). DELETEs are checked too: deleting a Service a Route sends to is refused.
 */
export function validatingWebhookConfiguration(target: WebhookTarget, caBundle: string): KubeObject {
  return {
    apiVersion: "admissionregistration.k8s.io/v1",
    kind: "ValidatingWebhookConfiguration",
    metadata: { name: VALIDATING_WEBHOOK, labels: { "app.kubernetes.io/part-of": "wasmesh" } },
    webhooks: [
      {
        name: `validate.${GROUP}`,
        admissionReviewVersions: ["v1"],
        sideEffects: "None",
        failurePolicy: "Fail",
        timeoutSeconds: 10,
        clientConfig: clientConfig(target, VALIDATE_PATH, caBundle),
        rules: [
          {
            apiGroups: [GROUP],
            apiVersions: [VERSION],
            operations: ["CREATE", "UPDATE", "DELETE"],
            resources: ["*"],
            scope: "*",
          },
        ],
      },
      // Other meshes' kinds that wasmesh converts (kubernetes/imports.ts): what wasmesh cannot carry
      // is refused, naming the field. Failure policy Ignore: while no replica answers, the other
      // mesh's objects are still stored (the other mesh may run beside wasmesh during a migration),
      // and the reconciler reports what it cannot convert as Events on the object.
      {
        name: `imports.${GROUP}`,
        admissionReviewVersions: ["v1"],
        sideEffects: "None",
        failurePolicy: "Ignore",
        timeoutSeconds: 10,
        clientConfig: clientConfig(target, VALIDATE_IMPORTS_PATH, caBundle),
        rules: FOREIGN_GROUPS.map((group) => ({
          apiGroups: [group],
          apiVersions: ["*"],
          operations: ["CREATE", "UPDATE", "DELETE"],
          resources: FOREIGN_KINDS.filter((k) => k.group === group).map((k) => k.plural),
          scope: "*",
        })),
      },
    ],
  };
}

/**
 * The MutatingWebhookConfiguration of sidecar injection (kubernetes/injection.ts): Pod CREATEs in
 * the namespaces labelled `wasmesh.io/sidecar-injection: enabled`, never in the control plane's own
 * (its pods would wait for the webhook they serve).
 *
 * Failure policy Fail: while no replica answers, pods of mesh namespaces are not created (their
 * controllers retry) rather than created without a sidecar, which would leave them outside the mesh
 * until deleted, unable to reach services that take mTLS only, and never told so. Pods elsewhere are
 * not affected: the namespaceSelector keeps the API server from calling the webhook for them.
 *
 * Then one webhook per other mesh's injection marker (markers.ts markerWebhooks: Istio's and Kuma's
 * labels, failing closed too; the annotations of Consul and older Istio and Kuma, which no selector
 * reads, with every other pod of the cluster and failures ignored), to the same handler.
 */
export function mutatingWebhookConfiguration(
  target: WebhookTarget,
  caBundle: string,
  options: { controlPlaneNamespace: string; timeoutSeconds?: number },
): KubeObject {
  const common = {
    admissionReviewVersions: ["v1"],
    sideEffects: "None",
    // The patch is whole at once; another webhook's later change is not a reason to run again.
    reinvocationPolicy: "Never",
    timeoutSeconds: options.timeoutSeconds ?? 10,
    clientConfig: clientConfig(target, INJECT_PATH, caBundle),
  };
  const rules = [
    {
      apiGroups: [""],
      apiVersions: ["v1"],
      operations: ["CREATE"],
      resources: ["pods"],
      scope: "Namespaced",
    },
  ];
  return {
    apiVersion: "admissionregistration.k8s.io/v1",
    kind: "MutatingWebhookConfiguration",
    metadata: { name: MUTATING_WEBHOOK, labels: { "app.kubernetes.io/part-of": "wasmesh" } },
    webhooks: [
      {
        name: `inject.${GROUP}`,
        ...common,
        failurePolicy: "Fail",
        namespaceSelector: {
          matchLabels: { [INJECTION_LABEL]: INJECTION_ENABLED },
          matchExpressions: [
            {
              key: "kubernetes.io/metadata.name",
              operator: "NotIn",
              values: [options.controlPlaneNamespace],
            },
          ],
        },
        rules,
      },
      ...markerWebhooks(options.controlPlaneNamespace).map((hook) => ({
        ...hook,
        name: `${hook.name}.inject.${GROUP}`,
        ...common,
        rules,
      })),
    ],
  };
}

/**
 * Creates the registration, or brings an existing one's webhooks (targets, caBundle) up to date:
 * the leader runs it at start and after each CA rotation step.
 */
/**
 * Whether `current` already says everything `desired` says: the API server fills in defaults
 * (matchPolicy, timeoutSeconds, an empty objectSelector...), so a stored registration is never
 * equal to the one written, and comparing whole objects would rewrite it on every election.
 */
export function covers(current: unknown, desired: unknown): boolean {
  if (Array.isArray(desired)) {
    return (
      Array.isArray(current) &&
      current.length === desired.length &&
      desired.every((item, i) => covers(current[i], item))
    );
  }
  if (typeof desired === "object" && desired !== null) {
    if (typeof current !== "object" || current === null || Array.isArray(current)) return false;
    const have = current as Record<string, unknown>;
    return Object.entries(desired).every(([key, value]) => value === undefined || covers(have[key], value));
  }
  return current === desired;
}

export async function ensureWebhookConfiguration(client: KubeClient, desired: KubeObject): Promise<void> {
  const plural =
    desired.kind === "ValidatingWebhookConfiguration"
      ? "validatingwebhookconfigurations"
      : "mutatingwebhookconfigurations";
  const collection = `/apis/admissionregistration.k8s.io/v1/${plural}`;
  const name = desired.metadata?.name ?? "";
  for (let attempt = 0; ; attempt++) {
    const current = await client.find(`${collection}/${name}`);
    try {
      if (current === undefined) await client.request("POST", collection, { body: desired });
      else if (!covers(current.webhooks, desired.webhooks))
        await client.request("PUT", `${collection}/${name}`, {
          body: {
            ...desired,
            metadata: { ...desired.metadata, resourceVersion: current.metadata?.resourceVersion },
          },
        });
      return;
    } catch (error) {
      // Another replica wrote it in between: read again.
      if (attempt < 3 && error instanceof KubeApiError && error.status === 409) continue;
      throw error;
    }
  }
}
