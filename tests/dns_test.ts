// Tests for scripts/dns_server.ts (its codec is scripts/dns/message.ts),
// scripts/dns_lookup.ts and scripts/dns_zone.ts: exact answer bytes
// (compression included), every response code, hostile packets and a seeded
// fuzz run (in-process and over UDP), TCP framing and limits, dig and
// Node's resolver as clients, dnsmasq as a server for the record types our
// server does not hold, IPv6, CLI errors and signals.
import assert from "node:assert/strict";
import { answerQuery } from "../scripts/dns/message.ts";
import { startDnsServer } from "../scripts/dns_server.ts";
import {
  formatRecord,
  lookUp,
  parseServer,
  reverseName,
} from "../scripts/dns_lookup.ts";
import {
  ipv4Bytes,
  ipv6Bytes,
  lookUp as lookUpZone,
  parseZone,
  type Zone,
  ZoneError,
} from "../scripts/dns_zone.ts";
import { UsageError } from "../lib/cli.ts";
import {
  concat,
  hasCommand,
  runScript,
  runTool,
  skipBecause,
  startScript,
  within,
} from "./helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const BIG_TEXT = "x".repeat(2000); // over 1232 bytes: TC over UDP, always
const MID_TEXT = "m".repeat(700); // over 512, under 1232: TC only sans EDNS0

const ZONE_TEXT = `# the zone the tests serve
www.example.test     A      192.0.2.10
www.example.test     A      192.0.2.11    60
www.example.test     AAAA   2001:db8::10
alias.example.test   CNAME  www.example.test
chain.example.test   CNAME  alias.example.test
out.example.test     CNAME  elsewhere.example.org.
example.test         MX     10 mail.example.test
example.test         MX     20 backup.example.test    # a comment
mail.example.test    A      192.0.2.25
example.test         TXT    v=spf1 mx -all
quote.example.test   TXT    say "hi" \\ there
utf8.example.test    TXT    héllo wörld
mid.example.test     TXT    ${MID_TEXT}
big.example.test     TXT    ${BIG_TEXT}
`;
const zone = parseZone(ZONE_TEXT, "test.zone");

// ---------------------------------------------------------------------------
// Messages built and read by the tests themselves, independently of the
// server's code.

const A = 1, CNAME = 5, MX = 15, TXT = 16, AAAA = 28, OPT = 41;

function nameBytes(name: string): number[] {
  const labels = name.replace(/\.$/, "").split(".").filter((l) => l !== "");
  return [...labels.flatMap((l) => [l.length, ...encoder.encode(l)]), 0];
}

interface QueryOptions {
  id?: number;
  flags?: number;
  qclass?: number;
  /** Adds an OPT record advertising this UDP size (and EDNS version). */
  edns?: { size: number; version?: number };
}

function buildQuery(name: string, type: number, options: QueryOptions = {}) {
  const { id = 0x1234, flags = 0x0100, qclass = 1, edns } = options;
  const opt = edns
    ? [0, ...u16(OPT), ...u16(edns.size), 0, edns.version ?? 0]
    : [];
  return Uint8Array.from([
    ...[id, flags, 1, 0, 0, edns ? 1 : 0].flatMap(u16), // the header
    ...nameBytes(name),
    ...u16(type),
    ...u16(qclass),
    ...(edns ? [...opt, 0, 0, 0, 0] : []), // OPT: no flags, no options
  ]);
}

/** A 16-bit number as its two bytes, most significant first. */
function u16(value: number): number[] {
  return [(value >> 8) & 255, value & 255];
}

