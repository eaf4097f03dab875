// The layers of wasmesh and the direction imports may take, checked by `npm run lint` (depcruise).
// Drawn in control-plane/README.md. Type-only imports count: a type is a dependency too.
//
//   libraries   schema/ (filter and edge configuration, agents' traffic reports)
//               host/ (Proxy-Wasm host: Node and workerd)
//   model       control-plane/resources/      the resource model, validation, names
//               control-plane/imports/        other meshes' resources as the model's, over it alone
//   vocabulary  control-plane/envoy/          Envoy's API, the proxy's identity, what a proxy is sent
//   services    store/  translate/  modules/  xds/ (behind its ConfigCache; never translate/)
//               traffic/ (the sidecars' traffic reports, kept and aggregated; over resources/ alone)
//               security/ (API tokens, the credentials file, the API and xDS ports' certificate;
//               over store/ and ca/)
//               ca/ (the mesh CA and SPIFFE identities; on the store alone)
//   consumers   revision/  edge/  api/
//   roots       server.ts (wires everything)   cli/ (the command line; runs the server)
// Leaves anyone may import: control-plane/{metrics,utf8,version}.ts.
// gui/ (the web console, in the browser) reads the API over HTTP and imports none of the above.
// dataplane/ (the data-plane agent) sits beside the control plane, not in it: it reaches it as an
// agent on another host would, so of control-plane/ it takes only Envoy's vocabulary (envoy/) and
// the xDS wire (xds/codec.ts), and the workload's side of the CA (its key, CSR, renewal time and
// SPIFFE IDs); only `wasmesh dataplane` (cli/commands/dataplane.ts) imports it.

/** A rule: files under `from` may import, inside control-plane/, only what `allowed` matches. */
const layer = (name, from, allowed) => ({
  name,
  severity: "error",
  comment: `${from} may import from control-plane/ only ${allowed}`,
  from: { path: `^control-plane/${from}` },
  to: { path: "^control-plane/", pathNot: `^control-plane/(?:${allowed}|(?:metrics|utf8|version)\\.ts$)` },
});

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: "no-circular",
      severity: "error",
      comment: "Import cycles hide which module owns what; break them with a narrower interface below both.",
      from: {},
      to: { circular: true },
    },
    {
      name: "libraries-stand-alone",
      severity: "error",
      comment:
        "schema/ and host/ serve the control plane, the worker and tests alike: they import none of them.",
      from: { path: "^(?:schema|host)/" },
      to: { path: "^(?:control-plane|dataplane|workers|test|scripts|bin)/" },
    },
    {
      name: "host-runs-in-workerd",
      severity: "error",
      comment: "host/ runs in workerd too: no Node built-in modules.",
      from: { path: "^host/" },
      to: { dependencyTypes: ["core"] },
    },
    {
      name: "worker-uses-libraries-only",
      severity: "error",
      comment:
        "The edge worker is the same module through host/, configured by schema/: nothing of the control plane.",
      from: { path: "^workers/src/" },
      to: { path: "^(?:control-plane|dataplane|test|scripts|bin)/" },
    },
    {
      name: "leaves-stay-leaves",
      severity: "error",
      from: { path: "^control-plane/(?:metrics|utf8|version)\\.ts$" },
      to: { path: "^control-plane/" },
    },
    layer("resources-is-the-model", "resources/", "resources/"),
    // Other meshes' resources (Istio's, Kuma's, Consul's) translated into the model's: beside it, over
    // it alone. The API converts them at its edge (POST /v1/apply).
    layer("imports-over-the-model", "imports/", "imports/|resources/"),
    layer("envoy-is-vocabulary", "envoy/", "envoy/|resources/"),
    layer("store-below-services", "store/", "store/|resources/"),
    // SPIFFE IDs: the one place they are built (the mTLS a destination is verified by).
    layer(
      "translate-below-consumers",
      "translate/",
      "translate/|resources/|envoy/|ca/(?:spiffe|errors)\\.ts$",
    ),
    layer("xds-knows-envoy-only", "xds/", "xds/|envoy/"),
    layer("modules-below-consumers", "modules/", "modules/|resources/|envoy/|store/"),
    layer("ca-on-the-store-alone", "ca/", "ca/|store/"),
    layer("revision-below-api", "revision/", "revision/|translate/|modules/|resources/|envoy/|store/"),
    // The Kubernetes mode's pieces: adapters between the Kubernetes API and the control plane's layers
    // (the store on CRDs, module bytes in ConfigMaps, the admission webhooks running the API's write
    // checks, the TokenReview verifier, a Tokens of security/tokens.ts, other meshes' objects converted
    // by imports/ and a Kubernetes Service's ports read as imports/kubernetes.ts reads them); server.ts
    // wires them, and no layer below imports them.
    layer(
      "kubernetes-over-the-model",
      "kubernetes/",
      "kubernetes/|api/|imports/|modules/|revision/|resources/|store/|security/tokens\\.ts$",
    ),
    layer("edge-below-api", "edge/", "edge/|revision/|translate/|resources/|envoy/|store/"),
    // Live traffic figures (the agents' reports, aggregated): a service over the model's names alone;
    // api/ serves it.
    layer("traffic-on-the-names", "traffic/", "traffic/|resources/"),
    layer("security-below-consumers", "security/", "security/|store/|resources/|envoy/|ca/"),
    layer(
      "api-below-roots",
      "api/",
      "api/|edge/|revision/|modules/|xds/|translate/|resources/|imports/|envoy/|store/|security/|ca/|traffic/",
    ),
    {
      name: "only-the-cli-runs-the-server",
      severity: "error",
      from: { path: "^control-plane/", pathNot: "^control-plane/cli/" },
      to: { path: "^control-plane/server\\.ts$" },
    },
    {
      name: "dataplane-speaks-api-and-xds-only",
      severity: "error",
      comment:
        "dataplane/ reaches the control plane only through its HTTP API and xDS: of control-plane/ it imports envoy/ (the vocabulary), xds/codec.ts (the wire) and the workload's side of ca/ (key and CSR, renewal, SPIFFE IDs), not the server, store, CA or translation.",
      from: { path: "^dataplane/" },
      to: {
        path: "^control-plane/",
        pathNot:
          "^control-plane/(?:envoy/|xds/codec\\.ts$|ca/(?:workload|renewal|spiffe|x509|errors)\\.ts$|(?:metrics|utf8|version)\\.ts$)",
      },
    },
    {
      name: "only-the-dataplane-command-runs-the-agent",
      severity: "error",
      comment:
        "The agent is a process of its own: only `wasmesh dataplane` (cli/commands/dataplane.ts) starts it.",
      from: {
        path: "^(?:control-plane|host|schema|workers/src|bin)/",
        pathNot: "^control-plane/cli/commands/dataplane\\.ts$",
      },
      to: { path: "^dataplane/" },
    },
    {
      name: "console-talks-http",
      severity: "error",
      comment:
        "The web console (gui/) runs in the browser and reads the control plane through its HTTP API, as the CLI does: no code of the control plane, the data plane, the libraries, tests or scripts.",
      from: { path: "^gui/" },
      to: { path: "^(?:control-plane|dataplane|host|schema|workers|test|scripts|bin)/" },
    },
    {
      name: "product-code-never-imports-tests",
      severity: "error",
      from: { path: "^(?:control-plane|dataplane|host|schema|workers/src|bin)/" },
      to: { path: "^(?:test|scripts)/" },
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    exclude: { path: "^(?:node_modules|build|\\.tools)/" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    // .ts sources imported with their extension, as Node runs them.
    enhancedResolveOptions: { extensions: [".ts", ".js"] },
  },
};
