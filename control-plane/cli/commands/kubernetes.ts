// `wasmesh kubernetes crds`: the CustomResourceDefinitions of the native kinds, generated from the
// resource model (control-plane/kubernetes/crds.ts), for `kubectl apply -f -`. No control plane is
// called.
import { crdsYaml, foreignCrdsYaml } from "../../kubernetes/crds.ts";
import { type CommandName, type Out, parse, usage } from "../args.ts";

export const help = `Usage: wasmesh kubernetes crds [--imports]

Prints the CustomResourceDefinitions (apiextensions.k8s.io/v1) of wasmesh's kinds, group
wasmesh.io, version v1alpha1, as YAML: wasmesh kubernetes crds | kubectl apply -f -
(deploy/kubernetes/crds.yaml holds the same).

  --imports   the CRDs of the other meshes' kinds wasmesh converts (Istio, Kuma, Consul) instead,
              for a cluster without that mesh (deploy/other-meshes/crds.yaml holds the same)`;

const command: CommandName = { name: "kubernetes", help };

export async function run(args: string[], out: Out): Promise<undefined> {
  const { values, positionals } = parse(args, { imports: { type: "boolean" } }, command);
  if (values.help) return out(help);
  const [sub, ...rest] = positionals;
  if (sub !== "crds") {
    throw usage(
      command,
      sub === undefined
        ? "kubernetes: a subcommand is required (crds)"
        : `kubernetes: unknown subcommand '${sub}'`,
    );
  }
  if (rest.length > 0) throw usage(command, `kubernetes crds: unexpected argument '${rest[0]}'`);
  return out((values.imports === true ? foreignCrdsYaml() : crdsYaml()).replace(/\n$/, ""));
}
