// The other meshes' observability resources converted into wasmesh's Tracing and AccessLog
// (control-plane/imports/istio.ts, kuma.ts): Istio's telemetry.istio.io Telemetry and Kuma's
// MeshTrace and MeshAccessLog, modelled on their docs' examples (test/fixtures/imports/istio/
// telemetry.yaml, kuma/observability.yaml); the exact native resources, their validity with the
// services they name, a warning per field not carried and an error per field whose loss would
// change the meaning. Istio names tracing providers in MeshConfig, which wasmesh does not read:
// the backend comes from the annotation wasmesh.io/tracing-backend, or (a service's Telemetry)
// from the mesh Tracing it inherits, never from a guess.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { parseAllDocuments, stringify } from "yaml";
import { createApi } from "../../control-plane/api/index.ts";
import { type ConvertResult, convert, type ImportProblem } from "../../control-plane/imports/index.ts";
import { TRACING_BACKEND_ANNOTATION } from "../../control-plane/imports/istio.ts";
import { MetricsRegistry } from "../../control-plane/metrics.ts";
import { type Resource, validateReferences, validateResource } from "../../control-plane/resources/index.ts";
import { openSqliteStore } from "../../control-plane/store/index.ts";
import { tempDir } from "../support/temp.ts";

const FIXTURES = join(import.meta.dirname, "..", "fixtures", "imports");
const yamlDocs = (text: string): unknown[] => parseAllDocuments(text).map((d) => d.toJS());
const fromFile = (name: string) => yamlDocs(readFileSync(join(FIXTURES, name), "utf8"));
const run = (text: string) => convert(yamlDocs(text));

/** Problems without the message, to compare where they are. */
const where = (problems: ImportProblem[]) =>
  problems.map(({ document, kind, name, path }) => ({ document, kind, name, path }));
const paths = (problems: ImportProblem[]) => problems.map((p) => p.path);

const API = "wasmesh.io/v1alpha1";
const res = (kind: string, name: string, spec: unknown) => ({
  apiVersion: API,
  kind,
  metadata: { name },
  spec,
});
const service = (name: string) =>
  res("Service", name, { ports: [{ name: "http", port: 9080, protocol: "http" }] }) as Resource;

function expectValid(result: ConvertResult, services: string[]): void {
  for (const r of result.resources) expect(validateResource(r)).toEqual({ ok: true, resource: r });
  expect(validateReferences([...services.map(service), ...result.resources])).toEqual({
    errors: [],
    warnings: [],
  });
}

const telemetry = (name: string, namespace: string | undefined, spec: string, annotations = "") => `
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata:
  name: ${name}
${namespace !== undefined ? `  namespace: ${namespace}\n` : ""}${annotations}spec:
${spec}`;

