// The chat room behind chat_server.ts: names, commands, and the broadcast
// that queues a line for every member without ever waiting on one. It knows
// members, not sockets: anything that can queue bytes for a person is a
// Member. Today that is chat_server.ts's TcpMember; next come WebSocket
// members and a Redis link between servers (the browser and multi-process
// rooms), which is why it is here and not inside chat_server.ts, whose
// reading budget holds its network lessons: the member's own queue, and
// lines cut out of a byte stream.
import { concat } from "./io.ts";
import { raceTimeout } from "./deadline.ts";
import { replaceControls } from "./terminal.ts";

/**
 * What the room knows of a member: a name and a queue. send() never waits
 * (false: the queue is full, the member is not reading); end() delivers
 * what is queued, then stops; abort() stops now, dropping it.
 */
export interface Member {
  name: string;
  send(bytes: Uint8Array): boolean;
  end(): void;
  abort(): void;
  readonly written: Promise<void>; // settles when its output has stopped
}

export interface RoomOptions {
  maxLine: number; // longest line accepted, in bytes, without "\n"
  announceLimit: number; // joins and leaves announced up to this many
  log: (message: string) => void;
}

export const MAX_NAME_LENGTH = 24; // characters
const MAX_NAMES_LISTED = 100; // /who's reply stays small
const SHUTDOWN_FLUSH_MS = 1000; // for everyone's "server shutting down"
const HINT = "/help lists commands";
const HELP =
  "commands: /nick NAME (change your name), /who (list the room), /quit (leave), /help";

const encoder = new TextEncoder();
const decoder = new TextDecoder(); // not fatal: bad UTF-8 becomes U+FFFD
const NEWLINE = encoder.encode("\n");

/** "* text\n": how every server notice looks on the wire. */
function notice(text: string): Uint8Array {
  return encoder.encode(`* ${text}\n`);
}

/** Printable ASCII (tabs too) not starting blank: relayed as it is. */
function isPlainText(line: Uint8Array): boolean {
  if (line[0] <= 0x20) return false;
  for (let i = 0; i < line.length; i++) {
    if (line[i] > 0x7e || (line[i] < 0x20 && line[i] !== 0x09)) return false;
  }
  return true;
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
}

export class Room {
  // Everyone, in joining order, and the same members by lower-cased name:
  // names are unique regardless of case, so "Alice" cannot pose as "alice".
  readonly members = new Set<Member>();
  readonly #names = new Map<string, Member>();
  #guests = 0;
  closing = false;

  constructor(readonly options: RoomOptions) {}

