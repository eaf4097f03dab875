// The mesh at a glance: services as a graph of who calls whom. Edges are the calls the sidecars
// report (GET /v1/traffic: requests and errors per second), and the calls AccessRules name (dashed
// when no traffic has been seen on them; red and marked "denied" for a deny rule).
import type { Mesh } from "./api.ts";

interface Edge {
  source: string;
  destination: string;
  rps: number;
  eps: number;
  observed: boolean;
  denied: boolean;
}

const rate = (n: number) => (n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2));

function edgesOf(mesh: Mesh): Edge[] {
  const edges = new Map<string, Edge>();
  const edge = (source: string, destination: string) => {
    const key = `${source}\u0000${destination}`;
    let e = edges.get(key);
    if (!e) {
      e = { source, destination, rps: 0, eps: 0, observed: false, denied: false };
      edges.set(key, e);
    }
    return e;
  };
  for (const t of mesh.traffic?.edges ?? []) {
    const e = edge(t.source, t.destination);
    e.rps += t.requestsPerSecond;
    e.eps += t.errorsPerSecond;
    e.observed = true;
  }
  for (const rule of mesh.accessRules) {
    const { source, destination, action } = rule.spec;
    if (source === "*") continue;
    const e = edge(source, destination);
    if (action === "deny") e.denied = true;
  }
  return [...edges.values()];
}

/** Columns by call depth: callers left of what they call (cycles cut after as many passes as nodes). */
function layout(nodes: string[], edges: Edge[]): Map<string, { x: number; y: number }> {
  const depth = new Map(nodes.map((n) => [n, 0]));
  for (let pass = 0; pass < nodes.length; pass++) {
    let moved = false;
    for (const e of edges) {
      if (e.source === e.destination) continue;
      const next = (depth.get(e.source) ?? 0) + 1;
      if (next > (depth.get(e.destination) ?? 0) && next < nodes.length) {
        depth.set(e.destination, next);
        moved = true;
      }
    }
    if (!moved) break;
  }
  const columns = new Map<number, string[]>();
  for (const n of nodes) columns.set(depth.get(n) ?? 0, [...(columns.get(depth.get(n) ?? 0) ?? []), n]);
  const at = new Map<string, { x: number; y: number }>();
  for (const [column, names] of columns)
    names.forEach((n, row) => {
      at.set(n, { x: 90 + column * 300, y: 60 + row * 110 });
    });
  return at;
}

export function MeshPage({ mesh }: { mesh: Mesh }) {
  const edges = edgesOf(mesh);
  const names = new Set(mesh.services.map((s) => s.metadata.name));
  for (const e of edges) {
    names.add(e.source);
    names.add(e.destination);
  }
  const nodes = [...names].sort();
  const at = layout(nodes, edges);
  const width = Math.max(...[...at.values()].map((p) => p.x), 0) + 110;
  const height = Math.max(...[...at.values()].map((p) => p.y), 0) + 70;
  const openCircuits = (mesh.traffic?.circuits ?? []).filter((c) => c.open);
  const proxiesOf = (service: string) => mesh.proxies.filter((p) => p.service === service).length;
  return (
    <section>
      <h1>Mesh</h1>
      <p class="muted">
        {mesh.services.length} services · {mesh.workloads.length} workloads · {mesh.proxies.length} proxies
        connected
        {mesh.traffic && ` · traffic over the last ${mesh.traffic.windowSeconds} s`}
        {openCircuits.length > 0 && <span class="bad"> · {openCircuits.length} circuit(s) open</span>}
      </p>
      <svg
        class="graph"
        width={width}
        height={height}
        viewBox={`0 0 ${width} ${height}`}
        role="img"
        aria-label="services and the calls between them"
      >
        <defs>
          <marker
            id="arrow"
            viewBox="0 0 10 10"
            refX="10"
            refY="5"
            markerWidth="7"
            markerHeight="7"
            orient="auto"
          >
            <path d="M0,0 L10,5 L0,10 z" fill="#667" />
          </marker>
        </defs>
        {edges.map((e) => {
          const a = at.get(e.source);
          const b = at.get(e.destination);
          if (!a || !b || e.source === e.destination) return null;
          const dx = b.x - a.x;
          const dy = b.y - a.y;
          const len = Math.hypot(dx, dy) || 1;
          const [x1, y1, x2, y2] = [
            a.x + (dx / len) * 62,
            a.y + (dy / len) * 26,
            b.x - (dx / len) * 62,
            b.y - (dy / len) * 26,
          ];
          const errorShare = e.rps > 0 ? e.eps / e.rps : 0;
          const cls = `edge${e.observed ? "" : " declared"}${errorShare > 0.05 || e.denied ? " failing" : ""}`;
          return (
            <g class={cls} data-edge={`${e.source}->${e.destination}`}>
              <line x1={x1} y1={y1} x2={x2} y2={y2} marker-end="url(#arrow)" />
              {(e.observed || e.denied) && (
                <text x={(x1 + x2) / 2} y={(y1 + y2) / 2 - 6} text-anchor="middle">
                  {e.observed ? `${rate(e.rps)} req/s · ${rate(e.eps)} err/s` : ""}
                  {e.denied ? `${e.observed ? " · " : ""}denied` : ""}
                </text>
              )}
            </g>
          );
        })}
        {nodes.map((n) => {
          const p = at.get(n);
          if (!p) return null;
          const known = mesh.services.some((s) => s.metadata.name === n);
          return (
            <a href={known ? `#/services/${encodeURIComponent(n)}` : undefined} data-node={n}>
              <rect
                class={known ? "node" : "node unknown"}
                x={p.x - 62}
                y={p.y - 26}
                width={124}
                height={52}
                rx={8}
              />
              <text x={p.x} y={p.y - 3} text-anchor="middle" class="node-name">
                {n}
              </text>
              <text x={p.x} y={p.y + 15} text-anchor="middle" class="node-sub">
                {proxiesOf(n)} proxies
              </text>
            </a>
          );
        })}
      </svg>
      {mesh.traffic && mesh.traffic.denials.length > 0 && (
        <>
          <h2>Denied calls</h2>
          <table>
            <thead>
              <tr>
                <th>Source</th>
                <th>Rule</th>
                <th>Count</th>
              </tr>
            </thead>
            <tbody>
              {mesh.traffic.denials.map((d) => (
                <tr>
                  <td>{d.source}</td>
                  <td>{d.rule}</td>
                  <td>{d.count}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </section>
  );
}
