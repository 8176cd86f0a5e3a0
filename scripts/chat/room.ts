// The chat room: who is in it, under which name, and the broadcast that
// queues a line for every member without ever waiting on one. Part of the
// chat chapter: chat_server.ts builds one Room; commands.ts (what members'
// lines do), web.ts (browser members) and redis.ts (the room across
// servers) work on it. A file of its own so that chat_server.ts's reading
// budget holds its network lessons: the member's own queue, and lines cut
// out of a byte stream. The room knows members, not sockets: anything that
// can queue bytes for a person is a Member (chat_server.ts's TcpMember, on a
// TCP connection or a WebSocket). Through a RoomLink (redis.ts) the room
// spans several servers; while the link is down it carries on with this
// server's members.
//
// Read first: Room.deliver, then Room.join and Room.leave.
import { raceTimeout } from "../../lib/deadline.ts";
import { HINT } from "./commands.ts";

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
 * The rest of the room, on other servers (redis.ts). Every wait is
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

const SHUTDOWN_FLUSH_MS = 1000; // for everyone's "server shutting down"
const encoder = new TextEncoder();

/** "* text\n": how every server notice looks on the wire. */
function notice(text: string): Uint8Array {
  return encoder.encode(`* ${text}\n`);
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
   * Keeps `name` for `member` while the other servers are asked, so that
   * no one here takes it meanwhile; without `member`, frees it again.
   */
  hold(name: string, member?: Member) {
    if (member) this.#names.set(name.toLowerCase(), member);
    else this.#names.delete(name.toLowerCase());
  }

  /** Bytes for everyone but `except`, here and on the other servers. */
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

  /** The notice for a line over the limit, to its sender only. */
  refuseLongLine(member: Member) {
    const limit = this.options.maxLine;
    this.tell(member, `line too long (over ${limit} bytes); not sent`);
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

  /**
   * Renames a member, told to the whole room; with `why` (a name yielded
   * to another server) the member is told why, and only this server hears.
   */
  rename(member: Member, name: string, why?: string) {
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
    this.rename(member, fresh, why);
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
