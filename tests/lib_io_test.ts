// lib/io.ts: writeAll over partial writes, copy() (exact bytes over real
// loopback sockets, its small/large buffer switching, traffic counts,
// failures on either side), lingeringClose() against plain close(), and the
// address formatting.
import assert from "node:assert/strict";
import {
  closeQuietly,
  copy,
  formatAddress,
  formatHostPort,
  lingeringClose,
  type Reader,
  replyAndClose,
  writeAll,
} from "../lib/io.ts";
import {
  hasCommand,
  randomBytes,
  readAll,
  runTool,
  skipBecause,
  within,
} from "./helpers.ts";

const encoder = new TextEncoder();

/** A connected loopback TCP pair. */
async function tcpPair(): Promise<[Deno.TcpConn, Deno.TcpConn]> {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [client, server] = await Promise.all([
    Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
    listener.accept(),
  ]);
  return [client, server];
}

/** A source that hands out `pieces` one per read, recording buffer sizes. */
function recordingReader(...pieces: Uint8Array[]) {
  const offered: number[] = [];
  const reader: Reader & { offered: number[] } = {
    offered,
    read(buffer) {
      offered.push(buffer.length);
      const next = pieces.shift();
      if (next === undefined) return Promise.resolve(null);
      if (next.length > buffer.length) {
        pieces.unshift(next.subarray(buffer.length));
      }
      const count = Math.min(buffer.length, next.length);
      buffer.set(next.subarray(0, count));
      return Promise.resolve(count);
    },
  };
  return reader;
}

/** A writer that keeps copies of what it was given. */
function collectingWriter() {
  const chunks: Uint8Array[] = [];
  return {
    chunks,
    write(bytes: Uint8Array) {
      chunks.push(bytes.slice()); // the caller may reuse its buffer
      return Promise.resolve(bytes.length);
    },
    bytes() {
      const all = new Uint8Array(chunks.reduce((sum, c) => sum + c.length, 0));
      let offset = 0;
      for (const chunk of chunks) {
        all.set(chunk, offset);
        offset += chunk.length;
      }
      return all;
    },
  };
}

// --- writeAll. ---

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
  await writeAll(writer, encoder.encode("partial writes"));
  assert.equal(
    new TextDecoder().decode(new Uint8Array(received)),
    "partial writes",
  );
});

Deno.test("writeAll: one byte per write, nothing for an empty buffer, errors pass through", async () => {
  const calls: number[] = [];
  const oneByte = {
    write(bytes: Uint8Array) {
      calls.push(bytes.length);
      return Promise.resolve(1);
    },
  };
  await writeAll(oneByte, new Uint8Array(5));
  assert.deepEqual(calls, [5, 4, 3, 2, 1]);
  calls.length = 0;
  await writeAll(oneByte, new Uint8Array(0));
  assert.deepEqual(calls, []);
  let writes = 0;
  const failing = {
    write(bytes: Uint8Array) {
      if (++writes === 2) {
        return Promise.reject(new Deno.errors.BrokenPipe("gone"));
      }
      return Promise.resolve(Math.min(2, bytes.length));
    },
  };
  await assert.rejects(
    () => writeAll(failing, new Uint8Array(10)),
    Deno.errors.BrokenPipe,
  );
  assert.equal(writes, 2);
});

Deno.test("writeAll: 8 MiB into a loopback socket whose peer reads slowly arrives exact", async () => {
  const [client, server] = await tcpPair();
  const payload = randomBytes(8 * 1024 * 1024);
  const [, received] = await Promise.all([
    (async () => {
      await writeAll(client, payload);
      await client.closeWrite();
    })(),
    (async () => {
      // Small reads: the sender's writes are accepted in part, many times.
      const chunks: Uint8Array[] = [];
      const buffer = new Uint8Array(4096);
      let total = 0;
      for (let count; (count = await server.read(buffer)) !== null;) {
        chunks.push(buffer.slice(0, count));
        total += count;
      }
      const all = new Uint8Array(total);
      let offset = 0;
      for (const chunk of chunks) {
        all.set(chunk, offset);
        offset += chunk.length;
      }
      return all;
    })(),
  ]);
  client.close();
  server.close();
  assert.equal(received.length, payload.length);
  assert.deepEqual(received, payload);
});

