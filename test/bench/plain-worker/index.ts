// The baseline of npm run bench:worker: what an edge proxy costs without wasmesh. It forwards every
// request to one origin the way the wasmesh worker does (streamed bodies, X-Forwarded-Host/-Proto,
// manual redirects), with no filters, no routing and no configuration feed.
import { Hono } from "hono";

const app = new Hono<{ Bindings: { ORIGIN_URL: string } }>();

app.all("*", (c) => {
  const request = c.req.raw;
  const url = new URL(request.url);
  const headers = new Headers(request.headers);
  headers.delete("host");
  headers.set("x-forwarded-host", request.headers.get("host") ?? url.host);
  headers.set("x-forwarded-proto", url.protocol.slice(0, -1));
  return fetch(c.env.ORIGIN_URL + url.pathname + url.search, {
    method: request.method,
    headers,
    body: request.body,
    redirect: "manual",
  });
});

export default app;
