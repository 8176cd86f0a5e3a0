// Keeps README.md and README.zh-CN.md in step with the scripts and with each
// other, and the links in them and in docs/ true: every script is named in
// both READMEs, both have the same number of `## ` sections, neither links
// outside the repository, and every relative link reaches a file that exists
// (and its #anchor a heading there, slugged as GitHub slugs them). And the
// code they point to is there: a page's "`scripts/x.ts` → `name()`" names a
// file that defines that name, every header's "Read first:" names what its
// script defines, and the reading order's line counts are the files'.

import assert from "node:assert/strict";

const ROOT = new URL("../", import.meta.url);
const READMES = ["README.md", "README.zh-CN.md"];

/** The `.ts` files directly in a folder of the repository, sorted. */
async function tsFiles(folder: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(new URL(folder, ROOT))) {
    if (entry.isFile && entry.name.endsWith(".ts")) names.push(entry.name);
  }
  return names.sort();
}

function readText(path: string): Promise<string> {
  return Deno.readTextFile(new URL(path, ROOT));
}

/**
 * The markdown's lines with the contents of fenced code blocks blanked
 * (the fences too), so that a `# comment` in a shell block is no heading
 * and a `[x](y)` in an example is no link. Line numbers stay the same.
 */
function outsideFences(markdown: string): string[] {
  const lines = markdown.split("\n");
  let fence: string | null = null; // the opening fence while inside a block
  return lines.map((line) => {
    const marker = /^ {0,3}(`{3,}|~{3,})/.exec(line)?.[1];
    if (fence === null) {
      if (marker) fence = marker;
      return marker ? "" : line;
    }
    // A block closes with a fence of its own character, at least as long.
    if (marker && marker[0] === fence[0] && marker.length >= fence.length) {
      fence = null;
    }
    return "";
  });
}

/** The line with its inline code spans blanked out (same length). */
function withoutCodeSpans(line: string): string {
  return line.replace(
    /(`+)(?:(?!\1)[\s\S])*?\1/g,
    (span) => " ".repeat(span.length),
  );
}

interface Link {
  line: number;
  target: string;
}

/**
 * Every link destination outside code: inline links and images
 * `[text](target "title")`, reference definitions `[id]: target`, and
 * HTML `href`/`src` attributes.
 */
function links(markdown: string): Link[] {
  const found: Link[] = [];
  outsideFences(markdown).forEach((raw, index) => {
    const line = withoutCodeSpans(raw);
    const patterns = [
      /\]\(\s*(<[^>]*>|[^\s)]+)(?:\s+(?:"[^"]*"|'[^']*'))?\s*\)/g,
      /^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)/g,
      /\b(?:href|src)\s*=\s*"([^"]*)"/g,
    ];
    for (const pattern of patterns) {
      for (const match of line.matchAll(pattern)) {
        found.push({ line: index + 1, target: match[1].replace(/^<|>$/g, "") });
      }
    }
  });
  return found;
}

/**
 * The anchor GitHub gives a heading: its text as rendered (no code
 * backticks, emphasis or link syntax), lower-cased, every character that
 * is not a letter, mark, digit, connector (`_`), space or hyphen removed,
 * spaces turned into hyphens. Full-width punctuation (`：`, `（`) goes too.
 */
