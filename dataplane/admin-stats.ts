// Envoy's admin `/stats?format=json` read as numbers by stat name: what the agent reads of its
// Envoy in three places (open connections while it drains, traffic reports, the metrics endpoint).
// Histograms and text readouts carry no numeric `value` and are left out.

/** Each counter's and gauge's value by its exact name. */
export function statValues(statsJson: string): Map<string, number> {
  const body = JSON.parse(statsJson) as { stats?: { name?: string; value?: number | string }[] };
  const values = new Map<string, number>();
  for (const stat of body.stats ?? []) {
    if (stat.name === undefined || stat.value === undefined) continue;
    const value = Number(stat.value);
    if (Number.isFinite(value)) values.set(stat.name, value);
  }
  return values;
}