// --- copy. ---

Deno.test("copy: 16 MiB of binary between loopback sockets, exact, with the count and traffic", async () => {
  const [sender, relayIn] = await tcpPair();
  const [relayOut, receiver] = await tcpPair();
  const payload = randomBytes(16 * 1024 * 1024);
  const traffic = { bytes: 7 };
  const [, copied, received] = await Promise.all([
    (async () => {
      await writeAll(sender, payload);
      await sender.closeWrite();
    })(),
    (async () => {
      const count = await copy(relayIn, relayOut, traffic);
      await relayOut.closeWrite();
      return count;
    })(),
    readAll(receiver),
  ]);
  for (const conn of [sender, relayIn, relayOut, receiver]) conn.close();
  assert.equal(copied, payload.length);
  assert.equal(traffic.bytes, 7 + payload.length);
  assert.equal(received.length, payload.length);
  assert.deepEqual(received, payload);
});

Deno.test("copy: waits with a 1 KiB buffer, reads a stream with 64 KiB, drops back when drained", async () => {
  const piece = (size: number, byte: number) => new Uint8Array(size).fill(byte);
  const source = recordingReader(
    piece(100, 1), // small, not full: stays small
    piece(1024, 2), // fills the small one: next read is large
    piece(65536, 3), // fills the large one: stays large
    piece(70000, 4), // 65536 then 4464 (not full): back to small
    piece(10, 5),
  );
  const writer = collectingWriter();
  const total = await copy(source, writer);
  assert.equal(total, 100 + 1024 + 65536 + 70000 + 10);
  assert.deepEqual(source.offered, [
    1024,
    1024,
    65536,
    65536,
    65536,
    1024,
    1024,
  ]);
  const expected = new Uint8Array([
    ...piece(100, 1),
    ...piece(1024, 2),
    ...piece(65536, 3),
    ...piece(70000, 4),
    ...piece(10, 5),
  ]);
  assert.deepEqual(writer.bytes(), expected);
});

Deno.test("copy: traffic.bytes grows as each chunk is written, not only at the end", async () => {
  const traffic = { bytes: 0 };
  const seen: number[] = [];
  const source = recordingReader(
    new Uint8Array(10),
    new Uint8Array(20),
    new Uint8Array(30),
  );
  const writer = {
    write(bytes: Uint8Array) {
      seen.push(traffic.bytes);
      return Promise.resolve(bytes.length);
    },
  };
  assert.equal(await copy(source, writer, traffic), 60);
  assert.deepEqual(seen, [0, 10, 30]);
  assert.equal(traffic.bytes, 60);
  // An empty source: nothing written, 0.
  assert.equal(await copy(recordingReader(), writer), 0);
});

Deno.test("copy: a writer that fails stops the copy with its error, no more reads", async () => {
  let writes = 0;
  const source = recordingReader(
    new Uint8Array(1024), // large mode from here: the pool buffer must come back
    new Uint8Array(65536),
    new Uint8Array(65536),
    new Uint8Array(5),
  );
  const failing = {
    write(_bytes: Uint8Array): Promise<number> {
      writes++;
      if (writes === 2) {
        return Promise.reject(new Deno.errors.BrokenPipe("peer left"));
      }
      return Promise.resolve(_bytes.length);
    },
  };
  await assert.rejects(() => copy(source, failing), Deno.errors.BrokenPipe);
  assert.equal(source.offered.length, 2);
  // A source that fails: its error, too.
  const broken: Reader = {
    read: () => Promise.reject(new Deno.errors.ConnectionReset("reset")),
  };
  await assert.rejects(
    () => copy(broken, collectingWriter()),
    Deno.errors.ConnectionReset,
  );
  // Many copies at once after that, through slow writers: the pooled
  // buffers are never shared between two copies.
  const payloads = Array.from({ length: 8 }, () => randomBytes(300_000));
  const results = await Promise.all(payloads.map(async (payload) => {
    const slices: Uint8Array[] = [];
    for (let offset = 0; offset < payload.length; offset += 70_000) {
      slices.push(payload.subarray(offset, offset + 70_000));
    }
    const writer = collectingWriter();
    const slow = {
      async write(bytes: Uint8Array) {
        await new Promise((resolve) => setTimeout(resolve, 1));
        return writer.write(bytes);
      },
    };
    await copy(recordingReader(...slices), slow);
    return writer.bytes();
  }));
  results.forEach((result, index) => assert.deepEqual(result, payloads[index]));
});

