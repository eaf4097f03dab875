// What every converter shares: the per-document context its problems go to, and the field audit
// that runs each document against its mesh's support matrix (FieldTable), so that no field is
// dropped in silence: an unknown or `ignored` field is a warning, a `refused` one an error, each
// with its path and the reason the table gives (docs/imports.md prints the same tables).

export type Obj = Record<string, unknown>;
/** A mapping (not a list, not null). */
export const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

export interface Context {
  document: number;
  kind: string;
  name: string;
  /** The original's namespace (its own, else the --namespace option); undefined: universal. */
  namespace: string | undefined;
  warn(path: string, message: string): void;
  error(path: string, message: string): void;
}

export type Support = "supported" | "partly" | "ignored" | "refused";
export interface FieldSupport {
  support: Support;
  /** Why, for partly/ignored/refused: the warning's or error's text. */
  why?: string;
}

/** A kind's fields by pattern (`spec.http[].match[].uri`: `[]` stands for any list index). */
export type FieldTable = Record<string, FieldSupport>;

export const ok: FieldSupport = { support: "supported" };
export const partly = (why: string): FieldSupport => ({ support: "partly", why });
export const ignored = (why: string): FieldSupport => ({ support: "ignored", why });
export const refused = (why: string): FieldSupport => ({ support: "refused", why });

/**
 * Warnings and errors for the fields under `value` (found at `root` in the document, e.g. "spec";
 * "" for a document whose fields are at its top, as Kuma's universal form) per `table`.
 */
export function auditFields(value: Obj, root: string, table: FieldTable, ctx: Context): void {
  const prefixes = new Set(
    Object.keys(table).flatMap((key) => {
      const parents: string[] = [];
      for (let i = key.indexOf("."); i >= 0; i = key.indexOf(".", i + 1)) parents.push(key.slice(0, i));
      return parents.map((p) => p.replace(/\[\]$/, ""));
    }),
  );
  const join = (parent: string, key: string) => (parent === "" ? key : `${parent}.${key}`);
  const walk = (node: Obj, pattern: string, path: string): void => {
    for (const [key, child] of Object.entries(node)) {
      const p = join(pattern, key);
      const at = join(path, key);
      const field = Object.hasOwn(table, p) ? table[p] : undefined;
      if (field === undefined) {
        ctx.warn(at, "unknown field: ignored");
        continue;
      }
      if (field.support === "ignored") ctx.warn(at, `not supported, ignored: ${field.why}`);
      if (field.support === "refused") ctx.error(at, `not supported: ${field.why}`);
      if (field.support === "ignored" || field.support === "refused" || !prefixes.has(p)) continue;
      if (Array.isArray(child)) {
        child.forEach((item, i) => {
          if (isObj(item)) walk(item, `${p}[]`, `${at}[${i}]`);
        });
      } else if (isObj(child)) walk(child, p, at);
    }
  };
  walk(value, root, root);
}