function githubSlug(heading: string): string {
  const text = heading
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, "$1") // [text](url) → text
    .replace(/<[^>]+>/g, "") // HTML tags
    .replace(/[`*]/g, ""); // code and emphasis markers
  return text
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{Nd}\p{Nl}\p{Pc} -]/gu, "")
    .replace(/ /g, "-");
}

/** Every anchor a markdown file offers: its headings' slugs (a repeated
 * slug gets -1, -2… as on GitHub) and HTML id/name attributes. */
function anchors(markdown: string): Set<string> {
  const result = new Set<string>();
  const repeats = new Map<string, number>(); // slug → how often it was taken
  for (const line of outsideFences(markdown)) {
    const heading = /^ {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$/.exec(line);
    if (heading) {
      const base = githubSlug(heading[1]);
      let slug = base;
      while (repeats.has(slug)) {
        repeats.set(base, repeats.get(base)! + 1);
        slug = `${base}-${repeats.get(base)}`;
      }
      repeats.set(slug, 0);
      result.add(slug);
    }
    for (const match of line.matchAll(/\b(?:id|name)\s*=\s*"([^"]+)"/g)) {
      result.add(match[1]);
    }
  }
  return result;
}

/**
 * The scripts a README does not name. A full script counts as named when
 * its file name appears other than as `basics/NAME` (so the basics'
 * namesakes cannot stand in for it); a basic one when `basics/NAME` does.
 */
function unnamedScripts(
  readme: string,
  scripts: string[],
  basics: string[],
): string[] {
  const missing: string[] = [];
  for (const name of scripts) {
    const escaped = name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    const alone = new RegExp(`(?<![\\w.-])(?<!basics/)${escaped}(?![\\w])`);
    if (!alone.test(readme)) missing.push(name);
  }
  for (const name of basics) {
    if (!readme.includes(`basics/${name}`)) missing.push(`basics/${name}`);
  }
  return missing;
}

/** The number of `## ` sections (outside code blocks). */
function sectionCount(markdown: string): number {
  return outsideFences(markdown).filter((line) => line.startsWith("## "))
    .length;
}

/** Whether a link leaves the page for another site or scheme. */
function isExternal(target: string): boolean {
  return /^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith("//");
}

/**
 * The broken relative links of one markdown file (a path from the
 * repository's root): each as "FILE:LINE: TARGET: why".
 */
async function brokenLinks(path: string): Promise<string[]> {
  const base = new URL(path, ROOT);
  const problems: string[] = [];
  const anchorsOf = new Map<string, Set<string>>();
  for (const { line, target } of links(await readText(path))) {
    if (isExternal(target)) continue;
    const where = `${path}:${line}: ${target}`;
    const hash = target.indexOf("#");
    const file = hash < 0 ? target : target.slice(0, hash);
    const fragment = hash < 0
      ? null
      : decodeURIComponent(target.slice(hash + 1));
    const url = file === "" ? base : new URL(decodeURIComponent(file), base);
    if (!url.href.startsWith(ROOT.href)) {
      problems.push(`${where}: outside the repository`);
      continue;
    }
    const stat = await Deno.stat(url).catch(() => null);
    if (stat === null) {
      problems.push(`${where}: no such file`);
      continue;
    }
    if (fragment === null) continue;
    if (!stat.isFile || !url.pathname.endsWith(".md")) {
      problems.push(`${where}: an anchor into something not markdown`);
      continue;
    }
    if (!anchorsOf.has(url.href)) {
      anchorsOf.set(url.href, anchors(await Deno.readTextFile(url)));
    }
    if (!anchorsOf.get(url.href)!.has(fragment)) {
      problems.push(`${where}: no heading with that anchor`);
    }
  }
  return problems;
}

// Names: a doc's "`scripts/x.ts` → `name()`" and a header's "Read first:"
// promise that the file defines that name. These read the declarations as
// deno fmt lays them out, with no TypeScript parser: enough to catch a
// renamed or moved function, which is what rots.

const IDENT = String.raw`#?[A-Za-z_$][\w$]*`;
const QUALIFIED = String.raw`${IDENT}(?:\.${IDENT})*`;
/** A name as the docs write it: `name`, `name()`, `Class.member()`. */
const NAME = new RegExp(String.raw`^(${QUALIFIED})(\(\))?$`);
/** What looks like a name but is a file (`chat_server.ts`). */
const FILE_LIKE = /\.(?:ts|md|json|zone|js|mjs|pem|key|html)$/;
/** A source file as the pages write it: `lib/io.ts`, `chat/web.ts`, `x.ts`. */
const PATH = String.raw`(?:[\w-]+\/)*[\w-]+\.ts`;

/** A path from the root; one that does not start at lib/, scripts/ or
 * tests/ is a script's (`echo_server.ts`) or a chapter's (`chat/web.ts`). */
function fromRoot(path: string): string {
  return /^(?:lib|scripts|tests)\//.test(path) ? path : `scripts/${path}`;
}

/**
 * The names a TypeScript file defines, at any depth: functions, classes,
 * interfaces, types, enums, consts and lets (destructured ones too), the
 * names an `export { … }` list gives, a Lua script's `local function`s (the
 * chat room's Redis script is one), and each class's members, both bare
 * (`send`, `#lost`) and qualified (`TcpMember.send`). Comment lines and
 * imports define nothing. A class body is the lines up to the `}` in the
 * class line's own column, as deno fmt writes it.
 */
function definedNames(source: string): Set<string> {
  const names = new Set<string>();
  const code = source
    .replace(/^import\b[\s\S]*?\bfrom\s*["'][^"']*["'];?/gm, "")
    .replace(/^export\s*(?:type\s*)?\{[^}]*\}\s*from\s*["'][^"']*["'];?/gm, "")
    .split("\n")
    .map((line) => /^\s*(?:\/\/|\/\*|\*)/.test(line) ? "" : line);
  const declaration =
    /(?:^|[^\w$.#])(?:function\s*\*?|class|interface|type|enum|const|let|var)\s+([A-Za-z_$][\w$]*)/g;
  const destructured = /\b(?:const|let|var)\s+[{[]([^}\]=]*)[}\]]\s*[:=]/g;
  for (const [index, line] of code.entries()) {
    for (const match of line.matchAll(declaration)) names.add(match[1]);
    for (const match of line.matchAll(destructured)) {
      for (const part of match[1].split(",")) {
        const last = /([A-Za-z_$][\w$]*)\s*(?:=[^,]*)?$/.exec(part.trim());
        if (last) names.add(last[1]);
      }
    }
    const exported = /^export\s*\{([^}]*)\}/.exec(line);
    for (const part of exported?.[1].split(",") ?? []) {
      const name = /([A-Za-z_$][\w$]*)\s*$/.exec(part.trim());
      if (name) names.add(name[1]);
    }
    const lua = /^\s*local\s+function\s+([A-Za-z_]\w*)/.exec(line);
    if (lua) names.add(lua[1]);
    const klass =
      /^(\s*)(?:export\s+)?(?:default\s+)?(?:abstract\s+)?class\s+([A-Za-z_$][\w$]*)[^{]*\{(.*)$/
        .exec(line);
    if (!klass || klass[3].includes("}")) continue; // no class, or `{}`
    const indent = klass[1].length;
    const member = new RegExp(
      String.raw`^ {${
        indent + 2
      }}(?:(?:public|private|protected|static|async|readonly|override|declare|abstract|get|set|accessor)\s+)*\*?(${IDENT})\s*(?:[(<]|[?!]?\s*[:=;])`,
    );
    const end = " ".repeat(indent) + "}";
    for (const body of code.slice(index + 1)) {
      if (body.startsWith(end)) break;
      const found = member.exec(body);
      if (found) {
        names.add(found[1]);
        names.add(`${klass[2]}.${found[1]}`);
      }
    }
  }
  return names;
}

/** Whether a name as written (`Room.deliver()`) is one the set holds. */
function isDefined(name: string, defined: Set<string>): boolean {
  return defined.has(name.replace(/\(\)$/, ""));
}

interface Reference {
  line: number;
  /** The file as the text gives it, from the repository's root. */
  file: string;
  name: string;
}

/**
 * Every place a page says that a file defines a name:
 *
 * - `` `scripts/x.ts` → `name()` `` (options may follow the path:
 *   `` `scripts/http_client.ts --links` ``), and `'s` or `的` in place of →;
 *   the path from the root, or from scripts/ (`` `x.ts` ``, `` `chat/x.ts` ``);
 * - `` [`x.ts`](scripts/x.ts) `name()` `` as the READMEs' tables write it
 *   (the link resolved from the page's folder);
 * - `` `name()`（`lib/x.ts`） ``, the name first and its file in brackets
 *   (a file in a folder: after a bare script name, as in
 *   `` `Deno.resolveDns()`（`dns_lookup.ts`） ``, the name is one it uses);
 *
 * and the names listed after the first, such as `` → `a()`, then `b()` and
 * `C.d` `` (asides in brackets skipped), until the list ends. Paragraphs are
 * read whole, so a reference may wrap; code blocks are skipped.
 */
function nameReferences(markdown: string, page = "README.md"): Reference[] {
  const found: Reference[] = [];
  const base = new URL(page, ROOT);
  const lines = outsideFences(markdown);
  let start = 0;
  while (start < lines.length) {
    if (lines[start].trim() === "") {
      start++;
      continue;
    }
    let end = start;
    while (end < lines.length && lines[end].trim() !== "") end++;
    const offsets: number[] = [];
    let text = "";
    for (const line of lines.slice(start, end)) {
      offsets.push(text.length);
      text += line + " ";
    }
    const first = start + 1;
    const lineAt = (offset: number) =>
      first + offsets.findLastIndex((o) => o <= offset);
    const add = (offset: number, file: string, name: string) =>
      found.push({ line: lineAt(offset), file, name });
    const nameAt = (position: number) => {
      const span = /`([^`]+)`/y;
      span.lastIndex = position;
      const match = span.exec(text);
      if (!match || FILE_LIKE.test(match[1]) || !NAME.test(match[1])) {
        return null;
      }
      return { name: match[1], end: span.lastIndex };
    };
    const files = new RegExp(
      [
        String.raw`\[\`[^\`]*\`\]\((?<link>[^)\s#]+\.ts)\)`,
        String.raw`\`(?<path>${PATH})(?:\s[^\`]*)?\``,
      ].join("|"),
      "g",
    );
    for (const match of text.matchAll(files)) {
      const { link, path } = match.groups!;
      let file: string;
      if (link !== undefined) {
        const url = new URL(link, base);
        if (!url.href.startsWith(ROOT.href)) continue;
        file = url.href.slice(ROOT.href.length);
        if (!/^(?:scripts|lib)\//.test(file)) continue;
      } else file = fromRoot(path);
      const connector = link === undefined
        ? /\s*→\s*|'s\s+|\s*的\s*/y
        : /\s*→\s*|'s\s+|\s*的\s*|\s+/y;
      connector.lastIndex = match.index + match[0].length;
      if (!connector.exec(text)) continue;
      let next = nameAt(connector.lastIndex);
      while (next) {
        add(match.index, file, next.name);
        const more =
          /(?:\s*(?:\((?:[^()]|\([^()]*\))*\)|（[^（）]*）))?(?:\s*,\s*(?:then\s+|and\s+)?|\s+(?:then|and)\s+|\s*[、，]\s*(?:然后\s*)?|\s*和\s*)/y;
        more.lastIndex = next.end;
        next = more.exec(text) ? nameAt(more.lastIndex) : null;
      }
    }
    const reversed = new RegExp(
      String.raw`\`([^\`]+)\`\s*[（(]\s*\`((?:[\w-]+\/)+${PATH})\`\s*[）)]`,
      "g",
    );
    for (const match of text.matchAll(reversed)) {
      if (NAME.test(match[1]) && !FILE_LIKE.test(match[1])) {
        add(match.index, fromRoot(match[2]), match[1]);
      }
    }
    start = end;
  }
  return found.sort((a, b) => a.line - b.line);
}

/**
 * The names a header's `Read first:` line gives: the text after it, asides
 * in brackets and quoted words dropped, cut at commas, "then", "and" and
 * "in"; a piece that is one name (`receive`, `relay()`), or that starts
 * with one that looks like code (`bodyReaderFor(), where …`,
 * `Reader.name`, `#reconnect`, `SCRIPT`), gives that name.
 */
function readFirstNames(line: string): string[] {
  const text = line
    .replace(/^.*?Read first:/, "")
    .replace(/'[^']*'|"[^"]*"/g, "«»")
    .replace(/\s*\([^()]*\s[^()]*\)/g, "");
  const names: string[] = [];
  for (const piece of text.split(/,|\bthen\b|\band\b|\bin\b/)) {
    const words = piece.trim().replace(/\.$/, "").split(/\s+/);
    const name = NAME.exec(words[0]);
    if (!name) continue;
    const codeLike = name[2] !== undefined || /[.#_$A-Z0-9]/.test(name[1]);
    if (words.length === 1 || codeLike) names.push(name[1]);
  }
  return names;
}

/** The leading comment of a source file (a block or `//` lines). */
function headerOf(source: string): string {
  const block = /^\s*\/\*[\s\S]*?\*\//.exec(source);
  if (block) return block[0];
  return /^(?:\s*\/\/.*\n)*/.exec(source)![0];
}

/** The rows of a README's reading order (the table whose first column is
 * "step" or "步骤"): the files each links to and the line counts it gives,
 * both in order. */
function readingOrder(
  markdown: string,
): { line: number; files: string[]; counts: number[] }[] {
  const lines = outsideFences(markdown);
  const header = lines.findIndex((line) =>
    /^\|\s*(?:step|步骤)\s*\|/.test(line)
  );
  const rows = [];
  for (let i = header + 2; header >= 0 && lines[i]?.startsWith("|"); i++) {
    const [, read, counts] = lines[i].split("|").slice(1, -1);
    rows.push({
      line: i + 1,
      files: [...read.matchAll(/\]\(([^)\s]+)\)/g)].map((match) => match[1]),
      counts: [...counts.matchAll(/\d{1,3}(?:,\d{3})+|\d+/g)]
        .map((match) => Number(match[0].replaceAll(",", ""))),
    });
  }
  return rows;
}

