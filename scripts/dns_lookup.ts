/**
 * Looks a name up in DNS and prints the answer one record per line, like
 * `dig +short`; -x looks an address up (its PTR record).
 *
 * Run:    deno run --unstable-net --allow-net --allow-read=/etc/resolv.conf scripts/dns_lookup.ts example.com [--type MX]
 * Try it: deno run --unstable-net --allow-net scripts/dns_lookup.ts www.example.test --server 127.0.0.1:8053
 *         with dns_server.ts running; dig +short @127.0.0.1 -p 8053 www.example.test agrees
 *
 * The tutorials call DNS the distributed database from host names to IP
 * addresses (000 §1, §2.7) and leave the lookup out of sight, inside
 * connect(('www.baidu.com', 80)) (003 §TCP编程) or bind(('localhost', 9999))
 * (001 §3). Here it is a step of its own, done by Deno.resolveDns: ten record
 * types, the server of your choice, a deadline, reverse lookups (-x 192.0.2.1
 * asks for the PTR record of 1.2.0.192.in-addr.arpa). Deno.resolveDns turns
 * every negative answer into one NotFound error, so the script then asks the
 * server once more by hand, in one UDP datagram, and reads the response code
 * in the reply's header: no such name (NXDOMAIN), no record of that type
 * (NOERROR), REFUSED, SERVFAIL. It also drops the CNAMEs on the way to an
 * alias's records, which dig +short shows: ask for -t CNAME to see them.
 *
 * Read first: lookUp, then askResponseCode.
 */
import { Failure, parseCommandLine, parseInteger } from "../lib/cli.ts";
import { requireUnstableNet, runCommand, UsageError } from "../lib/cli.ts";
import { parseSeconds } from "../lib/cli.ts";
import { seconds, withDeadline } from "../lib/deadline.ts";
import { closeQuietly, formatHostPort } from "../lib/io.ts";
import { ipv4Bytes, ipv6Bytes, quote } from "./dns_zone.ts";

export const DEFAULT_TIMEOUT = 5; // seconds
/** The types Deno.resolveDns answers, and their numbers on the wire. */
const TYPES = "A NS CNAME SOA PTR MX TXT AAAA SRV CAA".split(" ");
const NUMBERS = [1, 2, 5, 6, 12, 15, 16, 28, 33, 257];
const RCODES = "NOERROR FORMERR SERVFAIL NXDOMAIN NOTIMP REFUSED".split(" ");

const USAGE =
  `Usage: dns_lookup.ts NAME [--type TYPE] [--server HOST[:PORT]] [--timeout S]
       dns_lookup.ts -x ADDRESS [--server HOST[:PORT]] [--timeout S]

Prints the records of NAME one per line, like dig +short (for an alias, only
its target's records: -t CNAME shows the alias). Exits 1 when there are none
(no such name, no such record, a refusal, a failure, no answer).

Options:
  -t, --type TYPE           ${TYPES.join(", ")} (default A)
  -s, --server HOST[:PORT]  an IP address, port 53 unless given (127.0.0.1:8053,
                            [::1]:8053); default: the system's resolver
  --timeout SECONDS         give up after this long (default ${DEFAULT_TIMEOUT})
  -x, --reverse ADDRESS     look up the PTR record of an IPv4 or IPv6 address
  -h, --help                show this help`;

/** A DNS server's address: an IP address (no name) and a port. */
export type NameServer = { hostname: string; port: number };

export interface LookupOptions {
  type?: Deno.RecordType;
  server?: NameServer;
  timeoutSeconds?: number;
}

/**
 * Resolves `name` and returns its records as dig +short prints them. When
 * there is none, throws Failure with one line saying why.
 */
