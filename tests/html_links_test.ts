// Tests for scripts/html_links.ts: collectLinks() fed a page in pieces, and
// the command line on a file and on stdin. (http_client.ts --links, which
// streams a response into the same collector, is tested with the client.)
import assert from "node:assert/strict";
import { pathToFileURL } from "node:url";
import { collectLinks } from "../scripts/html_links.ts";
import { runScript } from "./helpers.ts";

const PAGE = `<!DOCTYPE html>
<html><head>
<base href="http://example.test/docs/">
<link rel="stylesheet" href="style.css">
<script>document.write('<a href="/not-a-tag">');</script>
<!-- <a href="/commented-out"> -->
</head><body>
<a href="intro.html?a=1&amp;b=2#top">Intro</a>
<a name="anchor-without-href">no link</a>
<A HREF='/upper'>upper case, single quotes</A>
<img src=logo.png alt="unquoted">
<a href="https://other.test/x">elsewhere</a>
<a href="http://[bad">not a URL</a>
</body></html>
`;

const EXPECTED = [
  "http://example.test/docs/style.css",
  "http://example.test/docs/intro.html?a=1&b=2#top",
  "http://example.test/upper",
  "http://example.test/docs/logo.png",
  "https://other.test/x",
];

Deno.test("collectLinks: a page fed a byte at a time, as a tokenizer sees it", async () => {
  const links = await collectLinks(new URL("http://page.test/a/b.html"));
  for (const byte of new TextEncoder().encode(PAGE)) {
    assert.equal(await links.write(new Uint8Array([byte])), 1);
  }
  assert.deepEqual(links.end(), EXPECTED);
});

Deno.test("collectLinks: no <base>: the page URL; a charset other than UTF-8 is decoded as such", async () => {
  const links = await collectLinks(new URL("http://page.test/a/"), "latin1");
  await links.write(
    new Uint8Array([
      ...new TextEncoder().encode('<a href="caf'),
      0xe9, // é in latin1
      ...new TextEncoder().encode('.html">x</a><a href="../up">'),
    ]),
  );
  assert.deepEqual(links.end(), [
    "http://page.test/a/caf%C3%A9.html",
    "http://page.test/up",
  ]);
  const unknown = await collectLinks(new URL("http://page.test/"), "klingon");
  await unknown.write(new TextEncoder().encode('<a href="é">'));
  assert.deepEqual(unknown.end(), ["http://page.test/%C3%A9"]);
});

Deno.test("CLI: a file (its own file:// URL as the base), stdin with --base, narrow permissions", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/page.html`;
    await Deno.writeTextFile(
      path,
      '<a href="sub/x.html">x</a><img src="/y.png">',
    );
    const fromFile = await runScript("html_links.ts", [path], {
      allow: [`--allow-read=${path}`],
    });
    assert.equal(fromFile.code, 0, fromFile.stderr);
    const base = pathToFileURL(`${dir}/`).href;
    assert.equal(fromFile.stdout, `${base}sub/x.html\nfile:///y.png\n`);
    assert.equal(fromFile.stderr, "");

    const fromStdin = await runScript(
      "html_links.ts",
      ["--base", "http://127.0.0.1:8000/a/", "-"],
      { allow: [], stdin: PAGE },
    );
    assert.equal(fromStdin.code, 0, fromStdin.stderr);
    assert.equal(fromStdin.stdout, EXPECTED.map((l) => l + "\n").join(""));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("CLI: usage errors exit 2, a missing file exits 1, one line each; --help exits 0", async () => {
  for (
    const [args, message] of [
      [[], "missing FILE"],
      [["a.html", "b.html"], "give one FILE"],
      [["--base", "nowhere", "-"], "--base must be a URL, got 'nowhere'"],
    ]
  ) {
    const result = await runScript("html_links.ts", args as string[], {
      allow: ["--allow-read"],
    });
    assert.equal(result.code, 2, result.stderr);
    assert.equal(
      result.stderr,
      `html_links.ts: ${message}\nTry 'html_links.ts --help' for more information.\n`,
    );
  }
  const missing = await runScript("html_links.ts", ["/nonexistent/p.html"], {
    allow: ["--allow-read"],
  });
  assert.equal(missing.code, 1);
  assert.match(
    missing.stderr,
    /^html_links\.ts: .*\/nonexistent\/p\.html.*\n$/,
  );
  const help = await runScript("html_links.ts", ["--help"], { allow: [] });
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: html_links\.ts \[--base URL\] FILE\|-\n/);
});
