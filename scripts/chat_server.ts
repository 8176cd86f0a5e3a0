/**
 * TCP chat room: every line a member sends goes to every other member as
 * "name: line", each member fed through an outgoing queue of its own.
 *
 * Run:    deno run --allow-net scripts/chat_server.ts [--port 8888]
 *   TLS:  deno run --allow-net --allow-read=certs scripts/chat_server.ts
 *           --cert certs/localhost.pem --key certs/localhost.key
 * Try it: nc 127.0.0.1 8888   (in two terminals; /help lists the commands)
 *    or:  deno run --allow-net scripts/chat_client.ts
 *
 * No tutorial builds a chat server. 001 §3 step 5 speaks of a two-person
 * chat and shows an echo loop; 000 §4.1 serves one client at a time (the
 * next waits in the backlog), answers each recv(1024) with a line typed at
 * input(), and decodes each chunk as UTF-8, which raises when a chunk ends
 * inside a multi-byte character. A room needs many members at once, lines
 * cut out of the byte stream with a byte limit, bad UTF-8 repaired, and no
 * member who stops reading may freeze the rest (the general pitfall of
 * writing to each in turn): each member has its own queue and writer task,
 * and the room (lib/chat_room.ts) only queues bytes, dropping a member
 * whose queue passes a bound. Rooms over --announce-limit members stop
 * announcing joins and leaves: a join costs one welcome, not a line to all.
 *
 * Read first: TcpMember.send, then serveMember.
 */
import {
  parseCommandLine,
  parseInteger,
  parsePort,
  parseSeconds,
  runCommand,
} from "../lib/cli.ts";
import { type Member, Room } from "../lib/chat_room.ts";
import { raceTimeout, seconds, Sweeper, TIMED_OUT } from "../lib/deadline.ts";
import { isDisconnect } from "../lib/errors.ts";
import * as io from "../lib/io.ts";
import { BufferedReader, LineTooLongError } from "../lib/reader.ts";
import * as server from "../lib/server.ts";
import * as tls from "../lib/tls.ts";

export const DEFAULT_PORT = 8888;
export const DEFAULT_MAX_LINE = 4096;
export const DEFAULT_MAX_QUEUE = 1024 * 1024;
export const DEFAULT_IDLE_TIMEOUT = 1800; // seconds
export const DEFAULT_ANNOUNCE_LIMIT = 100;
export { MAX_NAME_LENGTH } from "../lib/chat_room.ts";
const FLUSH_TIMEOUT_MS = 2000; // for a leaving member's last lines

const USAGE = `Usage: chat_server.ts [--hostname HOST] [--port PORT] [options]

A line-based chat room over TCP: every line a client sends goes to every
other client as "name: line". Commands: /nick NAME, /who, /quit, /help.

Options:
  --hostname HOST    address to listen on (default 127.0.0.1; 0.0.0.0 or :: to expose)
  --port PORT        port to listen on (default ${DEFAULT_PORT}; 0 picks a free port)
  --max-line BYTES   longest line accepted from a client (default ${DEFAULT_MAX_LINE})
  --max-queue BYTES  output queued for one client before it is dropped as
                     not reading (default ${DEFAULT_MAX_QUEUE})
  --idle-timeout SECONDS
                     close a connection silent both ways for this long
                     (default ${DEFAULT_IDLE_TIMEOUT}; 0: never); lines delivered count, so
                     a member who only reads stays while the room talks
  --announce-limit N announce joins and leaves only while the room has at
                     most N members (default ${DEFAULT_ANNOUNCE_LIMIT})
  --max-connections N
                     clients at once (default ${server.DEFAULT_MAX_CONNECTIONS}); keep it below
                     the open-file limit (ulimit -n)
  --max-per-address N
                     clients at once from one address (default ${server.DEFAULT_MAX_PER_ADDRESS})
${tls.SERVER_TLS_HELP}
                     (clients cannot be asked for certificates: Deno has no
                     way to request them yet, deno#26825)
  -h, --help         show this help`;

