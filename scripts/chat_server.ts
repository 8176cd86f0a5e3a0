/**
 * TCP chat server: every line a client sends goes to every other client,
 * prefixed with the sender's name. Plain UTF-8 lines, so nc and telnet are
 * full clients.
 *
 * Run:    deno run --allow-net scripts/chat_server.ts [--port 8888]
 * Try it: nc 127.0.0.1 8888        (in two terminals; type /help)
 *    or:  deno run --allow-net scripts/chat_client.ts
 *
 * The tutorial's chat server loops over `select()` and calls `sock.send()`
 * on every client in turn: one client that stops reading fills its socket
 * buffer, that send blocks, and the whole room freezes. It also treats each
 * recv() as one message (TCP has no messages) and dies on bad UTF-8. Here
 * each client has its own outgoing queue and writer task, a client whose
 * queue passes a bound is dropped, lines are framed with a byte limit, and
 * invalid UTF-8 becomes U+FFFD.
 */
import {
  parseCommandLine,
  parseInteger,
  parsePort,
  runCommand,
} from "../lib/cli.ts";
import {
  closeQuietly,
  formatAddress,
  isDisconnect,
  writeAll,
} from "../lib/net.ts";
import { LineReader, LineTooLongError } from "../lib/lines.ts";
import { runUntilSignal, type ServerHandle, serveTcp } from "../lib/server.ts";

export const DEFAULT_PORT = 8888;
export const DEFAULT_MAX_LINE = 4096;
export const DEFAULT_MAX_QUEUE = 1024 * 1024;
/** Longest nickname, in characters. */
export const MAX_NAME_LENGTH = 24;

/** /who lists at most this many names, so its reply stays small. */
const MAX_NAMES_LISTED = 100;
/** How long a leaving client gets to receive what is queued for it. */
const FLUSH_TIMEOUT_MS = 2000;
/** On shutdown, how long everyone gets to receive the last notice. */
const SHUTDOWN_FLUSH_MS = 1000;
/** Writes are batched up to this size when a client's queue backs up. */
const BATCH_BYTES = 64 * 1024;

const USAGE = `Usage: chat_server.ts [--hostname HOST] [--port PORT] [options]

A line-based chat room over TCP: every line a client sends goes to every
other client as "name: line". Commands: /nick NAME, /who, /quit, /help.

Options:
  --hostname HOST    address to listen on (default 127.0.0.1; 0.0.0.0 or :: to expose)
  --port PORT        port to listen on (default ${DEFAULT_PORT}; 0 picks a free port)
  --max-line BYTES   longest line accepted from a client (default ${DEFAULT_MAX_LINE})
  --max-queue BYTES  output queued for one client before it is dropped as
                     not reading (default ${DEFAULT_MAX_QUEUE})
  -h, --help         show this help`;

export interface ChatServerOptions {
  hostname?: string;
  port?: number;
  /** Longest line accepted, in bytes, without its line ending. */
  maxLine?: number;
  /** Bytes queued for one client before it is dropped as not reading. */
  maxQueue?: number;
  /** Where join/leave lines go (default: stderr). */
  log?: (message: string) => void;
}

const encoder = new TextEncoder();

/** One connected client: its name and its own queue of outgoing bytes. */
class Client {
  name: string;
  #conn: Deno.Conn;
  #queue: Uint8Array[] = [];
  #queuedBytes = 0;
  #maxQueue: number;
  #wake: (() => void) | undefined;
  #ending = false; // no more messages: finish the queue, then stop
  #broken = false; // the connection failed or was closed
  /** Resolves when the writer task has stopped. */
  readonly written: Promise<void>;

  constructor(conn: Deno.Conn, name: string, maxQueue: number) {
    this.#conn = conn;
    this.name = name;
    this.#maxQueue = maxQueue;
    this.written = this.#writeLoop();
  }

