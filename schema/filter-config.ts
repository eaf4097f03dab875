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
const Millis = (max: number, description: string, defaultMs?: number) =>
  Type.Integer({
    minimum: 1,
    maximum: max,
    description,
    ...(defaultMs !== undefined ? { default: defaultMs } : {}),
  });
const Percent = Type.Number({
  minimum: 0,
  maximum: 100,
  default: 100,
  description: "share of matching requests, in percent",
});
const Status = (description: string, status?: number) =>
  Type.Integer({
    minimum: 200,
    maximum: 599,
    description,
    ...(status !== undefined ? { default: status } : {}),
  });

const stringConditions = {
  exact: Type.Optional(Type.String({ description: "equals this" })),
  prefix: Type.Optional(Type.String({ description: "starts with this" })),
  suffix: Type.Optional(Type.String({ description: "ends with this" })),
  contains: Type.Optional(Type.String({ description: "contains this" })),
  /** Full match, linear-time subset (see docs/filters.md). */
  regex: Type.Optional(
    Type.String({
      maxLength: 1024,
      description: "matches this regular expression, in full (a linear-time subset: docs/filters.md)",
    }),
  ),
  ignoreCase: Type.Optional(
    Type.Boolean({ default: false, description: "compare ASCII letters regardless of case" }),
  ),
};

/** Exactly one of exact, prefix, suffix, contains, regex. */
export const StringMatch = Type.Object(stringConditions, {
  ...strict,
  description: "exactly one of exact, prefix, suffix, contains, regex",
});

/** A header or query parameter condition: exactly one of the string conditions, present or absent. */
export const NamedMatch = Type.Object(
  {
    name: Type.String({ minLength: 1, description: "the header's or query parameter's name" }),
    ...stringConditions,
    present: Type.Optional(Type.Boolean({ description: "true: it is present, with any value" })),
    absent: Type.Optional(Type.Boolean({ description: "true: it is absent" })),
  },
  {
    ...strict,
    description: "exactly one of exact, prefix, suffix, contains, regex, present, absent",
  },
);

export const RequestMatch = Type.Object(
  {
    path: Type.Optional(
      Type.Object(stringConditions, { ...strict, description: "the request's path (without the query)" }),
    ),
    authority: Type.Optional(
      Type.Object(stringConditions, { ...strict, description: "the request's authority (Host)" }),
    ),
    methods: Type.Optional(
      Type.Array(Type.String({ minLength: 1 }), { description: "any of these methods, e.g. GET" }),
    ),
    headers: Type.Optional(Type.Array(NamedMatch, { description: "every one of these headers matches" })),
    query: Type.Optional(
      Type.Array(NamedMatch, { description: "every one of these query parameters matches" }),
    ),
  },
  { ...strict, description: "which requests: all of the given conditions hold (none given: every request)" },
);

const HeaderValue = Type.Object(
  { name: HeaderName, value: Type.String({ pattern: HEADER_VALUE, description: "the header's value" }) },
  strict,
);

export const HeaderChanges = Type.Object(
  {
    set: Type.Optional(Type.Array(HeaderValue, { description: "headers set, replacing any of the name" })),
    add: Type.Optional(Type.Array(HeaderValue, { description: "headers added beside any of the name" })),
    remove: Type.Optional(Type.Array(HeaderName, { description: "names of headers removed" })),
  },
  strict,
);

export const HeaderRule = Type.Object(
  {
    name: Name,
    match: Type.Optional(RequestMatch),
    requestHeaders: Type.Optional(
      Type.Object(HeaderChanges.properties, { ...strict, description: "changes to the request's headers" }),
    ),
    responseHeaders: Type.Optional(
      Type.Object(HeaderChanges.properties, { ...strict, description: "changes to the response's headers" }),
    ),
    deny: Type.Optional(
      Type.Object(
        {
          status: Type.Optional(Status("the status of the local answer", 403)),
          body: Type.Optional(Type.String({ description: "the body of the local answer" })),
        },
        { ...strict, description: "answer matching requests locally instead of forwarding them" },
      ),
    ),
    fault: Type.Optional(
      Type.Object(
        {
          abort: Type.Optional(
            Type.Object(
              { status: Status("the status answered"), percent: Type.Optional(Percent) },
              { ...strict, description: "answer some requests locally with an error status" },
            ),
          ),
          delay: Type.Optional(
            Type.Object(
              { ms: Millis(3_600_000, "how long, in milliseconds"), percent: Type.Optional(Percent) },
              { ...strict, description: "hold some requests before they continue" },
            ),
          ),
        },
        { ...strict, description: "injected faults: abort, delay or both (testing resilience)" },
      ),
    ),
  },
  strict,
);