export interface ChatServerOptions {
  hostname?: string;
  port?: number;
  maxLine?: number; // longest line accepted, in bytes, without "\n"
  maxQueue?: number; // bytes queued for a member before it is dropped
  idleTimeout?: number; // seconds silent both ways before closing; 0: never
  announceLimit?: number; // joins and leaves announced up to this many
  maxConnections?: number;
  maxPerAddress?: number;
  tls?: server.ServerTls;
  log?: (message: string) => void; // joins and leaves (default: stderr)
}

/**
 * A member on a TCP (or TLS) connection: its own queue, and a writer task
 * that alone waits on the peer, running only while the queue holds
 * something. A room that wrote to each member in turn would wait on the
 * slowest; here send() only queues, and returns at once.
 */
class TcpMember implements Member {
  #queue: Uint8Array[] = [];
  #queuedBytes = 0; // counted until written, so a stuck write counts too
  #writing = false; // a writer task is running
  #ending = false; // no more messages: the writer finishes the queue
  #broken = false; // the connection failed or was closed
  written: Promise<void> = Promise.resolve(); // the latest writer task
  readonly traffic: io.Traffic = { bytes: 0 }; // both ways, for idleness

  constructor(
    readonly conn: Deno.Conn,
    public name: string,
    readonly maxQueue: number,
  ) {}

