// The modules as the authority on their configuration: before a write is committed, what it would
// have the proxies load is loaded into the modules first, through host/ in the validation pool's
// workers (modules/configure.ts), and a refusal becomes the write's 400, naming the resource field
// the refused part was made from. Two checks:
// - the routing filter: the built-in module loads the configuration that holds every proxy
//   class's and the edge's (routingSuperset); a refused field is traced back to its Route rule,
//   CircuitBreaker or policy (routingFieldOrigin);
// - the WasmPlugins a write puts: each configuration loaded into its module. These run before the
//   write takes the API's write lock (a user's module may spin until its time limit, and must not
//   hold up other writes meanwhile); the routing check needs the whole resulting state, so it runs
//   under the lock, in the built-in module, which is ours.
// Verdicts are remembered by (module digest, root id, configuration), so a write that leaves the
// routing configuration as it was costs its translation and no call into a module.
import { createHash } from "node:crypto";
import type { ModuleCode } from "../envoy/index.ts";
import type { ConfigureVerdict } from "../modules/configure.ts";
import { type Kind, MESH_MODULE, type Resource, type WasmPlugin } from "../resources/index.ts";
import { canonicalJson } from "../translate/extensions.ts";
import { indexMesh } from "../translate/mesh.ts";
import { routingFieldOrigin, routingSuperset } from "../translate/routing-check.ts";

/** A field a module refuses, located as precisely as the configuration's provenance allows. */
export interface ConfigurationProblem {
  /** The resource the refused part was made from; absent when it is the translation's own. */
  kind?: Kind;
  name?: string;
  path: string;
  message: string;
}

export interface ConfigurationVerdict {
  /** Refusals the write brings about: it must not be committed. */
  errors: ConfigurationProblem[];
  /** Refusals of stored resources the write leaves alone (they were stored before this check). */
  warnings: ConfigurationProblem[];
}

/** A WasmPlugin's configuration and the module digest it was checked against, before the write lock. */
export interface PluginCheck {
  plugin: WasmPlugin;
  /** The digest of its module when it was checked (the built-in's for "mesh"). */
  sha256: string | undefined;
  problems: ConfigurationProblem[];
}

/**
 * The built-in module could not give a verdict on the routing configuration (its time limit, a
 * crash of the worker, shutting down): nothing the client sent is known to be wrong; the API
 * answers 503 and stores nothing.
 */
export class ConfigurationCheckUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigurationCheckUnavailableError";
  }
}

export interface ConfigurationCheckOptions {
  /** The built-in module (build/mesh.wasm): the routing filter, and WasmPlugins of "mesh". */
  builtin: ModuleCode;
  /** A stored module's bytes by digest (the registry's bytes()). */
  moduleBytes: (sha256: string) => Promise<Uint8Array | undefined>;
  /** Loads configurations into a module, with the validation limits (ValidationPool.configure). */
  configure: (
    code: ModuleCode,
    rootId: string,
    configurations: readonly string[],
  ) => Promise<ConfigureVerdict[]>;
  /** Verdicts remembered, least recently used out first (default 256). */
  cacheSize?: number;
}

export interface ConfigurationCheck {
  /**
   * Each plugin's configuration loaded into its module as `digests` (module name → sha256) has it;
   * to run before the write lock is taken.
   */
  plugins(
    plugins: readonly WasmPlugin[],
    digests: ReadonlyMap<string, string>,
    /** Code not in the registry yet, by digest: a version being pushed. */
    pending?: ReadonlyMap<string, ModuleCode>,
  ): Promise<PluginCheck[]>;
  /**
   * The routing filter of `candidate` (the state a write leaves) loaded into the built-in module.
   * A refusal in a resource `written` (kind/name keys) is an error; one in a resource left alone is
   * an error only when `baseline` (the state before the write) does not have it too.
   */
  routing(
    candidate: readonly Resource[],
    baseline: readonly Resource[],
    written: ReadonlySet<string>,
  ): Promise<ConfigurationVerdict>;
}

/** The root id of the built-in routing filter (translate/extensions.ts routingFilter). */
const ROUTING_ROOT_ID = "wasmesh";
/** How the built-in module prefixes what it refuses (assembly/filters/mesh.ts). */
const MESH_REFUSAL = "wasmesh: invalid plugin configuration: ";
/** Stored resources refused one after the other, each left out to look further, at most. */
const MAX_STORED_REFUSALS = 8;

