// Tests for scripts/udp_server.ts and scripts/udp_client.ts: exact stamp
// formats, byte-exact payloads, the size limit, many clients at once, the
// client's timeouts and retries, interop with Python and nc, IPv6, CLI
// errors and signals.
import assert from "node:assert/strict";
import {
  formatCtime,
  formatIso,
  MAX_UDP_PAYLOAD,
  startUdpServer,
} from "../scripts/udp_server.ts";
import { answers, NoReplyError, openUdpClient } from "../scripts/udp_client.ts";
import { Failure } from "../lib/cli.ts";
import {
  concat,
  hasCommand,
  randomBytes,
  runOnTerminal,
  runScript,
  runTool,
  scriptPath,
  skipBecause,
  startScript,
} from "./helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

// Mon Nov  2 01:24:44.567 2026, local time: a one-digit day on purpose.
const FIXED_LOCAL = new Date(2026, 10, 2, 1, 24, 44, 567).getTime();
const CTIME =
  /^\[(Sun|Mon|Tue|Wed|Thu|Fri|Sat) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ 123]\d \d\d:\d\d:\d\d \d{4}\]/;
const ISO = /^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\]/;

/** Sends one datagram from a fresh socket and returns the reply (2 s max). */
async function exchange(
  server: Deno.NetAddr,
  payload: Uint8Array,
): Promise<{ reply: Uint8Array; from: Deno.NetAddr }> {
  const socket = Deno.listenDatagram({
    transport: "udp",
    hostname: server.hostname,
    port: 0,
  });
  // An upper bound, not synchronisation: closing makes receive() fail.
  const limit = setTimeout(() => socket.close(), 2000);
  try {
    await socket.send(payload, server);
    const [reply, from] = await socket.receive(new Uint8Array(65_536));
    return { reply: reply.slice(), from: from as Deno.NetAddr };
  } finally {
    clearTimeout(limit);
    try {
      socket.close();
    } catch {
      // Closed by the time limit.
    }
  }
}

Deno.test("formatCtime is Python's time.ctime(): space-padded day", () => {
  assert.equal(formatCtime(new Date(FIXED_LOCAL)), "Mon Nov  2 01:24:44 2026");
  assert.equal(
    formatCtime(new Date(2026, 10, 22, 13, 5, 9)),
    "Sun Nov 22 13:05:09 2026",
  );
});

Deno.test("formatIso is ISO 8601 UTC to the second", () => {
  assert.equal(
    formatIso(new Date(Date.UTC(2026, 10, 22, 1, 24, 44, 999))),
    "2026-11-22T01:24:44Z",
  );
});

Deno.test("in-process: exact ctime stamp, then the payload, to the sender", async () => {
  await using server = startUdpServer({ port: 0, now: () => FIXED_LOCAL });
  const { reply, from } = await exchange(server.addr, encoder.encode("hello"));
  assert.equal(decoder.decode(reply), "[Mon Nov  2 01:24:44 2026]hello");
  assert.equal(from.port, server.addr.port);
});

Deno.test("in-process: --iso stamp, and the real clock is used", async () => {
  await using server = startUdpServer({ port: 0, iso: true });
  const before = Math.floor(Date.now() / 1000) * 1000;
  const { reply } = await exchange(server.addr, encoder.encode("x"));
  const after = Date.now();
  const text = decoder.decode(reply);
  assert.match(text, ISO);
  assert.ok(text.endsWith("]x"), text);
  const stamped = Date.parse(text.slice(1, text.indexOf("]")));
  assert.ok(stamped >= before && stamped <= after, `${stamped} not now`);
});

Deno.test("in-process: binary and invalid UTF-8 payloads come back unchanged", async () => {
  await using server = startUdpServer({ port: 0, now: () => FIXED_LOCAL });
  const stamp = encoder.encode("[Mon Nov  2 01:24:44 2026]");
  const everyByte = Uint8Array.from({ length: 256 }, (_, index) => index);
  const invalidUtf8 = new Uint8Array([
    0xff,
    0xfe,
    0xc3,
    0x28,
    0x00,
    0x0a,
    0x80,
  ]);
  for (const payload of [everyByte, invalidUtf8]) {
    const { reply } = await exchange(server.addr, payload);
    assert.deepEqual(reply, concat(stamp, payload));
  }
});