// The checker itself, on made-up text, so each rule is seen to catch what
// it is there for.

Deno.test("readme checks: anchors are slugged as GitHub does, repeats numbered", () => {
  const examples: [string, string][] = [
    ["TLS: certificates for your machine", "tls-certificates-for-your-machine"],
    [
      "Many clients at once: threads, select(), asyncio, async/await",
      "many-clients-at-once-threads-select-asyncio-asyncawait",
    ],
    ["The `Listening on` line", "the-listening-on-line"],
    ["Windows 说明", "windows-说明"],
    ["使用 npm 镜像", "使用-npm-镜像"],
    ["TLS：本机的证书（两张）", "tls本机的证书两张"],
    ["`chat_server.ts --web-port`", "chat_serverts---web-port"],
  ];
  for (const [heading, slug] of examples) {
    assert.equal(githubSlug(heading), slug);
  }
  const twice = anchors("# Echo\n## Echo\n```sh\n# Echo\n```\n### Echo\n");
  assert.deepEqual([...twice], ["echo", "echo-1", "echo-2"]);
});

Deno.test("readme checks: a script named only as a basic, or not at all, is missing", () => {
  const scripts = ["echo_server.ts", "http_server.ts"];
  const basics = ["echo_server.ts"];
  assert.deepEqual(
    unnamedScripts(
      "[`basics/echo_server.ts`](scripts/basics/echo_server.ts) and `http_raw_server.ts`",
      scripts,
      basics,
    ),
    ["echo_server.ts", "http_server.ts"],
  );
  assert.deepEqual(
    unnamedScripts(
      "`deno run scripts/echo_server.ts`, `http_server.ts`, basics/echo_server.ts",
      scripts,
      basics,
    ),
    [],
  );
  assert.deepEqual(
    unnamedScripts("echo_server.ts http_server.ts", scripts, basics),
    [
      "basics/echo_server.ts",
    ],
  );
});

