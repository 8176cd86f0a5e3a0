// The DNS message, byte by byte, for dns_server.ts: a query read with every
// offset checked (header, question, compressed names, the EDNS0 OPT record)
// and its answer written into one reused buffer, names compressed. No I/O
// here: dns_server.ts moves these messages over UDP and TCP; the tests feed
// answerQuery packets directly, mutated ones too. Part of the DNS chapter;
// the zone it answers from is dns_zone.ts's.

import { lookUp, nameKey } from "../dns_zone.ts";
import type { Zone, ZoneRecord } from "../dns_zone.ts";

const PLAIN_UDP_LIMIT = 512; // RFC 1035 §4.2.1: UDP, for a client sans EDNS0
const EDNS_UDP_LIMIT = 1232; // our most over UDP (DNS Flag Day 2020)
// Numbers from RFC 1035 §3.2 and §4.1.1, and RFC 6891 (EDNS0).
const TYPE = { A: 1, CNAME: 5, MX: 15, TXT: 16, AAAA: 28, ANY: 255 };
const TYPE_NAMES = new Map(Object.entries(TYPE).map(([k, v]) => [v, k]));
const OPT = 41, IN = 1, ANY = 255;
const FORMERR = 1, NXDOMAIN = 3, NOTIMP = 4, REFUSED = 5, BADVERS = 16;
const QR = 0x8000, OPCODE = 0x7800, AA = 0x0400, TC = 0x0200, RD = 0x0100;

// Reading a query. Every read checks the packet's end first; a packet that
// lies becomes a Malformed error, which answerQuery answers with FORMERR.

class Malformed extends Error {}
const fromByte = String.fromCharCode;

class Reader {
  at = 12; // after the header, which answerQuery reads itself
  constructor(readonly bytes: Uint8Array) {}

  u16 = (): number => {
    if (this.at + 2 > this.bytes.length) throw new Malformed("cut short");
    this.at += 2;
    return (this.bytes[this.at - 2] << 8) | this.bytes[this.at - 1];
  };

  /**
   * A name is a run of labels, each a length byte (0–63) and that many
   * bytes, ended by a zero byte or by a 2-byte pointer (top two bits set)
   * to where the rest of the name appeared earlier. A pointer must land
   * before every byte read so far for this name, so each jump goes strictly
   * lower: no loop, no forward jump, no landing past the end.
   */
  name(): string[] {
    const bytes = this.bytes, labels: string[] = [];
    let at = this.at, lowest = this.at, wireLength = 1, jumped = false;
    while (true) {
      if (at >= bytes.length) throw new Malformed("name runs past the end");
      const size = bytes[at];
      if (size === 0) break;
      if (size >= 0xc0) {
        if (at + 2 > bytes.length) throw new Malformed("pointer cut short");
        const target = ((size & 0x3f) << 8) | bytes[at + 1];
        if (target >= lowest) throw new Malformed(`bad pointer to ${target}`);
        if (!jumped) this.at = at + 2; // in the packet, the name ends here
        jumped = true;
        at = lowest = target;
        continue;
      }
      if (size > 63) throw new Malformed(`label type 0x${size.toString(16)}`);
      wireLength += size + 1;
      if (wireLength > 255) throw new Malformed("name over 255 bytes");
      if (at + 1 + size > bytes.length) throw new Malformed("label cut short");
      let label = ""; // one char per byte: any byte survives, as it came
      for (let i = 1; i <= size; i++) label += fromByte(bytes[at + i]);
      labels.push(label);
      at += 1 + size;
    }
    if (!jumped) this.at = at + 1;
    return labels;
  }
}

function readQuery(packet: Uint8Array) {
  const count = (offset: number) => (packet[offset] << 8) | packet[offset + 1];
  if (count(4) !== 1) throw new Malformed(`QDCOUNT is ${count(4)}, not 1`);
  const reader = new Reader(packet);
  const [labels, type, qclass] = [reader.name(), reader.u16(), reader.u16()];
  let edns = false, version = 0, udpLimit = PLAIN_UDP_LIMIT;
  // Walk every record the counts announce, looking for OPT. Each takes at
  // least 11 bytes, so an absurd count runs into the end and stops there.
  const skipped = count(6) + count(8); // answer and authority records
  for (let index = 0; index < skipped + count(10); index++) {
    const owner = reader.name();
    const [rrType, size, ttlHigh, , length] = [1, 2, 3, 4, 5].map(reader.u16);
    reader.at += length;
    if (reader.at > packet.length) throw new Malformed("RDATA cut short");
    if (rrType !== OPT) continue;
    if (edns || owner.length || index < skipped) throw new Malformed("bad OPT");
    // In OPT, the class is the client's UDP size; the TTL's byte 2 the version.
    [edns, version] = [true, ttlHigh & 0xff];
    udpLimit = Math.min(Math.max(size, PLAIN_UDP_LIMIT), EDNS_UDP_LIMIT);
  }
  if (reader.at < packet.length) throw new Malformed("bytes after the end");
  return { labels, type, qclass, edns, version, udpLimit };
}

