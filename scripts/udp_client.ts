/**
 * UDP client for the timestamp server: sends its arguments as one datagram,
 * or each line of stdin as one datagram, and prints every reply.
 *
 * Run:    deno run --unstable-net --allow-net scripts/udp_client.ts hello world
 *         printf 'one\ntwo\n' | deno run --unstable-net --allow-net scripts/udp_client.ts
 * Try it: deno run --unstable-net --allow-net scripts/udp_server.ts   (in another terminal first)
 *
 * (--unstable-net: Deno's UDP API still needs it; this project's deno.json
 * turns it on, a copy of the script elsewhere needs the flag.)
 *
 * UDP may lose a datagram or its reply, and nobody tells you. The tutorial's
 * client (003 §UDP编程) waits in recvfrom() with no timeout, so a lost
 * datagram hangs it for good; it takes whatever arrives as the reply, and
 * even overwrites ADDR with its sender, so the next line goes to whoever
 * answered. This one waits --timeout per try, sends again up to --retries
 * times, then says so and exits 1; it takes as the reply only a datagram
 * from the server's address that answers what it just sent. Output: each
 * reply's bytes and a newline (escaped when stdout is a terminal). A closed
 * port costs every try: Linux reports its ICMP "port unreachable" only to a
 * connected UDP socket, and Deno's UDP API has no connect().
 *
 * Read first: openUdpClient(), whose one receive outlives a timeout
 */
import { lookup } from "node:dns/promises";
import {
  Failure,
  parseCommandLine,
  parseInteger,
  parsePort,
  parseSeconds,
  requireUnstableNet,
  runCommand,
} from "../lib/cli.ts";
import { raceTimeout, TIMED_OUT } from "../lib/deadline.ts";
import { describeError } from "../lib/errors.ts";
import { closeQuietly, formatHostPort } from "../lib/io.ts";
import { BufferedReader, LineTooLongError } from "../lib/reader.ts";
import { writeReply } from "../lib/terminal.ts";

export const DEFAULT_PORT = 8081; // udp_server.ts's

/** The largest UDP payload over IPv4 (65,535 - 20 IP - 8 UDP header bytes). */
export const MAX_UDP_PAYLOAD = 65_507;

const USAGE = `Usage: udp_client.ts [options] [WORD...]

Sends WORDs (joined by spaces) as one UDP datagram and prints the reply.
With no WORDs, sends each line of stdin as one datagram.

Options:
  --hostname HOST    server address (default 127.0.0.1)
  --port PORT        server port (default ${DEFAULT_PORT})
  --timeout SECONDS  how long to wait for each reply (default 1)
  --retries N        how many times to send again when no reply came (default 2)
  -h, --help         show this help`;

export interface UdpClientOptions {
  hostname?: string;
  port?: number;
  /** Seconds to wait for a reply after each send. */
  timeout?: number;
  /** Extra sends after the first one went unanswered. */
  retries?: number;
}

/** Thrown when every try went unanswered. */
export class NoReplyError extends Failure {}

export interface UdpClient {
  /** The server's resolved address. */
  server: Deno.NetAddr;
  /** Sends `payload` and resolves with the server's reply (a fresh copy). */
  request(payload: Uint8Array): Promise<Uint8Array>;
  close(): void;
  [Symbol.dispose](): void;
}

type Received = { data: Uint8Array; from: Deno.Addr } | { error: unknown };

const CLOSE_BRACKET = 0x5d; // "]", the end of the server's stamp

/**
 * Whether `reply` answers `payload`: the server sends `[<time>]` plus the
 * payload, cut to the largest datagram; a plain echo server sends the
 * payload alone.
 */
export function answers(reply: Uint8Array, payload: Uint8Array): boolean {
  if (reply.length >= MAX_UDP_PAYLOAD) return true; // cut: its end is gone
  if (reply.length < payload.length) return false;
  const tail = reply.length - payload.length;
  for (let index = 0; index < payload.length; index++) {
    if (reply[tail + index] !== payload[index]) return false;
  }
  return tail === 0 || reply[tail - 1] === CLOSE_BRACKET;
}

/**
 * Resolves the server's name once and binds a socket of the same family.
 * IPv4 is preferred when a name has both, as the servers here listen on
 * 127.0.0.1 by default.
 */
