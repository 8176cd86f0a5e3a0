// One chat room across many chat_server.ts processes (--redis URL): the
// RoomLink of lib/chat_room.ts, over Redis. A process can only write to its
// own sockets, so each server publishes its room's lines on a Redis channel
// and delivers what the others publish (pub/sub: Redis forwards every
// message to every subscriber, keeping nothing). What must be decided once
// for all servers is decided inside Redis by Lua scripts, which run alone:
// who holds a name (a hash, name → server), and which servers are alive (a
// sorted set, server → lease deadline, renewed every 2 s). A server killed
// with -9 stops renewing; 10 s later its names are free and the next
// heartbeat anywhere announces its members gone. Losing Redis splits the
// room: each server goes on with its own members, tells them so, retries
// with back-off, and claims its names again when whole. Nothing queues
// while split, and at most MAX_IN_FLIGHT commands wait on a slow Redis.
// Loaded by chat_server.ts only with --redis, so the plain server needs no
// npm package; it is the client the Redis project maintains.
import { Buffer } from "node:buffer";
import { createClient } from "npm:redis@5.12.1";
import type { Member, Room, RoomLink } from "./chat_room.ts";
import { raceTimeout, seconds, TIMED_OUT } from "./deadline.ts";
import { describeError, Failure, UsageError } from "./errors.ts";
import { formatHostPort } from "./io.ts";
import { rateLimitedLog } from "./server.ts";

const LEASE_MS = 10_000; // a silent server's names are freed after this
const HEARTBEAT_MS = 2_000; // how often each server renews its lease
const ANSWER_MS = 2_000; // any call to Redis, connecting included
const RETRY_MS = [250, 5_000]; // back-off while split, doubling
const MAX_IN_FLIGHT = 4096; // commands waiting on Redis; more are dropped

// Every script's KEYS: the names hash, the servers' leases, the guest counter.
const PRELUDE = `
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local function owner(held) return string.match(held, '^(%S+) ') end
local function alive(server)
  local lease = redis.call('ZSCORE', KEYS[2], server)
  return lease and tonumber(lease) > now
end
local function holder(key)
  local held = redis.call('HGET', KEYS[1], key)
  if held and alive(owner(held)) then return owner(held) end
end
`;
const script = (body: string) => PRELUDE + body;

/** ARGV: me, lease. Renews; frees the dead's names, returns them. */
const HEARTBEAT = script(`
local added = redis.call('ZADD', KEYS[2], now + ARGV[2], ARGV[1])
local dead, lost = {}, {}
for _, server in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)) do
  dead[server] = true
  redis.call('ZREM', KEYS[2], server)
end
if next(dead) then
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do
    if dead[owner(all[i + 1])] then
      redis.call('HDEL', KEYS[1], all[i])
      lost[#lost + 1] = string.match(all[i + 1], ' (.*)$')
    end
  end
end
return {added, redis.call('HLEN', KEYS[1]), lost}`);

/** ARGV: me, lease, key, name, key, name…: all this server's names. */
const REGISTER = script(`
redis.call('ZADD', KEYS[2], now + ARGV[2], ARGV[1])
local mine, result = {}, {}
for i = 3, #ARGV, 2 do mine[ARGV[i]] = true end
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if owner(all[i + 1]) == ARGV[1] and not mine[all[i]] then
    redis.call('HDEL', KEYS[1], all[i]) -- left while we were split
  end
end
for i = 3, #ARGV, 2 do
  local other = holder(ARGV[i])
  if other and other ~= ARGV[1] then result[#result + 1] = 0 else
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[1] .. ' ' .. ARGV[i + 1])
    local n = tonumber(string.match(ARGV[i], '^guest(%d+)$'))
    if n and n > tonumber(redis.call('GET', KEYS[3]) or 0) then
      redis.call('SET', KEYS[3], n)
    end
    result[#result + 1] = 1
  end
end
return result`);

/** ARGV: me. The next free guestN, taken. */
const GUEST = script(`
for _ = 1, 100 do
  local name = 'guest' .. redis.call('INCR', KEYS[3])
  if not holder(name) then
    redis.call('HSET', KEYS[1], name, ARGV[1] .. ' ' .. name)
    return name
  end
end
return false`);

/** ARGV: me, key, name. 1 if taken for me, 0 if another server has it. */
const CLAIM = script(`
local other = holder(ARGV[2])
if other and other ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[1] .. ' ' .. ARGV[3])
return 1`);

