import assert from "node:assert/strict";
import { startTcpProxy, type TcpProxyOptions } from "../scripts/tcp_proxy.ts";
import { startEchoServer } from "../scripts/echo_server.ts";
import { writeAll } from "../lib/io.ts";
import {
  closedPort,
  hasCommand,
  makeTestCerts,
  randomBytes,
  readAll,
  readUntil,
  runScript,
  runTool,
  skipBecause,
  startScript,
  startUnansweredPort,
  within,
} from "./helpers.ts";

const encoder = new TextEncoder();
const hasNc = await hasCommand("nc");

/** Starts the proxy in-process, collecting its log lines. */
function startProxy(
  target: Deno.NetAddr,
  options: Partial<TcpProxyOptions> = {},
) {
  const lines: string[] = [];
  const waiting: (() => void)[] = [];
  const proxy = startTcpProxy({
    target: { hostname: target.hostname, port: target.port },
    port: 0,
    ...options,
    log(line) {
      lines.push(line);
      waiting.splice(0).forEach((wake) => wake());
    },
  });
  /** Resolves with log line number `index` (0-based) once written. */
  function logLine(index: number): Promise<string> {
    return within(
      5000,
      (async () => {
        while (lines.length <= index) {
          await new Promise<void>((resolve) => waiting.push(resolve));
        }
        return lines[index];
      })(),
    );
  }
  return Object.assign(proxy, { lines, logLine });
}

function connectTo(addr: Deno.NetAddr) {
  return Deno.connect({ hostname: addr.hostname, port: addr.port });
}

/**
 * Sends `bytes`, half-closes, and returns everything that comes back; fails
 * after 10 s (a lost half-close would otherwise hang the test forever).
 */
async function roundTrip(addr: Deno.NetAddr, bytes: Uint8Array) {
  const conn = await connectTo(addr);
  try {
    // Read while writing: a large message would otherwise fill both
    // directions' buffers and deadlock.
    const [, reply] = await within(
      10_000,
      Promise.all([
        writeAll(conn, bytes).then(() => conn.closeWrite()),
        readAll(conn),
      ]),
    );
    return reply;
  } finally {
    conn.close();
  }
}

/** Reads until end of input or an error; returns how it ended. */
async function readToEnd(conn: Deno.Conn): Promise<string> {
  const buffer = new Uint8Array(65536);
  try {
    while ((await conn.read(buffer)) !== null) { /* discard */ }
    return "eof";
  } catch (error) {
    return (error as Error).name;
  }
}

const LOG_LINE =
  /^127\.0\.0\.1:\d+ <-> (\S+): (.+) after (\d+\.\d{3}) s, (\d+) bytes up, (\d+) bytes down$/;

Deno.test("carries exact bytes through to the echo server and back", async () => {
  await using echo = startEchoServer({ port: 0 });
  await using proxy = startProxy(echo.addr);
  const reply = await roundTrip(proxy.addr, encoder.encode("hello\n"));
  assert.deepEqual(reply, encoder.encode("hello\n"));
  const match = LOG_LINE.exec(await proxy.logLine(0));
  assert.ok(match, proxy.lines[0]);
  assert.equal(match[1], `127.0.0.1:${echo.addr.port}`);
  assert.equal(match[2], "closed");
  assert.equal(match[4], "6");
  assert.equal(match[5], "6");
});

Deno.test("10 MB of binary both ways, client half-close carried through", async () => {
  await using echo = startEchoServer({ port: 0 });
  await using proxy = startProxy(echo.addr);
  const data = randomBytes(10 * 1024 * 1024);
  // roundTrip half-closes after sending: the echo server sees EOF only if
  // the proxy passed it on, then finishes and closes, and the client gets
  // every byte followed by EOF. Without the carried half-close this hangs.
  const reply = await roundTrip(proxy.addr, data);
  assert.equal(reply.length, data.length);
  assert.deepEqual(reply, data);
  const match = LOG_LINE.exec(await proxy.logLine(0));
  assert.ok(match, proxy.lines[0]);
  assert.equal(Number(match[4]), data.length);
  assert.equal(Number(match[5]), data.length);
});

