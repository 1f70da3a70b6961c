/**
 * The CloudEvents `source` check as OpenMeter's ingest decoder does it.
 *
 * OpenMeter decodes every event with cloudevents/sdk-go, whose `source` is a `types.URIRef`: `ParseURIRef`
 * calls Go's `net/url.Parse` and the event is refused when it fails (sdk-go v2.16.2
 * `v2/types/uriref.go` `ParseURIRef`, `v2/event/event_unmarshal.go` `readUriRef`: "cannot parse uri ref").
 * This module re-implements Go's `url.Parse` (Go 1.26 `src/net/url/url.go`: `Parse`, `parse`, `getScheme`,
 * `parseAuthority`, `parseHost`, `validUserinfo`, `unescape`, `validOptionalPort`,
 * `stringContainsCTLByte`, and `net/netip.ParseAddr` for bracketed hosts) closely enough to give the
 * same yes/no on every input, with a message that says where the input goes wrong.
 *
 * Whitespace: Go accepts a space (and any non-ASCII space) in a path, so `"my app"` parses; it refuses
 * only ASCII control characters (tab, newline, ...). This function is faithful to Go and says nothing
 * about spaces: a client that wants to refuse them (a space in a billing source is a typo) must check
 * that itself.
 *
 * `goUrlString()` gives what Go's `URL.String()` makes of the parsed value: OpenMeter stores and
 * de-duplicates on that re-serialized form (sdk-go `URIRef.String()` → `url.URL.String()`), so
 * `"my app"` is stored, and de-duplicated, as `"my%20app"`.
 */

/** Options of the Go `url.Parse` model. */
export interface GoUrlParseOptions {
  /**
   * Go 1.26's `urlstrictcolons` GODEBUG: with `true`, an `http`/`https` host may hold one colon only
   * (`http://a:1:2` is refused). A Go module whose `go.mod` says `go 1.25` or older gets the old, lax
   * behaviour by default even when built with Go 1.26: OpenMeter's `go.mod` says `go 1.25.6`
   * (openmeterio/openmeter `go.mod` at 7e57a394), so its server is lax.
   * @default false
   */
  strictColons?: boolean;
}

/** The parts Go's `url.Parse` splits a reference into (bytes as latin1 strings, as Go sees them). */
interface GoUrl {
  scheme: string;
  opaque: string;
  user: { username: string; password?: string } | undefined;
  host: string;
  path: string;
  rawPath: string;
  omitHost: boolean;
  forceQuery: boolean;
  rawQuery: string;
  fragment: string;
  rawFragment: string;
}

class ParseError extends Error {}

type Mode = "path" | "pathSegment" | "host" | "zone" | "userPassword" | "query" | "fragment";

/**
 * Why Go's `url.Parse` (as OpenMeter's server runs it) refuses `value`, or `undefined` when it parses.
 * The message starts with a verb (`contains ...`, `starts with ...`) so a caller can prefix the field:
 * `` `source` ${problem} ``.
 *
 * @example
 * uriReferenceProblem("my_app:prod")
 * // 'contains ":" at position 7 in its first path segment "my_app:prod": ...'
 * uriReferenceProblem("langchain") // undefined
 */
export function uriReferenceProblem(value: string, options: GoUrlParseOptions = {}): string | undefined {
  try {
    parseGoUrl(value, options);
    return undefined;
  } catch (error) {
    if (error instanceof ParseError) return error.message;
    throw error;
  }
}

/** Whether Go's `url.Parse` accepts `value` (whitespace included: see the module notes). */
export function isGoUrlParseable(value: string, options: GoUrlParseOptions = {}): boolean {
  return uriReferenceProblem(value, options) === undefined;
}

/**
 * Go's `url.Parse(value).String()`: the form OpenMeter stores as the event's `source` and puts in its
 * de-duplication key. Throws a `TypeError` with the problem when `value` does not parse.
 */
export function goUrlString(value: string, options: GoUrlParseOptions = {}): string {
  let url: GoUrl;
  try {
    url = parseGoUrl(value, options);
  } catch (error) {
    if (error instanceof ParseError) throw new TypeError(`${JSON.stringify(value)} ${error.message}`);
    throw error;
  }
  return fromBytes(urlString(url));
}

