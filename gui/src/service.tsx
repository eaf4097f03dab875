// A service: its workloads and their sidecars, the routes that target it (each rule's weights as
// bars), its circuit breakers with their state per subset (GET /v1/traffic's circuits), and the
// access rules into and out of it.
import {
  type Destination,
  type Mesh,
  type ProxyStatus,
  type RouteRule,
  sameSubset,
  selects,
  subsetText,
  type Traffic,
} from "./api.ts";

/** Each destination's share of the rule's traffic, in percent (no weights: an equal share). */
function shares(destinations: Destination[]): number[] {
  const weighted = destinations.some((d) => d.weight !== undefined);
  const weights = destinations.map((d) => (weighted ? (d.weight ?? 0) : 1));
  const total = weights.reduce((a, b) => a + b, 0);
  return weights.map((w) => (total === 0 ? 0 : Math.round((w / total) * 1000) / 10));
}

/** One string condition as people read it: `= /a`, `prefix /api`, `present`, `(any case)`. */
function condition(m: Record<string, unknown>): string {
  const anyCase = m.ignoreCase === true ? " (any case)" : "";
  for (const op of ["exact", "prefix", "suffix", "contains", "regex"]) {
    if (typeof m[op] === "string") return `${op === "exact" ? "=" : op} ${m[op] as string}${anyCase}`;
  }
  if (m.present === true) return "present";
  if (m.present === false) return "absent";
  return JSON.stringify(m);
}

/** A rule's match (path, authority, methods, headers, query) as one line. */
function matchText(rule: RouteRule): string {
  if (!rule.match || Object.keys(rule.match).length === 0) return "every request";
  const parts: string[] = [];
  for (const [field, value] of Object.entries(rule.match)) {
    const noun = field === "headers" ? "header" : field === "query" ? "query" : field;
    if (Array.isArray(value)) {
      for (const item of value as unknown[]) {
        if (typeof item === "object" && item !== null && "name" in item) {
          const named = item as Record<string, unknown>;
          parts.push(`${noun} ${String(named.name)} ${condition(named)}`);
        }
      }
      if (value.every((v) => typeof v === "string")) parts.push(`${noun} ${value.join(" | ")}`);
    } else if (typeof value === "object" && value !== null) {
      parts.push(`${noun} ${condition(value as Record<string, unknown>)}`);
    }
  }
  return parts.join("; ");
}

function extras(rule: RouteRule): string[] {
  const out: string[] = [];
  if (rule.sticky)
    out.push(
      `sticky by ${rule.sticky.cookie ? `cookie ${rule.sticky.cookie}` : `header ${rule.sticky.header}`}`,
    );
  if (rule.timeoutMs !== undefined) out.push(`timeout ${rule.timeoutMs} ms`);
  if (rule.retries) out.push(`${rule.retries.attempts} retries`);
  if (rule.fault?.abort) out.push(`abort ${rule.fault.abort.status} to ${rule.fault.abort.percent}%`);
  if (rule.fault?.delay) out.push(`delay ${rule.fault.delay.ms} ms to ${rule.fault.delay.percent}%`);
  return out;
}

function circuitState(traffic: Traffic | null, service: string, subset: Record<string, string> | undefined) {
  if (!traffic) return { text: "no traffic report", cls: "muted", proxies: [] as string[] };
  const circuits = traffic.circuits.filter((c) => c.service === service && sameSubset(c.subset, subset));
  const open = circuits.filter((c) => c.open);
  if (open.length > 0) return { text: "open", cls: "bad", proxies: open.flatMap((c) => c.proxies) };
  return { text: "closed", cls: "good", proxies: [] as string[] };
}

function Sidecar({ proxy }: { proxy: ProxyStatus | undefined }) {
  if (!proxy) return <span class="muted">no sidecar connected</span>;
  return (
    <span>
      <a href="#/proxies">{proxy.nodeId}</a>{" "}
      <span class={proxy.lastRejection ? "bad" : "good"}>
        {proxy.syncedVersion ? `revision ${proxy.syncedVersion}` : "syncing"}
        {proxy.lastRejection && " · rejected a configuration"}
      </span>
    </span>
  );
}