Deno.test("in-process: an empty datagram gets just the stamp; serving goes on", async () => {
  await using server = startUdpServer({ port: 0, now: () => FIXED_LOCAL });
  const empty = await exchange(server.addr, new Uint8Array());
  assert.equal(decoder.decode(empty.reply), "[Mon Nov  2 01:24:44 2026]");
  const next = await exchange(server.addr, encoder.encode("still there?"));
  assert.equal(
    decoder.decode(next.reply),
    "[Mon Nov  2 01:24:44 2026]still there?",
  );
});

Deno.test("in-process: replies are cut to 65,507 bytes, losing the payload's end", async () => {
  await using server = startUdpServer({ port: 0, now: () => FIXED_LOCAL });
  const stamp = encoder.encode("[Mon Nov  2 01:24:44 2026]");
  const room = MAX_UDP_PAYLOAD - stamp.length;
  // Just fits: nothing is cut.
  const fits = Uint8Array.from({ length: room }, (_, index) => index % 251);
  assert.deepEqual(
    (await exchange(server.addr, fits)).reply,
    concat(stamp, fits),
  );
  // One byte more, and the largest datagram: the end is cut off.
  for (const size of [room + 1, MAX_UDP_PAYLOAD]) {
    const payload = Uint8Array.from({ length: size }, (_, i) => i % 253);
    const { reply } = await exchange(server.addr, payload);
    assert.equal(reply.length, MAX_UDP_PAYLOAD);
    assert.deepEqual(reply, concat(stamp, payload.subarray(0, room)));
  }
});

Deno.test("in-process: 200 clients at once each get their own reply", async () => {
  await using server = startUdpServer({ port: 0, now: () => FIXED_LOCAL });
  const clients = await Promise.all(
    Array.from(
      { length: 200 },
      () => openUdpClient({ port: server.addr.port, timeout: 1, retries: 3 }),
    ),
  );
  try {
    const replies = await Promise.all(
      clients.map((client, index) =>
        client.request(encoder.encode(`client ${index}`))
      ),
    );
    replies.forEach((reply, index) =>
      assert.equal(
        decoder.decode(reply),
        `[Mon Nov  2 01:24:44 2026]client ${index}`,
      )
    );
  } finally {
    for (const client of clients) client.close();
  }
});

Deno.test("in-process: 3,000 random datagrams, then a normal one still gets its stamp", async () => {
  const logged: string[] = [];
  await using server = startUdpServer({
    port: 0,
    now: () => FIXED_LOCAL,
    log: (line) => logged.push(line),
  });
  // Four senders that never read their replies; sizes from empty to the
  // largest datagram, bytes random (invalid UTF-8, NULs, escapes...).
  const senders = Array.from(
    { length: 4 },
    () =>
      Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 }),
  );
  try {
    const sizes = [0, 1, 2, 63, 64, 65, 1500, 4096, 4097, MAX_UDP_PAYLOAD];
    for (let index = 0; index < 3000; index++) {
      const size = index % 50 === 0
        ? sizes[(index / 50) % sizes.length]
        : Math.floor(Math.random() * 2048);
      await senders[index % senders.length].send(
        randomBytes(size),
        server.addr,
      );
    }
  } finally {
    for (const sender of senders) sender.close();
  }
  // The flood may have filled the socket's receive buffer, and the kernel
  // drops what does not fit (that is UDP): ask as the client does, retrying.
  using client = await openUdpClient({
    port: server.addr.port,
    timeout: 1,
    retries: 5,
  });
  const reply = await client.request(encoder.encode("still ok?"));
  assert.equal(decoder.decode(reply), "[Mon Nov  2 01:24:44 2026]still ok?");
  // Replies to senders that closed are not errors for UDP: nothing to log.
  assert.deepEqual(logged, []);
});

