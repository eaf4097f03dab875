// Reading the files (or stdin) a command is given, with errors a user can act on.
import { readFile } from "node:fs/promises";
import { decodeUtf8, describeInvalidUtf8 } from "../utf8.ts";
import { CliError } from "./client.ts";

/** `cannot read 'x': no such file or directory (ENOENT)` rather than a stack trace. */
function readError(file: string, error: unknown): CliError {
  const { code, message } = error as NodeJS.ErrnoException;
  // Node's message is "ENOENT: no such file or directory, open 'x'": keep the words.
  const why = code ? `${/^[A-Z]+: ([^,]+)/.exec(message)?.[1] ?? message} (${code})` : message;
  return new CliError(`cannot read '${file}': ${why}`);
}

/** The file's bytes. */
export async function readBytes(file: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (error) {
    throw readError(file, error);
  }
}

/** The file's (or stdin's) text; invalid UTF-8 is refused, as the API does, not sent as U+FFFD. */
export async function readText(file: string): Promise<string> {
  let bytes: Buffer;
  if (file === "-") {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    bytes = Buffer.concat(chunks);
  } else {
    bytes = await readBytes(file);
  }
  const decoded = decodeUtf8(bytes);
  if (decoded.ok) return decoded.text;
  const name = file === "-" ? "stdin" : `'${file}'`;
  throw new CliError(`${name} is not valid UTF-8: ${describeInvalidUtf8(decoded)}; save it as UTF-8`);
}
