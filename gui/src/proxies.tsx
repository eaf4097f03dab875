// Proxies (each sidecar connected to the xDS server, and any reporter GET /v1/traffic knows that
// is not connected, such as an edge worker): connection, the revision it acknowledged, the module
// digests it runs, and its last rejection with Envoy's text. Edge workers (each poll of GET
// /v1/edge/config): current, behind or silent, the version each serves, its last rejection. Modules: each WasmModule's versions by
// digest, and the plugins and proxies that use each.
import type { EdgeStatus, Mesh, ProxyWasm } from "./api.ts";

const short = (digest: string) => digest.slice(0, 12);
const typeName = (typeUrl: string) => typeUrl.slice(typeUrl.lastIndexOf(".") + 1);
const since = (iso: string) => new Date(iso).toLocaleTimeString();

/**
 * An edge polls every 5 s by default (CONFIG_REFRESH_MS): silent after three intervals without a
 * poll, as the control plane's clock counts them (lastPollAgoMs), not the browser's.
 */
export const EDGE_SILENT_MS = 3 * 5_000;

function edgeState(e: EdgeStatus): { state: "current" | "behind" | "silent"; class: string } {
  if (e.lastPollAgoMs > EDGE_SILENT_MS) return { state: "silent", class: "warn" };
  return e.current ? { state: "current", class: "good" } : { state: "behind", class: "bad" };
}

