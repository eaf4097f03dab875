// Traffic capture for a pod: iptables rules in the pod's network namespace that send the app's
// outbound TCP connections to the sidecar's outbound listener and connections from outside the
// pod to its inbound listener, as Istio's istio-iptables and Kuma's transparent proxy do. The
// injected init container runs `wasmesh dataplane capture`, which calls applyCapture.
//
// The chains, in the nat table (REDIRECT rewrites the destination to the local address: 127.0.0.1
// for a connection made in the pod, the receiving interface's address for one from outside):
//   PREROUTING -p tcp -> WASMESH_INBOUND: excluded inbound ports RETURN, the rest
//                        -> WASMESH_IN_REDIRECT (REDIRECT to the inbound port)
//   OUTPUT -p tcp     -> WASMESH_OUTPUT: the sidecar's own connections (its UID, or GID) RETURN, as
//                        do connections over loopback (to 127.0.0.0/8 or the pod's own address),
//                        excluded ports and CIDRs; the rest -> WASMESH_REDIRECT (REDIRECT to the
//                        outbound port)
// Only the two jumps live in the built-in chains; everything else is in chains of our own, which a
// run declares again (iptables-restore --noflush flushes a declared chain), so running it twice
// leaves one set of rules.
import { execFile } from "node:child_process";
import { isIP } from "node:net";

export type IpFamily = 4 | 6;

export interface CaptureOptions {
  /** The sidecar's outbound listener: where the app's outbound connections go. */
  outboundPort: number;
  /** The sidecar's inbound listener: where connections from outside the pod go. */
  inboundPort: number;
  /** The UID the sidecar (the agent and Envoy) runs as: its connections are never captured. */
  proxyUid: number;
  /** Also exempt this GID's connections (as Istio's -g), e.g. a second process of the sidecar. */
  proxyGid?: number | undefined;
  /** Destination ports of outbound connections left alone (the control plane's, a database's). */
  excludeOutboundPorts?: readonly number[] | undefined;
  /** Destination CIDRs of outbound connections left alone; each applies to its own family. */
  excludeOutboundCidrs?: readonly string[] | undefined;
  /** Pod ports that connections from outside reach directly (probes on the agent's ready port, ssh). */
  excludeInboundPorts?: readonly number[] | undefined;
}

/** Our chains; the built-in chains get one jump each, into the first two. */
export const CHAINS = {
  inbound: "WASMESH_INBOUND",
  output: "WASMESH_OUTPUT",
  inRedirect: "WASMESH_IN_REDIRECT",
  redirect: "WASMESH_REDIRECT",
} as const;

const JUMPS = [`-A PREROUTING -p tcp -j ${CHAINS.inbound}`, `-A OUTPUT -p tcp -j ${CHAINS.output}`];

/** Bad options (the message names each by its `wasmesh dataplane capture` flag), or iptables failed. */
export class CaptureError extends Error {
  override name = "CaptureError";
}

/** The options checked; every problem is reported, each naming its option. */
export function checkCaptureOptions(options: CaptureOptions): void {
  const errors: string[] = [];
  const port = (name: string, value: number) => {
    if (!Number.isInteger(value) || value < 1 || value > 65_535) {
      errors.push(`${name}: expected a port number 1-65535, got ${value}`);
    }
  };
  const id = (name: string, value: number) => {
    if (!Number.isInteger(value) || value < 0 || value > 0xffff_fffe) {
      errors.push(`${name}: expected a numeric id, got ${value}`);
    }
  };
  port("--outbound-port", options.outboundPort);
  port("--inbound-port", options.inboundPort);
  if (options.outboundPort === options.inboundPort) {
    errors.push(`--outbound-port and --inbound-port are both ${options.inboundPort}; they must differ`);
  }
  id("--proxy-uid", options.proxyUid);
  // Root's connections would all be exempt: an app running as root would never be captured.
  if (options.proxyUid === 0)
    errors.push("--proxy-uid: must not be 0 (root): run the sidecar as a user of its own");
  if (options.proxyGid !== undefined) {
    id("--proxy-gid", options.proxyGid);
    if (options.proxyGid === 0) errors.push("--proxy-gid: must not be 0 (root's group)");
  }
  for (const p of options.excludeOutboundPorts ?? []) port("--exclude-outbound-ports", p);
  for (const p of options.excludeInboundPorts ?? []) port("--exclude-inbound-ports", p);
  for (const cidr of options.excludeOutboundCidrs ?? []) {
    if (cidrFamily(cidr) === undefined) {
      errors.push(`--exclude-outbound-cidrs: expected an address/prefix such as 10.0.0.0/8, got '${cidr}'`);
    }
  }
  if (errors.length > 0) throw new CaptureError(errors.join("; "));
}