Deno.test("readme checks: links are found outside code only", () => {
  const markdown = [
    "See [a](docs/A.md#x) and ![b](b.png 'title') and `[not](a-link)`.",
    "```md",
    "[not](a-link-either)",
    "```",
    "[ref]: ../outside.md",
    '<a href="c.md">c</a>',
  ].join("\n");
  assert.deepEqual(links(markdown), [
    { line: 1, target: "docs/A.md#x" },
    { line: 1, target: "b.png" },
    { line: 5, target: "../outside.md" },
    { line: 6, target: "c.md" },
  ]);
  assert.equal(sectionCount("## a\n```\n## not\n```\n### b\n## c\n"), 2);
});

Deno.test("readme checks: a file's names are its declarations, at any depth, and its classes' members", () => {
  const source = [
    'import { type Reader, writeAll } from "./io.ts";',
    "// function commented() is not code",
    "export { Failure, UsageError as Usage };",
    "const TIMEOUT = 5;",
    "const { a, b: renamed } = options;",
    "export class Empty extends Error {}",
    "export async function startServer() {",
    "  async function serve() {}",
    "  const handler = () => {};",
    "}",
    "class TcpMember implements Member {",
    "  readonly name: string;",
    "  #queue: Uint8Array[] = [];",
    "  constructor() {",
    "    const inner = 1;",
    "  }",
    "  async send(line: Uint8Array) {}",
    "  get size(): number {",
    "    return 0;",
    "  }",
    "  #lost() {}",
    "}",
    "function after() {",
    "  return { close() {} };",
    "}",
    "const LUA = `",
    "local function take(key, name)",
    "`;",
  ].join("\n");
  const names = definedNames(source);
  for (
    const name of [
      "Failure",
      "Usage",
      "TIMEOUT",
      "a",
      "renamed",
      "Empty",
      "startServer",
      "serve",
      "handler",
      "TcpMember",
      "TcpMember.name",
      "TcpMember.#queue",
      "TcpMember.send",
      "TcpMember.size",
      "TcpMember.#lost",
      "#lost",
      "inner",
      "after",
      "take",
    ]
  ) assert.ok(names.has(name), `${name} is defined`);
  for (
    const name of ["Reader", "writeAll", "commented", "Empty.after", "close"]
  ) assert.ok(!names.has(name), `${name} is not defined here`);
  assert.ok(isDefined("TcpMember.send()", names));
  assert.ok(!isDefined("TcpMember.receive()", names), "a wrong method");
  assert.ok(!isDefined("LineReader.readLine()", names), "a wrong class");
  assert.ok(!isDefined("serveClient", names), "a wrong function");
});

