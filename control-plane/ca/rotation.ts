// CA rotation as a state machine over the mesh's signing authorities (a generated root, or an
// operator's intermediate). Each has a status:
//   active    signs every new certificate; exactly one.
//   next      trusted (in the bundle every sidecar gets) but signs nothing yet; at most one.
//   retiring  no longer signs, still trusted while certificates it signed may be in use; at most one.
// Every authority held is trusted. Steps:
//   add-next  a new authority as next: sidecars start trusting it before it signs anything.
//   promote   next becomes active, the active one retiring: only once sidecars trust the new one, so
//             that no certificate it signs is presented to a sidecar that does not trust it yet.
//   remove    drops next (a rotation abandoned) or retiring, the latter only once every certificate
//             it signed has expired (its promotion time plus the longest certificate lifetime),
//             unless forced. The active authority is never removed.
// Each step returns the new list or throws RotationError, leaving the list as it was. Pure.
import { RotationError } from "./errors.ts";

export type AuthorityStatus = "active" | "next" | "retiring";

export interface RotationSlot {
  id: string;
  status: AuthorityStatus;
  /** ISO 8601: when it stopped signing (set by promote on the authority that was active). */
  retiredAt?: string;
}

export type RotationStep<T extends RotationSlot> =
  | { op: "add-next"; authority: T }
  | { op: "promote" }
  | { op: "remove"; id: string; force?: boolean };

export interface RotationContext {
  now: Date;
  /** The longest a certificate the CA signs may live, in ms: how long a retiring authority is needed. */
  leafLifetimeMs: number;
}

const short = (id: string) => id.slice(0, 16);

/** Throws RotationError unless the list has exactly one active, at most one next and one retiring, unique ids. */
export function checkAuthorities(slots: readonly RotationSlot[]): void {
  const count = (status: AuthorityStatus) => slots.filter((s) => s.status === status).length;
  if (count("active") !== 1)
    throw new RotationError(`the CA must have exactly one active authority (has ${count("active")})`);
  if (count("next") > 1)
    throw new RotationError(`the CA has ${count("next")} next authorities (at most one)`);
  if (count("retiring") > 1) {
    throw new RotationError(`the CA has ${count("retiring")} retiring authorities (at most one)`);
  }
  const ids = new Set(slots.map((s) => s.id));
  if (ids.size !== slots.length) throw new RotationError("the CA holds an authority twice");
}

/** The authority that signs. */
export function signerOf<T extends RotationSlot>(slots: readonly T[]): T {
  const active = slots.find((s) => s.status === "active");
  if (active === undefined) throw new RotationError("the CA has no active authority");
  return active;
}

const ORDER: Record<AuthorityStatus, number> = { active: 0, next: 1, retiring: 2 };

/** Every authority trusted, the signer first, then next, then retiring. */
export function trustedOf<T extends RotationSlot>(slots: readonly T[]): T[] {
  return [...slots].sort((a, b) => ORDER[a.status] - ORDER[b.status]);
}

/** When a retiring authority's last certificate expires. */
export function retiresAt(slot: RotationSlot, context: RotationContext): Date | undefined {
  if (slot.retiredAt === undefined) return undefined;
  return new Date(Date.parse(slot.retiredAt) + context.leafLifetimeMs);
}

/** The authorities after `step`, or RotationError saying why the step is not allowed now. */
export function rotate<T extends RotationSlot>(
  slots: readonly T[],
  step: RotationStep<T>,
  context: RotationContext,
): T[] {
  checkAuthorities(slots);
  switch (step.op) {
    case "add-next": {
      const next = slots.find((s) => s.status === "next");
      if (next !== undefined) {
        throw new RotationError(`authority ${short(next.id)} is already next: promote or remove it first`);
      }
      if (slots.some((s) => s.id === step.authority.id)) {
        throw new RotationError(`authority ${short(step.authority.id)} is already held by the CA`);
      }
      const { retiredAt: _, ...added } = step.authority;
      return [...slots, { ...added, status: "next" } as T];
    }
    case "promote": {
      const next = slots.find((s) => s.status === "next");
      if (next === undefined) throw new RotationError("there is no next authority to promote: add one first");
      const retiring = slots.find((s) => s.status === "retiring");
      if (retiring !== undefined) {
        const until = retiresAt(retiring, context);
        throw new RotationError(
          `authority ${short(retiring.id)} is still retiring${until ? ` (its certificates expire by ${until.toISOString()})` : ""}: remove it before promoting another`,
        );
      }
      const retiredAt = context.now.toISOString();
      return slots.map((s) => {
        if (s.status === "active") return { ...s, status: "retiring", retiredAt };
        if (s === next) {
          const { retiredAt: _, ...promoted } = s;
          return { ...promoted, status: "active" } as T;
        }
        return s;
      });
    }
    case "remove": {
      const slot = slots.find((s) => s.id === step.id || short(s.id) === step.id);
      if (slot === undefined) throw new RotationError(`the CA has no authority ${step.id}`);
      if (slot.status === "active") {
        throw new RotationError(
          `authority ${short(slot.id)} is active: it signs; add and promote another before removing it`,
        );
      }
      if (slot.status === "retiring" && !step.force) {
        const until = retiresAt(slot, context);
        if (until === undefined || until.getTime() > context.now.getTime()) {
          throw new RotationError(
            `authority ${short(slot.id)} may have signed certificates valid until ${until?.toISOString() ?? "an unknown time"}: removing it now breaks them (force to remove it anyway)`,
          );
        }
      }
      return slots.filter((s) => s !== slot);
    }
  }
}
