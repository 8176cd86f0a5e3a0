// Tests for lib/http1.ts, the HTTP/1.1 grammar http_client.ts and
// http_raw_server.ts share: the byte-level rules on exact inputs. (Its
// field-line reader is tested through the response head, in
// http_response_test.ts.)
import assert from "node:assert/strict";
import {
  encodeLatin1,
  type FieldLine,
  hasControls,
  latin1,
  parseContentLength,
  parseFieldLine,
} from "../lib/http1.ts";
import { concat, randomBytes } from "./helpers.ts";

// Every byte value, then 300 KB of random bytes: longer than one batch.
const BINARY = concat(
  Uint8Array.from({ length: 256 }, (_, i) => i),
  randomBytes(300_000),
);

Deno.test("parseFieldLine: token name, colon, value trimmed of spaces and tabs", () => {
  const field: FieldLine = { nameEnd: -1, valueStart: -1, valueEnd: -1 };
  const parse = (text: string) => {
    const bytes = encodeLatin1(text);
    if (!parseFieldLine(bytes, 0, bytes.length, field)) return null;
    return [
      latin1(bytes, 0, field.nameEnd),
      latin1(bytes, field.valueStart, field.valueEnd),
    ];
  };
  assert.deepEqual(parse("Host: example.com"), ["Host", "example.com"]);
  assert.deepEqual(parse("X-Odd!#$%&'*+-.^_`|~9:  \t v a l \t "), [
    "X-Odd!#$%&'*+-.^_`|~9",
    "v a l",
  ]);
  assert.deepEqual(parse("Empty:"), ["Empty", ""]);
  assert.deepEqual(parse("Empty:   "), ["Empty", ""]);
  assert.deepEqual(parse("Obs-Text: \xe9\xff"), ["Obs-Text", "\xe9\xff"]);
  for (
    const bad of [
      ": no name",
      "Space Before: x",
      "Space-Before : x",
      " Folded: x",
      "\tFolded: x",
      "No colon",
      "Nul: a\x00b",
      "Cr: a\rb",
      "Lf: a\nb",
      "Esc: \x1b[2J",
      "Del: a\x7fb",
      "Ünïcode-Name: x",
      "(paren): x",
    ]
  ) {
    assert.equal(parse(bad), null, JSON.stringify(bad));
  }
  // Only [from, to) is looked at: a line inside a larger buffer.
  const buffer = encodeLatin1("GET / HTTP/1.1\r\nA: 1\r\nB: 22\r\n\r\n");
  assert.ok(parseFieldLine(buffer, 22, 27, field));
  assert.deepEqual([field.nameEnd, field.valueStart, field.valueEnd], [
    23,
    25,
    27,
  ]);
  assert.equal(hasControls(buffer, 0, 14), false);
  assert.equal(hasControls(buffer, 0, 15), true);
});

Deno.test("parseContentLength: digits only, a safe integer, every copy the same", () => {
  const parse = (text: string, previous?: number) => {
    const bytes = encodeLatin1(text);
    return parseContentLength(bytes, 0, bytes.length, previous);
  };
  assert.equal(parse("0"), 0);
  assert.equal(parse("12"), 12);
  assert.equal(parse("007"), 7);
  assert.equal(parse("3, 3"), 3);
  assert.equal(parse("3,3,\t3"), 3);
  assert.equal(parse("3", 3), 3); // a repeated field that agrees
  assert.equal(parse("9007199254740991"), Number.MAX_SAFE_INTEGER);
  for (
    const bad of [
      "",
      " ",
      "-1",
      "+1",
      "1.0",
      "1e3",
      "0x10",
      "1 2",
      "3, 4",
      "3,",
      ",3",
      "3,,3",
      "١٢", // Arabic-Indic digits are not DIGIT
      "9007199254740992", // past 2^53: no longer exact
      "12345678901234567", // 17 digits
    ]
  ) {
    assert.equal(parse(bad), -1, JSON.stringify(bad));
  }
  assert.equal(parse("4", 3), -1); // a repeated field that disagrees
});

Deno.test("latin1 and encodeLatin1: every byte value round-trips, in long runs too", () => {
  const all = Uint8Array.from({ length: 256 }, (_, i) => i);
  const text = latin1(all);
  assert.equal(text.length, 256);
  assert.equal(text.charCodeAt(0xe9), 0xe9);
  assert.deepEqual(encodeLatin1(text), all);
  assert.equal(latin1(all, 0x41, 0x44), "ABC");
  // Longer than one String.fromCharCode batch (8192).
  assert.deepEqual(encodeLatin1(latin1(BINARY)), BINARY);
});
