// TLS on the control plane's own ports (`wasmesh server --tls`): the HTTP API over HTTPS and xDS
// over TLS (HTTP/2, ALPN h2) with one certificate. Either the mesh CA issues it for the names the
// server is reached by (--api-host names, the bound address, localhost and loopback; the machine's
// addresses when bound to all), with a key made here and never written, renewed at renewal.ts's
// time and handed to the running servers (setSecureContext: no restart, open connections stay);
// or the operator gives a certificate and key (--tls-cert, --tls-key), read once at start.
//
// With the mesh CA, its trust bundle goes to <data>/ca-bundle.pem (0644: it is public, and every
// client on the machine may need it), rewritten when the bundle changes (a rotation's next root),
// so that the CLI, agents (--ca-file) and Envoys from `wasmesh bootstrap --ca-file` trust the server.
import { X509Certificate } from "node:crypto";
import { chmodSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { networkInterfaces } from "node:os";
import { join } from "node:path";
import { createSecureContext } from "node:tls";
import type { CertificateAuthority } from "../ca/index.ts";
import { renewalDelayMs } from "../ca/renewal.ts";
import { createCertificateRequest, createWorkloadKey } from "../ca/workload.ts";

/** Where the mesh CA's trust bundle is written for clients on this machine. */
export const CA_BUNDLE_FILE = "ca-bundle.pem";

/** How often the trust bundle is compared with the one written (as agents poll it). */
const BUNDLE_CHECK_MS = 30_000;
/** After a failed renewal, the next try. */
const RETRY_MS = 30_000;

export interface TlsMaterial {
  /** PEM: the certificate, then its chain. */
  cert: string;
  /** PEM: the private key. */
  key: string;
}

export type ServerTlsOptions = {
  dataDir: string;
  log: (line: string) => void;
} & (
  | {
      /** The mesh CA issues the server's certificate for these names. */
      ca: CertificateAuthority;
      names: readonly string[];
      /** Lifetime asked of the CA (default the CA's workload validity). */
      validitySeconds?: number;
    }
  | { certFile: string; keyFile: string }
);

export interface ServerTls {
  /** What the servers present now. */
  readonly material: TlsMaterial;
  /** <data>/ca-bundle.pem when the mesh CA issued the certificate; undefined for a given one. */
  readonly caFile: string | undefined;
  /** When the certificate presented now expires. */
  readonly notAfter: Date;
  /** Certificates issued so far (the first and each renewal). */
  readonly issued: number;
  /** Told of each renewal's material (the servers call setSecureContext with it). */
  onRenew(listener: (material: TlsMaterial) => void): void;
  /** A new key and certificate now (mesh CA only). */
  renew(): Promise<void>;
  /** Rewrites <data>/ca-bundle.pem now if the bundle changed (after a rotation step). */
  refreshBundle(): Promise<void>;
  close(): void;
}

/** The names a server bound to `address` is reached by: the given ones, loopback, the address. */
export function serverNames(address: string, apiHosts: readonly string[]): string[] {
  const bare = address.replace(/^\[(.*)\]$/, "$1");
  const names = [...apiHosts.map((h) => h.replace(/\.$/, "")), "localhost", "127.0.0.1", "::1"];
  if (bare === "0.0.0.0" || bare === "::") {
    // Bound to every interface: clients may use any of its addresses.
    for (const list of Object.values(networkInterfaces())) {
      for (const entry of list ?? []) names.push(entry.address.replace(/%.*$/, ""));
    }
  } else if (bare !== "") {
    names.push(bare);
  }
  return [...new Set(names)];
}

/** Writes `text` to `path` whole (a temp file renamed over it), readable by everyone. */
function writePublic(path: string, text: string): void {
  const temp = `${path}.${process.pid}.tmp`;
  rmSync(temp, { force: true });
  writeFileSync(temp, text, { mode: 0o644 });
  // The umask may have taken bits off: the bundle is meant for every user of the machine.
  chmodSync(temp, 0o644);
  renameSync(temp, path);
}

function readPem(path: string, flag: string, what: string): string {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new Error(`${flag} ${path}: cannot be read: ${(error as Error).message}`);
  }
  if (
    !text.includes(`-----BEGIN ${what}`) &&
    !(what === "PRIVATE KEY" && /-----BEGIN [A-Z ]*PRIVATE KEY/.test(text))
  )
    throw new Error(`${flag} ${path}: no PEM ${what.toLowerCase()} in it`);
  return text;
}

