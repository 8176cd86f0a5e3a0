// Tests for scripts/timeout_client.ts: success against the echo server, a
// server that never answers, a connect that never completes (a Python
// listener whose backlog is full), refusal, what "the reply" is, and CLI
// errors.
import assert from "node:assert/strict";
import { request } from "../scripts/timeout_client.ts";
import { startEchoServer } from "../scripts/echo_server.ts";
import { Failure } from "../lib/cli.ts";
import {
  closedPort,
  hasCommand,
  makeTestCerts,
  runOnTerminal,
  runScript,
  runTool,
  scriptPath,
  skipBecause,
  startPeer,
  startScript,
  startUnansweredPort,
} from "./helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function ipv6Loopback(): boolean {
  try {
    Deno.listen({ hostname: "::1", port: 0 }).close();
    return true;
  } catch {
    return false;
  }
}

/**
 * A TCP server that handles exactly one client with `behave`, then stops.
 * Returns the port and a promise for the end of that one conversation.
 */
function oneShotServer(behave: (conn: Deno.TcpConn) => Promise<void>) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const done = (async () => {
    const conn = await listener.accept();
    listener.close();
    try {
      await behave(conn);
    } finally {
      try {
        conn.close();
      } catch {
        // Already closed.
      }
    }
  })();
  return { port: listener.addr.port, done };
}

/** Reads until the peer closes; returns what arrived. */
async function drain(conn: Deno.Conn): Promise<string> {
  const buffer = new Uint8Array(4096);
  let text = "";
  while (true) {
    const count = await conn.read(buffer).catch(() => null);
    if (count === null) return text;
    text += decoder.decode(buffer.subarray(0, count));
  }
}

Deno.test("in-process: echo server's reply is the first line", async () => {
  await using server = startEchoServer({ port: 0 });
  const reply = await request(encoder.encode("hi there\n"), {
    port: server.addr.port,
    timeout: 2,
  });
  assert.equal(decoder.decode(reply), "hi there\n");
});

Deno.test("subprocess: arguments and the default message via the echo server", async () => {
  await using server = startEchoServer({ port: 0 });
  const port = ["--port", String(server.addr.port)];
  const words = await runScript("timeout_client.ts", [
    ...port,
    "hello",
    "world",
  ]);
  assert.equal(words.code, 0, words.stderr);
  assert.equal(words.stdout, "hello world\n");
  assert.equal(words.stderr, "");
  const plain = await runScript("timeout_client.ts", port);
  assert.equal(plain.code, 0, plain.stderr);
  assert.equal(plain.stdout, "hello\n");
});

Deno.test("subprocess: a server that accepts but never answers → 'no reply', exit 1", async () => {
  let received = "";
  const server = oneShotServer(async (conn) => {
    received = await drain(conn); // read, never write, until the client quits
  });
  const started = performance.now();
  const result = await runScript("timeout_client.ts", [
    "--port",
    String(server.port),
    "--timeout",
    "0.3",
    "are you there?",
  ], { timeoutMs: 10_000 });
  const elapsed = performance.now() - started;
  await server.done;
  assert.equal(result.code, 1);
  assert.equal(result.stdout, "");
  assert.equal(
    result.stderr,
    "timeout_client.ts: no reply: timed out after 0.3 s\n",
  );
  assert.equal(received, "are you there?\n");
  assert.ok(elapsed >= 300, `gave up too early: ${elapsed} ms`);
  assert.ok(elapsed < 5000, `took ${elapsed} ms`);
});

