/**
 * Chat client: connects to chat_server.ts, sends each line you type and
 * prints the room's lines as they arrive, both at the same time.
 *
 * Run:    deno run --allow-net scripts/chat_client.ts [--hostname HOST] [--port 8888]
 * Try it: start scripts/chat_server.ts first, then run this in two terminals
 *         (or: printf 'hello\n/who\n' | deno run --allow-net scripts/chat_client.ts)
 *
 * The tutorial's client alternates: it blocks in input() until you press
 * Enter, then in recv() for one reply, so nothing the others say shows up
 * while you are typing (or it needs select() on sys.stdin, which does not work
 * on Windows). Here sending and receiving are two independent tasks. When
 * stdin ends we half-close, so the server knows we are done but can still
 * deliver what it has queued for us, and we exit once it closes.
 */
import {
  Failure,
  parseCommandLine,
  parsePort,
  runCommand,
} from "../lib/cli.ts";
import { describeError } from "../lib/errors.ts";
import {
  closeQuietly,
  isDisconnect,
  writeAll,
  type Writer,
} from "../lib/net.ts";
import type { Reader } from "../lib/lines.ts";

export const DEFAULT_PORT = 8888;
/** After stdin ends, how long to wait for the server to close. */
export const DEFAULT_LINGER_MS = 2000;

const USAGE = `Usage: chat_client.ts [--hostname HOST] [--port PORT]

Joins a chat_server.ts room: lines from stdin go to the room, lines from the
room go to stdout. Type /help for the server's commands, /quit to leave.

Options:
  --hostname HOST  server address (default 127.0.0.1)
  --port PORT      server port (default ${DEFAULT_PORT})
  -h, --help       show this help`;

/** Copies bytes through one reused buffer until end of input. */
async function copy(from: Reader, to: Writer) {
  const buffer = new Uint8Array(16 * 1024);
  while (true) {
    const count = await from.read(buffer);
    if (count === null) return;
    await writeAll(to, buffer.subarray(0, count));
  }
}

/**
 * Runs a chat session on `conn`: `input` goes to the server while what the
 * server sends goes to `output`. Returns when the server closes, or when
 * `input` has ended and the server closed within `lingerMs` (or did not).
 * The caller closes `conn`.
 */
export async function chat(
  conn: Deno.TcpConn,
  input: Reader,
  output: Writer,
  lingerMs = DEFAULT_LINGER_MS,
): Promise<void> {
  const receiving = copy(conn, output);
  const sending = (async () => {
    try {
      await copy(input, conn);
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
  if (first === "server closed") return;
  let timer;
  await Promise.race([
    receiving,
    new Promise((resolve) => timer = setTimeout(resolve, lingerMs)),
  ]);
  clearTimeout(timer);
}

if (import.meta.main) {
  await runCommand("chat_client.ts", async () => {
    const { values } = parseCommandLine(Deno.args, {
      usage: USAGE,
      options: {
        hostname: { type: "string", default: "127.0.0.1" },
        port: { type: "string", default: String(DEFAULT_PORT) },
      },
    });
    const port = parsePort(values.port);
    // An IPv6 address in brackets, as in URLs: "[::1]:8888", not "::1:8888".
    const target = values.hostname.includes(":")
      ? `[${values.hostname}]:${port}`
      : `${values.hostname}:${port}`;
    let conn: Deno.TcpConn;
    try {
      conn = await Deno.connect({ hostname: values.hostname, port });
    } catch (error) {
      throw new Failure(
        `cannot connect to ${target}: ${describeError(error)}`,
      );
    }
    try {
      await chat(conn, Deno.stdin, Deno.stdout);
    } finally {
      closeQuietly(conn);
    }
    // Return a code so runCommand exits now, even if a read of a terminal
    // stdin is still waiting (the server closed first).
    return 0;
  });
}
