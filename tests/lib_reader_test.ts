// lib/reader.ts's BufferedReader, tested from outside: line framing over
// every possible read boundary, the line limit at and past its edge, memory
// that stays bounded under an endless line, the raw-byte and in-place
// interfaces that the upload and HTTP parsers use, and the large reads
// chat_server borrows while a member streams. The last test reads from
// a real loopback socket fed by a peer we did not write (nc).
import assert from "node:assert/strict";
import { BufferedReader, LineTooLongError } from "../lib/reader.ts";
import type { Reader } from "../lib/io.ts";
import { hasCommand, runTool, skipBecause } from "./helpers.ts";

// Deno 2.8+ runs tests without the op and resource sanitizers unless asked:
// a leaked socket, timer or pending read must fail these tests.
Deno.test.sanitizer({ ops: true, resources: true });

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function bytesOf(piece: string | Uint8Array): Uint8Array {
  return typeof piece === "string" ? encoder.encode(piece) : piece;
}

/**
 * A source that hands out the given pieces, one per read() (a piece larger
 * than the caller's buffer is handed out over several reads), and records
 * the size of every buffer it was offered.
 */
function piecesReader(...pieces: (string | Uint8Array)[]) {
  const queue = pieces.map(bytesOf);
  const offered: number[] = [];
  const reader: Reader & { offered: number[]; reads: number } = {
    offered,
    reads: 0,
    read(buffer) {
      reader.reads++;
      offered.push(buffer.length);
      const next = queue.shift();
      if (next === undefined) return Promise.resolve(null);
      if (next.length > buffer.length) {
        queue.unshift(next.subarray(buffer.length));
      }
      const count = Math.min(buffer.length, next.length);
      buffer.set(next.subarray(0, count));
      return Promise.resolve(count);
    },
  };
  return reader;
}

/** A source that returns `bytes` one byte per read(). */
function oneByteReader(bytes: Uint8Array): Reader {
  let offset = 0;
  return {
    read(buffer) {
      if (offset >= bytes.length) return Promise.resolve(null);
      buffer[0] = bytes[offset++];
      return Promise.resolve(1);
    },
  };
}

/** An endless source of `byte`s that counts what it handed out. */
function endlessReader(byte: number, total: number, then = "") {
  let left = total;
  const tail = encoder.encode(then);
  let tailSent = false;
  return {
    read(buffer: Uint8Array): Promise<number | null> {
      if (left > 0) {
        const count = Math.min(left, buffer.length);
        buffer.fill(byte, 0, count);
        left -= count;
        return Promise.resolve(count);
      }
      if (!tailSent && tail.length > 0) {
        tailSent = true;
        buffer.set(tail);
        return Promise.resolve(tail.length);
      }
      return Promise.resolve(null);
    },
  };
}

async function lines(reader: BufferedReader): Promise<string[]> {
  const result: string[] = [];
  for (let line; (line = await reader.readLine()) !== null;) {
    result.push(decoder.decode(line));
  }
  return result;
}

// --- Ported from the old tests/lib_test.ts (lib/lines.ts's LineReader). ---

Deno.test("BufferedReader joins lines split across reads and splits joined ones", async () => {
  const reader = new BufferedReader(
    piecesReader("he", "llo\nwor", "ld\r\n\nlast"),
  );
  assert.deepEqual(await lines(reader), ["hello", "world", "", "last"]);
});

Deno.test("BufferedReader accepts a line of exactly the limit, with \\r\\n", async () => {
  const reader = new BufferedReader(
    piecesReader("a".repeat(10) + "\r\nb\n"),
    { maxLine: 10 },
  );
  assert.deepEqual(await lines(reader), ["a".repeat(10), "b"]);
});

Deno.test("BufferedReader refuses a long line, then skipLine resumes after it", async () => {
  const endless = "x".repeat(100_000);
  const reader = new BufferedReader(
    piecesReader("ok\n", endless, endless, "\nnext\n"),
    { maxLine: 1000 },
  );
  assert.equal(decoder.decode((await reader.readLine())!), "ok");
  await assert.rejects(() => reader.readLine(), LineTooLongError);
  assert.equal(await reader.skipLine(), true);
  assert.deepEqual(await lines(reader), ["next"]);
});

Deno.test("BufferedReader: a too-long line already buffered whole is dropped alone", async () => {
  const reader = new BufferedReader(
    piecesReader("x".repeat(20) + "\nnext\n"),
    { maxLine: 10 },
  );
  await assert.rejects(() => reader.readLine(), LineTooLongError);
  assert.equal(await reader.skipLine(), true); // nothing left to skip
  assert.deepEqual(await lines(reader), ["next"]);
});