Deno.test("in-process: a connect that never completes → 'connect timed out'", async () => {
  // Stands in for a connect to a black-holed address: settles only when
  // the client's own time limit aborts it.
  const neverConnects = (options: { signal: AbortSignal }) =>
    new Promise<Deno.TcpConn>((_, reject) => {
      options.signal.addEventListener(
        "abort",
        () => reject(options.signal.reason),
      );
    });
  const started = performance.now();
  await assert.rejects(
    request(encoder.encode("x\n"), { timeout: 0.2, connect: neverConnects }),
    (error) => {
      assert.ok(error instanceof Failure);
      assert.equal(error.message, "connect timed out after 0.2 s");
      return true;
    },
  );
  const elapsed = performance.now() - started;
  assert.ok(elapsed >= 190 && elapsed < 2000, `took ${elapsed} ms`);
});

Deno.test("in-process: a real connect that hangs (full accept queue) → 'connect timed out', kind timeout", async () => {
  const unanswered = await startUnansweredPort();
  try {
    const started = performance.now();
    await assert.rejects(
      request(encoder.encode("x\n"), {
        port: unanswered.addr.port,
        timeout: 0.3,
      }),
      (error) => {
        assert.ok(error instanceof Failure);
        assert.equal(error.message, "connect timed out after 0.3 s");
        assert.equal(error.kind, "timeout");
        return true;
      },
    );
    const elapsed = performance.now() - started;
    assert.ok(elapsed >= 290 && elapsed < 3000, `took ${elapsed} ms`);
  } finally {
    unanswered.close();
  }
});

Deno.test("in-process: refused and unresolvable are not timeouts", async () => {
  const port = closedPort();
  await assert.rejects(request(encoder.encode("x\n"), { port }), (error) => {
    assert.ok(error instanceof Failure);
    assert.equal(
      error.message,
      `cannot connect to 127.0.0.1:${port}: connection refused`,
    );
    assert.equal(error.kind, "refused");
    return true;
  });
  // A 64-character label is not a valid DNS name: the lookup fails on this
  // machine, and no query leaves it (tests stay on loopback, DNS included).
  const unresolvable = `${"x".repeat(64)}.invalid`;
  await assert.rejects(
    request(encoder.encode("x\n"), {
      hostname: unresolvable,
      timeout: 5,
    }),
    (error) => {
      assert.ok(error instanceof Failure);
      assert.match(
        error.message,
        new RegExp(
          `^cannot connect to ${unresolvable}:9999: name not resolved: `,
        ),
      );
      assert.equal(error.kind, "dns");
      return true;
    },
  );
});

// A listener with listen(0) that never accepts: once its accept queue holds
// one connection, Linux drops further SYNs, so a connect just hangs (the
// kernel retries SYNs for about two minutes). The Python helper fills the
// queue, checks that a further connect really hangs, then prints the port.
const BACKLOG_FILLER = `
import socket, sys
listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
listener.bind(("127.0.0.1", 0))
listener.listen(0)
port = listener.getsockname()[1]
fillers = []
for _ in range(8):
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    probe.settimeout(0.3)
    try:
        probe.connect(("127.0.0.1", port))
        fillers.append(probe)
    except socket.timeout:
        probe.close()
        print("full", port, flush=True)
        break
else:
    print("never-full", port, flush=True)
sys.stdin.read()  # hold everything open until the test closes our stdin
`;

const python = await hasCommand("python3");
Deno.test({
  name:
    "subprocess: a connect that hangs (full backlog) → 'connect timed out', exit 1",
  ignore: !python,
  async fn() {
    // Waits for the whole line: one read of a pipe may hold only part of it.
    await using helper = await startPeer(
      "python3",
      ["-c", BACKLOG_FILLER],
      /^(full|never-full) (\d+)\n/,
      { input: true, timeoutMs: 15_000 },
    );
    const [, state, port] = helper.match;
    assert.equal(state, "full", "could not make a connect hang on loopback");
    const started = performance.now();
    const result = await runScript("timeout_client.ts", [
      "--port",
      port,
      "--timeout",
      "0.3",
    ], { timeoutMs: 10_000 });
    const elapsed = performance.now() - started;
    assert.equal(result.code, 1);
    assert.equal(result.stdout, "");
    assert.equal(
      result.stderr,
      "timeout_client.ts: connect timed out after 0.3 s\n",
    );
    assert.ok(elapsed < 5000, `took ${elapsed} ms`);
  },
});
if (!python) skipBecause("python3 not installed");

