// The functions a module imports from the host under "env" (WASI is in wasi.ts). Each mirrors
// proxy-wasm-cpp-host's src/exports.cc and Envoy's Context: argument checks, then memory reads
// (InvalidMemoryAccess), then the operation.
import {
  BufferType,
  LogLevel,
  MAX_BUFFER_TYPE,
  MAX_MAP_TYPE,
  MetricType,
  Status,
  StreamType,
} from "./abi.ts";
import { decodePairs, encodePairs, HeaderMap, type HeaderPair } from "./headers.ts";
import type { AbiVm } from "./interfaces.ts";
import { type HostFunction, u32 } from "./memory.ts";
import { splitPath } from "./properties.ts";
import type { ForeignFunction } from "./types.ts";
import { WASI_ENOSYS, WASI_FUNCTIONS, WASI_MODULES, wasiFunctions } from "./wasi.ts";

/** Proxy-Wasm imports this host implements (0.2.1, plus 0.1.0 names that are trivial). */
const PROXY_FUNCTIONS = [
  "proxy_log",
  "proxy_get_log_level",
  "proxy_get_current_time_nanoseconds",
  "proxy_set_tick_period_milliseconds",
  "proxy_get_buffer_bytes",
  "proxy_set_buffer_bytes",
  "proxy_get_buffer_status",
  "proxy_get_header_map_pairs",
  "proxy_set_header_map_pairs",
  "proxy_get_header_map_value",
  "proxy_replace_header_map_value",
  "proxy_remove_header_map_value",
  "proxy_add_header_map_value",
  "proxy_get_header_map_size",
  "proxy_get_property",
  "proxy_set_property",
  "proxy_get_shared_data",
  "proxy_set_shared_data",
  "proxy_register_shared_queue",
  "proxy_resolve_shared_queue",
  "proxy_dequeue_shared_queue",
  "proxy_enqueue_shared_queue",
  "proxy_continue_stream",
  "proxy_close_stream",
  "proxy_continue_request",
  "proxy_continue_response",
  "proxy_send_local_response",
  "proxy_clear_route_cache",
  "proxy_http_call",
  "proxy_set_effective_context",
  "proxy_done",
  "proxy_call_foreign_function",
  "proxy_define_metric",
  "proxy_get_metric",
  "proxy_record_metric",
  "proxy_increment_metric",
  "proxy_get_status",
  "proxy_get_configuration",
] as const;

/** Sorts a module's imports into provided, stubbed (unknown proxy_* and WASI) and refused. */
export function checkImports(imports: WebAssembly.ModuleImportDescriptor[]): {
  errors: string[];
  stubbed: string[];
} {
  const errors: string[] = [];
  const stubbed: string[] = [];
  const proxy = new Set<string>(PROXY_FUNCTIONS);
  for (const { module, name, kind } of imports) {
    const label = `${module}.${name}`;
    if (kind !== "function") {
      errors.push(`import ${label} (${kind}): a Proxy-Wasm host only provides functions`);
    } else if (module === "env" && proxy.has(name)) {
      // provided
    } else if (module === "env" && name.startsWith("proxy_")) {
      stubbed.push(label);
    } else if (WASI_MODULES.includes(module) && !(WASI_FUNCTIONS as readonly string[]).includes(name)) {
      stubbed.push(label);
    } else if (module === "env") {
      errors.push(
        `import ${label} is not provided by Proxy-Wasm hosts (Envoy refuses it too)` +
          (name === "abort" ? "; AssemblyScript: route abort with --use abort=<your function>" : "") +
          (name === "seed" ? "; AssemblyScript: Math.random imports env.seed, do not use it" : ""),
      );
    } else if (WASI_MODULES.includes(module)) {
      // provided
    } else {
      errors.push(`import ${label} is not provided by this Proxy-Wasm host`);
    }
  }
  return { errors, stubbed };
}

export function buildImports(vm: AbiVm, imports: WebAssembly.ModuleImportDescriptor[]): WebAssembly.Imports {
  const env: Record<string, HostFunction> = { ...proxyFunctions(vm) };
  const wasi: Record<string, HostFunction> = { ...wasiFunctions(vm) };
  const namespaces: Record<string, Record<string, HostFunction>> = {
    env,
    wasi_snapshot_preview1: { ...wasi },
    wasi_unstable: { ...wasi },
  };
  for (const { module, name, kind } of imports) {
    const namespace = namespaces[module];
    if (!namespace || kind !== "function" || name in namespace) continue;
    // Functions we lack but whose result type is known: Envoy would refuse the module, we let it
    // load and answer "not implemented" (proxy_* return an i32 status, WASI an i32 errno).
    if (module === "env" && name.startsWith("proxy_")) {
      namespace[name] = () => {
        vm.warnStub(`${module}.${name}`);
        return Status.Unimplemented;
      };
    } else if (module !== "env") {
      namespace[name] = () => {
        vm.warnStub(`${module}.${name}`);
        return WASI_ENOSYS;
      };
    }
  }
  return namespaces;
}