Deno.test("BufferedReader: read() gives what follows the last line, then the source", async () => {
  const reader = new BufferedReader(piecesReader("HEADER 5\nhel", "lo"));
  assert.equal(decoder.decode((await reader.readLine())!), "HEADER 5");
  const rest = new Uint8Array(10);
  let count = await reader.read(rest);
  assert.equal(decoder.decode(rest.subarray(0, count!)), "hel");
  // The rest comes straight from the source, and the buffer is now empty.
  assert.equal(reader.buffered, 0);
  count = await reader.read(rest);
  assert.equal(decoder.decode(rest.subarray(0, count!)), "lo");
  assert.equal(await reader.read(rest), null);
});

// --- Line endings. ---

Deno.test("BufferedReader: \\n and \\r\\n end lines; a CR alone stays in the line", async () => {
  const reader = new BufferedReader(
    piecesReader("a\rb\n", "\r\n", "c\r\r\n", "\rd\n", "e\r\n"),
  );
  assert.deepEqual(await lines(reader), ["a\rb", "", "c\r", "\rd", "e"]);
});

Deno.test("BufferedReader: at end of input a last line keeps a CR that no \\n follows", async () => {
  const reader = new BufferedReader(piecesReader("one\ntwo\r"));
  assert.equal(decoder.decode((await reader.readLine())!), "one");
  assert.equal(reader.lastLineTerminated, true);
  assert.equal(decoder.decode((await reader.readLine())!), "two\r");
  assert.equal(reader.lastLineTerminated, false);
  assert.equal(await reader.readLine(), null);
});

Deno.test("BufferedReader: EOF after a partial line returns it once, lastLineTerminated false", async () => {
  const reader = new BufferedReader(piecesReader("full\n", "part", "ial"));
  assert.equal(decoder.decode((await reader.readLine())!), "full");
  assert.equal(reader.lastLineTerminated, true);
  assert.equal(decoder.decode((await reader.readLine())!), "partial");
  assert.equal(reader.lastLineTerminated, false);
  assert.equal(await reader.readLine(), null);
  assert.equal(await reader.readLine(), null);
  // Input ending right after "\n": no phantom empty line, still terminated.
  const clean = new BufferedReader(piecesReader("a\n"));
  assert.deepEqual(await lines(clean), ["a"]);
  assert.equal(clean.lastLineTerminated, true);
  // Empty input: null at once.
  assert.equal(await new BufferedReader(piecesReader()).readLine(), null);
});

Deno.test("BufferedReader: lines returned are copies, not views of the buffer", async () => {
  const reader = new BufferedReader(piecesReader("first\nsecond\n"));
  const first = (await reader.readLine())!;
  await reader.readLine();
  await reader.fill();
  assert.equal(decoder.decode(first), "first");
  assert.notEqual(first.buffer, reader.bytes.buffer);
});

// --- The limit, at its edges. ---

Deno.test("BufferedReader: limit exactly at, and one over, with \\n, \\r\\n and at EOF", async () => {
  const limit = 16;
  const at = "a".repeat(limit), over = "b".repeat(limit + 1);
  for (const ending of ["\n", "\r\n"]) {
    const reader = new BufferedReader(
      piecesReader(at + ending + over + ending + "after" + ending),
      { maxLine: limit },
    );
    assert.equal(decoder.decode((await reader.readLine())!), at);
    await assert.rejects(
      () => reader.readLine(),
      (error: unknown) =>
        error instanceof LineTooLongError && error.limit === limit,
    );
    assert.equal(await reader.skipLine(), true);
    assert.equal(decoder.decode((await reader.readLine())!), "after");
  }
  // A last line without "\n": at the limit it is returned, over it refused.
  const atEof = new BufferedReader(piecesReader(at), { maxLine: limit });
  assert.equal(decoder.decode((await atEof.readLine())!), at);
  const overEof = new BufferedReader(piecesReader(over), { maxLine: limit });
  await assert.rejects(() => overEof.readLine(), LineTooLongError);
  assert.equal(await overEof.readLine(), null);
});

Deno.test("BufferedReader: a per-call limit overrides maxLine for that line only", async () => {
  const reader = new BufferedReader(
    piecesReader("12345678\n12345678\n"),
    { maxLine: 100 },
  );
  await assert.rejects(
    () => reader.readLine(4),
    (error: unknown) => error instanceof LineTooLongError && error.limit === 4,
  );
  assert.equal(decoder.decode((await reader.readLine())!), "12345678");
});

