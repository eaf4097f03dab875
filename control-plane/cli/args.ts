// Argument parsing shared by the commands: node:util's parseArgs with the common flags, usage errors
// (exit 2) that repeat the command's usage line, and the flag values several commands take.
import { readFileSync } from "node:fs";
import { type ParseArgsOptionsConfig, parseArgs } from "node:util";
import { credentialsPath, savedCaFile, savedToken } from "../security/credentials.ts";
import { ApiClient, type CaSource, CliError, DEFAULT_API, type TokenSource } from "./client.ts";

/** What one command module exports: the dispatcher loads it only when that command runs. */
export interface Command {
  /** `--help`'s text; its first paragraph (up to a blank line) is the usage a usage error repeats. */
  readonly help: string;
  /** Resolves when done, or to "serving" when it leaves a server running until a signal. */
  run(args: string[], out: Out): Promise<undefined | "serving">;
}

/** Where a command writes its results (stdout, one line per call; a test may capture it). */
export type Out = (text: string) => undefined;

/** A command as usage errors name it: its name, and its help for the usage line. */
export interface CommandName {
  readonly name: string;
  readonly help: string;
}

/** The dispatcher's own usage, for errors before a command is known. */
export const MAIN_USAGE: CommandName = { name: "main", help: "Usage: wasmesh <command> [options]\n\n" };

export interface Parsed {
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
}

const commonOptions = {
  api: { type: "string" },
  token: { type: "string" },
  "ca-file": { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

/** A usage error: the problem, then the command's usage line and where to read more. */
export function usage(command: CommandName, message: string): CliError {
  const { help } = command;
  const usageLines = help.startsWith("Usage:") ? help.slice(0, help.indexOf("\n\n")) : "";
  const more = command.name === "main" ? "wasmesh --help" : `wasmesh ${command.name} --help`;
  return new CliError(`${message}\n${usageLines ? `${usageLines}\n` : ""}Run '${more}' for more.`, 2);
}

/** The command's flags (plus --api and --help) and positionals; an unknown flag is a usage error. */
export function parse(args: string[], options: ParseArgsOptionsConfig, command: CommandName): Parsed {
  try {
    const { values, positionals } = parseArgs({
      args,
      options: { ...commonOptions, ...options },
      allowPositionals: true,
      strict: true,
    });
    return { values: values as Parsed["values"], positionals };
  } catch (error) {
    throw usage(command, parseArgsMessage(error as Error & { code?: string }, command.name));
  }
}

/** node:util's messages, without the advice that does not apply here. */
function parseArgsMessage(error: Error & { code?: string }, command: string): string {
  const option = /'(-{1,2}[^'\s]*)'/.exec(error.message)?.[1];
  if (error.code === "ERR_PARSE_ARGS_UNKNOWN_OPTION" && option) {
    return `${command}: unknown option '${option}'`;
  }
  if (error.code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE") {
    // "Option '-o, --output <value>' argument missing" or "Option '--dry-run' does not take an argument".
    return `${command}: ${error.message.replace(/^Option/, "option")}`;
  }
  return `${command}: ${error.message}`;
}

export function noPositionals(positionals: string[], command: CommandName): void {
  if (positionals.length > 0) {
    throw usage(command, `${command.name}: unexpected argument '${positionals[0]}'`);
  }
}

export const str = (value: string | boolean | undefined): string | undefined =>
  typeof value === "string" ? value : undefined;

/**
 * The API client of --api, else $WASMESH_API, else the default; with the token of --token, else
 * $WASMESH_TOKEN, else the one `wasmesh server` saved for that API in the credentials file.
 */
export function apiOf(values: {
  api?: string | boolean | undefined;
  token?: string | boolean | undefined;
  "ca-file"?: string | boolean | undefined;
}): ApiClient {
  const api = typeof values.api === "string" ? values.api : process.env.WASMESH_API || DEFAULT_API;
  const client = new ApiClient(api);
  return new ApiClient(client.base, tokenOf(values, client.base), caOf(values, client.base));
}

/**
 * The CA an https API is verified with: --ca-file, else $WASMESH_CA_FILE, else the file the
 * credentials file names for that URL (wasmesh server --tls saves <data>/ca-bundle.pem); else the
 * system's CAs (a publicly trusted certificate).
 */
