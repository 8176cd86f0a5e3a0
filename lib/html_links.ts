// The links of an HTML page, for http_client.ts --links (001 §3 finds them
// with BeautifulSoup). Regular expressions cannot do this: quoting, entities,
// comments and <script> contents decide what is a tag, so a real HTML
// tokenizer reads the page (htmlparser2, the project's only npm package,
// imported only when --links is used). Kept apart from http_client.ts so that
// the script's lesson, HTTP itself, stays in view. Only the links are kept,
// never the page.

// Which attribute of which element is a link.
const LINK_ATTRIBUTE = new Map<string, string>([
  ..."a area link".split(" ").map((tag) => [tag, "href"] as const),
  ..."img script iframe frame embed source track audio video".split(" ")
    .map((tag) => [tag, "src"] as const),
]);

/**
 * A collector fed a page piece by piece (bytes in `charset`, UTF-8 if
 * unknown); end() returns its links, absolute: resolved against <base href>
 * (the first one) or else `pageUrl`. A link that is no URL is left out.
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
