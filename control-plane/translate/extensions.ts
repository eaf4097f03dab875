// ECDS: one TypedExtensionConfig per Wasm filter of the sidecar (the built-in routing filter and the
// WasmPlugins that apply to it), so a configuration or module change reaches Envoy without touching
// its listeners.
import { MESH_MODULE, type WasmPlugin } from "../resources/index.ts";
import { duration, EXTENSION_TYPE } from "../xds/protos.ts";
import { controlPlaneUrl } from "./clusters.ts";
import type { Mesh } from "./mesh.ts";
import { CONTROL_PLANE_HTTP_CLUSTER, pluginFilterName, ROUTING_FILTER } from "./names.ts";
import type { ModuleCode, ModuleDelivery, ProxyIdentity, XdsResource } from "./types.ts";

/** A Wasm filter on one of the sidecar's listeners. */
export interface WasmFilter {
  /** ECDS resource name, http_filters name and PluginConfig.name. */
  name: string;
  module: string;
  rootId: string;
  /** The plugin configuration as the module receives it. */
  configuration: string;
}

/** How long Envoy may take to fetch a module from the control plane before it retries. */
const FETCH_TIMEOUT_MS = 30_000;

export type Direction = "inbound" | "outbound";

/** The WasmPlugins that run on `proxy`'s sidecar on one side: priority first (higher first), then name. */
export function pluginsFor(mesh: Mesh, proxy: ProxyIdentity, direction: Direction): WasmPlugin[] {
  return mesh.plugins
    .filter((p) => (p.spec.direction ?? "inbound") === direction)
    .filter((p) => p.spec.services.includes("*") || p.spec.services.includes(proxy.service))
    .sort((a, b) => (b.spec.priority ?? 0) - (a.spec.priority ?? 0)); // stable: names stay in order
}

export function pluginFilter(plugin: WasmPlugin, direction: Direction): WasmFilter {
  const name = pluginFilterName(direction, plugin.metadata.name);
  if (name === ROUTING_FILTER) {
    // validateResource refuses the name; a stored one that slipped through must not replace routing.
    throw new Error(`WasmPlugin '${plugin.metadata.name}': its filter name ${name} is the built-in one`);
  }
  return {
    name,
    module: plugin.spec.module,
    rootId: plugin.spec.rootId ?? "",
    configuration: canonicalJson(plugin.spec.configuration),
  };
}

export function routingFilter(configuration: unknown): WasmFilter {
  return {
    name: ROUTING_FILTER,
    module: MESH_MODULE,
    rootId: "wasmesh",
    configuration: JSON.stringify(configuration),
  };
}

export function extensionResources(
  filters: readonly WasmFilter[],
  modules: ReadonlyMap<string, ModuleCode>,
  delivery: ModuleDelivery,
): XdsResource[] {
  return filters
    .map((filter) => {
      const code = modules.get(filter.module);
      if (code === undefined) {
        // The registry hands over every stored module's code; a gap is an inconsistency to surface,
        // not a filter to drop (dropping one could drop a security policy).
        throw new Error(`no code for module '${filter.module}' (Wasm filter ${filter.name})`);
      }
      return {
        name: filter.name,
        resource: {
          name: filter.name,
          typed_config: {
            "@type": EXTENSION_TYPE.wasmFilter,
            config: {
              name: filter.name,
              root_id: filter.rootId,
              vm_config: {
                // Plugins of one module share a VM per worker thread, and its shared data (where the
                // breakers keep their state) outlives module versions.
                vm_id: filter.module,
                runtime: "envoy.wasm.runtime.v8",
                code: moduleSource(filter.module, code, delivery),
              },
              configuration: { "@type": EXTENSION_TYPE.stringValue, value: filter.configuration },
              // A filter that cannot run answers 503 rather than letting requests past it.
              fail_open: false,
            },
          },
        },
      };
    })
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

function moduleSource(module: string, code: ModuleCode, delivery: ModuleDelivery): Record<string, unknown> {
  if (delivery.mode === "inline") return { local: { inline_bytes: code.bytes } };
  const base = controlPlaneUrl(delivery.baseUrl).href.replace(/\/+$/, "");
  return {
    remote: {
      http_uri: {
        uri: `${base}/v1/modules/${module}/${code.sha256}.wasm`,
        cluster: CONTROL_PLANE_HTTP_CLUSTER,
        timeout: duration(FETCH_TIMEOUT_MS),
      },
      // Envoy refuses bytes with another digest: what runs is what was validated and stored.
      sha256: code.sha256,
      retry_policy: { num_retries: { value: 3 } },
    },
  };
}

/** JSON with object keys sorted, so equal configurations give equal text (and no needless update). */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === "object" && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  );
}