/** Bytes from hex text; spaces, newlines and `#` comments are ignored. */
function fromHex(text: string): Uint8Array {
  const digits = text.replace(/#.*$/gm, "").replace(/\s+/g, "");
  return Uint8Array.from(
    digits.match(/../g) ?? [],
    (pair) => parseInt(pair, 16),
  );
}

interface Decoded {
  id: number;
  flags: number;
  rcode: number;
  question?: { name: string; type: number };
  answers: { name: string; type: number; ttl: number; data: string }[];
  opt?: { size: number; extendedRcode: number };
}

/**
 * A strict reader of the server's answers: every pointer must go backwards
 * and land inside the message, every count must match the bytes.
 */
function decode(message: Uint8Array): Decoded {
  const view = new DataView(message.buffer, message.byteOffset);
  let at = 12;
  const need = (n: number) => {
    if (at + n > message.length) throw new Error(`cut short at ${at}`);
  };
  const readName = (): string => {
    const labels: string[] = [];
    let position = at, jumped = false, hops = 0;
    while (true) {
      if (position >= message.length) throw new Error("name past the end");
      const size = message[position];
      if (size === 0) break;
      if (size >= 0xc0) {
        const target = view.getUint16(position) & 0x3fff;
        if (target >= position || ++hops > 64) throw new Error("bad pointer");
        if (!jumped) at = position + 2;
        jumped = true;
        position = target;
        continue;
      }
      assert.ok(size <= 63, "label over 63 bytes");
      labels.push(
        String.fromCharCode(
          ...message.subarray(position + 1, position + 1 + size),
        ),
      );
      position += 1 + size;
    }
    if (!jumped) at = position + 1;
    return labels.join(".") + ".";
  };
  need(0);
  const flags = view.getUint16(2);
  const counts = [4, 6, 8, 10].map((offset) => view.getUint16(offset));
  const decoded: Decoded = {
    id: view.getUint16(0),
    flags,
    rcode: flags & 15,
    answers: [],
  };
  for (let i = 0; i < counts[0]; i++) {
    const name = readName();
    need(4);
    decoded.question = { name, type: view.getUint16(at) };
    at += 4;
  }
  for (let i = 0; i < counts[1] + counts[2] + counts[3]; i++) {
    const name = readName();
    need(10);
    const type = view.getUint16(at), klass = view.getUint16(at + 2);
    const ttl = view.getUint32(at + 4), length = view.getUint16(at + 8);
    at += 10;
    need(length);
    const start = at, end = at + length;
    let data: string;
    if (type === A) data = [...message.subarray(start, end)].join(".");
    else if (type === AAAA) {
      data = Array.from(
        { length: 8 },
        (_, g) => view.getUint16(start + 2 * g).toString(16),
      ).join(":");
    } else if (type === CNAME) data = readName();
    else if (type === MX) {
      at += 2;
      data = `${view.getUint16(start)} ${readName()}`;
    } else if (type === TXT) {
      const strings: string[] = [];
      for (let p = start; p < end; p += 1 + message[p]) {
        strings.push(
          decoder.decode(message.subarray(p + 1, p + 1 + message[p])),
        );
      }
      data = strings.join("|");
    } else data = "";
    if (type === CNAME || type === MX) {
      assert.equal(at, end, "RDLENGTH matches the name written");
    }
    at = end;
    if (type === OPT) {
      decoded.opt = { size: klass, extendedRcode: ttl >>> 24 };
    } else decoded.answers.push({ name, type, ttl, data });
  }
  assert.equal(at, message.length, "no bytes after the last record");
  return decoded;
}

const QR = 0x8000, AA = 0x0400, TC = 0x0200;

function ask(packet: Uint8Array, transport: "udp" | "tcp" = "udp") {
  const reply = answerQuery(zone, packet, transport);
  assert.ok(reply, "an answer");
  return { reply, decoded: decode(reply) };
}

/** One UDP exchange with a bounded wait; null if nothing came back. */
async function udpExchange(
  port: number,
  packet: Uint8Array,
  hostname = "127.0.0.1",
  waitMs = 2000,
): Promise<Uint8Array | null> {
  const socket = Deno.listenDatagram({ transport: "udp", hostname, port: 0 });
  const timer = setTimeout(() => socket.close(), waitMs);
  try {
    await socket.send(packet, { transport: "udp", hostname, port });
    const [reply] = await socket.receive();
    return reply.slice();
  } catch {
    return null;
  } finally {
    clearTimeout(timer);
    try {
      socket.close();
    } catch { /* closed by the timer */ }
  }
}

/** Sends DNS messages over one new TCP connection and reads `count` answers. */
async function tcpExchange(
  port: number,
  bytes: Uint8Array,
  count: number,
  hostname = "127.0.0.1",
): Promise<Uint8Array[]> {
  const conn = await Deno.connect({ hostname, port });
  try {
    await conn.write(bytes);
    return await readReplies(conn, count);
  } finally {
    conn.close();
  }
}

/** Reads `count` length-prefixed messages (fewer if the server closes). */
async function readReplies(conn: Deno.Conn, count: number) {
  const replies: Uint8Array[] = [];
  let buffered: Uint8Array = new Uint8Array(0);
  const chunk = new Uint8Array(65_536);
  while (replies.length < count) {
    const n = await within(5000, conn.read(chunk), "TCP answer");
    if (n === null) break;
    buffered = concat(buffered, chunk.subarray(0, n));
    while (buffered.length >= 2) {
      const size = (buffered[0] << 8) | buffered[1];
      if (buffered.length < 2 + size) break;
      replies.push(buffered.slice(2, 2 + size));
      buffered = buffered.slice(2 + size);
    }
  }
  return replies;
}

function framed(...messages: Uint8Array[]): Uint8Array {
  return concat(
    ...messages.flatMap((m) => [Uint8Array.of(m.length >> 8, m.length), m]),
  );
}

const SERVER_FLAGS = ["--unstable-net", "--allow-net", "--allow-read"];
const LOOKUP_FLAGS = ["--unstable-net", "--allow-net"];

async function writeZone(text = ZONE_TEXT): Promise<string> {
  const path = await Deno.makeTempFile({ suffix: ".zone" });
  await Deno.writeTextFile(path, text);
  return path;
}

async function startServerScript(hostname = "127.0.0.1") {
  const path = await writeZone();
  const server = await startScript(
    "dns_server.ts",
    ["--zone", path, "--port", "0", "--hostname", hostname],
    { allow: SERVER_FLAGS },
  );
  return {
    ...server,
    async [Symbol.asyncDispose]() {
      await server.stop();
      await Deno.remove(path);
    },
  };
}

const ipv6Available = (() => {
  try {
    Deno.listen({ hostname: "::1", port: 0 }).close();
    return true;
  } catch {
    return false;
  }
})();

// ---------------------------------------------------------------------------
// The zone file.

Deno.test("zone: records by lower-case name, values checked and encoded", () => {
  const www = zone.get("www.example.test")!;
  assert.deepEqual(www.map((r) => [r.type, r.ttl]), [
    ["A", 300],
    ["A", 60],
    ["AAAA", 300],
  ]);
  assert.deepEqual([...www[0].address!], [192, 0, 2, 10]);
  assert.deepEqual(
    [...www[2].address!],
    [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10],
  );
  const mx = zone.get("example.test")!.filter((r) => r.type === "MX");
  assert.deepEqual(mx.map((r) => [r.preference, r.target!.join(".")]), [
    [10, "mail.example.test"],
    [20, "backup.example.test"],
  ]);
  // TXT is the rest of the line, cut into strings of at most 255 bytes.
  const big = zone.get("big.example.test")![0].strings!;
  assert.deepEqual(big.map((s) => s.length), [
    255,
    255,
    255,
    255,
    255,
    255,
    255,
    215,
  ]);
  assert.equal(
    decoder.decode(zone.get("quote.example.test")![0].strings![0]),
    'say "hi" \\ there',
  );
  // A cut never splits a UTF-8 character.
  const accents = parseZone(`a TXT ${"é".repeat(200)}`, "z").get("a")![0]
    .strings!;
  assert.deepEqual(accents.map((s) => s.length), [254, 146]);
  assert.deepEqual(
    accents.map((s) => new TextDecoder("utf-8", { fatal: true }).decode(s))
      .join(""),
    "é".repeat(200),
  );
  // Names are case-insensitive, a final dot optional.
  const mixed = parseZone("WWW.Example.TEST. A 192.0.2.1", "z");
  assert.deepEqual([...mixed.keys()], ["www.example.test"]);
});

Deno.test("zone: a bad line is one error naming the file and the line", () => {
  const cases: [string, string][] = [
    ["x A 1.2.3", "z.zone:2: bad IPv4 address '1.2.3'"],
    ["x A 01.2.3.4", "z.zone:2: bad IPv4 address '01.2.3.4'"],
    ["x AAAA 1::2::3", "z.zone:2: bad IPv6 address '1::2::3'"],
    [
      "x NS ns.example.test",
      "z.zone:2: unknown type 'NS' (known: A, AAAA, CNAME, MX, TXT)",
    ],
    ["x MX 10", "z.zone:2: expected NAME MX PRIORITY HOST [TTL]"],
    ["x MX 65536 m.test", "z.zone:2: bad MX priority '65536'"],
    ["x A 1.2.3.4 2147483648", "z.zone:2: bad TTL '2147483648'"],
    ["x A 1.2.3.4 60 extra", "z.zone:2: expected NAME A VALUE [TTL]"],
    ["x..y A 1.2.3.4", "z.zone:2: bad name 'x..y'"],
    [
      `${"a".repeat(64)}.test A 1.2.3.4`,
      `z.zone:2: bad name '${"a".repeat(64)}.test'`,
    ],
    ["x TXT", "z.zone:2: no text"],
    ["x CNAME bad_host!", "z.zone:2: bad host name 'bad_host!'"],
    ["x CNAME x", "z.zone:2: CNAME loop through x"],
    [`x TXT ${"t".repeat(60_001)}`, "z.zone:2: TXT text over 60000 bytes"],
  ];
  for (const [line, message] of cases) {
    assert.throws(
      () => parseZone(`# first line\n${line}\n`, "z.zone"),
      (error) => error instanceof ZoneError && error.message === message,
      line,
    );
  }
  assert.throws(
    () => parseZone("a CNAME b\nb CNAME c\nc CNAME a", "z.zone"),
    { message: "z.zone:3: CNAME loop through c" },
  );
  assert.throws(() => parseZone("a A 1.2.3.4\na CNAME b", "z.zone"), {
    message: "z.zone:2: a has a CNAME, so it can have no other record",
  });
  assert.throws(() => parseZone("a CNAME b\na TXT hi", "z.zone"), {
    message: "z.zone:2: a has a CNAME, so it can have no other record",
  });
});

Deno.test("zone: lookUp follows CNAMEs, tells a missing name from a missing type", () => {
  const labels = (name: string) => name.split(".");
  const chain = lookUpZone(zone, labels("chain.example.test"), "A");
  assert.deepEqual(
    chain.answers.map((a) => `${a.owner.join(".")} ${a.record.type}`),
    [
      "chain.example.test CNAME",
      "alias.example.test CNAME",
      "www.example.test A",
      "www.example.test A",
    ],
  );
  assert.deepEqual(lookUpZone(zone, labels("www.example.test"), "MX"), {
    exists: true,
    answers: [],
  });
  assert.deepEqual(lookUpZone(zone, labels("nope.example.test"), "A"), {
    exists: false,
    answers: [],
  });
  assert.equal(
    lookUpZone(zone, labels("alias.example.test"), "CNAME").answers.length,
    1,
  );
  assert.equal(
    lookUpZone(zone, labels("WWW.EXAMPLE.TEST"), "A").answers.length,
    2,
  );
});

Deno.test("ipv4Bytes and ipv6Bytes read every usual form and refuse the rest", () => {
  assert.deepEqual([...ipv4Bytes("0.0.0.0")!], [0, 0, 0, 0]);
  assert.deepEqual([...ipv4Bytes("255.255.255.255")!], [255, 255, 255, 255]);
  for (
    const bad of [
      "256.1.1.1",
      "1.2.3",
      "1.2.3.4.5",
      "01.2.3.4",
      " 1.2.3.4",
      "a.b.c.d",
    ]
  ) {
    assert.equal(ipv4Bytes(bad), undefined, bad);
  }
  const hex = (text: string) =>
    [...ipv6Bytes(text)!].map((b) => b.toString(16).padStart(2, "0")).join("");
  assert.equal(hex("::"), "0".repeat(32));
  assert.equal(hex("::1"), "0".repeat(31) + "1");
  assert.equal(hex("2001:DB8::1"), "20010db8" + "0".repeat(23) + "1");
  assert.equal(hex("::ffff:192.0.2.1"), "0".repeat(20) + "ffffc0000201");
  assert.equal(hex("1:2:3:4:5:6:7:8"), "00010002000300040005000600070008");
  for (
    const bad of [
      "1::2::3",
      "1:2:3:4:5:6:7:8:9",
      "fe80::1%eth0",
      "::1]/x",
      "g::",
      "",
    ]
  ) {
    assert.equal(ipv6Bytes(bad), undefined, bad);
  }
});

// ---------------------------------------------------------------------------
// answerQuery, byte by byte.

Deno.test("answer bytes: header, question echoed, two A records pointing at it", () => {
  const { reply } = ask(buildQuery("www.example.test", A));
  assert.deepEqual(
    reply,
    fromHex(`
    1234 8500 0001 0002 0000 0000    # ID; QR AA RD, NOERROR; 1 question, 2 answers
    03 777777 07 6578616d706c65 04 74657374 00  0001 0001   # www.example.test A IN
    c00c 0001 0001 0000012c 0004 c000020a   # name: pointer to 12; TTL 300; 192.0.2.10
    c00c 0001 0001 0000003c 0004 c000020b   # TTL 60; 192.0.2.11
  `),
  );
});

Deno.test("answer bytes: a CNAME chain written once, every repeat a pointer", () => {
  const { reply } = ask(buildQuery("chain.example.test", A, { flags: 0 }));
  assert.deepEqual(
    reply,
    fromHex(`
    1234 8400 0001 0004 0000 0000    # QR AA (no RD asked); 4 answers
    05 636861696e 07 6578616d706c65 04 74657374 00  0001 0001   # offsets 12..35
    # chain -> alias: "alias" written at 48, then a pointer to "example.test" (18)
    c00c 0005 0001 0000012c 0008  05 616c696173 c012
    # alias (pointer to 48) -> www: "www" written at 68, then the pointer to 18
    c030 0005 0001 0000012c 0006  03 777777 c012
    c044 0001 0001 0000012c 0004 c000020a   # www (pointer to 68) A
    c044 0001 0001 0000003c 0004 c000020b
  `),
  );
});

Deno.test("answers: every type the zone holds, case kept as asked", () => {
  const cases: [string, number, string[]][] = [
    ["www.example.test", AAAA, ["2001:db8:0:0:0:0:0:10"]],
    ["alias.example.test", CNAME, ["www.example.test."]],
    ["alias.example.test", AAAA, [
      "www.example.test.",
      "2001:db8:0:0:0:0:0:10",
    ]],
    ["example.test", MX, ["10 mail.example.test.", "20 backup.example.test."]],
    ["example.test", TXT, ["v=spf1 mx -all"]],
    ["quote.example.test", TXT, ['say "hi" \\ there']],
    ["utf8.example.test", TXT, ["héllo wörld"]],
    ["out.example.test", A, ["elsewhere.example.org."]],
    ["example.test", 255, [
      "10 mail.example.test.",
      "20 backup.example.test.",
      "v=spf1 mx -all",
    ]],
  ];
  for (const [name, type, expected] of cases) {
    const { decoded } = ask(buildQuery(name, type));
    assert.equal(decoded.rcode, 0, name);
    assert.equal(decoded.flags & AA, AA);
    assert.deepEqual(
      decoded.answers.map((a) => a.data),
      expected,
      `${name} ${type}`,
    );
  }
  const { decoded } = ask(buildQuery("WwW.ExAmPlE.tEsT", A));
  assert.equal(decoded.question!.name, "WwW.ExAmPlE.tEsT.");
  assert.deepEqual(decoded.answers.map((a) => a.name), [
    "WwW.ExAmPlE.tEsT.",
    "WwW.ExAmPlE.tEsT.",
  ]);
});

Deno.test("response codes: NXDOMAIN, NODATA, REFUSED, NOTIMP, BADVERS", () => {
  const nx = ask(buildQuery("nope.example.test", A)).decoded;
  assert.equal(nx.rcode, 3);
  assert.equal(nx.flags & AA, AA);
  assert.equal(nx.answers.length, 0);
  assert.equal(nx.question!.name, "nope.example.test.");
  // The name exists, not with that type: NOERROR, no answer.
  const nodata = ask(buildQuery("www.example.test", MX)).decoded;
  assert.deepEqual([nodata.rcode, nodata.answers.length], [0, 0]);
  // A name below an existing one does not exist either.
  assert.equal(ask(buildQuery("a.www.example.test", A)).decoded.rcode, 3);
  // Class CHAOS (3): not ours.
  const chaos = ask(buildQuery("version.bind", TXT, { qclass: 3 })).decoded;
  assert.deepEqual([chaos.rcode, chaos.flags & AA], [5, 0]);
  // Zone transfers and other meta types (128-254): not implemented. Types
  // from 256 up are ordinary data types (CAA is 257): NOERROR, no answer.
  assert.equal(ask(buildQuery("example.test", 252)).decoded.rcode, 4);
  assert.equal(ask(buildQuery("example.test", 128)).decoded.rcode, 4);
  for (const type of [257, 65535, 0]) {
    const decoded = ask(buildQuery("example.test", type)).decoded;
    assert.deepEqual(
      [decoded.rcode, decoded.answers.length],
      [0, 0],
      `${type}`,
    );
  }
  // Opcode 4 (NOTIFY): not implemented; nothing of the packet is echoed.
  const notify = ask(buildQuery("example.test", 6, { flags: 4 << 11 }));
  assert.deepEqual(notify.reply, fromHex("1234 a004 0000 0000 0000 0000"));
  // EDNS version 1: BADVERS, which is 16: 1 in the OPT, 0 in the header.
  const badvers =
    ask(buildQuery("www.example.test", A, { edns: { size: 1232, version: 1 } }))
      .decoded;
  assert.deepEqual([
    badvers.rcode,
    badvers.opt?.extendedRcode,
    badvers.answers.length,
  ], [0, 1, 0]);
});

Deno.test("size: 512 bytes without EDNS0, the offer up to 1232 with it, TC beyond", () => {
  const plain = ask(buildQuery("mid.example.test", TXT)).decoded;
  assert.equal(plain.flags & TC, TC);
  assert.equal(plain.answers.length, 0, "answers cut");
  assert.equal(plain.opt, undefined);
  const edns = ask(
    buildQuery("mid.example.test", TXT, { edns: { size: 4096 } }),
  );
  assert.equal(edns.decoded.flags & TC, 0);
  assert.equal(edns.decoded.answers[0].data.replaceAll("|", ""), MID_TEXT);
  assert.deepEqual(edns.decoded.opt, { size: 1232, extendedRcode: 0 });
  // An offer under 512 counts as 512.
  const tiny =
    ask(buildQuery("www.example.test", A, { edns: { size: 100 } })).decoded;
  assert.equal(tiny.answers.length, 2);
  // 2000 bytes never fit UDP here; TCP carries them.
  const big = ask(
    buildQuery("big.example.test", TXT, { edns: { size: 65535 } }),
  );
  assert.equal(big.decoded.flags & TC, TC);
  assert.ok(big.reply.length <= 1232);
  const tcp = ask(buildQuery("big.example.test", TXT), "tcp").decoded;
  assert.equal(tcp.flags & TC, 0);
  assert.equal(tcp.answers[0].data.replaceAll("|", ""), BIG_TEXT);
});

Deno.test("answers past 64 KiB even over TCP: TC, and the buffer holds", () => {
  const many = Array.from(
    { length: 3 },
    () => `huge.test TXT ${"h".repeat(30_000)}`,
  );
  const huge: Zone = parseZone(many.join("\n"), "huge.zone");
  const reply = answerQuery(huge, buildQuery("huge.test", TXT), "tcp")!;
  const decoded = decode(reply);
  assert.equal(decoded.flags & TC, TC);
  assert.equal(decoded.answers.length, 0);
});

// Hostile packets, each with the header ID beef and RD set. Q is the
// question's tail (type A, class IN); OPT a valid OPT record.
const Q = "0001 0001", OPT_RR = "00 0029 04d0 00000000 0000";
const label63 = "3f" + "61".repeat(63);
const HOSTILE: [string, string][] = [
  ["pointer to itself", `beef 0100 0001 0000 0000 0000  c00c ${Q}`],
  [
    "a label, then a pointer back to it",
    `beef 0100 0001 0000 0000 0000  0161 c00c ${Q}`,
  ],
  ["pointer forwards", `beef 0100 0001 0000 0000 0000  c010 ${Q} 016100`],
  ["pointer past the end", `beef 0100 0001 0000 0000 0000  ffff ${Q}`],
  ["pointer cut in half", `beef 0100 0001 0000 0000 0000  c0`],
  ["label length past the end", `beef 0100 0001 0000 0000 0000  05 6162`],
  ["name without its final zero", `beef 0100 0001 0000 0000 0000  03 616263`],
  [
    "64-byte label (type bits 01)",
    `beef 0100 0001 0000 0000 0000  40 ${"61".repeat(64)} 00 ${Q}`,
  ],
  ["label type 10", `beef 0100 0001 0000 0000 0000  8000 ${Q}`],
  [
    "name over 255 bytes",
    `beef 0100 0001 0000 0000 0000  ${label63.repeat(5)} 00 ${Q}`,
  ],
  ["QDCOUNT 65535", `beef 0100 ffff 0000 0000 0000  00 ${Q}`],
  ["QDCOUNT 0", `beef 0100 0000 0000 0000 0000`],
  ["two questions", `beef 0100 0002 0000 0000 0000  00 ${Q} 00 ${Q}`],
  ["question without type and class", `beef 0100 0001 0000 0000 0000  0161 00`],
  ["ANCOUNT 65535", `beef 0100 0001 ffff 0000 0000  00 ${Q}`],
  ["NSCOUNT 300", `beef 0100 0001 0000 012c 0000  00 ${Q} 000001`],
  [
    "ARCOUNT 1, OPT cut short",
    `beef 0100 0001 0000 0000 0001  00 ${Q} 00 0029 04d0 00`,
  ],
  [
    "RDLENGTH past the end",
    `beef 0100 0001 0000 0000 0001  00 ${Q} 00 0029 04d0 00000000 0009`,
  ],
  [
    "two OPT records",
    `beef 0100 0001 0000 0000 0002  00 ${Q} ${OPT_RR} ${OPT_RR}`,
  ],
  ["OPT with a name", `beef 0100 0001 0000 0000 0001  00 ${Q} 0161 ${OPT_RR}`],
  [
    "OPT in the answer section",
    `beef 0100 0001 0001 0000 0000  00 ${Q} ${OPT_RR}`,
  ],
  [
    "bytes after the last record",
    `beef 0100 0001 0000 0000 0000  00 ${Q} dead`,
  ],
];
const FORMERR_REPLY = fromHex("beef 8101 0000 0000 0000 0000");

Deno.test("hostile packets get FORMERR with the ID, or silence, never an exception", () => {
  for (const [what, hex] of HOSTILE) {
    const problems: string[] = [];
    const reply = answerQuery(
      zone,
      fromHex(hex),
      "udp",
      (why) => problems.push(why),
    );
    assert.deepEqual(reply, FORMERR_REPLY, what);
    assert.equal(problems.length, 1, what);
    assert.match(problems[0], /^FORMERR: /);
  }
  // Not even a header: nothing to answer to.
  for (let length = 0; length < 12; length++) {
    assert.equal(
      answerQuery(zone, new Uint8Array(length).fill(0x41), "udp"),
      null,
    );
  }
  // QR=1: a response. Answering responses lets two servers loop forever.
  const response = buildQuery("www.example.test", A, { flags: 0x8100 });
  assert.equal(answerQuery(zone, response, "udp"), null);
  // A pointer that does go backwards (into the header) is read, not refused.
  const legal = answerQuery(
    zone,
    fromHex(`beef 0100 0001 0000 0000 0000 c004 ${Q}`),
    "udp",
  )!;
  assert.notEqual(decode(legal).rcode, 1);
});

// ---------------------------------------------------------------------------
// The fuzz run: seeded, so a failure can be replayed.

function mulberry32(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const CORPUS = [
  buildQuery("www.example.test", A),
  buildQuery("chain.example.test", AAAA, { edns: { size: 1232 } }),
  buildQuery("example.test", MX, { edns: { size: 4096 } }),
  buildQuery("big.example.test", TXT, { edns: { size: 512 } }),
  buildQuery("nope.example.test", 255),
  fromHex(`beef 0100 0001 0000 0000 0000  03 777777 c004 ${Q}`),
  ...HOSTILE.slice(0, 6).map(([, hex]) => fromHex(hex)),
];
const SPECIAL_BYTES = [0, 1, 0x3f, 0x40, 0x7f, 0x80, 0xc0, 0xc0, 0xff];

function mutate(random: () => number): Uint8Array {
  const pick = <T>(list: T[]) => list[Math.floor(random() * list.length)];
  const base = pick(CORPUS);
  const bytes = [...base];
  const at = () => Math.floor(random() * (bytes.length + 1));
  const mutations = 1 + Math.floor(random() * 3);
  for (let m = 0; m < mutations; m++) {
    switch (Math.floor(random() * 7)) {
      case 0: { // flip a few bits
        for (let i = 0; i < 1 + random() * 4 && bytes.length; i++) {
          bytes[Math.floor(random() * bytes.length)] ^= 1 <<
            Math.floor(random() * 8);
        }
        break;
      }
      case 1: // a byte that means something to a name reader
        if (bytes.length) {
          bytes[Math.floor(random() * bytes.length)] = pick(SPECIAL_BYTES);
        }
        break;
      case 2: // cut short
        bytes.length = at();
        break;
      case 3: { // splice: the head of this one, the tail of another
        const other = pick(CORPUS);
        bytes.splice(
          at(),
          bytes.length,
          ...other.subarray(Math.floor(random() * other.length)),
        );
        break;
      }
      case 4: // random bytes inserted
        bytes.splice(
          at(),
          0,
          ...Array.from(
            { length: 1 + random() * 8 },
            () => Math.floor(random() * 256),
          ),
        );
        break;
      case 5: // counts and flags overwritten
        if (bytes.length >= 12) {
          bytes[2 + Math.floor(random() * 10)] = Math.floor(random() * 256);
        }
        break;
      default: { // a slice repeated
        const start = at(), length = Math.floor(random() * 20);
        bytes.splice(at(), 0, ...bytes.slice(start, start + length));
      }
    }
  }
  return Uint8Array.from(bytes);
}

export const FUZZ_SEED = 20261129;
export const FUZZ_CASES = 20_000;

Deno.test(`fuzz: ${FUZZ_CASES} mutated packets in-process, every answer well-formed`, () => {
  const random = mulberry32(FUZZ_SEED);
  const outcomes = new Map<string, number>();
  const count = (key: string) =>
    outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
  for (let i = 0; i < FUZZ_CASES; i++) {
    const packet = mutate(random);
    const transport = i % 2 ? "udp" : "tcp";
    let reply: Uint8Array | null;
    try {
      reply = answerQuery(zone, packet, transport);
    } catch (error) {
      throw new Error(`case ${i} threw on [${packet}]: ${error}`);
    }
    const silent = packet.length < 12 || (packet[2] & 0x80) !== 0;
    if (reply === null) {
      assert.ok(silent, `case ${i}: silence for a readable query [${packet}]`);
      count("silence");
      continue;
    }
    assert.ok(!silent, `case ${i}: answered [${packet}]`);
    let decoded: Decoded;
    try {
      decoded = decode(reply);
    } catch (error) {
      throw new Error(`case ${i}: broken answer to [${packet}]: ${error}`);
    }
    assert.equal(decoded.id, (packet[0] << 8) | packet[1]);
    assert.equal(decoded.flags & QR, QR);
    assert.ok(
      [0, 1, 3, 4, 5].includes(decoded.rcode),
      `rcode ${decoded.rcode}`,
    );
    if (transport === "udp") {
      assert.ok(reply.length <= 1232, `case ${i}: ${reply.length} bytes`);
    }
    if (decoded.rcode === 1) assert.equal(reply.length, 12);
    count(
      [
        "NOERROR",
        "FORMERR",
        "",
        "NXDOMAIN",
        "NOTIMP",
        "REFUSED",
      ][decoded.rcode],
    );
  }
  console.log(`fuzz outcomes: ${JSON.stringify(Object.fromEntries(outcomes))}`);
  for (const kind of ["silence", "FORMERR", "NOERROR", "NXDOMAIN"]) {
    assert.ok(
      (outcomes.get(kind) ?? 0) > 100,
      `few ${kind}: the fuzz is not reaching it`,
    );
  }
});

Deno.test("fuzz: 5,000 mutated packets over UDP; the server keeps answering, logs no bug", async () => {
  await using server = await startServerScript();
  const started = performance.now();
  const random = mulberry32(FUZZ_SEED + 1);
  const socket = Deno.listenDatagram({
    transport: "udp",
    hostname: "127.0.0.1",
    port: 0,
  });
  let replies = 0;
  const receiving = (async () => {
    try {
      while (true) {
        await socket.receive();
        replies++;
      }
    } catch { /* closed below */ }
  })();
  const to = {
    transport: "udp" as const,
    hostname: "127.0.0.1",
    port: server.port,
  };
  for (let i = 0; i < 5000; i++) {
    await socket.send(mutate(random), to);
    // Let the server keep up now and then; dropped datagrams are allowed.
    if (i % 100 === 99) await new Promise((resolve) => setTimeout(resolve, 5));
  }
  // Then an ordinary question gets its ordinary answer.
  const reply = await udpExchange(
    server.port,
    buildQuery("www.example.test", A, { id: 7 }),
  );
  assert.ok(reply, "no answer after the fuzz");
  assert.deepEqual(decode(reply).answers.map((a) => a.data), [
    "192.0.2.10",
    "192.0.2.11",
  ]);
  socket.close();
  await receiving;
  const output = await server.stop();
  assert.equal(output.code, 0);
  assert.ok(replies > 1000, `only ${replies} replies`);
  assert.doesNotMatch(
    output.stderr,
    /internal error|Uncaught|at .*dns_server\.ts/,
  );
  // Thousands of FORMERRs, yet a line a second at most on stderr.
  const seconds = (performance.now() - started) / 1000;
  const logged = output.stderr.match(/: FORMERR: /g)?.length ?? 0;
  assert.ok(logged >= 1 && logged <= seconds + 1, `${logged} in ${seconds} s`);
  console.log(`UDP fuzz: 5000 sent, ${replies} answered`);
});

// ---------------------------------------------------------------------------
// The server over real sockets.

Deno.test("in-process server answers over UDP and TCP on one port, then closes", async () => {
  await using server = startDnsServer({ zone, port: 0 });
  const query = buildQuery("www.example.test", A);
  const udp = await udpExchange(server.addr.port, query);
  const [tcp] = await tcpExchange(server.addr.port, framed(query), 1);
  assert.deepEqual(udp, answerQuery(zone, query, "udp"));
  assert.deepEqual(tcp, answerQuery(zone, query, "tcp"));
});

Deno.test("TCP: pipelined queries answered in order, also when sent a byte at a time", async () => {
  await using server = startDnsServer({ zone, port: 0 });
  const queries = ["www.example.test", "nope.example.test", "big.example.test"]
    .map(
      (name, i) =>
        buildQuery(name, name.startsWith("big") ? TXT : A, { id: i + 1 }),
    );
  const replies = await tcpExchange(server.addr.port, framed(...queries), 3);
  assert.deepEqual(replies.map((r) => decode(r).id), [1, 2, 3]);
  assert.deepEqual(replies.map((r) => decode(r).rcode), [0, 3, 0]);
  assert.equal(
    decode(replies[2]).answers[0].data.replaceAll("|", ""),
    BIG_TEXT,
  );
  // A byte at a time: the length prefix itself split across reads.
  const conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: server.addr.port,
  });
  for (const byte of framed(queries[0])) await conn.write(Uint8Array.of(byte));
  const buffer = new Uint8Array(1024);
  let got = 0;
  while (got < 2 || got < 2 + ((buffer[0] << 8) | buffer[1])) {
    const n = await within(5000, conn.read(buffer.subarray(got)), "answer");
    assert.ok(n !== null);
    got += n;
  }
  assert.deepEqual(buffer.slice(2, got), answerQuery(zone, queries[0], "tcp"));
  conn.close();
});

