/**
 * Checks a zone file for dns_server.ts, as BIND's named-checkzone does: prints
 * its records as dig shows them, or the first mistake as FILE:LINE: why, exit
 * 1. dns_server.ts loads its --zone with readZone and answers from lookUp.
 *
 * Run:    deno run --allow-read=scripts/dns_example.zone scripts/dns_zone.ts scripts/dns_example.zone
 * Try it: make a line `www.example.test A 192.0.2.300` and run it again
 *
 * One record a line, `NAME TYPE VALUE [TTL]` (TTL 300 unless given): A,
 * AAAA, CNAME, MX (`PRIORITY HOST`), TXT (the rest of the line, `#` too, so
 * no TTL). `#` starts a comment line, or ends the fields of the others.
 * The tutorials call DNS the distributed database mapping host names to IP
 * addresses (000 §1, §2.7) but never show its data: here is one server's
 * share. Real zone files (RFC 1035 §5) also need $ORIGIN, SOA and NS.
 *
 * Read first: parseZone, then lookUp.
 */
import {
  Failure,
  parseCommandLine,
  runCommand,
  UsageError,
} from "../lib/cli.ts";
import { describeError } from "../lib/errors.ts";

export const DEFAULT_TTL = 300;
export const MAX_TXT_BYTES = 60_000; // so that a TCP answer can hold it
const TYPES = ["A", "AAAA", "CNAME", "MX", "TXT"];

const USAGE = `Usage: dns_zone.ts FILE

Checks a zone file for dns_server.ts: prints its records, or the first bad
line as FILE:LINE: why (exit 1). One record a line: NAME TYPE VALUE [TTL];
A, AAAA, CNAME, MX (PRIORITY HOST), TXT (the rest of the line); # comments.`;

/** One record as the zone file gave it, its values already checked. */
export interface ZoneRecord {
  type: "A" | "AAAA" | "CNAME" | "MX" | "TXT";
  ttl: number;
  address?: Uint8Array; // A and AAAA: 4 or 16 bytes
  preference?: number; // MX: lower first
  target?: string[]; // CNAME and MX: the name pointed to, as labels
  strings?: Uint8Array[]; // TXT: pieces of at most 255 bytes (DNS's limit)
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
        const value = type === "MX" ? "PRIORITY HOST" : "VALUE";
        fail(`expected NAME ${typeName} ${value} [TTL]`);
      }
      if (fields.length > expected) {
        record.ttl = parseNumber(fields[expected], 0x7fffffff) ??
          fail(`bad TTL '${fields[expected]}'`);
      }
      const value = fields[expected - 1];
      if (type === "A" || type === "AAAA") {
        record.address = (type === "A" ? ipv4Bytes : ipv6Bytes)(value) ??
          fail(`bad IPv${type === "A" ? 4 : 6} address '${value}'`);
      } else {
        record.target = parseName(value) ?? fail(`bad host name '${value}'`);
        if (type === "MX") {
          record.preference = parseNumber(fields[0], 65535) ??
            fail(`bad MX priority '${fields[0]}'`);
        }
      }
    }
    const key = nameKey(labels);
    const old = zone.get(key) ?? [];
    // RFC 1034 §3.6.2: an alias has no other data (resolvers would ignore it).
    if (old.length > 0 && (type === "CNAME" || old[0].type === "CNAME")) {
      fail(`${name} has a CNAME, so it can have no other record`);
    }
    // A CNAME chain that comes back to its start would have no end.
    for (let next = record.target, i = 0; next && type === "CNAME"; i++) {
      if (nameKey(next) === key || i > 100) fail(`CNAME loop through ${name}`);
      const alias = zone.get(nameKey(next))?.[0];
      next = alias?.type === "CNAME" ? alias.target : undefined;
    }
    zone.set(key, [...old, record]);
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
    const wanted = records.filter((r) => type === "ANY" || r.type === type);
    answers.push(...wanted.map((record) => ({ owner, record })));
    break;
  }
  return { exists: true, answers };
}

