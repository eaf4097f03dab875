// Metrics: counters, gauges and histograms, defined per VM and kept in the shared stats store.
import { MetricType, Status } from "../abi.ts";
import { u32 } from "../memory.ts";
import { abiArea } from "./calls.ts";

export const metrics = abiArea(
  ["proxy_define_metric", "proxy_increment_metric", "proxy_record_metric", "proxy_get_metric"],
  (vm, abi) => ({
    proxy_define_metric(type: number, namePtr: number, nameSize: number, idPtr: number) {
      const name = abi.string(namePtr, nameSize);
      const metricType = abi.member(type, MetricType.Histogram) as MetricType;
      return abi.returnU32(idPtr, vm.defineMetric(metricType, name));
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
      return abi.returnU64(retPtr, vm.metrics.read(metric.type, metric.name));
    },
  }),
);
