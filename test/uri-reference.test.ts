/**
 * `uriReferenceProblem` against Go's own expectations. Cases are taken from Go's `src/net/url/url_test.go`
 * (golang/go; `TestParseErrors`, `TestRejectControlCharacters`, `TestInvalidUserPassword`, `urltests`,
 * `parseRequestURLTests`) and from the `source` values issue #11 names. Colon handling in hosts follows
 * Go 1.26 `parseHost` (strict only for http/https, and only with `urlstrictcolons=1`).
 */
import { describe, expect, it } from "vitest";
import { goUrlString, isGoUrlParseable, uriReferenceProblem } from "../src/uri-reference";

describe("uriReferenceProblem: Go url_test.go TestParseErrors", () => {
  // { in, wantErr } exactly as listed in TestParseErrors.
  const cases: Array<[string, boolean]> = [
    ["http://[::1]", false],
    ["http://[::1]:80", false],
    ["http://[::1]:namedport", true],
    ["http://x:namedport", true],
    ["http://[::1]/", false],
    ["http://[::1]a", true],
    ["http://[::1]%23", true],
    ["http://[::1%25en0]", false],
    ["http://[::1]:", false],
    ["http://x:", false],
    ["http://[::1]:%38%30", true],
    ["http://[::1%25%41]", false],
    ["http://[%10::1]", true],
    ["http://[::1]/%48", false],
    ["http://%41:8080/", true],
    ["mysql://x@y(z:123)/foo", true],
    ["mysql://x@y(1.2.3.4:123)/foo", true],
    [" http://foo.com", true],
    ["ht tp://foo.com", true],
    ["ahttp://foo.com", false],
    ["1http://foo.com", true],
    ["http://[]%20%48%54%54%50%2f%31%2e%31%0a%4d%79%48%65%61%64%65%72%3a%20%31%32%33%0a%0a/", true],
    ["http://a b.com/", true],
    ["cache_object://foo", true],
    ["cache_object:foo", true],
    ["cache_object:foo/bar", true],
    ["cache_object/:foo/bar", false],
  ];
  it.each(cases)("Parse(%j) fails: %s", (input, wantErr) => {
    expect(uriReferenceProblem(input) !== undefined).toBe(wantErr);
  });
});

describe("uriReferenceProblem: other Go url_test.go cases", () => {
  it("refuses ASCII control characters anywhere before the fragment (TestRejectControlCharacters)", () => {
    for (const input of ["http://foo.com/?foo\nbar", "http\r://foo.com/", "http://foo\x7f.com/"]) {
      expect(uriReferenceProblem(input), JSON.stringify(input)).toMatch(/control character U\+00(0A|0D|7F)/);
    }
  });

  it("accepts a non-ASCII control character (TestRejectControlCharacters: \\x80 is not refused)", () => {
    expect(uriReferenceProblem("http://foo.com/ctl\u0080")).toBeUndefined();
  });

  it("refuses '^' in the user information (TestInvalidUserPassword)", () => {
    expect(uriReferenceProblem("http://user^:passwo^rd@foo.com/")).toMatch(/"\^".*user information.*invalid userinfo/);
  });

  it("accepts every urltests input, and re-serializes as Go's String() does", () => {
    const roundtrips: Array<[string, string]> = [
      ["http://www.google.com/file%20one%26two", "http://www.google.com/file%20one%26two"],
      ["ftp://john%20doe@www.google.com/", "ftp://john%20doe@www.google.com/"],
      ["http://j@ne:password@google.com", "http://j%40ne:password@google.com"],
      ["MaIlTo:webmaster@golang.org", "mailto:webmaster@golang.org"],
      ["http://hello.世界.com/foo", "http://hello.%E4%B8%96%E7%95%8C.com/foo"],
      ["http://hello.%e4%b8%96%e7%95%8c.com/foo", "http://hello.%E4%B8%96%E7%95%8C.com/foo"],
      ["http://[fe80::1%25%65%6e%301-._~]/", "http://[fe80::1%25en01-._~]/"],
      ["http://www.google.com/?q=go+language#foo%26bar", "http://www.google.com/?q=go+language#foo%26bar"],
      ["///threeslashes", "///threeslashes"],
      ["a/b/c", "a/b/c"],
      ["scheme://!$&'()*+,;=hello!:1/path", "scheme://!$&'()*+,;=hello!:1/path"],
      ["http://host/!$&'()*+,;=:@[hello]", "http://host/!$&'()*+,;=:@[hello]"],
      ["tcp://[2020::2020:20:2020:2020%25Windows%20Loves%20Spaces]:2020", "tcp://[2020::2020:20:2020:2020%25Windows%20Loves%20Spaces]:2020"],
      // "Malformed IPv6 but still accepted" (lax colons: the last one starts the port).
      ["http://2b01:e34:ef40:7730:8e70:5aff:fefe:edac:8080/foo", "http://2b01:e34:ef40:7730:8e70:5aff:fefe:edac:8080/foo"],
    ];
    for (const [input, expected] of roundtrips) {
      expect(uriReferenceProblem(input), input).toBeUndefined();
      expect(goUrlString(input), input).toBe(expected);
    }
  });

  it("accepts the RFC 6874 zone forms of parseRequestURLTests and refuses %-escaped ASCII in a host", () => {
    expect(uriReferenceProblem("http://[fe80::1%25en0]:8080/")).toBeUndefined();
    expect(uriReferenceProblem("http://192.168.0.%31/")).toMatch(/escape "%31" in its host/);
    expect(uriReferenceProblem("http://[fe80::%31]/")).toMatch(/escape "%31" in its host/);
  });

  it("refuses an IPv4 address or a non-address in brackets (Go 1.26 parseHost: netip.ParseAddr, not Is4)", () => {
    expect(uriReferenceProblem("http://[1.2.3.4]/")).toMatch(/IPv4 address in brackets/);
    expect(uriReferenceProblem("http://[google.com]/")).toMatch(/no IPv6 address/);
    expect(uriReferenceProblem("http://[::ffff:1.2.3.4]/")).toBeUndefined(); // IPv4-mapped IPv6 is allowed
    expect(uriReferenceProblem("http://a[::1]/")).toMatch(/"\[" inside its host/);
  });

  it("with strictColons, refuses a second colon in an http host but not in another scheme's (Go 1.26 urlstrictcolons)", () => {
    expect(uriReferenceProblem("http://localhost:80:80/")).toBeUndefined(); // OpenMeter: go.mod says go 1.25.6, so lax
    expect(uriReferenceProblem("http://localhost:80:80/", { strictColons: true })).toMatch(/invalid port ":80:80"/);
    expect(uriReferenceProblem("postgres://a:1,b:2/db", { strictColons: true })).toBeUndefined();
  });
});

