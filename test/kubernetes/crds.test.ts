// The CRDs generated from the resource model (control-plane/kubernetes/crds.ts) against the real
// API server (test/support/kubernetes.ts): each is accepted and Established, the example mesh's
// documents are stored as custom objects, and the structural schemas refuse bad objects with the
// field path, as `kubectl apply` would show. (The rules JSON Schema cannot say are the validating
// webhook's, later; unit tests of the conversion are in test/control-plane/kubernetes-crds.test.ts.)
import { readFileSync } from "node:fs";
import { request } from "node:https";
import { join } from "node:path";
import * as k8s from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { crds, crdsYaml, resourceOf } from "../../control-plane/kubernetes/crds.ts";
import type { Kind } from "../../control-plane/resources/index.ts";
import { REPO_ROOT } from "../support/envoy.ts";
import { type ApiServer, startApiServer } from "../support/kubernetes.ts";
import { until } from "../support/wait.ts";

let server: ApiServer;
let custom: k8s.CustomObjectsApi;
/** A fresh namespace: without a controller manager, deleted namespaces never go away. */
const namespace = `wasmesh-crds-${Math.random().toString(36).slice(2, 8)}`;

interface Document {
  apiVersion: string;
  kind: Kind;
  metadata: { name: string; labels?: Record<string, string> };
  spec: Record<string, unknown>;
}

const examples = ["mesh.yaml", "telemetry.yaml"].flatMap((file) =>
  parseAllDocuments(readFileSync(join(REPO_ROOT, "deploy", "examples", file), "utf8")).map(
    (d) => d.toJS() as Document,
  ),
);

/** Creates a document as a custom object (namespaced or not, as its kind's CRD says). */
function create(document: Document, fieldValidation = "Strict"): Promise<unknown> {
  const { group, version, plural, namespaced } = resourceOf(document.kind);
  return namespaced
    ? custom.createNamespacedCustomObject({
        group,
        version,
        plural,
        namespace,
        body: document,
        fieldValidation,
      })
    : custom.createClusterCustomObject({ group, version, plural, body: document, fieldValidation });
}

/** "stored", or the API server's refusal as "<code> <body>". */
const outcome = (document: Document) =>
  create(document).then(
    () => "stored",
    // The Status's message, where the API server names the fields (unescaped, as kubectl prints it).
    (error: { code?: number; body?: unknown }) => `${error.code} ${messageOf(error.body)}`,
  );

function messageOf(body: unknown): string {
  try {
    return String((JSON.parse(String(body)) as { message?: unknown }).message);
  } catch {
    return String(body);
  }
}

beforeAll(async () => {
  server = await startApiServer();
  custom = server.kubeConfig.makeApiClient(k8s.CustomObjectsApi);
  await server.kubeConfig
    .makeApiClient(k8s.CoreV1Api)
    .createNamespace({ body: { metadata: { name: namespace } } });
}, 120_000);

afterAll(async () => {
  await server?.stop();
});