export const Destination = Type.Object(
  {
    cluster: Cluster,
    /** Required when a route has more than one destination; weights add up to 100. */
    weight: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: 100,
        description:
          "share of requests, in percent: required when there is more than one destination, and they add up to 100; a single destination takes all",
      }),
    ),
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
        {
          header: Type.Optional(HeaderName),
          cookie: Type.Optional(Type.String({ minLength: 1, description: "a cookie's name" })),
        },
        {
          ...strict,
          description:
            "exactly one of header, cookie: its value is hashed onto the weights, so one user stays on one destination (none: smooth weighted round-robin)",
        },
      ),
    ),
    timeoutMs: Type.Optional(
      Millis(
        3_600_000,
        "the request's timeout in milliseconds, retries included (none: Envoy's route timeout)",
      ),
    ),
    retries: Type.Optional(
      Type.Object(
        {
          attempts: Type.Integer({ minimum: 0, maximum: 10, description: "retries after the first try" }),
          /** Envoy's retry_on list, default "5xx,reset,connect-failure". */
          on: Type.Optional(
            Type.String({
              pattern: HEADER_VALUE,
              default: "5xx,reset,connect-failure",
              description: "when to retry: Envoy's retry_on conditions, comma-separated",
            }),
          ),
          perTryTimeoutMs: Type.Optional(
            Millis(3_600_000, "each try's timeout in milliseconds (none: only the request's)"),
          ),
        },
        { ...strict, description: "retries by Envoy's router (none: no retries)" },
      ),
    ),
  },
  strict,
);

export const Breaker = Type.Object(
  {
    cluster: Cluster,
    consecutiveErrors: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 10_000,
        default: 5,
        description: "failures (5xx) in a row, within intervalMs of the first, that open the circuit",
      }),
    ),
    intervalMs: Type.Optional(
      Millis(86_400_000, "the window, in milliseconds, in which the failures count", 10_000),
    ),
    baseEjectionMs: Type.Optional(
      Millis(
        86_400_000,
        "how long the circuit stays open the first time, in milliseconds (n times that the nth time in a row)",
        30_000,
      ),
    ),
    maxEjectionMs: Type.Optional(
      Millis(
        86_400_000,
        "the longest the circuit stays open, in milliseconds (default 300000, or baseEjectionMs if longer)",
      ),
    ),
    maxConcurrent: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 1_000_000,
        description: "requests in flight to it at most; more are refused (none: no cap of the filter's)",
      }),
    ),
    /** Cluster that takes the traffic while the circuit is open, instead of a local 503. */
    fallback: Type.Optional(
      Type.String({
        pattern: CLUSTER,
        description: "the cluster that takes the traffic while the circuit is open, instead of a local 503",
      }),
    ),
  },
  strict,
);

export const FilterConfig = Type.Object(
  {
    headerRules: Type.Optional(
      Type.Array(HeaderRule, {
        description: "header changes, denials and faults, in order: every match applies",
      }),
    ),
    routes: Type.Optional(
      Type.Array(Route, { description: "in order: the first that matches routes the request" }),
    ),
    breakers: Type.Optional(Type.Array(Breaker, { description: "circuit breakers, one per cluster" })),
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
    // An unknown field is reported at the field itself (its path ends in its name).
    errors.push({
      path: pointerToPath(error.path),
      message:
        keyMessage(error) ?? unknownFieldMessage(error) ?? literalsMessage(error.schema) ?? error.message,
    });
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

/**
 * A field the object's schema does not know: TypeBox's "Unexpected property", plus the nearest known
 * sibling when one is close enough (`timeout` → "did you mean timeoutMs?").
 */
function unknownFieldMessage(error: ValueError): string | undefined {
  if (error.type !== ValueErrorType.ObjectAdditionalProperties) return undefined;
  const field = error.path
    .slice(error.path.lastIndexOf("/") + 1)
    .replaceAll("~1", "/")
    .replaceAll("~0", "~");
  const known = Object.keys((error.schema.properties ?? {}) as Record<string, unknown>);
  const nearest = nearestField(field, known);
  return nearest === undefined ? error.message : `${error.message} (did you mean ${nearest}?)`;
}

/**
 * The known field `field` most likely meant: the nearest by edit distance (optimal string alignment,
 * ignoring case) within a third of the field's length (at least 1), or one that starts with it
 * (`timeout` → `timeoutMs`, `interval` → `intervalMs`; three characters at least). Ties go to the
 * field declared first. Undefined when none is close enough.
 */
export function nearestField(field: string, known: readonly string[]): string | undefined {
  const lower = field.toLowerCase();
  const limit = Math.max(1, Math.floor(field.length / 3));
  let best: { name: string; distance: number } | undefined;
  for (const name of known) {
    const candidate = name.toLowerCase();
    const distance = editDistance(lower, candidate);
    const close = distance <= limit || (lower.length >= 3 && candidate.startsWith(lower));
    if (close && (best === undefined || distance < best.distance)) best = { name, distance };
  }
  return best?.name;
}

/** Optimal string alignment distance: insertions, deletions, substitutions and adjacent swaps. */
function editDistance(a: string, b: string): number {
  // Rows i-2, i-1 and i of the distance matrix.
  let before: number[] = [];
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min((previous[j] ?? 0) + 1, (row[j - 1] ?? 0) + 1, (previous[j - 1] ?? 0) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d = Math.min(d, (before[j - 2] ?? 0) + 1);
      }
      row.push(d);
    }
    before = previous;
    previous = row;
  }
  return previous[b.length] ?? 0;
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