Deno.test("answers(): matches stamped or plain echoes of the payload only", () => {
  const payload = encoder.encode("lo");
  assert.ok(answers(encoder.encode("[t]lo"), payload));
  assert.ok(answers(encoder.encode("lo"), payload));
  assert.ok(answers(encoder.encode("[t]"), new Uint8Array()));
  assert.ok(!answers(encoder.encode("[t]hello"), payload));
  assert.ok(!answers(encoder.encode("[t]two"), payload));
  assert.ok(answers(new Uint8Array(MAX_UDP_PAYLOAD), payload)); // cut reply
});

Deno.test("in-process client: ignores strangers and late replies to earlier tries", async () => {
  // A hand-made server: ignores the first try of "one", then answers its
  // retry twice (a duplicate, as a network may deliver), and meanwhile a
  // stranger sends the client a datagram.
  const fake = Deno.listenDatagram({
    transport: "udp",
    hostname: "127.0.0.1",
    port: 0,
  });
  const stranger = Deno.listenDatagram({
    transport: "udp",
    hostname: "127.0.0.1",
    port: 0,
  });
  const client = await openUdpClient({
    port: (fake.addr as Deno.NetAddr).port,
    timeout: 0.3,
    retries: 2,
  });
  const buffer = new Uint8Array(65_536);
  const script = (async () => {
    const [first] = await fake.receive(buffer);
    assert.equal(decoder.decode(first), "one"); // not answered
    const [retry, from] = await fake.receive(buffer);
    assert.equal(decoder.decode(retry), "one");
    await stranger.send(encoder.encode("[t]one"), from);
    await fake.send(encoder.encode("[t]one"), from);
    await fake.send(encoder.encode("[t]one"), from); // the duplicate
    const [second] = await fake.receive(buffer);
    assert.equal(decoder.decode(second), "two");
    await fake.send(encoder.encode("[t]two"), from);
  })();
  try {
    assert.equal(
      decoder.decode(await client.request(encoder.encode("one"))),
      "[t]one",
    );
    assert.equal(
      decoder.decode(await client.request(encoder.encode("two"))),
      "[t]two",
    );
    await script;
  } finally {
    client.close();
    fake.close();
    stranger.close();
  }
});

Deno.test("subprocess: server and client scripts, arguments and stdin lines", async () => {
  await using server = await startScript("udp_server.ts", ["--port", "0"]);
  assert.equal(
    server.listeningLine,
    `Listening on udp://127.0.0.1:${server.port}`,
  );
  const port = ["--port", String(server.port)];

  const single = await runScript("udp_client.ts", [...port, "hello", "world"]);
  assert.equal(single.code, 0, single.stderr);
  assert.match(single.stdout, CTIME);
  assert.ok(single.stdout.endsWith("]hello world\n"), single.stdout);

  const lines = await runScript("udp_client.ts", port, {
    stdin: "one\n\ntwo\r\nthree",
  });
  assert.equal(lines.code, 0, lines.stderr);
  const replies = lines.stdout.split("\n");
  assert.equal(replies.length, 5, lines.stdout); // 4 lines + final ""
  ["one", "", "two", "three"].forEach((text, index) => {
    assert.match(replies[index], CTIME);
    assert.ok(replies[index].endsWith(`]${text}`), replies[index]);
  });
  assert.equal(replies[4], "");
  assert.equal(lines.stderr, "");
});

Deno.test("subprocess: --iso stamp", async () => {
  await using server = await startScript("udp_server.ts", [
    "--port",
    "0",
    "--iso",
  ]);
  const { reply } = await exchange(
    { transport: "udp", hostname: "127.0.0.1", port: server.port },
    new Uint8Array([0xff, 0x00, 0x41]),
  );
  assert.match(decoder.decode(reply.subarray(0, 22)), ISO);
  assert.equal(reply.length, 22 + 3);
  assert.deepEqual(reply.subarray(22), new Uint8Array([0xff, 0x00, 0x41]));
});

