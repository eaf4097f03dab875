// A tiny Proxy-Wasm (ABI 0.2.1) module, assembled here byte by byte, that does the one thing the
// mesh's routing model needs from a filter: copy the request header `x-route-to` into
// `x-wasmesh-cluster` and call Envoy's `clear_route_cache` foreign function, so that the
// `cluster_header: x-wasmesh-cluster` route sends the request there. It lets the harness prove
// wasmHttpFilter() and the routing model against real Envoy without depending on build/mesh.wasm.
import { writeFileSync } from "node:fs";
import { join } from "node:path";

export const ROUTE_TO_HEADER = "x-route-to";

const I32 = 0x7f;
const op = {
  end: 0x0b,
  if: 0x04,
  void: 0x40,
  call: 0x10,
  drop: 0x1a,
  localGet: 0x20,
  globalGet: 0x23,
  globalSet: 0x24,
  i32Load: 0x28,
  i32Const: 0x41,
  i32Eqz: 0x45,
  i32Add: 0x6a,
  i32And: 0x71,
} as const;

function uleb(n: number): number[] {
  const out: number[] = [];
  let v = n >>> 0;
  do {
    let byte = v & 0x7f;
    v >>>= 7;
    if (v !== 0) byte |= 0x80;
    out.push(byte);
  } while (v !== 0);
  return out;
}

function sleb(n: number): number[] {
  const out: number[] = [];
  let v = n | 0;
  for (;;) {
    const byte = v & 0x7f;
    v >>= 7;
    const done = (v === 0 && (byte & 0x40) === 0) || (v === -1 && (byte & 0x40) !== 0);
    out.push(done ? byte : byte | 0x80);
    if (done) return out;
  }
}

const bytes = (text: string) => [...Buffer.from(text, "utf8")];
const name = (text: string) => [...uleb(Buffer.byteLength(text)), ...bytes(text)];
const vec = (items: number[][]) => [...uleb(items.length), ...items.flat()];
const section = (id: number, content: number[]) => [id, ...uleb(content.length), ...content];
const i32 = (n: number) => [op.i32Const, ...sleb(n)];
const funcType = (params: number, results: number) => [
  0x60,
  ...vec(Array(params).fill([I32])),
  ...vec(Array(results).fill([I32])),
];

// Linear memory layout (one 64 KiB page is plenty; the heap is reset on every request).
const HEADER_IN = 16; // "x-route-to"
const HEADER_OUT = 32; // "x-wasmesh-cluster"
const FOREIGN = 64; // "clear_route_cache"
const RET_PTR = 128;
const RET_LEN = 132;
const FOREIGN_RET_PTR = 136;
const FOREIGN_RET_LEN = 140;
const HEAP = 1024;

export interface RouteWasmOptions {
  /** Call clear_route_cache after writing the header (default true; false shows why it is needed). */
  clearRouteCache?: boolean;
}

