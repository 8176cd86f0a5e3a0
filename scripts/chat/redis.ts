// One chat room across many chat_server.ts processes (--redis URL): the
// RoomLink of room.ts, over Redis. Part of the chat chapter: chat_server.ts
// loads it only for --redis, so the plain server needs no npm package (the
// client is behind redis_client.ts). A process can write only to its own
// sockets, so each server publishes its room's lines on a Redis channel and
// delivers what the others publish (pub/sub: Redis hands each message to
// every subscriber and keeps nothing). Who holds a name, and which servers
// live, is decided inside Redis by redis_script.ts. Each server renews a
// 10 s lease every 2 s: one killed with -9 stops renewing, and once its
// lease ends its names are free and the next heartbeat anywhere announces
// its members gone. Losing Redis splits the room: each server goes on with
// its own members, tells them, retries with back-off, and claims its names
// again once whole; nothing queues while split.
//
// Read first: RedisLink.#lost, #reconnect and #register.
import type { Buffer } from "node:buffer";
import { describeError, Failure, UsageError } from "../../lib/errors.ts";
import { rateLimitedLog } from "../../lib/server.ts";
import { redisAddress, RedisClient } from "./redis_client.ts";
import { pairs, SCRIPT } from "./redis_script.ts";
import type { Room, RoomLink } from "./room.ts";

const LEASE_MS = 10_000; // a silent server's names are freed after this
const HEARTBEAT_MS = 2_000; // how often each server renews its lease
const RETRY_MS = [250, 3_000]; // back-off while split: doubling, jittered

/**
 * Connects to the Redis at `url` for the room `room`: Failure (exit 1) when
 * it cannot; UsageError for a malformed URL or room name.
 */
export async function connectRoom(
  url: string,
  room: string,
  log = (line: string) => console.error(line),
): Promise<RedisLink> {
  const where = redisAddress(url);
  if (!/^[\w.-]{1,64}$/.test(room)) {
    throw new UsageError(
      `--room may hold only letters, digits, '_', '.' and '-' (at most 64), got '${room}'`,
    );
  }
  const link = new RedisLink(url, room, where, log);
  try {
    await link.connect();
  } catch (error) {
    await link.close();
    throw new Failure(
      `cannot reach Redis at ${where}: ${describeError(error)}`,
    );
  }
  return link;
}

export class RedisLink implements RoomLink {
  others = 0; // members on the other servers, as of the last heartbeat
  readonly #id = crypto.randomUUID().slice(0, 13); // this server, in Redis
  readonly #keys: string[];
  readonly #channel: string;
  readonly #dropLog: (line: string) => void;
  #room?: Room;
  #redis?: RedisClient;
  #ready = false; // connected, subscribed, our names claimed
  #split = false; // the members were told so
  #closed = false;
  #retry = RETRY_MS[0];
  #timer?: ReturnType<typeof setTimeout>; // the next heartbeat, or retry

  constructor(
    readonly url: string,
    room: string,
    readonly where: string,
    readonly log: (line: string) => void,
  ) {
    this.#keys = ["names", "servers", "guests"].map((k) => `chat:${room}:${k}`);
    this.#channel = `chat:${room}`;
    this.#dropLog = rateLimitedLog(log);
  }

  attach(room: Room) {
    this.#room = room;
    room.link = this;
  }

  /** One attempt: the connections, the subscription, our names claimed. */
  async connect() {
    const redis = this.#redis = new RedisClient(this.url, (error) => {
      if (this.#ready && this.#redis === redis) this.#lost(error);
    });
    await redis.open(this.#channel, (message) => this.#receive(message));
    await this.#register(true);
    this.#ready = true;
    this.#timer = setTimeout(() => this.#heartbeat(), HEARTBEAT_MS);
  }

  publish(bytes: Uint8Array) {
    this.#send("*", "", bytes);
  }

  async guestName() {
    return await this.#call(false, "guest") as string | undefined ?? undefined;
  }

  async claim(name: string) {
    const taken = await this.#call(false, "claim", ...pairs([{ name }]));
    return taken === undefined ? undefined : taken === 1;
  }

  release(name: string) {
    this.#call(false, "release", name.toLowerCase());
  }

  async who(max: number) {
    const reply = await this.#call(false, "who", max) as [number, string[]];
    return reply && { count: reply[0], names: reply[1] };
  }

  async sendTo(name: string, bytes: Uint8Array) {
    const key = name.toLowerCase();
    const server = await this.#call(false, "lookup", key);
    if (typeof server === "string") this.#send(server, key, bytes);
    return server === undefined ? undefined : server !== null;
  }

