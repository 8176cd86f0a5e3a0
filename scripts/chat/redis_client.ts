// What the chat room uses of npm:redis, the client the Redis project
// maintains: two connections to one Redis, one for commands and one for
// the subscription (a subscribed connection can send nothing else), every
// wait bounded, lines as bytes. Part of the chat chapter: redis.ts (the
// room across servers) reaches Redis only through RedisClient; a file of
// its own so that redis.ts reads as the room's rules rather than the
// package's API. chat_server.ts loads both only for --redis, so the plain
// server needs no package.
//
// Read first: RedisClient.open.
import { Buffer } from "node:buffer";
import { createClient } from "npm:redis@5.12.1";
import { raceTimeout, seconds, TIMED_OUT } from "../../lib/deadline.ts";
import { Failure, UsageError } from "../../lib/errors.ts";
import { formatHostPort } from "../../lib/io.ts";

const ANSWER_MS = 2_000; // for connecting, and for any answer
const MAX_IN_FLIGHT = 4096; // commands waiting on Redis; more are dropped

/** "HOST:PORT" of a redis://HOST:PORT[/DB] URL; UsageError for others. */
export function redisAddress(url: string): string {
  const parsed = URL.canParse(url) ? new URL(url) : undefined;
  if (
    parsed?.protocol !== "redis:" || !parsed.hostname ||
    !/^(\/\d{0,2})?$/.test(parsed.pathname) || parsed.search || parsed.hash
  ) {
    throw new UsageError(
      `--redis must look like redis://HOST:PORT[/DB], got '${url}'`,
    );
  }
  const host = parsed.hostname.replace(/^\[|\]$/g, "");
  return formatHostPort(host, Number(parsed.port || 6379));
}

export class RedisClient {
  readonly #commands;
  readonly #subscriber;

  /** Connects nothing yet; `onError` hears every error event, from now on. */
  constructor(url: string, onError: (error: unknown) => void) {
    this.#commands = createClient({
      url,
      socket: { connectTimeout: ANSWER_MS, reconnectStrategy: false },
      disableOfflineQueue: true, // while split, a call fails at once
      commandsQueueMaxLength: MAX_IN_FLIGHT,
    });
    this.#subscriber = this.#commands.duplicate();
    // An error event nobody listens to would end the process.
    this.#commands.on("error", onError);
    this.#subscriber.on("error", onError);
  }

  /** Both connections, then the subscription to `channel`. */
  async open(channel: string, onMessage: (message: Buffer) => void) {
    for (const client of [this.#commands, this.#subscriber]) {
      if (await raceTimeout(client.connect(), ANSWER_MS + 500) === TIMED_OUT) {
        throw new Failure(`timed out after ${seconds(ANSWER_MS)}`, "timeout");
      }
    }
    // Lines travel as bytes: relayed as they are, never decoded.
    await this.#subscriber.subscribe(channel, onMessage, true);
  }

  /** Runs a Lua script; a Failure if Redis has not answered in time. */
  async run(script: string, keys: string[], args: (string | number)[]) {
    const call = this.#commands.eval(script, {
      keys,
      arguments: args.map(String),
    });
    call.catch(() => {}); // a failure after the deadline is no news
    const reply = await raceTimeout(call, ANSWER_MS);
    if (reply !== TIMED_OUT) return reply;
    throw new Failure(`no answer within ${seconds(ANSWER_MS)}`, "timeout");
  }

  /** `head` and `bytes` as one message on `channel`. */
  publish(channel: string, head: string, bytes: Uint8Array): Promise<number> {
    const message = Buffer.concat([Buffer.from(head), bytes]);
    return this.#commands.publish(channel, message);
  }

  /** Closes both connections at once, whatever they were doing. */
  close() {
    for (const client of [this.#commands, this.#subscriber]) {
      if (client.isOpen) client.destroy(); // else never opened, or closed
    }
  }
}