describe("uriReferenceProblem: the sources of issue #11", () => {
  it("refuses my_app:prod and 1app:prod for a colon in the first path segment, naming its position", () => {
    expect(uriReferenceProblem("my_app:prod")).toMatch(/^contains ":" at position 7 in its first path segment "my_app:prod"/);
    expect(uriReferenceProblem("1app:prod")).toMatch(/^contains ":" at position 5 in its first path segment/);
  });

  it("refuses 50%off for a bad percent-escape at position 3", () => {
    expect(uriReferenceProblem("50%off")).toBe(
      'has an invalid percent-escape "%of" at position 3 (a "%" must be followed by two hex digits; write "%25" for a literal "%")',
    );
    expect(uriReferenceProblem("50%25off")).toBeUndefined();
    expect(uriReferenceProblem("100%")).toMatch(/percent-escape "%"/);
  });

  it("refuses :x as an empty scheme", () => {
    expect(uriReferenceProblem(":x")).toMatch(/^starts with ":".*missing protocol scheme/);
  });

  it("accepts what Go accepts although a client may not want it: a space, an opaque scheme:value, a bad escape in a query", () => {
    expect(isGoUrlParseable("my app")).toBe(true);
    expect(goUrlString("my app")).toBe("my%20app"); // stored (and de-duplicated) re-escaped
    expect(isGoUrlParseable("my-app:prod")).toBe(true); // scheme "my-app", opaque "prod"
    expect(isGoUrlParseable("langchain?x=%zz")).toBe(true); // the query is not unescaped by Parse
    expect(isGoUrlParseable("a#b c")).toBe(true);
    expect(isGoUrlParseable("a#%zz")).toBe(false); // the fragment is
  });

  it("refuses a tab but accepts a no-break space (only ASCII controls are refused)", () => {
    expect(isGoUrlParseable("lang\tchain")).toBe(false);
    expect(isGoUrlParseable("lang\u00a0chain")).toBe(true);
  });

  it("accepts the library's default source unchanged", () => {
    expect(uriReferenceProblem("langchain")).toBeUndefined();
    expect(goUrlString("langchain")).toBe("langchain");
    expect(goUrlString("https://example.com/agents/billing")).toBe("https://example.com/agents/billing");
  });
});
