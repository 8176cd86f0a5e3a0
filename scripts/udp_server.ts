/**
 * UDP timestamp server: answers every datagram, to whoever sent it, with
 * `[<time>]` followed by the datagram's bytes unchanged.
 *
 * Run:    deno run --unstable-net --allow-net scripts/udp_server.ts [--port 8081] [--iso]
 * Try it: deno run --unstable-net --allow-net scripts/udp_client.ts hello
 *    or:  echo hello | nc -u -W 1 127.0.0.1 8081
 *
 * (--unstable-net: Deno's UDP API still needs it. This project's deno.json
 * turns it on; a copy elsewhere needs the flag, and says so in one line.)
 *
 * The tutorial's server (003 §UDP编程) calls close() inside its loop, so it
 * answers one datagram and then fails with "Bad file descriptor"; it
 * decode()s each datagram, so binary data, or a character cut by its
 * 4096-byte buffer, raises and ends it; an empty datagram stops it for
 * good. This one answers whatever arrives: the bytes untouched, an empty
 * datagram with just the stamp, a reply too big for one datagram cut to
 * fit; a failed send is logged (once a second at most) and serving goes on.
 *
 * Read first: serve() in startUdpServer()
 */
import {
  parseCommandLine,
  parsePort,
  requireUnstableNet,
  runCommand,
} from "../lib/cli.ts";
import { describeError } from "../lib/errors.ts";
import { closeQuietly, formatAddress } from "../lib/io.ts";
import {
  rateLimitedLog,
  runUntilSignal,
  type ServerHandle,
  serverHandle,
} from "../lib/server.ts";

export const DEFAULT_PORT = 8081;

/**
 * The largest UDP payload over IPv4: 65,535 minus the 20-byte IP header and
 * the 8-byte UDP header. IPv6 allows 65,527; we use the smaller one for both.
 */
export const MAX_UDP_PAYLOAD = 65_507;

const USAGE = `Usage: udp_server.ts [--hostname HOST] [--port PORT] [--iso]

Answers every UDP datagram with "[<time>]" followed by the datagram's bytes.

Options:
  --hostname HOST  address to listen on (default 127.0.0.1; 0.0.0.0 or :: to expose)
  --port PORT      port to listen on (default ${DEFAULT_PORT}; 0 picks a free port)
  --iso            stamp in ISO 8601 UTC (2026-11-22T01:24:44Z) instead of
                   ctime style local time (Sun Nov 22 01:24:44 2026)
  -h, --help       show this help`;

export interface UdpServerOptions {
  hostname?: string;
  port?: number;
  /** ISO 8601 UTC stamps instead of ctime-style local time. */
  iso?: boolean;
  /** The clock, in milliseconds since the epoch (tests pass a fixed one). */
  now?: () => number;
  /** Where failed receives and sends are logged, once a second at most. */
  log?: (line: string) => void;
}

const DAYS = "Sun Mon Tue Wed Thu Fri Sat".split(" ");
const MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(" ");

function twoDigits(value: number): string {
  return String(value).padStart(2, "0");
}

/**
 * Python's time.ctime() in local time: `Sun Nov  2 01:24:44 2026` (the day
 * of the month is padded with a space, the time with zeros).
 */
export function formatCtime(date: Date): string {
  const day = String(date.getDate()).padStart(2, " ");
  const time = `${twoDigits(date.getHours())}:${twoDigits(date.getMinutes())}:${
    twoDigits(date.getSeconds())
  }`;
  return `${DAYS[date.getDay()]} ${
    MONTHS[date.getMonth()]
  } ${day} ${time} ${date.getFullYear()}`;
}

/** ISO 8601 in UTC, to the second: `2026-11-22T01:24:44Z`. */
export function formatIso(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, "Z");
}

/**
 * Starts the server. Returns once the socket is bound; `finished` resolves
 * after close().
 */
export function startUdpServer(options: UdpServerOptions = {}): ServerHandle {
  requireUnstableNet("UDP");
  const socket = Deno.listenDatagram({
    transport: "udp",
    hostname: options.hostname ?? "127.0.0.1",
    port: options.port ?? DEFAULT_PORT,
  });
  const format = options.iso ? formatIso : formatCtime;
  const now = options.now ?? Date.now;
  const encoder = new TextEncoder();
  const log = rateLimitedLog(options.log);

  // One buffer for the whole server. A datagram is received at offset
  // STAMP_ROOM and the stamp is written just in front of it, so the reply
  // is one contiguous slice: no copy of the payload, no allocation.
  const STAMP_ROOM = 64;
  const buffer = new Uint8Array(STAMP_ROOM + 65_536);
  const payloadArea = buffer.subarray(STAMP_ROOM);

  // The stamp changes once a second, so format and encode it only then.
  let stampSecond = NaN;
  let stamp = new Uint8Array();
  function currentStamp(): Uint8Array {
    const second = Math.floor(now() / 1000);
    if (second !== stampSecond) {
      stampSecond = second;
      stamp = encoder.encode(`[${format(new Date(second * 1000))}]`);
    }
    return stamp;
  }

  let closed = false;

  // No accept() in UDP: every datagram arrives with its sender's address,
  // and the reply goes back to that address. One loop serves everyone.
  async function serve() {
    while (true) {
      let payloadLength: number;
      let sender: Deno.Addr;
      try {
        const [payload, from] = await socket.receive(payloadArea);
        payloadLength = payload.length;
        sender = from;
      } catch (error) {
        if (closed || error instanceof Deno.errors.BadResource) return;
        // Some systems report an earlier send's ICMP error here (Windows:
        // "connection reset"). It concerns one client, not the server.
        log(`receive failed: ${describeError(error)}`);
        continue;
      }
      const head = currentStamp();
      const start = STAMP_ROOM - head.length;
      buffer.set(head, start);
      // Cut the reply to the largest payload one datagram can carry.
      const end = Math.min(STAMP_ROOM + payloadLength, start + MAX_UDP_PAYLOAD);
      try {
        await socket.send(buffer.subarray(start, end), sender);
      } catch (error) {
        if (closed) return;
        // Unreachable or forbidden sender: its problem, not everyone's.
        log(`send to ${formatAddress(sender)} failed: ${describeError(error)}`);
      }
    }
  }

  const serving = serve();
  return serverHandle(socket.addr as Deno.NetAddr, serving, async () => {
    closed = true;
    closeQuietly(socket);
    await serving;
  });
}

if (import.meta.main) {
  await runCommand("udp_server.ts", () => {
    const { values } = parseCommandLine(Deno.args, {
      usage: USAGE,
      options: {
        hostname: { type: "string", default: "127.0.0.1" },
        port: { type: "string", default: String(DEFAULT_PORT) },
        iso: { type: "boolean", default: false },
      },
    });
    const server = startUdpServer({
      hostname: values.hostname,
      port: parsePort(values.port),
      iso: values.iso,
    });
    return runUntilSignal(server, "udp");
  });
}