/** 4 or 6 for `address/prefix` (or a bare address), undefined when it is neither. */
function cidrFamily(cidr: string): IpFamily | undefined {
  const [address = "", prefix, extra] = cidr.split("/");
  if (extra !== undefined) return undefined;
  const family = isIP(address);
  if (family !== 4 && family !== 6) return undefined;
  if (prefix !== undefined) {
    const bits = Number(prefix);
    if (!/^\d{1,3}$/.test(prefix) || bits > (family === 4 ? 32 : 128)) return undefined;
  }
  return family;
}

/** `-m multiport` takes at most 15 ports. */
function portRules(chain: string, ports: readonly number[], target: string): string[] {
  const unique = [...new Set(ports)];
  const rules: string[] = [];
  for (let i = 0; i < unique.length; i += 15) {
    const group = unique.slice(i, i + 15);
    rules.push(
      group.length === 1
        ? `-A ${chain} -p tcp -m tcp --dport ${group[0]} -j ${target}`
        : `-A ${chain} -p tcp -m multiport --dports ${group.join(",")} -j ${target}`,
    );
  }
  return rules;
}

/**
 * The rules of one family as iptables-restore input for the nat table (what `--dry-run` prints).
 * Loaded with --noflush: the declarations flush our chains, the jumps are appended (applyCapture
 * first deletes the ones a previous run left).
 */
export function captureRules(options: CaptureOptions, family: IpFamily = 4): string[] {
  checkCaptureOptions(options);
  const { inbound, output, inRedirect, redirect } = CHAINS;
  const cidrs = (options.excludeOutboundCidrs ?? []).filter((cidr) => cidrFamily(cidr) === family);
  return [
    "*nat",
    ...Object.values(CHAINS).map((chain) => `:${chain} - [0:0]`),
    `-A ${redirect} -p tcp -j REDIRECT --to-ports ${options.outboundPort}`,
    `-A ${inRedirect} -p tcp -j REDIRECT --to-ports ${options.inboundPort}`,
    // Already the inbound listener (other sidecars call it directly): no rewrite needed.
    ...portRules(inbound, [options.inboundPort, ...(options.excludeInboundPorts ?? [])], "RETURN"),
    `-A ${inbound} -p tcp -j ${inRedirect}`,
    // The sidecar's own connections (Envoy to upstreams and to the app, the agent to the control
    // plane) leave as they are: captured, they would loop back into Envoy.
    `-A ${output} -m owner --uid-owner ${options.proxyUid} -j RETURN`,
    ...(options.proxyGid !== undefined
      ? [`-A ${output} -m owner --gid-owner ${options.proxyGid} -j RETURN`]
      : []),
    // Loopback stays in the pod: the app calling itself, localhost services, or the outbound
    // listener named explicitly.
    `-A ${output} -o lo -j RETURN`,
    ...portRules(output, options.excludeOutboundPorts ?? [], "RETURN"),
    ...cidrs.map((cidr) => `-A ${output} -d ${cidr} -j RETURN`),
    `-A ${output} -p tcp -j ${redirect}`,
    ...JUMPS,
    "COMMIT",
  ];
}

