// The CLI's HTTP client for the control plane's API: one place that turns a failed call into a
// message a user can act on (the API's error and its field paths, or why the API is unreachable).
// node:http rather than fetch: fetch joins repeated headers (Wasmesh-Warning, one per warning) with
// ", ", which warnings themselves contain, and refuses "bad ports" (e.g. 6000) a control plane may use.
import http, { type IncomingMessage } from "node:http";
import https from "node:https";

export const DEFAULT_API = "http://127.0.0.1:5681";

/** A failure the CLI reports as `wasmesh: <message>` with a non-zero exit. */
export class CliError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode = 1) {
    super(message);
    this.name = "CliError";
    this.exitCode = exitCode;
  }
}

interface ApiErrorBody {
  error?: {
    code?: string;
    message?: string;
    details?: {
      kind?: string;
      name?: string;
      document?: number;
      line?: number;
      path?: string;
      message?: string;
    }[];
  };
}

function formatApiError(status: number, body: unknown): string {
  const error = (body as ApiErrorBody | undefined)?.error;
  if (!error?.message) {
    // Not our API's error shape (a proxy in between, a wrong --api): show what came back.
    const text = typeof body === "string" ? body.trim().slice(0, 200) : "";
    return `the control plane answered HTTP ${status}${text ? `: ${text}` : ""}`;
  }
  const lines = [error.message];
  for (const d of error.details ?? []) {
    const where = [
      d.document !== undefined ? `document ${d.document}` : undefined,
      d.line !== undefined ? `(line ${d.line})` : undefined,
      d.kind && d.name ? `${d.kind}/${d.name}` : undefined,
      d.path,
    ]
      .filter(Boolean)
      .join(" ");
    lines.push(`  ${where ? `${where}: ` : ""}${d.message ?? ""}`);
  }
  return lines.join("\n");
}

// Why a connection failed, in words; the code stays for searching.
const NETWORK_ERRORS: Record<string, string> = {
  ECONNREFUSED: "connection refused",
  ECONNRESET: "connection reset",
  ENOTFOUND: "host not found",
  EAI_AGAIN: "host name lookup failed",
  ETIMEDOUT: "timed out",
  EHOSTUNREACH: "host unreachable",
  ENETUNREACH: "network unreachable",
  UND_ERR_CONNECT_TIMEOUT: "connect timed out",
  UND_ERR_SOCKET: "connection closed",
};

// Node's codes for a server certificate that does not verify (tls.checkServerIdentity's included).
const CERTIFICATE_ERRORS = new Set([
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "CERT_SIGNATURE_FAILURE",
  "CERT_UNTRUSTED",
  "ERR_TLS_CERT_ALTNAME_INVALID",
]);

function networkReason(error: NodeJS.ErrnoException): string {
  const code = error.code;
  if (code) return NETWORK_ERRORS[code] ? `${NETWORK_ERRORS[code]}, ${code}` : code;
  return error.message;
}

export interface ApiResponse {
  status: number;
  body: unknown;
  /** Every value of a response header, in order (lower-case name). */
  header(name: string): string[];
}

interface RawResponse {
  status: number;
  contentType: string;
  text: string;
  rawHeaders: string[];
}

/** The CA file an https API is verified with, and where it was named (for a failed verification). */
export interface CaSource {
  file: string;
  pem: string;
  /** e.g. "--ca-file", "$WASMESH_CA_FILE", "the credentials file …" */
  from: string;
}

