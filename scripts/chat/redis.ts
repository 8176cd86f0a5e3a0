// One chat room across many chat_server.ts processes (--redis URL): the
// RoomLink of chat/room.ts, over Redis. A process can write only to its
// own sockets, so each server publishes its room's lines on a Redis channel
// and delivers what the others publish (pub/sub: Redis hands each message
// to every subscriber and keeps nothing). What all servers must agree on is
// decided inside Redis by one Lua script, which runs alone: who holds a
// name (a hash, name → server) and which servers live (a sorted set,
// server → lease deadline, renewed every 2 s). A server killed with -9
// stops renewing; 10 s later its names are free and the next heartbeat
// anywhere announces its members gone. Losing Redis splits the room: each
// server goes on with its own members, tells them, retries with back-off,
// and claims its names again once whole. Nothing queues while split, and at
// most MAX_IN_FLIGHT commands wait on a slow Redis. chat_server.ts loads
// this module (and the npm client the Redis project maintains) only for
// --redis, so the plain server needs no package.
import { Buffer } from "node:buffer";
import { createClient } from "npm:redis@5.12.1";
import type { Room, RoomLink } from "./room.ts";
import { raceTimeout, seconds, TIMED_OUT } from "../../lib/deadline.ts";
import { describeError, Failure, UsageError } from "../../lib/errors.ts";
import { formatHostPort } from "../../lib/io.ts";
import { rateLimitedLog } from "../../lib/server.ts";

const LEASE_MS = 10_000; // a silent server's names are freed after this
const HEARTBEAT_MS = 2_000; // how often each server renews its lease
const ANSWER_MS = 2_000; // for connecting, and for any answer
const RETRY_MS = [250, 3_000]; // back-off while split: doubling, jittered
const MAX_IN_FLIGHT = 4096; // commands waiting on Redis; more are dropped

// KEYS: names (lower-case name → "server Name"), servers (→ lease), the
// guest counter. ARGV: the operation, this server, then its arguments.
const SCRIPT = `
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local names, servers, op, me = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
local function owner(held) return string.match(held, '^(%S+) ') end
local function shown(held) return string.match(held, ' (.*)$') end
local function alive(server)
  local lease = redis.call('ZSCORE', servers, server)
  return lease and tonumber(lease) > now
end
local function holder(key)
  local held = redis.call('HGET', names, key)
  if held and alive(owner(held)) then return owner(held) end
end
local function take(key, name) -- 0 when another live server holds it
  local other = holder(key)
  if other and other ~= me then return 0 end
  redis.call('HSET', names, key, me .. ' ' .. name)
  return 1
end
if op == 'claim' then return take(ARGV[3], ARGV[4]) end
if op == 'lookup' then return holder(ARGV[3]) or false end
if op == 'guest' then -- a name nobody holds, not even us
  for _ = 1, 100 do
    local name = 'guest' .. redis.call('INCR', KEYS[3])
    if not holder(name) then take(name, name) return name end
  end
  return false
end
if op == 'release' and ARGV[3] then
  local held = redis.call('HGET', names, ARGV[3])
  if held and owner(held) == me then redis.call('HDEL', names, ARGV[3]) end
  return 1
end
local all = redis.call('HGETALL', names)
if op == 'who' then -- how many live names, and the first ARGV[3]
  local listed, count, live = {}, 0, {}
  for i = 1, #all, 2 do
    local server = owner(all[i + 1])
    if live[server] == nil then live[server] = alive(server) end
    if live[server] then
      count = count + 1
      if #listed < tonumber(ARGV[3]) then listed[#listed + 1] = shown(all[i + 1]) end
    end
  end
  return {count, listed}
end
if op == 'release' then -- all ours, and our lease: leaving the room
  for i = 1, #all, 2 do
    if owner(all[i + 1]) == me then redis.call('HDEL', names, all[i]) end
  end
  return redis.call('ZREM', servers, me)
end
if op == 'beat' then -- renew our lease; free the names of the dead
  local added, lost = redis.call('ZADD', servers, now + ARGV[3], me), {}
  local dead = redis.call('ZRANGEBYSCORE', servers, '-inf', now)
  if #dead > 0 then
    local gone = {}
    for _, server in ipairs(dead) do gone[server] = true end
    redis.call('ZREM', servers, unpack(dead))
    for i = 1, #all, 2 do
      if gone[owner(all[i + 1])] then
        redis.call('HDEL', names, all[i])
        lost[#lost + 1] = shown(all[i + 1])
      end
    end
  end
  return {added, redis.call('HLEN', names), lost}
end
if op == 'register' then -- ARGV[3] lease, then key, name…: all our names
  redis.call('ZADD', servers, now + ARGV[3], me)
  local mine, result = {}, {}
  for i = 4, #ARGV, 2 do mine[ARGV[i]] = true end
  for i = 1, #all, 2 do -- ours no more: they left while we were away
    if owner(all[i + 1]) == me and not mine[all[i]] then
      redis.call('HDEL', names, all[i])
    end
  end
  for i = 4, #ARGV, 2 do
    result[#result + 1] = take(ARGV[i], ARGV[i + 1])
    local n = tonumber(string.match(ARGV[i], '^guest(%d+)$'))
    if n and n > tonumber(redis.call('GET', KEYS[3]) or 0) then
      redis.call('SET', KEYS[3], n) -- a restarted Redis forgot the count
    end
  end
  return result
end`;