Deno.test("copy into a socket whose peer is gone rejects with a disconnect error", async () => {
  const [client, server] = await tcpPair();
  server.close();
  const endless: Reader = {
    read(buffer) {
      buffer.fill(0x61);
      return Promise.resolve(buffer.length);
    },
  };
  const error = await within(
    10_000,
    copy(endless, client).then(() => null, (e) => e),
  );
  client.close();
  assert.ok(
    error instanceof Deno.errors.BrokenPipe ||
      error instanceof Deno.errors.ConnectionReset,
    `got ${error}`,
  );
});

// --- closing. ---

Deno.test("closeQuietly: a second close is silent", async () => {
  const [client, server] = await tcpPair();
  closeQuietly(client);
  closeQuietly(client);
  assert.throws(() => client.close(), Deno.errors.BadResource);
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  closeQuietly(listener);
  closeQuietly(server);
});

/**
 * The server reads only the start of what the client sent, answers with
 * `answerSize` bytes and closes in the given way while the rest of the
 * client's bytes are still unread. Returns what the client received and
 * how its reading ended.
 */
async function answerThenClose(
  mode: "close" | "lingeringClose",
  answerSize: number,
) {
  const [client, server] = await tcpPair();
  const answered = Promise.withResolvers<void>();
  const serving = (async () => {
    await server.read(new Uint8Array(4));
    await writeAll(server, new Uint8Array(answerSize).fill(0x42));
    answered.resolve();
    if (mode === "close") server.close();
    else await lingeringClose(server, 5000);
  })();
  // The client sends a request with a body the server will never read.
  await writeAll(client, new Uint8Array(100_000).fill(0x41));
  await within(10_000, answered.promise, "the answer");
  let received = 0;
  let ending = "end of stream";
  try {
    const buffer = new Uint8Array(64 * 1024);
    for (let count; (count = await client.read(buffer)) !== null;) {
      received += count;
    }
  } catch (error) {
    ending = (error as Error).name;
  }
  client.close();
  await within(10_000, serving, "the server's close");
  return { received, ending };
}

Deno.test("lingeringClose: the last answer survives a peer still sending; close() resets it", async () => {
  const answer = 1024 * 1024;
  // The control: plain close() with unread input sends a reset, and the
  // client loses the end of the answer, or at least gets no clean end.
  const plain = await answerThenClose("close", answer);
  assert.ok(
    plain.received < answer || plain.ending !== "end of stream",
    `plain close delivered everything cleanly: ${JSON.stringify(plain)}`,
  );
  const lingering = await answerThenClose("lingeringClose", answer);
  assert.deepEqual(lingering, { received: answer, ending: "end of stream" });
});

Deno.test("lingeringClose ends within ms when the peer never closes, and its timer is cleared", async () => {
  const [client, server] = await tcpPair();
  const started = performance.now();
  await within(5000, lingeringClose(server, 300), "lingeringClose");
  const took = performance.now() - started;
  assert.ok(took >= 250, `returned after ${took} ms, before its time`);
  // The server side is closed: the client reads the end, and cannot write
  // for long.
  assert.equal(await client.read(new Uint8Array(10)), null);
  assert.throws(() => server.close(), Deno.errors.BadResource);
  client.close();
});

Deno.test("lingeringClose stops draining after maxBytes from a peer that floods", async () => {
  const [client, server] = await tcpPair();
  let flooding = true;
  const flood = (async () => {
    const chunk = new Uint8Array(16 * 1024);
    try {
      while (flooding) await client.write(chunk);
    } catch {
      // The server closed: reset or broken pipe.
    }
  })();
  const started = performance.now();
  // ms 20 s: only maxBytes can end it early.
  await within(
    10_000,
    lingeringClose(server, 20_000, 64 * 1024),
    "lingeringClose",
  );
  assert.ok(performance.now() - started < 10_000);
  flooding = false;
  await within(10_000, flood, "the flood");
  client.close();
});

