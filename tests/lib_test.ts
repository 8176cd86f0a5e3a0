import assert from "node:assert/strict";
import { LineReader, LineTooLongError, type Reader } from "../lib/lines.ts";
import {
  parseCommandLine,
  parseHostAndPort,
  parseInteger,
  parsePort,
  parseSeconds,
  UsageError,
} from "../lib/cli.ts";
import { describeError } from "../lib/errors.ts";
import { formatAddress, writeAll } from "../lib/net.ts";
import { serveTcp } from "../lib/server.ts";
import { hasCommand, readAll, runTool, skipBecause } from "./helpers.ts";

/** A reader that hands out the given pieces one read() at a time. */
function piecesReader(...pieces: (string | Uint8Array)[]): Reader {
  const queue = pieces.map((piece) =>
    typeof piece === "string" ? new TextEncoder().encode(piece) : piece
  );
  return {
    read(buffer) {
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
}

async function lines(reader: LineReader): Promise<string[]> {
  const result: string[] = [];
  for (let line; (line = await reader.readLine()) !== null;) {
    result.push(new TextDecoder().decode(line));
  }
  return result;
}

Deno.test("LineReader joins lines split across reads and splits joined ones", async () => {
  const reader = new LineReader(piecesReader("he", "llo\nwor", "ld\r\n\nlast"));
  assert.deepEqual(await lines(reader), ["hello", "world", "", "last"]);
});

Deno.test("LineReader accepts a line of exactly the limit, with \\r\\n", async () => {
  const reader = new LineReader(piecesReader("a".repeat(10) + "\r\nb\n"), 10);
  assert.deepEqual(await lines(reader), ["a".repeat(10), "b"]);
});

Deno.test("LineReader refuses a long line, then skipLine resumes after it", async () => {
  const endless = "x".repeat(100_000);
  const reader = new LineReader(
    piecesReader("ok\n", endless, endless, "\nnext\n"),
    1000,
  );
  assert.equal(new TextDecoder().decode((await reader.readLine())!), "ok");
  await assert.rejects(() => reader.readLine(), LineTooLongError);
  assert.equal(await reader.skipLine(), true);
  assert.deepEqual(await lines(reader), ["next"]);
});

Deno.test("LineReader: a too-long line already buffered whole is dropped alone", async () => {
  const reader = new LineReader(piecesReader("x".repeat(20) + "\nnext\n"), 10);
  await assert.rejects(() => reader.readLine(), LineTooLongError);
  assert.equal(await reader.skipLine(), true); // nothing left to skip
  assert.deepEqual(await lines(reader), ["next"]);
});

Deno.test("LineReader: takeBuffered returns what follows the last line", async () => {
  const reader = new LineReader(piecesReader("HEADER 5\nhel", "lo"));
  assert.equal(
    new TextDecoder().decode((await reader.readLine())!),
    "HEADER 5",
  );
  assert.equal(new TextDecoder().decode(reader.takeBuffered()), "hel");
});

Deno.test("option parsing: numbers, ports, seconds, host:port", () => {
  assert.equal(parsePort("0"), 0);
  assert.equal(parsePort("65535"), 65535);
  for (const bad of ["65536", "-1", "1.5", "", "0x10", "12abc"]) {
    assert.throws(() => parsePort(bad), UsageError, bad);
  }
  assert.equal(parseInteger("7", "--count", 1, 10), 7);
  assert.throws(() => parseInteger("0", "--count", 1, 10), UsageError);
  assert.equal(parseSeconds("0.25", "--timeout"), 0.25);
  assert.throws(() => parseSeconds("0", "--timeout"), UsageError);
  assert.throws(() => parseSeconds("-1", "--timeout"), UsageError);
  assert.deepEqual(parseHostAndPort("[::1]:80", "t"), {
    hostname: "::1",
    port: 80,
  });
  assert.deepEqual(parseHostAndPort("example.com:443", "t"), {
    hostname: "example.com",
    port: 443,
  });
  assert.throws(() => parseHostAndPort("nohost", "t"), UsageError);
});

Deno.test("parseCommandLine: unknown options and stray arguments are usage errors", () => {
  const commandLine = {
    usage: "Usage: x",
    options: { port: { type: "string" as const } },
  };
  assert.equal(parseCommandLine(["--port", "1"], commandLine).values.port, "1");
  assert.throws(() => parseCommandLine(["--nope"], commandLine), UsageError);
  assert.throws(() => parseCommandLine(["stray"], commandLine), UsageError);
});

Deno.test("formatAddress puts IPv6 hosts in brackets", () => {
  assert.equal(
    formatAddress({ transport: "tcp", hostname: "::1", port: 9 }),
    "[::1]:9",
  );
  assert.equal(
    formatAddress({ transport: "udp", hostname: "127.0.0.1", port: 9 }),
    "127.0.0.1:9",
  );
});

Deno.test("describeError names refused connections and timeouts plainly", () => {
  assert.equal(
    describeError(new Deno.errors.ConnectionRefused("x")),
    "connection refused",
  );
  assert.equal(describeError(new Deno.errors.TimedOut("x")), "timed out");
});

Deno.test("writeAll loops over partial writes", async () => {
  const received: number[] = [];
  const writer = {
    write(bytes: Uint8Array) {
      // Accept at most 3 bytes per call, like a full socket buffer would.
      const count = Math.min(3, bytes.length);
      received.push(...bytes.subarray(0, count));
      return Promise.resolve(count);
    },
  };
  await writeAll(writer, new TextEncoder().encode("partial writes"));
  assert.equal(
    new TextDecoder().decode(new Uint8Array(received)),
    "partial writes",
  );
});

const RESETTING_CLIENTS = `
import socket, struct, sys
for _ in range(100):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.connect(("127.0.0.1", int(sys.argv[1])))
    s.close()  # linger 0: the kernel sends RST, maybe before we accept
`;

Deno.test({
  name: "serveTcp: clients that reset before accept() do not stall the others",
  ignore: !(await hasCommand("python3")),
  async fn() {
    const errors: string[] = [];
    const originalError = console.error;
    console.error = (...args: unknown[]) => errors.push(args.join(" "));
    try {
      await using server = serveTcp(
        { hostname: "127.0.0.1", port: 0 },
        async (conn) => {
          await writeAll(conn, new TextEncoder().encode("hi\n"));
        },
      );
      const resets = await runTool("python3", [
        "-c",
        RESETTING_CLIENTS,
        String(server.addr.port),
      ]);
      assert.equal(resets.code, 0, resets.stderr);
      const started = performance.now();
      const conn = await Deno.connect({
        hostname: "127.0.0.1",
        port: server.addr.port,
      });
      assert.equal(new TextDecoder().decode(await readAll(conn)), "hi\n");
      conn.close();
      assert.ok(performance.now() - started < 500, "a real client was stalled");
    } finally {
      console.error = originalError;
    }
    assert.deepEqual(errors.filter((line) => line.includes("accept")), []);
  },
});
if (!(await hasCommand("python3"))) {
  skipBecause("python3 not installed: reset-before-accept test ignored");
}
