#!/usr/bin/env node
// The `wasmesh` bin. Node >= 22.12 runs the TypeScript sources directly (type stripping).
import { main } from "../control-plane/cli/main.ts";

const code = await main(process.argv.slice(2));
// The server keeps running; every other command is done.
if (process.argv[2] !== "server" || code !== 0) process.exit(code);