export function ServicePage({ mesh, name }: { mesh: Mesh; name: string }) {
  const service = mesh.services.find((s) => s.metadata.name === name);
  if (!service) return <p class="error">No service '{name}'.</p>;
  const workloads = mesh.workloads.filter((w) => w.spec.service === name);
  const proxies = mesh.proxies.filter((p) => p.service === name);
  const proxyOf = (workload: string) => proxies.find((p) => p.nodeId === workload);
  const unmatched = proxies.filter((p) => !workloads.some((w) => w.metadata.name === p.nodeId));
  const routes = mesh.routes.filter(
    (r) =>
      r.spec.service === name ||
      r.spec.rules.some((rule) => rule.destinations.some((d) => d.service === name)),
  );
  const breakers = mesh.breakers.filter((b) => b.spec.service === name);
  const strayCircuits = (mesh.traffic?.circuits ?? []).filter(
    (c) => c.service === name && !breakers.some((b) => sameSubset(b.spec.subset, c.subset)),
  );
  const rulesIn = mesh.accessRules.filter((r) => r.spec.destination === name);
  const rulesOut = mesh.accessRules.filter((r) => r.spec.source === name || r.spec.source === "*");
  const defaultAccess = mesh.policies[0]?.spec.defaultAccess ?? "allow";
  return (
    <section data-service={name}>
      <h1>{name}</h1>
      <p class="muted">
        {service.spec.ports.map((p) => `${p.name} ${p.port}/${p.protocol}`).join(", ")}
        {service.spec.mtls && ` · mTLS ${service.spec.mtls.mode}`}
        {service.spec.description && ` · ${service.spec.description}`}
      </p>

      <h2>Workloads</h2>
      {workloads.length === 0 && unmatched.length === 0 ? (
        <p class="muted">No workloads.</p>
      ) : (
        <table>
          <thead>
            <tr>
              <th>Workload</th>
              <th>Address</th>
              <th>Labels</th>
              <th>Sidecar</th>
            </tr>
          </thead>
          <tbody>
            {workloads.map((w) => (
              <tr data-workload={w.metadata.name}>
                <td>{w.metadata.name}</td>
                <td>
                  {w.spec.address}:{w.spec.port}
                </td>
                <td>{subsetText(w.spec.labels)}</td>
                <td>
                  <Sidecar proxy={proxyOf(w.metadata.name)} />
                </td>
              </tr>
            ))}
            {unmatched.map((p) => (
              <tr data-workload={p.nodeId}>
                <td class="muted">(no Workload)</td>
                <td>{p.peer}</td>
                <td>{subsetText(p.labels)}</td>
                <td>
                  <Sidecar proxy={p} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}

      <h2>Routes</h2>
      {routes.length === 0 && <p class="muted">No route targets {name}: calls go to all its workloads.</p>}
      {routes.map((route) => (
        <div class="card" data-route={route.metadata.name}>
          <h3>
            Route {route.metadata.name}
            {route.spec.service !== name && <span class="muted"> (on {route.spec.service})</span>}
          </h3>
          {route.spec.rules.map((rule) => {
            const share = shares(rule.destinations);
            return (
              <div class="rule" data-rule={rule.name}>
                <div>
                  <strong>{rule.name}</strong> <span class="muted">{matchText(rule)}</span>
                  {extras(rule).map((e) => (
                    <span class="tag">{e}</span>
                  ))}
                </div>
                {rule.destinations.map((d, i) => {
                  const subset = `${d.service === name ? "" : `${d.service} `}${subsetText(d.subset)}`;
                  const pct = share[i] ?? 0;
                  const ready = mesh.workloads.some(
                    (w) => w.spec.service === d.service && selects(d.subset, w.spec.labels),
                  );
                  return (
                    <div class="dest" data-subset={subset}>
                      <span class="subset">{subset}</span>
                      <span class="bar">
                        <span style={{ width: `${pct}%` }} />
                      </span>
                      <span class="weight">{pct}%</span>
                      {!ready && <span class="warn">no workload</span>}
                    </div>
                  );
                })}
              </div>
            );
          })}
        </div>
      ))}

      <h2>Circuit breakers</h2>
      {breakers.length === 0 && strayCircuits.length === 0 ? (
        <p class="muted">No circuit breaker.</p>
      ) : (
        <table>
          <thead>
            <tr>
              <th>Breaker</th>
              <th>Subset</th>
              <th>Trips after</th>
              <th>State</th>
            </tr>
          </thead>
          <tbody>
            {breakers.map((b) => {
              const state = circuitState(mesh.traffic, name, b.spec.subset);
              return (
                <tr data-breaker={b.metadata.name} data-subset={subsetText(b.spec.subset)}>
                  <td>{b.metadata.name}</td>
                  <td>{subsetText(b.spec.subset)}</td>
                  <td>
                    {b.spec.consecutiveErrors !== undefined && `${b.spec.consecutiveErrors} errors`}
                    {b.spec.maxConcurrent !== undefined && ` · ${b.spec.maxConcurrent} concurrent`}
                    {b.spec.baseEjectionMs !== undefined && ` · ejects ${b.spec.baseEjectionMs} ms`}
                  </td>
                  <td class={`state ${state.cls}`}>
                    {state.text}
                    {state.proxies.length > 0 && <span class="muted"> at {state.proxies.join(", ")}</span>}
                  </td>
                </tr>
              );
            })}
            {strayCircuits.map((c) => (
              <tr data-breaker={c.cluster} data-subset={subsetText(c.subset)}>
                <td class="muted">{c.cluster}</td>
                <td>{subsetText(c.subset)}</td>
                <td />
                <td class={`state ${c.open ? "bad" : "good"}`}>
                  {c.open ? "open" : "closed"}
                  {c.open && <span class="muted"> at {c.proxies.join(", ")}</span>}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}

      <h2>Access</h2>
      <p class="muted">Mesh default: {defaultAccess}.</p>
      <div class="columns">
        <div>
          <h3>In</h3>
          {rulesIn.length === 0 && <p class="muted">No rule.</p>}
          <ul>
            {rulesIn.map((r) => (
              <li data-access={r.metadata.name}>
                <span class={r.spec.action === "deny" ? "bad" : "good"}>{r.spec.action}</span> from{" "}
                {r.spec.source} <span class="muted">({r.metadata.name})</span>
              </li>
            ))}
          </ul>
        </div>
        <div>
          <h3>Out</h3>
          {rulesOut.length === 0 && <p class="muted">No rule.</p>}
          <ul>
            {rulesOut.map((r) => (
              <li data-access={r.metadata.name}>
                <span class={r.spec.action === "deny" ? "bad" : "good"}>{r.spec.action}</span> to{" "}
                {r.spec.destination} <span class="muted">({r.metadata.name})</span>
              </li>
            ))}
          </ul>
        </div>
      </div>
    </section>
  );
}