Deno.test("TCP: half-close after a query still gets the answer; garbage ends the connection", async () => {
  await using server = startDnsServer({ zone, port: 0 });
  const conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: server.addr.port,
  });
  await conn.write(framed(buildQuery("www.example.test", A)));
  await conn.closeWrite();
  const received = new Uint8Array(
    await new Response(conn.readable).arrayBuffer(),
  );
  assert.equal(received.length, 2 + 66); // length prefix, then the answer
  // A length under 12 cannot hold a header: the server hangs up.
  const bad = await Deno.connect({
    hostname: "127.0.0.1",
    port: server.addr.port,
  });
  await bad.write(Uint8Array.of(0, 3, 1, 2, 3));
  assert.equal(await within(5000, bad.read(new Uint8Array(16)), "close"), null);
  bad.close();
  // A hostile query over TCP: FORMERR, and the connection serves on.
  const [formerr, good] = await tcpExchange(
    server.addr.port,
    framed(fromHex(HOSTILE[0][1]), buildQuery("www.example.test", A)),
    2,
  );
  assert.deepEqual(formerr, FORMERR_REPLY);
  assert.equal(decode(good).answers.length, 2);
});

Deno.test("TCP: a silent or a stalled client is dropped after the idle time", async () => {
  await using server = startDnsServer({ zone, port: 0, tcpIdleMs: 300 });
  const port = server.addr.port;
  const started = performance.now();
  const silent = await Deno.connect({ hostname: "127.0.0.1", port });
  const stalled = await Deno.connect({ hostname: "127.0.0.1", port });
  await stalled.write(Uint8Array.of(0xff, 0xff, 1, 2, 3)); // promises 65535 bytes
  for (const conn of [silent, stalled]) {
    const read = conn.read(new Uint8Array(4));
    assert.equal(await within(5000, read, "idle close"), null);
    conn.close();
  }
  assert.ok(performance.now() - started >= 250, "closed before the idle time");
});

