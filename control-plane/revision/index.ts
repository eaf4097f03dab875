// One load and one compile per store revision, shared by everything that serves the mesh (as Kuma
// builds one mesh context per revision for all its generators): the xDS server, GET /v1/edge/config
// and the Workers KV publisher read the same MeshRevision, so the sidecars and the edge never see
// two versions of one write, and a revision costs one read of the store and one validation pass.
//
// Its home is between translate/ + modules/ (what a revision is compiled with) and edge/ + api/
// (who read it): edge/ only serialises a revision's edge configuration; xds/ knows none of this, it
// is handed each revision's CompiledMesh through its ConfigCache by server.ts.
import type { EdgeConfig } from "../../schema/edge-config.ts";
import type { ModuleCode } from "../envoy/index.ts";
import type { MetricsRegistry } from "../metrics.ts";
import { type Resource, validateResource } from "../resources/index.ts";
import type { ResourceStore } from "../store/index.ts";
import { translateEdge } from "../translate/edge.ts";
import { type CompiledMesh, compileMesh } from "../translate/index.ts";

export {
  type ConfigurationCheck,
  type ConfigurationCheckOptions,
  ConfigurationCheckUnavailableError,
  type ConfigurationProblem,
  type ConfigurationVerdict,
  createConfigurationCheck,
  type PluginCheck,
} from "./check.ts";

/** A store revision, loaded, validated and compiled once for every consumer. */
export interface MeshRevision {
  readonly revision: number;
  /** The stored resources that validate (a row that does not is logged and left out). */
  readonly resources: readonly Resource[];
  /** The code of every module the resources name, and the built-in "mesh". */
  readonly modules: ReadonlyMap<string, ModuleCode>;
  /** What the xDS server translates each proxy class from (compileMesh). */
  readonly mesh: CompiledMesh;
  /** The edge workers' configuration (translateEdge), made the first time it is asked for. */
  edge(): EdgeConfig;
}

/** The WasmModule resources of a revision, as the module registry's codes() takes them. */
export type ModuleRefs = readonly { name: string; sha256: string }[];

export interface RevisionSourceOptions {
  store: ResourceStore;
  /** The modules' code (the registry's codes()); default none, which only a mesh without plugins can do without. */
  codes?: (modules: ModuleRefs) => Promise<ReadonlyMap<string, ModuleCode>>;
  /** Where `wasmesh_revision_compiles_total` is registered, if anywhere. */
  metrics?: MetricsRegistry;
  /** The mesh CA's trust domain, which the sidecars' mTLS names (default wasmesh.local). */
  trustDomain?: string;
  log?: (line: string) => void;
}

export interface RevisionSource {
  /**
   * The revision the store is at now (or a later one), compiled once: callers asking at the same
   * revision share one load, and a revision once built is not built again.
   */
  current(): Promise<MeshRevision>;
  /** Revisions loaded and compiled so far. */
  readonly compiles: number;
}

/** Reads of a store that keeps being written give up after this many attempts at a stable one. */
const MAX_LOAD_ATTEMPTS = 5;

export function createRevisionSource(options: RevisionSourceOptions): RevisionSource {
  const { store } = options;
  const log = options.log ?? ((line: string) => console.error(line));
  const codes = options.codes ?? (async () => new Map<string, ModuleCode>());
  const counter = options.metrics?.counter(
    "wasmesh_revision_compiles_total",
    "Store revisions loaded and compiled (once per revision, for xDS, the edge and the KV publisher)",
  );
  let compiles = 0;
  /** The newest revision built or being built. */
  let latest: { revision: number; built: Promise<MeshRevision> } | undefined;

  /** The resources at one revision: the revision is read before and after the list, until they agree. */
  async function snapshot(): Promise<{
    revision: number;
    stored: Awaited<ReturnType<ResourceStore["list"]>>;
  }> {
    for (let attempt = 1; ; attempt++) {
      const revision = await store.revision();
      const stored = await store.list();
      const after = await store.revision();
      // A write in between: the list may hold part of it. Another try; a store written without pause
      // is labelled with the older revision (its resources are at least that new).
      if (after === revision || attempt === MAX_LOAD_ATTEMPTS) return { revision, stored };
    }
  }

  async function build(): Promise<MeshRevision> {
    const { revision, stored } = await snapshot();
    const resources: Resource[] = [];
    for (const row of stored) {
      // The store holds only validated resources; validating again narrows the type and guards
      // against a database edited by hand.
      const result = validateResource(row, { stored: true });
      if (result.ok) resources.push(result.resource);
      else
        log(
          `wasmesh: ignoring invalid stored ${row.kind}/${row.metadata.name}: ${result.errors[0]?.message}`,
        );
    }
    const refs = resources.flatMap((r) =>
      r.kind === "WasmModule" ? [{ name: r.metadata.name, sha256: r.spec.sha256 }] : [],
    );
    const modules = await codes(refs);
    const mesh = compileMesh(resources, {
      modules,
      ...(options.trustDomain !== undefined ? { trustDomain: options.trustDomain } : {}),
    });
    compiles++;
    counter?.inc();
    let edge: { config: EdgeConfig } | { error: unknown } | undefined;
    return {
      revision,
      resources,
      modules,
      mesh,
      edge() {
        edge ??= (() => {
          try {
            return { config: translateEdge(resources) };
          } catch (error) {
            return { error };
          }
        })();
        if ("error" in edge) throw edge.error;
        return edge.config;
      },
    };
  }

  return {
    async current() {
      const revision = await store.revision();
      if (latest !== undefined && latest.revision >= revision) return latest.built;
      const entry = { revision, built: build() };
      latest = entry;
      entry.built.then(
        // Labelled by what was read, which a write in between may have moved on.
        (built) => {
          if (latest === entry) entry.revision = built.revision;
        },
        () => {
          // A failure (the store) is not the revision's outcome: the next call tries again.
          if (latest === entry) latest = undefined;
        },
      );
      return entry.built;
    },
    get compiles() {
      return compiles;
    },
  };
}
