// Deadlines: every wait on a peer ends. withDeadline (the clients): a read
// has no timeout of its own, so when time is up the socket is closed, which
// fails the read, reported as the timeout it is: Python's settimeout, by
// hand. raceTimeout: for waits that own no socket. Sweeper (the servers'
// idle timeouts): a timer per read costs more than the read, so deadlines
// move with progress and one interval closes the connections overdue.
import { Failure } from "./errors.ts";
import { closeQuietly, type Traffic } from "./io.ts";

/** Resolves after `ms`; early (without error) when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done);
  });
}

export const TIMED_OUT: unique symbol = Symbol("timed out");

/** The value of `promise`, or TIMED_OUT once `ms` pass; the timer is cleared. */
export async function raceTimeout<T>(
  promise: Promise<T>,
  ms: number,
): Promise<T | typeof TIMED_OUT> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<typeof TIMED_OUT>((resolve) => {
    timer = setTimeout(() => resolve(TIMED_OUT), ms);
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}

/** Runs `work` within `ms`, else closes `resource` and throws a Failure of
 * kind "timeout" with `message` (not the error the closing caused). */
export async function withDeadline<T>(
  resource: { close(): void },
  ms: number,
  work: () => Promise<T>,
  message: string,
): Promise<T> {
  let expired = false;
  const timer = setTimeout(() => {
    expired = true;
    closeQuietly(resource);
  }, ms);
  try {
    const result = await work();
    if (!expired) return result;
  } catch (error) {
    if (!expired) throw error;
  } finally {
    clearTimeout(timer);
  }
  throw new Failure(message, "timeout");
}

/** "2 s", "0.5 s": a duration in milliseconds as people write it. */
export function seconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(3))} s`;
}

/** A Sweeper's entry: move `at` (a Date.now() time) to postpone it. */
export class Timed {
  seen = -1; // the progress counter when last looked at
  readonly since = Date.now(); // a minimum rate counts from here
  constructor(
    public at: number,
    readonly span: number,
    readonly expire: (why: "idle" | "slow") => void,
    readonly progress: Traffic | null,
    readonly minRate = 0,
  ) {}
}

/** One interval timer (every `periodMs`, the deadlines' precision) for many
 * deadlines, running only while there are any: an idle server has none. */
export class Sweeper {
  #entries = new Set<Timed>();
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(readonly periodMs: number) {}

  /** A Sweeper for deadlines of `timeoutMs`: each fires at most a fifth of
   * it late, and never more than a second (nor checks more than 50 times a
   * second). The servers' idle timeouts all use this. */
  static forTimeout(timeoutMs: number): Sweeper {
    return new Sweeper(Math.min(1000, Math.max(20, timeoutMs / 5)));
  }

  /** Calls `expire` once `ms` have passed; move `entry.at` to postpone. */
  add(ms: number, expire: () => void): Timed {
    return this.idle(null, ms, expire);
  }

  /**
   * Calls `expire("idle")` once `progress.bytes` stands still for `ms`; with
   * `minRate` (bytes/s), `expire("slow")` once fewer came than that buys
   * after the first `ms` (upload_server: a byte now and then is not enough).
   */
  idle(
    progress: Traffic | null,
    ms: number,
    expire: (why: "idle" | "slow") => void,
    minRate = 0,
  ): Timed {
    const entry = new Timed(Date.now() + ms, ms, expire, progress, minRate);
    entry.seen = progress?.bytes ?? -1;
    this.#entries.add(entry);
    this.#timer ??= setInterval(() => this.#sweep(), this.periodMs);
    return entry;
  }

  remove(entry: Timed) {
    this.#entries.delete(entry);
    if (this.#entries.size === 0 && this.#timer !== undefined) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }

  #sweep() {
    const now = Date.now();
    for (const entry of this.#entries) {
      if (entry.progress !== null && entry.progress.bytes !== entry.seen) {
        entry.seen = entry.progress.bytes;
        entry.at = now + entry.span;
      }
      // By now, `seen` bytes buy the peer seen / minRate seconds.
      const slow = entry.minRate > 0 &&
        now >= entry.since + entry.span + entry.seen * 1000 / entry.minRate;
      if (now >= entry.at || slow) {
        this.remove(entry);
        entry.expire(now >= entry.at ? "idle" : "slow");
      }
    }
  }
}

/** A connection whose every read and write finishes within `ms` (http and
 * upload clients), or fails "<peer>: timed out after N s <doing what>". */
export class TimedConn {
  constructor(
    readonly conn: Deno.Conn,
    readonly ms: number,
    readonly peer: string,
  ) {}

  read(into: Uint8Array): Promise<number | null> {
    return this.#bounded(this.conn.read(into), "waiting for data");
  }

  write(bytes: Uint8Array): Promise<number> {
    return this.#bounded(this.conn.write(bytes), "sending");
  }

  close() {
    closeQuietly(this.conn);
  }

  #bounded<T>(operation: Promise<T>, what: string): Promise<T> {
    const message = `${this.peer}: timed out after ${seconds(this.ms)} ${what}`;
    return withDeadline(this.conn, this.ms, () => operation, message);
  }
}
