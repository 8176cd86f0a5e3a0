// Where an upload's body ends on the wire, for the upload pair: exactly the
// size its header announced (limited: never a byte of what follows it,
// however the reads fall). Apart from the scripts only because both sides
// use it and both are at their reading budget. Part of the upload chapter:
// run scripts/upload_server.ts.
import type { Reader } from "../../lib/io.ts";

/** At most `length` bytes of `source`, then the end of input. */
export function limited(source: Reader, length: number): Reader {
  let left = length;
  return {
    async read(into: Uint8Array) {
      if (left === 0) return null;
      const count = await source.read(
        into.length > left ? into.subarray(0, left) : into,
      );
      if (count !== null) left -= count;
      return count;
    },
  };
}