export async function openUdpClient(
  options: UdpClientOptions = {},
): Promise<UdpClient> {
  requireUnstableNet("UDP");
  const hostname = options.hostname ?? "127.0.0.1";
  const port = options.port ?? DEFAULT_PORT;
  const timeoutMs = (options.timeout ?? 1) * 1000;
  const tries = (options.retries ?? 2) + 1;

  let addresses;
  try {
    addresses = await lookup(hostname, { all: true });
  } catch (error) {
    throw new Failure(
      `cannot send to ${hostname}: ${describeError(error)}`,
    );
  }
  const chosen = addresses.find((address) => address.family === 4) ??
    addresses[0];
  if (!chosen) throw new Failure(`name not resolved: ${hostname}`);
  const server: Deno.NetAddr = {
    transport: "udp",
    hostname: chosen.address,
    port,
  };
  const socket = Deno.listenDatagram({
    transport: "udp",
    hostname: chosen.family === 6 ? "::" : "0.0.0.0",
    port: 0,
  });

  const buffer = new Uint8Array(65_536);
  // At most one receive is outstanding. A timeout does not cancel it (UDP
  // has nothing to cancel): it stays pending and serves the next wait, so
  // a reply that comes late is still seen, and never read twice.
  let pending: Promise<Received> | undefined;
  function receive(): Promise<Received> {
    pending ??= socket.receive(buffer).then(
      ([data, from]) => ({ data, from }),
      (error) => ({ error }),
    );
    return pending;
  }

  /** The next datagram from the server, or null once `deadline` passes. */
  async function receiveFromServer(
    deadline: number,
  ): Promise<Uint8Array | null> {
    while (true) {
      const remaining = deadline - performance.now();
      if (remaining <= 0) return null;
      const received = await raceTimeout(receive(), remaining);
      if (received === TIMED_OUT) return null; // the receive stays pending
      pending = undefined;
      if ("error" in received) throw received.error;
      const { data, from } = received;
      if (
        from.transport === "udp" && from.hostname === server.hostname &&
        from.port === server.port
      ) {
        return data;
      }
      // A stranger's datagram: not our reply, keep waiting.
    }
  }

  const target = formatHostPort(hostname, port);
  async function request(payload: Uint8Array): Promise<Uint8Array> {
    for (let attempt = 1; attempt <= tries; attempt++) {
      await socket.send(payload, server).catch((error) => {
        throw new Failure(`cannot send to ${target}: ${describeError(error)}`);
      });
      const deadline = performance.now() + timeoutMs;
      while (true) {
        const reply = await receiveFromServer(deadline);
        if (reply === null) break; // this try went unanswered: send again
        if (answers(reply, payload)) return reply.slice();
        // A late reply to an earlier datagram: ignore it.
      }
    }
    const times = tries === 1 ? "try" : "tries";
    throw new NoReplyError(
      `no reply from ${target} after ${tries} ${times}`,
      "timeout",
    );
  }

  const close = () => closeQuietly(socket);
  return { server, request, close, [Symbol.dispose]: close };
}

if (import.meta.main) {
  await runCommand("udp_client.ts", async () => {
    const { values, positionals } = parseCommandLine(Deno.args, {
      usage: USAGE,
      positionals: true,
      options: {
        hostname: { type: "string", default: "127.0.0.1" },
        port: { type: "string", default: String(DEFAULT_PORT) },
        timeout: { type: "string", default: "1" },
        retries: { type: "string", default: "2" },
      },
    });
    using client = await openUdpClient({
      hostname: values.hostname,
      port: parsePort(values.port),
      timeout: parseSeconds(values.timeout, "--timeout"),
      retries: parseInteger(values.retries, "--retries", 0, 100),
    });
    if (positionals.length > 0) {
      const payload = new TextEncoder().encode(positionals.join(" "));
      if (payload.length > MAX_UDP_PAYLOAD) {
        throw new Failure(
          `the message is ${payload.length} bytes; a UDP datagram holds at most ${MAX_UDP_PAYLOAD}`,
        );
      }
      await writeReply(await client.request(payload));
      return;
    }
    const lines = new BufferedReader(Deno.stdin, { maxLine: MAX_UDP_PAYLOAD });
    for (let number = 1;; number++) {
      let line;
      try {
        line = await lines.readLine();
      } catch (error) {
        if (!(error instanceof LineTooLongError)) throw error;
        throw new Failure(
          `line ${number} is longer than ${MAX_UDP_PAYLOAD} bytes, the largest UDP datagram`,
        );
      }
      if (line === null) return;
      await writeReply(await client.request(line));
    }
  });
}
