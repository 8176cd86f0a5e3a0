// Reading newline-framed input from a socket with a byte limit. TCP is a
// byte stream: one read() can return half a line or three lines, so we keep
// a buffer and cut at "\n". The limit is what keeps a client that sends an
// endless line from eating all our memory.

/** Anything with Deno.Conn's read (sockets, stdin, files). */
export interface Reader {
  read(buffer: Uint8Array): Promise<number | null>;
}

/** Thrown by readLine() when no "\n" arrives within the limit. */
export class LineTooLongError extends Error {
  constructor(readonly limit: number) {
    super(`line longer than ${limit} bytes`);
  }
}

const NEWLINE = 0x0a;
const CARRIAGE_RETURN = 0x0d;

export class LineReader {
  #reader: Reader;
  #buffer: Uint8Array;
  #start = 0; // first unread byte
  #end = 0; // one past the last buffered byte
  #scanned = 0; // bytes from #start already known to hold no newline
  #ended = false;
  #insideLongLine = false; // a too-long line's tail is still unread

  /** `limit` is the longest line accepted, without its line ending. */
  constructor(reader: Reader, readonly limit = 4096) {
    this.#reader = reader;
    // +2 leaves room for the "\r\n" after a line of exactly `limit` bytes.
    this.#buffer = new Uint8Array(Math.max(limit + 2, 4096));
  }

  /**
   * The next line without "\n" or "\r\n", as a fresh copy; null at end of
   * input (a last line without "\n" is still returned). Throws
   * LineTooLongError when the limit is passed: call skipLine() to drop the
   * rest of that line and go on, or give up on the peer.
   */
  async readLine(): Promise<Uint8Array | null> {
    while (true) {
      const newline = this.#buffer.subarray(
        this.#start + this.#scanned,
        this.#end,
      )
        .indexOf(NEWLINE);
      if (newline >= 0) {
        const lineEnd = this.#start + this.#scanned + newline;
        return this.#take(lineEnd, lineEnd + 1);
      }
      this.#scanned = this.#end - this.#start;
      if (this.#ended) {
        return this.#end > this.#start
          ? this.#take(this.#end, this.#end)
          : null;
      }
      if (this.#scanned > this.limit + 1) {
        this.#insideLongLine = true;
        throw new LineTooLongError(this.limit);
      }
      await this.#fill();
    }
  }

  /**
   * After LineTooLongError, discards the rest of that line; false at end of
   * input. Memory stays bounded however long the line goes on.
   */
  async skipLine(): Promise<boolean> {
    if (!this.#insideLongLine) return true;
    this.#insideLongLine = false;
    while (true) {
      const newline = this.#buffer.subarray(this.#start, this.#end).indexOf(
        NEWLINE,
      );
      if (newline >= 0) {
        this.#start += newline + 1;
        this.#scanned = 0;
        return true;
      }
      this.#start = this.#end = this.#scanned = 0;
      if (this.#ended) return false;
      await this.#fill();
    }
  }

  /** Bytes already read past the last line (the start of a body, say). */
  takeBuffered(): Uint8Array {
    const rest = this.#buffer.slice(this.#start, this.#end);
    this.#start = this.#end = this.#scanned = 0;
    return rest;
  }

  #take(lineEnd: number, next: number): Uint8Array {
    let end = lineEnd;
    if (end > this.#start && this.#buffer[end - 1] === CARRIAGE_RETURN) end--;
    if (end - this.#start > this.limit) {
      // The whole line is buffered but too long: drop it, then report.
      this.#start = next;
      this.#scanned = 0;
      throw new LineTooLongError(this.limit);
    }
    const line = this.#buffer.slice(this.#start, end);
    this.#start = next;
    this.#scanned = 0;
    return line;
  }

  async #fill() {
    if (this.#start > 0) {
      // Move the unread tail to the front so the buffer never grows.
      this.#buffer.copyWithin(0, this.#start, this.#end);
      this.#end -= this.#start;
      this.#start = 0;
    }
    if (this.#end === this.#buffer.length) {
      throw new LineTooLongError(this.limit);
    }
    const count = await this.#reader.read(this.#buffer.subarray(this.#end));
    if (count === null) this.#ended = true;
    else this.#end += count;
  }
}
