// The wasmesh console (/gui): four pages over the control plane's HTTP API, read every POLL_MS.
// Pages are addressed by the URL's hash (#/services/reviews), so the server serves one index.html.
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { type Mesh, savedToken, saveToken, useMesh } from "./api.ts";
import { MeshPage } from "./mesh.tsx";
import { ModulesPage, ProxiesPage } from "./proxies.tsx";
import { ServicePage } from "./service.tsx";
import "./style.css";

type Page =
  | { name: "mesh" }
  | { name: "service"; service: string }
  | { name: "proxies" }
  | { name: "modules" };

function pageOf(hash: string): Page {
  const [, first, second] = hash.replace(/^#/, "").split("/");
  if (first === "services" && second) return { name: "service", service: decodeURIComponent(second) };
  if (first === "proxies") return { name: "proxies" };
  if (first === "modules") return { name: "modules" };
  return { name: "mesh" };
}

function useHash(): string {
  const [hash, setHash] = useState(location.hash);
  useEffect(() => {
    const changed = () => setHash(location.hash);
    addEventListener("hashchange", changed);
    return () => removeEventListener("hashchange", changed);
  }, []);
  return hash;
}

function Login({ message, onToken }: { message: string; onToken: (token: string) => void }) {
  const [token, setToken] = useState("");
  return (
    <form
      class="login"
      onSubmit={(event) => {
        event.preventDefault();
        if (token.trim()) onToken(token.trim());
      }}
    >
      <h2>Sign in</h2>
      <p>
        The API needs a token: a read-only one is enough (<code>wasmesh token create --role read-only</code>).
      </p>
      {savedToken() !== null && <p class="error">{message}</p>}
      <input
        type="password"
        name="token"
        placeholder="API token"
        autocomplete="off"
        value={token}
        onInput={(event) => setToken((event.target as HTMLInputElement).value)}
      />
      <button type="submit">Sign in</button>
    </form>
  );
}

function Body({ page, mesh }: { page: Page; mesh: Mesh }) {
  switch (page.name) {
    case "service":
      return <ServicePage mesh={mesh} name={page.service} />;
    case "proxies":
      return <ProxiesPage mesh={mesh} />;
    case "modules":
      return <ModulesPage mesh={mesh} />;
    default:
      return <MeshPage mesh={mesh} />;
  }
}

function App() {
  const [generation, setGeneration] = useState(0);
  const polled = useMesh(generation);
  const page = pageOf(useHash());
  const nav = (href: string, label: string, active: boolean) => (
    <a href={href} class={active ? "active" : ""}>
      {label}
    </a>
  );
  return (
    <>
      <header>
        <span class="brand">wasmesh</span>
        <nav>
          {nav("#/", "Mesh", page.name === "mesh")}
          {polled.state === "ready" &&
            polled.mesh.services.map((s) =>
              nav(
                `#/services/${encodeURIComponent(s.metadata.name)}`,
                s.metadata.name,
                page.name === "service" && page.service === s.metadata.name,
              ),
            )}
          {nav("#/proxies", "Proxies", page.name === "proxies")}
          {nav("#/modules", "Modules", page.name === "modules")}
        </nav>
        <span class="status">
          {polled.state === "ready" &&
            (polled.error ? (
              <span class="error">{polled.error}</span>
            ) : (
              `live · ${polled.mesh.readAt.toLocaleTimeString()}`
            ))}
          {savedToken() !== null && (
            <button
              type="button"
              onClick={() => {
                saveToken(null);
                setGeneration((g) => g + 1);
              }}
            >
              Sign out
            </button>
          )}
        </span>
      </header>
      <main>
        {polled.state === "loading" && <p>Loading…</p>}
        {polled.state === "failed" && <p class="error">{polled.error}</p>}
        {polled.state === "unauthorized" && (
          <Login
            message={polled.message}
            onToken={(token) => {
              saveToken(token);
              setGeneration((g) => g + 1);
            }}
          />
        )}
        {polled.state === "ready" && <Body page={page} mesh={polled.mesh} />}
      </main>
    </>
  );
}

const root = document.getElementById("app");
if (root) render(<App />, root);
