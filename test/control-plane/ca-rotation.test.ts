// CA rotation (control-plane/ca/rotation.ts): the state machine on its own (what is trusted and what
// signs after each step, the steps it refuses), then a real CA on a real SQLite file rotated step by
// step: the new root is in the bundle before it signs, so a sidecar holding the bundle of the
// add-next step trusts every certificate signed after the promotion, and the old root stays trusted
// until the certificates it signed have expired.
import { describe, expect, it } from "vitest";
import {
  type AuthorityStatus,
  RotationError,
  rotate,
  universalIdentity,
} from "../../control-plane/ca/index.ts";
import { signerOf, trustedOf } from "../../control-plane/ca/rotation.ts";
import { x509 } from "../../control-plane/ca/x509.ts";
import { OPENSSL, opensslVerify, openTestCa, verifyWithNode, workloadRequest } from "../support/ca.ts";
import { tempDir } from "../support/temp.ts";

interface Slot {
  id: string;
  status: AuthorityStatus;
  retiredAt?: string;
}

const DAY = 86400_000;
const t0 = new Date("2031-01-01T00:00:00.000Z");
const context = (now: Date) => ({ now, leafLifetimeMs: DAY });
const view = (slots: Slot[]) => ({
  signs: signerOf(slots).id,
  trusted: trustedOf(slots).map((s) => s.id),
});

function refused(run: () => unknown, message: RegExp): void {
  expect(run).toThrow(RotationError);
  expect(run).toThrow(message);
}

