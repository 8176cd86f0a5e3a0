// The chat room behind chat_server.ts: names, commands, and the broadcast
// that queues a line for every member without ever waiting on one. It knows
// members, not sockets: anything that can queue bytes for a person is a
// Member (chat_server.ts's TcpMember, on a TCP connection or a WebSocket).
// A room may span several servers through a RoomLink (chat/redis.ts):
// then names are claimed, /who is answered and private lines are routed
// across all of them, and while the link is down the room carries on with
// this server's members. It is here and not inside chat_server.ts, whose
// reading budget holds its network lessons: the member's own queue, and
// lines cut out of a byte stream.
import { concat } from "../../lib/io.ts";
import { raceTimeout } from "../../lib/deadline.ts";
import { replaceControls } from "../../lib/terminal.ts";

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

/**
 * The rest of the room, on other servers (chat/redis.ts). Every wait is
 * bounded; `undefined` means "the room is split, ask again later".
 */
export interface RoomLink {
  /** Members on the other servers, as last counted (the announce rule). */
  readonly others: number;
  /** Room-wide bytes for the other servers' members; never waits. */
  publish(bytes: Uint8Array): void;
  /** A guest name no server has given out. */
  guestName(): Promise<string | undefined>;
  /** Takes `name` room-wide: false if another server's member has it. */
  claim(name: string): Promise<boolean | undefined>;
  release(name: string): void;
  /** The room's size and up to `max` of its names. */
  who(max: number): Promise<{ count: number; names: string[] } | undefined>;
  /** Private bytes for `name` elsewhere: false if no one has that name. */
  sendTo(name: string, bytes: Uint8Array): Promise<boolean | undefined>;
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
  "commands: /nick NAME (change your name), /who (list the room), /msg NAME text (to NAME only), /quit (leave), /help";

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
  link?: RoomLink; // set when the room spans several servers

  constructor(readonly options: RoomOptions) {}