Deno.test("a target that half-closes first still gets what the client sends", async () => {
  // The target speaks first, shuts down its sending side, then reads until
  // the client is done and counts the bytes.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const target = (async () => {
    const conn = await listener.accept();
    try {
      await writeAll(conn, encoder.encode("banner\n"));
      await conn.closeWrite();
      let received = 0;
      const buffer = new Uint8Array(65536);
      while (true) {
        const count = await conn.read(buffer);
        if (count === null) return received;
        received += count;
      }
    } finally {
      conn.close();
    }
  })();
  await using proxy = startProxy(listener.addr);
  const client = await connectTo(proxy.addr);
  try {
    // The client sees the banner and then EOF, yet can still send.
    const banner = await within(5000, readAll(client));
    assert.deepEqual(banner, encoder.encode("banner\n"));
    const payload = randomBytes(1024 * 1024);
    await writeAll(client, payload);
    await client.closeWrite();
    assert.equal(await within(5000, target), payload.length);
  } finally {
    client.close();
    listener.close();
  }
  const match = LOG_LINE.exec(await proxy.logLine(0));
  assert.ok(match, proxy.lines[0]);
  assert.equal(match[2], "closed");
  assert.equal(Number(match[4]), 1024 * 1024);
  assert.equal(Number(match[5]), "banner\n".length);
});

Deno.test("target refused: the client is closed at once, one log line", async () => {
  const port = closedPort();
  await using proxy = startProxy({
    transport: "tcp",
    hostname: "127.0.0.1",
    port,
  });
  const client = await connectTo(proxy.addr);
  try {
    assert.equal(await within(1000, readToEnd(client)), "eof");
  } finally {
    client.close();
  }
  assert.match(
    await proxy.logLine(0),
    new RegExp(
      `^127\\.0\\.0\\.1:\\d+: cannot reach 127\\.0\\.0\\.1:${port}: connection refused$`,
    ),
  );
});

Deno.test("target never answers: the client is closed after --connect-timeout", async () => {
  const unanswered = await startUnansweredPort();
  try {
    await using proxy = startProxy(unanswered.addr, { connectTimeoutMs: 300 });
    const client = await connectTo(proxy.addr);
    const started = performance.now();
    try {
      assert.equal(await within(2000, readToEnd(client)), "eof");
    } finally {
      client.close();
    }
    const elapsed = performance.now() - started;
    assert.ok(elapsed >= 250, `closed after ${elapsed} ms, before the timeout`);
    assert.match(await proxy.logLine(0), /: timed out after 0\.3 s$/);
  } finally {
    unanswered.close();
  }
});

/**
 * A target that answers one line, then resets the connection: SO_LINGER
 * with a zero timeout makes close() send RST instead of FIN. Python, because
 * Deno offers no way to send a reset on purpose.
 */
const RESETTING_TARGET = `
import socket, struct
listener = socket.create_server(("127.0.0.1", 0))
print(listener.getsockname()[1], flush=True)
conn, _ = listener.accept()
conn.recv(100)
conn.sendall(b"partial reply\\n")
conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
conn.close()
`;

const hasPython = await hasCommand("python3");