Deno.test("readme checks: name references are found in every form the pages use", () => {
  const markdown = [
    "**See it:** `lib/reader.ts` → `BufferedReader.readLine()`; `scripts/x.ts`",
    "→ `a()`, then `b()` (an aside, `not.this()`) and `C.d`, `e`; `scripts/y.ts`",
    "→ `f()`, `scripts/z.ts` → `g()` prints. `lib/server.ts` shows nothing.",
    "",
    "| [`echo_client.ts`](scripts/echo_client.ts) `echoOnce()`: half-close | [`lib/server.ts`](lib/server.ts)'s `serveTcp` |",
    "| `scripts/http_client.ts --links` → `collectLinks()` | `chat_server.ts --web-port` for WebSocket |",
    "",
    "`timeout_client.ts` 的 `request()`；`AbortSignal.timeout()`、`withDeadline()`（`lib/deadline.ts`）",
    "[`basics/x.ts`](scripts/basics/x.ts)，`lib/io.ts` 的 `writeAll()`、`copy()`",
    "`chat/web.ts` 的 `acceptWeb()`；`Deno.resolveDns()`（`dns_lookup.ts`）",
    "",
    "```ts",
    "`scripts/fenced.ts` → `hidden()`",
    "```",
    "[`echo_server.ts`](scripts/echo_server.ts) (bytes, no decoding), `x.ts` → `tcp_proxy.ts`",
  ].join("\n");
  const pairs = (page: string) =>
    nameReferences(markdown, page).map(({ line, file, name }) =>
      `${line} ${file} ${name}`
    );
  assert.deepEqual(pairs("README.md"), [
    "1 lib/reader.ts BufferedReader.readLine()",
    "1 scripts/x.ts a()",
    "1 scripts/x.ts b()",
    "1 scripts/x.ts C.d",
    "1 scripts/x.ts e",
    "2 scripts/y.ts f()",
    "3 scripts/z.ts g()",
    "5 scripts/echo_client.ts echoOnce()",
    "5 lib/server.ts serveTcp",
    "6 scripts/http_client.ts collectLinks()",
    "8 scripts/timeout_client.ts request()",
    "8 lib/deadline.ts withDeadline()",
    "9 lib/io.ts writeAll()",
    "9 lib/io.ts copy()",
    "10 scripts/chat/web.ts acceptWeb()",
  ]);
  // A page in docs/ links with ../, and the file is named from the root.
  assert.deepEqual(
    nameReferences("[`io.ts`](../lib/io.ts) `copy()`", "docs/A.md"),
    [{ line: 1, file: "lib/io.ts", name: "copy()" }],
  );
});