  /** A fresh guest name; numbers someone took with /nick are skipped. */
  newName(): string {
    let name = `guest${++this.#guests}`;
    while (this.#names.has(name)) name = `guest${++this.#guests}`;
    return name;
  }

  /**
   * Queues the same bytes for everyone but `except`: one push per member,
   * never a wait. Members whose queue is full are dropped afterwards.
   */
  broadcast(bytes: Uint8Array, except?: Member) {
    const dropped: Member[] = [];
    for (const member of this.members) {
      if (member !== except && !member.send(bytes)) dropped.push(member);
    }
    for (const member of dropped) this.leave(member, "not reading");
  }

  /** Joins and leaves: told to all in a small room, to none in a big one. */
  announce(text: string) {
    if (this.members.size <= this.options.announceLimit) {
      this.broadcast(notice(text));
    }
  }

  /** A notice for one member; one that is not reading is dropped. */
  tell(member: Member, text: string) {
    if (!member.send(notice(text))) this.leave(member, "not reading");
  }

  join(member: Member, from: string) {
    this.announce(`${member.name} joined`);
    this.members.add(member);
    this.#names.set(member.name, member);
    this.tell(member, `welcome ${member.name}; ${HINT}`);
    this.options.log(`${member.name} joined from ${from}`);
  }

  /** Removes a member once; "not reading" also cuts its connection. */
  leave(member: Member, reason: string) {
    if (!this.members.delete(member)) return; // already gone
    this.#names.delete(member.name.toLowerCase());
    if (reason === "not reading") member.abort();
    else member.end();
    if (this.closing) return; // everyone already got the shutdown notice
    this.options.log(`${member.name} left (${reason})`);
    const shown = reason === "not reading" || reason === "idle";
    this.announce(`${member.name} left${shown ? ` (${reason})` : ""}`);
  }

  /** The notice for a line over the limit, to its sender only. */
  refuseLongLine(member: Member) {
    const limit = this.options.maxLine;
    this.tell(member, `line too long (over ${limit} bytes); not sent`);
  }

  /**
   * Runs complete lines from `member` (each ending in "\n" or "\r\n"; the
   * last may lack it at the end of the input). Plain lines are gathered
   * into one buffer and broadcast once: a read that brought ten lines costs
   * each member one queue push, not ten. A command first sends what was
   * gathered before it. Returns false when the member quits.
   */
  receive(member: Member, bytes: Uint8Array): boolean {
    let prefix = encoder.encode(`${member.name}: `);
    let gathered: Uint8Array[] = [];
    for (let start = 0; start < bytes.length;) {
      let end = bytes.indexOf(0x0a, start);
      if (end < 0) end = bytes.length;
      let line = bytes.subarray(start, bytes[end - 1] === 0x0d ? end - 1 : end);
      start = end + 1;
      if (line.length > this.options.maxLine) {
        this.refuseLongLine(member);
      } else if (line[0] === 0x2f) { // "/"
        if (gathered.length > 0) this.broadcast(concat(gathered), member);
        gathered = [];
        if (!this.command(member, replaceControls(decoder.decode(line)))) {
          return false;
        }
        prefix = encoder.encode(`${member.name}: `); // after a /nick
      } else if (line.length > 0) {
        if (!isPlainText(line)) {
          // Decoding repairs bad UTF-8; escape sequences must not reach the
          // other members' terminals; a blank line is not worth sending.
          const text = replaceControls(decoder.decode(line));
          if (text.trim() === "") continue;
          line = encoder.encode(text);
        }
        gathered.push(prefix, line, NEWLINE);
      }
    }
    if (gathered.length > 0) this.broadcast(concat(gathered), member);
    return true;
  }

  /** Runs one command line; false when the member quits. */
  command(member: Member, text: string): boolean {
    const [, command, argument] = /^(\S*)\s*(.*)$/s.exec(text)!;
    switch (command.toLowerCase()) {
      case "/nick":
        this.rename(member, argument.trim().normalize("NFC"));
        break;
      case "/who": {
        const names = [...this.members].map((other) => other.name);
        const more = names.length - MAX_NAMES_LISTED;
        const listed = names.slice(0, MAX_NAMES_LISTED).join(", ") +
          (more > 0 ? ` and ${more} more` : "");
        this.tell(member, `${names.length} here: ${listed}`);
        break;
      }
      case "/help":
        this.tell(member, HELP);
        break;
      case "/quit":
        this.tell(member, `bye ${member.name}`);
        return false;
      default:
        this.tell(member, `unknown command ${command}; ${HINT}`);
    }
    return true;
  }

  rename(member: Member, name: string) {
    const holder = this.#names.get(name.toLowerCase());
    const problem = checkName(name) ??
      (name === member.name ? `you are already ${name}` : undefined) ??
      (holder && holder !== member ? `name ${name} is taken` : undefined);
    if (problem) return this.tell(member, problem);
    const oldName = member.name;
    this.#names.delete(oldName.toLowerCase());
    this.#names.set(name.toLowerCase(), member);
    member.name = name;
    this.options.log(`${oldName} is now ${name}`);
    this.broadcast(notice(`${oldName} is now ${name}`));
  }

  /** Before the connections close: tell everyone, give them a moment. */
  async shutdown() {
    this.closing = true;
    for (const member of this.members) {
      member.send(notice("server shutting down"));
      member.end();
    }
    const writers = [...this.members].map((member) => member.written);
    await raceTimeout(Promise.allSettled(writers), SHUTDOWN_FLUSH_MS);
  }
}
