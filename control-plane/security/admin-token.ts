// The admin token of a data directory: a control plane that holds no valid admin token (a new
// --data directory, one from before tokens existed, or one whose admin tokens were all revoked or
// expired) creates one at start and writes it to <data>/admin-token, readable by its owner only.
// Whoever can read the data directory can read the database too: the file gives no one more.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { writePrivate } from "./credentials.ts";
import type { Tokens } from "./tokens.ts";

export const ADMIN_TOKEN_FILE = "admin-token";

export interface AdminToken {
  /** <data>/admin-token */
  file: string;
  /** The token in that file, when it is a valid admin token (undefined otherwise, e.g. moved away). */
  secret: string | undefined;
  /** Whether it was created by this start. */
  created: boolean;
}

export async function ensureAdminToken(
  tokens: Tokens,
  dataDir: string,
  now = () => new Date(),
): Promise<AdminToken> {
  const file = join(dataDir, ADMIN_TOKEN_FILE);
  const inFile = existsSync(file) ? readFileSync(file, "utf8").trim() : undefined;
  if (inFile !== undefined) {
    const verdict = await tokens.verify(inFile);
    if (verdict.ok && verdict.principal.role === "admin") return { file, secret: inFile, created: false };
  }
  const valid = (await tokens.list()).some(
    (t) =>
      t.role === "admin" &&
      !t.revoked &&
      (t.expiresAt === undefined || Date.parse(t.expiresAt) > now().getTime()),
  );
  // Someone holds a valid admin token (its file moved away on purpose): nothing to do.
  if (valid) return { file, secret: undefined, created: false };
  const { secret } = await tokens.issue({
    role: "admin",
    name: "created by wasmesh server: no valid admin token",
  });
  writePrivate(file, `${secret}\n`);
  return { file, secret, created: true };
}