export async function lookUp(
  name: string,
  options: LookupOptions = {},
): Promise<string[]> {
  const { type = "A", server, timeoutSeconds = DEFAULT_TIMEOUT } = options;
  const where = server
    ? formatHostPort(server.hostname, server.port)
    : "the system's resolver";
  const nameServer = server && { ipAddr: server.hostname, port: server.port };
  const ms = timeoutSeconds * 1000, endsAt = performance.now() + ms;
  const deadline = AbortSignal.timeout(ms);
  while (true) {
    try {
      const options = { nameServer, signal: deadline };
      const records = await Deno.resolveDns(name, type, options);
      return records.map((record) => formatRecord(type, record));
    } catch (error) {
      if (deadline.aborted) {
        throw new Failure(`no answer from ${where} within ${seconds(ms)}`);
      }
      // With a signal, Deno's resolver gives up after about a second; ask
      // again until our own deadline, as dig retries.
      if (error instanceof Deno.errors.TimedOut) continue;
      if (!(error instanceof Deno.errors.NotFound)) {
        const why = (error as Error).message.replace(/^proto error: /, "");
        throw new Failure(`${name}: ${why}`);
      }
      const asked = server ?? await systemNameServer();
      const left = Math.min(2000, endsAt - performance.now());
      const code = await askResponseCode(name, type, asked, left);
      if (code === 0) throw new Failure(`${name}: no ${type} record`);
      if (code === 3) throw new Failure(`${name}: no such name (NXDOMAIN)`);
      if (code !== undefined) {
        throw new Failure(`${where} answered ${RCODES[code] ?? code}`);
      }
      throw new Failure(`${name}: no ${type} record, or no such name`);
    }
  }
}

/**
 * Asks again in a DNS message of our own and returns the reply's response
 * code, or undefined if none comes within `ms`. The message: a 12-byte
 * header (a random ID; flags: recursion desired; one question), then the
 * name as length-prefixed labels, the empty label, type and class.
 */
export async function askResponseCode(
  name: string,
  type: Deno.RecordType,
  server: NameServer | undefined,
  ms: number,
): Promise<number | undefined> {
  const labels = name.replace(/\.$/, "").split(".")
    .map((label) => new TextEncoder().encode(label));
  const bad = labels.some((label) => label.length === 0 || label.length > 63);
  if (!server || bad || ms <= 0) return undefined;
  const id = crypto.getRandomValues(new Uint16Array(1))[0];
  const number = NUMBERS[TYPES.indexOf(type)];
  // A Uint8Array keeps the low 8 bits of each number: id, then id >> 8.
  const header = [id >> 8, id, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0];
  const question = labels.flatMap((label) => [label.length, ...label]);
  const end = [0, number >> 8, number, 0, 1]; // the root label, type, class
  const query = Uint8Array.from([...header, ...question, ...end]);
  const { hostname, port } = server;
  const ip = hostname.includes(":") ? "::" : "0.0.0.0"; // any local address
  const udp = Deno.listenDatagram({ transport: "udp", hostname: ip, port: 0 });
  try {
    return await withDeadline(udp, ms, async () => {
      await udp.send(query, { transport: "udp", hostname, port });
      while (true) { // the reply: from the server's port, our ID, QR set
        const [reply, from] = await udp.receive();
        const ours = (from as Deno.NetAddr).port === port &&
          reply.length >= 12 && ((reply[0] << 8) | reply[1]) === id &&
          reply[2] & 0x80;
        if (ours) return reply[3] & 0x0f;
      }
    }, "no reply");
  } catch {
    return undefined; // no reply in time: the deadline closed the socket
  } finally {
    closeQuietly(udp);
  }
}

/** The first `nameserver` of /etc/resolv.conf, if we may read it. */
async function systemNameServer(): Promise<NameServer | undefined> {
  const path = "/etc/resolv.conf";
  const { state } = await Deno.permissions.query({ name: "read", path });
  if (state !== "granted") return undefined; // never prompt for it
  const text = await Deno.readTextFile(path).catch(() => "");
  const hostname = /^\s*nameserver\s+(\S+)/m.exec(text)?.[1] ?? "";
  if (!ipv4Bytes(hostname) && !ipv6Bytes(hostname)) return undefined;
  return { hostname, port: 53 };
}

