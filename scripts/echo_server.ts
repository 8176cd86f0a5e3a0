/**
 * TCP echo server (RFC 862): sends back every byte it receives, unchanged,
 * to many clients at once.
 *
 * Run:    deno run --allow-net scripts/echo_server.ts [--port 9999]
 * Try it: nc 127.0.0.1 9999        (type a line, see it come back)
 *    or:  deno run --allow-net scripts/echo_client.ts hello
 *
 * Unlike the tutorial's `conn.recv(1024)` / `conn.sendall(data)` loop, this
 * serves every client concurrently, is binary-safe and streams any size, and
 * handles half-close: when the client shuts down its sending side, we finish
 * echoing what arrived and then close.
 */
import { parseCommandLine, parsePort, runCommand } from "../lib/cli.ts";
import { writeAll } from "../lib/net.ts";
import { runUntilSignal, type ServerHandle, serveTcp } from "../lib/server.ts";

export const DEFAULT_PORT = 9999;

const USAGE = `Usage: echo_server.ts [--hostname HOST] [--port PORT]

Echoes every byte back to its sender (RFC 862 over TCP).

Options:
  --hostname HOST  address to listen on (default 127.0.0.1; 0.0.0.0 or :: to expose)
  --port PORT      port to listen on (default ${DEFAULT_PORT}; 0 picks a free port)
  -h, --help       show this help`;

export interface EchoServerOptions {
  hostname?: string;
  port?: number;
}

export function startEchoServer(options: EchoServerOptions = {}): ServerHandle {
  return serveTcp({
    hostname: options.hostname ?? "127.0.0.1",
    port: options.port ?? DEFAULT_PORT,
  }, echo);
}

async function echo(conn: Deno.Conn) {
  // One buffer per connection, reused for every read: no allocation per
  // message. The await on writeAll is the back-pressure: a client that stops
  // reading stops us reading from it, and nobody else is affected.
  const buffer = new Uint8Array(64 * 1024);
  while (true) {
    const count = await conn.read(buffer);
    if (count === null) break; // the client half-closed: nothing more comes
    await writeAll(conn, buffer.subarray(0, count));
  }
  // Everything received has been echoed; tell the client we are done too.
  await conn.closeWrite();
}

if (import.meta.main) {
  await runCommand("echo_server.ts", () => {
    const { values } = parseCommandLine(Deno.args, {
      usage: USAGE,
      options: {
        hostname: { type: "string", default: "127.0.0.1" },
        port: { type: "string", default: String(DEFAULT_PORT) },
      },
    });
    const server = startEchoServer({
      hostname: values.hostname,
      port: parsePort(values.port),
    });
    return runUntilSignal(server, "tcp");
  });
}