describe("the rotation state machine", () => {
  it("adds next (trusted, not signing), promotes it (the old one retiring), then removes the old one once its certificates expired", () => {
    const a = "a".repeat(64);
    const b = "b".repeat(64);
    let slots: Slot[] = [{ id: a, status: "active" }];
    expect(view(slots)).toEqual({ signs: a, trusted: [a] });

    slots = rotate(slots, { op: "add-next", authority: { id: b, status: "active" } }, context(t0));
    expect(slots.map((s) => s.status)).toEqual(["active", "next"]);
    expect(view(slots)).toEqual({ signs: a, trusted: [a, b] });

    slots = rotate(slots, { op: "promote" }, context(t0));
    expect(view(slots)).toEqual({ signs: b, trusted: [b, a] });
    expect(slots.find((s) => s.id === a)).toEqual({ id: a, status: "retiring", retiredAt: t0.toISOString() });

    const early = new Date(t0.getTime() + DAY - 1);
    refused(
      () => rotate(slots, { op: "remove", id: a }, context(early)),
      /valid until 2031-01-02T00:00:00.000Z: removing it now breaks them/,
    );
    const later = new Date(t0.getTime() + DAY);
    slots = rotate(slots, { op: "remove", id: a.slice(0, 16) }, context(later));
    expect(view(slots)).toEqual({ signs: b, trusted: [b] });
  });

  it("refuses illegal steps and leaves the list as it was", () => {
    const [a, b, c] = ["a", "b", "c"].map((x) => x.repeat(64)) as [string, string, string];
    const one: Slot[] = [{ id: a, status: "active" }];
    const frozen = JSON.stringify(one);
    refused(() => rotate(one, { op: "promote" }, context(t0)), /no next authority to promote/);
    refused(() => rotate(one, { op: "remove", id: a }, context(t0)), /is active: it signs/);
    refused(() => rotate(one, { op: "remove", id: b }, context(t0)), /has no authority b{64}/);
    refused(
      () => rotate(one, { op: "add-next", authority: { id: a, status: "next" } }, context(t0)),
      /already held/,
    );
    expect(JSON.stringify(one)).toBe(frozen);

    const withNext = rotate(one, { op: "add-next", authority: { id: b, status: "next" } }, context(t0));
    refused(
      () => rotate(withNext, { op: "add-next", authority: { id: c, status: "next" } }, context(t0)),
      /bbbbbbbbbbbbbbbb is already next: promote or remove it first/,
    );
    // A rotation abandoned: next goes, nothing else changes.
    expect(rotate(withNext, { op: "remove", id: b }, context(t0))).toEqual(one);

    const retiring = rotate(withNext, { op: "promote" }, context(t0));
    const again = rotate(retiring, { op: "add-next", authority: { id: c, status: "next" } }, context(t0));
    refused(
      () => rotate(again, { op: "promote" }, context(t0)),
      /aaaaaaaaaaaaaaaa is still retiring \(its certificates expire by 2031-01-02/,
    );
    // Forced, the retiring one goes before its time; then the promotion is allowed.
    const forced = rotate(again, { op: "remove", id: a, force: true }, context(t0));
    expect(view(rotate(forced, { op: "promote" }, context(t0)))).toEqual({ signs: c, trusted: [c, b] });
  });

  it("refuses a list that breaks its invariants", () => {
    const a = "a".repeat(64);
    const b = "b".repeat(64);
    refused(() => rotate([], { op: "promote" }, context(t0)), /exactly one active authority \(has 0\)/);
    refused(
      () =>
        rotate(
          [
            { id: a, status: "active" },
            { id: b, status: "active" },
          ],
          { op: "promote" },
          context(t0),
        ),
      /exactly one active authority \(has 2\)/,
    );
    refused(
      () =>
        rotate(
          [
            { id: a, status: "active" },
            { id: a, status: "next" },
          ],
          { op: "promote" },
          context(t0),
        ),
      /holds an authority twice/,
    );
  });
});

describe("rotating a real CA", () => {
  const identity = universalIdentity("payments");
  // As the CA's status writes names (RFC 4514 style, one line).
  const issuerOf = (pem: string) => new x509.X509Certificate(pem).issuer;
  const subjects = (bundle: string) =>
    x509.PemConverter.decode(bundle).map((der) => new x509.X509Certificate(der).subject);

  it("distributes the new root before it signs, and keeps the old one until its certificates have expired", async () => {
    let now = Date.now();
    const first = await openTestCa({ now: () => now });
    const { csr } = await workloadRequest();
    const dir = tempDir("ca-rotation");
    const verify = (leaf: { certificate: string; chain: string }, bundle: string) => {
      verifyWithNode(leaf.certificate, leaf.chain, bundle, new Date(now));
      if (OPENSSL) opensslVerify(dir, { leaf: leaf.certificate, chain: leaf.chain, bundle }, new Date(now));
    };
    try {
      const { ca } = first;
      const { pem: oldBundle, version: oldVersion } = await ca.trustBundle();
      const [oldRoot] = subjects(oldBundle);
      const before = await ca.issue({ csr, identity });

      // add-next: the bundle holds both roots; the old root still signs.
      const added = await ca.addNext();
      expect(added.authorities.map((a) => a.status)).toEqual(["active", "next"]);
      const bothBundle = (await ca.trustBundle()).pem;
      expect(subjects(bothBundle)).toHaveLength(2);
      expect(subjects(bothBundle)[0]).toBe(oldRoot);
      const [, newRoot] = subjects(bothBundle);
      const during = await ca.issue({ csr, identity });
      expect(issuerOf(during.certificate)).toBe(oldRoot);
      expect(during.trustBundle).toBe(bothBundle);
      verify(during, oldBundle);
      verify(before, bothBundle);
      // Its version tells a sidecar the bundle changed.
      expect((await ca.trustBundle()).version).not.toBe(oldVersion);

      // promote: the new root signs; the old one retires, still trusted.
      const promoted = await ca.promote();
      expect(promoted.authorities.map((a) => [a.status, a.subject])).toEqual([
        ["active", newRoot],
        ["retiring", oldRoot],
      ]);
      const after = await ca.issue({ csr, identity });
      expect(issuerOf(after.certificate)).toBe(newRoot);
      expect(subjects(after.trustBundle)).toEqual([newRoot, oldRoot]);
      // A sidecar that got the bundle at add-next trusts what the new root signs: the point of next.
      verify(after, bothBundle);
      verify(before, after.trustBundle);
      // One that still had only the old bundle would not: why a root is added before it is promoted.
      expect(() => verifyWithNode(after.certificate, after.chain, oldBundle)).toThrow(
        /no root of the bundle/,
      );
      if (OPENSSL) {
        expect(() => opensslVerify(dir, { leaf: after.certificate, chain: "", bundle: oldBundle })).toThrow(
          /unable to get local issuer certificate/,
        );
      }

      // Removing the old root early would break `during`: refused until a certificate lifetime has passed.
      const oldId = promoted.authorities[1]?.id as string;
      await expect(ca.remove(oldId)).rejects.toThrow(/may have signed certificates valid until/);
      expect(promoted.authorities[1]?.removableAt?.getTime()).toBe(now + 86400_000);
      const persisted = await ca.status();
      expect(persisted.authorities.map((a) => a.status)).toEqual(["active", "retiring"]);

      // The state is in the store: another CA on the same data directory sees the rotation.
      await first.close();
      now += 86400_000 + 1000;
      const second = await openTestCa({ dataDir: first.dataDir, now: () => now });
      try {
        expect((await second.ca.status()).authorities.map((a) => [a.status, a.subject])).toEqual([
          ["active", newRoot],
          ["retiring", oldRoot],
        ]);
        const removed = await second.ca.remove(oldId.slice(0, 16));
        expect(removed.authorities.map((a) => a.subject)).toEqual([newRoot]);
        const newBundle = (await second.ca.trustBundle()).pem;
        expect(subjects(newBundle)).toEqual([newRoot]);
        const renewed = await second.ca.issue({ csr, identity });
        verify(renewed, newBundle);
        expect(() => verifyWithNode(during.certificate, "", newBundle, new Date(now - 86400_000))).toThrow(
          /no root of the bundle/,
        );
        await expect(second.ca.remove(removed.authorities[0]?.id as string)).rejects.toThrow(/is active/);
        await expect(second.ca.promote()).rejects.toThrow(/no next authority/);
      } finally {
        await second.close();
      }
    } finally {
      await first.close();
    }
  });

  it("refuses a second next while one is pending, changing nothing in the store", async () => {
    const { ca, store, close } = await openTestCa();
    try {
      await ca.addNext();
      const before = await store.get("internal:CertificateAuthority", "mesh");
      await expect(ca.addNext()).rejects.toThrow(RotationError);
      expect(await store.get("internal:CertificateAuthority", "mesh")).toEqual(before);
      // A rotation abandoned: next removed, the bundle back to the one root.
      const next = (await ca.status()).authorities.find((a) => a.status === "next");
      await ca.remove(next?.id as string);
      expect(subjects((await ca.trustBundle()).pem)).toHaveLength(1);
    } finally {
      await close();
    }
  });
});
