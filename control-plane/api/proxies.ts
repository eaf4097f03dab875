// GET /v1/proxies/<node>/config: what the xDS server last sent a connected proxy, as Envoy sees it
// (istioctl proxy-config's question), decoded from the very bytes the stream was sent (envoy/'s
// protos) into Envoy's JSON, plus the module digest of each Wasm filter. Read-only: a read-only
// token is enough (auth.ts).
import { createHash } from "node:crypto";
import { type Static, Type } from "@sinclair/typebox";
import { Hono } from "hono";
import { describeRoute } from "hono-openapi";
import {
  anyToObject,
  EXTENSION_TYPE,
  LOCAL_MODULE_FILE,
  type ModuleCode,
  TYPE_URL,
  type TypeUrl,
} from "../envoy/index.ts";
import { ProxyStatus } from "../xds/status.ts";
import { ApiError, badRequest, notFound } from "./errors.ts";
import { errorResponse, json, pathParam, queryParam } from "./openapi.ts";

/** What the xDS server says it sent a proxy (XdsServer.sentTo). */
export type SentConfig = (nodeId: string) =>
  | {
      status: ProxyStatus;
      types: ReadonlyMap<TypeUrl, readonly { name: string; version: string; any: Uint8Array }[]>;
    }
  | undefined;

export interface ProxyDeps {
  /** Absent: the route answers 503 (no xDS server in this process). */
  sentTo?: SentConfig;
  /** The module code of the revision the xDS server serves, to name each Wasm filter's version. */
  modules?: () => ReadonlyMap<string, ModuleCode>;
}

/** The types by the names `wasmesh inspect proxy --type` and Envoy's admin use, in push order. */
export const CONFIG_TYPES = {
  clusters: TYPE_URL.cluster,
  endpoints: TYPE_URL.endpoint,
  listeners: TYPE_URL.listener,
  routes: TYPE_URL.route,
  extensions: TYPE_URL.extensionConfig,
} as const satisfies Record<string, TypeUrl>;
export type ConfigType = keyof typeof CONFIG_TYPES;
const TYPE_NAMES = Object.keys(CONFIG_TYPES) as ConfigType[];

const WasmCode = Type.Object(
  {
    filter: Type.String({ description: "the ECDS resource (and HTTP filter) name" }),
    module: Type.String({ description: "the module (vm_id): a WasmModule's name, or mesh for the built-in" }),
    delivery: Type.Union([Type.Literal("inline"), Type.Literal("file")], {
      description: "inline bytes, or a file the data-plane agent fetched (vm_config.code.local.filename)",
    }),
    codeSha256: Type.String({
      description: "sha256 of the code Envoy loads (its memory maximum capped by the control plane)",
    }),
    sha256: Type.Optional(
      Type.String({
        description:
          "the module version's digest, as pushed (the WasmModule's spec.sha256; the built-in's for mesh), when that code is the current revision's",
      }),
    ),
  },
  { additionalProperties: false },
);
type WasmCode = Static<typeof WasmCode>;

const ProxyConfig = Type.Object(
  {
    proxy: ProxyStatus,
    types: Type.Array(
      Type.Object({
        type: Type.Union(TYPE_NAMES.map((t) => Type.Literal(t))),
        typeUrl: Type.String(),
        sent: Type.Optional(Type.String({ description: "version (store revision) last sent" })),
        acked: Type.Optional(Type.String({ description: "version last acknowledged" })),
        resources: Type.Array(
          Type.Object({
            name: Type.String(),
            version: Type.String({ description: "content hash of the resource's bytes" }),
            resource: Type.Record(Type.String(), Type.Unknown(), {
              description:
                "the resource as Envoy's JSON (snake_case fields, each Any unpacked with its @type); a Wasm filter's inline code is shown as '<N bytes, sha256 …>'",
            }),
          }),
        ),
      }),
    ),
    wasm: Type.Array(WasmCode, { description: "each Wasm filter of the extensions sent, and its code" }),
  },
  { title: "ProxyConfig" },
);

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v) && !ArrayBuffer.isView(v);

const sha256Hex = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

/** Byte fields as base64, and a Wasm filter's inline code as a note of its size and digest. */
function showBytes(value: unknown, key = ""): unknown {
  if (value instanceof Uint8Array) {
    return key === "inline_bytes"
      ? `<${value.length} bytes, sha256 ${sha256Hex(value)}>`
      : Buffer.from(value).toString("base64");
  }
  if (Array.isArray(value)) return value.map((v) => showBytes(v));
  if (!isObject(value)) return value;
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, showBytes(v, k)]));
}