Deno.test({
  name: "target resets mid-stream: the client's connection is closed",
  ignore: !hasPython,
  async fn() {
    const python = new Deno.Command("python3", {
      args: ["-c", RESETTING_TARGET],
      stdout: "piped",
    }).spawn();
    const firstLine = await within(5000, readFirstLine(python.stdout));
    await using proxy = startProxy({
      transport: "tcp",
      hostname: "127.0.0.1",
      port: Number(firstLine),
    });
    const client = await connectTo(proxy.addr);
    try {
      await writeAll(client, encoder.encode("hello\n"));
      assert.equal(
        await within(5000, readUntil(client, "partial reply\n")),
        "partial reply\n",
      );
      // The reset reaches the proxy, which closes the client's side too.
      const ended = await within(2000, readToEnd(client));
      assert.ok(["eof", "ConnectionReset"].includes(ended), ended);
    } finally {
      client.close();
      await python.status;
    }
    const match = LOG_LINE.exec(await proxy.logLine(0));
    assert.ok(match, proxy.lines[0]);
    assert.equal(match[2], "connection reset");
    assert.equal(match[4], "6");
    assert.equal(match[5], "14");
  },
});
if (!hasPython) skipBecause("python3 not installed");

/** The first line of a child's output; the rest is drained in the background. */
async function readFirstLine(stream: ReadableStream<Uint8Array>) {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    text += value;
  }
  (async () => {
    while (!(await reader.read()).done) { /* drain */ }
  })();
  return text.split("\n")[0];
}

Deno.test("--idle-timeout closes a connection where nothing moves", async () => {
  await using echo = startEchoServer({ port: 0 });
  await using proxy = startProxy(echo.addr, { idleTimeoutMs: 200 });
  const client = await connectTo(proxy.addr);
  try {
    await writeAll(client, encoder.encode("one\n"));
    assert.equal(await within(5000, readUntil(client, "one\n")), "one\n");
    const quietSince = performance.now();
    assert.equal(await within(2000, readToEnd(client)), "eof");
    const quiet = performance.now() - quietSince;
    assert.ok(quiet >= 150 && quiet < 1000, `closed after ${quiet} ms`);
  } finally {
    client.close();
  }
  const match = LOG_LINE.exec(await proxy.logLine(0));
  assert.ok(match, proxy.lines[0]);
  assert.equal(match[2], "idle timeout");
  assert.equal(match[4], "4");
});

Deno.test("a --target that leads back to the proxy itself is detected: each client is closed at once, a few log lines, and it keeps serving", async () => {
  // The proxy's own address as its target, under two names. Before, one
  // client made it connect to itself until every descriptor (or the
  // per-address cap) was used up: thousands of connections and log lines.
  for (const hostname of ["127.0.0.1", "localhost"]) {
    const port = closedPort();
    await using proxy = startProxy(
      { transport: "tcp", hostname, port },
      { port },
    );
    for (let i = 0; i < 3; i++) {
      const client = await connectTo(proxy.addr);
      try {
        await client.write(encoder.encode("hello?\n")).catch(() => {});
        assert.equal(await within(2000, readToEnd(client)), "eof");
      } finally {
        client.close();
      }
    }
    // Give a runaway loop a moment to show itself in the log.
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.ok(proxy.lines.length <= 9, proxy.lines.join("\n"));
    assert.ok(
      proxy.lines.some((line) =>
        /refused: --target leads back to this proxy$|: it is this proxy$/
          .test(line)
      ),
      proxy.lines.join("\n"),
    );
  }
});

// --- The proxy as a real subprocess, run exactly as its header says. ---

Deno.test("subprocess: 200 concurrent clients, SIGTERM then exits 0", async () => {
  await using echo = startEchoServer({ port: 0 });
  const proxy = await startScript("tcp_proxy.ts", [
    "--target",
    `127.0.0.1:${echo.addr.port}`,
    "--port",
    "0",
  ]);
  const addr = {
    transport: "tcp",
    hostname: proxy.hostname,
    port: proxy.port,
  } as const;
  try {
    assert.equal(
      proxy.listeningLine,
      `Listening on tcp://127.0.0.1:${proxy.port}`,
    );
    const clients = 200;
    const replies = await within(
      15_000,
      Promise.all(
        Array.from({ length: clients }, async (_, index) => {
          const message = encoder.encode(`client ${index} `.repeat(1000));
          const reply = await roundTrip(addr, message);
          assert.deepEqual(reply, message, `client ${index}`);
          return reply.length;
        }),
      ),
    );
    assert.equal(replies.length, clients);
  } finally {
    const output = await proxy.stop("SIGTERM");
    assert.equal(output.code, 0, output.stderr);
    const lines = output.stderr.trimEnd().split("\n");
    assert.equal(lines.length, 200, output.stderr.slice(0, 1000));
    for (const line of lines) {
      const match = LOG_LINE.exec(line);
      assert.ok(match, line);
      assert.equal(match[4], match[5]);
    }
  }
});