Deno.test("subprocess client: no server → 'no reply' after every try, exit 1, bounded", async () => {
  // A socket that receives but never answers: counts the client's tries.
  const silent = Deno.listenDatagram({
    transport: "udp",
    hostname: "127.0.0.1",
    port: 0,
  });
  const port = (silent.addr as Deno.NetAddr).port;
  try {
    const started = performance.now();
    const result = await runScript("udp_client.ts", [
      "--port",
      String(port),
      "--timeout",
      "0.2",
      "--retries",
      "1",
      "anyone?",
    ], { timeoutMs: 10_000 });
    const elapsed = performance.now() - started;
    assert.equal(result.code, 1);
    assert.equal(result.stdout, "");
    assert.equal(
      result.stderr,
      `udp_client.ts: no reply from 127.0.0.1:${port} after 2 tries\n`,
    );
    assert.ok(elapsed < 5000, `took ${elapsed} ms`);
    const buffer = new Uint8Array(100);
    for (let attempt = 0; attempt < 2; attempt++) {
      const [data] = await silent.receive(buffer);
      assert.equal(decoder.decode(data), "anyone?");
    }
  } finally {
    silent.close();
  }
});

Deno.test("subprocess client: a closed port costs every try (Deno cannot see the ICMP port unreachable)", async () => {
  // If Deno ever reports the refusal, this fails: then say it at once.
  const closed = Deno.listenDatagram({
    transport: "udp",
    hostname: "127.0.0.1",
    port: 0,
  });
  const port = (closed.addr as Deno.NetAddr).port;
  closed.close();
  const started = performance.now();
  const result = await runScript("udp_client.ts", [
    "--port",
    String(port),
    "--timeout",
    "0.2",
    "--retries",
    "2",
    "anyone?",
  ], { timeoutMs: 10_000 });
  const elapsed = performance.now() - started;
  assert.equal(result.code, 1);
  assert.equal(
    result.stderr,
    `udp_client.ts: no reply from 127.0.0.1:${port} after 3 tries\n`,
  );
  assert.ok(elapsed >= 600 && elapsed < 5000, `took ${elapsed} ms`);
});

Deno.test("in-process client: no reply is a timeout Failure; a send the system refuses is one line", async () => {
  // On ::1 where there is one: the message puts the address in brackets.
  const hostname = ipv6Available() ? "::1" : "127.0.0.1";
  const silent = Deno.listenDatagram({ transport: "udp", hostname, port: 0 });
  const port = (silent.addr as Deno.NetAddr).port;
  const target = hostname === "::1" ? `[::1]:${port}` : `127.0.0.1:${port}`;
  try {
    using client = await openUdpClient({
      hostname,
      port,
      timeout: 0.1,
      retries: 0,
    });
    await assert.rejects(client.request(encoder.encode("x")), (error) => {
      assert.ok(error instanceof NoReplyError);
      assert.equal(error.kind, "timeout");
      assert.equal(error.message, `no reply from ${target} after 1 try`);
      return true;
    });
  } finally {
    silent.close();
  }
  // Port 0 is no destination: the system refuses the send (EINVAL).
  using nowhere = await openUdpClient({ port: 0, timeout: 0.1 });
  await assert.rejects(nowhere.request(encoder.encode("x")), (error) => {
    assert.ok(error instanceof Failure);
    assert.match(error.message, /^cannot send to 127\.0\.0\.1:0: /);
    return true;
  });
});

Deno.test("subprocess client: port 0, a send the system refuses, is one line, exit 1", async () => {
  const result = await runScript("udp_client.ts", ["--port", "0", "x"]);
  assert.equal(result.code, 1);
  assert.match(
    result.stderr,
    /^udp_client\.ts: cannot send to 127\.0\.0\.1:0: [^\n]+\n$/,
  );
});

Deno.test("subprocess client: a line too long for one datagram is a clear error", async () => {
  const result = await runScript("udp_client.ts", [
    "--port",
    "9",
    "--timeout",
    "0.2",
  ], {
    stdin: "x".repeat(MAX_UDP_PAYLOAD + 1) + "\n",
  });
  assert.equal(result.code, 1);
  assert.equal(
    result.stderr,
    `udp_client.ts: line 1 is longer than ${MAX_UDP_PAYLOAD} bytes, the largest UDP datagram\n`,
  );
});