/** The Wasm filter of an ECDS resource, and the digest of its code; undefined for other extensions. */
function wasmOf(
  name: string,
  resource: Record<string, unknown>,
  modules: ReadonlyMap<string, ModuleCode>,
): WasmCode | undefined {
  const typed = resource.typed_config;
  if (!isObject(typed) || typed["@type"] !== EXTENSION_TYPE.wasmFilter) return undefined;
  const vm = isObject(typed.config) ? typed.config.vm_config : undefined;
  if (!isObject(vm)) return undefined;
  const module = typeof vm.vm_id === "string" ? vm.vm_id : "";
  const local = isObject(vm.code) && isObject(vm.code.local) ? vm.code.local : {};
  let code: Pick<WasmCode, "delivery" | "codeSha256"> | undefined;
  if (local.inline_bytes instanceof Uint8Array)
    code = { delivery: "inline", codeSha256: sha256Hex(local.inline_bytes) };
  else if (typeof local.filename === "string") {
    const digest = LOCAL_MODULE_FILE.exec(local.filename)?.[2];
    if (digest !== undefined) code = { delivery: "file", codeSha256: digest };
  }
  if (code === undefined) return undefined;
  const current = modules.get(module);
  const version =
    current !== undefined && (current.codeSha256 ?? current.sha256) === code.codeSha256
      ? current.sha256
      : undefined;
  return { filter: name, module, ...code, ...(version !== undefined ? { sha256: version } : {}) };
}

export function proxyRoutes(deps: ProxyDeps): Hono {
  const router = new Hono();
  router.get(
    "/:node/config",
    describeRoute({
      operationId: "proxyConfig",
      summary: "The configuration the xDS server last sent a connected proxy, as Envoy sees it",
      description:
        "For each type the proxy subscribes to (or the one `type` names): the resources it was last sent " +
        "and holds (acknowledged or not: compare `sent` and `acked`), decoded into Envoy's JSON; and " +
        "each Wasm filter's module with the digest of its code. A read-only token is enough.",
      tags: ["system"],
      parameters: [
        pathParam("node", "the proxy's node id (wasmesh status lists them)"),
        queryParam(
          "type",
          Type.Union(TYPE_NAMES.map((t) => Type.Literal(t))),
          "only this type (default every type)",
        ),
      ],
      responses: {
        "200": { description: "what the proxy was sent", content: json(ProxyConfig) },
        "400": errorResponse("an unknown type"),
        "404": errorResponse("no proxy of that node id is connected"),
        "503": errorResponse("this control plane runs no xDS server"),
      },
    }),
    (c) => {
      const node = c.req.param("node");
      const only = c.req.query("type");
      if (only !== undefined && !(TYPE_NAMES as string[]).includes(only))
        throw badRequest(`type must be one of ${TYPE_NAMES.join(", ")} (got '${only}')`, [
          { path: "type", message: `expected one of ${TYPE_NAMES.join(", ")}` },
        ]);
      if (deps.sentTo === undefined)
        throw new ApiError(503, "unavailable", "this control plane runs no xDS server");
      const sent = deps.sentTo(node);
      if (sent === undefined)
        throw notFound(`no proxy '${node}' is connected (wasmesh status lists the connected proxies)`);
      const modules = deps.modules?.() ?? new Map<string, ModuleCode>();
      const wasm: WasmCode[] = [];
      const types: Static<typeof ProxyConfig>["types"] = [];
      for (const type of TYPE_NAMES) {
        if (only !== undefined && type !== only) continue;
        const typeUrl = CONFIG_TYPES[type];
        const held = sent.types.get(typeUrl);
        if (held === undefined) continue;
        const resources = held.map(({ name, version, any }) => {
          const decoded = anyToObject(any);
          if (typeUrl === TYPE_URL.extensionConfig) {
            const code = wasmOf(name, decoded, modules);
            if (code !== undefined) wasm.push(code);
          }
          return { name, version, resource: showBytes(decoded) as Record<string, unknown> };
        });
        const sentVersion = sent.status.sent[typeUrl];
        const ackedVersion = sent.status.acked[typeUrl];
        types.push({
          type,
          typeUrl,
          ...(sentVersion !== undefined ? { sent: sentVersion } : {}),
          ...(ackedVersion !== undefined ? { acked: ackedVersion } : {}),
          resources,
        });
      }
      return c.json({ proxy: sent.status, types, wasm });
    },
  );
  return router;
}
