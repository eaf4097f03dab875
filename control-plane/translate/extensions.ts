// ECDS: one TypedExtensionConfig per Wasm filter of the sidecar (the built-in routing filter and the
// WasmPlugins that apply to it), so a configuration or module change reaches Envoy without touching
// its listeners.

import type {
  ModuleCode,
  ModuleDelivery,
  ProxyIdentity,
  TypedExtensionConfig,
  XdsResource,
} from "../envoy/index.ts";
import { EXTENSION_TYPE, localModuleFile } from "../envoy/index.ts";
import { MESH_MODULE, type WasmPlugin } from "../resources/index.ts";
import { pluginFilterName, ROUTING_FILTER } from "../resources/names.ts";
import type { Mesh } from "./mesh.ts";

/** A Wasm filter on one of the sidecar's listeners. */
export interface WasmFilter {
  /** ECDS resource name, http_filters name and PluginConfig.name. */
  name: string;
  module: string;
  rootId: string;
  /** The plugin configuration as the module receives it. */
  configuration: string;
}

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

/**
 * The TypedExtensionConfig of one filter: the module's code inline, or, for a proxy with "local"
 * module delivery, the name of a file holding exactly that code (localModuleFile). The data-plane
 * agent fetches the file by its digest before it hands Envoy the resource, so Envoy reads it as it
 * applies the resource: applied atomically or NACKed with Envoy's reason, as inline bytes are, and
 * a module version travels once per agent instead of with every push. Envoy 1.37 cannot be
 * trusted with `remote` code over ECDS (each case is reproduced by test/envoy/remote-modules.test.ts):
 * - a new sha256 sent to a listener that is already warm is never fetched (the fetch is an init
 *   target of the listener's init manager, initialised long ago), and the filter is then left out
 *   of every request despite fail_open: false (or answers 503 where a draining filter chain made
 *   Envoy load it twice); a module upgrade would switch a policy off;
 * - a fetch that fails (unreachable, or bytes that break the sha256 pin) is ACKed, not NACKed: the
 *   filter answers 503 and `wasmesh status` shows nothing;
 * - vm_config.nack_on_code_cache_miss makes both safe (NACK, the previous module keeps serving, a
 *   background fetch fills Envoy's cache) but then the config must be offered again to apply, which
 *   the xDS server does not do, and a new listener serves 500s meanwhile.
 */
export function extensionResource(
  filter: WasmFilter,
  modules: ReadonlyMap<string, ModuleCode>,
  delivery: ModuleDelivery,
): XdsResource<TypedExtensionConfig> {
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
            // Envoy 1.37 has no per-VM memory setting (VmConfig has none, nor has the V8 runtime a
            // runtime key for it; proxy-wasm-cpp-host caps every memory at 1 GiB when Envoy is
            // built, PROXY_WASM_HOST_MAX_WASM_MEMORY_SIZE_BYTES): the memory ceiling reaches Envoy
            // in the code itself, whose declared maximum the module registry caps (codes()).
            vm_id: filter.module,
            runtime: "envoy.wasm.runtime.v8",
            code: {
              local:
                delivery === "local"
                  ? { filename: localModuleFile(filter.module, code) }
                  : { inline_bytes: code.bytes },
            },
          },
          configuration: { "@type": EXTENSION_TYPE.stringValue, value: filter.configuration },
          // A filter that cannot run answers 503 rather than letting requests past it.
          fail_open: false,
        },
      },
    },
  };
}

/** ECDS resources in name order, as every resource list of a proxy's configuration is. */
export const sortedByName = <R extends XdsResource>(resources: R[]): R[] =>
  resources.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));

/** JSON with object keys sorted, so equal configurations give equal text (and no needless update). */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === "object" && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  );
}
