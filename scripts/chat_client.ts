/**
 * Chat client: joins a chat_server.ts room; the lines you type go to the
 * room while the room's lines print as they arrive.
 *
 * Run:    deno run --allow-net scripts/chat_client.ts [--hostname HOST] [--port 8888]
 *   TLS:  deno run --allow-net --allow-read=certs scripts/chat_client.ts --cacert certs/ca.pem
 * Try it: start scripts/chat_server.ts, then run this in two terminals, or
 *         printf 'hello\n/who\n' | deno run --allow-net scripts/chat_client.ts
 *
 * The tutorials' conversations take turns: 000 §4.2's client sends one
 * message and reads one reply with recv(1024), and 000 §4.1's server waits
 * in recv(), then in input(). A chat cannot: here sending and receiving
 * are two tasks. When stdin ends we half-close, so the server knows we are
 * done yet can still deliver what it queued for us. Every wait is bounded:
 * the connect and the welcome line by --timeout, the goodbye by 2 s. And
 * the room's text is other people's: it reaches your terminal only through
 * lib/terminal.ts, so nobody can send escape sequences to your screen.
 *
 * Read first: chat(), then Receiver.show.
 */
import {
  Failure,
  parseCommandLine,
  parsePort,
  parseSeconds,
  runCommand,
} from "../lib/cli.ts";
import { raceTimeout, seconds, withDeadline } from "../lib/deadline.ts";
import { type Connection, dial } from "../lib/dial.ts";
import { isDisconnect } from "../lib/errors.ts";
import * as io from "../lib/io.ts";
import { replaceControls } from "../lib/terminal.ts";
import * as tls from "../lib/tls.ts";

export const DEFAULT_PORT = 8888;
export const DEFAULT_TIMEOUT = 5; // seconds
/** After stdin ends, how long to wait for the server to close. */
export const DEFAULT_LINGER_MS = 2000;

const USAGE = `Usage: chat_client.ts [--hostname HOST] [--port PORT] [options]

Joins a chat_server.ts room: lines from stdin go to the room, lines from the
room go to stdout. Type /help for the server's commands, /quit to leave.

Options:
  --hostname HOST    server address (default 127.0.0.1)
  --port PORT        server port (default ${DEFAULT_PORT})
  --timeout SECONDS  limit for the connect, and for the server's welcome
                     line (default ${DEFAULT_TIMEOUT})
${tls.CLIENT_TLS_HELP}
  -h, --help         show this help`;

const encoder = new TextEncoder();

/**
 * Shows what the server sends, safe for a terminal: invalid UTF-8 becomes
 * U+FFFD, and so does every control character but tab and the line ends
 * (an escape sequence that would clear your screen or retitle the window,
 * a lone "\r" that would let one line overwrite another).
 */
class Receiver {
  #decoder = new TextDecoder(); // a character split between reads stays whole
  #buffer = new Uint8Array(16 * 1024);
  #held = ""; // a "\r" that ended a read: its "\n" may come next

  constructor(readonly from: io.Reader, readonly to: io.Writer) {}

  /**
   * Shows what arrives, read by read, until the end (false) or, with
   * `untilLine`, until a read brings a "\n": a whole line came (true).
   */
  async show(untilLine: boolean): Promise<boolean> {
    while (true) {
      const count = await this.from.read(this.#buffer);
      const bytes = this.#buffer.subarray(0, count ?? 0);
      let text = this.#held + this.#decoder.decode(bytes, { stream: !!count });
      this.#held = count && text.endsWith("\r") ? "\r" : "";
      if (this.#held) text = text.slice(0, -1);
      const lines = text.replaceAll("\r\n", "\n").split("\n");
      const safe = lines.map(replaceControls).join("\n");
      await io.writeAll(this.to, encoder.encode(safe));
      if (count === null) return false;
      if (untilLine && bytes.includes(0x0a)) return true;
    }
  }
}

/** When set, the server's first line must arrive within `ms`. */
export interface Welcome {
  ms: number;
  from: string; // "host:port", for the message
}

/**
 * Runs a chat session on `conn`: `input` goes to the server while what the
 * server sends goes to `output`. Returns when the server closes, or when
 * `input` has ended and the server closed within `lingerMs` (or did not).
 * The caller closes `conn`.
 */
export async function chat(
  conn: Connection,
  input: io.Reader,
  output: io.Writer,
  lingerMs = DEFAULT_LINGER_MS,
  welcome?: Welcome,
): Promise<void> {
  const receiver = new Receiver(conn, output);
  if (welcome) {
    // A server that accepts and says nothing (a wrong port, a stuck
    // process) must not leave us waiting silently.
    const greeted = await withDeadline(
      conn,
      welcome.ms,
      () => receiver.show(true),
      `no welcome from ${welcome.from} within ${seconds(welcome.ms)}`,
    );
    if (!greeted) {
      throw new Failure(
        `no welcome from ${welcome.from}: it closed the connection`,
      );
    }
  }
  const receiving = receiver.show(false);
  const sending = (async () => {
    try {
      await io.copy(input, conn);
      // Half-close: "nothing more from me". The server leaves us in the
      // room long enough to send what it queued for us, then closes.
      await conn.closeWrite();
    } catch (error) {
      // The server went away while we were sending: the receiving side
      // sees that too and decides how we end.
      if (!isDisconnect(error)) throw error;
      await receiving.catch(() => {});
    }
  })();
  const first = await Promise.race([
    receiving.then(() => "server closed" as const),
    sending.then(() => "input ended" as const),
  ]);
  if (first === "input ended") await raceTimeout(receiving, lingerMs);
}

if (import.meta.main) {
  await runCommand("chat_client.ts", async () => {
    const { values } = parseCommandLine(Deno.args, {
      usage: USAGE,
      options: {
        hostname: { type: "string", default: "127.0.0.1" },
        port: { type: "string", default: String(DEFAULT_PORT) },
        timeout: { type: "string", default: String(DEFAULT_TIMEOUT) },
        ...tls.CLIENT_TLS_OPTIONS,
      },
    });
    const { hostname } = values;
    const port = parsePort(values.port);
    const timeoutMs = parseSeconds(values.timeout, "--timeout") * 1000;
    const clientTls = await tls.loadClientTls(values);
    // Refused, unresolved, timed out, an untrusted certificate: one line
    // naming HOST:PORT and the problem, exit 1.
    const conn = await dial({ hostname, port, timeoutMs, tls: clientTls });
    const from = io.formatHostPort(hostname, port);
    try {
      await chat(conn, Deno.stdin, Deno.stdout, DEFAULT_LINGER_MS, {
        ms: timeoutMs,
        from,
      });
    } finally {
      io.closeQuietly(conn);
    }
    // Return a code so runCommand exits now, even if a read of a terminal
    // stdin is still waiting (the server closed first).
    return 0;
  });
}