Deno.test("readme checks: a Read first line gives its names, not its prose", () => {
  const examples: [string, string[]][] = [
    [" * Read first: chat(), then Receiver.show.", ["chat", "Receiver.show"]],
    [
      " * Read first: bodyReaderFor(), where the response says where its body ends.",
      ["bodyReaderFor"],
    ],
    [
      " * Read first: serveConnection() (keep-alive, pipelining), then parseHead().",
      ["serveConnection", "parseHead"],
    ],
    [" * Read first: serve() in startUdpServer()", ["serve", "startUdpServer"]],
    [
      "// Read first: RedisLink.#lost, #reconnect and #register.",
      ["RedisLink.#lost", "#reconnect", "#register"],
    ],
    [
      "// Read first: take, then the 'beat' and 'register' branches.",
      ["take"],
    ],
    [
      "// Read first: SCRIPT (connect, show, and the reconnect back-off).",
      ["SCRIPT"],
    ],
    [" * Read first: receive.", ["receive"]],
    [
      " * Read first: openUdpClient(), whose one receive outlives a timeout",
      ["openUdpClient"],
    ],
  ];
  for (const [line, names] of examples) {
    assert.deepEqual(readFirstNames(line), names, line);
  }
  assert.equal(
    headerOf("/**\n * One.\n */\nconst x = 1; /* no */"),
    "/**\n * One.\n */",
  );
  assert.equal(headerOf("// One.\n// Two.\nimport x;\n"), "// One.\n// Two.\n");
});