function request(
  url: URL,
  method: string,
  body: string | Uint8Array | undefined,
  contentType?: string,
  token?: string,
  ca?: CaSource,
) {
  return new Promise<RawResponse>((resolve, reject) => {
    const send = url.protocol === "https:" ? https.request : http.request;
    const req = send(
      url,
      {
        method,
        ...(ca !== undefined && url.protocol === "https:" ? { ca: ca.pem } : {}),
        headers: {
          ...(token !== undefined ? { authorization: `Bearer ${token}` } : {}),
          ...(contentType ? { "content-type": contentType } : {}),
          ...(body !== undefined ? { "content-length": Buffer.byteLength(body) } : {}),
        },
      },
      (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("error", reject);
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            contentType: res.headers["content-type"] ?? "",
            text: Buffer.concat(chunks).toString("utf8"),
            rawHeaders: res.rawHeaders,
          }),
        );
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

/** The bearer token a command sends, and where it was found (for the message of a 401). */
export interface TokenSource {
  token: string;
  /** e.g. "--token", "$WASMESH_TOKEN", "the credentials file /home/me/.config/wasmesh/credentials.json" */
  from: string;
}

export class ApiClient {
  readonly base: string;
  readonly #token: TokenSource | undefined;
  readonly #ca: CaSource | undefined;

  constructor(base: string, token?: TokenSource, ca?: CaSource) {
    this.#token = token;
    this.#ca = ca;
    let url: URL;
    try {
      url = new URL(base);
    } catch {
      throw new CliError(`--api: not a URL: '${base}' (expected e.g. ${DEFAULT_API})`, 2);
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new CliError(`--api: must be an http(s) URL, got '${base}'`, 2);
    }
    this.base = url.href.replace(/\/$/, "");
  }

  /** Calls the API; a non-2xx answer throws a CliError carrying the API's message. */
  async call(
    method: string,
    path: string,
    init: { body?: string | Uint8Array; contentType?: string } = {},
  ): Promise<ApiResponse> {
    let response: RawResponse;
    try {
      response = await request(
        new URL(`${this.base}${path}`),
        method,
        init.body,
        init.contentType,
        this.#token?.token,
        this.#ca,
      );
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== undefined && CERTIFICATE_ERRORS.has(code)) {
        const trusted = this.#ca
          ? `the CA file ${this.#ca.file} (from ${this.#ca.from})`
          : "the system's CAs (no --ca-file, $WASMESH_CA_FILE or credentials file entry for this URL)";
        throw new CliError(
          `the control plane at ${this.base} presented a certificate that does not verify against ${trusted}: ` +
            `${(error as Error).message} (${code}). A server started with --tls writes its CA to <data>/ca-bundle.pem: ` +
            "pass it with --ca-file",
        );
      }
      throw new CliError(
        `cannot reach the control plane at ${this.base} (${networkReason(error as NodeJS.ErrnoException)}); ` +
          "start it with `wasmesh server`, or pass --api URL (or set WASMESH_API)",
      );
    }
    let body: unknown = response.text;
    if (response.contentType.includes("json") && response.text) {
      try {
        body = JSON.parse(response.text);
      } catch {
        // Not JSON after all: report the raw text.
      }
    }
    if (response.status === 401) {
      const hint = this.#token
        ? `the token from ${this.#token.from} was refused`
        : "no token was given (--token, $WASMESH_TOKEN, or the credentials file `wasmesh server` writes on this machine)";
      throw new CliError(`${formatApiError(response.status, body)}\n  ${hint}`);
    }
    if (response.status < 200 || response.status > 299) {
      throw new CliError(formatApiError(response.status, body));
    }
    const { rawHeaders } = response;
    return {
      status: response.status,
      body,
      header: (name) =>
        rawHeaders.flatMap((value, i) =>
          i % 2 === 1 && rawHeaders[i - 1]?.toLowerCase() === name.toLowerCase() ? [value] : [],
        ),
    };
  }

  /** Best-effort GET: the body, or undefined for a 404 or any failure (the caller can do without). */
  async tryGet(path: string): Promise<unknown> {
    try {
      const response = await request(
        new URL(`${this.base}${path}`),
        "GET",
        undefined,
        undefined,
        this.#token?.token,
        this.#ca,
      );
      if (response.status === 200) return JSON.parse(response.text) as unknown;
    } catch {
      // A connection problem is reported in full by the call that follows.
    }
    return undefined;
  }
}
