// The host must run in workerd as well as Node: web-standard APIs only, no timers of its own.
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const HOST_DIR = fileURLToPath(new URL("../../host/", import.meta.url));

const FORBIDDEN: [RegExp, string][] = [
  [/from\s+["']node:/, "node: imports"],
  [/\bBuffer\b/, "Buffer"],
  [/\bprocess\b/, "process"],
  [/\brequire\s*\(/, "require"],
  [/\b(setTimeout|setInterval|setImmediate)\b/, "timers (the embedder drives ticks)"],
  [/\b__dirname\b|\b__filename\b/, "CommonJS globals"],
];

function code(source: string): string {
  // Comments may mention what the code must not use.
  return source.replace(/\/\*[\s\S]*?\*\//g, "").replace(/(^|[^:"'`])\/\/.*$/gm, "$1");
}

describe("host portability", () => {
  const files = readdirSync(HOST_DIR, { recursive: true, encoding: "utf8" })
    .filter((f) => f.endsWith(".ts"))
    .map((f) => f.split("\\").join("/"));

  it("has source files to check, in host/ and below", () => {
    expect(files).toContain("index.ts");
    expect(files).toContain("imports/index.ts");
  });

  for (const file of files) {
    it(`${file} uses web-standard APIs only`, () => {
      const source = code(readFileSync(join(HOST_DIR, file), "utf8"));
      for (const [pattern, what] of FORBIDDEN) expect(pattern.test(source), `${file}: ${what}`).toBe(false);
      // Imports are relative, name their .ts files, and stay inside host/.
      for (const [, spec = ""] of source.matchAll(/from\s+["']([^"']+)["']/g)) {
        expect(spec, `${file}: ${spec}`).toMatch(/^(\.\.?\/)+([\w-]+\/)*[\w-]+\.ts$/);
        const target = relative(HOST_DIR, join(HOST_DIR, dirname(file), spec));
        expect(target.startsWith(".."), `${file}: ${spec} leaves host/`).toBe(false);
      }
    });
  }
});
