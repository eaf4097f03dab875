// A Service's virtual IP in front of several replicas, as kube-proxy makes it: each new TCP
// connection goes to the next backend that accepts it. A backend that went away refuses the
// connection and the next one is tried, so clients that reconnect land on a live replica.
import net from "node:net";

export interface TcpBalancer {
  readonly port: number;
  /** Backends new connections may go to, as "host:port". */
  setBackends(backends: readonly string[]): void;
  close(): Promise<void>;
}

export async function startTcpBalancer(
  host: string,
  port: number,
  backends: readonly string[],
): Promise<TcpBalancer> {
  let targets = [...backends];
  let next = 0;
  const sockets = new Set<net.Socket>();
  const connect = (client: net.Socket, attempt: number) => {
    if (targets.length === 0 || attempt >= targets.length) {
      client.destroy();
      return;
    }
    const target = targets[next++ % targets.length] as string;
    const [targetHost, targetPort] = [
      target.slice(0, target.lastIndexOf(":")),
      Number(target.split(":").at(-1)),
    ];
    const upstream = net.connect(targetPort, targetHost);
    sockets.add(upstream);
    upstream.once("connect", () => {
      client.pipe(upstream);
      upstream.pipe(client);
      client.resume();
    });
    upstream.once("error", () => {
      sockets.delete(upstream);
      if (upstream.readyState === "opening" || !upstream.remoteAddress) connect(client, attempt + 1);
      else client.destroy();
    });
    upstream.once("close", () => {
      sockets.delete(upstream);
      client.destroy();
    });
    client.once("close", () => upstream.destroy());
    client.once("error", () => upstream.destroy());
  };
  const server = net.createServer({ pauseOnConnect: true }, (client) => {
    sockets.add(client);
    client.once("close", () => sockets.delete(client));
    connect(client, 0);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    setBackends(list) {
      targets = [...list];
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
