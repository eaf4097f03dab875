// What the edge workers say of themselves when they poll GET /v1/edge/config (issue 14 §1), for GET
// /v1/status and the console: per edge name and token, when it last polled, the version it serves,
// and the last configuration it refused with the module's text.
//
// Each poll carries `Wasmesh-Edge-Name` and If-None-Match (the ETag of the document it holds); while
// the worker holds a document it refused, the poll also carries `Wasmesh-Edge-Rejected` with the
// reason, and its If-None-Match then names the refused document, not the one it serves: the
// version it serves stays what its last poll without a rejection said.
//
// Bounded by construction: at most `maxEdges` entries (the least recently polled is forgotten to
// make room), each forgotten `expiryMs` after its last poll, lazily (no timer); names, versions and
// reasons are cut to fixed lengths.
import { type Static, Type } from "@sinclair/typebox";

const instant = Type.String({ format: "date-time" });

export const EdgeStatus = Type.Object({
  name: Type.String({ description: "the worker's EDGE_NAME (Wasmesh-Edge-Name)" }),
  tokenId: Type.String({ description: "the API token it polls with" }),
  servingVersion: Type.Union([Type.String(), Type.Null()], {
    description: "the edge configuration version it serves (null: none yet, or not known)",
  }),
  currentVersion: Type.String({ description: "the control plane's current edge configuration version" }),
  current: Type.Boolean({ description: "servingVersion is currentVersion" }),
  lastPollAt: instant,
  lastPollAgoMs: Type.Integer({
    minimum: 0,
    description: "ms since lastPollAt, by the control plane's clock",
  }),
  polls: Type.Integer({ minimum: 0 }),
  lastRejection: Type.Optional(
    Type.Object({
      reason: Type.String({ description: "the worker's text (at most 512 bytes)" }),
      version: Type.Union([Type.String(), Type.Null()], {
        description: "the version it refused, when known",
      }),
      at: instant,
    }),
  ),
});
export type EdgeStatus = Static<typeof EdgeStatus>;

export interface EdgePoll {
  name: string;
  tokenId: string;
  /** The If-None-Match header as sent (undefined: none). */
  ifNoneMatch: string | undefined;
  /** The Wasmesh-Edge-Rejected header as sent (undefined: none). */
  rejected: string | undefined;
  /** The current version, as answered to this poll. */
  currentVersion: string;
}

export interface EdgeStatusTable {
  /** Records a poll; a name that is not DNS-label-like is ignored (false). */
  record(poll: EdgePoll): boolean;
  /** Every edge that polled within the expiry, by name; `currentVersion` is the version now. */
  list(currentVersion?: string): EdgeStatus[];
}

export interface EdgeStatusOptions {
  now?: () => number;
  /** Default 1,000. */
  maxEdges?: number;
  /** Default 10 minutes. */
  expiryMs?: number;
}

export const DEFAULT_MAX_EDGES = 1_000;
export const DEFAULT_EDGE_EXPIRY_MS = 10 * 60_000;
export const MAX_REASON_BYTES = 512;
const MAX_VERSION_CHARS = 128;

/** The names EDGE_NAME may take (workers/src/config-source.ts checks the same). */
export const EDGE_NAME = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/** Removes control characters, and cuts to `maxBytes` of UTF-8 without splitting a character. */
export function cleanReason(text: string, maxBytes = MAX_REASON_BYTES): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: removing them is the point
  const clean = text.replace(/[\u0000-\u001f\u007f]+/g, " ").trim();
  const bytes = new TextEncoder().encode(clean);
  if (bytes.length <= maxBytes) return clean;
  // A cut inside a character decodes to U+FFFD at the end: drop it.
  return new TextDecoder().decode(bytes.subarray(0, maxBytes)).replace(/\uFFFD+$/, "");
}

/** The version an If-None-Match names: its first entity tag, unquoted (W/ dropped), bounded. */
export function versionOf(ifNoneMatch: string | undefined): string | null {
  if (ifNoneMatch === undefined) return null;
  const first = ifNoneMatch.split(",")[0]?.trim().replace(/^W\//, "") ?? "";
  const version = cleanReason(first.replace(/^"(.*)"$/, "$1"), MAX_VERSION_CHARS);
  return version === "" || version === "*" ? null : version;
}

interface Entry {
  name: string;
  tokenId: string;
  servingVersion: string | null;
  currentVersion: string;
  lastPollMs: number;
  polls: number;
  lastRejection?: { reason: string; version: string | null; atMs: number };
}

export function createEdgeStatusTable(options: EdgeStatusOptions = {}): EdgeStatusTable {
  const now = options.now ?? Date.now;
  const maxEdges = options.maxEdges ?? DEFAULT_MAX_EDGES;
  const expiryMs = options.expiryMs ?? DEFAULT_EDGE_EXPIRY_MS;
  /** In order of last poll, oldest first (re-inserted on each poll). */
  const entries = new Map<string, Entry>();

  function expire(at: number): void {
    for (const [key, entry] of entries) {
      if (at - entry.lastPollMs <= expiryMs) break;
      entries.delete(key);
    }
  }

  return {
    record(poll) {
      if (!EDGE_NAME.test(poll.name)) return false;
      const at = now();
      expire(at);
      const key = `${poll.tokenId}\u0000${poll.name}`;
      const previous = entries.get(key);
      entries.delete(key);
      while (entries.size >= maxEdges) {
        const oldest = entries.keys().next().value;
        if (oldest === undefined) break;
        entries.delete(oldest);
      }
      const held = versionOf(poll.ifNoneMatch);
      const reason = poll.rejected === undefined ? "" : cleanReason(poll.rejected);
      const entry: Entry = {
        name: poll.name,
        tokenId: poll.tokenId.slice(0, MAX_VERSION_CHARS),
        // A poll carrying a rejection names the refused document: what it serves is unchanged.
        servingVersion: reason === "" ? held : (previous?.servingVersion ?? null),
        currentVersion: poll.currentVersion,
        lastPollMs: at,
        polls: (previous?.polls ?? 0) + 1,
      };
      if (reason !== "") {
        // The same refusal repeated on every poll keeps the time it was first reported.
        const same = previous?.lastRejection?.reason === reason && previous.lastRejection.version === held;
        entry.lastRejection =
          same && previous?.lastRejection ? previous.lastRejection : { reason, version: held, atMs: at };
      } else if (previous?.lastRejection) {
        entry.lastRejection = previous.lastRejection;
      }
      entries.set(key, entry);
      return true;
    },
    list(currentVersion) {
      const at = now();
      expire(at);
      return [...entries.values()]
        .map((e): EdgeStatus => {
          const version = currentVersion ?? e.currentVersion;
          return {
            name: e.name,
            tokenId: e.tokenId,
            servingVersion: e.servingVersion,
            currentVersion: version,
            current: e.servingVersion === version,
            lastPollAt: new Date(e.lastPollMs).toISOString(),
            lastPollAgoMs: Math.max(0, at - e.lastPollMs),
            polls: e.polls,
            ...(e.lastRejection
              ? {
                  lastRejection: {
                    reason: e.lastRejection.reason,
                    version: e.lastRejection.version,
                    at: new Date(e.lastRejection.atMs).toISOString(),
                  },
                }
              : {}),
          };
        })
        .sort((a, b) => a.name.localeCompare(b.name) || a.tokenId.localeCompare(b.tokenId));
    },
  };
}
