#!/usr/bin/env node
// The `wasmesh` bin. Node >= 22.12 runs the TypeScript sources directly (type stripping).
import { main } from "../control-plane/cli/main.ts";

// `wasmesh get … | head` closes stdout early: that is not an error worth a stack trace.
process.stdout.on("error", (error) => {
  if (error.code === "EPIPE") process.exit(0);
  throw error;
});

const code = await main(process.argv.slice(2));
// null: the server runs until a signal stops it. Otherwise done; exit now rather than wait for
// idle keep-alive sockets.
if (code !== null) process.exit(code);
