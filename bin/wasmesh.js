#!/usr/bin/env node
// The `wasmesh` bin. It runs the TypeScript sources of the clone it belongs to with Node's type
// stripping (Node >= 22.18), so it works from the clone itself (`npx wasmesh`) and through a link to
// it (`npm install -g <clone>`, `npm link`), from any folder. This file is plain JavaScript that any
// Node parses, so that where the sources cannot run it says why instead of failing on an import.
import { existsSync } from "node:fs";
import { dirname, join, sep } from "node:path";
import { fileURLToPath } from "node:url";

// Node resolves the links npm makes, so this is the clone (or a copy of the package).
const root = dirname(dirname(fileURLToPath(import.meta.url)));

function fail(lines) {
  process.stderr.write(`wasmesh: ${lines.join("\n")}\n`);
  process.exit(1);
}

if (!process.features.typescript) {
  const [major, minor] = process.versions.node.split(".").map(Number);
  if (major > 22 || (major === 22 && minor >= 18)) {
    fail([
      `this Node.js (${process.version}) has its TypeScript type stripping turned off, which wasmesh ` +
        "needs: drop --no-experimental-strip-types (from the command line or NODE_OPTIONS).",
    ]);
  }
  const nodeBin = join(root, ".tools", "node22", "node_modules", "node", "bin");
  const dev = join(root, "dev");
  fail([
    "needs Node.js >= 22.18, which runs TypeScript sources directly (type stripping); " +
      `this is Node.js ${process.version} (${process.execPath}).`,
    existsSync(join(nodeBin, "node"))
      ? "This clone has Node.js 22 (./dev installed it): put it first on PATH:"
      : `Install Node.js 22 (https://nodejs.org), or run ./dev setup in ${root}, which installs it into .tools/node22, then:`,
    `  export PATH=${nodeBin}:$PATH`,
    ...(existsSync(dev)
      ? [
          "or run this command through ./dev, which installs that Node if needed and uses it:",
          `  ${dev} wasmesh ${shellWords(process.argv.slice(2))}`.trimEnd(),
        ]
      : []),
  ]);
}

/** The arguments as a shell would need them typed again. */
function shellWords(args) {
  return args
    .map((arg) => (/^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, "'\\''")}'`))
    .join(" ");
}

if (root.split(sep).includes("node_modules")) {
  fail([
    `this copy of wasmesh is under node_modules (${root}), where Node.js does not run TypeScript ` +
      "sources, so a packed install (npm pack, a tarball, a registry) cannot work yet.",
    "Install it from a clone instead, as a link: `npm install -g <clone>` or `npm link` in the clone.",
  ]);
}

// `wasmesh get … | head` closes stdout early: that is not an error worth a stack trace.
process.stdout.on("error", (error) => {
  if (error.code === "EPIPE") process.exit(0);
  throw error;
});

const { main } = await import("../control-plane/cli/main.ts");
const code = await main(process.argv.slice(2));
// null: the server runs until a signal stops it. Otherwise done; exit now rather than wait for
// idle keep-alive sockets.
if (code !== null) process.exit(code);