  /** Queues bytes, or returns false when they would pass the bound. */
  send(bytes: Uint8Array): boolean {
    if (this.#ending || this.#broken) return true;
    if (this.#queuedBytes + bytes.byteLength > this.maxQueue) return false;
    this.#queue.push(bytes);
    this.#queuedBytes += bytes.byteLength;
    if (!this.#writing) this.written = this.#write();
    return true;
  }

  end() {
    this.#ending = true;
  }

  abort() {
    this.#broken = true;
    this.#queue = [];
    io.closeQuietly(this.conn); // a write stuck on a non-reader fails now
  }

  /** Writes until the queue is empty: what queued meanwhile, in one go. */
  async #write() {
    this.#writing = true;
    try {
      while (this.#queue.length > 0) {
        const batch = io.concat(this.#queue);
        this.#queue = [];
        await io.writeAll(this.conn, batch);
        this.#queuedBytes -= batch.byteLength;
        this.traffic.bytes += batch.byteLength;
      }
    } catch {
      // Reset by the peer, or closed by us: this member's output is over,
      // and its reading side finds the connection gone.
      this.#broken = true;
      this.#queue = [];
    } finally {
      this.#writing = false;
    }
  }
}

/** One timer for every connection's idle deadline (lib/deadline.ts). */
type Idle = { sweeper: Sweeper; ms: number };

/**
 * One TCP member, from welcome to goodbye. TCP is a byte stream: a read may
 * end mid-line, so the complete lines of each read go to the room together
 * and the rest waits in the reader for the next read.
 */
async function serveMember(
  room: Room,
  conn: Deno.Conn,
  maxQueue: number,
  idle?: Idle,
) {
  const member = new TcpMember(conn, room.newName(), maxQueue);
  room.join(member, io.formatAddress(conn.remoteAddr));
  const timer = idle?.sweeper.idle(member.traffic, idle.ms, () => {
    room.tell(member, `idle for ${seconds(idle.ms)}; closing`);
    room.leave(member, "idle");
    // The read below waits on a silent peer: closing ends it.
    raceTimeout(member.written, FLUSH_TIMEOUT_MS).then(() => member.abort());
  });
  // A waiting member holds 256 bytes; one that streams reads 64 KiB at once.
  const reader = new BufferedReader(conn, {
    maxLine: room.options.maxLine,
    initialSize: 256,
    largeReads: true,
  });
  let reason = "connection lost"; // unless the loop ends otherwise
  try {
    while (!room.closing && room.members.has(member)) {
      let more;
      try {
        const before = reader.buffered;
        more = await reader.fill();
        member.traffic.bytes += reader.buffered - before;
      } catch (error) {
        if (!(error instanceof LineTooLongError)) throw error;
        // No "\n" within the limit: refused to its sender only; the rest
        // of the line is skipped however long it is.
        room.refuseLongLine(member);
        more = await reader.skipLine();
      }
      // Complete lines end at the last "\n"; at the end of the input, the
      // last line needs none.
      const unread = reader.bytes.subarray(reader.start, reader.end);
      const cut = more ? unread.lastIndexOf(0x0a) + 1 : unread.length;
      if (cut > 0) {
        const staying = room.receive(member, unread.subarray(0, cut));
        reader.consume(cut);
        if (!staying) {
          reason = "quit";
          break;
        }
      }
      if (!more) {
        reason = "disconnected"; // the client closed (or half-closed)
        break;
      }
    }
  } catch (error) {
    if (!isDisconnect(error)) throw error;
  } finally {
    if (timer) idle!.sweeper.remove(timer);
    room.leave(member, reason);
  }
  // Its last lines (a "bye") get a bounded time to leave; then a lingering
  // close, so that unread input does not turn our close into a reset that
  // could destroy them in transit.
  const flushed = await raceTimeout(member.written, FLUSH_TIMEOUT_MS);
  if (flushed === TIMED_OUT || room.closing) member.abort();
  else await io.lingeringClose(conn, FLUSH_TIMEOUT_MS);
}

export function startChatServer(
  options: ChatServerOptions = {},
): server.ServerHandle {
  const log = options.log ?? ((message: string) => console.error(message));
  const room = new Room({
    maxLine: options.maxLine ?? DEFAULT_MAX_LINE,
    announceLimit: options.announceLimit ?? DEFAULT_ANNOUNCE_LIMIT,
    log,
  });
  const maxQueue = options.maxQueue ?? DEFAULT_MAX_QUEUE;
  const ms = (options.idleTimeout ?? DEFAULT_IDLE_TIMEOUT) * 1000;
  const idle = ms > 0 ? { sweeper: new Sweeper(ms / 4), ms } : undefined;
  return server.serveTcp({
    ...options,
    hostname: options.hostname ?? "127.0.0.1",
    port: options.port ?? DEFAULT_PORT,
    onShutdown: () => room.shutdown(),
    log,
  }, (conn) => serveMember(room, conn, maxQueue, idle));
}

if (import.meta.main) {
  await runCommand("chat_server.ts", async () => {
    const text = (value: unknown) =>
      ({ type: "string", default: String(value) }) as const;
    const { values } = parseCommandLine(Deno.args, {
      usage: USAGE,
      options: {
        hostname: text("127.0.0.1"),
        port: text(DEFAULT_PORT),
        "max-line": text(DEFAULT_MAX_LINE),
        "max-queue": text(DEFAULT_MAX_QUEUE),
        "idle-timeout": text(DEFAULT_IDLE_TIMEOUT),
        "announce-limit": text(DEFAULT_ANNOUNCE_LIMIT),
        "max-connections": text(server.DEFAULT_MAX_CONNECTIONS),
        "max-per-address": text(server.DEFAULT_MAX_PER_ADDRESS),
        ...tls.SERVER_TLS_OPTIONS,
      },
    });
    const count = (name: keyof typeof values, min: number, max = 1e6) =>
      parseInteger(values[name] as string, `--${name}`, min, max);
    const serverTls = await tls.loadServerTls(values);
    const chat = startChatServer({
      hostname: values.hostname,
      port: parsePort(values.port),
      maxLine: count("max-line", 1, 1024 * 1024),
      maxQueue: count("max-queue", 1024, 2 ** 30),
      idleTimeout: parseSeconds(values["idle-timeout"], "--idle-timeout", true),
      announceLimit: count("announce-limit", 0),
      maxConnections: count("max-connections", 1),
      maxPerAddress: count("max-per-address", 1),
      tls: serverTls,
    });
    return server.runUntilSignal(chat, serverTls ? "tls" : "tcp");
  });
}
