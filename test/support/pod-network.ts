// A pod network for tests that play the kubelet (issue 12's proof): each pod is a network namespace
// of its own, its veth on one bridge in the host's namespace, so that pods reach each other at their
// own IPs and the host (where the control plane runs) at the bridge's, as on a node with a bridge
// CNI. Needs root and iproute2; everything made here is named with a tag and removed by destroy().
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";

export const canMakePods = (): string | undefined => {
  if (process.getuid?.() !== 0) return "making network namespaces needs root";
  if (spawnSync("ip", ["netns", "list"]).status !== 0) return "`ip netns` is not available (iproute2)";
  return undefined;
};

function ip(...args: string[]): void {
  const result = spawnSync("ip", args, { encoding: "utf8" });
  if (result.status !== 0) throw new Error(`ip ${args.join(" ")}: ${result.stderr.trim()}`);
}

export interface PodNetwork {
  /** The host's address on the bridge: where pods reach the control plane. */
  readonly hostIp: string;
  /** A new pod: its namespace's name and its IP. */
  addPod(name: string): { netns: string; ip: string };
  /**
   * Names the pod's processes resolve (cluster DNS's part): `ip netns exec` mounts
   * /etc/netns/<netns>/hosts over /etc/hosts for the processes it starts.
   */
  setHosts(netns: string, hosts: Record<string, readonly string[]>): void;
  /** argv that runs `argv` inside the pod's namespace, as `uid` (root when 0). */
  exec(netns: string, uid: number, argv: readonly string[]): string[];
  destroy(): void;
}

/**
 * A bridge `wmbr<tag>` on 10.<octet>.0.1/24 and pods at .2, .3, …; `octet` keeps networks of tests
 * that run at once apart.
 */
export function createPodNetwork(tag: string, octet: number): PodNetwork {
  const bridge = `wmbr${tag}`.slice(0, 15);
  const prefix = `10.${octet}.0`;
  const hostIp = `${prefix}.1`;
  const namespaces: string[] = [];
  spawnSync("ip", ["link", "del", bridge]);
  ip("link", "add", bridge, "type", "bridge");
  ip("addr", "add", `${hostIp}/24`, "dev", bridge);
  ip("link", "set", bridge, "up");
  let next = 2;
  return {
    hostIp,
    addPod(name) {
      const index = next++;
      const netns = `wm${tag}-${name}`.slice(0, 30);
      const hostEnd = `wm${tag}h${index}`.slice(0, 15);
      spawnSync("ip", ["netns", "del", netns]);
      ip("netns", "add", netns);
      namespaces.push(netns);
      ip("link", "add", hostEnd, "type", "veth", "peer", "name", "eth0", "netns", netns);
      ip("link", "set", hostEnd, "master", bridge);
      ip("link", "set", hostEnd, "up");
      const podIp = `${prefix}.${index}`;
      ip("-n", netns, "addr", "add", `${podIp}/24`, "dev", "eth0");
      ip("-n", netns, "link", "set", "eth0", "up");
      ip("-n", netns, "link", "set", "lo", "up");
      ip("-n", netns, "route", "add", "default", "via", hostIp);
      return { netns, ip: podIp };
    },
    setHosts(netns, hosts) {
      const dir = `/etc/netns/${netns}`;
      mkdirSync(dir, { recursive: true });
      const lines = [
        "127.0.0.1 localhost",
        ...Object.entries(hosts).map(([ip, names]) => `${ip} ${names.join(" ")}`),
      ];
      writeFileSync(`${dir}/hosts`, `${lines.join("\n")}\n`, { mode: 0o644 });
    },
    exec(netns, uid, argv) {
      const as = uid === 0 ? [] : ["setpriv", `--reuid=${uid}`, `--regid=${uid}`, "--clear-groups"];
      return ["netns", "exec", netns, ...as, ...argv];
    },
    destroy() {
      for (const netns of namespaces) {
        spawnSync("ip", ["netns", "del", netns]);
        rmSync(`/etc/netns/${netns}`, { recursive: true, force: true });
      }
      spawnSync("ip", ["link", "del", bridge]);
    },
  };
}

/** Runs `argv` in the pod's namespace and resolves with its exit code and output. */
export function runIn(
  network: PodNetwork,
  netns: string,
  uid: number,
  argv: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn("ip", network.exec(netns, uid, argv), { env, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => {
      output += chunk;
    });
    child.stderr.on("data", (chunk: Buffer) => {
      output += chunk;
    });
    child.on("exit", (code) => resolve({ code, output }));
  });
}