  /**
   * Queues bytes for this client without waiting for them to be sent: the
   * caller (a broadcast) never waits on a slow peer. Returns false when the
   * queue would pass its bound, which means the client is not reading.
   */
  send(bytes: Uint8Array): boolean {
    if (this.#ending || this.#broken) return true;
    if (this.#queuedBytes + bytes.byteLength > this.#maxQueue) return false;
    this.#queue.push(bytes);
    this.#queuedBytes += bytes.byteLength;
    this.#wake?.();
    return true;
  }

  /** Sends what is queued, then lets the writer stop. */
  end() {
    this.#ending = true;
    this.#wake?.();
  }

  /** Stops everything now: the pending read and write fail, the queue goes. */
  abort() {
    this.#broken = true;
    this.#queue = [];
    this.#wake?.();
    closeQuietly(this.#conn);
  }

  async #writeLoop() {
    try {
      while (!this.#broken) {
        if (this.#queue.length === 0) {
          if (this.#ending) return;
          await new Promise<void>((resolve) => this.#wake = resolve);
          this.#wake = undefined;
          continue;
        }
        const batch = this.#takeBatch();
        await writeAll(this.#conn, batch);
        // Counted until written: bytes stuck in a write to a peer that does
        // not read still count against its bound.
        this.#queuedBytes -= batch.byteLength;
      }
    } catch (error) {
      if (!isDisconnect(error)) throw error;
      this.#broken = true;
      this.#queue = [];
    }
  }

  /** The next bytes to write: one message, or several joined into one write. */
  #takeBatch(): Uint8Array {
    if (this.#queue.length === 1 || this.#queue[0].byteLength >= BATCH_BYTES) {
      return this.#queue.shift()!;
    }
    let count = 0;
    let size = 0;
    while (
      count < this.#queue.length &&
      size + this.#queue[count].byteLength <= BATCH_BYTES
    ) {
      size += this.#queue[count++].byteLength;
    }
    const batch = new Uint8Array(size);
    let offset = 0;
    for (const message of this.#queue.splice(0, count)) {
      batch.set(message, offset);
      offset += message.byteLength;
    }
    return batch;
  }
}

/** "* text\n": how every server notice looks on the wire. */
function notice(text: string): Uint8Array {
  return encoder.encode(`* ${text}\n`);
}

/**
 * Replaces control characters (except tab) with U+FFFD: a chat line must not
 * carry terminal escape sequences that would repaint the readers' screens.
 */
function sanitize(text: string): string {
  // deno-lint-ignore no-control-regex
  return text.replace(/[\x00-\x08\x0a-\x1f\x7f-\x9f]/g, "\uFFFD");
}

/** Why a nickname is refused, or undefined when it is acceptable. */
function checkName(name: string): string | undefined {
  if (name === "") return "usage: /nick NAME";
  if ([...name].length > MAX_NAME_LENGTH) {
    return `name too long (at most ${MAX_NAME_LENGTH} characters)`;
  }
  // Letters and digits of any script plus _ . -: no spaces, no control
  // characters, no ':' that would fake the "name: text" separator.
  if (!/^[\p{L}\p{N}_.-]+$/u.test(name)) {
    return "name may hold only letters, digits, '_', '.' and '-'";
  }
  return undefined;
}

export function startChatServer(options: ChatServerOptions = {}): ServerHandle {
  const maxLine = options.maxLine ?? DEFAULT_MAX_LINE;
  const maxQueue = options.maxQueue ?? DEFAULT_MAX_QUEUE;
  const log = options.log ?? ((message: string) => console.error(message));
  // Everyone in the room, in joining order, and the same clients by
  // lower-cased name: names are unique regardless of case, so "Alice"
  // cannot pose as "alice".
  const room = new Set<Client>();
  const names = new Map<string, Client>();
  let guestNumber = 0;
  let closing = false;

  /** Queues the same bytes for everyone but `except`; drops non-readers. */
  function broadcast(bytes: Uint8Array, except?: Client) {
    const dropped: Client[] = [];
    for (const client of room) {
      if (client !== except && !client.send(bytes)) dropped.push(client);
    }
    for (const client of dropped) leave(client, "not reading");
  }

  /** Queues bytes for one client; false (and dropped) if it is not reading. */
  function tell(client: Client, bytes: Uint8Array): boolean {
    if (client.send(bytes)) return true;
    leave(client, "not reading");
    return false;
  }

  function join(conn: Deno.Conn): Client {
    // Skip numbers someone took with /nick (say, "guest7").
    let name = `guest${++guestNumber}`;
    while (names.has(name)) name = `guest${++guestNumber}`;
    const client = new Client(conn, name, maxQueue);
    broadcast(notice(`${name} joined`));
    room.add(client);
    names.set(name, client);
    tell(client, notice(`welcome ${name}; /help lists commands`));
    log(`${name} joined from ${formatAddress(conn.remoteAddr)}`);
    return client;
  }

  /** Removes a client once; "not reading" also cuts its connection. */
  function leave(client: Client, reason: string) {
    if (!room.delete(client)) return; // already gone
    names.delete(client.name.toLowerCase());
    log(`${client.name} left (${reason})`);
    if (reason === "not reading") client.abort();
    else client.end();
    if (closing) return; // everyone already got the shutdown notice
    const suffix = reason === "not reading" ? " (not reading)" : "";
    broadcast(notice(`${client.name} left${suffix}`));
  }

  function rename(client: Client, newName: string) {
    const problem = checkName(newName);
    if (problem) return tell(client, notice(problem));
    if (newName === client.name) {
      return tell(client, notice(`you are already ${newName}`));
    }
    const key = newName.toLowerCase();
    const holder = names.get(key);
    if (holder && holder !== client) {
      return tell(client, notice(`name ${newName} is taken`));
    }
    const oldName = client.name;
    names.delete(oldName.toLowerCase());
    names.set(key, client);
    client.name = newName;
    log(`${oldName} is now ${newName}`);
    broadcast(notice(`${oldName} is now ${newName}`));
  }

  function who(client: Client) {
    const members = [...room].map((member) => member.name);
    const listed = members.slice(0, MAX_NAMES_LISTED).join(", ");
    const more = members.length > MAX_NAMES_LISTED
      ? ` and ${members.length - MAX_NAMES_LISTED} more`
      : "";
    tell(client, notice(`${members.length} here: ${listed}${more}`));
  }

  /** Runs one line from `client`; returns false when the client quits. */
  function handleLine(client: Client, text: string): boolean {
    if (!text.startsWith("/")) {
      if (text.trim() !== "") {
        broadcast(encoder.encode(`${client.name}: ${text}\n`), client);
      }
      return true;
    }
    const [, command, argument] = /^(\S*)\s*(.*)$/s.exec(text)!;
    switch (command.toLowerCase()) {
      case "/nick":
        rename(client, argument.trim().normalize("NFC"));
        return true;
      case "/who":
        who(client);
        return true;
      case "/help":
        tell(
          client,
          notice(
            "commands: /nick NAME (change your name), /who (list the room), /quit (leave), /help",
          ),
        );
        return true;
      case "/quit":
        tell(client, notice(`bye ${client.name}`));
        return false;
      default:
        tell(
          client,
          notice(`unknown command ${command}; /help lists commands`),
        );
        return true;
    }
  }

  async function serveClient(conn: Deno.Conn) {
    const client = join(conn);
    const lines = new LineReader(conn, maxLine);
    // Non-fatal decoding: invalid UTF-8 becomes U+FFFD instead of an error.
    const decoder = new TextDecoder();
    let reason = "disconnected";
    try {
      while (!closing) {
        let line;
        try {
          line = await lines.readLine();
        } catch (error) {
          if (!(error instanceof LineTooLongError)) throw error;
          // Refuse it to the sender only, then skip the rest of the line
          // however long it is: the reader's buffer never grows past the
          // limit, and the client keeps receiving meanwhile.
          const refusal = notice(
            `line too long (over ${maxLine} bytes); not sent`,
          );
          if (!tell(client, refusal)) break;
          if (await lines.skipLine()) continue;
          line = null; // the input ended inside the long line
        }
        if (line === null) break; // the client closed (or half-closed)
        if (!room.has(client)) break; // dropped as not reading
        if (!handleLine(client, sanitize(decoder.decode(line)))) {
          reason = "quit";
          break;
        }
      }
    } catch (error) {
      if (!isDisconnect(error)) throw error;
      reason = "connection lost";
    } finally {
      if (!closing) leave(client, reason);
    }
    await finish(conn, client);
  }

  /**
   * Lets a leaving client receive what is queued for it (its "bye", say),
   * within a time bound, then closes our sending side and reads whatever it
   * still sends for a moment: closing with unread input would make the
   * kernel send a reset, which can destroy those last lines in transit.
   */
  async function finish(conn: Deno.Conn, client: Client) {
    let timer;
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        client.abort();
        resolve();
      }, FLUSH_TIMEOUT_MS);
    });
    try {
      await Promise.race([client.written, deadline]);
      if (closing) return;
      await conn.closeWrite();
      const scratch = new Uint8Array(4096);
      await Promise.race([
        (async () => {
          while (await conn.read(scratch) !== null) { /* discard */ }
        })(),
        deadline,
      ]);
    } catch (error) {
      if (!isDisconnect(error)) throw error;
    } finally {
      clearTimeout(timer);
      client.abort();
    }
  }