/** ARGV: me, key (or none: every name of mine, and my lease). */
const RELEASE = script(`
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if owner(all[i + 1]) == ARGV[1] and (not ARGV[2] or all[i] == ARGV[2]) then
    redis.call('HDEL', KEYS[1], all[i])
  end
end
if not ARGV[2] then redis.call('ZREM', KEYS[2], ARGV[1]) end
return 1`);

/** ARGV: max. The live names' count, and up to max of them. */
const WHO = script(`
local all, names, count, live = redis.call('HGETALL', KEYS[1]), {}, 0, {}
for i = 1, #all, 2 do
  local server = owner(all[i + 1])
  if live[server] == nil then live[server] = alive(server) end
  if live[server] then
    count = count + 1
    if #names < tonumber(ARGV[1]) then
      names[#names + 1] = string.match(all[i + 1], ' (.*)$')
    end
  end
end
return {count, names}`);

/** ARGV: key. The server holding the name, or nil. */
const LOOKUP = script(`return holder(ARGV[1]) or false`);

type Client = ReturnType<typeof createClient>;

/**
 * Connects to the Redis at `url` for the room `room`; throws Failure (exit
 * 1) when it cannot, and UsageError for a malformed URL or room name.
 */
export async function connectRoom(
  url: string,
  room: string,
  log = (line: string) => console.error(line),
): Promise<RedisLink> {
  let parsed;
  try {
    parsed = new URL(url);
  } catch {
    // reported below
  }
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
  const where = formatHostPort(
    parsed.hostname.replace(/^\[|\]$/g, ""),
    Number(parsed.port || 6379),
  );
  const link = new RedisLink(url, room, where, log);
  try {
    await link.connect();
  } catch (error) {
    await link.close();
    throw new Failure(
      `cannot reach Redis at ${where}: ${describeRedis(error)}`,
    );
  }
  return link;
}

/** Node-style errors (node-redis) in the words of lib/errors.ts. */
function describeRedis(error: unknown): string {
  const code = (error as { code?: string })?.code;
  if (code === "ECONNREFUSED") return "connection refused";
  if (code === "ECONNRESET") return "connection reset";
  return describeError(error);
}

export class RedisLink implements RoomLink {
  others = 0; // members on the other servers, as of the last heartbeat
  readonly #id = crypto.randomUUID().slice(0, 13); // this server, in Redis
  readonly #keys: string[];
  readonly #channel: string;
  readonly #dropLog: (line: string) => void;
  #room?: Room;
  #clients?: Client[]; // [commands, messages]: a subscriber does nothing else
  #ready = false; // connected and registered
  #split = false; // the members were told the room is split
  #closed = false;
  #retry = RETRY_MS[0];
  #timer?: ReturnType<typeof setTimeout>; // the heartbeat, or the next retry

  constructor(
    readonly url: string,
    readonly room: string,
    readonly where: string,
    readonly log: (line: string) => void,
  ) {
    this.#keys = ["names", "servers", "guests"].map((key) =>
      `chat:${room}:${key}`
    );
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
      // An error event without a listener would end the process.
      client.on("error", (error) => {
        if (this.#ready && this.#clients === clients) this.#lost(error);
      });
    }
    const deadline = `no answer within ${seconds(ANSWER_MS)}`;
    for (const client of clients) {
      if (await raceTimeout(client.connect(), ANSWER_MS) === TIMED_OUT) {
        throw new Failure(deadline, "timeout");
      }
    }
    await clients[1].subscribe(
      this.#channel,
      (message: Buffer) => this.#receive(message),
      true, // as bytes: lines are relayed, not decoded
    );
    // Our names, claimed (again); then those of members who joined while
    // that was under way; a name another server took meanwhile is given up.
    const members = [...this.#room?.members ?? []];
    const taken = await this.#eval(REGISTER, this.#registration(members), true);
    const lost = members.filter((_, i) => (taken as number[])[i] === 0);
    for (const member of this.#room?.members ?? []) {
      if (members.includes(member)) continue;
      const key = member.name.toLowerCase();
      if (!await this.#eval(CLAIM, [this.#id, key, member.name], true)) {
        lost.push(member);
      }
    }
    await this.#yield(lost, true);
    this.#ready = true;
    this.#timer = setTimeout(() => this.#heartbeat(), HEARTBEAT_MS);
  }

  publish(bytes: Uint8Array) {
    this.#send("*", "", bytes);
  }

