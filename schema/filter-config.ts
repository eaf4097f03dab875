// The filters' plugin configuration, defined once: TypeScript types and the JSON Schema both come
// from these TypeBox definitions. The control plane, the edge worker and the tests import this
// module; the filter module (assembly/filters/config.ts) parses the same shape at run time.
//
// What JSON Schema cannot say (weights add up to 100, one condition per matcher, unique names,
// the regular-expression subset) is checked by the filter module's proxy_on_configure, which is
// the authority: `validateFilterConfig` runs the structural check here, and callers that hold the
// module (control plane, worker) also configure it through the TypeScript host before accepting.
import { type Static, type TSchema, Type } from "@sinclair/typebox";
import { Value, type ValueError, ValueErrorType } from "@sinclair/typebox/value";

const HEADER_NAME = "^:?[!#$%&'*+\\-.^_`|~0-9A-Za-z]+$";
const NAME = "^[A-Za-z0-9._:/-]{1,128}$";
const CLUSTER = "^[\\x21-\\x7e]{1,200}$";
const HEADER_VALUE = "^[^\\x00\\r\\n]*$";

const strict = { additionalProperties: false } as const;
const HeaderName = Type.String({
  pattern: HEADER_NAME,
  description: "HTTP header name (matched case-insensitively)",
});
const Name = Type.String({ pattern: NAME, description: "letters, digits and . _ - : /, at most 128" });
const Cluster = Type.String({
  pattern: CLUSTER,
  description: "Envoy cluster name (printable ASCII, no spaces)",
});
const Millis = (max: number) => Type.Integer({ minimum: 1, maximum: max });
const Percent = Type.Number({
  minimum: 0,
  maximum: 100,
  description: "share of matching requests, default 100",
});
const Status = Type.Integer({ minimum: 200, maximum: 599 });

const stringConditions = {
  exact: Type.Optional(Type.String()),
  prefix: Type.Optional(Type.String()),
  suffix: Type.Optional(Type.String()),
  contains: Type.Optional(Type.String()),
  /** Full match, linear-time subset (see docs/filters.md). */
  regex: Type.Optional(Type.String({ maxLength: 1024 })),
  ignoreCase: Type.Optional(Type.Boolean()),
};

/** Exactly one of exact, prefix, suffix, contains, regex. */
export const StringMatch = Type.Object(stringConditions, strict);

/** A header or query parameter condition: exactly one of the string conditions, present or absent. */
export const NamedMatch = Type.Object(
  {
    name: Type.String({ minLength: 1 }),
    ...stringConditions,
    present: Type.Optional(Type.Boolean()),
    absent: Type.Optional(Type.Boolean()),
  },
  strict,
);

export const RequestMatch = Type.Object(
  {
    path: Type.Optional(StringMatch),
    authority: Type.Optional(StringMatch),
    methods: Type.Optional(Type.Array(Type.String({ minLength: 1 }))),
    headers: Type.Optional(Type.Array(NamedMatch)),
    query: Type.Optional(Type.Array(NamedMatch)),
  },
  strict,
);

const HeaderValue = Type.Object({ name: HeaderName, value: Type.String({ pattern: HEADER_VALUE }) }, strict);

export const HeaderChanges = Type.Object(
  {
    set: Type.Optional(Type.Array(HeaderValue)),
    add: Type.Optional(Type.Array(HeaderValue)),
    remove: Type.Optional(Type.Array(HeaderName)),
  },
  strict,
);

export const HeaderRule = Type.Object(
  {
    name: Name,
    match: Type.Optional(RequestMatch),
    requestHeaders: Type.Optional(HeaderChanges),
    responseHeaders: Type.Optional(HeaderChanges),
    deny: Type.Optional(
      Type.Object({ status: Type.Optional(Status), body: Type.Optional(Type.String()) }, strict),
    ),
    fault: Type.Optional(
      Type.Object(
        {
          abort: Type.Optional(Type.Object({ status: Status, percent: Type.Optional(Percent) }, strict)),
          delay: Type.Optional(
            Type.Object({ ms: Millis(3_600_000), percent: Type.Optional(Percent) }, strict),
          ),
        },
        strict,
      ),
    ),
  },
  strict,
);

export const Destination = Type.Object(
  {
    cluster: Cluster,
    /** Required when a route has more than one destination; weights add up to 100. */
    weight: Type.Optional(Type.Integer({ minimum: 0, maximum: 100 })),
  },
  strict,
);

export const Route = Type.Object(
  {
    name: Name,
    match: Type.Optional(RequestMatch),
    destinations: Type.Array(Destination, { minItems: 1 }),
    /** Exactly one of header, cookie: the value is hashed so a user stays on one destination. */
    sticky: Type.Optional(
      Type.Object(
        { header: Type.Optional(HeaderName), cookie: Type.Optional(Type.String({ minLength: 1 })) },
        strict,
      ),
    ),
    timeoutMs: Type.Optional(Millis(3_600_000)),
    retries: Type.Optional(
      Type.Object(
        {
          attempts: Type.Integer({ minimum: 0, maximum: 10 }),
          /** Envoy's retry_on list, default "5xx,reset,connect-failure". */
          on: Type.Optional(Type.String({ pattern: HEADER_VALUE })),
          perTryTimeoutMs: Type.Optional(Millis(3_600_000)),
        },
        strict,
      ),
    ),
  },
  strict,
);

