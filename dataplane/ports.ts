// The ports of a sidecar: the ones the user gave, and free ones for the rest.
import net from "node:net";

/** The ports the agent needs on this host; absent ones are picked. */
export interface PortRequest {
  inbound?: number | undefined;
  outbound?: number | undefined;
  admin?: number | undefined;
  ready?: number | undefined;
}

export type Ports = Required<{ [K in keyof PortRequest]: number }>;

/**
 * The given ports, and a free port for each one not given. The free ones are held open together
 * until all are found, so they differ from each other; and none equals a given port or `avoid`
 * (the app's port). They are bound on every interface, as the inbound listener is.
 */
export async function pickPorts(request: PortRequest, avoid: readonly number[] = []): Promise<Ports> {
  const taken = new Set<number>([
    ...avoid,
    ...Object.values(request).filter((p): p is number => p !== undefined),
  ]);
  const held: net.Server[] = [];
  try {
    const pick = async (given: number | undefined): Promise<number> => {
      if (given !== undefined) return given;
      for (;;) {
        const server = net.createServer();
        held.push(server);
        const port = await new Promise<number>((resolve, reject) => {
          server.once("error", reject);
          server.listen({ port: 0, exclusive: true }, () =>
            resolve((server.address() as net.AddressInfo).port),
          );
        });
        // A port equal to a given one is held too (so it is not offered again) and skipped.
        if (!taken.has(port)) {
          taken.add(port);
          return port;
        }
      }
    };
    return {
      inbound: await pick(request.inbound),
      outbound: await pick(request.outbound),
      admin: await pick(request.admin),
      ready: await pick(request.ready),
    };
  } finally {
    await Promise.all(held.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
  }
}
