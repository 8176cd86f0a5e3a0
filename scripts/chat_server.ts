/**
 * Chat room for terminals and browsers, on one server or many: every line a
 * member sends goes to every other member as "name: line", each member fed
 * through an outgoing queue of its own. Its parts sit beside it in chat/.
 *
 * Run:    deno run --allow-net scripts/chat_server.ts [--port 8888] [--web-port 8889]
 *           [--redis redis://127.0.0.1:6379 [--room lobby]]
 *   TLS:  add --allow-read=certs --cert certs/localhost.pem --key certs/localhost.key
 * Try it: nc 127.0.0.1 8888 in two terminals, http://127.0.0.1:8889/ in a browser
 *
 * No tutorial builds a chat server: 001 §3 step 5 shows an echo loop, and
 * 000 §4.1 serves one client at a time and decodes each recv(1024) as UTF-8
 * (raising mid-character). A room serves all at once, cuts lines out of the
 * byte stream under a limit, and drops a member whose queue passes a bound
 * rather than wait for it. 001 §5 names WebSocket: a browser asks with
 * "Upgrade: websocket" and a random key, the server answers 101 with
 * SHA-1(key + a fixed GUID), and both then speak frames on that connection
 * (chat/websocket.ts): a browser member is a TcpMember whose lines leave as
 * frames. WebSocket does cross origins (the tutorial says it cannot: so we
 * check Origin) and wss:// is its TLS. A process writes only to its own
 * sockets: with --redis each server publishes its lines on a Redis channel
 * and delivers the others', and names are claimed there (chat/redis.ts).
 *
 * Read first: TcpMember.send, then serveMember.
 */
import {
  Failure,
  parseCommandLine,
  parseInteger,
  parsePort,
  parseSeconds,
  runCommand,
  UsageError,
  withDefault,
} from "../lib/cli.ts";
import { receive } from "./chat/commands.ts";
import { type Member, Room, type RoomLink } from "./chat/room.ts";
import { acceptWeb } from "./chat/web.ts";
import { textFrames, type WebSocketPeer } from "./chat/websocket.ts";
import { raceTimeout, seconds, Sweeper, TIMED_OUT } from "../lib/deadline.ts";
import { describeError, isDisconnect } from "../lib/errors.ts";
import * as io from "../lib/io.ts";
import { BufferedReader, LineTooLongError } from "../lib/reader.ts";
import * as server from "../lib/server.ts";
import * as tls from "../lib/tls.ts";

export const DEFAULT_PORT = 8888;
export const DEFAULT_MAX_LINE = 4096;
export const DEFAULT_MAX_QUEUE = 1024 * 1024;
export const DEFAULT_IDLE_TIMEOUT = 1800; // seconds
export const DEFAULT_ANNOUNCE_LIMIT = 100;
export const DEFAULT_ROOM = "lobby";
export { MAX_NAME_LENGTH } from "./chat/commands.ts";
const FLUSH_TIMEOUT_MS = 2000; // for a leaving member's last lines

const USAGE = `Usage: chat_server.ts [--hostname HOST] [--port PORT] [options]

A line-based chat room over TCP: every line a client sends goes to every
other client as "name: line". Commands: /nick NAME, /who, /msg NAME text,
/quit, /help.

Options:
  --hostname HOST    address to listen on (default 127.0.0.1; 0.0.0.0 or :: to expose)
  --port PORT        port to listen on (default ${DEFAULT_PORT}; 0 picks a free port)
  --web-port PORT    also serve the chat page (GET /) and a WebSocket (GET /ws)
                     on this port, for browsers in the same room (8889 is usual)
  --redis URL        share the room with every server on this Redis:
                     redis://HOST:PORT[/DB] (loads the npm package redis)
  --room NAME        the room's name on Redis (default ${DEFAULT_ROOM})
  --max-line BYTES   longest line accepted from a client (default ${DEFAULT_MAX_LINE})
  --max-queue BYTES  output queued for one client before it is dropped as
                     not reading (default ${DEFAULT_MAX_QUEUE})
  --idle-timeout SECONDS
                     close a connection silent both ways for this long
                     (default ${DEFAULT_IDLE_TIMEOUT}; 0: never); lines delivered count, so
                     a member who only reads stays while the room talks
  --announce-limit N announce joins and leaves only while the room has at
                     most N members (default ${DEFAULT_ANNOUNCE_LIMIT})
  --max-connections N, --max-per-address N
                     clients at once, per port, in all (default ${server.DEFAULT_MAX_CONNECTIONS}: keep
                     it below ulimit -n) and from one address (default ${server.DEFAULT_MAX_PER_ADDRESS})
${tls.SERVER_TLS_HELP}
                     (both ports: https and wss:// for browsers; clients cannot
                     be asked for certificates yet, deno#26825)
  -h, --help         show this help`;