// ---------------------------------------------------------------------------------------------------
// Parsing (Go src/net/url/url.go). Strings below are byte strings: one char per UTF-8 byte.

function parseGoUrl(value: string, options: GoUrlParseOptions): GoUrl {
  const raw = toBytes(value);
  // Parse: cut off #frag first; the control-character check only sees the part before it.
  const hash = raw.indexOf("#");
  const before = hash < 0 ? raw : raw.slice(0, hash);
  const frag = hash < 0 ? "" : raw.slice(hash + 1);
  const url = parse(before, options);
  if (frag !== "") {
    const unescaped = unescape(frag, "fragment", hash + 1);
    url.fragment = unescaped;
    url.rawFragment = escape(unescaped, "fragment") === frag ? "" : frag;
  }
  return url;
}

function parse(raw: string, options: GoUrlParseOptions): GoUrl {
  const url: GoUrl = {
    scheme: "",
    opaque: "",
    user: undefined,
    host: "",
    path: "",
    rawPath: "",
    omitHost: false,
    forceQuery: false,
    rawQuery: "",
    fragment: "",
    rawFragment: "",
  };
  // stringContainsCTLByte: b < ' ' || b == 0x7f.
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) {
      throw new ParseError(
        `contains the control character ${describeChar(c)} at position ${i + 1} ` +
          `(Go's url.Parse: "net/url: invalid control character in URL")`,
      );
    }
  }
  if (raw === "*") {
    url.path = "*";
    return url;
  }
  const { scheme, rest: afterScheme } = getScheme(raw);
  url.scheme = scheme.toLowerCase();
  let rest = afterScheme;
  if (rest.endsWith("?") && count(rest, "?") === 1) {
    url.forceQuery = true;
    rest = rest.slice(0, -1);
  } else {
    const q = rest.indexOf("?");
    if (q >= 0) {
      url.rawQuery = rest.slice(q + 1);
      rest = rest.slice(0, q);
    }
  }
  const offset = raw.length - afterScheme.length; // where rest starts in raw (0-based)
  if (!rest.startsWith("/")) {
    if (url.scheme !== "") {
      // Rootless paths after a scheme are opaque and not checked further.
      url.opaque = rest;
      return url;
    }
    // RFC 3986 §3.3: a relative-path reference cannot have a colon in its first segment (golang.org/issue/16822).
    const slash = rest.indexOf("/");
    const segment = slash < 0 ? rest : rest.slice(0, slash);
    const colon = segment.indexOf(":");
    if (colon >= 0) {
      throw new ParseError(
        `contains ":" at position ${offset + colon + 1} in its first path segment ${quote(segment)}: Go's url.Parse ` +
          `refuses that in a relative reference ("first path segment in URL cannot contain colon"), and the part before ` +
          `it is no scheme (a scheme starts with a letter and holds only letters, digits, "+", "-" and "."); ` +
          `use another separator, e.g. ${quote(segment.replace(/:/g, "/"))}`,
      );
    }
  }
  if ((url.scheme !== "" || !rest.startsWith("///")) && rest.startsWith("//")) {
    let authority = rest.slice(2);
    rest = "";
    const slash = authority.indexOf("/");
    if (slash >= 0) {
      rest = authority.slice(slash);
      authority = authority.slice(0, slash);
    }
    const parsed = parseAuthority(url.scheme, authority, options);
    url.user = parsed.user;
    url.host = parsed.host;
  } else if (url.scheme !== "" && rest.startsWith("/")) {
    url.omitHost = true;
  }
  // setPath
  const path = unescape(rest, "path", offset + 1);
  url.path = path;
  url.rawPath = escape(path, "path") === rest ? "" : rest;
  return url;
}

/** getScheme: `[a-zA-Z][a-zA-Z0-9+-.]*:`, else no scheme. */
function getScheme(raw: string): { scheme: string; rest: string } {
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (/[a-zA-Z]/.test(c)) continue;
    if (/[0-9+\-.]/.test(c)) {
      if (i === 0) return { scheme: "", rest: raw };
      continue;
    }
    if (c === ":") {
      if (i === 0) {
        throw new ParseError(`starts with ":" (Go's url.Parse reads an empty scheme: "missing protocol scheme")`);
      }
      return { scheme: raw.slice(0, i), rest: raw.slice(i + 1) };
    }
    return { scheme: "", rest: raw };
  }
  return { scheme: "", rest: raw };
}

