// Module routes: uploading a module version (the only way a WasmModule resource is written) and
// serving module bytes by sha256: a version exactly as pushed, or the code proxies run (its memory
// maximum capped), which data-plane agents fetch for the sidecars that load modules from files.
import { getConnInfo } from "@hono/node-server/conninfo";
import { Type } from "@sinclair/typebox";
import { type Context, Hono } from "hono";
import { createMiddleware } from "hono/factory";
import { describeRoute } from "hono-openapi";
import type { ModuleRegistry, PushOptions } from "../modules/types.ts";
import {
  MESH_MODULE,
  ResourceName,
  validateResource,
  WasmModule,
  type WasmPlugin,
} from "../resources/index.ts";
import type { ConfigurationCheck } from "../revision/index.ts";
import type { ResourceStore } from "../store/index.ts";
import { agentRoute } from "./auth.ts";
import { accepts, etag, expectedVersion, limit, WASM_TYPES } from "./body.ts";
import { ApiError, ErrorDetail, invalid, notFound } from "./errors.ts";
import { bodyOf, component, errorResponse, ifMatchHeader, json, pathParam, queryParam } from "./openapi.ts";
import type { Writer } from "./writer.ts";

export interface ModuleDeps {
  store: ResourceStore;
  modules: ModuleRegistry | undefined;
  writer: Writer;
  maxModuleBytes: number;
  /** Module validations one client (remote address) may have running at once; more get 429. */
  validationsPerClient: number;
  /** The Retry-After of that 429: about how long a validation can take. */
  validationRetryAfterSeconds: number;
  /** Loads the configurations of a module's WasmPlugins into a version being pushed (revision/check.ts). */
  check?: ConfigurationCheck;
}

/** The default of ModuleDeps.validationsPerClient. */
export const DEFAULT_VALIDATIONS_PER_CLIENT = 2;

const DESCRIPTION_MAX = 1024; // as WasmModule's spec.description
const WASM_FILE = /^([0-9a-f]{64})\.wasm$/;

type ModulesEnv = { Variables: { modules: ModuleRegistry } };

/** POST /v1/modules/<name>: the WasmModule as stored, and what validation could not check. */
const ModulePushResult = component(
  "ModulePushResult",
  Type.Object(
    { ...WasmModule.properties, warnings: Type.Array(ErrorDetail) },
    {
      additionalProperties: false,
      title: "ModulePushResult",
      description:
        "The WasmModule resource as stored, plus `warnings`: what validation could not check (each also " +
        "sent as a Wasmesh-Warning header); empty when the smoke run checked everything",
    },
  ),
);
const WasmBytes = Type.String({ contentMediaType: "application/wasm" });

/** The client of a request: its remote address (behind a proxy, the proxy's). */
export function clientOf(c: Context): string {
  try {
    return getConnInfo(c).remote.address ?? "unknown";
  } catch {
    // Not served by @hono/node-server (app.request in tests): one client.
    return "unknown";
  }
}

