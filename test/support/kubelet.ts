// What the kubelet does with a container spec before it starts it, for tests that check what the
// injector writes and for the play kubelet (play-kubelet.ts): the environment with downward API
// fields resolved, and the command line with $(VAR) references expanded from it (Kubernetes'
// rule: an unknown reference stays as written, $$ escapes) and mount paths mapped to local folders.
import type * as k8s from "@kubernetes/client-node";

/** The container's environment: values as given, fieldRefs from `fields` (e.g. "metadata.name"). */
export function containerEnv(
  container: k8s.V1Container,
  fields: Record<string, string>,
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const variable of container.env ?? []) {
    const field = variable.valueFrom?.fieldRef?.fieldPath;
    if (field !== undefined) {
      const value = fields[field];
      if (value === undefined)
        throw new Error(`${container.name}: env ${variable.name}: no value for field ${field}`);
      env[variable.name] = value;
    } else {
      env[variable.name] = expand(variable.value ?? "", env);
    }
  }
  return env;
}

/** $(VAR) from `env`; $$ is a literal $; an unknown reference is kept. */
export function expand(text: string, env: Record<string, string>): string {
  return text.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (match, name: string | undefined) =>
    name === undefined ? "$" : (env[name] ?? match),
  );
}

/**
 * The command line the container runs (command, then args, each expanded), each mount path in it
 * (`mounts`: mount path → local folder) replaced by its folder.
 */
export function commandLine(
  container: k8s.V1Container,
  env: Record<string, string>,
  mounts: Record<string, string> = {},
  entrypoint: readonly string[] = [],
): string[] {
  const paths = Object.keys(mounts).sort((a, b) => b.length - a.length);
  const mapPath = (text: string) => {
    for (const path of paths) {
      const bare = path.replace(/\/$/, "");
      const at = text.indexOf(bare);
      if (at >= 0 && (text.length === at + bare.length || text[at + bare.length] === "/"))
        return text.slice(0, at) + mounts[path] + text.slice(at + bare.length);
    }
    return text;
  };
  return [...(container.command ?? entrypoint), ...(container.args ?? [])].map((arg) =>
    mapPath(expand(arg, env)),
  );
}