/**
 * Connects to the Redis at `url` for the room `room`: Failure (exit 1) when
 * it cannot; UsageError for a malformed URL or room name.
 */
export async function connectRoom(
  url: string,
  room: string,
  log = (line: string) => console.error(line),
): Promise<RedisLink> {
  const parsed = URL.canParse(url) ? new URL(url) : undefined;
  if (
    parsed?.protocol !== "redis:" || !parsed.hostname ||
    !/^(\/\d{0,2})?$/.test(parsed.pathname) || parsed.search || parsed.hash
  ) {
    throw new UsageError(
      `--redis must look like redis://HOST:PORT[/DB], got '${url}'`,
    );
  }
  if (!/^[\w.-]{1,64}$/.test(room)) {
    throw new UsageError(
      `--room may hold only letters, digits, '_', '.' and '-' (at most 64), got '${room}'`,
    );
  }
  const host = parsed.hostname.replace(/^\[|\]$/g, "");
  const link = new RedisLink(
    url,
    room,
    formatHostPort(host, Number(parsed.port || 6379)),
    log,
  );
  try {
    await link.connect();
  } catch (error) {
    await link.close();
    throw new Failure(
      `cannot reach Redis at ${link.where}: ${describeError(error)}`,
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
  #clients?: ReturnType<typeof createClient>[]; // commands, subscription
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

  /** One attempt: two connections, the subscription, our names claimed. */
  async connect() {
    const commands = createClient({
      url: this.url,
      socket: { connectTimeout: ANSWER_MS, reconnectStrategy: false },
      disableOfflineQueue: true, // while split, a call fails at once
      commandsQueueMaxLength: MAX_IN_FLIGHT,
    });
    const clients = this.#clients = [commands, commands.duplicate()];
    for (const client of clients) {
      // An error event nobody listens to would end the process.
      client.on("error", (error) => {
        if (this.#ready && this.#clients === clients) this.#lost(error);
      });
    }
    for (const client of clients) {
      if (await raceTimeout(client.connect(), ANSWER_MS + 500) === TIMED_OUT) {
        throw new Failure(`timed out after ${seconds(ANSWER_MS)}`, "timeout");
      }
    }
    // Lines travel as bytes: relayed as they are, never decoded.
    await clients[1].subscribe(this.#channel, (m) => this.#receive(m), true);
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
    const server = await this.#call(false, "lookup", name.toLowerCase());
    if (typeof server === "string") {
      this.#send(server, name.toLowerCase(), bytes);
    }
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
    const message = Buffer.concat([
      Buffer.from(`${this.#id} ${to} ${key}\n`),
      bytes,
    ]);
    this.#clients![0].publish(this.#channel, message).catch((error) =>
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
    if (!this.#clients || !(this.#ready || connecting)) return;
    const call = this.#clients[0].eval(SCRIPT, {
      keys: this.#keys,
      arguments: [op, this.#id, ...args.map(String)],
    });
    call.catch(() => {}); // a failure after the deadline is no news
    try {
      const reply = await raceTimeout(call, ANSWER_MS);
      if (reply !== TIMED_OUT) return reply;
      throw new Failure(`no answer within ${seconds(ANSWER_MS)}`, "timeout");
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
    this.log(
      `Redis at ${this.where} lost (${
        describeError(error)
      }); the room is split`,
    );
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
    for (const client of this.#clients ?? []) {
      try {
        client.destroy();
      } catch {
        // never connected, or closed already
      }
    }
    this.#clients = undefined;
  }
}

/** Lower-case key and name of each member, as the script takes them. */
function pairs(members: { name: string }[]): string[] {
  return members.flatMap(({ name }) => [name.toLowerCase(), name]);
}