export const Breaker = Type.Object(
  {
    cluster: Cluster,
    consecutiveErrors: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000, default: 5 })),
    intervalMs: Type.Optional(Millis(86_400_000)),
    baseEjectionMs: Type.Optional(Millis(86_400_000)),
    maxEjectionMs: Type.Optional(Millis(86_400_000)),
    maxConcurrent: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000 })),
    /** Cluster that takes the traffic while the circuit is open, instead of a local 503. */
    fallback: Type.Optional(Cluster),
  },
  strict,
);

export const FilterConfig = Type.Object(
  {
    headerRules: Type.Optional(Type.Array(HeaderRule)),
    routes: Type.Optional(Type.Array(Route)),
    breakers: Type.Optional(Type.Array(Breaker)),
  },
  { ...strict, $id: "https://wasmesh.io/schemas/filter-config.json", title: "wasmesh filter configuration" },
);

export type FilterConfig = Static<typeof FilterConfig>;
export type HeaderRule = Static<typeof HeaderRule>;
export type Route = Static<typeof Route>;
export type Breaker = Static<typeof Breaker>;
export type RequestMatch = Static<typeof RequestMatch>;

/** The JSON Schema document (TypeBox schemas are plain JSON Schema objects). */
export const filterConfigJsonSchema: TSchema = FilterConfig;

export interface ConfigError {
  /** Dotted field path as the filter module writes it, e.g. `routes[0].destinations[1].weight`. */
  path: string;
  message: string;
}

export type ValidationResult = { ok: true; config: FilterConfig } | { ok: false; errors: ConfigError[] };

/** Converts a JSON Pointer (`/routes/0/weight`) to the module's notation (`routes[0].weight`). */
export function pointerToPath(pointer: string): string {
  let out = "";
  for (const raw of pointer.split("/").slice(1)) {
    const segment = raw.replaceAll("~1", "/").replaceAll("~0", "~");
    if (/^\d+$/.test(segment)) out += `[${segment}]`;
    else out += out.length === 0 ? segment : `.${segment}`;
  }
  return out.length === 0 ? "(root)" : out;
}

/** Structural validation against the JSON Schema, with every error's field path. */
export function validateFilterConfig(value: unknown): ValidationResult {
  if (Value.Check(FilterConfig, value)) return { ok: true, config: value };
  return { ok: false, errors: schemaErrors(FilterConfig, value) };
}

/**
 * Every error `value` has against `schema`, each with its dotted field path. Exported so that other
 * schemas built from these pieces (the control plane's resources) report paths the same way.
 */
export function schemaErrors(schema: TSchema, value: unknown): ConfigError[] {
  const errors: ConfigError[] = [];
  for (const error of Value.Errors(schema, value)) {
    let path = pointerToPath(error.path);
    // An unknown field is reported on its parent; name the field itself, as the module does.
    const unknown = unknownField(error.value, error.schema);
    if (unknown !== undefined) path = path === "(root)" ? unknown : `${path}.${unknown}`;
    errors.push({ path, message: keyMessage(error) ?? literalsMessage(error.schema) ?? error.message });
  }
  return dedupe(errors);
}

/** A record (label map) reports a bad key as "Unexpected property" at the key; say what keys may be. */
function keyMessage(error: ValueError): string | undefined {
  if (error.type !== ValueErrorType.ObjectAdditionalProperties) return undefined;
  const patterns = Object.keys((error.schema.patternProperties ?? {}) as Record<string, unknown>);
  return patterns.length === 0 ? undefined : `key must match ${patterns.join(" or ")}`;
}

/** TypeBox says only "Expected union value" for a union of literals; list the allowed values. */
function literalsMessage(schema: TSchema): string | undefined {
  const options: unknown = schema.anyOf;
  if (!Array.isArray(options) || options.length === 0) return undefined;
  const values: unknown[] = options.map((option: TSchema) => option.const);
  if (values.some((v) => v === undefined)) return undefined;
  return `Expected one of: ${values.map((v) => JSON.stringify(v)).join(", ")}`;
}

function unknownField(value: unknown, schema: TSchema): string | undefined {
  if (schema.additionalProperties !== false || typeof value !== "object" || value === null) return undefined;
  // A record's error is already at the offending key (keyMessage); its value's keys are not fields.
  if (schema.patternProperties !== undefined) return undefined;
  const known = Object.keys((schema.properties ?? {}) as Record<string, unknown>);
  return Object.keys(value).find((key) => !known.includes(key));
}

function dedupe(errors: ConfigError[]): ConfigError[] {
  const seen = new Set<string>();
  return errors.filter((e) => {
    const key = `${e.path}\u0000${e.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