  /** Leaves the room: our names and lease first, then the connections. */
  async close() {
    this.#closed = true;
    clearTimeout(this.#timer);
    if (this.#ready) await this.#call(false, "release");
    this.#ready = false;
    this.#disconnect();
  }

  /** "FROM TO KEY\n" and the bytes; TO is "*" (everyone) or one server. */
  #send(to: string, key: string, bytes: Uint8Array) {
    if (!this.#ready) return; // split: dropped, never queued
    this.#redis!.publish(this.#channel, `${this.#id} ${to} ${key}\n`, bytes)
      .catch((error) =>
        this.#dropLog(`Redis: a line was dropped: ${describeError(error)}`)
      );
  }

  #receive(message: Buffer) {
    const newline = message.indexOf(0x0a);
    if (newline < 0 || !this.#room) return;
    const [from, to, key] = message.subarray(0, newline).toString().split(" ");
    const bytes = message.subarray(newline + 1);
    if (to === "*" && from !== this.#id) this.#room.deliver(bytes);
    const member = to === this.#id ? this.#room.named(key) : undefined;
    if (member) this.#room.sendTo(member, bytes);
  }

  /**
   * The script's answer; undefined when Redis fails, which splits the room
   * (or, while `connecting`, is thrown to the attempt under way).
   */
  async #call(connecting: boolean, op: string, ...args: (string | number)[]) {
    if (!this.#redis || !(this.#ready || connecting)) return;
    try {
      return await this.#redis.run(SCRIPT, this.#keys, [op, this.#id, ...args]);
    } catch (error) {
      if (connecting) throw error;
      this.#lost(error);
    }
  }

  /**
   * Claims all our names (again), then those of members who joined while
   * that was under way; a member whose name another server took while we
   * were away gets a fresh one. False when Redis failed.
   */
  async #register(connecting: boolean): Promise<boolean> {
    const room = this.#room;
    const members = [...room?.members ?? []];
    const args = [LEASE_MS, ...pairs(members)];
    const taken = await this.#call(connecting, "register", ...args);
    if (!taken || !room) return !!taken;
    const lost = members.filter((_, i) => (taken as number[])[i] === 0);
    for (const member of room.members) {
      if (members.includes(member)) continue;
      const claimed = await this.#call(connecting, "claim", ...pairs([member]));
      if (!claimed) lost.push(member);
    }
    for (const member of lost) {
      const fresh = await this.#call(connecting, "guest");
      if (fresh && room.members.has(member)) {
        room.yieldName(member, fresh as string);
      }
    }
    return true;
  }

  async #heartbeat() {
    const reply = await this.#call(false, "beat", LEASE_MS);
    if (!reply || this.#closed) return; // #lost took over
    const [added, total, lost] = reply as [number, number, string[]];
    const room = this.#room;
    this.others = Math.max(0, total - (room?.members.size ?? 0));
    // Our lease had run out (a long pause, a Redis restart): claim again.
    if (added && !await this.#register(false)) return;
    for (const name of lost) room?.announce(`${name} left (server lost)`);
    if (!this.#ready || this.#closed) return;
    this.#timer = setTimeout(() => this.#heartbeat(), HEARTBEAT_MS);
  }

  /** Redis is gone: tell the members once, then retry with back-off. */
  #lost(error: unknown) {
    if (this.#closed || !this.#ready) return;
    this.#ready = false;
    clearTimeout(this.#timer);
    this.#disconnect();
    const why = describeError(error);
    this.log(`Redis at ${this.where} lost (${why}); the room is split`);
    if (!this.#split) {
      this.#split = true;
      this.#room?.tellAll(
        "the room is split: lines reach only this server's members until Redis is back",
      );
    }
    this.#retry = RETRY_MS[0];
    this.#timer = setTimeout(() => this.#reconnect(), this.#retry);
  }

  async #reconnect() {
    if (this.#closed) return;
    try {
      await this.connect();
    } catch {
      this.#disconnect();
      if (this.#closed) return;
      // Doubling, jittered: servers that lost Redis together do not all
      // come back in the same millisecond.
      this.#retry = Math.min(this.#retry * 2, RETRY_MS[1]);
      const wait = this.#retry * (0.5 + Math.random());
      this.#timer = setTimeout(() => this.#reconnect(), wait);
      return;
    }
    this.log(`Redis at ${this.where} is back; the room is whole`);
    this.#split = false;
    this.#room?.tellAll("the room is whole again");
  }

  #disconnect() {
    this.#redis?.close();
    this.#redis = undefined;
  }
}
