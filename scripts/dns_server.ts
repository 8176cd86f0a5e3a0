/**
 * An authoritative DNS server spoken by hand: answers queries for the names
 * in a zone file (checked by dns_zone.ts), over UDP and TCP on one port.
 *
 * Run:    deno run --unstable-net --allow-net --allow-read=scripts/dns_example.zone scripts/dns_server.ts --zone scripts/dns_example.zone
 * Try it: dig @127.0.0.1 -p 8053 www.example.test   (+tcp for TCP; MX example.test)
 *
 * The tutorials call DNS the distributed database from host names to IP
 * addresses (000 §1, §2.7) and let connect() look www.baidu.com up out of
 * sight (003 §TCP编程); they never show it on the wire. Here is every byte:
 * header, question, compressed names, records. An answer too long for UDP
 * gets the TC bit, and the client asks again over TCP. Every read is
 * bounds-checked: a lying packet gets FORMERR, and nothing can throw. No
 * response-rate limiting: not for the open internet. The message codec is
 * in dns/message.ts; this file moves messages over UDP and TCP.
 *
 * Read first: answerQuery in dns/message.ts, then Reader.name and writeName
 * there, then startDnsServer here (serveUdp and serveTcpClient).
 */
import { parseCommandLine } from "../lib/cli.ts";
import { requireUnstableNet, runCommand, UsageError } from "../lib/cli.ts";
import { Sweeper } from "../lib/deadline.ts";
import { describeError } from "../lib/errors.ts";
import { closeQuietly, formatAddress, writeAll } from "../lib/io.ts";
import { listenOptions, parseListen } from "../lib/server.ts";
import { rateLimitedLog, runUntilSignal, serveTcp } from "../lib/server.ts";
import { type ServerHandle, serverHandle } from "../lib/server.ts";
import { answerQuery } from "./dns/message.ts";
import { readZone, type Zone } from "./dns_zone.ts";

export const DEFAULT_PORT = 8053;

const DEFAULT_TCP_CLIENTS = 100; // each may hold a 64 KiB message
const LISTEN = listenOptions(DEFAULT_PORT, {
  maxConnections: DEFAULT_TCP_CLIENTS, // the caps are for TCP
  maxPerAddress: 20,
  portHelp:
    `UDP and TCP port (default ${DEFAULT_PORT}; 0 picks one free for both)`,
});
const USAGE = `Usage: dns_server.ts --zone FILE [--hostname HOST] [--port PORT]

Answers DNS queries over UDP and TCP (one port) from FILE: NAME TYPE VALUE [TTL]
per line; A, AAAA, CNAME, MX (PRIORITY HOST), TXT (rest of line); # comments.
Check a zone file first with dns_zone.ts FILE. TCP clients are capped (below)
and dropped after 10 s of silence. Not for the open internet: with no
response-rate limiting, its UDP answers can be aimed at a forged address.

Options:
  --zone FILE          the zone file (example: scripts/dns_example.zone)
${LISTEN.help}
  -h, --help           show this help`;

// The server: one UDP loop, and one task per TCP connection (serveTcp).

export interface DnsServerOptions {
  zone: Zone;
  hostname?: string;
  port?: number;
  tcpIdleMs?: number; // a TCP client silent this long is dropped (10 s)
  maxConnections?: number; // TCP connections at once (100)
  maxPerAddress?: number; // TCP connections from one address (20)
}

export function startDnsServer(options: DnsServerOptions): ServerHandle {
  requireUnstableNet();
  const { zone, hostname = "127.0.0.1", port = DEFAULT_PORT } = options;
  const tcpIdleMs = options.tcpIdleMs ?? 10_000;
  const log = rateLimitedLog(); // one stderr line a second: a flood costs one
  const problem = (from: Deno.Addr) => (why: string) =>
    log(`${formatAddress(from)}: ${why}`);
  const sweeper = Sweeper.forTimeout(tcpIdleMs);
  let closed = false;
  const caps = {
    maxConnections: options.maxConnections ?? DEFAULT_TCP_CLIENTS,
    maxPerAddress: options.maxPerAddress ?? 20,
  };

  // A bug in answerQuery: serveTcp logs it and closes that connection only.
  async function serveTcpClient(conn: Deno.Conn) {
    // Each message comes after its length in 2 bytes. A BYOB reader with
    // `min` reads exactly so many bytes, however TCP cuts the stream.
    const reader = conn.readable.getReader({ mode: "byob" });
    const idle = sweeper.add(tcpIdleMs, () => closeQuietly(conn));
    try {
      while (true) {
        const head = await reader.read(new Uint8Array(2), { min: 2 });
        const size = head.done ? 0 : (head.value[0] << 8) | head.value[1];
        if (size < 12) return; // closed, or not even a header: hang up
        const body = await reader.read(new Uint8Array(size), { min: size });
        const reply = !body.done &&
          answerQuery(zone, body.value, "tcp", problem(conn.remoteAddr));
        if (!reply) return;
        const framed = new Uint8Array(2 + reply.length); // one write: the
        framed.set([reply.length >> 8, reply.length]); // length, the message
        framed.set(reply, 2);
        await writeAll(conn, framed);
        idle.at = Date.now() + tcpIdleMs; // a query answered: the clock restarts
      }
    } finally {
      sweeper.remove(idle);
    }
  }

  // UDP and TCP on one port number. With port 0 UDP picks a free port,
  // which TCP may already use elsewhere: then try another (a few times).
  let udp!: Deno.DatagramConn, tcp: ServerHandle | undefined;
  for (let attempt = 1; !tcp; attempt++) {
    udp = Deno.listenDatagram({ transport: "udp", hostname, port });
    try {
      const { port: udpPort } = udp.addr as Deno.NetAddr;
      tcp = serveTcp({ hostname, port: udpPort, ...caps }, serveTcpClient);
    } catch (error) {
      udp.close();
      const again = port === 0 && error instanceof Deno.errors.AddrInUse;
      if (!again || attempt === 10) throw error;
    }
  }

  async function serveUdp() {
    const buffer = new Uint8Array(65_536);
    while (true) {
      try {
        const [packet, from] = await udp.receive(buffer);
        const reply = answerQuery(zone, packet, "udp", problem(from));
        if (reply) await udp.send(reply, from);
      } catch (error) {
        if (closed || error instanceof Deno.errors.BadResource) return;
        log(`UDP: ${describeError(error)}`); // say, a sender that is gone
      }
    }
  }

  const serving = serveUdp(); // runs until close()
  return serverHandle(udp.addr as Deno.NetAddr, serving, async () => {
    closed = true;
    closeQuietly(udp);
    await Promise.all([serving, tcp.close()]);
  });
}

if (import.meta.main) {
  await runCommand("dns_server.ts", async () => {
    const { values } = parseCommandLine(Deno.args, {
      usage: USAGE,
      options: {
        zone: { type: "string" },
        ...LISTEN.options,
      },
    });
    if (!values.zone) throw new UsageError("--zone FILE is required");
    const listen = await parseListen(values);
    const zone = await readZone(values.zone); // a bad line: Failure, exit 1
    console.error(`${values.zone}: ${zone.size} names`);
    const server = startDnsServer({ zone, ...listen });
    return runUntilSignal(server, "udp");
  });
}