Deno.test("BufferedReader: the error's message names the limit", () => {
  assert.equal(
    new LineTooLongError(4096).message,
    "line longer than 4096 bytes",
  );
});

Deno.test("BufferedReader: skipLine over a 64 MiB line keeps the buffer at maxLine + 2", async () => {
  const huge = 64 * 1024 * 1024;
  const reader = new BufferedReader(
    endlessReader(0x78, huge, "\nnext\n"),
    { maxLine: 1000 },
  );
  await assert.rejects(() => reader.readLine(), LineTooLongError);
  assert.equal(await reader.skipLine(), true);
  assert.deepEqual(await lines(reader), ["next"]);
  assert.ok(
    reader.bytes.length <= 1002,
    `buffer grew to ${reader.bytes.length} bytes`,
  );
});

Deno.test("BufferedReader: skipLine reports end of input inside the long line", async () => {
  const reader = new BufferedReader(endlessReader(0x78, 100_000), {
    maxLine: 100,
  });
  await assert.rejects(() => reader.readLine(), LineTooLongError);
  assert.equal(await reader.skipLine(), false);
  assert.equal(await reader.readLine(), null);
  // skipLine with no long line pending does nothing and says so.
  const calm = new BufferedReader(piecesReader("a\nb\n"));
  assert.equal(await calm.skipLine(), true);
  assert.deepEqual(await lines(calm), ["a", "b"]);
});

Deno.test("BufferedReader: skipLine() drops the rest of a line fill() found too long", async () => {
  const reader = new BufferedReader(
    piecesReader("x".repeat(20), "xx\nnext\n"),
    { maxLine: 8 },
  );
  await assert.rejects(async () => {
    while (await reader.fill()) { /* no "\n" within 8 bytes */ }
  }, LineTooLongError);
  assert.equal(await reader.skipLine(), true);
  assert.deepEqual(await reader.readLine(), encoder.encode("next"));
  assert.equal(await reader.readLine(), null);
});

Deno.test("BufferedReader: readLine again without skipLine refuses at once, reading nothing", async () => {
  const source = endlessReader(0x78, 1_000_000);
  const reader = new BufferedReader(source, { maxLine: 100 });
  await assert.rejects(() => reader.readLine(), LineTooLongError);
  const buffer = reader.bytes.length;
  await assert.rejects(() => reader.readLine(), LineTooLongError);
  assert.equal(reader.bytes.length, buffer);
});

// --- Every read boundary. ---

Deno.test("BufferedReader: lines split at every possible read boundary give the same lines", async () => {
  const text = "alpha\r\nbeta\n\n\r\ngamma\rdelta\nlast";
  const expected = ["alpha", "beta", "", "", "gamma\rdelta", "last"];
  const bytes = encoder.encode(text);
  for (let cut = 0; cut <= bytes.length; cut++) {
    for (let second = cut; second <= bytes.length; second++) {
      const reader = new BufferedReader(
        piecesReader(
          bytes.subarray(0, cut),
          bytes.subarray(cut, second),
          bytes.subarray(second),
        ),
        { initialSize: 4 },
      );
      assert.deepEqual(await lines(reader), expected, `cuts ${cut}/${second}`);
    }
  }
  // One byte per read, with the smallest buffer.
  const slow = new BufferedReader(oneByteReader(bytes), { initialSize: 1 });
  assert.deepEqual(await lines(slow), expected);
});

Deno.test("BufferedReader: one byte per read at the limit's edge, \\r\\n split from its line", async () => {
  const limit = 8;
  const input = "12345678\r\n123456789\r\nok\r\n";
  const reader = new BufferedReader(oneByteReader(encoder.encode(input)), {
    maxLine: limit,
    initialSize: 1,
  });
  assert.equal(decoder.decode((await reader.readLine())!), "12345678");
  await assert.rejects(() => reader.readLine(), LineTooLongError);
  assert.equal(await reader.skipLine(), true);
  assert.equal(decoder.decode((await reader.readLine())!), "ok");
  assert.equal(await reader.readLine(), null);
});

// --- Raw bytes after lines. ---

