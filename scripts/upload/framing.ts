// Where an upload begins and ends on the wire, for the upload pair: the
// body is exactly the size its header announced (limited: never a byte of
// what follows it, however the reads fall), and the server's one reply is
// the last thing it sends before it hangs up (replyAndClose). Apart from
// the scripts only because both sides use limited and both are at their
// reading budget. Part of the upload chapter: run scripts/upload_server.ts.
import { closeQuietly, lingeringClose, type Reader } from "../../lib/io.ts";
import { writeAll } from "../../lib/io.ts";

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

/**
 * `bytes` as the last thing on `conn`, then lib/io.ts's lingeringClose(),
 * so that a client still sending reads the reply rather than a reset.
 * False when the client was gone; the connection is closed either way.
 */
export async function replyAndClose(
  conn: Deno.Conn,
  bytes: Uint8Array,
  ms?: number,
  maxBytes?: number,
): Promise<boolean> {
  try {
    await writeAll(conn, bytes);
  } catch {
    closeQuietly(conn);
    return false;
  }
  await lingeringClose(conn, ms, maxBytes);
  return true;
}