export interface ChatServerOptions {
  hostname?: string;
  port?: number;
  webPort?: number; // HTTP and WebSocket for browsers; none by default
  /** Other servers' share of the room (chat/redis.ts), connected. */
  link?: RoomLink & { attach(room: Room): void; close(): Promise<void> };
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
 * slowest; here send() only queues, and returns at once. On a WebSocket
 * the same member sends its lines as frames.
 */
class TcpMember implements Member {
  #queue: Uint8Array[] = [];
  #queuedBytes = 0; // counted until written, so a stuck write counts too
  #writing = false; // a writer task is running
  #ending = false; // no more messages: the writer finishes the queue
  #broken = false; // the connection failed or was closed
  written: Promise<void> = Promise.resolve(); // the latest writer task
  readonly traffic: io.Traffic = { bytes: 0 }; // both ways, for idleness
  name = "";

  constructor(
    readonly conn: Deno.Conn,
    readonly maxQueue: number,
    readonly socket?: WebSocketPeer,
  ) {}

  /** Queues room bytes, or returns false when they would pass the bound. */
  send(bytes: Uint8Array): boolean {
    return this.queue(this.socket ? textFrames(bytes) : bytes);
  }

  /** Queues bytes as they are to go on the wire. */
  queue(bytes: Uint8Array): boolean {
    if (this.#ending || this.#broken) return true;
    if (this.#queuedBytes + bytes.byteLength > this.maxQueue) return false;
    this.#queue.push(bytes);
    this.#queuedBytes += bytes.byteLength;
    if (!this.#writing) this.written = this.#write();
    return true;
  }

  end() {
    const goodbye = this.socket?.goodbye(); // a WebSocket's close frame
    if (goodbye) this.queue(goodbye);
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
      // Reset by the peer, or closed by us: the reading side finds out too.
      this.#broken = true;
      this.#queue = [];
    } finally {
      this.#writing = false;
    }
  }
}

/** What every member's connection shares: its bound and the idle timer. */
type Settings = { maxQueue: number; idle?: { sweeper: Sweeper; ms: number } };

/**
 * One member, from welcome to goodbye: lines from a byte stream (TCP) or
 * messages from a WebSocket go to the room until the member leaves.
 */
async function serveMember(
  room: Room,
  conn: Deno.Conn,
  { maxQueue, idle }: Settings,
  socket?: WebSocketPeer,
) {
  const member = new TcpMember(conn, maxQueue, socket);
  if (!await room.join(member, io.formatAddress(conn.remoteAddr))) return;
  const timer = idle?.sweeper.idle(member.traffic, idle.ms, () => {
    room.tell(member, `idle for ${seconds(idle.ms)}; closing`);
    room.leave(member, "idle");
    // The read below waits on a silent peer: closing ends it.
    raceTimeout(member.written, FLUSH_TIMEOUT_MS).then(() => member.abort());
  });
  let reason = "connection lost"; // unless the loop ends otherwise
  try {
    reason = socket
      ? await socket.receive(room, member)
      : await readLines(room, member);
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

/**
 * TCP is a byte stream: a read may end mid-line, so the complete lines of
 * each read go to the room together and the rest waits in the reader for
 * the next read. Returns why the member's input ended.
 */
async function readLines(room: Room, member: TcpMember): Promise<string> {
  // A waiting member holds 256 bytes; one that streams reads 64 KiB at once.
  const reader = new BufferedReader(member.conn, {
    maxLine: room.options.maxLine,
    initialSize: 256,
    largeReads: true,
  });
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
      // Usually at once; a command that asks the other servers (--redis)
      // holds this member's next lines until it has its answer.
      const staying = await receive(room, member, unread.subarray(0, cut));
      reader.consume(cut);
      if (!staying) return "quit";
    }
    if (!more) return "disconnected"; // the client closed (or half-closed)
  }
  return "connection lost";
}

/** The server; its handle has the web port's address too, if any. */
export function startChatServer(
  options: ChatServerOptions = {},
): server.ServerHandle & { webAddr?: Deno.NetAddr } {
  const log = options.log ?? ((message: string) => console.error(message));
  const room = new Room({
    maxLine: options.maxLine ?? DEFAULT_MAX_LINE,
    announceLimit: options.announceLimit ?? DEFAULT_ANNOUNCE_LIMIT,
    log,
  });
  const ms = (options.idleTimeout ?? DEFAULT_IDLE_TIMEOUT) * 1000;
  const settings: Settings = {
    maxQueue: options.maxQueue ?? DEFAULT_MAX_QUEUE,
    idle: ms > 0 ? { sweeper: Sweeper.forTimeout(ms), ms } : undefined,
  };
  const listen = { ...options, hostname: options.hostname ?? "127.0.0.1", log };
  // The browsers' port: one HTTP request per connection, the page or the
  // upgrade to a WebSocket member of the same room.
  const web = options.webPort === undefined ? undefined : server.serveTcp(
    { ...listen, port: options.webPort },
    async (conn) => {
      const socket = await acceptWeb(conn, room.options.maxLine);
      if (socket) await serveMember(room, conn, settings, socket);
    },
  );
  options.link?.attach(room);
  try {
    const chat = server.serveTcp({
      ...listen,
      port: options.port ?? DEFAULT_PORT,
      onShutdown: async () => {
        await room.shutdown(); // everyone is told, on both ports
        await Promise.all([web?.close(), options.link?.close()]);
      },
    }, (conn) => serveMember(room, conn, settings));
    return { ...chat, webAddr: web?.addr };
  } catch (error) {
    web?.close();
    options.link?.close();
    throw error;
  }
}

if (import.meta.main) {
  await runCommand("chat_server.ts", async () => {
    const { values } = parseCommandLine(Deno.args, {
      usage: USAGE,
      options: {
        ...server.listenOptions(DEFAULT_PORT).options, // hostname, port, caps
        ...tls.SERVER_TLS_OPTIONS,
        "web-port": { type: "string" },
        redis: { type: "string" },
        room: { type: "string" },
        "max-line": withDefault(DEFAULT_MAX_LINE),
        "max-queue": withDefault(DEFAULT_MAX_QUEUE),
        "idle-timeout": withDefault(DEFAULT_IDLE_TIMEOUT),
        "announce-limit": withDefault(DEFAULT_ANNOUNCE_LIMIT),
      },
    });
    const count = (name: keyof typeof values, min: number, max = 1e6) =>
      parseInteger(values[name] as string, `--${name}`, min, max);
    if (values.room && !values.redis) {
      throw new UsageError("--room needs --redis");
    }
    const web = values["web-port"];
    const listen = await server.parseListen(values); // hostname, port, caps, TLS
    const options: ChatServerOptions = {
      ...listen,
      webPort: web === undefined ? undefined : parsePort(web, "--web-port"),
      maxLine: count("max-line", 1, 1024 * 1024),
      maxQueue: count("max-queue", 1024, 2 ** 30),
      idleTimeout: parseSeconds(values["idle-timeout"], "--idle-timeout", true),
      announceLimit: count("announce-limit", 0),
    };
    if (values.redis !== undefined) {
      // Only a shared room needs Redis, so only then is its client loaded.
      const bridge = await import("./chat/redis.ts").catch((error) => {
        throw new Failure(`--redis needs npm:redis: ${describeError(error)}`);
      });
      options.link = await bridge.connectRoom(
        values.redis,
        values.room ?? DEFAULT_ROOM,
      );
    }
    const chat = startChatServer(options);
    const scheme = listen.tls ? "https" : "http";
    const more = chat.webAddr ? [{ addr: chat.webAddr, scheme } as const] : [];
    return server.runUntilSignal(chat, listen.tls ? "tls" : "tcp", more);
  });
}