// Writing an answer, into one buffer for all (nothing awaits while writing;
// answerQuery hands out a copy): room for 64 KiB, plus one record too many.

const out = new Uint8Array(2 * 65_536);
let at = 0;
const written = new Map<string, number>(); // name key → offset, for pointers

function write16(...values: number[]) {
  for (const value of values) {
    out[at++] = value >> 8; // a Uint8Array keeps the low 8 bits
    out[at++] = value;
  }
}

// Compression (RFC 1035 §4.1.4): a suffix of the name written before becomes
// a pointer to it (14 bits); else note where it starts, write one label.
function writeName(labels: string[]) {
  for (let index = 0; index < labels.length; index++) {
    const key = nameKey(labels.slice(index));
    const earlier = written.get(key);
    if (earlier !== undefined) return write16(0xc000 | earlier);
    if (at < 0x4000) written.set(key, at);
    out[at++] = labels[index].length;
    for (const char of labels[index]) out[at++] = char.charCodeAt(0);
  }
  out[at++] = 0;
}

function writeRecord(owner: string[], record: ZoneRecord) {
  writeName(owner);
  write16(TYPE[record.type], IN, record.ttl >>> 16, record.ttl & 0xffff, 0);
  const start = at; // RDATA starts here; its length (the 0 above) comes last
  if (record.preference !== undefined) write16(record.preference);
  if (record.target) writeName(record.target);
  if (record.address) out.set(record.address, at);
  at += record.address?.length ?? 0;
  for (const string of record.strings ?? []) {
    out[at++] = string.length; // TXT: each string is its length, then bytes
    out.set(string, at);
    at += string.length;
  }
  out.set([(at - start) >> 8, at - start], start - 2);
}

/** One packet in, its answer out (a copy), or null if it deserves none. */
export function answerQuery(
  zone: Zone,
  packet: Uint8Array,
  transport: "udp" | "tcp",
  problem: (why: string) => void = () => {},
): Uint8Array | null {
  // The header: ID, flags, and how many questions, answers, authority and
  // additional records follow, 2 bytes each. Without it, there is no answer.
  if (packet.length < 12) return null;
  const flags = (packet[2] << 8) | packet[3];
  if (flags & QR) return null; // an answer: answering it could loop forever
  at = 0;
  written.clear();
  write16((packet[0] << 8) | packet[1], 0, 0, 0, 0, 0); // ID back; rest later
  let rcode = 0, answerFlags = 0, answers = 0;
  let query: ReturnType<typeof readQuery> | undefined;
  try {
    if (flags & OPCODE) rcode = NOTIMP; // we only do QUERY (opcode 0)
    else query = readQuery(packet);
  } catch (error) {
    if (!(error instanceof Malformed)) throw error;
    problem(`FORMERR: ${error.message}`);
    rcode = FORMERR;
  }
  if (query) {
    writeName(query.labels); // the question goes back as asked, case and all
    write16(query.type, query.qclass);
    if (query.version !== 0) rcode = BADVERS; // we speak EDNS version 0
    else if (query.qclass !== IN && query.qclass !== ANY) rcode = REFUSED;
    else if (query.type >= 128 && query.type < ANY) rcode = NOTIMP; // AXFR…
    else {
      answerFlags = AA; // our own data, not a cached copy
      const type = TYPE_NAMES.get(query.type) ?? ""; // "" matches nothing
      const found = lookUp(zone, query.labels, type);
      if (!found.exists) rcode = NXDOMAIN; // else NOERROR, maybe no answer
      // (Neither carries an SOA record, so resolvers do not cache them.)
      // What must fit: the transport's limit, less room for our OPT record.
      const limit = (transport === "udp" ? query.udpLimit : 65_535) -
        (query.edns ? 11 : 0);
      const afterQuestion = at;
      for (const { owner, record } of found.answers) {
        writeRecord(owner, record);
        if (at > limit) break;
        answers++;
      } // too long: cut all answers; TC says "ask again over TCP"
      if (at > limit) [at, answers, answerFlags] = [afterQuestion, 0, AA | TC];
    }
    if (query.edns) { // our OPT: root name, type, our UDP size, the rcode's
      out[at++] = 0; // upper bits, EDNS version 0, no flags, no options
      write16(OPT, EDNS_UDP_LIMIT, (rcode >> 4) << 8, 0, 0);
    }
  }
  const end = at;
  at = 2;
  write16(QR | (flags & (OPCODE | RD)) | answerFlags | (rcode & 0xf));
  write16(query ? 1 : 0, answers, 0, query?.edns ? 1 : 0);
  return out.slice(0, end);
}