Deno.test("readme checks: the reading order's files and counts are read in order", () => {
  const markdown = [
    "| step | read | lines | the lesson |",
    "| --- | --- | ---: | --- |",
    "| 1 | [`a.ts`](scripts/a.ts); [`b.ts`](scripts/b.ts) → [`c/d.ts`](scripts/c/d.ts) | 40; 33 → 1,358 | `x`, 2 things |",
    "| 2 | [`e.ts`](scripts/e.ts) | 7 | |",
    "",
    "| other | 1 |",
  ].join("\n");
  assert.deepEqual(readingOrder(markdown), [
    {
      line: 3,
      files: ["scripts/a.ts", "scripts/b.ts", "scripts/c/d.ts"],
      counts: [40, 33, 1358],
    },
    { line: 4, files: ["scripts/e.ts"], counts: [7] },
  ]);
  assert.deepEqual(readingOrder("| 步骤 | 阅读 | 行数 |\n| - | - | - |\n"), []);
});

// The repository as it is.

Deno.test("readme: every script in scripts/ and scripts/basics/ is named in both READMEs", async () => {
  const scripts = await tsFiles("scripts/");
  const basics = await tsFiles("scripts/basics/");
  assert.ok(scripts.length > 0 && basics.length > 0, "no scripts found");
  for (const readme of READMES) {
    assert.deepEqual(
      unnamedScripts(await readText(readme), scripts, basics),
      [],
      `${readme} does not name these scripts`,
    );
  }
});

Deno.test("readme: neither README links outside the repository", async () => {
  for (const readme of READMES) {
    const outward = links(await readText(readme))
      .filter(({ target }) =>
        !isExternal(target) && /(^|\/)\.\.(\/|$)/.test(target)
      )
      .map(({ line, target }) => `${readme}:${line}: ${target}`);
    assert.deepEqual(outward, [], "links that climb out with ../");
  }
});

Deno.test("readme: every relative link in the READMEs and docs/*.md reaches a file, and its #anchor a heading", async () => {
  const pages = [...READMES];
  for await (const entry of Deno.readDir(new URL("docs/", ROOT))) {
    if (entry.isFile && entry.name.endsWith(".md")) {
      pages.push(`docs/${entry.name}`);
    }
  }
  const problems: string[] = [];
  let checked = 0;
  for (const page of pages.sort()) {
    problems.push(...await brokenLinks(page));
    checked += links(await readText(page)).filter((l) =>
      !isExternal(l.target)
    ).length;
  }
  assert.ok(
    checked > 50,
    `only ${checked} relative links found: is the parser blind?`,
  );
  assert.deepEqual(problems, []);
});

Deno.test("readme: both READMEs have the same number of ## sections", async () => {
  const [english, chinese] = await Promise.all(READMES.map(readText));
  assert.equal(
    sectionCount(chinese),
    sectionCount(english),
    "README.zh-CN.md follows README.md section for section",
  );
});

