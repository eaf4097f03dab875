// Native names for converted resources: DNS labels derived from the original's name, namespace and
// part, so that converting the same input twice gives the same names, and different originals give
// different ones. Too long a name is cut and ends with a hash of the whole, which keeps it unique.
import { createHash } from "node:crypto";
import { ResourceName } from "../resources/index.ts";

const DNS_LABEL = new RegExp(ResourceName.pattern as string);

/** Whether `text` is a DNS label (as Kubernetes names resources and namespaces). */
export const isDnsLabel = (text: string): boolean => text.length <= 63 && DNS_LABEL.test(text);

const MAX_LABEL = 63;
const HASH_LENGTH = 8;

/** Lower-case, anything but [a-z0-9-] as '-', no leading, trailing or repeated '-'. */
function labelPart(text: string): string {
  return text
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, "-")
    .replace(/-+/g, "-")
    .replace(/^-|-$/g, "");
}

/**
 * `<part>-<part>-…` as a DNS label of at most 63 characters. The parts are e.g. the original's name,
 * its namespace and the host or subset; when the label is longer, or when sanitising changed a
 * part (so two different originals could meet), it is cut and ends in `-<8 hex of sha256>`.
 */
export function nativeName(...parts: (string | undefined)[]): string {
  const given = parts.filter((p): p is string => p !== undefined && p !== "");
  const cleaned = given.map(labelPart).filter((p) => p !== "");
  const joined = cleaned.join("-");
  const exact = cleaned.length === given.length && cleaned.every((p, i) => p === given[i]);
  if (exact && joined.length > 0 && joined.length <= MAX_LABEL) return joined;
  const hash = createHash("sha256").update(given.join("\u0000")).digest("hex").slice(0, HASH_LENGTH);
  const head = joined.slice(0, MAX_LABEL - HASH_LENGTH - 1).replace(/-+$/, "");
  return head === "" ? `x-${hash}` : `${head}-${hash}`;
}