Deno.test("BufferedReader: readLine and read mixed: buffered bytes first, then the source", async () => {
  const source = piecesReader("HEAD 10\r\n0123", "456789", "NEXT\n");
  const reader = new BufferedReader(source);
  assert.equal(decoder.decode((await reader.readLine())!), "HEAD 10");
  assert.equal(reader.buffered, 4);
  const body = new Uint8Array(10);
  let got = 0;
  while (got < 10) {
    const count = await reader.read(body.subarray(got));
    assert.ok(count !== null);
    got += count;
  }
  assert.equal(decoder.decode(body), "0123456789");
  // A small destination takes the buffered bytes a piece at a time.
  assert.equal(decoder.decode((await reader.readLine())!), "NEXT");
  const reader2 = new BufferedReader(piecesReader("L\nabcdef"));
  await reader2.readLine();
  const two = new Uint8Array(2);
  const parts: string[] = [];
  for (let count; (count = await reader2.read(two)) !== null;) {
    parts.push(decoder.decode(two.subarray(0, count)));
  }
  assert.deepEqual(parts, ["ab", "cd", "ef"]);
});

Deno.test("BufferedReader: read() returns the bytes of a line not yet read as a line", async () => {
  const reader = new BufferedReader(piecesReader("abc\ndef\n"));
  await reader.fill();
  const into = new Uint8Array(5);
  assert.equal(await reader.read(into), 5);
  assert.equal(decoder.decode(into), "abc\nd");
  assert.equal(decoder.decode((await reader.readLine())!), "ef");
});

// --- In place: bytes/start/end/buffered/consume/fill. ---

Deno.test("BufferedReader: fill grows the buffer up to capacity, then refuses", async () => {
  const source = endlessReader(0x41, 100_000);
  const reader = new BufferedReader(source, {
    maxLine: 100_000,
    initialSize: 16,
  });
  assert.equal(reader.bytes.length, 16);
  const sizes: number[] = [];
  while (reader.end < 1000) {
    assert.equal(await reader.fill(1000), true);
    sizes.push(reader.bytes.length);
  }
  assert.equal(reader.end, 1000);
  assert.equal(reader.bytes.length, 1000);
  // Growth by steps (x4), not one byte at a time, and never past capacity.
  assert.deepEqual([...new Set(sizes)], [16, 64, 256, 1000]);
  await assert.rejects(
    () => reader.fill(1000),
    (error: unknown) =>
      error instanceof LineTooLongError && error.limit === 998,
  );
  // Consuming makes room: fill moves the unread bytes to the front.
  reader.consume(600);
  assert.equal(reader.start, 600);
  assert.equal(reader.buffered, 400);
  assert.equal(await reader.fill(1000), true);
  assert.equal(reader.start, 0);
  assert.equal(reader.end, 1000);
  assert.equal(reader.bytes.length, 1000);
});

Deno.test("BufferedReader: an in-place scan for a blank line (as http_raw_server does)", async () => {
  const head = "GET / HTTP/1.1\r\nHost: x\r\n\r\nBODY";
  const reader = new BufferedReader(oneByteReader(encoder.encode(head)), {
    initialSize: 4,
  });
  const marker = encoder.encode("\r\n\r\n");
  let found = -1;
  while (found < 0) {
    const window = reader.bytes.subarray(reader.start, reader.end);
    found = indexOf(window, marker);
    if (found < 0) assert.equal(await reader.fill(64), true);
  }
  assert.equal(
    decoder.decode(reader.bytes.subarray(reader.start, reader.start + found)),
    "GET / HTTP/1.1\r\nHost: x",
  );
  reader.consume(found + marker.length);
  assert.equal(reader.buffered, 0); // one byte per read: nothing past it yet
  const rest = new Uint8Array(8);
  const count = await reader.read(rest);
  assert.equal(decoder.decode(rest.subarray(0, count!)), "B");
  // fill() at end of input: false, and stays false.
  const done = new BufferedReader(piecesReader("x"));
  assert.equal(await done.fill(), true);
  assert.equal(await done.fill(), false);
  assert.equal(await done.fill(), false);
  assert.equal(done.buffered, 1);
});

function indexOf(haystack: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) {
      if (haystack[i + j] !== needle[j]) continue outer;
    }
    return i;
  }
  return -1;
}

Deno.test("BufferedReader: an idle reader holds initialSize bytes, long lines grow it as needed", async () => {
  const reader = new BufferedReader(
    piecesReader("short\n", "y".repeat(3000) + "\n"),
    { maxLine: 4096 },
  );
  assert.equal(reader.bytes.length, 1024);
  assert.equal(decoder.decode((await reader.readLine())!), "short");
  assert.equal(reader.bytes.length, 1024);
  assert.equal((await reader.readLine())!.length, 3000);
  assert.ok(reader.bytes.length >= 3001 && reader.bytes.length <= 4098);
  // initialSize is capped at what the limit needs.
  const small = new BufferedReader(piecesReader(), { maxLine: 10 });
  assert.equal(small.bytes.length, 12);
});

