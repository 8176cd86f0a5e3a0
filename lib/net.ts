// Small socket helpers shared by the scripts: writing everything, closing
// without caring whether the peer already did, and printing addresses the
// way SPEC's "Listening on" line wants them.

/** Anything with Deno.Conn's write (TCP, TLS and Unix connections). */
export interface Writer {
  write(bytes: Uint8Array): Promise<number>;
}

/**
 * Writes every byte. Python's sendall: a single write() may accept only part
 * of the buffer when the socket's send buffer is full, so loop until done.
 */
export async function writeAll(writer: Writer, bytes: Uint8Array) {
  let written = 0;
  while (written < bytes.byteLength) {
    written += await writer.write(bytes.subarray(written));
  }
}

/** Closes a connection or listener that may already be closed. */
export function closeQuietly(resource: { close(): void }) {
  try {
    resource.close();
  } catch {
    // Already closed (BadResource): nothing left to release.
  }
}

/** `host:port`, with an IPv6 host in brackets: `[::1]:9999`. */
export function formatAddress(addr: Deno.Addr): string {
  if (addr.transport !== "tcp" && addr.transport !== "udp") {
    return addr.transport;
  }
  const host = addr.hostname.includes(":")
    ? `[${addr.hostname}]`
    : addr.hostname;
  return `${host}:${addr.port}`;
}

/** Errors that only mean "the peer went away" or "we closed it ourselves". */
export function isDisconnect(error: unknown): boolean {
  return error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.BrokenPipe ||
    error instanceof Deno.errors.ConnectionAborted ||
    error instanceof Deno.errors.NotConnected ||
    error instanceof Deno.errors.UnexpectedEof ||
    error instanceof Deno.errors.BadResource ||
    error instanceof Deno.errors.Interrupted ||
    error instanceof Deno.errors.TimedOut;
}