/** A name's key in a Zone: lower case (DNS ignores ASCII case), labels
 * joined by dots, a dot inside one escaped (`a.b` is not `a`,`b`). */
export function nameKey(labels: string[]): string {
  if (labels.some((label) => label.includes("."))) {
    labels = labels.map((label) => label.replaceAll(".", "\\."));
  } // else, the usual case and the hot path: no copy
  return labels.join(".").toLowerCase();
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
  const parts = text.split(".");
  const valid = parts.length === 4 &&
    parts.every((part) => /^(0|[1-9]\d{0,2})$/.test(part) && +part <= 255);
  return valid ? Uint8Array.from(parts, Number) : undefined;
}

/** `2001:db8::1` (any RFC 4291 form, `::ffff:192.0.2.1` too) → 16 bytes. */
export function ipv6Bytes(text: string): Uint8Array | undefined {
  // The URL parser knows IPv6 text in all its forms: it checks the address
  // and writes it short (lower case, one "::" at most, an IPv4 tail as two
  // groups). The character check keeps out "]" and "/", which would change
  // the URL. Then "::" becomes as many zero groups as the eight lack.
  const short = /^[0-9a-f:.]+$/i.test(text) ? ipv6Text(text) : undefined;
  if (short === undefined) return undefined;
  const zeros = 8 - short.split(":").filter(Boolean).length;
  const groups = short.replace("::", `:${"0:".repeat(zeros)}`)
    .replace(/^:|:$/g, "").split(":").map((group) => parseInt(group, 16));
  return Uint8Array.from(groups.flatMap((group) => [group >> 8, group]));
}

/** IPv6 text in its canonical (RFC 5952) form, by the URL parser. */
function ipv6Text(text: string): string | undefined {
  const url = `http://[${text}]/`;
  return URL.canParse(url) ? new URL(url).hostname.slice(1, -1) : undefined;
}

/** Bytes (one char each) quoted as dig does: `"` `\` escaped, others \DDD. */
export function quote(bytes: string): string {
  const code = (char: string) => String(char.charCodeAt(0)).padStart(3, "0");
  const escape = (char: string) =>
    `\\${/["\\]/.test(char) ? char : code(char)}`;
  return `"${bytes.replace(/["\\]|[^ -~]/g, escape)}"`;
}

/** One record as dig prints it: `www.example.test. 300 IN A 192.0.2.10`. */
export function formatZoneRecord(name: string, record: ZoneRecord): string {
  const { type, address, preference, target, strings } = record;
  // AAAA: 32 hex digits, a colon after every 4, then written short.
  const hex = [...address ?? []].map((b) => b.toString(16).padStart(2, "0"));
  const value = type === "A"
    ? address!.join(".")
    : type === "AAAA"
    ? ipv6Text(hex.join("").replace(/(....)(?!$)/g, "$1:"))
    : target
    ? `${preference ?? ""} ${target.join(".")}.`.trimStart()
    : strings!.map((bytes) => quote(String.fromCharCode(...bytes))).join(" ");
  return `${name}. ${record.ttl} IN ${type} ${value}`;
}

/** Reads and parses a zone file: one line saying why, if it cannot. */
export async function readZone(path: string): Promise<Zone> {
  const text = await Deno.readTextFile(path).catch((error) => {
    throw new Failure(`cannot read ${path}: ${describeError(error)}`);
  });
  return parseZone(text, path);
}

if (import.meta.main) {
  await runCommand("dns_zone.ts", async () => {
    const { positionals } = parseCommandLine(Deno.args, {
      usage: USAGE,
      options: {},
      positionals: true,
    });
    const [file, ...more] = positionals;
    if (!file || more.length > 0) throw new UsageError("give one zone FILE");
    const zone = await readZone(file);
    const all = [...zone].flatMap(([name, records]) =>
      records.map((record) => formatZoneRecord(name, record))
    );
    if (all.length > 0) console.log(all.join("\n"));
    console.error(`${file}: ${all.length} records, ${zone.size} names`);
  });
}
