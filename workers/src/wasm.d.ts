// wrangler's CompiledWasm rule: importing a .wasm file yields the module compiled at deploy time
// (Workers refuse to compile WebAssembly from bytes at run time).
declare module "*.wasm" {
  const module: WebAssembly.Module;
  export default module;
}