describe("wasmesh's CRDs on a real API server", () => {
  it("accepts every generated CRD, and each becomes Established and serves its kind", async () => {
    const extensions = server.kubeConfig.makeApiClient(k8s.ApiextensionsV1Api);
    // deploy/kubernetes/crds.yaml, as the client reads a manifest (into its own model, where enum is
    // _enum: a plain object would lose enums and preserved fields unseen); it is what crds() makes.
    const manifest = readFileSync(join(REPO_ROOT, "deploy", "kubernetes", "crds.yaml"), "utf8");
    expect(manifest).toBe(crdsYaml());
    for (const body of k8s.loadAllYaml(manifest) as k8s.V1CustomResourceDefinition[]) {
      await extensions.createCustomResourceDefinition({ body });
    }
    for (const crd of crds()) {
      await until(
        `${crd.metadata.name} to be Established`,
        async () => {
          const read = await extensions.readCustomResourceDefinition({ name: crd.metadata.name });
          const conditions = read.status?.conditions ?? [];
          const refused = conditions.find(
            (c) => c.type === "NonStructuralSchema" || (c.type === "NamesAccepted" && c.status === "False"),
          );
          if (refused) throw new Error(`${crd.metadata.name}: ${refused.type} ${refused.message}`);
          return conditions.some((c) => c.type === "Established" && c.status === "True");
        },
        30_000,
        100,
      );
      // The API server serves a new CRD's endpoint a moment after Established.
      const { group, version, plural, namespaced } = resourceOf(crd.spec.names.kind as Kind);
      await until(`the ${plural} endpoint`, () =>
        (namespaced
          ? custom.listNamespacedCustomObject({ group, version, plural, namespace })
          : custom.listClusterCustomObject({ group, version, plural })
        ).then(
          () => true,
          () => false,
        ),
      );
    }
  }, 120_000);

  it("stores every document of deploy/examples/mesh.yaml and telemetry.yaml and reads it back unchanged", async () => {
    expect(new Set(examples.map((d) => d.kind)).size).toBeGreaterThanOrEqual(9);
    for (const document of examples)
      expect(await outcome(document), `${document.kind} ${document.metadata.name}`).toBe("stored");
    for (const document of examples) {
      const { group, version, plural, namespaced } = resourceOf(document.kind);
      const name = document.metadata.name;
      const read = (await (namespaced
        ? custom.getNamespacedCustomObject({ group, version, plural, namespace, name })
        : custom.getClusterCustomObject({ group, version, plural, name }))) as Document;
      // Nothing pruned: the structural schema knows every field the example uses.
      expect(read.spec, `${document.kind} ${name}`).toEqual(document.spec);
    }
  });

  it("serves kubectl get's columns: the printer columns over the stored objects", async () => {
    // What `kubectl get workloads` asks for: the API server's Table, built from the CRD's columns.
    const table = await new Promise<string>((resolve, reject) => {
      const req = request(
        `${server.url}/apis/wasmesh.io/v1alpha1/namespaces/${namespace}/workloads`,
        {
          headers: {
            authorization: `Bearer ${server.token}`,
            accept: "application/json;as=Table;v=v1;g=meta.k8s.io",
          },
          // The private API server's certificate is self-signed (test/support/kubernetes.ts).
          rejectUnauthorized: false,
        },
        (res) => {
          let body = "";
          res.on("data", (chunk: Buffer) => {
            body += chunk.toString("utf8");
          });
          res.on("end", () => resolve(body));
        },
      );
      req.on("error", reject);
      req.end();
    });
    const parsed = JSON.parse(table) as {
      columnDefinitions: { name: string }[];
      rows: { cells: unknown[] }[];
    };
    expect(parsed.columnDefinitions.map((c) => c.name)).toEqual([
      "Name",
      "Service",
      "Address",
      "Port",
      "Zone",
      "Age",
    ]);
    expect(parsed.rows.map((r) => r.cells.slice(0, 5))).toContainEqual([
      "reviews-v1-a",
      "reviews",
      "10.0.1.11",
      9080,
      "zone-a",
    ]);
  });

  const routeOf = (weight: number): Document => ({
    apiVersion: "wasmesh.io/v1alpha1",
    kind: "Route",
    metadata: { name: `weight-${weight}` },
    spec: { service: "reviews", rules: [{ destinations: [{ service: "reviews", weight }] }] },
  });
  const invalid: [string, Document, RegExp][] = [
    [
      "a Route weight over 100",
      routeOf(101),
      /spec\.rules\[0\]\.destinations\[0\]\.weight: Invalid value: 101/,
    ],
    [
      "a Service without its required ports",
      { apiVersion: "wasmesh.io/v1alpha1", kind: "Service", metadata: { name: "no-ports" }, spec: {} },
      /spec\.ports: Required value/,
    ],
    [
      "an AccessRule action outside the enum",
      {
        apiVersion: "wasmesh.io/v1alpha1",
        kind: "AccessRule",
        metadata: { name: "maybe" },
        spec: { source: "*", destination: "reviews", action: "maybe" },
      },
      /spec\.action: Unsupported value: "maybe"/,
    ],
    [
      "a Workload whose service is no DNS label",
      {
        apiVersion: "wasmesh.io/v1alpha1",
        kind: "Workload",
        metadata: { name: "upper" },
        spec: { service: "Reviews", address: "10.0.0.1", port: 9080 },
      },
      /spec\.service: Invalid value: "Reviews"/,
    ],
    [
      "a Workload label value over 63 characters (a map's values)",
      {
        apiVersion: "wasmesh.io/v1alpha1",
        kind: "Workload",
        metadata: { name: "long-label" },
        spec: { service: "reviews", address: "10.0.0.1", port: 9080, labels: { version: "v".repeat(64) } },
      },
      /spec\.labels\.version: Too long/,
    ],
    [
      "a name that is a DNS subdomain but no DNS label",
      {
        apiVersion: "wasmesh.io/v1alpha1",
        kind: "AccessRule",
        metadata: { name: "a.b" },
        spec: { source: "*", destination: "reviews", action: "allow" },
      },
      /metadata\.name: Invalid value: "a\.b"/,
    ],
    [
      "a cluster-scoped MeshPolicy with an unknown mTLS mode",
      {
        apiVersion: "wasmesh.io/v1alpha1",
        kind: "MeshPolicy",
        metadata: { name: "other" },
        spec: { defaultAccess: "allow", mtls: { mode: "sometimes" } },
      },
      /spec\.mtls\.mode: Unsupported value: "sometimes"/,
    ],
    [
      "a WasmModule digest that is not 64 hex digits",
      {
        apiVersion: "wasmesh.io/v1alpha1",
        kind: "WasmModule",
        metadata: { name: "short-digest" },
        spec: { sha256: "abc", size: 100, abiVersion: "0.2.1" },
      },
      /spec\.sha256: Invalid value: "abc"/,
    ],
    [
      "an unknown field, under strict field validation (kubectl's default)",
      {
        apiVersion: "wasmesh.io/v1alpha1",
        kind: "Service",
        metadata: { name: "extra" },
        spec: { ports: [{ name: "http", port: 80, protocol: "http" }], extra: true },
      },
      /unknown field "spec\.extra"/,
    ],
  ];
  it.each(invalid)("refuses %s, naming the field", async (_, document, message) => {
    const refused = await outcome(document);
    expect(refused).toMatch(/^(?:422|400) /);
    expect(refused).toMatch(message);
  });

  it("keeps status apart: written through the status subresource only", async () => {
    const { group, version, plural } = resourceOf("AccessRule");
    const name = "with-status";
    const created = (await custom.createNamespacedCustomObject({
      group,
      version,
      plural,
      namespace,
      body: {
        apiVersion: "wasmesh.io/v1alpha1",
        kind: "AccessRule",
        metadata: { name },
        spec: { source: "*", destination: "reviews", action: "allow" },
        status: { accepted: true },
      },
    })) as { status?: unknown; metadata: { resourceVersion: string } };
    // A user's write sets no status...
    expect(created.status).toBeUndefined();
    const status = { accepted: true, conditions: [{ type: "Accepted", status: "True" }] };
    await custom.replaceNamespacedCustomObjectStatus({
      group,
      version,
      plural,
      namespace,
      name,
      body: { ...created, status },
    });
    // ...and the status write changes no spec; the user's next write keeps the status.
    const read = (await custom.getNamespacedCustomObject({
      group,
      version,
      plural,
      namespace,
      name,
    })) as Document & {
      status: unknown;
    };
    expect(read.status).toEqual(status);
    const replaced = (await custom.replaceNamespacedCustomObject({
      group,
      version,
      plural,
      namespace,
      name,
      body: { ...read, spec: { ...read.spec, action: "deny" }, status: { accepted: false } },
    })) as Document & { status: unknown };
    expect(replaced.spec.action).toBe("deny");
    expect(replaced.status).toEqual(status);
  });

  it("keeps a WasmPlugin's free-form configuration as it is", async () => {
    const plugin: Document = {
      apiVersion: "wasmesh.io/v1alpha1",
      kind: "WasmPlugin",
      metadata: { name: "free-form" },
      spec: {
        module: "mesh",
        services: ["*"],
        configuration: { anything: { nested: [1, "two", { three: null }] }, flag: true },
      },
    };
    expect(await outcome(plugin)).toBe("stored");
    const { group, version, plural } = resourceOf("WasmPlugin");
    const read = (await custom.getNamespacedCustomObject({
      group,
      version,
      plural,
      namespace,
      name: "free-form",
    })) as Document;
    expect(read.spec.configuration).toEqual(plugin.spec.configuration);
  });
});