Deno.test({
  name:
    "lingeringClose: a Python client that sends, then reads, gets the whole answer",
  ignore: !(await hasCommand("python3")),
  async fn() {
    using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const answer = 512 * 1024;
    const serving = (async () => {
      const conn = await listener.accept();
      await conn.read(new Uint8Array(4));
      await writeAll(conn, new Uint8Array(answer).fill(0x5a));
      await lingeringClose(conn, 5000);
    })();
    const client = `
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"x" * 200000)
time.sleep(0.3)
got = 0
while True:
    data = s.recv(65536)
    if not data:
        break
    got += len(data)
print(got)
`;

    // Deno 2.8+ runs tests without the op and resource sanitizers unless asked:
    // a leaked socket, timer or pending read must fail these tests.
    Deno.test.sanitizer({ ops: true, resources: true });
    const result = await runTool("python3", [
      "-c",
      client,
      String(listener.addr.port),
    ]);
    await serving;
    assert.equal(result.code, 0, result.stderr);
    assert.equal(
      new TextDecoder().decode(result.stdout).trim(),
      String(answer),
    );
  },
});
if (!(await hasCommand("python3"))) {
  skipBecause(
    "python3 not installed: lingeringClose Python client test ignored",
  );
}

// --- addresses. ---

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

Deno.test("formatHostPort and formatAddress: names, IPv4, IPv6 with zones, other transports", () => {
  assert.equal(formatHostPort("localhost", 80), "localhost:80");
  assert.equal(formatHostPort("127.0.0.1", 0), "127.0.0.1:0");
  assert.equal(formatHostPort("::", 65535), "[::]:65535");
  assert.equal(formatHostPort("fe80::1%eth0", 22), "[fe80::1%eth0]:22");
  assert.equal(
    formatAddress({ transport: "unix", path: "/tmp/s" }),
    "unix",
  );
  assert.equal(
    formatAddress({ transport: "unixpacket", path: "/tmp/s" }),
    "unixpacket",
  );
});

Deno.test("formatAddress of real ::1 and 127.0.0.1 sockets", async () => {
  using v4 = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  assert.equal(formatAddress(v4.addr), `127.0.0.1:${v4.addr.port}`);
  let v6: Deno.TcpListener;
  try {
    v6 = Deno.listen({ hostname: "::1", port: 0 });
  } catch {
    skipBecause("no IPv6 loopback: ::1 half of the formatAddress test skipped");
    return;
  }
  using _ = v6;
  const conn = await Deno.connect({ hostname: "::1", port: v6.addr.port });
  using accepted = await v6.accept();
  assert.equal(formatAddress(v6.addr), `[::1]:${v6.addr.port}`);
  assert.match(formatAddress(accepted.remoteAddr), /^\[::1\]:\d+$/);
  conn.close();
});

Deno.test("replyAndClose: the reply reaches a client; one that never reads cannot hold the write past ms", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  // A client that reads: it gets the bytes, then the end; true.
  const reader = await Deno.connect({
    hostname: "127.0.0.1",
    port: listener.addr.port,
  });
  const first = await listener.accept();
  const [sent, got] = await Promise.all([
    replyAndClose(first, new TextEncoder().encode("bye\n"), 2000),
    readAll(reader).finally(() => reader.close()), // closing ends the linger
  ]);
  assert.equal(sent, true);
  assert.equal(new TextDecoder().decode(got), "bye\n");

  // A client that never reads: 64 MiB cannot fit in the socket buffers, so
  // the write waits; at 300 ms the connection is closed and it is false.
  const idle = await Deno.connect({
    hostname: "127.0.0.1",
    port: listener.addr.port,
  });
  const second = await listener.accept();
  const started = Date.now();
  const result = await within(
    5000,
    replyAndClose(second, new Uint8Array(64 * 1024 * 1024), 300),
    "replyAndClose to give up",
  );
  const elapsed = Date.now() - started;
  idle.close();
  assert.equal(result, false);
  assert.ok(elapsed >= 250 && elapsed < 3000, `${elapsed} ms`);
});
