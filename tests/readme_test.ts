// Keeps README.md and README.zh-CN.md in step with the scripts and with each
// other, and the links in them and in docs/ true: every script is named in
// both READMEs, both have the same number of `## ` sections, neither links
// outside the repository, and every relative link reaches a file that exists
// (and its #anchor a heading there, slugged as GitHub slugs them).

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