Deno.test("subprocess: connection refused → one line, exit 1", async () => {
  const port = closedPort();
  const result = await runScript("timeout_client.ts", ["--port", String(port)]);
  assert.equal(result.code, 1);
  assert.equal(result.stdout, "");
  assert.equal(
    result.stderr,
    `timeout_client.ts: cannot connect to 127.0.0.1:${port}: connection refused\n`,
  );
});

Deno.test({
  name: "subprocess: refused on ::1 → the address in brackets",
  ignore: !ipv6Loopback(),
  async fn() {
    const listener = Deno.listen({ hostname: "::1", port: 0 });
    const { port } = listener.addr;
    listener.close();
    const result = await runScript("timeout_client.ts", [
      "--hostname",
      "::1",
      "--port",
      String(port),
    ]);
    assert.equal(result.code, 1);
    assert.equal(
      result.stderr,
      `timeout_client.ts: cannot connect to [::1]:${port}: connection refused\n`,
    );
  },
});
if (!ipv6Loopback()) skipBecause("IPv6 loopback ::1 not available");

/** Runs the client against a server that sends `bytes` and then acts. */
async function replyCase(bytes: Uint8Array, then: "wait" | "close") {
  const server = oneShotServer(async (conn) => {
    await conn.write(bytes).catch(() => 0);
    // "wait": keep the connection open until the client is done with it.
    if (then === "wait") await drain(conn);
  });
  const result = await runScript("timeout_client.ts", [
    "--port",
    String(server.port),
    "--timeout",
    "2",
  ], { timeoutMs: 10_000 });
  await server.done;
  return result;
}

Deno.test("the reply is the first line, even if more follows", async () => {
  const result = await replyCase(encoder.encode("first\nsecond\n"), "wait");
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout, "first\n");
});

Deno.test("a reply in pieces, a UTF-8 character split between them, arrives whole", async () => {
  // The tutorial's single recv(1024) would take the first piece alone, and
  // decode() would raise on the half character (0xc3 without its 0xa9).
  const server = oneShotServer(async (conn) => {
    await conn.write(new Uint8Array([0x63, 0x61, 0x66, 0xc3]));
    await new Promise((resolve) => setTimeout(resolve, 100));
    await conn.write(new Uint8Array([0xa9, 0x21, 0x0a]));
    await drain(conn);
  });
  const reply = await request(encoder.encode("x\n"), {
    port: server.port,
    timeout: 5,
  });
  await server.done;
  assert.equal(decoder.decode(reply), "café!\n");
});

Deno.test("the reply is what came before the close, bytes kept, newline added", async () => {
  const server = oneShotServer(async (conn) => {
    await conn.write(new Uint8Array([0x6f, 0x6b, 0xff, 0xfe]));
  });
  // Raw bytes, not text: the invalid UTF-8 must reach stdout unchanged.
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      scriptPath("timeout_client.ts"),
      "--port",
      String(server.port),
      "--timeout",
      "2",
    ],
    stdin: "null",
  }).output();
  await server.done;
  assert.equal(output.code, 0, decoder.decode(output.stderr));
  assert.deepEqual(
    output.stdout,
    new Uint8Array([0x6f, 0x6b, 0xff, 0xfe, 0x0a]),
  );
});