const python = await hasCommand("python3");
Deno.test({
  name: "interop: the tutorial's Python UDP client (AF_INET, sendto/recvfrom)",
  ignore: !python,
  async fn() {
    await using server = await startScript("udp_server.ts", ["--port", "0"]);
    const program = `
import socket, sys
client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
client.settimeout(2)
for data in (b"hello", b"\\xff\\xfe", b""):
    client.sendto(data, ("127.0.0.1", ${server.port}))
    reply, address = client.recvfrom(65535)
    print(reply.hex(), address == ("127.0.0.1", ${server.port}))
client.close()
`;
    const result = await runTool("python3", ["-c", program], undefined, 10_000);
    assert.equal(result.code, 0, result.stderr);
    // One line per reply: its bytes in hex, and whether it came from the
    // server's address.
    const lines = decoder.decode(result.stdout).trimEnd().split("\n");
    const replies = lines.map((line) => {
      const [hex, fromServer] = line.split(" ");
      assert.equal(fromServer, "True");
      return Uint8Array.from(hex.match(/../g) ?? [], (h) => parseInt(h, 16));
    });
    assert.equal(replies.length, 3);
    const stamps = replies.map((reply) =>
      decoder.decode(reply.subarray(0, 26))
    );
    for (const stamp of stamps) assert.match(stamp, CTIME);
    assert.deepEqual(replies[0].subarray(26), encoder.encode("hello"));
    assert.deepEqual(replies[1].subarray(26), new Uint8Array([0xff, 0xfe]));
    assert.equal(replies[2].length, 26);
  },
});
if (!python) skipBecause("python3 not installed");

const nc = await hasCommand("nc");
Deno.test({
  name: "interop: nc -u",
  ignore: !nc,
  async fn() {
    await using server = await startScript("udp_server.ts", ["--port", "0"]);
    // -W 1: quit after one datagram came back; -w 3: upper bound.
    const result = await runTool(
      "nc",
      ["-u", "-W", "1", "-w", "3", "127.0.0.1", String(server.port)],
      "hello from nc\n",
      10_000,
    );
    assert.equal(result.code, 0, result.stderr);
    const text = decoder.decode(result.stdout);
    assert.match(text, CTIME);
    assert.ok(text.endsWith("]hello from nc\n"), text);
  },
});
if (!nc) skipBecause("nc not installed");

function ipv6Available(): boolean {
  try {
    Deno.listenDatagram({ transport: "udp", hostname: "::1", port: 0 }).close();
    return true;
  } catch {
    return false;
  }
}
const ipv6 = ipv6Available();
Deno.test({
  name: "IPv6: server on ::1, Listening line in brackets, client binds ::",
  ignore: !ipv6,
  async fn() {
    await using server = await startScript("udp_server.ts", [
      "--hostname",
      "::1",
      "--port",
      "0",
    ]);
    assert.equal(
      server.listeningLine,
      `Listening on udp://[::1]:${server.port}`,
    );
    const result = await runScript("udp_client.ts", [
      "--hostname",
      "::1",
      "--port",
      String(server.port),
      "over v6",
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, CTIME);
    assert.ok(result.stdout.endsWith("]over v6\n"));
  },
});
if (!ipv6) skipBecause("IPv6 loopback ::1 not available");

Deno.test({
  name:
    "client on a terminal: escapes in a reply are shown, not obeyed; into a pipe, the bytes",
  ignore: !python,
  async fn() {
    await using server = startUdpServer({ port: 0, now: () => FIXED_LOCAL });
    const args = [
      "run",
      "--allow-net",
      scriptPath("udp_client.ts"),
      "--port",
      String(server.addr.port),
      "\x1b[2J\u202e",
    ];
    const shown = await runOnTerminal(args);
    assert.equal(shown.code, 0, shown.stderr);
    assert.equal(
      decoder.decode(shown.stdout),
      "[Mon Nov  2 01:24:44 2026]\\x1b[2J\\u{202e}\r\n",
    );
    const piped = await runScript("udp_client.ts", args.slice(3));
    assert.equal(piped.stdout, "[Mon Nov  2 01:24:44 2026]\x1b[2J\u202e\n");
  },
});

Deno.test("CLI errors: one message, a hint, exit 2, no stack trace", async () => {
  const cases: [string, string[], RegExp][] = [
    ["udp_server.ts", ["--port", "70000"], /--port must be a whole number/],
    ["udp_server.ts", ["--bogus"], /Unknown option '--bogus'/],
    ["udp_server.ts", ["extra"], /unexpected argument 'extra'/],
    ["udp_client.ts", ["--timeout", "0", "x"], /--timeout must be/],
    ["udp_client.ts", ["--retries", "x", "y"], /--retries must be/],
    ["udp_client.ts", ["--port", "abc", "x"], /--port must be/],
  ];
  for (const [script, args, message] of cases) {
    const result = await runScript(script, args);
    assert.equal(result.code, 2, `${script} ${args}: ${result.stderr}`);
    const lines = result.stderr.trimEnd().split("\n");
    assert.match(lines[0], message);
    assert.ok(lines[0].startsWith(`${script}: `));
    assert.equal(lines.length, 2, result.stderr);
    assert.match(lines[1], /--help/);
    assert.equal(result.stdout, "");
  }
});

Deno.test("--help prints usage to stdout, exit 0", async () => {
  for (const script of ["udp_server.ts", "udp_client.ts"]) {
    const result = await runScript(script, ["--help"]);
    assert.equal(result.code, 0);
    assert.match(result.stdout, new RegExp(`^Usage: ${script}`));
  }
});

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  Deno.test(`${signal} stops the server with exit 0, quickly`, async () => {
    const server = await startScript("udp_server.ts", ["--port", "0"]);
    // Prove it serves, then stop it.
    await exchange(
      { transport: "udp", hostname: "127.0.0.1", port: server.port },
      encoder.encode("ping"),
    );
    const started = performance.now();
    const result = await server.stop(signal);
    assert.equal(result.code, 0, result.stderr);
    assert.ok(performance.now() - started < 2000);
    assert.equal(result.stderr, "");
    assert.equal(result.stdout, server.listeningLine + "\n");
  });
}

