// What the agent's two gRPC servers (the xDS proxy for Envoy's ADS, the SDS server) share.
import type * as grpc from "@grpc/grpc-js";

/**
 * Stops a grpc-js server: lets calls still open finish for graceMs (the caller ends its own long
 * streams first), then cuts what is left, so a shutdown never hangs on a stream Envoy keeps open.
 */
export function shutdownGrpcServer(server: grpc.Server, graceMs = 1000): Promise<void> {
  return new Promise<void>((resolve) => {
    const force = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(force);
      resolve();
    });
  });
}