Deno.test({
  name:
    "on a terminal the reply's escapes are shown, not obeyed; into a pipe, the bytes",
  ignore: !python,
  async fn() {
    const hostile = encoder.encode("hi \x1b[2J\x1b]0;owned\x07 \u202e!\r\n");
    const server = oneShotServer(async (conn) => {
      await conn.write(hostile);
    });
    const result = await runOnTerminal([
      "run",
      "--allow-net",
      scriptPath("timeout_client.ts"),
      "--port",
      String(server.port),
    ]);
    await server.done;
    assert.equal(result.code, 0, result.stderr);
    assert.equal(
      decoder.decode(result.stdout),
      "hi \\x1b[2J\\x1b]0;owned\\x07 \\u{202e}!\r\n",
    );
    // The same reply into a pipe: every byte as sent.
    const piped = oneShotServer(async (conn) => {
      await conn.write(hostile);
    });
    const output = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-net",
        scriptPath("timeout_client.ts"),
        "--port",
        String(piped.port),
      ],
      stdin: "null",
      stderr: "null",
    }).output();
    await piped.done;
    assert.deepEqual(output.stdout, hostile);
  },
});

Deno.test("a server that closes without a byte → 'no reply', exit 1", async () => {
  const result = await replyCase(new Uint8Array(), "close");
  assert.equal(result.code, 1);
  assert.equal(
    result.stderr,
    "timeout_client.ts: no reply: the server closed the connection\n",
  );
});

Deno.test("a reply over 64 KiB without a newline is refused, not buffered", async () => {
  const result = await replyCase(new Uint8Array(70_000).fill(0x61), "wait");
  assert.equal(result.code, 1);
  assert.equal(result.stdout, "");
  assert.equal(
    result.stderr,
    "timeout_client.ts: reply longer than 65536 bytes without a newline\n",
  );
});

