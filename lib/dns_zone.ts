// The data side of the two DNS scripts, kept out of them so that each keeps
// its own lesson in view. dns_server.ts reads its zone file with parseZone
// and finds answers in it with lookUp (the wire format, which is its lesson,
// stays in the script); both scripts read IP address text with ipv4Bytes
// and ipv6Bytes: the server for A and AAAA values, dns_lookup.ts for
// `-x ADDRESS` (4.3.2.1.in-addr.arpa).
//
// Zone file: one record per line, `NAME TYPE VALUE [TTL]`; types A, AAAA,
// CNAME, MX (`PRIORITY HOST`) and TXT (the rest of the line, `#` included,
// so no TTL); lines starting with `#` are comments, and so is a field
// starting with `#` after the fields of the other types. Names are
// case-insensitive: keys are lower case.

import { Failure } from "./cli.ts";

export const DEFAULT_TTL = 300;
/** TXT text longer than this would not fit a TCP message with its name. */
export const MAX_TXT_BYTES = 60_000;
const TYPES = ["A", "AAAA", "CNAME", "MX", "TXT"];

/** One record as the zone file gave it, its values already checked. */
export interface ZoneRecord {
  type: "A" | "AAAA" | "CNAME" | "MX" | "TXT";
  ttl: number;
  /** A and AAAA: the 4 or 16 bytes of the address. */
  address?: Uint8Array;
  /** MX: the priority, lower first. */
  preference?: number;
  /** CNAME and MX: the name pointed to, as labels. */
  target?: string[];
  /** TXT: the text in strings of at most 255 bytes (a DNS TXT limit). */
  strings?: Uint8Array[];
}

/** Records by name key (see nameKey), in file order. */
export type Zone = Map<string, ZoneRecord[]>;

/** A bad zone line; the message names the file and the line. */
export class ZoneError extends Failure {}

/** Parses a zone file's text, or throws ZoneError at the first bad line. */
export function parseZone(text: string, fileName: string): Zone {
  const zone: Zone = new Map();
  text.split("\n").forEach((raw, index) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) return;
    const fail = (why: string): never => {
      throw new ZoneError(`${fileName}:${index + 1}: ${why}`);
    };
    const [name, typeName = "", ...fields] = line.split(/\s+/);
    const labels = parseName(name) ?? fail(`bad name '${name}'`);
    const type = typeName.toUpperCase() as ZoneRecord["type"];
    if (!TYPES.includes(type)) {
      fail(`unknown type '${typeName}' (known: ${TYPES.join(", ")})`);
    }
    const record: ZoneRecord = { type, ttl: DEFAULT_TTL };
    if (type === "TXT") {
      const text = /^\S+\s+\S+\s+(.+)$/.exec(line)?.[1] ?? fail("no text");
      record.strings = splitText(new TextEncoder().encode(text)) ??
        fail(`TXT text over ${MAX_TXT_BYTES} bytes`);
    } else {
      const comment = fields.findIndex((field) => field.startsWith("#"));
      if (comment >= 0) fields.length = comment;
      const expected = type === "MX" ? 2 : 1;
      if (fields.length < expected || fields.length > expected + 1) {
        fail(
          `expected NAME ${typeName} ${
            type === "MX" ? "PRIORITY HOST" : "VALUE"
          } [TTL]`,
        );
      }
      if (fields.length > expected) {
        record.ttl = parseNumber(fields[expected], 0x7fffffff) ??
          fail(`bad TTL '${fields[expected]}'`);
      }
      const value = fields[expected - 1];
      if (type === "A") {
        record.address = ipv4Bytes(value) ??
          fail(`bad IPv4 address '${value}'`);
      } else if (type === "AAAA") {
        record.address = ipv6Bytes(value) ??
          fail(`bad IPv6 address '${value}'`);
      } else {
        record.target = parseName(value) ?? fail(`bad host name '${value}'`);
        if (type === "MX") {
          record.preference = parseNumber(fields[0], 65535) ??
            fail(`bad MX priority '${fields[0]}'`);
        }
      }
    }
    const key = nameKey(labels);
    const records = zone.get(key) ?? [];
    // RFC 1034 §3.6.2: an alias has no other data (resolvers would ignore it).
    if (
      records.length > 0 && (type === "CNAME" || records[0].type === "CNAME")
    ) {
      fail(`${name} has a CNAME, so it can have no other record`);
    }
    // A CNAME chain that comes back to its start would have no end.
    for (let next = record.target, hop = 0; next && type === "CNAME"; hop++) {
      if (nameKey(next) === key || hop > 100) {
        fail(`CNAME loop through ${name}`);
      }
      const alias = zone.get(nameKey(next))?.[0];
      next = alias?.type === "CNAME" ? alias.target : undefined;
    }
    zone.set(key, [...records, record]);
  });
  return zone;
}

