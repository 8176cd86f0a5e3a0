// Tests of lib/ machinery written in the chat worktree (lib/reader.ts,
// lib/io.ts), kept apart for the lib tests' owner to fold in.
import assert from "node:assert/strict";
import { BufferedReader, LineTooLongError } from "../lib/reader.ts";
import type { Reader } from "../lib/io.ts";

const encoder = new TextEncoder();

/** A reader that hands out the given pieces, one read() each at most. */
function piecesReader(...pieces: string[]): Reader & { reads: number[] } {
  const queue = pieces.map((piece) => encoder.encode(piece));
  const reads: number[] = [];
  return {
    reads,
    read(buffer) {
      const next = queue.shift();
      if (next === undefined) return Promise.resolve(null);
      const count = Math.min(buffer.length, next.length);
      if (count < next.length) queue.unshift(next.subarray(count));
      buffer.set(next.subarray(0, count));
      reads.push(buffer.length);
      return Promise.resolve(count);
    },
  };
}

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

Deno.test("BufferedReader largeReads: 64 KiB reads while the source keeps filling the buffer, the small one when it pauses", async () => {
  const source = piecesReader("a".repeat(300), "b".repeat(70_000), "end\n");
  const reader = new BufferedReader(source, {
    initialSize: 256,
    maxLine: 100_000,
    largeReads: true,
  });
  // The caller consumes everything it gets before each fill(). A read that
  // does not fill its buffer (the 44 "a"s left) counts as a pause.
  while (await reader.fill()) reader.consume(reader.buffered);
  assert.deepEqual(source.reads, [256, 65536, 256, 65536, 65536, 256]);
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