/** The module's bytes. */
export function routeWasmBytes(options: RouteWasmOptions = {}): Uint8Array {
  const clearRouteCache = options.clearRouteCache ?? true;
  const types = [
    funcType(5, 1), // 0: proxy_get_header_map_value, proxy_replace_header_map_value
    funcType(6, 1), // 1: proxy_call_foreign_function
    funcType(0, 0), // 2: proxy_abi_version_0_2_1
    funcType(1, 1), // 3: proxy_on_memory_allocate, proxy_on_done
    funcType(2, 0), // 4: proxy_on_context_create
    funcType(2, 1), // 5: proxy_on_vm_start, proxy_on_configure
    funcType(3, 1), // 6: proxy_on_request_headers
    funcType(1, 0), // 7: proxy_on_delete
  ];
  const imports = [
    [...name("env"), ...name("proxy_get_header_map_value"), 0x00, 0],
    [...name("env"), ...name("proxy_replace_header_map_value"), 0x00, 0],
    [...name("env"), ...name("proxy_call_foreign_function"), 0x00, 1],
  ];
  const [getHeader, replaceHeader, callForeign] = [0, 1, 2];
  // Defined functions, indices from 3 on: [type, body, export name].
  const functions: Array<[number, number[], string]> = [
    [2, [], "proxy_abi_version_0_2_1"],
    [
      3,
      // bump allocator: result = heap; heap = (heap + size + 7) & ~7
      [
        op.globalGet,
        0,
        op.globalGet,
        0,
        op.localGet,
        0,
        op.i32Add,
        ...i32(7),
        op.i32Add,
        ...i32(-8),
        op.i32And,
        op.globalSet,
        0,
      ],
      "proxy_on_memory_allocate",
    ],
    [4, [], "proxy_on_context_create"],
    [5, i32(1), "proxy_on_vm_start"],
    [5, i32(1), "proxy_on_configure"],
    [
      6,
      [
        ...i32(HEAP),
        op.globalSet,
        0,
        // if (proxy_get_header_map_value(REQUEST_HEADERS, "x-route-to", &ptr, &len) == OK)
        ...i32(0),
        ...i32(HEADER_IN),
        ...i32(ROUTE_TO_HEADER.length),
        ...i32(RET_PTR),
        ...i32(RET_LEN),
        op.call,
        getHeader,
        op.i32Eqz,
        op.if,
        op.void,
        // proxy_replace_header_map_value(REQUEST_HEADERS, "x-wasmesh-cluster", ptr, len)
        ...i32(0),
        ...i32(HEADER_OUT),
        ...i32("x-wasmesh-cluster".length),
        ...i32(RET_PTR),
        op.i32Load,
        2,
        0,
        ...i32(RET_LEN),
        op.i32Load,
        2,
        0,
        op.call,
        replaceHeader,
        op.drop,
        // proxy_call_foreign_function("clear_route_cache", "", &ret, &ret_len)
        ...(clearRouteCache
          ? [
              ...i32(FOREIGN),
              ...i32("clear_route_cache".length),
              ...i32(0),
              ...i32(0),
              ...i32(FOREIGN_RET_PTR),
              ...i32(FOREIGN_RET_LEN),
              op.call,
              callForeign,
              op.drop,
            ]
          : []),
        op.end,
        ...i32(0), // Continue
      ],
      "proxy_on_request_headers",
    ],
    [3, i32(1), "proxy_on_done"],
    [7, [], "proxy_on_delete"],
  ];
  const firstDefined = imports.length;
  const dataAt = (offset: number, text: string) => [0x00, ...i32(offset), op.end, ...name(text)];

  const module = [
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, vec(types)),
    ...section(2, vec(imports)),
    ...section(3, vec(functions.map(([type]) => uleb(type)))),
    ...section(5, vec([[0x00, 1]])),
    ...section(6, vec([[I32, 0x01, ...i32(HEAP), op.end]])),
    ...section(
      7,
      vec([
        [...name("memory"), 0x02, 0],
        ...functions.map(([, , exportName], i) => [...name(exportName), 0x00, ...uleb(firstDefined + i)]),
      ]),
    ),
    ...section(
      10,
      vec(
        functions.map(([, body]) => {
          const code = [0x00, ...body, op.end]; // no locals
          return [...uleb(code.length), ...code];
        }),
      ),
    ),
    ...section(
      11,
      vec([
        dataAt(HEADER_IN, ROUTE_TO_HEADER),
        dataAt(HEADER_OUT, "x-wasmesh-cluster"),
        dataAt(FOREIGN, "clear_route_cache"),
      ]),
    ),
  ];
  return Uint8Array.from(module);
}

/** Writes the module to <dir>/route.wasm (route-no-clear.wasm without clear_route_cache) and returns the path. */
export function writeRouteWasm(dir: string, options: RouteWasmOptions = {}): string {
  const path = join(dir, options.clearRouteCache === false ? "route-no-clear.wasm" : "route.wasm");
  writeFileSync(path, routeWasmBytes(options));
  return path;
}
