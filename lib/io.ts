// Moving bytes, for every TCP script: writing all of them, copying streams
// (echo, proxy, upload and the stdin clients; a plain loop, which the echo
// benchmark measures), closing without losing the last answer (the servers
// that answer last), and printing addresses.

// Deno.Conn's read and write, which sockets, stdin and files share.
export type Reader = { read(buffer: Uint8Array): Promise<number | null> };
export type Writer = { write(bytes: Uint8Array): Promise<number> };
/** A running count of bytes moved; lib/deadline.ts's Sweeper watches it. */
export type Traffic = { bytes: number };

/** Python's sendall: one write() may take only part of the bytes when the
 * socket's send buffer is full, so loop until done. */
export async function writeAll(writer: Writer, bytes: Uint8Array) {
  let written = 0;
  while (written < bytes.byteLength) {
    written += await writer.write(bytes.subarray(written));
  }
}

// A read waits with its buffer in hand: copy() and BufferedReader wait with
// a small one, and borrow a large one from here only while data keeps
// filling the small one, so an idle connection holds little memory.
const SMALL_BUFFER = 1024, LARGE_BUFFER = 64 * 1024;
const POOL_BYTES = 64 * LARGE_BUFFER; // kept for reuse, per buffer size
const pools = new Map<number, Uint8Array[]>();

export function borrowBuffer(size = LARGE_BUFFER): Uint8Array {
  return pools.get(size)?.pop() ?? new Uint8Array(size);
}

/** Gives a borrowed buffer back: the caller must not touch it again. */
export function returnBuffer(buffer: Uint8Array) {
  let pool = pools.get(buffer.length);
  if (pool === undefined) pools.set(buffer.length, pool = []);
  if ((pool.length + 1) * buffer.length <= POOL_BYTES) pool.push(buffer);
}

/**
 * Copies `from` to `to` until `from` ends, counting into `traffic`. Each
 * write is awaited: a peer that stops reading stops us reading. Larger
 * pieces (`largeSize`) suit a costly writer (upload_server's hashed file).
 */
export async function copy(
  from: Reader,
  to: Writer,
  traffic: Traffic = { bytes: 0 },
  largeSize = LARGE_BUFFER,
): Promise<number> {
  const small = new Uint8Array(SMALL_BUFFER);
  let large: Uint8Array | null = null;
  let total = 0;
  try {
    while (true) {
      const buffer = large ?? small;
      const count = await from.read(buffer);
      if (count === null) return total;
      await writeAll(to, buffer.subarray(0, count));
      total += count;
      traffic.bytes += count;
      if (count === buffer.length) {
        large ??= borrowBuffer(largeSize); // a stream: read in large pieces
      } else if (large !== null) {
        returnBuffer(large); // drained: wait for more with the small one
        large = null;
      }
    }
  } finally {
    if (large !== null) returnBuffer(large);
  }
}

/** The chunks joined into one array (the only one when there is one). */
export function concat(chunks: Uint8Array[]): Uint8Array {
  if (chunks.length === 1) return chunks[0];
  const size = chunks.reduce((sum, chunk) => sum + chunk.byteLength, 0);
  const joined = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    joined.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return joined;
}

export function closeQuietly(resource: { close(): void }) {
  try {
    resource.close();
  } catch { /* already closed: nothing left to release */ }
}

/**
 * Closes without destroying our last answer: closing on unread bytes makes
 * the kernel send a reset, which may drop the answer unread at the peer.
 * So shut our side, read and discard until the peer closes too (at most
 * `ms` and `maxBytes`), then close.
 */
export async function lingeringClose(
  conn: Deno.Conn,
  ms = 2000,
  maxBytes = 1024 * 1024,
): Promise<void> {
  const timer = setTimeout(() => closeQuietly(conn), ms);
  try {
    await conn.closeWrite();
    const scratch = new Uint8Array(SMALL_BUFFER);
    let left = maxBytes;
    while (left > 0) {
      const count = await conn.read(scratch);
      if (count === null) break;
      left -= count;
    }
  } catch { /* reset by the peer, or closed by the timer: done */ }
  clearTimeout(timer);
  closeQuietly(conn);
}

/**
 * `bytes` as the last thing on `conn`, then lingeringClose(),
 * so that a client still sending reads the reply rather than a reset.
 * The write, like the linger, has `ms`: a client that never reads cannot
 * hold it. False when the client was gone (or never read); the connection
 * is closed either way.
 */
export async function replyAndClose(
  conn: Deno.Conn,
  bytes: Uint8Array,
  ms = 2000,
  maxBytes?: number,
): Promise<boolean> {
  const timer = setTimeout(() => closeQuietly(conn), ms);
  try {
    await writeAll(conn, bytes);
  } catch {
    closeQuietly(conn);
    return false;
  } finally {
    clearTimeout(timer);
  }
  await lingeringClose(conn, ms, maxBytes);
  return true;
}

/** `host:port`, with an IPv6 host in brackets: `[::1]:9999`. */
export function formatHostPort(hostname: string, port: number): string {
  return hostname.includes(":")
    ? `[${hostname}]:${port}`
    : `${hostname}:${port}`;
}

/** A socket address the same way; other transports by their name. */
export function formatAddress(addr: Deno.Addr): string {
  const { transport } = addr;
  if (transport !== "tcp" && transport !== "udp") return transport;
  return formatHostPort(addr.hostname, addr.port);
}
