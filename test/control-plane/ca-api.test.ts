// The mesh CA for operators (issue 11): GET /v1/ca and POST /v1/ca/rotation, and `wasmesh ca
// status | rotate`, against `wasmesh server` as users run it (a child process on a SQLite file).
// Admin tokens only; a step the CA refuses now is a 409 with its reason, nothing changed; the
// bundle agents poll carries the next root after add-next; GET /v1/ca counts the agents holding
// the current bundle.
import { X509Certificate } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EXTERNAL_FILES } from "../../control-plane/ca/index.ts";
import { nodeCertificates, operatorPki } from "../support/ca.ts";
import {
  type ControlPlaneProcess,
  dataplaneToken,
  startControlPlaneProcess,
  wasmesh,
} from "../support/control-plane.ts";
import { tempDir } from "../support/temp.ts";

let cp: ControlPlaneProcess;

interface Authority {
  id: string;
  fingerprint: string;
  status: string;
  origin: string;
  subject: string;
  notBefore: string;
  notAfter: string;
}
interface CaState {
  trustDomain: string;
  bundleVersion: string;
  authorities: Authority[];
  agents: { current: number; stale: number };
}

async function call(method: string, path: string, token: string | undefined, body?: unknown) {
  const response = await fetch(`${cp.api}${path}`, {
    method,
    headers: {
      ...(token !== undefined ? { authorization: `Bearer ${token}` } : {}),
      ...(body !== undefined ? { "content-type": "application/json" } : {}),
    },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await response.text();
  return {
    status: response.status,
    text,
    etag: response.headers.get("etag"),
    // biome-ignore lint/suspicious/noExplicitAny: assertions navigate arbitrary JSON
    body: (text.startsWith("{") ? JSON.parse(text) : undefined) as any,
  };
}

const state = async () => (await call("GET", "/v1/ca", cp.token)).body as CaState;
const rotate = (body: unknown) => call("POST", "/v1/ca/rotation", cp.token, body);

beforeAll(async () => {
  cp = await startControlPlaneProcess();
}, 60_000);
afterAll(async () => {
  await cp?.stop();
});

describe("GET /v1/ca and POST /v1/ca/rotation", () => {
  it("lists the active root with its fingerprint, never a key", async () => {
    const reply = await call("GET", "/v1/ca", cp.token);
    expect(reply.status).toBe(200);
    expect(reply.text).not.toMatch(/PRIVATE KEY|sealed|kek/i);
    const ca = reply.body as CaState;
    expect(ca.trustDomain).toBe("wasmesh.local");
    expect(ca.authorities).toHaveLength(1);
    const [active] = ca.authorities as [Authority];
    expect(active).toMatchObject({ status: "active", origin: "builtin" });
    expect(active.id).toMatch(/^[0-9a-f]{64}$/);
    // The fingerprint of the root the bundle serves, as Node computes it.
    const bundle = await call("GET", "/v1/certificates/trust-bundle", cp.token);
    const [root] = nodeCertificates(bundle.text) as [X509Certificate];
    expect(active.fingerprint).toBe(root.fingerprint256);
    expect(active.subject).toBe(root.subject.replace(/\n/g, ", "));
    expect(ca.bundleVersion).toBe(bundle.etag?.replace(/"/g, ""));
  });

  it("is for admin tokens only: 401 without one, 403 for read-only and dataplane tokens", async () => {
    const readOnly = (await call("POST", "/v1/tokens", cp.token, { role: "read-only" })).body.secret;
    const dataplane = await dataplaneToken(cp.api, "web");
    for (const token of [undefined, "wsm_not-a-token"]) {
      expect((await call("GET", "/v1/ca", token)).status).toBe(401);
      expect((await call("POST", "/v1/ca/rotation", token, { step: "add-next" })).status).toBe(401);
    }
    for (const token of [readOnly, dataplane]) {
      const read = await call("GET", "/v1/ca", token);
      expect(read.status).toBe(403);
      expect(read.body.error.code).toBe("forbidden");
      expect((await call("POST", "/v1/ca/rotation", token, { step: "add-next" })).status).toBe(403);
    }
    // None of them changed anything.
    expect((await state()).authorities).toHaveLength(1);
  });

  it("refuses an illegal step with 409 and the CA's reason, a malformed one with 400", async () => {
    const before = await state();
    const promote = await rotate({ step: "promote" });
    expect(promote.status).toBe(409);
    expect(promote.body.error.message).toMatch(/no next authority to promote/);
    const removeActive = await rotate({ step: "remove", id: before.authorities[0]?.id });
    expect(removeActive.status).toBe(409);
    expect(removeActive.body.error.message).toMatch(/is active: it signs/);
    const noId = await rotate({ step: "remove" });
    expect(noId.status).toBe(400);
    expect(noId.body.error.details[0].path).toBe("id");
    const unknown = await rotate({ step: "rotate-everything" });
    expect(unknown.status).toBe(400);
    expect(unknown.body.error.details[0].path).toBe("step");
    expect(await state()).toEqual(before);
  });

  it("add-next puts the next root in the bundle agents get, and counts agents holding it", async () => {
    const agent = await dataplaneToken(cp.api, "reviews");
    const first = await call("GET", "/v1/certificates/trust-bundle", agent);
    expect(nodeCertificates(first.text)).toHaveLength(1);
    expect((await state()).agents).toEqual({ current: 1, stale: 0, windowSeconds: 75 });

    const added = await rotate({ step: "add-next" });
    expect(added.status).toBe(200);
    const next = (added.body as CaState).authorities.find((a) => a.status === "next") as Authority;
    expect(next).toMatchObject({ origin: "builtin" });
    // The agent's last check got the old bundle: stale until its next poll.
    expect((added.body as CaState).agents).toMatchObject({ current: 0, stale: 1 });

    const polled = await call("GET", "/v1/certificates/trust-bundle", agent);
    expect(polled.status).toBe(200);
    expect(polled.etag).not.toBe(first.etag);
    const fingerprints = nodeCertificates(polled.text).map((c) => c.fingerprint256);
    expect(fingerprints).toHaveLength(2);
    expect(fingerprints).toContain(next.fingerprint);
    // A 304 on If-None-Match counts as holding it too.
    const again = await fetch(`${cp.api}/v1/certificates/trust-bundle`, {
      headers: { authorization: `Bearer ${agent}`, "if-none-match": polled.etag as string },
    });
    expect(again.status).toBe(304);
    expect((await state()).agents).toMatchObject({ current: 1, stale: 0 });

    // A second add-next is illegal while one is next.
    const twice = await rotate({ step: "add-next" });
    expect(twice.status).toBe(409);
    expect(twice.body.error.message).toMatch(/already next/);

    const promoted = await rotate({ step: "promote" });
    expect(promoted.status).toBe(200);
    const after = promoted.body as CaState;
    expect(after.authorities.map((a) => [a.id, a.status])).toEqual([
      [next.id, "active"],
      [idOf(first.text), "retiring"],
    ]);
    // Retiring with live certificates: removed only by force.
    const retiring = after.authorities[1] as Authority;
    const early = await rotate({ step: "remove", id: retiring.id.slice(0, 16) });
    expect(early.status).toBe(409);
    expect(early.body.error.message).toMatch(/force/);
    const forced = await rotate({ step: "remove", id: retiring.id, force: true });
    expect(forced.status).toBe(200);
    expect((forced.body as CaState).authorities.map((a) => a.status)).toEqual(["active"]);
  });
});

/** The CA's id of the first root of a bundle: its certificate's SHA-256, hex. */
function idOf(bundle: string): string {
  const [root] = nodeCertificates(bundle) as [X509Certificate];
  return root.fingerprint256.replace(/:/g, "").toLowerCase();
}

describe("wasmesh ca", () => {
  it("status prints the authorities and the agents; rotate takes the steps", async () => {
    const status = await wasmesh(["ca", "status"], { api: cp.api });
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toMatch(/Trust domain: wasmesh\.local/);
    expect(status.stdout).toMatch(/ID\s+STATUS\s+ORIGIN\s+SUBJECT/);
    expect(status.stdout.match(/\bactive\b/g)).toHaveLength(1);

    const added = await wasmesh(["ca", "rotate", "add-next"], { api: cp.api });
    expect(added.code, added.stderr).toBe(0);
    expect(added.stdout).toMatch(/\bnext\b/);
    const json = JSON.parse(
      (await wasmesh(["ca", "status", "-o", "json"], { api: cp.api })).stdout,
    ) as CaState;
    const next = json.authorities.find((a) => a.status === "next") as Authority;

    // Illegal: the CA's reason, exit 1.
    const twice = await wasmesh(["ca", "rotate", "add-next"], { api: cp.api });
    expect(twice.code).toBe(1);
    expect(twice.stderr).toMatch(/add-next refused: .*already next/);

    const removed = await wasmesh(["ca", "rotate", "remove", "--id", next.id.slice(0, 16)], { api: cp.api });
    expect(removed.code, removed.stderr).toBe(0);
    expect((await state()).authorities.map((a) => a.status)).toEqual(["active"]);
  });

  it("add-next --ca-dir takes an operator's intermediate", async () => {
    const pki = await operatorPki();
    const dir = join(tempDir("cacerts"), "cacerts");
    mkdirSync(dir);
    writeFileSync(join(dir, EXTERNAL_FILES.certificate), pki.external.certificate);
    writeFileSync(join(dir, EXTERNAL_FILES.key), pki.external.key, { mode: 0o600 });
    writeFileSync(join(dir, EXTERNAL_FILES.root), pki.external.root);
    const added = await wasmesh(["ca", "rotate", "add-next", "--ca-dir", dir], { api: cp.api });
    expect(added.code, added.stderr).toBe(0);
    const next = (await state()).authorities.find((a) => a.status === "next") as Authority;
    expect(next).toMatchObject({
      origin: "external",
      subject: "CN=Example Corp Intermediate 1, O=Example Corp",
    });
    // Its root is what sidecars now trust besides the active one.
    const bundle = await call("GET", "/v1/certificates/trust-bundle", cp.token);
    expect(nodeCertificates(bundle.text).map((c) => c.subject)).toContain(
      new X509Certificate(pki.external.root).subject,
    );
    await wasmesh(["ca", "rotate", "remove", "--id", next.id], { api: cp.api });

    const missing = await wasmesh(["ca", "rotate", "add-next", "--ca-dir", join(dir, "nope")], {
      api: cp.api,
    });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/--ca-dir: .*nope.*ca-cert\.pem/);
  });

  it("usage errors exit 2 naming the flag", async () => {
    const cases: [string[], RegExp][] = [
      [["ca"], /a subcommand is required/],
      [["ca", "rotate"], /a step is required: add-next, promote or remove/],
      [["ca", "rotate", "remove"], /--id is required/],
      [["ca", "rotate", "promote", "--id", "abc"], /--id is for remove/],
      [["ca", "rotate", "promote", "--force"], /--force is for remove/],
      [["ca", "rotate", "remove", "--id", "x", "--ca-dir", "/d"], /--ca-dir is for add-next/],
      [["ca", "status", "-o", "yaml"], /-o: expected one of table, json/],
      [["ca", "rotate", "add-next", "--bogus"], /--bogus/],
    ];
    for (const [args, message] of cases) {
      const result = await wasmesh(args, { api: cp.api });
      expect(result.code, args.join(" ")).toBe(2);
      expect(result.stderr).toMatch(message);
    }
    const help = await wasmesh(["ca", "--help"]);
    expect(help.stdout).toMatch(/wasmesh ca rotate add-next/);
  });
});