describe("Istio Telemetry", () => {
  const result = convert(fromFile("istio/telemetry.yaml"));

  it("the mesh's (istio-system, no selector) becomes the mesh Tracing and AccessLog, a selector's a service's", () => {
    expect(result.errors).toEqual([]);
    expect(result.resources).toEqual([
      res("Tracing", "mesh-default-istio-system", {
        backend: { protocol: "otlp-grpc", url: "http://otel-collector.observability:4317" },
        sampling: { randomPercent: 10 },
        tags: [{ name: "cluster", literal: "east" }],
      }),
      // Istio's built-in envoy provider logs to stdout.
      res("AccessLog", "mesh-default-istio-system", { backends: [{ stdout: {} }] }),
      // The workload's override: its own sampling and tags, the mesh's backend (no provider named).
      res("Tracing", "reviews-override-bookinfo", {
        service: "reviews.bookinfo",
        sampling: { randomPercent: 100 },
        tags: [{ name: "userId", header: "userid", default: "unknown" }],
      }),
      res("AccessLog", "reviews-override-bookinfo", { service: "reviews.bookinfo", backends: [] }),
      // The canonical-name label names the service too; provider otel is the mesh Telemetry's.
      res("Tracing", "ratings-tracing-bookinfo", {
        service: "ratings.bookinfo",
        sampling: { randomPercent: 50 },
      }),
    ]);
    expect(result.produced.map((p) => p.resources)).toEqual([
      [
        { kind: "Tracing", name: "mesh-default-istio-system" },
        { kind: "AccessLog", name: "mesh-default-istio-system" },
      ],
      [
        { kind: "Tracing", name: "reviews-override-bookinfo" },
        { kind: "AccessLog", name: "reviews-override-bookinfo" },
      ],
      [{ kind: "Tracing", name: "ratings-tracing-bookinfo" }],
    ]);
  });

  it("is valid, alone and with the services it names (the overrides inherit the mesh's backend)", () => {
    expectValid(result, ["reviews.bookinfo", "ratings.bookinfo"]);
  });

  it("warns at metrics and environment tags", () => {
    expect(where(result.warnings)).toEqual([
      { document: 0, kind: "Telemetry", name: "mesh-default", path: "spec.metrics" },
      {
        document: 1,
        kind: "Telemetry",
        name: "reviews-override",
        path: "spec.tracing[0].customTags.pod.environment",
      },
    ]);
    expect(result.warnings[0]?.message).toMatch(/metrics are always on/);
  });

  it("refuses the mesh's tracing without a backend: Istio's is in MeshConfig, which wasmesh does not read", () => {
    // Istio's documented mesh-default, as written: the default provider.
    const bare = run(
      telemetry("mesh-default", "istio-system", "  tracing:\n    - randomSamplingPercentage: 10.00\n"),
    );
    expect(bare.resources).toEqual([]);
    expect(where(bare.errors)).toEqual([
      { document: 0, kind: "Telemetry", name: "mesh-default", path: "spec.tracing[0]" },
    ]);
    expect(bare.errors[0]?.message).toContain(TRACING_BACKEND_ANNOTATION);
    // A named provider: the error names it.
    const named = run(
      telemetry(
        "mesh-default",
        undefined,
        "  tracing:\n    - providers:\n        - name: zipkin-alternate\n      randomSamplingPercentage: 10\n",
      ),
    );
    expect(paths(named.errors)).toEqual(["spec.tracing[0].providers[0].name"]);
    expect(named.errors[0]?.message).toMatch(/provider 'zipkin-alternate'.*extensionProviders/);
    // With the annotation, universal (no namespace): the mesh's.
    const given = run(
      telemetry(
        "mesh-default",
        undefined,
        "  tracing:\n    - providers:\n        - name: zipkin-alternate\n      randomSamplingPercentage: 10\n",
        `  annotations:\n    ${TRACING_BACKEND_ANNOTATION}: zipkin http://zipkin:9411/api/v2/spans\n`,
      ),
    );
    expect(given.errors).toEqual([]);
    expect(given.resources).toEqual([
      res("Tracing", "mesh-default", {
        backend: { protocol: "zipkin", url: "http://zipkin:9411/api/v2/spans" },
        sampling: { randomPercent: 10 },
      }),
    ]);
    expectValid(given, []);
  });

  it("refuses a service's provider other than the mesh Telemetry's unless the annotation gives its backend", () => {
    const spec =
      "  selector:\n    matchLabels:\n      app: reviews\n  tracing:\n    - providers:\n        - name: zipkin-alternate\n";
    const other = run(telemetry("reviews", "bookinfo", spec));
    expect(paths(other.errors)).toEqual(["spec.tracing[0].providers[0].name"]);
    const annotated = run(
      telemetry(
        "reviews",
        "bookinfo",
        spec,
        `  annotations:\n    ${TRACING_BACKEND_ANNOTATION}: otlp-http http://collector:4318/v1/traces\n`,
      ),
    );
    expect(annotated.resources).toEqual([
      res("Tracing", "reviews-bookinfo", {
        service: "reviews.bookinfo",
        backend: { protocol: "otlp-http", url: "http://collector:4318/v1/traces" },
      }),
    ]);
    const bad = run(
      telemetry(
        "reviews",
        "bookinfo",
        spec,
        `  annotations:\n    ${TRACING_BACKEND_ANNOTATION}: jaeger http://j:14268\n`,
      ),
    );
    expect(paths(bad.errors)).toEqual([`metadata.annotations.${TRACING_BACKEND_ANNOTATION}`]);
  });

  it("a service's override without a mesh Tracing is refused when applied (validateReferences)", () => {
    const alone = run(
      telemetry(
        "reviews",
        "bookinfo",
        "  selector:\n    matchLabels:\n      app: reviews\n  tracing:\n    - randomSamplingPercentage: 5\n",
      ),
    );
    expect(alone.errors).toEqual([]);
    expect(
      validateReferences([service("reviews.bookinfo"), ...alone.resources]).errors.map((e) => e.path),
    ).toEqual(["spec.backend"]);
  });

  it("errors at what it cannot carry, with the field's path", () => {
    const bad = run(
      `${telemetry(
        "t",
        "bookinfo",
        `  tracing:
    - match:
        mode: SERVER
      disableSpanReporting: true
      customTags:
        bad tag:
          literal:
            value: x
  accessLogging:
    - providers:
        - name: otel-als
      filter:
        expression: response.code >= 400
`,
      )}`,
    );
    // Outside istio-system without a selector: no native form, nothing else is looked at.
    expect(paths(bad.errors)).toEqual(["spec.accessLogging[0].filter", "spec.selector"]);
    const selected = run(
      telemetry(
        "t",
        "bookinfo",
        `  selector:
    matchLabels:
      app: reviews
  tracing:
    - match:
        mode: SERVER
      disableSpanReporting: true
      customTags:
        bad tag:
          literal:
            value: x
  accessLogging:
    - providers:
        - name: otel-als
    - {}
`,
      ),
    );
    expect(paths(selected.errors)).toEqual([
      "spec.tracing[0].match.mode",
      "spec.tracing[0].disableSpanReporting",
      "spec.tracing[0].customTags.bad tag",
      "spec.accessLogging[0].providers[0].name",
      "spec.accessLogging[1].providers",
    ]);
    expect(selected.resources).toEqual([]);
    const labels = run(
      telemetry(
        "t",
        "bookinfo",
        "  selector:\n    matchLabels:\n      version: v1\n  accessLogging:\n    - disabled: true\n",
      ),
    );
    expect(paths(labels.errors)).toEqual(["spec.selector.matchLabels"]);
    const two = run(
      telemetry(
        "t",
        "istio-system",
        "  tracing:\n    - randomSamplingPercentage: 1\n    - randomSamplingPercentage: 2\n",
      ),
    );
    expect(paths(two.errors)).toEqual(["spec.tracing"]);
  });

  it("the mesh's access logs off: an AccessLog without backends", () => {
    const off = run(telemetry("mesh-default", "istio-system", "  accessLogging:\n    - disabled: true\n"));
    expect(off.errors).toEqual([]);
    expect(off.resources).toEqual([res("AccessLog", "mesh-default-istio-system", { backends: [] })]);
    expectValid(off, []);
  });
});