export function caOf(
  values: { "ca-file"?: string | boolean | undefined },
  api: string,
): CaSource | undefined {
  let source: Omit<CaSource, "pem"> | undefined;
  if (typeof values["ca-file"] === "string") {
    if (values["ca-file"] === "") throw new CliError("--ca-file: must not be empty", 2);
    source = { file: values["ca-file"], from: "--ca-file" };
  } else if (process.env.WASMESH_CA_FILE)
    source = { file: process.env.WASMESH_CA_FILE, from: "$WASMESH_CA_FILE" };
  else if (api.startsWith("https:")) {
    const path = credentialsPath();
    let saved: string | undefined;
    try {
      saved = savedCaFile(api, path);
    } catch (error) {
      throw new CliError((error as Error).message);
    }
    if (saved !== undefined) source = { file: saved, from: `the credentials file ${path}` };
  }
  if (source === undefined) return undefined;
  try {
    return { ...source, pem: readFileSync(source.file, "utf8") };
  } catch (error) {
    // A flag's bad value is a usage error; a file named elsewhere is not.
    throw new CliError(
      `${source.from}: cannot read the CA file ${source.file}: ${(error as Error).message}`,
      source.from === "--ca-file" ? 2 : 1,
    );
  }
}

function tokenOf(values: { token?: string | boolean | undefined }, api: string): TokenSource | undefined {
  if (typeof values.token === "string") {
    if (values.token === "") throw new CliError("--token: must not be empty", 2);
    return { token: values.token, from: "--token" };
  }
  if (process.env.WASMESH_TOKEN) return { token: process.env.WASMESH_TOKEN, from: "$WASMESH_TOKEN" };
  const path = credentialsPath();
  let saved: string | undefined;
  try {
    saved = savedToken(api, path);
  } catch (error) {
    throw new CliError((error as Error).message);
  }
  return saved === undefined ? undefined : { token: saved, from: `the credentials file ${path}` };
}

/**
 * A --token-file's token: its first line, trimmed (as `wasmesh token … > FILE` writes it). An
 * unreadable or empty file is a usage error naming the flag.
 */
export function readTokenFile(command: CommandName, file: string): string {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    throw usage(
      command,
      `--token-file: cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
    );
  }
  const token = text.split("\n")[0]?.trim() ?? "";
  if (token === "") throw usage(command, `--token-file: ${file} is empty`);
  return token;
}

/** The -o format, one of `allowed` (the first is the default). */
export function output(values: { output?: string | boolean | undefined }, allowed: string[]): string {
  const format = typeof values.output === "string" ? values.output : allowed[0];
  if (!format || !allowed.includes(format)) {
    throw new CliError(`-o: expected one of ${allowed.join(", ")}, got '${String(values.output)}'`, 2);
  }
  return format;
}

/** A port flag; `min` 0 lets a server pick a free port. */
export function parsePort(
  value: string | undefined,
  flag: string,
  fallback?: number,
  min = 1,
): number | undefined {
  if (value === undefined) return fallback;
  const port = Number(value);
  if (!/^\d+$/.test(value) || port < min || port > 65_535) {
    throw new CliError(`${flag}: expected a port number ${min}-65535, got '${value}'`, 2);
  }
  return port;
}

/** A whole number from min to max, for a numeric flag; undefined when not given. */
export function parseCount(
  value: string | undefined,
  flag: string,
  min: number,
  max: number,
): number | undefined {
  if (value === undefined) return undefined;
  const count = Number(value);
  if (!/^\d+$/.test(value) || count < min || count > max) {
    throw new CliError(`${flag}: expected a whole number ${min}-${max}, got '${value}'`, 2);
  }
  return count;
}

/** `k=v,k2=v2` (--labels). */
export function parseLabels(value: string | undefined): Record<string, string> {
  const labels: Record<string, string> = {};
  if (!value) return labels;
  for (const pair of value.split(",")) {
    const eq = pair.indexOf("=");
    const key = pair.slice(0, eq).trim();
    if (eq < 0 || key === "") throw new CliError(`--labels: expected k=v[,k=v...], got '${pair}'`, 2);
    if (key in labels) throw new CliError(`--labels: '${key}' is given twice`, 2);
    labels[key] = pair.slice(eq + 1).trim();
  }
  return labels;
}

/** A warning on stderr; the command still succeeds. */
export function warn(message: string): void {
  process.stderr.write(`warning: ${message}\n`);
}