Deno.test("BufferedReader largeReads: 64 KiB reads while the source keeps filling the buffer, the small one after two small reads in a row", async () => {
  const source = piecesReader(
    "a".repeat(300),
    "b".repeat(70_000),
    "x\n",
    "y\n",
    "end\n",
  );
  const reader = new BufferedReader(source, {
    initialSize: 256,
    maxLine: 100_000,
    largeReads: true,
  });
  // The caller consumes everything it gets before each fill(). The first
  // read fills the 256 bytes, so the next ones are offered 64 KiB: the 44
  // "a"s left (one small read, maybe a tail), the "b"s, then "x" and "y"
  // (two small reads in a row: the pooled buffer goes back), so "end" and
  // the read that finds the end of the input are offered 256 again.
  while (await reader.fill()) reader.consume(reader.buffered);
  assert.deepEqual(
    source.offered,
    [256, 65536, 65536, 65536, 65536, 65536, 256, 256],
  );
  // In the borrowed buffer, a line stays bounded by the line limit.
  const long = new BufferedReader(
    piecesReader("c".repeat(5000), "c".repeat(5000)),
    { initialSize: 256, maxLine: 4096, largeReads: true },
  );
  await assert.rejects(async () => {
    while (await long.fill()) { /* no "\n" */ }
  }, LineTooLongError);
  assert.ok(long.buffered <= 4096 + 2 + 65536, `${long.buffered}`);
});

Deno.test("BufferedReader with largeReads: a line longer than the pooled 64 KiB buffer", async () => {
  // Reads that fill the buffer swap in a pooled 64 KiB one; a line that
  // outgrows it grows the reader's own, which is then kept.
  const long = "z".repeat(300_000);
  const reader = new BufferedReader(
    piecesReader(
      "a\n" + "y".repeat(2000),
      long.slice(0, 100_000),
      long.slice(100_000) + "\nb\n",
    ),
    { maxLine: 1024 * 1024, largeReads: true },
  );
  assert.equal(decoder.decode((await reader.readLine())!), "a");
  assert.equal((await reader.readLine())!.length, 2000 + long.length);
  assert.equal(decoder.decode((await reader.readLine())!), "b");
  assert.equal(await reader.readLine(), null);
});

Deno.test("BufferedReader with largeReads: messages a little over the small buffer take one read each, and small reads give the large buffer back", async () => {
  const message = ("x".repeat(99) + "\n").repeat(20); // 2,000 bytes
  const source = piecesReader(...Array(10).fill(message), "a\n", "b\n", "c\n");
  const reader = new BufferedReader(source, { largeReads: true });
  for (let i = 0; i < 200; i++) {
    assert.equal((await reader.readLine())!.length, 99);
  }
  // The first message fills the 1 KiB buffer; its tail and every other
  // message then come whole into the pooled 64 KiB one (not 1 KiB + rest).
  assert.equal(source.reads, 11);
  assert.equal(reader.bytes.length, 64 * 1024);
  assert.equal(decoder.decode((await reader.readLine())!), "a");
  assert.equal(decoder.decode((await reader.readLine())!), "b");
  // Two small reads in a row: the next waits in the reader's own buffer.
  assert.equal(decoder.decode((await reader.readLine())!), "c");
  assert.equal(reader.bytes.length, 1024);
});

// --- Over a real socket, fed by a peer we did not write. ---

Deno.test({
  name:
    "BufferedReader over a loopback socket fed by nc: lines, then binary body",
  ignore: !(await hasCommand("nc")),
  async fn() {
    using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const body = new Uint8Array(70_000).map((_, i) => (i * 7) & 0xff);
    const input = new Uint8Array([
      ...encoder.encode("UPLOAD 70000 a b.bin\r\nsecond\n"),
      ...body,
    ]);
    const peer = runTool(
      "nc",
      ["-N", "127.0.0.1", String(listener.addr.port)],
      input,
    );
    const conn = await listener.accept();
    const reader = new BufferedReader(conn, { maxLine: 64 });
    assert.equal(
      decoder.decode((await reader.readLine())!),
      "UPLOAD 70000 a b.bin",
    );
    assert.equal(decoder.decode((await reader.readLine())!), "second");
    const received = new Uint8Array(body.length + 1);
    let got = 0;
    for (
      let count;
      (count = await reader.read(received.subarray(got))) !== null;
    ) {
      got += count;
    }
    conn.close(); // nc -N exits once we close too
    assert.equal(got, body.length);
    assert.deepEqual(received.subarray(0, got), body);
    assert.equal((await peer).code, 0);
  },
});
if (!(await hasCommand("nc"))) {
  skipBecause("nc not installed: BufferedReader socket test ignored");
}
