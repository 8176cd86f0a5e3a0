// lib/terminal.ts: what a peer's text may do to our terminal, and what must
// survive. Exact output for known hostile strings, and sweeps over every
// code point of the Unicode categories the module claims to handle.
import assert from "node:assert/strict";
import { printable, replaceControls } from "../lib/terminal.ts";

// Deno 2.8+ runs tests without the op and resource sanitizers unless asked:
// a leaked socket, timer or pending read must fail these tests.
Deno.test.sanitizer({ ops: true, resources: true });

/** Every code point (as a string) whose character matches `pattern`. */
function codePoints(pattern: RegExp): string[] {
  const found: string[] = [];
  for (let code = 0; code <= 0x10ffff; code++) {
    if (code >= 0xd800 && code <= 0xdfff) continue; // surrogates: not text
    const character = String.fromCodePoint(code);
    if (pattern.test(character)) found.push(character);
  }
  return found;
}

Deno.test("printable escapes C0 controls, DEL and C1 controls as \\xNN", () => {
  assert.equal(printable("a\x1b[2Jb"), "a\\x1b[2Jb");
  assert.equal(printable("\x1b]0;pwned\x07"), "\\x1b]0;pwned\\x07");
  assert.equal(
    printable("line\r\nnext\ttab\0"),
    "line\\x0d\\x0anext\\x09tab\\x00",
  );
  assert.equal(printable("del\x7f"), "del\\x7f");
  assert.equal(printable("csi\u009b2J nel\u0085"), "csi\\x9b2J nel\\x85");
});

Deno.test("printable escapes bidi, zero-width and other format characters as \\u{…}", () => {
  assert.equal(printable("invoice\u202etxt.exe"), "invoice\\u{202e}txt.exe");
  assert.equal(
    printable("a\u200bb\u200dc\u2066d\u2069"),
    "a\\u{200b}b\\u{200d}c\\u{2066}d\\u{2069}",
  );
  assert.equal(printable("\ufeffbom"), "\\u{feff}bom");
  assert.equal(printable("tag\u{e0041}"), "tag\\u{e0041}");
  assert.equal(printable("soft\u00adhyphen"), "soft\\xadhyphen");
});

Deno.test("printable escapes every Cc and Cf code point, each in the documented form", () => {
  const unsafe = codePoints(/[\p{Cc}\p{Cf}]/u);
  assert.ok(unsafe.length > 200, `only ${unsafe.length} code points`);
  for (const character of unsafe) {
    const code = character.codePointAt(0)!;
    const expected = code <= 0xff
      ? `\\x${code.toString(16).padStart(2, "0")}`
      : `\\u{${code.toString(16)}}`;
    assert.equal(printable(`<${character}>`), `<${expected}>`);
    assert.notEqual(printable(character), character);
  }
});

Deno.test("printable keeps text as typed: accents, CJK, emoji, U+FFFD", () => {
  for (
    const text of [
      "plain ASCII ~!@#$%^&*()_+{}|:\"<>?`-=[]\\;',./",
      "café naïve Ünïcödé",
      "中文 日本語 한국어",
      "😀 🚀 👍🏽",
      "replacement \uFFFD stays",
      "",
    ]
  ) {
    assert.equal(printable(text), text, text);
  }
});

Deno.test("printable cuts long text to max characters with an ellipsis", () => {
  assert.equal(printable("x".repeat(200)), "x".repeat(200));
  assert.equal(printable("x".repeat(201)), "x".repeat(200) + "…");
  assert.equal(printable("abcdef", 3), "abc…");
  assert.equal(printable("abc", 3), "abc");
  // The cut comes first, then the escapes: the control is kept, escaped.
  assert.equal(printable("ab\x1bcdef", 3), "ab\\x1b…");
  // A huge peer string costs a slice, not a full scan of the escape.
  const huge = "\x1b".repeat(1_000_000);
  assert.equal(printable(huge, 2), "\\x1b\\x1b…");
});

Deno.test("printable never cuts an emoji in half", () => {
  const cut = printable("a".repeat(199) + "😀 and more");
  assert.ok(cut.isWellFormed(), JSON.stringify(cut.slice(-4)));
  assert.ok(cut.endsWith("…"));
  assert.ok(cut.length <= 201);
  // When it fits, it stays.
  assert.equal(printable("a".repeat(198) + "😀"), "a".repeat(198) + "😀");
});

Deno.test("printable of bytes decoded: invalid UTF-8 becomes U+FFFD, controls are escaped, max applies", () => {
  const printableBytes = (bytes: Uint8Array, max?: number) =>
    printable(new TextDecoder().decode(bytes), max);
  assert.equal(
    printableBytes(new Uint8Array([0x66, 0xff, 0x1b, 0x5b, 0xc3, 0xa9])),
    "f\uFFFD\\x1b[é",
  );
  assert.equal(
    printableBytes(new TextEncoder().encode("y".repeat(10)), 4),
    "yyyy…",
  );
});

Deno.test("replaceControls: controls and bidi become U+FFFD; tab, ZWJ emoji and text stay", () => {
  assert.equal(replaceControls("a\x1b[2Jb"), "a\uFFFD[2Jb");
  assert.equal(replaceControls("cr\rlf\n"), "cr\uFFFDlf\uFFFD");
  assert.equal(replaceControls("del\x7f c1\u009b"), "del\uFFFD c1\uFFFD");
  assert.equal(replaceControls("evil\u202eexe.txt"), "evil\uFFFDexe.txt");
  assert.equal(
    replaceControls("zero\u200bwidth\ufeff"),
    "zero\uFFFDwidth\uFFFD",
  );
  for (
    const kept of [
      "col1\tcol2",
      "family 👨‍👩‍👧‍👦 and 🏳️‍🌈",
      "ZWNJ in Persian: می‌خواهم",
      "flag with tags: 🏴󠁧󠁢󠁳󠁣󠁴󠁿",
      "中文 café 😀",
    ]
  ) {
    assert.equal(replaceControls(kept), kept);
  }
});

Deno.test("replaceControls replaces every control but tab, and every bidi control", () => {
  for (const character of codePoints(/[\p{Cc}\p{Bidi_Control}]/u)) {
    const expected = character === "\t" ? "\t" : "\uFFFD";
    assert.equal(
      replaceControls(`a${character}b`),
      `a${expected}b`,
      `U+${character.codePointAt(0)!.toString(16)}`,
    );
  }
});