/** One record as `dig +short` prints it. */
export function formatRecord(type: Deno.RecordType, record: unknown): string {
  if (type === "MX") {
    const { preference, exchange } = record as Deno.MxRecord;
    return `${preference} ${absolute(exchange)}`;
  }
  if (type === "SRV") {
    const { priority, weight, port, target } = record as Deno.SrvRecord;
    return `${priority} ${weight} ${port} ${absolute(target)}`;
  }
  if (type === "SOA") {
    const { mname, rname, ...numbers } = record as Deno.SoaRecord;
    const { serial, refresh, retry, expire, minimum } = numbers;
    const fields = [absolute(mname), absolute(rname), serial, refresh, retry];
    return [...fields, expire, minimum].join(" ");
  }
  if (type === "CAA") {
    const { critical, tag, value } = record as Deno.CaaRecord;
    const bytes = String.fromCharCode(...new TextEncoder().encode(value));
    return `${critical ? 128 : 0} ${tag} ${quote(bytes)}`;
  }
  // Deno gives a TXT string's bytes as one character per byte (Latin-1).
  if (type === "TXT") return (record as string[]).map(quote).join(" ");
  if (type === "A" || type === "AAAA") return record as string;
  return absolute(record as string); // CNAME, NS, PTR: a name
}

/** dig writes names with the final dot that stands for the root. */
function absolute(name: string): string {
  return name.endsWith(".") ? name : `${name}.`;
}

/** `192.0.2.1` → `1.2.0.192.in-addr.arpa`; IPv6 goes nibble by nibble. */
export function reverseName(address: string): string | undefined {
  const v4 = ipv4Bytes(address);
  if (v4) return `${v4.reverse().join(".")}.in-addr.arpa`;
  const v6 = ipv6Bytes(address);
  if (!v6) return undefined;
  const nibbles = [...v6].flatMap((byte) => [byte >> 4, byte & 0xf]);
  return `${nibbles.reverse().map((n) => n.toString(16)).join(".")}.ip6.arpa`;
}

/** `192.0.2.1`, `192.0.2.1:53`, `::1`, `[::1]`, `[::1]:8053`; port 53 if none. */
export function parseServer(text?: string): NameServer | undefined {
  if (text === undefined) return undefined;
  // A bare IPv6 address has colons of its own: no port can follow it.
  if (ipv6Bytes(text)) return { hostname: text, port: 53 };
  const match = /^(?:\[(.+)\]|([^:[\]]+))(?::(\d+))?$/.exec(text);
  const hostname = match?.[1] ?? match?.[2] ?? "";
  if (!(match?.[1] ? ipv6Bytes(hostname) : ipv4Bytes(hostname))) {
    throw new UsageError(`--server: not an IP address[:PORT]: '${text}'`);
  }
  const port = match![3] ?? "53";
  return { hostname, port: parseInteger(port, "--server's port", 1, 65535) };
}

if (import.meta.main) {
  await runCommand("dns_lookup.ts", async () => {
    const { values, positionals } = parseCommandLine(Deno.args, {
      usage: USAGE,
      positionals: true,
      options: {
        type: { type: "string", short: "t", default: "A" },
        server: { type: "string", short: "s" },
        timeout: { type: "string", default: String(DEFAULT_TIMEOUT) },
        reverse: { type: "string", short: "x" },
      },
    });
    const address = values.reverse; // -x: a PTR lookup of its reverse name
    const asked = address === undefined ? values.type.toUpperCase() : "PTR";
    const type = asked as Deno.RecordType;
    if (!TYPES.includes(type)) throw new UsageError(`unknown type '${type}'`);
    const server = parseServer(values.server);
    const timeoutSeconds = parseSeconds(values.timeout, "--timeout");
    requireUnstableNet(); // for askResponseCode's UDP socket
    if (positionals.length !== (address === undefined ? 1 : 0)) {
      throw new UsageError("give one NAME, or -x ADDRESS");
    }
    const name = address === undefined ? positionals[0] : reverseName(address);
    if (name === undefined) throw new UsageError(`not an IP: '${address}'`);
    const records = await lookUp(name, { type, server, timeoutSeconds });
    for (const record of records) console.log(record);
  });
}