function parseAuthority(
  scheme: string,
  authority: string,
  options: GoUrlParseOptions,
): { user: GoUrl["user"]; host: string } {
  const at = authority.lastIndexOf("@");
  const host = parseHost(scheme, at < 0 ? authority : authority.slice(at + 1), options);
  if (at < 0) return { user: undefined, host };
  const userinfo = authority.slice(0, at);
  const bad = invalidUserinfoChar(userinfo);
  if (bad !== undefined) {
    throw new ParseError(
      `has ${describeChar(bad.charCodeAt(0))} in the user information before "@" ` +
        `(Go's url.Parse: "net/url: invalid userinfo")`,
    );
  }
  const colon = userinfo.indexOf(":");
  if (colon < 0) return { user: { username: unescape(userinfo, "userPassword") }, host };
  return {
    user: {
      username: unescape(userinfo.slice(0, colon), "userPassword"),
      password: unescape(userinfo.slice(colon + 1), "userPassword"),
    },
    host,
  };
}

/** validUserinfo: letters, digits and `-._:~!$&'()*+,;=%@` (iterating runes: any non-ASCII is refused). */
function invalidUserinfoChar(s: string): string | undefined {
  for (const c of s) {
    if (/[A-Za-z0-9\-._:~!$&'()*+,;=%@]/.test(c)) continue;
    return c;
  }
  return undefined;
}

function parseHost(scheme: string, host: string, options: GoUrlParseOptions): string {
  const open = host.lastIndexOf("[");
  if (open > 0) {
    throw new ParseError(`has "[" inside its host ${quote(host)}; an IPv6 literal must open the host (Go: "invalid IP-literal")`);
  }
  if (open === 0) {
    const close = host.lastIndexOf("]");
    if (close < 0) throw new ParseError(`has no "]" closing the IPv6 literal in its host ${quote(host)} (Go: "missing ']' in host")`);
    const colonPort = host.slice(close + 1);
    if (!validOptionalPort(colonPort)) {
      throw new ParseError(`has an invalid port ${quote(colonPort)} after its host (a port is ":" and digits only)`);
    }
    const unescapedPort = unescape(colonPort, "host");
    const hostname = host.slice(1, close);
    let unescapedHostname: string;
    const zone = hostname.indexOf("%25");
    if (zone >= 0) {
      unescapedHostname = unescape(hostname.slice(0, zone), "host") + unescape(hostname.slice(zone), "zone");
    } else {
      unescapedHostname = unescape(hostname, "host");
    }
    const addr = parseAddr(unescapedHostname);
    if (addr === "invalid") {
      throw new ParseError(`has ${quote(hostname)} in brackets, which is no IPv6 address (Go: "invalid host")`);
    }
    if (addr === "ipv4") {
      throw new ParseError(`has an IPv4 address in brackets in its host; only IPv6 goes in brackets (Go: "invalid IP-literal")`);
    }
    return `[${unescapedHostname}]${unescapedPort}`;
  }
  let i = host.indexOf(":");
  if (i >= 0) {
    const last = host.lastIndexOf(":");
    if (last !== i) {
      // Go 1.26: strict colons for http and https only, unless urlstrictcolons=0 (go.mod older than 1.26).
      const strict = (scheme === "http" || scheme === "https") && options.strictColons === true;
      if (!strict) i = last;
    }
    const colonPort = host.slice(i);
    if (!validOptionalPort(colonPort)) {
      throw new ParseError(`has an invalid port ${quote(colonPort)} after its host ${quote(host.slice(0, i))} (a port is ":" and digits only)`);
    }
  }
  return unescape(host, "host");
}

function validOptionalPort(port: string): boolean {
  return port === "" || /^:[0-9]*$/.test(port);
}

function isHex(c: string | undefined): boolean {
  return c !== undefined && /^[0-9a-fA-F]$/.test(c);
}

/** unescape: every `%` needs two hex digits; in a host `%XX` may only encode non-ASCII bytes (or `%25`). */
function unescape(s: string, mode: Mode, position?: number): string {
  let n = 0;
  for (let i = 0; i < s.length; ) {
    const c = s[i]!;
    if (c === "%") {
      n++;
      if (i + 2 >= s.length || !isHex(s[i + 1]) || !isHex(s[i + 2])) {
        const bad = s.slice(i, i + 3);
        throw new ParseError(
          `has an invalid percent-escape ${quote(bad)}${position !== undefined ? ` at position ${position + i}` : ""}` +
            ` (a "%" must be followed by two hex digits; write "%25" for a literal "%")`,
        );
      }
      const v = (parseInt(s[i + 1]!, 16) << 4) | parseInt(s[i + 2]!, 16);
      if (mode === "host" && parseInt(s[i + 1]!, 16) < 8 && s.slice(i, i + 3) !== "%25") {
        throw new ParseError(`has the escape ${quote(s.slice(i, i + 3))} in its host; a host may %-encode only non-ASCII bytes`);
      }
      if (mode === "zone" && s.slice(i, i + 3) !== "%25" && v !== 0x20 && shouldEscape(v, "host")) {
        throw new ParseError(`has the escape ${quote(s.slice(i, i + 3))} in its IPv6 zone, which encodes a character a host cannot hold`);
      }
      i += 3;
    } else {
      if ((mode === "host" || mode === "zone") && c.charCodeAt(0) < 0x80 && shouldEscape(c.charCodeAt(0), mode)) {
        throw new ParseError(`has ${describeChar(c.charCodeAt(0))} in its host (Go: "invalid character ${JSON.stringify(c)} in host name")`);
      }
      i++;
    }
  }
  if (n === 0) return s;
  let out = "";
  for (let i = 0; i < s.length; i++) {
    if (s[i] === "%") {
      out += String.fromCharCode(parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

/** shouldEscape (Go src/net/url/url.go), on a byte. */
function shouldEscape(c: number, mode: Mode): boolean {
  const ch = String.fromCharCode(c);
  if (/[a-zA-Z0-9]/.test(ch)) return false;
  if (mode === "host" || mode === "zone") {
    if ("!$&'()*+,;=:[]<>\"".includes(ch)) return false;
  }
  if ("-_.~".includes(ch)) return false;
  if ("$&+,/:;=?@".includes(ch)) {
    switch (mode) {
      case "path":
        return ch === "?";
      case "pathSegment":
        return ch === "/" || ch === ";" || ch === "," || ch === "?";
      case "userPassword":
        return ch === "@" || ch === "/" || ch === "?" || ch === ":";
      case "query":
        return true;
      case "fragment":
        return false;
      default:
        break;
    }
  }
  if (mode === "fragment" && "!()*".includes(ch)) return false;
  return true;
}

function escape(s: string, mode: Mode): string {
  let out = "";
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x20 && mode === "query") out += "+";
    else if (shouldEscape(c, mode)) out += `%${c.toString(16).toUpperCase().padStart(2, "0")}`;
    else out += s[i];
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// net/netip.ParseAddr, as far as url.Parse needs it: "ipv6", "ipv4" or "invalid".

function parseAddr(s: string): "ipv4" | "ipv6" | "invalid" {
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === ".") return parseIPv4(s) ? "ipv4" : "invalid";
    if (c === ":") return parseIPv6(s) ? "ipv6" : "invalid";
    if (c === "%") return "invalid"; // "missing IPv6 address"
  }
  return "invalid"; // "unable to parse IP"
}

/** Four decimal fields of 0-255, no leading zeros. */
function parseIPv4(s: string): boolean {
  const fields = s.split(".");
  if (fields.length !== 4) return false;
  return fields.every((f) => /^[0-9]{1,3}$/.test(f) && !(f.length > 1 && f[0] === "0") && Number(f) <= 255);
}

function parseIPv6(input: string): boolean {
  let s = input;
  const pct = s.indexOf("%");
  if (pct >= 0) {
    if (pct === s.length - 1) return false; // zone must be a non-empty string
    s = s.slice(0, pct);
  }
  let groups = 0; // 16-bit groups filled
  let ellipsis = -1;
  if (s.startsWith("::")) {
    ellipsis = 0;
    s = s.slice(2);
    if (s === "") return true;
  }
  while (groups < 8) {
    const m = /^[0-9a-fA-F]+/.exec(s);
    if (!m) return false;
    const digits = m[0];
    if (digits.length > 4) return false; // "each group must have 4 or less digits"
    if (s[digits.length] === ".") {
      if (ellipsis < 0 && groups !== 6) return false;
      if (groups + 2 > 8) return false;
      if (!parseIPv4(s)) return false;
      groups += 2;
      s = "";
      break;
    }
    groups++;
    s = s.slice(digits.length);
    if (s === "") break;
    if (s[0] !== ":") return false;
    if (s.length === 1) return false; // trailing colon
    s = s.slice(1);
    if (s[0] === ":") {
      if (ellipsis >= 0) return false; // multiple ::
      ellipsis = groups;
      s = s.slice(1);
      if (s === "") break;
    }
  }
  if (s !== "") return false; // trailing garbage or too many groups
  if (groups < 8) return ellipsis >= 0;
  return ellipsis < 0;
}

// ---------------------------------------------------------------------------------------------------
// URL.String (Go src/net/url/url.go), with EscapedPath / EscapedFragment.

function urlString(u: GoUrl): string {
  let buf = "";
  if (u.scheme !== "") buf += `${u.scheme}:`;
  if (u.opaque !== "") {
    buf += u.opaque;
  } else {
    if (u.scheme !== "" || u.host !== "" || u.user !== undefined) {
      if (!(u.omitHost && u.host === "" && u.user === undefined)) {
        if (u.host !== "" || u.path !== "" || u.user !== undefined) buf += "//";
        if (u.user !== undefined) {
          buf += escape(u.user.username, "userPassword");
          if (u.user.password !== undefined) buf += `:${escape(u.user.password, "userPassword")}`;
          buf += "@";
        }
        if (u.host !== "") buf += escape(u.host, "host");
      }
    }
    const path = escapedPath(u);
    if (path !== "" && path[0] !== "/" && u.host !== "") buf += "/";
    if (buf === "") {
      const slash = path.indexOf("/");
      const segment = slash < 0 ? path : path.slice(0, slash);
      if (segment.includes(":")) buf += "./";
    }
    buf += path;
  }
  if (u.forceQuery || u.rawQuery !== "") buf += `?${u.rawQuery}`;
  if (u.fragment !== "") buf += `#${escapedFragment(u)}`;
  return buf;
}

function validEncoded(s: string, mode: Mode): boolean {
  for (let i = 0; i < s.length; i++) {
    const ch = s[i]!;
    if ("!$&'()*+,;=:@[]%".includes(ch)) continue;
    if (shouldEscape(s.charCodeAt(i), mode)) return false;
  }
  return true;
}

function escapedPath(u: GoUrl): string {
  if (u.rawPath !== "" && validEncoded(u.rawPath, "path")) {
    try {
      if (unescape(u.rawPath, "path") === u.path) return u.rawPath;
    } catch {
      // fall through
    }
  }
  if (u.path === "*") return "*";
  return escape(u.path, "path");
}

function escapedFragment(u: GoUrl): string {
  if (u.rawFragment !== "" && validEncoded(u.rawFragment, "fragment")) {
    try {
      if (unescape(u.rawFragment, "fragment") === u.fragment) return u.rawFragment;
    } catch {
      // fall through
    }
  }
  return escape(u.fragment, "fragment");
}

// ---------------------------------------------------------------------------------------------------

function toBytes(s: string): string {
  return Buffer.from(s, "utf8").toString("latin1");
}

function fromBytes(s: string): string {
  return Buffer.from(s, "latin1").toString("utf8");
}

function count(s: string, c: string): number {
  let n = 0;
  for (const ch of s) if (ch === c) n++;
  return n;
}

function quote(bytes: string): string {
  return JSON.stringify(fromBytes(bytes));
}

function describeChar(code: number): string {
  const hex = `U+${code.toString(16).toUpperCase().padStart(4, "0")}`;
  if (code < 0x20 || code === 0x7f) return hex;
  if (code >= 0x80) return `a non-ASCII character (byte 0x${code.toString(16).toUpperCase()})`;
  return `${JSON.stringify(String.fromCharCode(code))} (${hex})`;
}