const WHITESPACE = /[ \t\f\v\n\r]/g;
const EMPTY = new Uint8Array(0);

function proxyFunctions(vm: AbiVm): Record<(typeof PROXY_FUNCTIONS)[number], HostFunction> {
  const ctx = () => vm.contextOrEffective();
  const mem = () => vm.memory;
  const readString = (ptr: number, size: number) => mem().readString(u32(ptr), u32(size));
  const read = (ptr: number, size: number) => mem().read(u32(ptr), u32(size));
  const giveBytes = (data: Uint8Array, ptrPtr: number, sizePtr: number): Status =>
    mem().returnBytes(data, u32(ptrPtr), u32(sizePtr)) ? Status.Ok : Status.InvalidMemoryAccess;
  const giveString = (text: string, ptrPtr: number, sizePtr: number): Status =>
    mem().returnString(text, u32(ptrPtr), u32(sizePtr)) ? Status.Ok : Status.InvalidMemoryAccess;
  const writeU32 = (ptr: number, value: number): Status =>
    mem().writeU32(u32(ptr), value) ? Status.Ok : Status.InvalidMemoryAccess;
  const writeU64 = (ptr: number, value: bigint): Status =>
    mem().writeU64(u32(ptr), value) ? Status.Ok : Status.InvalidMemoryAccess;
  const badMap = (type: number) => u32(type) > MAX_MAP_TYPE;
  const badBuffer = (type: number) => u32(type) > MAX_BUFFER_TYPE;
  const badStream = (type: number) => u32(type) > StreamType.Upstream;

  return {
    proxy_log(level: number, ptr: number, size: number) {
      const message = readString(ptr, size);
      if (message === undefined) return Status.InvalidMemoryAccess;
      if (u32(level) > LogLevel.Critical) return Status.BadArgument;
      vm.log(u32(level) as LogLevel, message, "module", ctx());
      return Status.Ok;
    },

    proxy_get_log_level(retPtr: number) {
      return writeU32(retPtr, vm.logLevel);
    },

    proxy_get_current_time_nanoseconds(retPtr: number) {
      return writeU64(retPtr, vm.clock.now());
    },

    // Envoy sets the timer of the root context, whichever context calls.
    proxy_set_tick_period_milliseconds(period: number) {
      ctx().root?.setTickPeriod(u32(period));
      return Status.Ok;
    },

    proxy_get_buffer_bytes(type: number, start: number, maxSize: number, ptrPtr: number, sizePtr: number) {
      if (badBuffer(type)) return Status.BadArgument;
      const buffer = ctx().buffer(u32(type));
      if (!buffer) return Status.NotFound;
      const bytes = buffer.bytes();
      const from = u32(start);
      // Envoy never over-reads: the range is clipped to the buffer (and may be empty).
      const length = from > bytes.byteLength ? 0 : Math.min(u32(maxSize), bytes.byteLength - from);
      return giveBytes(bytes.subarray(from, from + length), ptrPtr, sizePtr);
    },

    proxy_set_buffer_bytes(type: number, start: number, size: number, dataPtr: number, dataSize: number) {
      if (badBuffer(type)) return Status.BadArgument;
      const buffer = ctx().buffer(u32(type));
      if (!buffer) return Status.NotFound;
      const data = read(dataPtr, dataSize);
      if (!data) return Status.InvalidMemoryAccess;
      return buffer.set(u32(start), u32(size), data);
    },

    proxy_get_buffer_status(type: number, lengthPtr: number, flagsPtr: number) {
      if (badBuffer(type)) return Status.BadArgument;
      const buffer = ctx().buffer(u32(type));
      if (!buffer) return Status.NotFound;
      const status = writeU32(lengthPtr, buffer.bytes().byteLength);
      return status === Status.Ok ? writeU32(flagsPtr, 0) : status;
    },

    // An absent map reads as empty (Envoy's headerMapToPairs(nullptr)); empty data is a null pointer.
    proxy_get_header_map_pairs(type: number, ptrPtr: number, sizePtr: number) {
      if (badMap(type)) return Status.BadArgument;
      const pairs = ctx().constMap(u32(type))?.pairs() ?? [];
      return giveBytes(pairs.length === 0 ? EMPTY : encodePairs(pairs), ptrPtr, sizePtr);
    },

    proxy_set_header_map_pairs(type: number, ptr: number, size: number) {
      if (badMap(type)) return Status.BadArgument;
      const data = read(ptr, size);
      if (!data) return Status.InvalidMemoryAccess;
      // Envoy's toPairs turns malformed data into no pairs, which empties the map.
      const pairs: HeaderPair[] = decodePairs(data) ?? [];
      const map = ctx().mutableMap(u32(type));
      if (!map) return Status.BadArgument;
      map.setAll(pairs);
      return Status.Ok;
    },

    proxy_get_header_map_value(
      type: number,
      keyPtr: number,
      keySize: number,
      ptrPtr: number,
      sizePtr: number,
    ) {
      if (badMap(type)) return Status.BadArgument;
      const key = readString(keyPtr, keySize);
      if (key === undefined) return Status.InvalidMemoryAccess;
      const context = ctx();
      const legacy = vm.abiVersion === "0.1.0"; // 0.1.0 answered Ok with an empty value
      const map = context.constMap(u32(type));
      if (!map) {
        if (!context.accessLogPhase) return Status.BadArgument;
        if (!legacy) return Status.NotFound;
      }
      const value = map?.get(key);
      if (value === undefined && !legacy) return Status.NotFound;
      return giveString(value ?? "", ptrPtr, sizePtr);
    },

    proxy_replace_header_map_value(
      type: number,
      keyPtr: number,
      keySize: number,
      valuePtr: number,
      valueSize: number,
    ) {
      if (badMap(type)) return Status.BadArgument;
      const key = readString(keyPtr, keySize);
      const value = readString(valuePtr, valueSize);
      if (key === undefined || value === undefined) return Status.InvalidMemoryAccess;
      const map = ctx().mutableMap(u32(type));
      if (!map) return Status.BadArgument;
      map.replace(key, value);
      return Status.Ok;
    },

    proxy_remove_header_map_value(type: number, keyPtr: number, keySize: number) {
      if (badMap(type)) return Status.BadArgument;
      const key = readString(keyPtr, keySize);
      if (key === undefined) return Status.InvalidMemoryAccess;
      const map = ctx().mutableMap(u32(type));
      if (!map) return Status.BadArgument;
      map.remove(key);
      return Status.Ok;
    },

    proxy_add_header_map_value(
      type: number,
      keyPtr: number,
      keySize: number,
      valuePtr: number,
      valueSize: number,
    ) {
      if (badMap(type)) return Status.BadArgument;
      const key = readString(keyPtr, keySize);
      const value = readString(valuePtr, valueSize);
      if (key === undefined || value === undefined) return Status.InvalidMemoryAccess;
      const map = ctx().mutableMap(u32(type));
      if (!map) return Status.BadArgument;
      map.add(key, value);
      return Status.Ok;
    },

    // Envoy answers the map's byte size (names plus values), from the writable map only.
    proxy_get_header_map_size(type: number, retPtr: number) {
      if (badMap(type)) return Status.BadArgument;
      const map = ctx().mutableMap(u32(type));
      if (!map) return Status.BadArgument;
      return writeU32(retPtr, map.byteSize());
    },

    proxy_get_property(pathPtr: number, pathSize: number, ptrPtr: number, sizePtr: number) {
      const path = readString(pathPtr, pathSize);
      if (path === undefined) return Status.InvalidMemoryAccess;
      const trimmed = path.endsWith("\0") ? path.slice(0, -1) : path;
      if (trimmed === "") return Status.NotFound;
      const value = ctx().property(splitPath(trimmed));
      if (!value) return Status.NotFound;
      return giveBytes(value, ptrPtr, sizePtr);
    },

    proxy_set_property(pathPtr: number, pathSize: number, valuePtr: number, valueSize: number) {
      const path = readString(pathPtr, pathSize);
      const value = read(valuePtr, valueSize);
      if (path === undefined || !value) return Status.InvalidMemoryAccess;
      return ctx().setProperty(path, value);
    },

    proxy_get_shared_data(keyPtr: number, keySize: number, ptrPtr: number, sizePtr: number, casPtr: number) {
      const key = readString(keyPtr, keySize);
      if (key === undefined) return Status.InvalidMemoryAccess;
      const entry = vm.sharedData.get(key, vm.vmId);
      if (!entry) return Status.NotFound;
      const status = giveBytes(entry.value, ptrPtr, sizePtr);
      return status === Status.Ok ? writeU32(casPtr, entry.cas) : status;
    },

    proxy_set_shared_data(keyPtr: number, keySize: number, valuePtr: number, valueSize: number, cas: number) {
      const key = readString(keyPtr, keySize);
      const value = read(valuePtr, valueSize);
      if (key === undefined || !value) return Status.InvalidMemoryAccess;
      return vm.sharedData.set(key, value, u32(cas), vm.vmId);
    },

    // Queues belong to the root context: on_queue_ready is delivered there.
    proxy_register_shared_queue(namePtr: number, nameSize: number, tokenPtr: number) {
      const name = readString(namePtr, nameSize);
      if (name === undefined) return Status.InvalidMemoryAccess;
      const context = ctx();
      const owner = context.root?.id ?? context.id;
      return writeU32(tokenPtr, vm.sharedData.registerQueue(vm.vmId, name, vm, owner));
    },

    proxy_resolve_shared_queue(
      vmIdPtr: number,
      vmIdSize: number,
      namePtr: number,
      nameSize: number,
      tokenPtr: number,
    ) {
      const vmId = readString(vmIdPtr, vmIdSize);
      const name = readString(namePtr, nameSize);
      if (vmId === undefined || name === undefined) return Status.InvalidMemoryAccess;
      const token = vm.sharedData.resolveQueue(vmId === "" ? vm.vmId : vmId, name);
      if (token === 0) return Status.NotFound;
      return writeU32(tokenPtr, token);
    },

    proxy_dequeue_shared_queue(token: number, ptrPtr: number, sizePtr: number) {
      const { status, value } = vm.sharedData.dequeue(u32(token));
      if (status !== Status.Ok || !value) return status;
      return giveBytes(value, ptrPtr, sizePtr);
    },

    proxy_enqueue_shared_queue(token: number, ptr: number, size: number) {
      const value = read(ptr, size);
      if (!value) return Status.InvalidMemoryAccess;
      return vm.sharedData.enqueue(u32(token), value);
    },

    proxy_continue_stream(type: number) {
      if (badStream(type)) return Status.BadArgument;
      return ctx().continueStream(u32(type));
    },

    proxy_close_stream(type: number) {
      if (badStream(type)) return Status.BadArgument;
      return ctx().closeStream(u32(type));
    },

    proxy_continue_request() {
      return ctx().continueStream(StreamType.Request);
    },

    proxy_continue_response() {
      return ctx().continueStream(StreamType.Response);
    },

    proxy_send_local_response(
      statusCode: number,
      detailsPtr: number,
      detailsSize: number,
      bodyPtr: number,
      bodySize: number,
      headersPtr: number,
      headersSize: number,
      grpcStatus: number,
    ) {
      const details = readString(detailsPtr, detailsSize);
      const body = read(bodyPtr, bodySize);
      const headerData = read(headersPtr, headersSize);
      if (details === undefined || !body || !headerData) return Status.InvalidMemoryAccess;
      const grpc = grpcStatus | 0; // SDKs pass -1 for "no gRPC status"
      ctx().sendLocalResponse({
        status: u32(statusCode),
        details: details.replace(WHITESPACE, "_"),
        body,
        headers: headerData.byteLength === 0 ? [] : (decodePairs(headerData) ?? []),
        ...(grpc >= 0 && grpc <= 16 ? { grpcStatus: grpc } : {}),
      });
      vm.stopNextIteration = true;
      return Status.Ok;
    },

    proxy_clear_route_cache() {
      ctx().countForeignCall("clear_route_cache");
      return Status.Ok;
    },

    proxy_http_call(
      upstreamPtr: number,
      upstreamSize: number,
      headersPtr: number,
      headersSize: number,
      bodyPtr: number,
      bodySize: number,
      trailersPtr: number,
      trailersSize: number,
      timeoutMs: number,
      tokenPtr: number,
    ) {
      const root = ctx().root;
      const upstream = readString(upstreamPtr, upstreamSize);
      const headerData = read(headersPtr, headersSize);
      const body = read(bodyPtr, bodySize);
      const trailerData = read(trailersPtr, trailersSize);
      if (upstream === undefined || !headerData || !body || !trailerData) return Status.InvalidMemoryAccess;
      if (!mem().writeU32(u32(tokenPtr), 0)) return Status.InvalidMemoryAccess;
      if (!vm.httpCallHandler) return Status.Unimplemented;
      if (!root) return Status.BadArgument;
      const headers = new HeaderMap(decodePairs(headerData) ?? []);
      // Envoy insists on these three.
      if (!headers.has(":path") || !headers.has(":method") || !headers.has(":authority"))
        return Status.BadArgument;
      const token = root.startHttpCall({
        upstream,
        headers: headers.pairs(),
        body,
        trailers: decodePairs(trailerData) ?? [],
        timeoutMs: u32(timeoutMs),
      });
      return writeU32(tokenPtr, token);
    },

    proxy_set_effective_context(contextId: number) {
      return vm.setEffectiveContext(u32(contextId));
    },

    // Envoy finds the pending plugin by its key, so any context of the plugin may call this.
    proxy_done() {
      return ctx().root?.done() ?? Status.NotFound;
    },

    proxy_call_foreign_function(
      namePtr: number,
      nameSize: number,
      argsPtr: number,
      argsSize: number,
      resultPtrPtr: number,
      resultSizePtr: number,
    ) {
      const name = readString(namePtr, nameSize);
      if (name === undefined) return Status.InvalidMemoryAccess;
      const args = read(argsPtr, argsSize);
      if (!args) return Status.InvalidMemoryAccess;
      const fn: ForeignFunction | undefined = vm.foreignFunctions.get(name);
      if (!fn) return Status.NotFound;
      const context = ctx();
      context.countForeignCall(name);
      let returned: ReturnType<ForeignFunction>;
      try {
        returned = fn(args, { name, contextId: context.id });
      } catch (error) {
        vm.log(LogLevel.Error, `foreign function ${name} threw: ${String(error)}`, "host", context);
        return Status.InternalFailure;
      }
      let status: Status = Status.Ok;
      let data: Uint8Array = EMPTY;
      if (returned instanceof Uint8Array) data = returned;
      else if (returned !== undefined) {
        status = returned.status;
        data = returned.data ?? EMPTY;
      }
      // Envoy writes the result only where the module asked for it (non-null pointers).
      if (u32(resultPtrPtr) !== 0) {
        const address = mem().copyIn(data);
        if (address === undefined || !mem().writeU32(u32(resultPtrPtr), address))
          return Status.InvalidMemoryAccess;
      }
      if (u32(resultSizePtr) !== 0 && !mem().writeU32(u32(resultSizePtr), data.byteLength)) {
        return Status.InvalidMemoryAccess;
      }
      return status;
    },

    proxy_define_metric(type: number, namePtr: number, nameSize: number, idPtr: number) {
      const name = readString(namePtr, nameSize);
      if (name === undefined) return Status.InvalidMemoryAccess;
      if (u32(type) > MetricType.Histogram) return Status.BadArgument;
      return writeU32(idPtr, vm.defineMetric(u32(type) as MetricType, name));
    },

    // Envoy: counters only go up (offset <= 0 is BadArgument), gauges go both ways.
    proxy_increment_metric(id: number, offset: bigint) {
      const type = u32(id) & 3;
      const metric = vm.metric(u32(id));
      if (type !== MetricType.Counter && type !== MetricType.Gauge) return Status.BadArgument;
      if (!metric) return Status.NotFound;
      if (type === MetricType.Counter && offset <= 0n) return Status.BadArgument;
      vm.metrics.add(metric.type, metric.name, offset);
      return Status.Ok;
    },

    // Envoy: a counter adds the value, a gauge takes it, a histogram records it.
    proxy_record_metric(id: number, value: bigint) {
      const metric = vm.metric(u32(id));
      if (!metric) return Status.NotFound;
      const amount = BigInt.asUintN(64, value);
      if (metric.type === MetricType.Counter) vm.metrics.add(metric.type, metric.name, amount);
      else if (metric.type === MetricType.Gauge) vm.metrics.set(metric.type, metric.name, amount);
      else vm.metrics.record(metric.name, amount);
      return Status.Ok;
    },

    proxy_get_metric(id: number, retPtr: number) {
      const type = u32(id) & 3;
      if (type !== MetricType.Counter && type !== MetricType.Gauge) return Status.BadArgument;
      const metric = vm.metric(u32(id));
      if (!metric) return Status.NotFound;
      return writeU64(retPtr, vm.metrics.read(metric.type, metric.name));
    },

    proxy_get_status(codePtr: number, ptrPtr: number, sizePtr: number) {
      const status = ctx().root?.status ?? { code: 0, message: "" };
      const written = writeU32(codePtr, status.code);
      return written === Status.Ok ? giveString(status.message, ptrPtr, sizePtr) : written;
    },

    // 0.1.0: the plugin configuration while configuring, else the VM configuration.
    proxy_get_configuration(ptrPtr: number, sizePtr: number) {
      const context = ctx();
      const buffer =
        context.buffer(BufferType.PluginConfiguration) ?? context.buffer(BufferType.VmConfiguration);
      return giveBytes(buffer?.bytes() ?? EMPTY, ptrPtr, sizePtr);
    },
  };
}
