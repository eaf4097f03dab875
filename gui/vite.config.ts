// Builds the console (gui/) into build/gui/, which `wasmesh server` serves at /gui
// (control-plane/api/gui.ts): `npm run build:gui`. Everything it needs is in the bundle: no CDN,
// no web fonts; Preact's automatic JSX runtime.
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  base: "/gui/",
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  build: {
    outDir: fileURLToPath(new URL("../build/gui", import.meta.url)),
    emptyOutDir: true,
    modulePreload: { polyfill: false },
    reportCompressedSize: true,
  },
});
