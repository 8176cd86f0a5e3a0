// The buffered reader of every protocol here that mixes lines and bytes
// (chat, rpc, upload, udp_client's stdin, http). TCP is a byte stream: one
// read() can return half a line or three, so lines are cut out of a buffer
// at "\n", within a limit that keeps an endless line from eating memory.
import { borrowBuffer, type Reader, returnBuffer } from "./io.ts";

/** Thrown by readLine() when no "\n" arrives within the limit. */
export class LineTooLongError extends Error {
  constructor(readonly limit: number) {
    super(`line longer than ${limit} bytes`);
  }
}

const NEWLINE = 0x0a, CARRIAGE_RETURN = 0x0d;

export class BufferedReader implements Reader {
  #buffer: Uint8Array;
  #own: Uint8Array; // #buffer, unless a large one is borrowed
  #largeReads: boolean;
  #filled = false; // the last read filled all the space it was given
  #small = 0; // reads in a row that brought less than #own holds
  #start = 0; // first unread byte
  #end = 0; // one past the last buffered byte
  #scanned = 0; // bytes from #start already known to hold no newline
  #ended = false;
  #insideLongLine = false; // a too-long line's tail is still unread
  readonly maxLine: number;
  lastLineTerminated = true; // false: the last line had no "\n" (input ended)

  /**
   * `maxLine`: the longest line, without its ending (4096). `initialSize`:
   * the buffer at first (1024), grown as a line needs. `largeReads`: while
   * reads fill the buffer, read into a 64 KiB one from lib/io.ts's pool
   * (chat_server, which consumes what it can before each fill()).
   */
  constructor(
    private readonly source: Reader,
    options: { maxLine?: number; initialSize?: number; largeReads?: boolean } =
      {},
  ) {
    this.maxLine = options.maxLine ?? 4096;
    this.#buffer = this.#own = new Uint8Array(
      Math.min(options.initialSize ?? 1024, this.maxLine + 2),
    );
    this.#largeReads = options.largeReads ?? false;
  }

  /**
   * The next line without "\n" or "\r\n", a fresh copy; null at the end (a
   * last line without "\n" still comes). LineTooLongError past `limit`
   * bytes: skipLine() drops the rest of it, or give up on the peer.
   */
  async readLine(limit = this.maxLine): Promise<Uint8Array | null> {
    while (true) {
      const from = this.#start + this.#scanned;
      const newline = this.#buffer.subarray(from, this.#end).indexOf(NEWLINE);
      if (newline >= 0) {
        this.lastLineTerminated = true;
        return this.#take(from + newline, from + newline + 1, limit);
      }
      this.#scanned = this.#end - this.#start;
      if (this.#ended) {
        if (this.#end === this.#start) return null;
        this.lastLineTerminated = false;
        return this.#take(this.#end, this.#end, limit);
      }
      await this.fill(limit + 2); // throws once the line outgrows the limit
    }
  }

  /** After LineTooLongError, drops the rest of that line, in bounded
   * memory however long it goes on; false at end of input. */
  async skipLine(): Promise<boolean> {
    if (!this.#insideLongLine) return true;
    this.#insideLongLine = false;
    while (true) {
      const newline = this.#buffer.subarray(this.#start, this.#end)
        .indexOf(NEWLINE);
      if (newline >= 0) {
        this.consume(newline + 1);
        return true;
      }
      this.#start = this.#end = this.#scanned = 0;
      if (this.#ended) return false;
      await this.fill();
    }
  }

  /** Raw bytes: what is buffered first, then straight from the source. */
  read(into: Uint8Array): Promise<number | null> {
    if (this.#start < this.#end) {
      const count = Math.min(into.length, this.#end - this.#start);
      into.set(this.#buffer.subarray(this.#start, this.#start + count));
      this.consume(count);
      return Promise.resolve(count);
    }
    if (this.#ended) return Promise.resolve(null);
    return this.source.read(into);
  }

  // For parsers that scan the buffer in place (http_raw_server): the unread
  // bytes are bytes[start, end); consume() what was parsed, fill() for more.

  get bytes(): Uint8Array {
    return this.#buffer;
  }
  get start(): number {
    return this.#start;
  }
  get end(): number {
    return this.#end;
  }
  get buffered(): number {
    return this.#end - this.#start;
  }

  consume(count: number) {
    this.#start += count;
    this.#scanned = 0;
    if (this.#start === this.#end) this.#start = this.#end = 0;
  }

  /**
   * Reads more into the buffer, first moving the unread bytes to the front
   * and growing it (up to `capacity` bytes) if full. False at end of input;
   * LineTooLongError when `capacity` bytes are buffered unread.
   */
  async fill(capacity = this.maxLine + 2): Promise<boolean> {
    if (this.#ended) return false;
    if (this.#start > 0) {
      this.#buffer.copyWithin(0, this.#start, this.#end);
      this.#end -= this.#start;
      this.#start = 0;
    }
    if (this.#end >= capacity) {
      this.#insideLongLine = true; // skipLine() drops the rest
      throw new LineTooLongError(capacity - 2);
    }
    if (this.#largeReads) this.#swapBuffers();
    if (this.#end === this.#buffer.length) {
      const larger = new Uint8Array(
        Math.min(capacity, this.#buffer.length * 4),
      );
      larger.set(this.#buffer.subarray(0, this.#end));
      if (this.#buffer !== this.#own) returnBuffer(this.#buffer);
      this.#buffer = this.#own = larger;
    }
    const space = this.#buffer.length - this.#end;
    const count = await this.source.read(this.#buffer.subarray(this.#end));
    if (count === null) {
      this.#ended = true;
      return false;
    }
    this.#end += count;
    this.#filled = count === space;
    this.#small = count < this.#own.length ? this.#small + 1 : 0;
    return true;
  }

  /** Borrows a large buffer while reads fill the own one; gives it back
   * after two small reads (one may be the tail of what filled the own). */
  #swapBuffers() {
    const borrowed = this.#buffer !== this.#own;
    let next;
    // (A buffer grown past the pool's size for a long line is kept.)
    if (!borrowed && this.#filled && this.#own.length < 65536) {
      next = borrowBuffer();
    } else if (borrowed && this.#small >= 2 && this.#end <= this.#own.length) {
      next = this.#own;
    } else return;
    next.set(this.#buffer.subarray(0, this.#end));
    if (borrowed) returnBuffer(this.#buffer);
    this.#buffer = next;
  }

  #take(lineEnd: number, next: number, limit: number): Uint8Array {
    // A CR ends a line only before "\n"; at end of input it is data.
    const crlf = next > lineEnd && lineEnd > this.#start &&
      this.#buffer[lineEnd - 1] === CARRIAGE_RETURN;
    const end = crlf ? lineEnd - 1 : lineEnd;
    const line = this.#buffer.slice(this.#start, end);
    this.consume(next - this.#start);
    // The whole line is here but too long: it is dropped, then reported.
    if (line.length > limit) throw new LineTooLongError(limit);
    return line;
  }
}