export async function startServerTls(options: ServerTlsOptions): Promise<ServerTls> {
  const listeners: ((material: TlsMaterial) => void)[] = [];
  if ("certFile" in options) {
    const material = {
      cert: readPem(options.certFile, "--tls-cert", "CERTIFICATE"),
      key: readPem(options.keyFile, "--tls-key", "PRIVATE KEY"),
    };
    try {
      // Refuses a key that is not the certificate's, or PEM that does not parse, before binding.
      createSecureContext(material);
    } catch (error) {
      throw new Error(
        `--tls-cert ${options.certFile} and --tls-key ${options.keyFile} cannot be used: ${(error as Error).message}`,
      );
    }
    const notAfter = new Date(new X509Certificate(material.cert).validTo);
    return {
      material,
      caFile: undefined,
      notAfter,
      issued: 0,
      onRenew: (listener) => listeners.push(listener),
      renew: async () => {},
      refreshBundle: async () => {},
      close: () => {},
    };
  }

  const { ca, names, log, validitySeconds } = options;
  const caFile = join(options.dataDir, CA_BUNDLE_FILE);
  let bundleVersion: string | undefined;
  let material: TlsMaterial;
  let notAfter: Date;
  let issued = 0;
  let renewTimer: NodeJS.Timeout | undefined;
  let closed = false;

  async function writeBundle(): Promise<void> {
    const bundle = await ca.trustBundle();
    if (bundle.version === bundleVersion) return;
    writePublic(caFile, bundle.pem);
    bundleVersion = bundle.version;
  }

  async function issue(): Promise<void> {
    const key = await createWorkloadKey();
    const certificate = await ca.issueServer({
      csr: await createCertificateRequest(key.keys),
      names,
      ...(validitySeconds !== undefined ? { validitySeconds } : {}),
    });
    material = { cert: certificate.certificateChain, key: key.privateKeyPem };
    notAfter = certificate.notAfter;
    issued++;
    await writeBundle();
    schedule(renewalDelayMs(certificate, Date.now()));
  }

  function schedule(delayMs: number): void {
    clearTimeout(renewTimer);
    if (closed) return;
    renewTimer = setTimeout(() => void renew(), delayMs);
    renewTimer.unref();
  }

  async function renew(): Promise<void> {
    try {
      await issue();
      log(`wasmesh: the API and xDS certificate was renewed (until ${notAfter.toISOString()})`);
      for (const listener of listeners) listener(material);
    } catch (error) {
      log(
        `wasmesh: cannot renew the API and xDS certificate (retrying in 30 s): ${(error as Error).message}`,
      );
      schedule(RETRY_MS);
    }
  }

  await issue();
  const refreshBundle = () =>
    writeBundle().catch((error: unknown) =>
      log(`wasmesh: cannot write ${caFile}: ${(error as Error).message}`),
    );
  const bundleTimer = setInterval(refreshBundle, BUNDLE_CHECK_MS);
  bundleTimer.unref();

  return {
    get material() {
      return material;
    },
    caFile,
    get notAfter() {
      return notAfter;
    },
    get issued() {
      return issued;
    },
    onRenew: (listener) => listeners.push(listener),
    renew,
    refreshBundle,
    close() {
      closed = true;
      clearTimeout(renewTimer);
      clearInterval(bundleTimer);
    },
  };
}
