// A peer's text, shown to a person safely: it may hold escape sequences
// (`\x1b[2J` clears the screen) or bidi and zero-width characters that make
// one name look like another (`invoice\u202etxt.exe`). What we print or log
// goes through printable() (messages, logs), writeReply() (the udp and
// timeout clients' replies), printableJson() (multi_connect, rpc_client) or
// replaceControls() (chat lines relayed to other people's terminals).
import { concat, writeAll } from "./io.ts";

// C0 and C1 controls, DEL, and the invisible format characters (bidi
// overrides and isolates, zero-width space/joiners, BOM…).
const UNSAFE = /[\p{Cc}\p{Cf}]/u;
const UNSAFE_ALL = /[\p{Cc}\p{Cf}]/gu;

function escapeCharacter(character: string): string {
  const code = character.codePointAt(0)!;
  return code <= 0xff
    ? `\\x${code.toString(16).padStart(2, "0")}`
    : `\\u{${code.toString(16)}}`;
}

/** `text` with every control and format character shown as an escape
 * (`\x1b`, `\u{202e}`), cut to `max` characters with "…". */
export function printable(text: string, max = 200): string {
  // Cut between characters: never between the two halves of an emoji.
  const shown = text.length > max
    ? text.slice(0, max).replace(/[\ud800-\udbff]$/, "") + "…"
    : text;
  return UNSAFE.test(shown)
    ? shown.replace(UNSAFE_ALL, escapeCharacter)
    : shown;
}

/** A peer's reply on stdout, and a newline unless it ends with one: exact
 * bytes into a pipe or a file, through printable() on a terminal. */
export async function writeReply(reply: Uint8Array): Promise<void> {
  let bytes = reply;
  if (Deno.stdout.isTerminal()) {
    const text = new TextDecoder().decode(reply).replace(/\r?\n$/, "");
    bytes = new TextEncoder().encode(printable(text, Infinity) + "\n");
  }
  if (bytes.at(-1) !== 0x0a) bytes = concat([bytes, new Uint8Array([0x0a])]);
  await writeAll(Deno.stdout, bytes);
}

/** JSON.stringify, with DEL, C1 controls (U+009B starts a terminal command)
 * and format characters (U+202E) as \u escapes too; it parses the same. */
export function printableJson(value: unknown, indent = 2): string {
  return JSON.stringify(value, null, indent).replace(
    /[\x7f-\x9f\p{Cf}]/gu,
    (character) =>
      // one \u per UTF-16 unit: two above U+FFFF
      character.split("").map((unit) =>
        `\\u${unit.charCodeAt(0).toString(16).padStart(4, "0")}`
      ).join(""),
  );
}

// Relayed text loses controls and bidi/invisible characters to U+FFFD, but
// keeps tab and the joiners that hold emoji together (U+200C, U+200D).
const UNSAFE_IN_TEXT =
  // deno-lint-ignore no-control-regex
  /[\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]/g;

export function replaceControls(text: string): string {
  return text.replace(UNSAFE_IN_TEXT, "\uFFFD");
}