Deno.test("TCP: past the connection cap, a client is closed at once; places free up", async () => {
  // The idle time (10 s) is far above the 5 s the test waits: only the cap
  // can close the third connection in time.
  await using server = startDnsServer({ zone, port: 0, maxConnections: 2 });
  const port = server.addr.port;
  const first = await Deno.connect({ hostname: "127.0.0.1", port });
  const second = await Deno.connect({ hostname: "127.0.0.1", port });
  const third = await Deno.connect({ hostname: "127.0.0.1", port });
  const read = third.read(new Uint8Array(4));
  assert.equal(await within(5000, read, "third closed"), null);
  third.close();
  // The two admitted clients are served.
  const query = framed(buildQuery("www.example.test", A));
  for (const conn of [first, second]) {
    await conn.write(query);
    const [reply] = await readReplies(conn, 1);
    assert.equal(decode(reply).answers.length, 2);
  }
  first.close();
  second.close();
  // Places are free again (the server sees the closes in its own time).
  for (let attempt = 0;; attempt++) {
    const replies = await tcpExchange(port, query, 1).catch(() => []);
    if (replies.length === 1) break;
    assert.ok(attempt < 50, "no place freed");
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
});

Deno.test("UDP: 2,000 queries, 50 in flight at a time, all answered correctly", async () => {
  await using server = startDnsServer({ zone, port: 0 });
  const socket = Deno.listenDatagram({
    transport: "udp",
    hostname: "127.0.0.1",
    port: 0,
  });
  const to = {
    transport: "udp" as const,
    hostname: "127.0.0.1",
    port: server.addr.port,
  };
  const seen = new Set<number>();
  const timer = setTimeout(() => socket.close(), 20_000);
  try {
    for (let batch = 0; batch < 40; batch++) {
      for (let i = 0; i < 50; i++) {
        await socket.send(
          buildQuery("www.example.test", A, { id: batch * 50 + i }),
          to,
        );
      }
      for (let i = 0; i < 50; i++) {
        const [reply] = await socket.receive();
        const decoded = decode(reply);
        assert.equal(decoded.answers.length, 2);
        seen.add(decoded.id);
      }
    }
  } finally {
    clearTimeout(timer);
    try {
      socket.close();
    } catch { /* closed by the timer */ }
  }
  assert.equal(seen.size, 2000);
});

Deno.test("IPv6: the in-process server answers on ::1 over UDP and TCP", async () => {
  if (!ipv6Available) return skipBecause("no IPv6 loopback");
  await using server = startDnsServer({ zone, hostname: "::1", port: 0 });
  const query = buildQuery("www.example.test", AAAA);
  const udp = await udpExchange(server.addr.port, query, "::1");
  assert.deepEqual(decode(udp!).answers.map((a) => a.data), [
    "2001:db8:0:0:0:0:0:10",
  ]);
  const [tcp] = await tcpExchange(server.addr.port, framed(query), 1, "::1");
  assert.equal(decode(tcp).answers.length, 1);
});

// ---------------------------------------------------------------------------
// The scripts as commands.

Deno.test("dns_zone.ts: prints every record as dig shows it, or the first bad line", async () => {
  const path = await writeZone();
  try {
    const allow = [`--allow-read=${path}`];
    const ok = await runScript("dns_zone.ts", [path], { allow });
    assert.equal(ok.code, 0, ok.stderr);
    const mid = ["m".repeat(255), "m".repeat(255), "m".repeat(190)];
    assert.deepEqual(ok.stdout.split("\n").slice(0, 13), [
      "www.example.test. 300 IN A 192.0.2.10",
      "www.example.test. 60 IN A 192.0.2.11",
      "www.example.test. 300 IN AAAA 2001:db8::10",
      "alias.example.test. 300 IN CNAME www.example.test.",
      "chain.example.test. 300 IN CNAME alias.example.test.",
      "out.example.test. 300 IN CNAME elsewhere.example.org.",
      "example.test. 300 IN MX 10 mail.example.test.",
      "example.test. 300 IN MX 20 backup.example.test.",
      'example.test. 300 IN TXT "v=spf1 mx -all"',
      "mail.example.test. 300 IN A 192.0.2.25",
      'quote.example.test. 300 IN TXT "say \\"hi\\" \\\\ there"',
      'utf8.example.test. 300 IN TXT "h\\195\\169llo w\\195\\182rld"',
      `mid.example.test. 300 IN TXT ${mid.map((m) => `"${m}"`).join(" ")}`,
    ]);
    assert.equal(ok.stdout.split("\n").length, 15); // 14 records, then ""
    assert.equal(ok.stderr, `${path}: 14 records, 10 names\n`);
    await Deno.writeTextFile(path, "ok.test A 192.0.2.1\n\nx.test MX 10\n");
    const bad = await runScript("dns_zone.ts", [path], { allow });
    assert.deepEqual([bad.code, bad.stdout, bad.stderr], [
      1,
      "",
      `dns_zone.ts: ${path}:3: expected NAME MX PRIORITY HOST [TTL]\n`,
    ]);
    const absent = await runScript("dns_zone.ts", [`${path}.none`], {
      allow: ["--allow-read"],
    });
    assert.equal(absent.code, 1);
    assert.match(absent.stderr, /^dns_zone\.ts: cannot read .*\.none: .*\n$/);
    for (const args of [[], [path, path], ["--bogus", path]]) {
      const usage = await runScript("dns_zone.ts", args, { allow });
      assert.equal(usage.code, 2, args.join(" "));
      assert.match(usage.stderr, /\nTry 'dns_zone\.ts --help'/);
    }
    const help = await runScript("dns_zone.ts", ["--help"], { allow });
    assert.equal(help.code, 0);
    assert.match(help.stdout, /^Usage: dns_zone\.ts FILE\n/);
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("dns_server.ts: Listening line, answers, SIGTERM and SIGINT exit 0", async () => {
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    const path = await writeZone();
    const server = await startScript("dns_server.ts", [
      "--zone",
      path,
      "--port",
      "0",
    ], {
      allow: SERVER_FLAGS,
    });
    assert.match(
      server.listeningLine,
      /^Listening on udp:\/\/127\.0\.0\.1:\d+$/,
    );
    const reply = await udpExchange(
      server.port,
      buildQuery("mail.example.test", A),
    );
    assert.deepEqual(decode(reply!).answers.map((a) => a.data), ["192.0.2.25"]);
    const started = performance.now();
    const output = await server.stop(signal);
    assert.equal(output.code, 0, signal);
    assert.ok(performance.now() - started < 2000, `${signal} took too long`);
    assert.equal(output.stdout, server.listeningLine + "\n");
    assert.match(output.stderr, /: 10 names\n/);
    await Deno.remove(path);
  }
});

Deno.test("dns_server.ts: usage and zone errors are one line with the right exit code", async () => {
  const help = await runScript("dns_server.ts", ["--help"], {
    allow: SERVER_FLAGS,
  });
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: dns_server\.ts --zone FILE/);
  const missing = await runScript("dns_server.ts", [], { allow: SERVER_FLAGS });
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /^dns_server\.ts: --zone FILE is required\n/);
  const badPort = await runScript("dns_server.ts", [
    "--zone",
    "x",
    "--port",
    "70000",
  ], { allow: SERVER_FLAGS });
  assert.equal(badPort.code, 2);
  const absent = await runScript("dns_server.ts", [
    "--zone",
    "/nonexistent/z.zone",
  ], { allow: SERVER_FLAGS });
  assert.equal(absent.code, 1);
  assert.match(
    absent.stderr,
    /^dns_server\.ts: cannot read \/nonexistent\/z\.zone: .*\n$/,
  );
  const directory = await runScript("dns_server.ts", ["--zone", "/tmp"], {
    allow: SERVER_FLAGS,
  });
  assert.equal(directory.code, 1);
  assert.equal(directory.stderr.split("\n").length, 2, directory.stderr);
  const path = await writeZone("ok.test A 192.0.2.1\nbad.test A 300.1.1.1\n");
  const bad = await runScript("dns_server.ts", ["--zone", path], {
    allow: SERVER_FLAGS,
  });
  assert.equal(bad.code, 1);
  assert.equal(
    bad.stderr,
    `dns_server.ts: ${path}:2: bad IPv4 address '300.1.1.1'\n`,
  );
  await Deno.remove(path);
});

Deno.test("dns_server.ts: --max-connections caps TCP clients only; a bad cap exits 2", async () => {
  const path = await writeZone();
  const server = await startScript(
    "dns_server.ts",
    ["--zone", path, "--port", "0", "--max-connections", "1"],
    { allow: SERVER_FLAGS },
  );
  try {
    const port = server.port;
    const first = await Deno.connect({ hostname: "127.0.0.1", port });
    await first.write(framed(buildQuery("www.example.test", A)));
    assert.equal(decode((await readReplies(first, 1))[0]).answers.length, 2);
    const second = await Deno.connect({ hostname: "127.0.0.1", port });
    const read = second.read(new Uint8Array(4));
    assert.equal(await within(5000, read, "the refusal"), null);
    second.close();
    const udp = await udpExchange(port, buildQuery("mail.example.test", A));
    assert.equal(decode(udp!).answers.length, 1); // UDP has no connections
    first.close();
  } finally {
    const output = await server.stop();
    await Deno.remove(path);
    assert.equal(output.code, 0);
    assert.match(
      output.stderr,
      /refused 127\.0\.0\.1: 1 connections open \(--max-connections\)\n/,
    );
  }
  const bad = await runScript(
    "dns_server.ts",
    ["--zone", "x", "--max-per-address", "0"],
    { allow: SERVER_FLAGS },
  );
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^dns_server\.ts: --max-per-address must be/);
  const help = await runScript("dns_server.ts", ["--help"], {
    allow: SERVER_FLAGS,
  });
  assert.match(help.stdout, /Not for the open internet/);
  assert.match(help.stdout, /--max-connections N .*\n.*\(default 100\)/);
  assert.match(help.stdout, /--max-per-address N .*\n.*\(default 20\)/);
});