/** The lines of `iptables-save -t nat` output that jump from a built-in chain into ours. */
function ourJumps(saved: string): string[] {
  const ours = new Set<string>(Object.values(CHAINS));
  return saved.split("\n").filter((line) => {
    const match = /^-A (PREROUTING|INPUT|OUTPUT|POSTROUTING) .*-j (\S+)\s*$/.exec(line);
    return match !== null && ours.has(match[2] as string);
  });
}

/** Our chains that `iptables-save -t nat` output declares. */
function ourChains(saved: string): string[] {
  return Object.values(CHAINS).filter((chain) =>
    saved.split("\n").some((line) => line.startsWith(`:${chain} `)),
  );
}

/**
 * The iptables-restore --noflush input that installs `rules` over the current nat table
 * (`saved`, from iptables-save -t nat): the jumps an earlier run left are deleted first, in the
 * same transaction, so the table never has two sets nor a moment with none.
 */
export function installInput(rules: readonly string[], saved: string): string {
  const deletes = ourJumps(saved).map((line) => `-D${line.slice(2)}`);
  const [table, ...rest] = rules;
  return `${[table, ...deletes, ...rest].join("\n")}\n`;
}

/** The input that removes our jumps and chains; undefined when there is nothing of ours. */
export function removalInput(saved: string): string | undefined {
  const jumps = ourJumps(saved);
  const chains = ourChains(saved);
  if (jumps.length === 0 && chains.length === 0) return undefined;
  return `${[
    "*nat",
    ...jumps.map((line) => `-D${line.slice(2)}`),
    // Flush all before deleting any: our chains jump into each other.
    ...chains.map((chain) => `-F ${chain}`),
    ...chains.map((chain) => `-X ${chain}`),
    "COMMIT",
  ].join("\n")}\n`;
}

/** Runs iptables-save and iptables-restore (their ip6tables twins for IPv6). */
export type Runner = (command: string, args: readonly string[], input?: string) => Promise<string>;

const execRunner: Runner = (command, args, input) =>
  new Promise((resolve, reject) => {
    const child = execFile(command, [...args], { encoding: "utf8" }, (error, stdout, stderr) => {
      if (!error) return resolve(stdout);
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "ENOENT") {
        return reject(
          new CaptureError(`${command} is not on PATH: the image needs iptables (iptables-restore)`),
        );
      }
      reject(new CaptureError(`${command} ${args.join(" ")} failed: ${stderr.trim() || error.message}`));
    });
    // A tool that exits before reading its input (iptables-save, or a refusal) would make the
    // write fail with EPIPE; its exit status and stderr say what happened.
    child.stdin?.on("error", () => {});
    child.stdin?.end(input);
  });

const tools = (family: IpFamily) => (family === 4 ? "iptables" : "ip6tables");

/** The rules per family, installed: a run over an earlier one replaces it. */
export async function applyCapture(
  options: CaptureOptions,
  families: readonly IpFamily[] = [4],
  run: Runner = execRunner,
): Promise<void> {
  for (const family of families) {
    const rules = captureRules(options, family);
    const saved = await run(`${tools(family)}-save`, ["-t", "nat"]);
    // --wait: the legacy backend's xtables lock, if something else holds it (nft ignores it).
    await run(`${tools(family)}-restore`, ["--noflush", "--wait"], installInput(rules, saved));
  }
}

/** Our rules removed, per family; the rest of the table untouched. */
export async function removeCapture(
  families: readonly IpFamily[] = [4],
  run: Runner = execRunner,
): Promise<void> {
  for (const family of families) {
    const input = removalInput(await run(`${tools(family)}-save`, ["-t", "nat"]));
    if (input !== undefined) await run(`${tools(family)}-restore`, ["--noflush", "--wait"], input);
  }
}
