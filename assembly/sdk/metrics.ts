// Metrics defined by the module; Envoy exposes them on /stats (prefixed `wasmcustom.`).
import {
  MetricType,
  proxy_define_metric,
  proxy_get_metric,
  proxy_increment_metric,
  proxy_record_metric,
  WasmResult,
} from "./abi";
import { ptrOf, RETURN_U32, RETURN_U64, utf8 } from "./memory";

function defineMetric(type: MetricType, name: string): u32 {
  const encoded = utf8(name);
  if (proxy_define_metric(type, ptrOf(encoded), encoded.byteLength, RETURN_U32) != WasmResult.Ok) return 0;
  return load<u32>(RETURN_U32);
}

function readMetric(id: u32): u64 {
  if (proxy_get_metric(id, RETURN_U64) != WasmResult.Ok) return 0;
  return load<u64>(RETURN_U64);
}

export class Counter {
  readonly id: u32;
  constructor(public readonly name: string) {
    this.id = defineMetric(MetricType.Counter, name);
  }
  increment(by: i64 = 1): void {
    proxy_increment_metric(this.id, by);
  }
  value(): u64 {
    return readMetric(this.id);
  }
}

export class Gauge {
  readonly id: u32;
  constructor(public readonly name: string) {
    this.id = defineMetric(MetricType.Gauge, name);
  }
  set(value: u64): void {
    proxy_record_metric(this.id, value);
  }
  add(delta: i64): void {
    proxy_increment_metric(this.id, delta);
  }
  value(): u64 {
    return readMetric(this.id);
  }
}

export class Histogram {
  readonly id: u32;
  constructor(public readonly name: string) {
    this.id = defineMetric(MetricType.Histogram, name);
  }
  record(value: u64): void {
    proxy_record_metric(this.id, value);
  }
}