/**
 * The records that answer a question for `labels` and `type` ("ANY" for
 * all), following CNAMEs inside the zone: a name holding a CNAME answers
 * any type with it, then with the target's records. `exists` is false only
 * when the name asked for is not in the zone at all (NXDOMAIN).
 */
export function lookUp(zone: Zone, labels: string[], type: string) {
  const answers: { owner: string[]; record: ZoneRecord }[] = [];
  let owner = labels;
  for (let hop = 0; hop < 16; hop++) { // parseZone refuses CNAME loops
    const records = zone.get(nameKey(owner));
    if (!records) return { exists: hop > 0, answers };
    const alias = records[0].type === "CNAME" ? records[0] : undefined;
    if (alias && type !== "CNAME" && type !== "ANY") {
      answers.push({ owner, record: alias });
      owner = alias.target!;
      continue;
    }
    for (const record of records) {
      if (type === "ANY" || record.type === type) {
        answers.push({ owner, record });
      }
    }
    break;
  }
  return { exists: true, answers };
}

/**
 * The key of a name in a Zone: labels joined by dots, lower case (DNS
 * compares names ignoring ASCII case), a dot inside a label escaped so that
 * the labels `a.b` and `a`,`b` never meet.
 */
export function nameKey(labels: string[]): string {
  const dotted = labels.some((label) => label.includes("."));
  const escaped = dotted
    ? labels.map((label) => label.replaceAll(".", "\\."))
    : labels; // the usual case, and the hot path: no copy
  return escaped.join(".").toLowerCase();
}

/** `www.example.test.` → labels: 1–63 of [A-Za-z0-9_-] each, ≤255 bytes. */
function parseName(text: string): string[] | undefined {
  const labels = text.replace(/\.$/, "").split(".");
  const wireLength = labels.reduce((sum, label) => sum + label.length + 1, 1);
  const valid = labels.every((label) => /^[a-z0-9_-]{1,63}$/i.test(label));
  return valid && wireLength <= 255 ? labels : undefined;
}

function parseNumber(text: string, max: number): number | undefined {
  const value = /^\d{1,10}$/.test(text) ? Number(text) : Infinity;
  return value <= max ? value : undefined;
}

/** Cuts text into ≤255-byte strings, never inside a UTF-8 character. */
function splitText(text: Uint8Array): Uint8Array[] | undefined {
  if (text.length > MAX_TXT_BYTES) return undefined;
  const strings: Uint8Array[] = [];
  for (let start = 0; start < text.length;) {
    let end = Math.min(start + 255, text.length);
    while (end < text.length && (text[end] & 0xc0) === 0x80) end--;
    strings.push(text.slice(start, end));
    start = end;
  }
  return strings;
}

/** `192.0.2.1` → 4 bytes. Four decimal numbers 0–255, no leading zeros. */
export function ipv4Bytes(text: string): Uint8Array | undefined {
  // A leading zero means octal to some parsers (010 = 8): refuse, not guess.
  const part = "(0|[1-9]\\d{0,2})";
  const match = new RegExp(`^${part}\\.${part}\\.${part}\\.${part}$`).exec(
    text,
  );
  const numbers = match?.slice(1).map(Number);
  return numbers?.every((n) => n <= 255) ? Uint8Array.from(numbers) : undefined;
}

/** `2001:db8::1` (any RFC 4291 form, `::ffff:192.0.2.1` too) → 16 bytes. */
export function ipv6Bytes(text: string): Uint8Array | undefined {
  // The URL parser implements IPv6 text in all its forms; let it check the
  // address and write it canonically: lower-case groups, at most one "::",
  // a dotted IPv4 tail turned into two groups. The character check keeps
  // "]" and "/" out, which would make the URL mean something else.
  if (!/^[0-9a-f:.]+$/i.test(text)) return undefined;
  let canonical: string;
  try {
    canonical = new URL(`http://[${text}]/`).hostname.slice(1, -1);
  } catch {
    return undefined;
  }
  // Expand "::" to as many zero groups as are missing from the eight.
  const [head, tail] = canonical.split("::");
  const left = head ? head.split(":") : [];
  const right = tail ? tail.split(":") : [];
  const zeros = Array(8 - left.length - right.length).fill("0");
  const bytes = new Uint8Array(16);
  [...left, ...zeros, ...right].forEach((group, index) => {
    const value = parseInt(group, 16);
    bytes[2 * index] = value >> 8;
    bytes[2 * index + 1] = value & 0xff;
  });
  return bytes;
}
