// The CLI's HTTP client for the control plane's API: one place that turns a failed call into a
// message a user can act on (the API's error and its field paths, or why the API is unreachable).

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
    details?: { kind?: string; name?: string; document?: number; path?: string; message?: string }[];
  };
}

function formatApiError(status: number, body: unknown): string {
  const error = (body as ApiErrorBody | undefined)?.error;
  if (!error?.message) return `the control plane answered ${status}`;
  const lines = [error.message];
  for (const d of error.details ?? []) {
    const where = [
      d.document !== undefined ? `document ${d.document}` : undefined,
      d.kind && d.name ? `${d.kind}/${d.name}` : undefined,
      d.path,
    ]
      .filter(Boolean)
      .join(" ");
    lines.push(`  ${where ? `${where}: ` : ""}${d.message ?? ""}`);
  }
  return lines.join("\n");
}

export class ApiClient {
  readonly base: string;

  constructor(base: string) {
    let url: URL;
    try {
      url = new URL(base);
    } catch {
      throw new CliError(`--api: not a URL: '${base}'`, 2);
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new CliError(`--api: must be an http(s) URL, got '${base}'`, 2);
    }
    this.base = url.href.replace(/\/$/, "");
  }

  /** Calls the API; a non-2xx answer throws a CliError carrying the API's message. */
  async call(method: string, path: string, init: { body?: BodyInit; contentType?: string } = {}) {
    let response: Response;
    try {
      response = await fetch(`${this.base}${path}`, {
        method,
        ...(init.body !== undefined ? { body: init.body } : {}),
        headers: init.contentType ? { "content-type": init.contentType } : {},
      });
    } catch (cause) {
      const reason = (cause as { cause?: { code?: string } }).cause?.code ?? String(cause);
      throw new CliError(
        `cannot reach the control plane at ${this.base} (${reason}); start it with \`wasmesh server\` or pass --api`,
      );
    }
    const text = await response.text();
    let body: unknown = text;
    if ((response.headers.get("content-type") ?? "").includes("json") && text) {
      try {
        body = JSON.parse(text);
      } catch {
        // Not JSON after all: report the raw text.
      }
    }
    if (!response.ok) throw new CliError(formatApiError(response.status, body));
    return { status: response.status, body };
  }
}