describe("Kuma MeshTrace and MeshAccessLog", () => {
  const result = convert(fromFile("kuma/observability.yaml"));

  it("become the mesh's and a service's Tracing and AccessLog", () => {
    expect(result.errors).toEqual([]);
    expect(result.resources).toEqual([
      res("Tracing", "default-kuma-system", {
        backend: { protocol: "otlp-grpc", url: "http://otel-collector.observability.svc:4317" },
        // Kuma's client and overall default to 100%, as wasmesh's; its random is 80% here.
        sampling: { randomPercent: 80, clientPercent: 50 },
        tags: [
          { name: "team", literal: "core" },
          { name: "env", header: "x-env", default: "prod" },
        ],
      }),
      // The service's override: the mesh MeshTrace's random and client, its own overall (a cap of
      // 40%, which random reaches no higher than), its own tags, the mesh's backend.
      res("Tracing", "backend-kuma-demo", {
        service: "backend.kuma-demo",
        sampling: { randomPercent: 40, clientPercent: 50, overallPercent: 40 },
        tags: [{ name: "version", header: "x-version" }],
      }),
      res("AccessLog", "default-kuma-system", {
        backends: [{ file: { path: "/var/log/envoy/access.log" } }],
        format: "[%START_TIME%] %REQ(:METHOD)% %RESPONSE_CODE% %UPSTREAM_CLUSTER%",
      }),
      // /dev/stdout is the stdout backend.
      res("AccessLog", "backend-stdout-kuma-demo", {
        service: "backend.kuma-demo",
        backends: [{ stdout: {} }],
      }),
    ]);
  });

  it("is valid with the service it names", () => {
    expectValid(result, ["backend.kuma-demo"]);
  });

  it("warns that both listeners log when only from (or to) is given", () => {
    expect(where(result.warnings)).toEqual([
      { document: 3, kind: "MeshAccessLog", name: "backend-stdout", path: "spec.from" },
    ]);
  });

  it("writes Kuma's 100% default random sampling out for the mesh's (wasmesh's is 1%)", () => {
    const plain = run(`
type: MeshTrace
name: default
mesh: default
spec:
  targetRef:
    kind: Mesh
  default:
    backends:
      - type: Zipkin
        zipkin:
          url: http://zipkin.observability:9411/api/v2/spans
`);
    expect(plain.errors).toEqual([]);
    expect(plain.resources).toEqual([
      res("Tracing", "default", {
        backend: { protocol: "zipkin", url: "http://zipkin.observability:9411/api/v2/spans" },
        sampling: { randomPercent: 100 },
      }),
    ]);
    expectValid(plain, []);
  });

  const meshTrace = (backends: string, extra = "") => `
apiVersion: kuma.io/v1alpha1
kind: MeshTrace
metadata:
  name: t
  namespace: kuma-system
spec:
  targetRef:
    kind: Mesh
  default:
    backends:
${backends}${extra}`;

  it("errors at backends and values it cannot carry", () => {
    expect(
      paths(
        run(meshTrace("      - type: Datadog\n        datadog:\n          url: http://dd:8126\n")).errors,
      ),
    ).toEqual(["spec.default.backends[0].datadog", "spec.default.backends[0].type"]);
    expect(
      paths(
        run(
          meshTrace(
            "      - type: OpenTelemetry\n        openTelemetry:\n          endpoint: otel-collector\n",
          ),
        ).errors,
      ),
    ).toEqual(["spec.default.backends[0].openTelemetry.endpoint"]);
    expect(
      paths(
        run(
          meshTrace(
            "      - type: Zipkin\n        zipkin:\n          url: http://z:9411/api/v2/spans\n          apiVersion: httpProto\n",
          ),
        ).errors,
      ),
    ).toEqual(["spec.default.backends[0].zipkin.apiVersion"]);
    expect(
      paths(
        run(
          meshTrace(
            "      - type: OpenTelemetry\n        openTelemetry:\n          endpoint: otel:4317\n",
            "    sampling:\n      random: lots\n    tags:\n      - name: a\n",
          ),
        ).errors,
      ),
    ).toEqual(["spec.default.sampling.random", "spec.default.tags[0]"]);
    const subset = run(
      meshTrace(
        "      - type: OpenTelemetry\n        openTelemetry:\n          endpoint: otel:4317\n",
      ).replace("kind: Mesh\n", "kind: MeshSubset\n"),
    );
    expect(paths(subset.errors)).toEqual(["spec.targetRef.kind"]);
  });

  const accessLog = (from: string) => `
apiVersion: kuma.io/v1alpha1
kind: MeshAccessLog
metadata:
  name: l
  namespace: kuma-system
spec:
  targetRef:
    kind: Mesh
  from:
    - targetRef:
        kind: Mesh
      default:
        backends:
${from}`;

  it("errors at access-log backends and formats it cannot carry", () => {
    expect(
      paths(
        run(accessLog("          - type: Tcp\n            tcp:\n              address: logs:5000\n")).errors,
      ),
    ).toEqual(["spec.from[0].default.backends[0].tcp", "spec.from[0].default.backends[0].type"]);
    expect(
      paths(
        run(
          accessLog(
            "          - type: OpenTelemetry\n            openTelemetry:\n              endpoint: otel:4317\n",
          ),
        ).errors,
      ),
    ).toEqual(["spec.from[0].default.backends[0].openTelemetry", "spec.from[0].default.backends[0].type"]);
    expect(
      paths(
        run(
          accessLog(
            "          - type: File\n            file:\n              path: /tmp/a.log\n              format:\n                type: Json\n                json:\n                  - key: status\n                    value: '%RESPONSE_CODE%'\n",
          ),
        ).errors,
      ),
    ).toEqual(["spec.from[0].default.backends[0].file.format.json"]);
    const kumaOwn = run(
      accessLog(
        "          - type: File\n            file:\n              path: /tmp/a.log\n              format:\n                type: Plain\n                plain: '%KUMA_SOURCE_SERVICE% %RESPONSE_CODE%'\n",
      ),
    );
    expect(paths(kumaOwn.errors)).toEqual(["spec.from[0].default.backends[0].file.format.plain"]);
    expect(kumaOwn.errors[0]?.message).toMatch(/%KUMA_SOURCE_SERVICE% is Kuma's own placeholder/);
    const peer = run(
      accessLog("          - type: File\n            file:\n              path: /dev/stdout\n").replace(
        "    - targetRef:\n        kind: Mesh\n",
        "    - targetRef:\n        kind: MeshService\n        name: web\n",
      ),
    );
    expect(paths(peer.errors)).toEqual(["spec.from[0].targetRef.kind"]);
  });
});

describe("POST /v1/apply of Telemetry, MeshTrace and MeshAccessLog", () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });
  async function api() {
    const store = await openSqliteStore({ dataDir: tempDir("imports-telemetry") });
    cleanups.push(() => store.close());
    const app = createApi({
      auth: "none",
      store,
      metrics: new MetricsRegistry(),
      version: "test",
      onChange: () => undefined,
      log: () => undefined,
    });
    // biome-ignore lint/suspicious/noExplicitAny: assertions navigate arbitrary JSON answers
    return async (method: string, path: string, yaml?: string): Promise<{ status: number; body: any }> => {
      const response = await app.request(path, {
        method,
        ...(yaml !== undefined ? { body: yaml, headers: { "content-type": "application/yaml" } } : {}),
      });
      return { status: response.status, body: await response.json() };
    };
  }
  const services = (...names: string[]) => names.map((n) => stringify(service(n))).join("---\n");

  it("keeps the original beside the Tracing and AccessLog it produced", async () => {
    const call = await api();
    expect((await call("POST", "/v1/apply", services("reviews.bookinfo", "ratings.bookinfo"))).status).toBe(
      200,
    );
    const applied = await call(
      "POST",
      "/v1/apply",
      readFileSync(join(FIXTURES, "istio/telemetry.yaml"), "utf8"),
    );
    expect(applied.status).toBe(200);
    const kept = (await call("GET", "/v1/importedresources/telemetry-mesh-default-istio-system")).body;
    expect(kept.spec.produced).toEqual([
      { kind: "Tracing", name: "mesh-default-istio-system" },
      { kind: "AccessLog", name: "mesh-default-istio-system" },
    ]);
    const tracings = (await call("GET", "/v1/tracings")).body.items.map((r: Resource) => r.metadata.name);
    expect(tracings).toEqual([
      "mesh-default-istio-system",
      "ratings-tracing-bookinfo",
      "reviews-override-bookinfo",
    ]);
  });

  it("refuses a service's override when no mesh Tracing gives the backend it inherits, naming the field", async () => {
    const call = await api();
    expect((await call("POST", "/v1/apply", services("backend.kuma-demo"))).status).toBe(200);
    const override = readFileSync(join(FIXTURES, "kuma/observability.yaml"), "utf8").split(
      /^---$/m,
    )[1] as string;
    const refused = await call("POST", "/v1/apply", override);
    expect(refused.status).toBe(400);
    expect(JSON.stringify(refused.body)).toContain("spec.backend");
    expect((await call("GET", "/v1/tracings")).body.items).toEqual([]);
    // With the mesh's MeshTrace of the same file, the whole file applies.
    const all = await call(
      "POST",
      "/v1/apply",
      readFileSync(join(FIXTURES, "kuma/observability.yaml"), "utf8"),
    );
    expect(all.status).toBe(200);
    expect((await call("GET", "/v1/accesslogs")).body.items.map((r: Resource) => r.metadata.name)).toEqual([
      "backend-stdout-kuma-demo",
      "default-kuma-system",
    ]);
  });
});