Deno.test("copied out of this project (no deno.json): the Run lines' --unstable-net is needed, and its absence is one line", async () => {
  // A developer copies a script plus lib/ into a project of their own,
  // where nothing turns on Deno's unstable UDP API.
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${dir}/scripts`);
    await Deno.mkdir(`${dir}/lib`);
    for (const name of ["udp_server.ts", "udp_client.ts"]) {
      await Deno.copyFile(
        new URL(`../scripts/${name}`, import.meta.url),
        `${dir}/scripts/${name}`,
      );
    }
    for await (
      const entry of Deno.readDir(new URL("../lib", import.meta.url))
    ) {
      await Deno.copyFile(
        new URL(`../lib/${entry.name}`, import.meta.url),
        `${dir}/lib/${entry.name}`,
      );
    }
    const deno = (flags: string[], args: string[]) =>
      new Deno.Command(Deno.execPath(), {
        args: ["run", ...flags, ...args],
        cwd: dir,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      });

    for (const script of ["udp_server.ts", "udp_client.ts"]) {
      const result = await deno(["--allow-net"], [
        `scripts/${script}`,
        "--port",
        "0",
      ]).output();
      assert.equal(result.code, 1);
      assert.equal(
        decoder.decode(result.stderr),
        `${script}: UDP needs Deno's --unstable-net flag: deno run --unstable-net --allow-net …\n`,
      );
    }

    // Exactly the headers' Run lines.
    const server = deno(["--unstable-net", "--allow-net"], [
      "scripts/udp_server.ts",
      "--port",
      "0",
    ]).spawn();
    const lines = server.stdout.pipeThrough(new TextDecoderStream())
      .getReader();
    try {
      const { value } = await lines.read();
      const port =
        /^Listening on udp:\/\/127\.0\.0\.1:(\d+)\n/.exec(value!)![1];
      const client = await deno(["--unstable-net", "--allow-net"], [
        "scripts/udp_client.ts",
        "--port",
        port,
        "copied",
      ]).output();
      assert.equal(client.code, 0, decoder.decode(client.stderr));
      assert.match(decoder.decode(client.stdout), /^\[.+\]copied\n$/);
    } finally {
      server.kill("SIGTERM");
      assert.equal((await server.status).code, 0);
      await lines.cancel();
      await server.stderr.cancel();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