Deno.test("subprocess: SIGTERM with a connection open closes it and exits 0", async () => {
  await using echo = startEchoServer({ port: 0 });
  const proxy = await startScript("tcp_proxy.ts", [
    "--target",
    `127.0.0.1:${echo.addr.port}`,
    "--port",
    "0",
  ]);
  const client = await Deno.connect({
    hostname: "127.0.0.1",
    port: proxy.port,
  });
  try {
    await writeAll(client, encoder.encode("still here\n"));
    await within(5000, readUntil(client, "still here\n"));
    const started = performance.now();
    const output = await proxy.stop("SIGTERM");
    assert.equal(output.code, 0, output.stderr);
    assert.ok(performance.now() - started < 2000);
    assert.equal(await within(2000, readToEnd(client)), "eof");
    const match = LOG_LINE.exec(output.stderr.trimEnd());
    assert.ok(match, output.stderr);
    assert.equal(match[2], "proxy shutting down");
    assert.equal(match[4], "11");
    assert.equal(match[5], "11");
  } finally {
    client.close();
    await proxy.stop();
  }
});

Deno.test({
  name: "subprocess: nc through the proxy to the echo server",
  ignore: !hasNc,
  async fn() {
    await using echo = startEchoServer({ port: 0 });
    const proxy = await startScript("tcp_proxy.ts", [
      "--target",
      `127.0.0.1:${echo.addr.port}`,
      "--port",
      "0",
    ]);
    try {
      const result = await runTool(
        "nc",
        ["-N", "127.0.0.1", String(proxy.port)],
        "hello via nc\n\x00\xff",
        10_000,
      );
      assert.equal(result.code, 0, result.stderr);
      assert.deepEqual(result.stdout, encoder.encode("hello via nc\n\x00\xff"));
    } finally {
      const output = await proxy.stop();
      assert.equal(output.code, 0);
      const match = LOG_LINE.exec(output.stderr.trimEnd());
      assert.ok(match, output.stderr);
      assert.equal(match[4], "16");
      assert.equal(match[5], "16");
    }
  },
});
if (!hasNc) skipBecause("nc not installed");

Deno.test("subprocess: target refused is one log line, and the proxy keeps serving", async () => {
  const port = closedPort();
  const proxy = await startScript("tcp_proxy.ts", [
    "--target",
    `127.0.0.1:${port}`,
    "--port",
    "0",
  ]);
  try {
    for (let i = 0; i < 2; i++) {
      const client = await Deno.connect({
        hostname: "127.0.0.1",
        port: proxy.port,
      });
      try {
        assert.equal(await within(1000, readToEnd(client)), "eof");
      } finally {
        client.close();
      }
    }
  } finally {
    const output = await proxy.stop();
    assert.equal(output.code, 0);
    const lines = output.stderr.trimEnd().split("\n");
    assert.equal(lines.length, 2, output.stderr);
    for (const line of lines) {
      assert.match(
        line,
        new RegExp(`cannot reach 127\\.0\\.0\\.1:${port}: connection refused$`),
      );
    }
  }
});

/** Resident memory of a process in KiB, as `ps` reports it. */
async function rssKiB(pid: number): Promise<number> {
  const { stdout } = await runTool("ps", ["-o", "rss=", "-p", String(pid)]);
  return Number(new TextDecoder().decode(stdout).trim());
}

