// wasmesh's AssemblyScript SDK for Proxy-Wasm ABI v0.2.1.
export * from "./abi";
export * from "./context";
export * from "./headers";
export * from "./host";
export * from "./metrics";
export * from "./shared";