const keyOf = (kind: string, name: string) => `${kind}/${name}`;

export function createConfigurationCheck(options: ConfigurationCheckOptions): ConfigurationCheck {
  const { builtin } = options;
  const cacheSize = options.cacheSize ?? 256;
  const remembered = new Map<string, ConfigureVerdict>();

  /** Calls in progress, so that writes checking the same configuration at once share one. */
  const inflight = new Map<string, Promise<ConfigureVerdict>>();

  /** The module's verdicts, from memory where it has them; one configure call for the rest. */
  function verdicts(code: ModuleCode, rootId: string, texts: readonly string[]): Promise<ConfigureVerdict[]> {
    const keys = texts.map((text) =>
      createHash("sha256")
        .update(code.sha256)
        .update("\0")
        .update(rootId)
        .update("\0")
        .update(text)
        .digest("hex"),
    );
    const found = new Map<string, Promise<ConfigureVerdict>>();
    const ask: { key: string; text: string }[] = [];
    keys.forEach((key, i) => {
      if (found.has(key)) return;
      const known = remembered.get(key);
      if (known !== undefined) {
        remember(key, known); // most recently used
        found.set(key, Promise.resolve(known));
      } else {
        const pending = inflight.get(key);
        if (pending !== undefined) found.set(key, pending);
        else ask.push({ key, text: texts[i] as string });
      }
    });
    if (ask.length > 0) {
      const call = options.configure(
        code,
        rootId,
        ask.map((a) => a.text),
      );
      ask.forEach(({ key }, j) => {
        const answer = call.then(
          (answers): ConfigureVerdict =>
            answers[j] ?? { ok: false, error: "the check gave no verdict", transient: true },
          (error: unknown): ConfigureVerdict => ({
            ok: false,
            error: `the check failed: ${error instanceof Error ? error.message : String(error)}`,
            transient: true,
          }),
        );
        inflight.set(key, answer);
        found.set(key, answer);
        void answer.then((verdict) => {
          inflight.delete(key);
          // A time limit or a crash of the pool is no verdict on the configuration: ask again next time.
          if (verdict.ok || !verdict.transient) remember(key, verdict);
        });
      });
    }
    return Promise.all(keys.map((key) => found.get(key) as Promise<ConfigureVerdict>));
  }

  function remember(key: string, verdict: ConfigureVerdict): void {
    remembered.delete(key);
    remembered.set(key, verdict);
    for (const old of remembered.keys()) {
      if (remembered.size <= cacheSize) break;
      remembered.delete(old);
    }
  }

  /**
   * The routing filter of `resources`, less `dropped`, and where the module's refusal of it is;
   * `reason` is what the module said, without where in the filter (which moves as the mesh does).
   */
  async function routingProblem(
    resources: readonly Resource[],
    dropped: ReadonlySet<string>,
  ): Promise<(ConfigurationProblem & { reason: string }) | undefined> {
    const mesh = indexMesh(resources.filter((r) => !dropped.has(keyOf(r.kind, r.metadata.name))));
    const config = routingSuperset(mesh);
    const [verdict] = await verdicts(builtin, ROUTING_ROOT_ID, [JSON.stringify(config)]);
    if (verdict === undefined || verdict.ok) return undefined;
    if (verdict.transient) {
      throw new ConfigurationCheckUnavailableError(
        `the routing configuration could not be checked, so nothing was stored: ${verdict.error}`,
      );
    }
    const refusal = meshRefusal(verdict.error);
    const origin = refusal && routingFieldOrigin(mesh, config, refusal.path);
    if (refusal === undefined || origin === undefined) {
      return {
        path: "(root)",
        message: `the built-in module refuses the routing filter's configuration: ${verdict.error}`,
        reason: verdict.error,
      };
    }
    return {
      ...origin,
      message: `${refusal.message} (the built-in module, at ${refusal.path} of the routing filter's configuration)`,
      reason: refusal.message,
    };
  }

  return {
    async plugins(plugins, digests, pending) {
      // One configure call per module and root id, for all of its plugins' configurations.
      const groups = new Map<
        string,
        { code: Promise<ModuleCode | undefined>; rootId: string; members: number[] }
      >();
      const checks: PluginCheck[] = plugins.map((plugin) => ({
        plugin,
        sha256: plugin.spec.module === MESH_MODULE ? builtin.sha256 : digests.get(plugin.spec.module),
        problems: [],
      }));
      checks.forEach((check, i) => {
        if (check.sha256 === undefined) return; // no such module: the reference check says so
        const rootId = check.plugin.spec.rootId ?? "";
        const key = `${check.sha256}\0${rootId}`;
        let group = groups.get(key);
        if (group === undefined) {
          const sha256 = check.sha256;
          const known = sha256 === builtin.sha256 ? builtin : pending?.get(sha256);
          const code = known
            ? Promise.resolve(known)
            : options.moduleBytes(sha256).then((bytes) => (bytes ? { sha256, bytes } : undefined));
          group = { code, rootId, members: [] };
          groups.set(key, group);
        }
        group.members.push(i);
      });
      await Promise.all(
        [...groups.values()].map(async ({ code, rootId, members }) => {
          const module = await code;
          const texts = members.map((i) =>
            canonicalJson((checks[i] as PluginCheck).plugin.spec.configuration),
          );
          const answers: ConfigureVerdict[] = module
            ? await verdicts(module, rootId, texts)
            : texts.map(() => ({
                ok: false,
                error: "its module's bytes are missing from the registry: push it again",
              }));
          members.forEach((i, j) => {
            const check = checks[i] as PluginCheck;
            const answer = answers[j];
            if (answer !== undefined && !answer.ok)
              check.problems.push(pluginProblem(check.plugin, answer.error));
          });
        }),
      );
      return checks;
    },

    async routing(candidate, baseline, written) {
      const errors: ConfigurationProblem[] = [];
      const warnings: ConfigurationProblem[] = [];
      // The module says only its first refusal. One in a stored resource the write leaves alone, and
      // which the stored state has too, is a warning; that resource is then left out and the rest
      // checked again, so it cannot hide a refusal the write brings about.
      const dropped = new Set<string>();
      for (let round = 0; round <= MAX_STORED_REFUSALS; round++) {
        const found = await routingProblem(candidate, dropped);
        if (found === undefined) break;
        const { reason, ...problem } = found;
        const key =
          problem.kind !== undefined && problem.name !== undefined
            ? keyOf(problem.kind, problem.name)
            : undefined;
        const stored =
          (key === undefined || !written.has(key)) &&
          round < MAX_STORED_REFUSALS &&
          sameProblem(await routingProblem(baseline, dropped), found);
        if (!stored) {
          errors.push(problem);
          break;
        }
        warnings.push({
          ...problem,
          message: `${problem.message}; it was stored before, so every proxy refuses it now`,
        });
        // Only what holds rules of its own can be left out without changing the rest of the mesh.
        if (key === undefined || (problem.kind !== "Route" && problem.kind !== "CircuitBreaker")) break;
        dropped.add(key);
      }
      return { errors, warnings };
    },
  };
}