Deno.test("memory: 2,000 idle proxied connections cost at most 40 KB each (two sockets each; 113 KB before)", async () => {
  // Before, every direction held a 64 KiB buffer while waiting: 113 KB per
  // idle connection. copy() waits with a small one now. (A bare relay, two
  // copy() loops over serveTcp and nothing else, measures about 21 KB.)
  await using echo = startEchoServer({ port: 0, maxPerAddress: 5000 });
  await using proxy = await startScript("tcp_proxy.ts", [
    "--target",
    `127.0.0.1:${echo.addr.port}`,
    "--port",
    "0",
    "--max-per-address", // all 2,000 come from 127.0.0.1
    "5000",
  ]);
  const addr = { transport: "tcp", hostname: "127.0.0.1", port: proxy.port };
  // Warm up once (a round trip) so the baseline includes the loaded code.
  await roundTrip(addr as Deno.NetAddr, encoder.encode("warm up\n"));
  const before = await rssKiB(proxy.child.pid);
  const conns: Deno.Conn[] = [];
  try {
    while (conns.length < 2000) {
      conns.push(
        ...await Promise.all(Array.from({ length: 200 }, async () => {
          const conn = await Deno.connect({
            hostname: "127.0.0.1",
            port: proxy.port,
          });
          // Every connection carries one small message, then waits idle.
          await writeAll(conn, encoder.encode("hi\n"));
          assert.equal(await conn.read(new Uint8Array(16)), 3);
          return conn;
        })),
      );
    }
    const perConnection = (await rssKiB(proxy.child.pid) - before) * 1024 /
      2000;
    console.log(`idle proxied connection: ${Math.round(perConnection)} bytes`);
    assert.ok(perConnection <= 40_000, `${perConnection} bytes each`);
  } finally {
    for (const conn of conns) conn.close();
  }
});

Deno.test("subprocess: --idle-timeout defaults to 300 s (0 = never); --max-per-address caps one address", async () => {
  const help = await runScript("tcp_proxy.ts", ["--help"]);
  assert.match(
    help.stdout,
    /--idle-timeout SECONDS .*\n.*\(default 300; 0 = never\)/,
  );
  assert.match(help.stdout, /\n {2}--max-connections N /);
  assert.match(help.stdout, /\n {2}--max-per-address N /);
  await using echo = startEchoServer({ port: 0 });
  const proxy = await startScript("tcp_proxy.ts", [
    "--target",
    `127.0.0.1:${echo.addr.port}`,
    "--port",
    "0",
    "--idle-timeout",
    "0",
    "--max-per-address",
    "1",
  ]);
  const first = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
  try {
    await writeAll(first, encoder.encode("one\n"));
    assert.equal(await within(5000, readUntil(first, "one\n")), "one\n");
    // A second client from the same address is closed at once, unserved.
    const second = await Deno.connect({
      hostname: "127.0.0.1",
      port: proxy.port,
    });
    try {
      assert.ok(["eof", "ConnectionReset"].includes(
        await within(2000, readToEnd(second)),
      ));
    } finally {
      second.close();
    }
    // The first is still served.
    await writeAll(first, encoder.encode("two\n"));
    assert.equal(await within(5000, readUntil(first, "two\n")), "two\n");
  } finally {
    first.close();
    const output = await proxy.stop();
    assert.equal(output.code, 0);
    assert.match(
      output.stderr,
      /^refused 127\.0\.0\.1: 1 connections from it \(--max-per-address\)/m,
    );
  }
});

