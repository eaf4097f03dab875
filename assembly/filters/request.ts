// A read-mostly view of the request that rules match against. Header pairs are fetched from the
// host once per request (one boundary crossing) and kept in step with the changes rules make.
import { requestHeaders } from "../sdk";
import { decodeText, encodeText } from "../sdk/memory";

export class QueryParam {
  constructor(
    public name: string,
    public value: string,
  ) {}
}

export class RequestView {
  // Headers are looked up one name at a time and remembered (including absence): a rule set
  // asks for a few names, which is cheaper than copying every header out of the proxy.
  private names: string[] = [];
  private values: Array<string | null> = [];
  private params: QueryParam[] | null = null;
  private pathValue: string | null = null;
  private queryValue: string = "";

  /** The value of a header, or null. Names are lower case. */
  header(name: string): string | null {
    const names = this.names;
    for (let i = 0; i < names.length; i++) {
      if (names[i] == name) return this.values[i];
    }
    const value = requestHeaders.get(name);
    names.push(name);
    this.values.push(value);
    return value;
  }

  method(): string {
    const value = this.header(":method");
    return value !== null ? value : "";
  }

  authority(): string {
    const value = this.header(":authority");
    return value !== null ? value : "";
  }

  /** `:path` without its query string; "" when the request has no `:path`. */
  path(): string {
    const cached = this.pathValue;
    if (cached !== null) return cached;
    let path = "";
    const full = this.header(":path");
    if (full !== null) {
      const q = full.indexOf("?");
      path = q < 0 ? full : full.substring(0, q);
      this.queryValue = q < 0 ? "" : full.substring(q + 1);
    }
    this.pathValue = path;
    return path;
  }

  /** The first value of a query parameter, percent-decoded, or null. */
  query(name: string): string | null {
    let params = this.params;
    if (params === null) {
      params = parseQuery(this.rawQuery());
      this.params = params;
    }
    for (let i = 0; i < params.length; i++) {
      if (params[i].name == name) return params[i].value;
    }
    return null;
  }

  rawQuery(): string {
    this.path();
    return this.queryValue;
  }

  /** The value of cookie `name` from the `cookie` header, or null. */
  cookie(name: string): string | null {
    const header = this.header("cookie");
    return header !== null ? findCookie(header, name) : null;
  }

  // Rules that change request headers report it here so later rules see the new values.
  noteSet(name: string, value: string): void {
    this.remember(name, value);
  }

  noteAdd(name: string, value: string): void {
    // Matching reads a header's first value: an added value only shows where there was none.
    if (this.header(name) === null) this.remember(name, value);
  }

  noteRemove(name: string): void {
    this.remember(name, null);
  }

  private remember(name: string, value: string | null): void {
    if (name == ":path") {
      this.pathValue = null;
      this.params = null;
    }
    const names = this.names;
    for (let i = 0; i < names.length; i++) {
      if (names[i] == name) {
        this.values[i] = value;
        return;
      }
    }
    names.push(name);
    this.values.push(value);
  }
}

function findCookie(header: string, name: string): string | null {
  const parts = header.split(";");
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i].trim();
    const eq = part.indexOf("=");
    if (eq <= 0) continue;
    if (part.substring(0, eq) == name) return part.substring(eq + 1);
  }
  return null;
}

export function parseQuery(query: string): QueryParam[] {
  const out = new Array<QueryParam>();
  if (query.length == 0) return out;
  const parts = query.split("&");
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i];
    if (part.length == 0) continue;
    const eq = part.indexOf("=");
    const name = eq < 0 ? part : part.substring(0, eq);
    const value = eq < 0 ? "" : part.substring(eq + 1);
    out.push(new QueryParam(percentDecode(name), percentDecode(value)));
  }
  return out;
}

function hexValue(c: i32): i32 {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

/** Form-style decoding: `+` is a space, `%XX` a byte; malformed escapes stay as they are. */
export function percentDecode(s: string): string {
  if (s.indexOf("%") < 0 && s.indexOf("+") < 0) return s;
  const bytes = new Uint8Array(s.length * 3);
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c == 43) {
      bytes[n++] = 32;
    } else if (
      c == 37 &&
      i + 2 < s.length &&
      hexValue(s.charCodeAt(i + 1)) >= 0 &&
      hexValue(s.charCodeAt(i + 2)) >= 0
    ) {
      bytes[n++] = <u8>((hexValue(s.charCodeAt(i + 1)) << 4) | hexValue(s.charCodeAt(i + 2)));
      i += 2;
    } else if (c < 128) {
      bytes[n++] = <u8>c;
    } else {
      // Non-ASCII in a query is already decoded (from the :path bytes): the run of it goes back
      // to those bytes, surrogate pairs and escaped bytes included.
      let end = i + 1;
      while (end < s.length && s.charCodeAt(end) >= 128) end++;
      const encoded = Uint8Array.wrap(encodeText(s.substring(i, end)));
      for (let j = 0; j < encoded.length; j++) bytes[n++] = encoded[j];
      i = end - 1;
    }
  }
  // %FF and the like are bytes too: decoded as header values are, so they cannot collide.
  return decodeText(bytes.dataStart, n);
}
