// The key-encryption key (KEK) that protects the CA's private keys at rest. The keys are stored in
// the database encrypted with AES-256-GCM under this key; the key itself is never in the database: it
// is a file, <data>/ca-kek by default (created 0600 at the first start), or given by an operator who
// keeps it in a secret store (WASMESH_CA_KEK_FILE, a path; WASMESH_CA_KEK, the value). A database
// copied without it cannot sign, and a wrong key is refused by its id before anything is decrypted.
import { Buffer } from "node:buffer";
import { createCipheriv, createDecipheriv, createHmac, randomBytes, randomUUID } from "node:crypto";
import {
  closeSync,
  existsSync,
  fsyncSync,
  linkSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { CaStateError } from "./errors.ts";

/** The KEK's file in the data directory unless the environment names another. */
export const KEK_FILE = "ca-kek";
export const KEK_FILE_ENV = "WASMESH_CA_KEK_FILE";
export const KEK_ENV = "WASMESH_CA_KEK";

const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;

/** The CA cannot use its key-encryption key: missing, malformed or not the one the keys need. */
export class KekError extends CaStateError {
  constructor(message: string) {
    super(message);
    this.name = "KekError";
  }
}

/** A private key as stored: AES-256-GCM ciphertext with its tag, and its IV. */
export interface SealedKey {
  /** Base64 of the 12-byte IV. */
  iv: string;
  /** Base64 of the ciphertext followed by the 16-byte tag. */
  data: string;
}

export interface Kek {
  /** Short public id of the key (an HMAC of a constant under it), stored beside what it encrypts. */
  readonly id: string;
  /** Where it came from, for messages: a path or the environment variable's name. */
  readonly source: string;
  /** Whether this start created it (a new data directory). */
  readonly created: boolean;
  seal(plaintext: Uint8Array, context: string): SealedKey;
  /** Throws KekError when the data was not sealed under this key and context, or was altered. */
  open(sealed: SealedKey, context: string): Buffer;
}

/** Where the KEK is taken from: explicit options first, then the environment, then <data>/ca-kek. */
export interface KekOptions {
  dataDir: string;
  /** A path to read it from (base64 of 32 bytes); never created. */
  file?: string;
  /** The key itself (32 bytes). */
  key?: Uint8Array;
  /** Read for WASMESH_CA_KEK_FILE and WASMESH_CA_KEK (default process.env). */
  env?: Record<string, string | undefined>;
  /**
   * Create <data>/ca-kek when it is missing (the default source only). The CA passes false when the
   * store already holds keys: a new KEK could never open them.
   */
  create: boolean;
  /** Told when a KEK file can be read by others than its owner. */
  warn?: (message: string) => void;
}

function fromText(text: string, source: string): Buffer {
  const trimmed = text.trim();
  const key = Buffer.from(trimmed, "base64");
  // Buffer.from ignores what is not base64: compare the round trip, so a typo is not a silent other key.
  if (key.length !== KEY_BYTES || key.toString("base64") !== trimmed) {
    throw new KekError(
      `${source}: the CA key-encryption key must be the base64 of ${KEY_BYTES} random bytes (e.g. the output of \`openssl rand -base64 32\`)`,
    );
  }
  return key;
}

function readKeyFile(path: string, warn: ((message: string) => void) | undefined): Buffer {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new KekError(`${path}: cannot read the CA key-encryption key: ${(error as Error).message}`);
  }
  // Kubernetes mounts secrets 0644 unless told otherwise, so this warns rather than refuses.
  const mode = statSync(path).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    warn?.(
      `wasmesh: ${path} (the CA key-encryption key) can be read by others (mode ${mode.toString(8)}); chmod 600 it`,
    );
  }
  return fromText(text, path);
}

/** Creates path with a new random key, 0600, complete or not at all; another process's wins. */
function createKeyFile(path: string, dir: string): void {
  const temp = join(dir, `.${KEK_FILE}.new-${process.pid}-${randomUUID().slice(0, 8)}`);
  try {
    const fd = openSync(temp, "wx", 0o600);
    try {
      writeSync(fd, `${randomBytes(KEY_BYTES).toString("base64")}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    try {
      linkSync(temp, path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    }
  } finally {
    rmSync(temp, { force: true });
  }
}

/** The id stored beside the sealed keys: tells a wrong KEK apart from damaged data. */
function keyId(key: Buffer): string {
  return createHmac("sha256", key).update("wasmesh ca kek id").digest("hex").slice(0, 16);
}

function kekOf(key: Buffer, source: string, created: boolean): Kek {
  const id = keyId(key);
  return {
    id,
    source,
    created,
    seal(plaintext, context) {
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv("aes-256-gcm", key, iv);
      // The context (what the key is, whose) is authenticated: a sealed key cannot be moved to another record.
      cipher.setAAD(Buffer.from(context, "utf8"));
      const data = Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
      return { iv: iv.toString("base64"), data: data.toString("base64") };
    },
    open(sealed, context) {
      const iv = Buffer.from(sealed.iv, "base64");
      const data = Buffer.from(sealed.data, "base64");
      if (iv.length !== IV_BYTES || data.length <= TAG_BYTES) {
        throw new KekError(`${context}: the sealed private key is malformed`);
      }
      try {
        const decipher = createDecipheriv("aes-256-gcm", key, iv);
        decipher.setAAD(Buffer.from(context, "utf8"));
        decipher.setAuthTag(data.subarray(data.length - TAG_BYTES));
        return Buffer.concat([decipher.update(data.subarray(0, data.length - TAG_BYTES)), decipher.final()]);
      } catch {
        throw new KekError(
          `${context}: the private key does not decrypt with the key-encryption key of ${source} (id ${id}): it was altered, or sealed under another key`,
        );
      }
    },
  };
}

/** The KEK the options and the environment point at; <data>/ca-kek is created when asked to. */
export function loadKek(options: KekOptions): Kek {
  const env = options.env ?? process.env;
  if (options.key !== undefined) {
    if (options.key.length !== KEY_BYTES) {
      throw new KekError(`the CA key-encryption key must be ${KEY_BYTES} bytes (got ${options.key.length})`);
    }
    return kekOf(Buffer.from(options.key), "the key given", false);
  }
  if (options.file !== undefined) return kekOf(readKeyFile(options.file, options.warn), options.file, false);
  const fromEnvFile = env[KEK_FILE_ENV];
  if (fromEnvFile) return kekOf(readKeyFile(fromEnvFile, options.warn), fromEnvFile, false);
  const fromEnv = env[KEK_ENV];
  if (fromEnv) return kekOf(fromText(fromEnv, KEK_ENV), KEK_ENV, false);

  const path = join(options.dataDir, KEK_FILE);
  let created = false;
  if (!existsSync(path)) {
    if (!options.create) {
      throw new KekError(
        `${path} does not exist, and the CA's private keys in the database are encrypted with it: restore the file (or point ${KEK_FILE_ENV} or ${KEK_ENV} at the key). A database copied without its key-encryption key cannot sign.`,
      );
    }
    createKeyFile(path, options.dataDir);
    created = true;
  }
  return kekOf(readKeyFile(path, options.warn), path, created);
}