Deno.test("CLI: usage errors exit 2 with one line and a hint", async () => {
  for (
    const args of [
      [],
      ["--target", "localhost"],
      ["--target", "127.0.0.1:70000"],
      ["--target", "127.0.0.1:1", "--port", "x"],
      ["--target", "127.0.0.1:1", "--connect-timeout", "0"],
      ["--target", "127.0.0.1:1", "--idle-timeout", "never"],
      ["--target", "127.0.0.1:1", "--max-connections", "0"],
      ["--target", "127.0.0.1:1", "--max-per-address", "x"],
      ["--target", "127.0.0.1:1", "--cert", "only-the-cert.pem"],
      ["--target", "127.0.0.1:1", "extra"],
    ]
  ) {
    const output = await runScript("tcp_proxy.ts", args, { timeoutMs: 5000 });
    assert.equal(output.code, 2, `${args.join(" ")}: ${output.stderr}`);
    assert.equal(output.stdout, "");
    const lines = output.stderr.trimEnd().split("\n");
    assert.equal(lines.length, 2, output.stderr);
    assert.match(lines[0], /^tcp_proxy\.ts: /);
    assert.match(lines[1], /--help/);
  }
  const help = await runScript("tcp_proxy.ts", ["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: tcp_proxy\.ts --target/);
});

// ---------------------------------------------------------------- TLS

const haveOpenssl = await hasCommand("openssl");
if (!haveOpenssl) skipBecause("openssl not installed: proxy TLS tests ignored");

/**
 * Python's ssl module as the client: sends "python " `count` times and a
 * newline, returns everything it read back until it had as much.
 */
async function pythonTlsRoundTrip(
  caFile: string,
  host: string,
  port: number,
  count: number,
) {
  const result = await runTool("python3", [
    "-c",
    `
import socket, ssl, sys
context = ssl.create_default_context(cafile=sys.argv[1])
text = b"python " * int(sys.argv[4]) + b"\\n"
with socket.create_connection((sys.argv[2], int(sys.argv[3]))) as raw:
    with context.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(text)
        data = b""
        while len(data) < len(text) and (chunk := s.recv(65536)):
            data += chunk
        sys.stdout.write(data.decode())
`,
    caFile,
    host,
    String(port),
    String(count),
  ]);
  assert.equal(result.code, 0, result.stderr);
  return new TextDecoder().decode(result.stdout);
}

Deno.test({
  name:
    "TLS in front of plain servers (--cert/--key): curl to an HTTP server, openssl s_client and Python ssl to echo, on 127.0.0.1 and ::1",
  ignore: !haveOpenssl,
  async fn() {
    await using certs = await makeTestCerts();
    const allow = ["--allow-net", `--allow-read=${certs.dir}`];
    await using http = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      (request) =>
        new Response(`hello from ${new URL(request.url).pathname}\n`),
    );
    await using echo = startEchoServer({ port: 0 });
    const tlsArgs = ["--cert", certs.certFile, "--key", certs.keyFile];
    await using web = await startScript("tcp_proxy.ts", [
      "--target",
      `127.0.0.1:${http.addr.port}`,
      "--port",
      "0",
      ...tlsArgs,
    ], { allow });
    assert.match(web.listeningLine, /^Listening on tls:\/\/127\.0\.0\.1:\d+$/);
    if (await hasCommand("curl")) {
      const curl = await runTool("curl", [
        "-sS",
        "--cacert",
        certs.caFile,
        `https://localhost:${web.port}/through/the/proxy`,
      ]);
      assert.equal(curl.code, 0, curl.stderr);
      assert.equal(
        new TextDecoder().decode(curl.stdout),
        "hello from /through/the/proxy\n",
      );
    } else skipBecause("curl not installed");
    for (const hostname of ["127.0.0.1", "::1"]) {
      await using proxy = await startScript("tcp_proxy.ts", [
        "--target",
        `127.0.0.1:${echo.addr.port}`,
        "--hostname",
        hostname,
        "--port",
        "0",
        ...tlsArgs,
      ], { allow });
      const bracketed = hostname.includes(":") ? `[${hostname}]` : hostname;
      assert.equal(
        proxy.listeningLine,
        `Listening on tls://${bracketed}:${proxy.port}`,
      );
      const openssl = await runTool("sh", [
        "-c",
        `(printf 'from openssl\\n'; sleep 0.5) | openssl s_client -quiet -no_ign_eof -verify_return_error -CAfile "$1" -servername localhost -connect "$2:$3"`,
        "sh",
        certs.caFile,
        bracketed,
        String(proxy.port),
      ]);
      assert.equal(new TextDecoder().decode(openssl.stdout), "from openssl\n");
      if (hasPython) {
        assert.equal(
          await pythonTlsRoundTrip(certs.caFile, hostname, proxy.port, 20_000),
          "python ".repeat(20_000) + "\n",
        );
      }
      // Plain text on its TLS port costs that one connection only.
      const plain = await Deno.connect({ hostname, port: proxy.port });
      await plain.write(encoder.encode("hello?\n")).catch(() => {});
      assert.ok(["eof", "ConnectionReset"].includes(
        await within(5000, readToEnd(plain)),
      ));
      plain.close();
      const output = await proxy.stop();
      assert.equal(output.code, 0);
      assert.match(output.stderr, /TLS handshake with .* failed: /);
    }
  },
});

Deno.test({
  name:
    "TLS towards the target (--target-tls/--target-cacert): a plain client reaches a TLS echo server; a wrong CA is one log line and the client closed",
  ignore: !haveOpenssl,
  async fn() {
    await using certs = await makeTestCerts();
    await using echo = startEchoServer({
      port: 0,
      tls: { cert: certs.cert, key: certs.key },
      log: () => {},
    });
    // In-process, with the CA as text: what --target-cacert loads.
    await using proxy = startProxy(
      { transport: "tcp", hostname: "localhost", port: echo.addr.port },
      { targetTls: { caCerts: [certs.ca] } },
    );
    const data = randomBytes(3 * 1024 * 1024);
    assert.deepEqual(await roundTrip(proxy.addr, data), data);
    const match = LOG_LINE.exec(await proxy.logLine(0));
    assert.ok(match, proxy.lines[0]);
    assert.equal(match[1], `localhost:${echo.addr.port}`);
    assert.equal(Number(match[4]), data.length);
    assert.equal(Number(match[5]), data.length);
    // As a subprocess, run as its header says, nc as the plain client.
    const allow = ["--allow-net", `--allow-read=${certs.dir}`];
    await using sub = await startScript("tcp_proxy.ts", [
      "--target",
      `127.0.0.1:${echo.addr.port}`,
      "--port",
      "0",
      "--target-cacert",
      certs.caFile,
    ], { allow });
    if (hasNc) {
      const nc = await runTool(
        "nc",
        ["-N", "127.0.0.1", String(sub.port)],
        "plain in, TLS out\n",
        10_000,
      );
      assert.equal(new TextDecoder().decode(nc.stdout), "plain in, TLS out\n");
    }
    // The wrong CA for the target: the client is closed at once.
    await using wrong = await startScript("tcp_proxy.ts", [
      "--target",
      `127.0.0.1:${echo.addr.port}`,
      "--port",
      "0",
      "--target-cacert",
      certs.otherCaFile,
    ], { allow });
    const client = await Deno.connect({
      hostname: "127.0.0.1",
      port: wrong.port,
    });
    try {
      await client.write(encoder.encode("hello?\n")).catch(() => {});
      assert.ok(["eof", "ConnectionReset"].includes(
        await within(5000, readToEnd(client)),
      ));
    } finally {
      client.close();
    }
    const output = await wrong.stop();
    assert.equal(output.code, 0);
    assert.match(
      output.stderr,
      new RegExp(
        `^127\\.0\\.0\\.1:\\d+: cannot reach 127\\.0\\.0\\.1:${echo.addr.port}: certificate not trusted \\(unknown issuer\\)\\n$`,
      ),
    );
  },
});