  async guestName(): Promise<string | undefined> {
    return (await this.#eval(GUEST, [this.#id]) ?? undefined) as string | undefined;
  }

  async claim(name: string): Promise<boolean | undefined> {
    const taken = await this.#eval(CLAIM, [this.#id, name.toLowerCase(), name]);
    return taken === undefined ? undefined : taken === 1;
  }

  release(name: string) {
    this.#eval(RELEASE, [this.#id, name.toLowerCase()]);
  }

  async who(max: number) {
    const reply = await this.#eval(WHO, [max]) as [number, string[]];
    return reply && { count: reply[0], names: reply[1] };
  }

  async sendTo(name: string, bytes: Uint8Array) {
    const server = await this.#eval(LOOKUP, [name.toLowerCase()]);
    if (server === undefined) return undefined;
    if (server === null) return false;
    this.#send(server as string, name.toLowerCase(), bytes);
    return true;
  }

  /** Leaves the room: our names and lease go, then the connections. */
  async close() {
    this.#closed = true;
    clearTimeout(this.#timer);
    if (this.#ready) await this.#eval(RELEASE, [this.#id]);
    this.#ready = false;
    this.#disconnect();
  }

  /** "FROM TO KEY\n" then the bytes; TO is "*" (everyone) or a server. */
  #send(to: string, key: string, bytes: Uint8Array) {
    if (!this.#ready) return; // split: nothing queues
    const head = Buffer.from(`${this.#id} ${to} ${key}\n`);
    this.#clients![0].publish(this.#channel, Buffer.concat([head, bytes]))
      .catch((error) =>
        this.#dropLog(`Redis: line dropped: ${describeRedis(error)}`)
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
   * A script's reply; undefined when Redis fails, which splits the room
   * (or, `connecting`, is thrown to the attempt under way).
   */
  async #eval(
    body: string,
    args: (string | number)[],
    connecting = false,
  ): Promise<unknown> {
    if (!this.#clients || !(this.#ready || connecting)) return;
    const call = this.#clients[0].eval(body, {
      keys: this.#keys,
      arguments: args.map(String),
    });
    call.catch(() => {}); // a late failure after the deadline is no news
    try {
      const reply = await raceTimeout(call, ANSWER_MS);
      if (reply !== TIMED_OUT) return reply;
      throw new Failure(`no answer within ${seconds(ANSWER_MS)}`, "timeout");
    } catch (error) {
      if (connecting) throw error;
      this.#lost(error);
    }
  }

  #registration(members: Member[]) {
    const pairs = members.flatMap((m) => [m.name.toLowerCase(), m.name]);
    return [this.#id, LEASE_MS, ...pairs];
  }

  /** Members whose names another server took while we were split. */
  async #yield(members: Member[], connecting = false) {
    for (const member of members) {
      const fresh = await this.#eval(GUEST, [this.#id], connecting);
      if (fresh && this.#room?.members.has(member)) {
        this.#room.yieldName(member, fresh as string);
      }
    }
  }

  async #heartbeat() {
    const reply = await this.#eval(HEARTBEAT, [this.#id, LEASE_MS]);
    if (!reply || this.#closed) return; // #lost took over
    const [added, total, lost] = reply as [number, number, string[]];
    const room = this.#room;
    this.others = Math.max(0, total - (room?.members.size ?? 0));
    // Our lease had run out (a long pause, a Redis restart): claim again.
    if (added && room) {
      const members = [...room.members];
      const taken = await this.#eval(REGISTER, this.#registration(members));
      if (!taken) return;
      await this.#yield(members.filter((_, i) => (taken as number[])[i] === 0));
    }
    for (const name of lost) room?.announce(`${name} left (server lost)`);
    if (this.#ready && !this.#closed) {
      this.#timer = setTimeout(() => this.#heartbeat(), HEARTBEAT_MS);
    }
  }

  /** Redis is gone: tell the members once, then retry with back-off. */
  #lost(error: unknown) {
    if (this.#closed || !this.#ready) return;
    this.#ready = false;
    clearTimeout(this.#timer);
    this.#disconnect();
    this.log(
      `Redis at ${this.where} lost (${
        describeRedis(error)
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
      this.#ready = false;
      this.#disconnect();
      if (this.#closed) return;
      // Doubling, with jitter, so that many servers do not return at once.
      this.#retry = Math.min(this.#retry * 2, RETRY_MS[1]);
      this.#timer = setTimeout(
        () => this.#reconnect(),
        this.#retry * (0.5 + Math.random()),
      );
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
        // never connected, or already closed
      }
    }
    this.#clients = undefined;
  }
}