Deno.test("CLI errors: one message, a hint, exit 2, no stack trace", async () => {
  const cases: [string[], RegExp][] = [
    [["--timeout", "0"], /--timeout must be a number of seconds/],
    [["--timeout", "soon"], /--timeout must be a number of seconds/],
    [["--port", "99999"], /--port must be a whole number/],
    [["--bogus"], /Unknown option '--bogus'/],
  ];
  for (const [args, message] of cases) {
    const result = await runScript("timeout_client.ts", args);
    assert.equal(result.code, 2, `${args}: ${result.stderr}`);
    const lines = result.stderr.trimEnd().split("\n");
    assert.equal(lines.length, 2, result.stderr);
    assert.match(lines[0], message);
    assert.ok(lines[0].startsWith("timeout_client.ts: "));
    assert.match(lines[1], /--help/);
    assert.equal(result.stdout, "");
  }
  const help = await runScript("timeout_client.ts", ["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: timeout_client\.ts/);
});

// --- TLS: --tls, --cacert, --client-cert/--client-key (lib/tls.ts). ---

const openssl = await hasCommand("openssl");
if (!openssl) {
  skipBecause("openssl not installed: timeout_client TLS tests ignored");
}

/** A self-signed client certificate (CN=test-client) in `dir`. */
async function makeClientCert(dir: string) {
  const cert = `${dir}/client.pem`, key = `${dir}/client.key`;
  const made = await runTool("openssl", [
    ...["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
    ...["-nodes", "-keyout", key, "-out", cert, "-subj", "/CN=test-client"],
    ...["-days", "1"],
  ]);
  assert.equal(made.code, 0, made.stderr);
  return { cert, key };
}

// A Python TLS server: greets each client with the name in its client
// certificate ("nobody" without one), then reads once and closes. With a
// fourth argument it demands a client certificate signed by that file.
const PYTHON_TLS_SERVER = `
import socket, ssl, sys
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[1], sys.argv[2])
if len(sys.argv) > 3:
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(sys.argv[3])
listener = socket.create_server(("127.0.0.1", 0))
print("READY", listener.getsockname()[1], flush=True)
while True:
    raw, _ = listener.accept()
    raw.settimeout(5)
    try:
        with context.wrap_socket(raw, server_side=True) as conn:
            peer = conn.getpeercert()
            name = dict(p[0] for p in peer["subject"])["commonName"] if peer else "nobody"
            conn.sendall(("python tls, you are %s\\n" % name).encode())
            conn.recv(1024)
    except (ssl.SSLError, OSError) as error:
        print("failed:", error, file=sys.stderr, flush=True)
`;

Deno.test({
  name:
    "TLS: --cacert against echo_server.ts --cert/--key; wrong CA, no CA, wrong name: one line, exit 1",
  ignore: !openssl,
  async fn() {
    await using certs = await makeTestCerts();
    await using localhostOnly = await makeTestCerts({
      names: ["DNS:localhost"],
    });
    const allow = [
      "--allow-net",
      `--allow-read=${certs.dir},${localhostOnly.dir}`,
    ];
    const serve = (files: { certFile: string; keyFile: string }) =>
      startScript("echo_server.ts", [
        ...["--port", "0", "--cert", files.certFile, "--key", files.keyFile],
      ], { allow });
    await using server = await serve(certs);
    await using named = await serve(localhostOnly);
    assert.equal(
      server.listeningLine,
      `Listening on tls://127.0.0.1:${server.port}`,
    );
    const run = (port: number, args: string[]) =>
      runScript("timeout_client.ts", ["--port", String(port), ...args], {
        allow,
      });

    const ok = await run(server.port, [
      "--cacert",
      certs.caFile,
      "over",
      "tls",
    ]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout, "over tls\n");
    assert.equal(ok.stderr, "");
    // The name is checked: "localhost" is in that certificate, 127.0.0.1 not.
    const byName = await run(named.port, [
      ...["--hostname", "localhost", "--cacert", localhostOnly.caFile, "hi"],
    ]);
    assert.equal(byName.code, 0, byName.stderr);
    assert.equal(byName.stdout, "hi\n");

    const cases: [number, string[], string][] = [
      [
        server.port,
        ["--cacert", certs.otherCaFile],
        "certificate not trusted (unknown issuer)",
      ],
      [server.port, ["--tls"], "certificate not trusted (unknown issuer)"],
      [
        named.port,
        ["--cacert", localhostOnly.caFile],
        "certificate is not valid for 127.0.0.1",
      ],
    ];
    for (const [port, args, problem] of cases) {
      const result = await run(port, args);
      assert.equal(result.code, 1, result.stderr);
      assert.equal(result.stdout, "");
      assert.equal(
        result.stderr,
        `timeout_client.ts: cannot connect to 127.0.0.1:${port}: ${problem}\n`,
      );
    }
  },
});

Deno.test({
  name: "TLS: in-process against Deno.listenTls, and on ::1",
  ignore: !openssl,
  async fn() {
    await using certs = await makeTestCerts();
    for (
      const hostname of ipv6Loopback() ? ["127.0.0.1", "::1"] : ["127.0.0.1"]
    ) {
      const listener = Deno.listenTls({
        hostname,
        port: 0,
        cert: certs.cert,
        key: certs.key,
      });
      const serving = (async () => {
        const conn = await listener.accept();
        try {
          await conn.handshake();
          await conn.write(encoder.encode("tls reply\n"));
          await drain(conn);
        } finally {
          conn.close();
        }
      })();
      try {
        const reply = await request(encoder.encode("x\n"), {
          hostname,
          port: listener.addr.port,
          timeout: 5,
          tls: { caCerts: [certs.ca] },
        });
        assert.equal(decoder.decode(reply), "tls reply\n");
      } finally {
        listener.close();
        await serving;
      }
    }
  },
});

Deno.test({
  name:
    "TLS: a server that never answers the handshake → 'connect timed out' (the connect's limit); a plain server → 'does not speak TLS'",
  ignore: !openssl,
  async fn() {
    const silent = oneShotServer(async (conn) => {
      await drain(conn); // takes the ClientHello, answers nothing
    });
    const started = performance.now();
    const stalled = await runScript("timeout_client.ts", [
      ...["--port", String(silent.port), "--tls", "--timeout", "0.3"],
    ], { timeoutMs: 10_000 });
    const elapsed = performance.now() - started;
    await silent.done;
    assert.equal(stalled.code, 1);
    assert.equal(
      stalled.stderr,
      "timeout_client.ts: connect timed out after 0.3 s\n",
    );
    assert.ok(elapsed < 5000, `took ${elapsed} ms`);

    const plain = oneShotServer(async (conn) => {
      await conn.write(encoder.encode("220 plain text here\r\n")).catch(() =>
        0
      );
      await drain(conn);
    });
    const result = await runScript("timeout_client.ts", [
      ...["--port", String(plain.port), "--tls", "--timeout", "2"],
    ], { timeoutMs: 10_000 });
    await plain.done;
    assert.equal(result.code, 1);
    assert.equal(
      result.stderr,
      `timeout_client.ts: cannot connect to 127.0.0.1:${plain.port}: the peer does not speak TLS\n`,
    );
  },
});

Deno.test({
  name:
    "TLS: a Python ssl server; --client-cert/--client-key where it demands one, and without",
  ignore: !openssl || !python,
  async fn() {
    await using certs = await makeTestCerts();
    const client = await makeClientCert(certs.dir);
    const allow = ["--allow-net", `--allow-read=${certs.dir}`];
    const ask = (port: string, args: string[]) =>
      runScript("timeout_client.ts", [
        ...[
          "--port",
          port,
          "--cacert",
          certs.caFile,
          "--timeout",
          "5",
          ...args,
        ],
      ], { allow, timeoutMs: 15_000 });
    const serverArgs = ["-c", PYTHON_TLS_SERVER, certs.certFile, certs.keyFile];
    {
      await using open = await startPeer(
        "python3",
        serverArgs,
        /READY (\d+)\n/,
      );
      const plain = await ask(open.match[1], []);
      assert.equal(plain.code, 0, plain.stderr);
      assert.equal(plain.stdout, "python tls, you are nobody\n");
    }
    // Demands a certificate signed by the client's own (self-signed) one.
    await using strict = await startPeer("python3", [
      ...serverArgs,
      client.cert,
    ], /READY (\d+)\n/);
    const port = strict.match[1];
    const presented = await ask(port, [
      ...["--client-cert", client.cert, "--client-key", client.key],
    ]);
    assert.equal(presented.code, 0, presented.stderr);
    assert.equal(presented.stdout, "python tls, you are test-client\n");
    // TLS 1.3: our side of the handshake ends first; the server's verdict
    // comes as an alert, read where the reply was expected.
    const without = await ask(port, []);
    assert.equal(without.code, 1);
    assert.equal(
      without.stderr,
      "timeout_client.ts: no reply: the server requires a client certificate\n",
    );
    // A certificate the server does not trust: its alert names ours.
    await using other = await startPeer("python3", [
      ...serverArgs,
      certs.caFile,
    ], /READY (\d+)\n/);
    const untrusted = await ask(other.match[1], [
      ...["--client-cert", client.cert, "--client-key", client.key],
    ]);
    assert.equal(untrusted.code, 1);
    assert.equal(
      untrusted.stderr,
      "timeout_client.ts: no reply: the peer refused our certificate (alert UnknownCA)\n",
    );
  },
});

Deno.test("TLS options: half a client certificate is bad usage; an unreadable CA file one line", async () => {
  const half = await runScript("timeout_client.ts", ["--client-cert", "x.pem"]);
  assert.equal(half.code, 2);
  assert.match(
    half.stderr,
    /^timeout_client\.ts: --client-cert and --client-key go together/,
  );
  const missing = await runScript("timeout_client.ts", [
    "--cacert",
    "/nonexistent/ca.pem",
  ], { allow: ["--allow-net", "--allow-read"] });
  assert.equal(missing.code, 1);
  assert.equal(
    missing.stderr,
    "timeout_client.ts: cannot read --cacert /nonexistent/ca.pem: no such file\n",
  );
});