Deno.test("dns_server.ts: a port taken over TCP is an error, not half a server", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const path = await writeZone();
  const result = await runScript(
    "dns_server.ts",
    ["--zone", path, "--port", String(listener.addr.port)],
    { allow: SERVER_FLAGS },
  );
  listener.close();
  await Deno.remove(path);
  assert.equal(result.code, 1);
  assert.equal(
    result.stderr.trim().split("\n").at(-1),
    "dns_server.ts: address already in use",
  );
});

// ---------------------------------------------------------------------------
// Peers nobody here wrote: dig and Node's resolver.

const haveDig = await hasCommand("dig");

async function dig(args: string[]): Promise<string> {
  const result = await runTool("dig", ["+time=2", "+tries=1", ...args]);
  return decoder.decode(result.stdout);
}

for (const hostname of ["127.0.0.1", "::1"]) {
  Deno.test(`dig against dns_server.ts on ${hostname}, over UDP and TCP`, async () => {
    if (!haveDig) {
      return skipBecause("dig not installed (apt-get install dnsutils)");
    }
    if (hostname === "::1" && !ipv6Available) {
      return skipBecause("no IPv6 loopback");
    }
    await using server = await startServerScript(hostname);
    const host = hostname.includes(":") ? `[${hostname}]` : hostname;
    assert.equal(
      server.listeningLine,
      `Listening on udp://${host}:${server.port}`,
    );
    const at = [`@${hostname}`, "-p", String(server.port)];
    const cases: [string[], string][] = [
      [["www.example.test"], "192.0.2.10\n192.0.2.11\n"],
      [["www.example.test", "AAAA"], "2001:db8::10\n"],
      [
        ["chain.example.test"],
        "alias.example.test.\nwww.example.test.\n192.0.2.10\n192.0.2.11\n",
      ],
      [
        ["example.test", "MX"],
        "10 mail.example.test.\n20 backup.example.test.\n",
      ],
      [["example.test", "TXT"], '"v=spf1 mx -all"\n'],
      [["quote.example.test", "TXT"], '"say \\"hi\\" \\\\ there"\n'],
      [["utf8.example.test", "TXT"], '"h\\195\\169llo w\\195\\182rld"\n'],
      [["nope.example.test"], ""],
    ];
    for (const transport of ["+notcp", "+tcp"]) {
      for (const [question, expected] of cases) {
        assert.equal(
          await dig([...at, "+short", transport, ...question]),
          expected,
          `${question} ${transport}`,
        );
      }
    }
    const nx = await dig([...at, "nope.example.test"]);
    assert.match(nx, /status: NXDOMAIN/);
    assert.match(nx, /flags: qr aa rd;/);
    assert.match(
      await dig([...at, "www.example.test", "MX"]),
      /status: NOERROR.*\n;; flags: qr aa rd; QUERY: 1, ANSWER: 0/,
    );
    assert.match(
      await dig([...at, "+noedns", "example.test", "SOA"]),
      /status: NOERROR/,
    );
    assert.match(
      await dig([...at, "version.bind", "TXT", "CH"]),
      /status: REFUSED/,
    );
    assert.match(
      await dig([...at, "example.test", "AXFR"]),
      /Transfer failed|NOTIMP/,
    );
  });
}