  /** Before the connections are closed: tell everyone, give them a moment. */
  async function onShutdown() {
    closing = true;
    const goodbye = notice("server shutting down");
    for (const client of room) {
      client.send(goodbye);
      client.end();
    }
    let timer;
    await Promise.race([
      Promise.allSettled([...room].map((client) => client.written)),
      new Promise((resolve) => timer = setTimeout(resolve, SHUTDOWN_FLUSH_MS)),
    ]);
    clearTimeout(timer);
  }

  return serveTcp({
    hostname: options.hostname ?? "127.0.0.1",
    port: options.port ?? DEFAULT_PORT,
    onShutdown,
  }, serveClient);
}

if (import.meta.main) {
  await runCommand("chat_server.ts", () => {
    const { values } = parseCommandLine(Deno.args, {
      usage: USAGE,
      options: {
        hostname: { type: "string", default: "127.0.0.1" },
        port: { type: "string", default: String(DEFAULT_PORT) },
        "max-line": { type: "string", default: String(DEFAULT_MAX_LINE) },
        "max-queue": { type: "string", default: String(DEFAULT_MAX_QUEUE) },
      },
    });
    const server = startChatServer({
      hostname: values.hostname,
      port: parsePort(values.port),
      maxLine: parseInteger(values["max-line"], "--max-line", 1, 1024 * 1024),
      maxQueue: parseInteger(
        values["max-queue"],
        "--max-queue",
        1024,
        1024 ** 3,
      ),
    });
    return runUntilSignal(server, "tcp");
  });
}