function EdgesTable({ edges }: { edges: EdgeStatus[] }) {
  return (
    <>
      <h2>Edge workers</h2>
      {edges.length === 0 && <p class="muted">No edge worker has polled in the last 10 minutes.</p>}
      {edges.length > 0 && (
        <table class="edges">
          <thead>
            <tr>
              <th>Name</th>
              <th>State</th>
              <th>Serving</th>
              <th>Last rejection</th>
            </tr>
          </thead>
          <tbody>
            {edges.map((e) => {
              const { state, class: tone } = edgeState(e);
              return (
                <tr data-edge-worker={e.name} data-token={e.tokenId}>
                  <td>
                    {e.name}
                    <div class="muted">token {e.tokenId}</div>
                  </td>
                  <td>
                    <span class={`state ${tone}`}>{state}</span>
                    <div class="muted">
                      last poll {since(e.lastPollAt)} ({e.polls} poll{e.polls === 1 ? "" : "s"})
                    </div>
                  </td>
                  <td class="serving">
                    <code class="version" title={e.servingVersion ?? undefined}>
                      {e.servingVersion === null ? "none" : short(e.servingVersion)}
                    </code>
                    {!e.current && (
                      <div class="muted" title={e.currentVersion}>
                        current {short(e.currentVersion)}
                      </div>
                    )}
                  </td>
                  <td class="rejection">
                    {e.lastRejection ? (
                      <div class="bad">
                        {e.lastRejection.version !== null && `version ${short(e.lastRejection.version)} `}at{" "}
                        {since(e.lastRejection.at)}:<pre>{e.lastRejection.reason}</pre>
                      </div>
                    ) : (
                      <span class="muted">none</span>
                    )}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
    </>
  );
}

export function ProxiesPage({ mesh }: { mesh: Mesh }) {
  const connected = new Set(mesh.proxies.map((p) => p.nodeId));
  const reporting = (mesh.traffic?.proxies ?? []).filter((p) => !connected.has(p.node));
  // A Workload's sidecar is the proxy of its name (the agent's --name): one not connected now.
  const absent = mesh.workloads.filter(
    (w) => !connected.has(w.metadata.name) && !reporting.some((p) => p.node === w.metadata.name),
  );
  return (
    <section>
      <h1>Proxies</h1>
      {mesh.proxies.length + reporting.length + absent.length === 0 && <p class="muted">No proxy.</p>}
      {mesh.proxies.length + reporting.length + absent.length > 0 && (
        <table>
          <thead>
            <tr>
              <th>Node</th>
              <th>Service</th>
              <th>Connection</th>
              <th>Acknowledged</th>
              <th>Modules</th>
              <th>Last rejection</th>
            </tr>
          </thead>
          <tbody>
            {mesh.proxies.map((p) => (
              <tr data-proxy={p.nodeId}>
                <td>
                  {p.nodeId}
                  <div class="muted">
                    {Object.entries(p.labels)
                      .map(([k, v]) => `${k}=${v}`)
                      .join(",")}
                  </div>
                </td>
                <td>
                  <a href={`#/services/${encodeURIComponent(p.service)}`}>{p.service}</a>
                </td>
                <td>
                  <span class="good">connected</span>
                  <div class="muted">
                    {p.protocol} from {p.peer} since {since(p.connectedAt)}
                  </div>
                </td>
                <td class="revision">
                  {p.syncedVersion ? (
                    <span class="synced">revision {p.syncedVersion}</span>
                  ) : (
                    <span class="synced warn">not in sync</span>
                  )}
                  <div class="muted">
                    {Object.entries(p.sent).map(([typeUrl, sent]) => (
                      <div>
                        {typeName(typeUrl)} {p.acked[typeUrl] ?? "none"}
                        {p.acked[typeUrl] !== sent && ` (sent ${sent})`}
                      </div>
                    ))}
                  </div>
                </td>
                <td class="modules">
                  {(mesh.wasm[p.nodeId] ?? []).map((w) => (
                    <div title={w.codeSha256}>
                      {w.module} <code>{short(w.sha256 ?? w.codeSha256)}</code>
                    </div>
                  ))}
                </td>
                <td class="rejection">
                  {p.lastRejection ? (
                    <div class="bad">
                      {typeName(p.lastRejection.typeUrl)} version {p.lastRejection.version} at{" "}
                      {since(p.lastRejection.at)} ({p.nacks} NACK{p.nacks === 1 ? "" : "s"}):
                      <pre>{p.lastRejection.message}</pre>
                    </div>
                  ) : (
                    <span class="muted">none</span>
                  )}
                </td>
              </tr>
            ))}
            {absent.map((w) => (
              <tr data-proxy={w.metadata.name}>
                <td>{w.metadata.name}</td>
                <td>
                  <a href={`#/services/${encodeURIComponent(w.spec.service)}`}>{w.spec.service}</a>
                </td>
                <td>
                  <span class="warn">not connected</span>
                  <div class="muted">
                    Workload {w.spec.address}:{w.spec.port}, no xDS stream of that node
                  </div>
                </td>
                <td />
                <td />
                <td />
              </tr>
            ))}
            {reporting.map((p) => (
              <tr data-proxy={p.node}>
                <td>{p.node}</td>
                <td>{p.service}</td>
                <td>
                  <span class="muted">reports traffic, no xDS stream</span>
                  <div class="muted">last report {since(p.reportedAt)}</div>
                </td>
                <td />
                <td />
                <td />
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <EdgesTable edges={mesh.edges} />
    </section>
  );
}

interface Version {
  digest: string;
  current: boolean;
  proxies: string[];
}

function versionsOf(
  module: string,
  current: string | undefined,
  wasm: Record<string, ProxyWasm[]>,
): Version[] {
  const versions = new Map<string, Version>();
  if (current !== undefined) versions.set(current, { digest: current, current: true, proxies: [] });
  for (const [node, filters] of Object.entries(wasm)) {
    for (const f of filters) {
      if (f.module !== module) continue;
      const digest = f.sha256 ?? f.codeSha256;
      const v = versions.get(digest) ?? { digest, current: false, proxies: [] };
      if (!v.proxies.includes(node)) v.proxies.push(node);
      versions.set(digest, v);
    }
  }
  return [...versions.values()];
}

export function ModulesPage({ mesh }: { mesh: Mesh }) {
  const names = new Set(mesh.modules.map((m) => m.metadata.name));
  // The built-in module (mesh) and any module proxies run that is no WasmModule (any more).
  for (const filters of Object.values(mesh.wasm)) for (const f of filters) names.add(f.module);
  return (
    <section>
      <h1>Modules</h1>
      {names.size === 0 && <p class="muted">No module.</p>}
      {[...names].sort().map((name) => {
        const module = mesh.modules.find((m) => m.metadata.name === name);
        const plugins = mesh.plugins.filter((p) => p.spec.module === name);
        return (
          <div class="card" data-module={name}>
            <h3>
              {name}
              {!module && <span class="muted"> {name === "mesh" ? "(built in)" : "(no WasmModule)"}</span>}
            </h3>
            {module && (
              <p class="muted">
                {module.spec.size} bytes · ABI {module.spec.abiVersion}
                {module.spec.description && ` · ${module.spec.description}`}
              </p>
            )}
            <table>
              <thead>
                <tr>
                  <th>Digest (sha256)</th>
                  <th>Proxies running it</th>
                </tr>
              </thead>
              <tbody>
                {versionsOf(name, module?.spec.sha256, mesh.wasm).map((v) => (
                  <tr data-digest={v.digest}>
                    <td>
                      <code title={v.digest}>{short(v.digest)}</code>{" "}
                      {v.current && <span class="tag">current</span>}
                    </td>
                    <td class="proxies">
                      {v.proxies.length === 0 ? <span class="muted">none</span> : v.proxies.join(", ")}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
            <p>
              Plugins:{" "}
              {plugins.length === 0 ? (
                <span class="muted">none</span>
              ) : (
                plugins.map((p) => (
                  <span class="tag" data-plugin={p.metadata.name}>
                    {p.metadata.name} ({p.spec.direction ?? "inbound"} on {p.spec.services.join(", ")})
                  </span>
                ))
              )}
            </p>
          </div>
        );
      })}
    </section>
  );
}