  /** A fresh guest name; numbers someone took with /nick are skipped. */
  newName(): string {
    let name = `guest${++this.#guests}`;
    while (this.#names.has(name)) name = `guest${++this.#guests}`;
    return name;
  }

  /** The member of this server called `name` (any case), if any. */
  named(name: string): Member | undefined {
    return this.#names.get(name.toLowerCase());
  }

  /**
   * Queues the same bytes for everyone but `except`, here and (through the
   * link) on the other servers.
   */
  broadcast(bytes: Uint8Array, except?: Member) {
    this.deliver(bytes, except);
    this.link?.publish(bytes);
  }

  /**
   * Queues bytes for this server's members: one push per member, never a
   * wait. Members whose queue is full are dropped afterwards.
   */
  deliver(bytes: Uint8Array, except?: Member) {
    const dropped: Member[] = [];
    for (const member of this.members) {
      if (member !== except && !member.send(bytes)) dropped.push(member);
    }
    for (const member of dropped) this.leave(member, "not reading");
  }

  /** Bytes for one member; one that is not reading is dropped. */
  sendTo(member: Member, bytes: Uint8Array) {
    if (!member.send(bytes)) this.leave(member, "not reading");
  }

  /** Joins and leaves: told to all in a small room, to none in a big one. */
  announce(text: string) {
    const size = this.members.size + (this.link?.others ?? 0);
    if (size <= this.options.announceLimit) this.broadcast(notice(text));
  }

  /** A notice for one member. */
  tell(member: Member, text: string) {
    this.sendTo(member, notice(text));
  }

  /** A notice for every member of this server (the link's split notices). */
  tellAll(text: string) {
    this.deliver(notice(text));
  }

  /**
   * Names the member (a guest name unique across servers when linked) and
   * lets it in; false if the server closed meanwhile.
   */
  async join(member: Member, from: string): Promise<boolean> {
    member.name = (await this.link?.guestName()) ?? this.newName();
    if (this.closing) return false;
    if (this.named(member.name)) member.name = this.newName(); // split
    this.announce(`${member.name} joined`);
    this.members.add(member);
    this.#names.set(member.name.toLowerCase(), member);
    this.tell(member, `welcome ${member.name}; ${HINT}`);
    this.options.log(`${member.name} joined from ${from}`);
    return true;
  }

  /** Removes a member once; "not reading" also cuts its connection. */
  leave(member: Member, reason: string) {
    if (!this.members.delete(member)) return; // already gone
    this.#names.delete(member.name.toLowerCase());
    if (reason === "not reading") member.abort();
    else member.end();
    if (this.closing) return; // everyone already got the shutdown notice
    this.link?.release(member.name);
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
   * gathered before it; one that must ask the other servers makes the rest
   * wait for its answer (a promise). False when the member quits.
   */
  receive(
    member: Member,
    bytes: Uint8Array,
    from = 0,
  ): boolean | Promise<boolean> {
    let prefix = encoder.encode(`${member.name}: `);
    let gathered: Uint8Array[] = [];
    for (let start = from; start < bytes.length;) {
      let end = bytes.indexOf(0x0a, start);
      if (end < 0) end = bytes.length;
      let line = bytes.subarray(start, bytes[end - 1] === 0x0d ? end - 1 : end);
      start = end + 1;
      if (line.length > this.options.maxLine) {
        this.refuseLongLine(member);
      } else if (line[0] === 0x2f) { // "/"
        if (gathered.length > 0) this.broadcast(concat(gathered), member);
        gathered = [];
        const staying = this.command(
          member,
          replaceControls(decoder.decode(line)),
        );
        if (staying instanceof Promise) {
          const rest = start; // the lines after the command wait for it
          return staying.then((stays) =>
            stays && this.members.has(member) &&
            this.receive(member, bytes, rest)
          );
        }
        if (!staying) return false;
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
  command(member: Member, text: string): boolean | Promise<boolean> {
    const [, command, argument] = /^(\S*)\s*(.*)$/s.exec(text)!;
    switch (command.toLowerCase()) {
      case "/nick": {
        const renaming = this.rename(member, argument.trim().normalize("NFC"));
        return renaming ? renaming.then(() => true) : true;
      }
      case "/who":
        return this.#who(member);
      case "/msg":
        return this.#private(member, argument);
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

  #who(member: Member): true | Promise<true> {
    const list = (count: number, names: string[], note = "") => {
      const more = count - names.length;
      const listed = names.join(", ") + (more > 0 ? ` and ${more} more` : "");
      this.tell(member, `${count} here: ${listed}${note}`);
      return true as const;
    };
    const here = [...this.members].slice(0, MAX_NAMES_LISTED)
      .map((other) => other.name);
    if (!this.link) return list(this.members.size, here);
    return this.link.who(MAX_NAMES_LISTED).then((room) =>
      room ? list(room.count, room.names) : list(
        this.members.size,
        here,
        " (the room is split: this server only)",
      )
    );
  }

  /** "/msg NAME text": shown to NAME alone as "SENDER (private): text". */
  #private(member: Member, argument: string): true | Promise<true> {
    const [, to, text] = /^(\S+)\s+(.*\S)/s.exec(argument) ?? [];
    if (!text) {
      this.tell(member, "usage: /msg NAME text");
      return true;
    }
    const bytes = encoder.encode(`${member.name} (private): ${text}\n`);
    const recipient = this.named(to);
    if (recipient) this.sendTo(recipient, bytes);
    else if (!this.link) this.tell(member, `no one called ${to} here`);
    else {
      return this.link.sendTo(to, bytes).then((sent) => {
        if (sent === undefined) {
          this.tell(member, `cannot reach ${to}: the room is split`);
        } else if (!sent) this.tell(member, `no one called ${to} here`);
        return true as const;
      });
    }
    return true;
  }

  /** "/nick NAME"; a promise while other servers are asked. */
  rename(member: Member, name: string): void | Promise<void> {
    const holder = this.named(name);
    const problem = checkName(name) ??
      (name === member.name ? `you are already ${name}` : undefined) ??
      (holder && holder !== member ? `name ${name} is taken` : undefined);
    if (problem) return this.tell(member, problem);
    if (!this.link) return this.#renamed(member, name);
    // Hold the name here while the other servers are asked, so that no
    // member of this server can take it meanwhile.
    const key = name.toLowerCase();
    this.#names.set(key, member);
    return this.link.claim(name).then((claimed) => {
      const oldKey = member.name.toLowerCase();
      if (claimed === false || !this.members.has(member)) {
        if (key !== oldKey) this.#names.delete(key);
        if (claimed === false) this.tell(member, `name ${name} is taken`);
        else if (claimed) this.link?.release(name);
        return;
      }
      // While split (undefined) the name is taken here only; the link
      // claims it again when the room is whole.
      if (key !== oldKey) this.link?.release(member.name);
      this.#renamed(member, name);
    });
  }

  /** Renames; with `why`, told to the member, only this server hears it. */
  #renamed(member: Member, name: string, why?: string) {
    const oldName = member.name;
    this.#names.delete(oldName.toLowerCase());
    this.#names.set(name.toLowerCase(), member);
    member.name = name;
    this.options.log(`${oldName} is now ${name}`);
    const renamed = notice(`${oldName} is now ${name}`);
    if (why) this.tell(member, why);
    if (why) this.deliver(renamed, member);
    else this.broadcast(renamed);
  }

  /** Another server's member took this name while the room was split. */
  yieldName(member: Member, fresh: string) {
    const why =
      `${member.name} was taken on another server; you are now ${fresh}`;
    this.#renamed(member, fresh, why);
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