export function moduleRoutes(deps: ModuleDeps): Hono {
  const { store, writer } = deps;
  const router = new Hono();
  /** Validations running (or waiting for a worker) per client address. */
  const validating = new Map<string, number>();

  // First on both routes: without a registry there is nothing to read or store, so say so before
  // reading a possibly large body.
  const registry = createMiddleware<ModulesEnv>(async (c, next) => {
    if (!deps.modules) {
      throw new ApiError(
        503,
        "unavailable",
        "this control plane has no module registry; module routes are disabled",
      );
    }
    c.set("modules", deps.modules);
    await next();
  });

  const nameParam = pathParam("name", "module name (the WasmModule resource's name)", ResourceName);
  const unavailable = errorResponse("no module registry on this control plane");
  const pushed = (description: string) => ({
    description,
    headers: {
      "Wasmesh-Warning": {
        description:
          "one per thing validation could not check (e.g. the smoke run sent no request): the message of " +
          "each of the body's `warnings`",
        schema: { type: "string" as const },
      },
    },
    content: json(ModulePushResult),
  });

  const pushModule = describeRoute({
    operationId: "pushModule",
    summary: "Upload a module version",
    description:
      "Validates the bytes (WebAssembly, Proxy-Wasm ABI exports, the memory ceiling, a smoke run in a " +
      "worker pool), stores them by sha256 and creates or updates the WasmModule resource of this " +
      "name, which is returned with the warnings of the validation (what it could not check). A " +
      "client may have a bounded number of validations running at once; beyond it, 429.",
    tags: ["WasmModule"],
    parameters: [
      nameParam,
      queryParam("description", Type.String({ maxLength: DESCRIPTION_MAX })),
      queryParam(
        "configuration",
        Type.String(),
        "plugin configuration for the validation's smoke run (not stored)",
      ),
      queryParam("rootId", Type.String(), "plugin root_id for the smoke run"),
      ifMatchHeader,
    ],
    requestBody: { required: true, content: bodyOf(WasmBytes, WASM_TYPES) },
    responses: {
      "200": pushed("updated (or the same bytes again)"),
      "201": pushed("created"),
      "400": errorResponse(
        "the module was rejected (details say why: path module.memory for the memory ceiling), it refuses the " +
          "configuration of a WasmPlugin that uses it (details name the plugin), or the name is invalid",
      ),
      "409": errorResponse(
        "stale If-Match, or the module's WasmPlugins changed while it was checked against them",
      ),
      "413": errorResponse("module too large"),
      "415": errorResponse("not application/wasm or application/octet-stream"),
      "429": {
        ...errorResponse("this client already has as many validations running as it may"),
        headers: {
          "Retry-After": {
            description: "seconds after which a validation of this client will have finished",
            schema: { type: "integer" },
          },
        },
      },
      "503": unavailable,
    },
  });
  /** The stored WasmPlugins of module `name`, and what of them its code sees (for a 409 check). */
  async function pluginsOf(name: string): Promise<{ plugins: WasmPlugin[]; seen: string }> {
    const plugins: WasmPlugin[] = [];
    for (const row of await store.list("WasmPlugin")) {
      const result = validateResource(row, { stored: true });
      if (result.ok && result.resource.kind === "WasmPlugin" && result.resource.spec.module === name)
        plugins.push(result.resource);
    }
    const seen = JSON.stringify(
      plugins.map((p) => [p.metadata.name, p.spec.rootId ?? "", p.spec.configuration]),
    );
    return { plugins, seen };
  }

  /**
   * With a configuration check, a new version must accept the configurations of the module's
   * WasmPlugins, as a write of those plugins would have to: they are loaded into it before the write
   * lock (so a version spinning on one holds up no other write); under the lock the push goes on
   * only if they are still as checked.
   */
  function pluginsAccept(name: string): Pick<PushOptions, "accept" | "exclusive"> {
    const check = deps.check;
    if (check === undefined) return { exclusive: writer.exclusive };
    let checked: string | undefined;
    return {
      async accept(code) {
        const { plugins, seen } = await pluginsOf(name);
        checked = seen;
        const checks = await check.plugins(
          plugins,
          new Map([[name, code.sha256]]),
          new Map([[code.sha256, code]]),
        );
        const problems = checks.flatMap((c) => c.problems);
        if (problems.length > 0) {
          throw invalid(
            `this version of module '${name}' refuses the configuration of WasmPlugins that use it; nothing was stored`,
            problems.map(({ kind, name: resource, path, message }) => ({
              ...(kind !== undefined ? { kind } : {}),
              ...(resource !== undefined ? { name: resource } : {}),
              path,
              message,
            })),
          );
        }
      },
      exclusive: (fn) =>
        writer.exclusive(async () => {
          if (checked !== undefined && (await pluginsOf(name)).seen !== checked) {
            throw new ApiError(
              409,
              "conflict",
              `the WasmPlugins of module '${name}' changed while this version was checked against them; push it again`,
            );
          }
          return fn();
        }),
    };
  }

  router.post("/:name", pushModule, registry, accepts(WASM_TYPES), limit(deps.maxModuleBytes), async (c) => {
    // Name and description are checked by the registry (one set of rules, one error format).
    const name = c.req.param("name");
    const description = c.req.query("description");
    // For the validation's smoke run only (not stored): the plugin configuration, as a string.
    const configuration = c.req.query("configuration");
    const rootId = c.req.query("rootId");
    const version = expectedVersion(c.req.header("if-match"), undefined, "");
    // One client's slow or hostile uploads must not hold up everyone's: each validation takes a
    // worker of the pool, so a client gets a bounded share of them (checked before the body is read).
    const client = clientOf(c);
    const running = validating.get(client) ?? 0;
    if (running >= deps.validationsPerClient) {
      throw new ApiError(
        429,
        "too_many_requests",
        `${client} already has ${running} module validations running, the most one client may have at once ` +
          `(${deps.validationsPerClient}); retry when one has finished`,
        [],
        { "Retry-After": String(deps.validationRetryAfterSeconds) },
      );
    }
    validating.set(client, running + 1);
    let result: Awaited<ReturnType<ModuleRegistry["push"]>>;
    try {
      const bytes = new Uint8Array(await c.req.arrayBuffer());
      // Validation runs outside the write lock (pushes validate side by side); storing runs under
      // it like every other write, so reference checks never race a push.
      result = await c.var.modules.push(name, bytes, {
        ...(description !== undefined ? { description } : {}),
        ...(version !== undefined ? { expectedVersion: version } : {}),
        ...(configuration !== undefined ? { configuration } : {}),
        ...(rootId !== undefined ? { rootId } : {}),
        ...pluginsAccept(name),
      });
    } finally {
      const left = (validating.get(client) ?? 1) - 1;
      if (left > 0) validating.set(client, left);
      else validating.delete(client);
    }
    if (!result.unchanged) writer.committed(Number(result.resource.metadata.resourceVersion));
    // The body is the resource, as for every other write, plus what validation could not check;
    // each warning also travels in a header, which the CLI prints. Header values must be printable
    // ASCII on one line.
    for (const warning of result.warnings)
      c.header("Wasmesh-Warning", warning.message.replace(/[^\x20-\x7e]+/g, " "), { append: true });
    return c.json({ ...result.resource, warnings: result.warnings }, result.created ? 201 : 200, {
      ETag: etag(result.resource.metadata.resourceVersion),
      ...(result.created ? { Location: `/v1/wasmmodules/${name}` } : {}),
    });
  });

  const getModuleBytes = describeRoute({
    operationId: "getModuleBytes",
    summary: "Module bytes by sha256: a version as pushed, or the code proxies are told to load",
    description:
      "The digest is that of the bytes served. A version's own digest serves it exactly as pushed; " +
      "the digest an ECDS resource names in vm_config.code.local.filename (modules/<name>/<sha256>.wasm, " +
      "for sidecars whose data-plane agent fetches module files) serves exactly the code the proxy is " +
      "to run, whose declared memory maximum the control plane capped. `mesh` serves the built-in module.",
    tags: ["WasmModule"],
    parameters: [nameParam, pathParam("file", "<sha256>.wasm", Type.String({ pattern: WASM_FILE.source }))],
    responses: {
      "200": { description: "the module", content: bodyOf(WasmBytes, ["application/wasm"]) },
      "404": errorResponse("no such module or version"),
      "503": unavailable,
    },
  });
  // Data-plane agents fetch the modules their sidecars are told to load (auth.ts agentRoute).
  router.get("/:name/:file", getModuleBytes, agentRoute, registry, async (c) => {
    const name = c.req.param("name");
    const sha256 = WASM_FILE.exec(c.req.param("file"))?.[1];
    if (sha256 === undefined) throw notFound("module files are named <sha256>.wasm (lower-case hex)");
    const { modules } = c.var;
    if (name === MESH_MODULE) {
      // The built-in has no WasmModule resource, and only its own digests are served under its name.
      if (sha256 !== modules.builtinSha256 && sha256 !== modules.builtinCodeSha256)
        throw notFound(`no module version ${sha256}`);
    } else if (!(await store.get("WasmModule", name))) {
      // Only bytes of a module that exists: deleting the WasmModule withdraws its versions.
      throw notFound(`WasmModule '${name}' does not exist`);
    }
    // A version as pushed, else code as translation hands it to proxies (by the digest ECDS names).
    const bytes = (await modules.bytes(sha256)) ?? modules.code(sha256);
    if (!bytes) throw notFound(`no module version ${sha256}`);
    // c.body wants bytes over a plain ArrayBuffer; copy only in the (unusual) shared-buffer case.
    const body =
      bytes.buffer instanceof ArrayBuffer ? (bytes as Uint8Array<ArrayBuffer>) : new Uint8Array(bytes);
    return c.body(body, 200, {
      "Content-Type": "application/wasm",
      // Content-addressed: the bytes behind this URL never change.
      "Cache-Control": "public, max-age=31536000, immutable",
      ETag: etag(sha256),
    });
  });

  return router;
}