type Located = ConfigurationProblem & { reason: string };

function sameProblem(a: Located | undefined, b: Located): boolean {
  return (
    a !== undefined && a.kind === b.kind && a.name === b.name && a.path === b.path && a.reason === b.reason
  );
}

/** The field path and message of the built-in module's refusal, if it is one. */
function meshRefusal(error: string): { path: string; message: string } | undefined {
  if (!error.startsWith(MESH_REFUSAL)) return undefined;
  const rest = error.slice(MESH_REFUSAL.length);
  const colon = rest.indexOf(": ");
  if (colon < 0) return undefined;
  return { path: rest.slice(0, colon), message: rest.slice(colon + 2) };
}

/** A plugin's refused configuration: inside spec.configuration for the built-in module, which names the field. */
function pluginProblem(plugin: WasmPlugin, error: string): ConfigurationProblem {
  const where = { kind: "WasmPlugin" as const, name: plugin.metadata.name };
  const refusal = plugin.spec.module === MESH_MODULE ? meshRefusal(error) : undefined;
  if (refusal !== undefined) {
    const path = refusal.path === "(root)" ? "spec.configuration" : `spec.configuration.${refusal.path}`;
    return { ...where, path, message: `${refusal.message} (the built-in module)` };
  }
  return {
    ...where,
    path: "spec.configuration",
    message: `refused by module '${plugin.spec.module}': ${error}`,
  };
}