Deno.test("dig: TC over UDP, then dig's own retry over TCP gets the whole answer", async () => {
  if (!haveDig) {
    return skipBecause("dig not installed (apt-get install dnsutils)");
  }
  await using server = await startServerScript();
  const at = ["@127.0.0.1", "-p", String(server.port)];
  // +ignore: show the truncated answer instead of retrying.
  const cut = await dig([...at, "+ignore", "big.example.test", "TXT"]);
  assert.match(cut, /flags: qr aa tc rd; QUERY: 1, ANSWER: 0/);
  assert.match(cut, /udp: 1232/);
  const retried = await dig([...at, "big.example.test", "TXT"]);
  assert.match(retried, /Truncated, retrying in TCP mode/);
  assert.match(retried, /ANSWER: 1,/);
  assert.match(retried, /\(TCP\)/);
  const short = await dig([...at, "+short", "big.example.test", "TXT"]);
  assert.equal(short.replaceAll(/[" \n]/g, ""), BIG_TEXT);
  // 700 bytes: TC without EDNS0 (512), fine with dig's default 1232.
  assert.match(
    await dig([...at, "+ignore", "+noedns", "mid.example.test", "TXT"]),
    /flags: qr aa tc rd;/,
  );
  assert.match(
    await dig([...at, "mid.example.test", "TXT"]),
    /ANSWER: 1,[^]*\(UDP\)/,
  );
});

const haveNode = await hasCommand("node");

for (const hostname of ["127.0.0.1", "::1"]) {
  Deno.test(`Node's dns.promises.Resolver against dns_server.ts on ${hostname}`, async () => {
    if (!haveNode) return skipBecause("node not installed");
    if (hostname === "::1" && !ipv6Available) {
      return skipBecause("no IPv6 loopback");
    }
    await using server = await startServerScript(hostname);
    const address = hostname.includes(":")
      ? `[${hostname}]:${server.port}`
      : `${hostname}:${server.port}`;
    const script = `
      import dns from "node:dns";
      const resolver = new dns.promises.Resolver({ timeout: 2000, tries: 1 });
      resolver.setServers([${JSON.stringify(address)}]);
      const code = (promise) => promise.catch((error) => error.code);
      console.log(JSON.stringify([
        await resolver.resolve4("www.example.test"),
        await resolver.resolve6("alias.example.test"),
        await resolver.resolveCname("chain.example.test"),
        await resolver.resolveMx("example.test"),
        await resolver.resolveTxt("quote.example.test"),
        (await resolver.resolveTxt("big.example.test"))[0].join("").length,
        await code(resolver.resolve4("nope.example.test")),
        await code(resolver.resolveMx("www.example.test")),
      ]));`;
    const result = await runTool("node", ["--input-type=module", "-e", script]);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(JSON.parse(decoder.decode(result.stdout)), [
      ["192.0.2.10", "192.0.2.11"],
      ["2001:db8::10"],
      ["alias.example.test"],
      [{ exchange: "mail.example.test", priority: 10 }, {
        exchange: "backup.example.test",
        priority: 20,
      }],
      [['say "hi" \\ there']],
      2000,
      "ENOTFOUND",
      "ENODATA",
    ]);
  });
}

// ---------------------------------------------------------------------------
// dns_lookup.ts.

Deno.test("dns_lookup: reverse names, server addresses, dig's quoting", () => {
  assert.equal(reverseName("192.0.2.1"), "1.2.0.192.in-addr.arpa");
  assert.equal(
    reverseName("2001:db8::7"),
    "7.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
  );
  assert.equal(reverseName("example.test"), undefined);
  assert.deepEqual(parseServer("192.0.2.1"), {
    hostname: "192.0.2.1",
    port: 53,
  });
  assert.deepEqual(parseServer("127.0.0.1:8053"), {
    hostname: "127.0.0.1",
    port: 8053,
  });
  assert.deepEqual(parseServer("::1"), { hostname: "::1", port: 53 });
  assert.deepEqual(parseServer("[::1]"), { hostname: "::1", port: 53 });
  assert.deepEqual(parseServer("[::1]:8053"), { hostname: "::1", port: 8053 });
  assert.equal(parseServer(undefined), undefined);
  for (
    const bad of [
      "localhost",
      "localhost:53",
      "[127.0.0.1]:53",
      "1.2.3.4:0",
      "1.2.3.4:65536",
      "::1:x",
      "",
    ]
  ) {
    assert.throws(() => parseServer(bad), UsageError, bad);
  }
  assert.equal(
    formatRecord("TXT", ['a"b\\c', "\x00\xe9~"]),
    '"a\\"b\\\\c" "\\000\\233~"',
  );
  assert.equal(
    formatRecord("MX", { preference: 10, exchange: "mail.test" }),
    "10 mail.test.",
  );
  assert.equal(
    formatRecord("CAA", { critical: true, tag: "issue", value: "ca.test" }),
    '128 issue "ca.test"',
  );
  assert.equal(
    formatRecord("SOA", {
      mname: "ns.test.",
      rname: "h.test.",
      serial: 1,
      refresh: 2,
      retry: 3,
      expire: 4,
      minimum: 5,
    }),
    "ns.test. h.test. 1 2 3 4 5",
  );
  assert.equal(
    formatRecord("SRV", { priority: 1, weight: 2, port: 3, target: "t.test" }),
    "1 2 3 t.test.",
  );
  assert.equal(formatRecord("PTR", "host.test."), "host.test.");
});

Deno.test("dns_lookup.ts against dns_server.ts: every type it serves, and why not", async () => {
  await using server = await startServerScript();
  const at = ["--server", `127.0.0.1:${server.port}`];
  const cases: [string[], string][] = [
    [["www.example.test"], "192.0.2.10\n192.0.2.11\n"],
    [["www.example.test", "--type", "aaaa"], "2001:db8::10\n"],
    [["chain.example.test", "-t", "CNAME"], "alias.example.test.\n"],
    [["chain.example.test"], "192.0.2.10\n192.0.2.11\n"],
    [
      ["example.test", "-t", "MX"],
      "10 mail.example.test.\n20 backup.example.test.\n",
    ],
    [["quote.example.test", "-t", "TXT"], '"say \\"hi\\" \\\\ there"\n'],
    [["utf8.example.test", "-t", "TXT"], '"h\\195\\169llo w\\195\\182rld"\n'],
    [
      ["big.example.test", "-t", "TXT"],
      `${
        Array.from(
          { length: 8 },
          (_, i) => `"${"x".repeat(i < 7 ? 255 : 215)}"`,
        ).join(" ")
      }\n`,
    ],
  ];
  for (const [args, expected] of cases) {
    const result = await runScript("dns_lookup.ts", [...args, ...at], {
      allow: LOOKUP_FLAGS,
    });
    assert.deepEqual([result.code, result.stdout, result.stderr], [
      0,
      expected,
      "",
    ], args.join(" "));
  }
  const nx = await runScript("dns_lookup.ts", ["nope.example.test", ...at], {
    allow: LOOKUP_FLAGS,
  });
  assert.deepEqual([nx.code, nx.stdout, nx.stderr], [
    1,
    "",
    "dns_lookup.ts: nope.example.test: no such name (NXDOMAIN)\n",
  ]);
  const nodata = await runScript("dns_lookup.ts", [
    "www.example.test",
    "-t",
    "MX",
    ...at,
  ], { allow: LOOKUP_FLAGS });
  assert.deepEqual([nodata.code, nodata.stderr], [
    1,
    "dns_lookup.ts: www.example.test: no MX record\n",
  ]);
  // In-process too: the function behind the command.
  assert.deepEqual(
    await lookUp("www.example.test", {
      server: { hostname: "127.0.0.1", port: server.port },
      type: "AAAA",
    }),
    ["2001:db8::10"],
  );
  await assert.rejects(
    lookUp("nope.example.test", {
      server: { hostname: "127.0.0.1", port: server.port },
      timeoutSeconds: 3,
    }),
    { message: "nope.example.test: no such name (NXDOMAIN)" },
  );
});

Deno.test("dns_lookup.ts over IPv6: --server [::1]:PORT", async () => {
  if (!ipv6Available) return skipBecause("no IPv6 loopback");
  await using server = await startServerScript("::1");
  const result = await runScript(
    "dns_lookup.ts",
    ["mail.example.test", "--server", `[::1]:${server.port}`],
    { allow: LOOKUP_FLAGS },
  );
  assert.deepEqual([result.code, result.stdout], [0, "192.0.2.25\n"]);
  const nx = await runScript("dns_lookup.ts", [
    "no.example.test",
    "-s",
    `[::1]:${server.port}`,
  ], { allow: LOOKUP_FLAGS });
  assert.equal(
    nx.stderr,
    "dns_lookup.ts: no.example.test: no such name (NXDOMAIN)\n",
  );
});

Deno.test("dns_lookup.ts: a server that never answers is a timeout, exit 1, in time", async () => {
  // A bound UDP socket that never reads: datagrams vanish, no ICMP comes back.
  const silent = Deno.listenDatagram({
    transport: "udp",
    hostname: "127.0.0.1",
    port: 0,
  });
  const { port } = silent.addr as Deno.NetAddr;
  const started = performance.now();
  const result = await runScript(
    "dns_lookup.ts",
    ["www.example.test", "--server", `127.0.0.1:${port}`, "--timeout", "1.5"],
    { allow: LOOKUP_FLAGS },
  );
  const elapsed = performance.now() - started;
  silent.close();
  assert.deepEqual([result.code, result.stdout], [1, ""]);
  assert.equal(
    result.stderr,
    `dns_lookup.ts: no answer from 127.0.0.1:${port} within 1.5 s\n`,
  );
  assert.ok(elapsed >= 1400 && elapsed < 10_000, `${elapsed} ms`);
});

/** A UDP server that answers every query with `rcode` and no records. */
function startFakeServer(rcode: number) {
  const socket = Deno.listenDatagram({
    transport: "udp",
    hostname: "127.0.0.1",
    port: 0,
  });
  const serving = (async () => {
    try {
      while (true) {
        const [query, from] = await socket.receive();
        const reply = query.slice();
        reply[2] = 0x80 | (query[2] & 0x79);
        reply[3] = rcode;
        reply.fill(0, 6, 12); // no answers, no OPT (cut below)
        let end = 12;
        while (end < reply.length && reply[end] !== 0) end += reply[end] + 1;
        await socket.send(reply.subarray(0, end + 5), from);
      }
    } catch { /* closed */ }
  })();
  return {
    port: (socket.addr as Deno.NetAddr).port,
    async [Symbol.asyncDispose]() {
      socket.close();
      await serving;
    },
  };
}

Deno.test("dns_lookup.ts: REFUSED and SERVFAIL are said as such, exit 1", async () => {
  for (
    const [rcode, word] of [[5, "REFUSED"], [2, "SERVFAIL"], [
      4,
      "NOTIMP",
    ]] as const
  ) {
    await using fake = startFakeServer(rcode);
    const result = await runScript(
      "dns_lookup.ts",
      ["www.example.test", "--server", `127.0.0.1:${fake.port}`],
      { allow: LOOKUP_FLAGS },
    );
    assert.deepEqual(
      [result.code, result.stderr],
      [1, `dns_lookup.ts: 127.0.0.1:${fake.port} answered ${word}\n`],
    );
  }
});

Deno.test("dns_lookup.ts: usage errors exit 2 with one line and a hint", async () => {
  const cases: [string[], string][] = [
    [["x.test", "--type", "HINFO"], "unknown type 'HINFO'"],
    [[], "give one NAME, or -x ADDRESS"],
    [["a.test", "b.test"], "give one NAME, or -x ADDRESS"],
    [["a.test", "-x", "192.0.2.1"], "give one NAME, or -x ADDRESS"],
    [["-x", "192.0.2"], "not an IP: '192.0.2'"],
    [
      ["a.test", "--server", "localhost"],
      "--server: not an IP address[:PORT]: 'localhost'",
    ],
    [
      ["a.test", "--timeout", "0"],
      "--timeout must be a number of seconds above 0 (up to 86400), got '0'",
    ],
    [["a.test", "--bogus"], "Unknown option '--bogus'"],
  ];
  for (const [args, message] of cases) {
    const result = await runScript("dns_lookup.ts", args, {
      allow: LOOKUP_FLAGS,
    });
    assert.equal(result.code, 2, args.join(" "));
    assert.equal(
      result.stderr,
      `dns_lookup.ts: ${message}\nTry 'dns_lookup.ts --help' for more information.\n`,
    );
  }
  const help = await runScript("dns_lookup.ts", ["--help"], {
    allow: LOOKUP_FLAGS,
  });
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: dns_lookup\.ts NAME/);
  // An alias prints its target's records only (Deno.resolveDns drops the
  // CNAMEs); the help says so.
  assert.match(help.stdout, /for an alias, only\s+its target's records/);
  const flagless = await runScript("dns_lookup.ts", ["a.test"], {
    allow: ["--no-config", "--allow-net"],
  });
  assert.deepEqual([flagless.code, flagless.stderr], [
    1,
    "dns_lookup.ts: this needs Deno's --unstable-net flag: deno run --unstable-net --allow-net …\n",
  ]);
});

// ---------------------------------------------------------------------------
// dnsmasq: a server nobody here wrote, for the types dns_server.ts lacks.

const dnsmasq = await hasCommand("dnsmasq")
  ? "dnsmasq"
  : await Deno.stat("/usr/sbin/dnsmasq").then(() => "/usr/sbin/dnsmasq", () =>
    "");

/**
 * Starts dnsmasq on a free loopback port serving `records` (its own option
 * syntax), once "started" shows on its stderr. A free UDP port may be taken
 * over TCP by someone else (dnsmasq wants both): then it tries another.
 */
async function startDnsmasq(records: string[]) {
  for (let attempt = 1;; attempt++) {
    const probe = Deno.listenDatagram({
      transport: "udp",
      hostname: "127.0.0.1",
      port: 0,
    });
    const port = (probe.addr as Deno.NetAddr).port;
    probe.close();
    const child = new Deno.Command(dnsmasq, {
      args: [
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        "--pid-file=",
        "--user=root",
        "--log-facility=-",
        `--port=${port}`,
        ...records,
      ],
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const stderr = child.stderr.pipeThrough(new TextDecoderStream())
      .getReader();
    const stop = async () => {
      try {
        child.kill("SIGTERM");
      } catch { /* it had already exited */ }
      await child.status;
      await stderr.cancel();
    };
    let log = "";
    while (!log.includes("started")) {
      const { value, done } = await within(
        10_000,
        stderr.read(),
        "dnsmasq start",
      );
      if (done) break;
      log += value;
    }
    if (log.includes("started")) return { port, [Symbol.asyncDispose]: stop };
    await stop();
    if (!log.includes("in use") || attempt === 5) {
      throw new Error(`dnsmasq did not start: ${log}`);
    }
  }
}

function soaData(): string {
  const numbers = [2026112901, 7200, 3600, 1209600, 300]
    .flatMap((n) => [...u16(n >>> 16), ...u16(n)]);
  return hexOf([
    ...nameBytes("ns1.example.test"),
    ...nameBytes("hostmaster.example.test"),
    ...numbers,
  ]);
}
const hexOf = (bytes: Iterable<number>) =>
  [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
const caaData = (flags: number, tag: string, value: string) =>
  hexOf([flags, tag.length, ...encoder.encode(tag), ...encoder.encode(value)]);

Deno.test("dns_lookup.ts against dnsmasq: SOA, NS, SRV, CAA, PTR (-x), NXDOMAIN, REFUSED", async () => {
  if (!dnsmasq) {
    return skipBecause("dnsmasq not installed (apt-get install dnsmasq-base)");
  }
  await using server = await startDnsmasq([
    "--host-record=host.example.test,192.0.2.7,2001:db8::7",
    "--srv-host=_sip._tcp.example.test,sip.example.test,5060,10,5",
    "--address=/nx.example.test/",
    `--dns-rr=example.test,6,${soaData()}`,
    `--dns-rr=example.test,2,${hexOf(nameBytes("ns1.example.test"))}`,
    `--dns-rr=example.test,257,${caaData(0, "issue", "ca.example.test")}`,
    `--dns-rr=example.test,257,${caaData(128, "iodef", 'mailto:a"b@x.test')}`,
  ]);
  const at = ["--server", `127.0.0.1:${server.port}`];
  const cases: [string[], string][] = [
    [
      ["example.test", "-t", "SOA"],
      "ns1.example.test. hostmaster.example.test. 2026112901 7200 3600 1209600 300\n",
    ],
    [["example.test", "-t", "NS"], "ns1.example.test.\n"],
    [
      ["example.test", "-t", "CAA"],
      '0 issue "ca.example.test"\n128 iodef "mailto:a\\"b@x.test"\n',
    ],
    [["_sip._tcp.example.test", "-t", "SRV"], "10 5 5060 sip.example.test.\n"],
    [["-x", "192.0.2.7"], "host.example.test.\n"],
    [["-x", "2001:db8::7"], "host.example.test.\n"],
  ];
  // A server may give a record set in any order.
  const sorted = (text: string) => text.split("\n").sort().join("\n");
  for (const [args, expected] of cases) {
    const result = await runScript("dns_lookup.ts", [...args, ...at], {
      allow: LOOKUP_FLAGS,
    });
    assert.deepEqual(
      [result.code, sorted(result.stdout), result.stderr],
      [0, sorted(expected), ""],
      args.join(" "),
    );
  }
  const nx = await runScript("dns_lookup.ts", ["a.nx.example.test", ...at], {
    allow: LOOKUP_FLAGS,
  });
  assert.equal(
    nx.stderr,
    "dns_lookup.ts: a.nx.example.test: no such name (NXDOMAIN)\n",
  );
  // dnsmasq with no upstream refuses what it does not hold.
  const refused = await runScript("dns_lookup.ts", ["elsewhere.test", ...at], {
    allow: LOOKUP_FLAGS,
  });
  assert.deepEqual(
    [refused.code, refused.stderr],
    [1, `dns_lookup.ts: 127.0.0.1:${server.port} answered REFUSED\n`],
  );
});