/** The names each source file defines, read once. */
const namesOf = new Map<string, Promise<Set<string> | null>>();
function namesIn(file: string): Promise<Set<string> | null> {
  if (!namesOf.has(file)) {
    namesOf.set(
      file,
      readText(file).then(definedNames, () => null), // null: no such file
    );
  }
  return namesOf.get(file)!;
}

Deno.test("readme: every `file` → `name()` in the READMEs and docs/*.md names a file that exists and a name it defines", async () => {
  const pages = [...READMES];
  for await (const entry of Deno.readDir(new URL("docs/", ROOT))) {
    if (entry.isFile && entry.name.endsWith(".md")) {
      pages.push(`docs/${entry.name}`);
    }
  }
  const problems: string[] = [];
  let checked = 0;
  for (const page of pages.sort()) {
    for (
      const { line, file, name } of nameReferences(await readText(page), page)
    ) {
      checked++;
      const names = await namesIn(file);
      if (names === null) {
        problems.push(`${page}:${line}: ${file}: no such file`);
      } else if (!isDefined(name, names)) {
        problems.push(`${page}:${line}: ${file} defines no ${name}`);
      }
    }
  }
  assert.ok(
    checked > 100,
    `only ${checked} name references found: is the parser blind?`,
  );
  assert.deepEqual(problems, []);
});

Deno.test("readme: every script's Read first line names what it (or a file its header names) defines", async () => {
  const files: string[] = [];
  for (
    const folder of [
      "scripts/",
      "scripts/basics/",
      "scripts/chat/",
      "scripts/http/",
      "scripts/rpc/",
      "scripts/upload/",
    ]
  ) {
    for (const name of await tsFiles(folder).catch(() => [])) {
      files.push(folder + name);
    }
  }
  const problems: string[] = [];
  let checked = 0;
  for (const file of files) {
    const header = headerOf(await readText(file));
    const line = header.split("\n").find((l) => l.includes("Read first:"));
    if (line === undefined) {
      // The full scripts must have one; basics and chapter parts may.
      if (/^scripts\/[^/]+$/.test(file)) {
        problems.push(`${file}: no Read first line`);
      }
      continue;
    }
    const wanted = readFirstNames(line);
    if (wanted.length === 0) {
      problems.push(`${file}: its Read first line names nothing`);
      continue;
    }
    // The script's own names, and those of the files its header names
    // (chat/websocket.ts beside it, lib/terminal.ts from the root).
    const defined = new Set(await namesIn(file));
    const folder = file.slice(0, file.lastIndexOf("/") + 1);
    for (const [mention] of header.matchAll(/[\w./-]+\.ts\b/g)) {
      for (const from of [new URL(folder, ROOT), ROOT]) {
        const path = new URL(mention, from).href.slice(ROOT.href.length);
        if (!/^(?:lib\/|scripts\/(?!basics\/)[^/]+\/)/.test(path)) continue;
        for (const name of await namesIn(path) ?? []) defined.add(name);
      }
    }
    for (const name of wanted) {
      checked++;
      if (!defined.has(name)) {
        problems.push(`${file}: Read first: ${name} is not defined there`);
      }
    }
  }
  assert.ok(checked > 30, `only ${checked} Read first names found`);
  assert.deepEqual(problems, []);
});

Deno.test("readme: the reading order's line counts are the files' own (wc -l)", async () => {
  const problems: string[] = [];
  for (const readme of READMES) {
    const rows = readingOrder(await readText(readme));
    assert.ok(rows.length >= 10, `${readme}: no reading order found`);
    for (const { line, files, counts } of rows) {
      const where = `${readme}:${line}`;
      if (files.length !== counts.length) {
        problems.push(
          `${where}: ${files.length} files, ${counts.length} counts`,
        );
        continue;
      }
      for (const [index, file] of files.entries()) {
        const text = await readText(file).catch(() => null);
        // wc -l counts newlines.
        const lines = text === null ? null : text.split("\n").length - 1;
        if (lines !== counts[index]) {
          problems.push(
            `${where}: ${file} has ${lines ?? "no"} lines, the table says ${
              counts[index]
            }`,
          );
        }
      }
    }
  }
  assert.deepEqual(problems, []);
});
