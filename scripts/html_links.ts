/**
 * Lists the links of an HTML page, one absolute URL a line: the targets of
 * a, area and link (href) and of img, script, iframe and the media tags (src).
 *
 * Run:    deno run --allow-read scripts/html_links.ts page.html
 *         curl -s http://127.0.0.1:8000/ | deno run scripts/html_links.ts --base http://127.0.0.1:8000/ -
 * Try it: deno run --allow-net scripts/http_client.ts --links http://127.0.0.1:8000/
 *
 * 001 §3 hands the page to BeautifulSoup (a package to install, not part of
 * Python's standard library as it says), takes every <a> and prints
 * link['href']: an <a> without href raises KeyError, a relative link stays
 * relative, and what an <img> or <script> loads is not counted. Here a real
 * HTML tokenizer (npm:htmlparser2, loaded only when links are wanted) reads
 * the page as it streams; regular expressions cannot, since quoting,
 * entities, comments and <script> contents decide what is a tag. Links are
 * resolved against <base href>, else --base, else the file's own URL.
 *
 * Read first: collectLinks().
 */
import { pathToFileURL } from "node:url";
import { parseCommandLine, runCommand, UsageError } from "../lib/cli.ts";
import { copy, writeAll } from "../lib/io.ts";

const USAGE = `Usage: html_links.ts [--base URL] FILE|-

Prints the links of the HTML page in FILE (- reads stdin), one absolute URL
a line.

Options:
  --base URL         resolve relative links against URL (default: FILE's
                     file:// URL; for stdin, the current directory's)
  -h, --help         show this help`;

// Which attribute of which element is a link.
const LINK_ATTRIBUTE = new Map<string, string>([
  ..."a area link".split(" ").map((tag) => [tag, "href"] as const),
  ..."img script iframe frame embed source track audio video".split(" ")
    .map((tag) => [tag, "src"] as const),
]);

/**
 * A collector fed a page piece by piece (bytes in `charset`, UTF-8 if
 * unknown); end() returns its links, absolute: resolved against <base href>
 * (the first one) or else `pageUrl`. A link that is no URL is left out, and
 * only the links are kept, never the page (http_client.ts --links streams
 * its response body into one).
 */
export async function collectLinks(pageUrl: URL, charset = "utf-8") {
  const { Parser } = await import("npm:htmlparser2@^10.0.0");
  let decoder = new TextDecoder();
  try {
    decoder = new TextDecoder(charset);
  } catch { /* a label nobody knows: UTF-8 */ }
  const found: string[] = [];
  let base: string | undefined;
  const parser = new Parser({
    onopentag(name, attributes) {
      if (name === "base") base ??= attributes.href;
      const link = attributes[LINK_ATTRIBUTE.get(name) ?? ""];
      if (link !== undefined) found.push(link);
    },
  }, { decodeEntities: true });
  return {
    write(bytes: Uint8Array): Promise<number> {
      parser.write(decoder.decode(bytes, { stream: true }));
      return Promise.resolve(bytes.length);
    },
    end(): string[] {
      parser.end(decoder.decode());
      const baseUrl = URL.parse(base ?? "", pageUrl) ?? pageUrl;
      return found.flatMap((link) => URL.parse(link, baseUrl)?.href ?? []);
    },
  };
}

async function main(args: string[]) {
  const { values, positionals } = parseCommandLine(args, {
    usage: USAGE,
    positionals: true,
    options: { base: { type: "string" } },
  });
  if (positionals.length !== 1) {
    throw new UsageError(positionals.length ? "give one FILE" : "missing FILE");
  }
  const [path] = positionals;
  const base = values.base === undefined ? undefined : URL.parse(values.base);
  if (base === null) {
    throw new UsageError(`--base must be a URL, got '${values.base}'`);
  }
  // URLs print as they parse: control characters come out percent-encoded.
  const links = await collectLinks(
    base ?? pathToFileURL(path === "-" ? `${Deno.cwd()}/` : path),
  );
  if (path === "-") await copy(Deno.stdin, links);
  else {
    using file = await Deno.open(path);
    await copy(file, links);
  }
  const lines = links.end().map((link) => link + "\n").join("");
  await writeAll(Deno.stdout, new TextEncoder().encode(lines));
}

if (import.meta.main) {
  await runCommand("html_links.ts", () => main(Deno.args));
}
