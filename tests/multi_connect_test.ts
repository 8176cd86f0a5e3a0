import assert from "node:assert/strict";
import {
  checkTarget,
  checkTargets,
  escapeBytes,
  parseTarget,
  type TargetResult,
} from "../scripts/multi_connect.ts";
import type { ClientTls } from "../lib/tls.ts";
import { startEchoServer } from "../scripts/echo_server.ts";
import {
  closedPort,
  hasCommand,
  makeTestCerts,
  runScript,
  runTool,
  skipBecause,
  startPeer,
  startScript,
  startUnansweredPort,
} from "./helpers.ts";

const encoder = new TextEncoder();

/** A listener that greets each client with `banner`, then closes. */
function startBannerServer(banner: Uint8Array) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const serving = (async () => {
    for await (const conn of listener) {
      await conn.write(banner).catch(() => {});
      conn.close();
    }
  })();
  return {
    port: listener.addr.port,
    async close() {
      listener.close();
      await serving;
    },
  };
}

/** A listener that accepts and then says nothing until closed. */
function startSilentServer() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of listener) conns.push(conn);
  })();
  return {
    port: listener.addr.port,
    async close() {
      listener.close();
      await accepting;
      for (const conn of conns) conn.close();
    },
  };
}

function target(port: number, hostname = "127.0.0.1") {
  return parseTarget(`${hostname}:${port}`);
}

Deno.test("connects and returns the banner's exact bytes", async () => {
  const banner = encoder.encode("SSH-2.0-Test\r\n");
  const server = startBannerServer(banner);
  try {
    const result = await checkTarget(target(server.port));
    assert.equal(result.result, "connected");
    assert.deepEqual(result.firstBytes, banner);
    assert.equal(result.detail, null);
    assert.ok(result.ms >= 0 && result.ms < 2000);
  } finally {
    await server.close();
  }
});

Deno.test("keeps at most 64 bytes of a long banner", async () => {
  const banner = new Uint8Array(1000).fill(0x41);
  const server = startBannerServer(banner);
  try {
    const result = await checkTarget(target(server.port));
    assert.deepEqual(result.firstBytes, banner.subarray(0, 64));
  } finally {
    await server.close();
  }
});

Deno.test("a server that accepts and closes at once: connected, closed without data", async () => {
  const server = startBannerServer(new Uint8Array());
  try {
    const result = await checkTarget(target(server.port));
    assert.equal(result.result, "connected");
    assert.equal(result.firstBytes, null);
    assert.equal(result.detail, "closed by server without data");
  } finally {
    await server.close();
  }
});

Deno.test("a closed port is refused", async () => {
  const result = await checkTarget(target(closedPort()));
  assert.equal(result.result, "refused");
  assert.equal(result.firstBytes, null);
});

/**
 * A name no resolver is ever asked about: a 64-character label is not a
 * valid DNS name, so the lookup fails on this machine (tests never send
 * traffic beyond loopback, DNS queries included).
 */
const UNRESOLVABLE = `${"x".repeat(64)}.invalid`;

Deno.test("an unresolvable name is a DNS failure, within the timeout", async () => {
  const started = performance.now();
  const result = await checkTarget(parseTarget(`${UNRESOLVABLE}:80`), {
    timeoutMs: 3000,
  });
  assert.ok(performance.now() - started < 3500);
  assert.equal(result.result, "DNS failure", JSON.stringify(result));
  // The detail is lib/dial.ts's reason, as every client words it.
  assert.match(result.detail ?? "", /^name not resolved: /);
});

Deno.test("a connect that never completes times out on time", async () => {
  const unanswered = await startUnansweredPort();
  try {
    const started = performance.now();
    const result = await checkTarget(target(unanswered.addr.port), {
      timeoutMs: 300,
    });
    const elapsed = performance.now() - started;
    assert.equal(result.result, "timed out");
    assert.equal(result.detail, "no answer within 0.3 s");
    assert.ok(elapsed >= 290 && elapsed < 1500, `took ${elapsed} ms`);
  } finally {
    unanswered.close();
  }
});

Deno.test("a silent server is connected, the wait for bytes bounded", async () => {
  const server = startSilentServer();
  try {
    const started = performance.now();
    const result = await checkTarget(target(server.port), {
      timeoutMs: 5000,
      readTimeoutMs: 200,
    });
    const elapsed = performance.now() - started;
    assert.equal(result.result, "connected");
    assert.equal(result.firstBytes, null);
    assert.equal(result.detail, "no data within 0.2 s");
    assert.ok(elapsed >= 190 && elapsed < 1500, `took ${elapsed} ms`);
  } finally {
    await server.close();
  }
});

Deno.test("--timeout also bounds the wait for the first bytes", async () => {
  const server = startSilentServer();
  try {
    const started = performance.now();
    const result = await checkTarget(target(server.port), { timeoutMs: 300 });
    assert.equal(result.result, "connected");
    assert.match(result.detail ?? "", /^no data within 0\.\d+ s$/);
    assert.ok(performance.now() - started < 1000);
  } finally {
    await server.close();
  }
});

Deno.test("targets run concurrently; results keep the given order", async () => {
  const silent = startSilentServer();
  const banner = startBannerServer(encoder.encode("hi\n"));
  const refused = closedPort();
  try {
    // Three slow targets first (each waits out its 500 ms for bytes), then
    // two fast ones. One by one this would take 1.5 s at least.
    const targets = [
      target(silent.port),
      target(silent.port),
      target(silent.port),
      target(banner.port),
      target(refused),
    ];
    const reported: TargetResult[] = [];
    const started = performance.now();
    const results = await checkTargets(
      targets,
      { timeoutMs: 500 },
      (result) => reported.push(result),
    );
    const elapsed = performance.now() - started;
    assert.ok(elapsed < 1500, `took ${elapsed} ms: not concurrent`);
    assert.deepEqual(results, reported);
    assert.deepEqual(
      results.map((result) => [result.port, result.result]),
      [
        [silent.port, "connected"],
        [silent.port, "connected"],
        [silent.port, "connected"],
        [banner.port, "connected"],
        [refused, "refused"],
      ],
    );
    assert.deepEqual(results[3].firstBytes, encoder.encode("hi\n"));
  } finally {
    await silent.close();
    await banner.close();
  }
});

Deno.test("an IPv6 target in brackets", async (t) => {
  let listener: Deno.TcpListener;
  try {
    listener = Deno.listen({ hostname: "::1", port: 0 });
  } catch {
    console.log("SKIPPED: no IPv6 loopback on this machine");
    return;
  }
  try {
    const accepted = listener.accept().then((conn) => conn.close());
    const result = await checkTarget(
      parseTarget(`[::1]:${listener.addr.port}`),
      {
        readTimeoutMs: 100,
      },
    );
    await accepted;
    assert.equal(result.hostname, "::1");
    assert.equal(result.result, "connected");
    await t.step("refused too", async () => {
      const closed = await checkTarget(parseTarget(`[::1]:${closedPort()}`));
      assert.equal(closed.result, "refused");
    });
  } finally {
    listener.close();
  }
});

Deno.test("escapeBytes keeps control characters and binary off the terminal", () => {
  assert.equal(
    escapeBytes(encoder.encode('ok "x"\\\r\n\t\x1b[2J\x00')),
    '"ok \\"x\\"\\\\\\r\\n\\t\\x1b[2J\\x00"',
  );
  assert.equal(
    escapeBytes(new Uint8Array([0x7f, 0x80, 0xff])),
    '"\\x7f\\x80\\xff"',
  );
});

Deno.test("escapeBytes: quoted ASCII, named escapes, \\xNN for the rest, exactly", () => {
  const bytes = new Uint8Array([
    0x41,
    0x0a,
    0x0d,
    0x09,
    0x5c,
    0x22,
    0x00,
    0x1b,
    0x7f,
    0x80,
    0xff,
    0x20,
    0x7e,
    0x27,
  ]);
  assert.equal(
    escapeBytes(bytes),
    String.raw`"A\n\r\t\\\"\x00\x1b\x7f\x80\xff ~'"`,
  );
  assert.equal(escapeBytes(new Uint8Array()), '""');
  assert.equal(
    escapeBytes(new TextEncoder().encode("SSH-2.0-OpenSSH_9.6\r\n")),
    String.raw`"SSH-2.0-OpenSSH_9.6\r\n"`,
  );
  // UTF-8 is bytes here: é is two escapes.
  assert.equal(
    escapeBytes(new TextEncoder().encode("é")),
    String.raw`"\xc3\xa9"`,
  );
  // Every one of the 256 bytes gives printable ASCII only, on one line.
  const all = escapeBytes(new Uint8Array(256).map((_, i) => i));
  assert.match(all, /^"[\x20-\x7e]*"$/);
  assert.equal(all.length, 2 + 95 - 2 + 2 * 2 + 2 * 3 + 4 * (256 - 95 - 3));
});

// --- The command line, run exactly as the header says. ---

Deno.test("CLI: --send is echoed back; aligned line; exit 0", async () => {
  await using echo = startEchoServer({ port: 0 });
  const address = `127.0.0.1:${echo.addr.port}`;
  const output = await runScript("multi_connect.ts", [
    "--send",
    "hello world",
    address,
  ]);
  assert.equal(output.code, 0, output.stderr);
  assert.equal(output.stderr, "");
  assert.match(
    output.stdout,
    new RegExp(
      `^${address}  connected  +\\d+\\.\\d ms  "hello world\\\\n"\\n$`,
    ),
  );
});

Deno.test("CLI: one line per target in order, columns aligned, exit 1", async () => {
  const banner = startBannerServer(encoder.encode("\x1b[31mred\n"));
  try {
    const good = `127.0.0.1:${banner.port}`;
    const refused = `127.0.0.1:${closedPort()}`;
    const output = await runScript("multi_connect.ts", [
      refused,
      `${UNRESOLVABLE}:80`,
      good,
    ]);
    assert.equal(output.code, 1);
    const lines = output.stdout.trimEnd().split("\n");
    assert.equal(lines.length, 3);
    const width = `${UNRESOLVABLE}:80`.length;
    assert.match(lines[0], new RegExp(`^${refused.padEnd(width)}  refused  `));
    assert.ok(lines[1].startsWith(`${UNRESOLVABLE}:80  DNS failure  `));
    assert.match(lines[2], new RegExp(`^${good.padEnd(width)}  connected  `));
    assert.ok(lines[2].endsWith('"\\x1b[31mred\\n"'), lines[2]);
    // The escape byte itself never reaches the terminal.
    assert.ok(!output.stdout.includes("\x1b"));
    // The millisecond column lines up.
    const columns = lines.map((line) => line.indexOf(" ms"));
    assert.equal(new Set(columns).size, 1, output.stdout);
  } finally {
    await banner.close();
  }
});

Deno.test("CLI: --json prints an array for machines", async () => {
  await using echo = startEchoServer({ port: 0 });
  const refused = closedPort();
  const output = await runScript("multi_connect.ts", [
    "--json",
    "--send",
    "ping",
    `127.0.0.1:${echo.addr.port}`,
    `127.0.0.1:${refused}`,
  ]);
  assert.equal(output.code, 1);
  const results = JSON.parse(output.stdout);
  assert.ok(Array.isArray(results));
  assert.equal(results.length, 2);
  assert.deepEqual(Object.keys(results[0]), [
    "target",
    "hostname",
    "port",
    "result",
    "ms",
    "firstBytes",
    "firstBytesBase64",
    "detail",
  ]);
  assert.equal(results[0].target, `127.0.0.1:${echo.addr.port}`);
  assert.equal(results[0].hostname, "127.0.0.1");
  assert.equal(results[0].port, echo.addr.port);
  assert.equal(results[0].result, "connected");
  assert.equal(typeof results[0].ms, "number");
  assert.equal(results[0].firstBytes, "ping\n");
  assert.equal(results[0].firstBytesBase64, btoa("ping\n"));
  assert.equal(results[0].detail, null);
  assert.equal(results[1].result, "refused");
  assert.equal(results[1].firstBytes, null);
});

Deno.test("CLI: --json escapes C1 controls and bidi characters, the parsed text unchanged", async () => {
  // U+009B is a one-character CSI on terminals that honour C1 controls;
  // JSON.stringify would leave it (and U+202E) raw.
  const banner = "\u009b2J\u202eevil\n";
  const server = startBannerServer(encoder.encode(banner));
  try {
    const output = await runScript("multi_connect.ts", [
      "--json",
      `127.0.0.1:${server.port}`,
    ]);
    assert.equal(output.code, 0, output.stderr);
    assert.ok(
      output.stdout.includes('"firstBytes": "\\u009b2J\\u202eevil\\n"'),
    );
    assert.ok(!/[\u0080-\u009f\u202e]/.test(output.stdout), output.stdout);
    assert.equal(JSON.parse(output.stdout)[0].firstBytes, banner);
  } finally {
    await server.close();
  }
});

Deno.test("CLI: a slow first target does not delay the total", async () => {
  const silent = startSilentServer();
  try {
    const args = ["--timeout", "0.5"];
    for (let i = 0; i < 4; i++) args.push(`127.0.0.1:${silent.port}`);
    const started = performance.now();
    const output = await runScript("multi_connect.ts", args);
    const elapsed = performance.now() - started;
    assert.equal(output.code, 0, output.stderr);
    assert.equal(output.stdout.trimEnd().split("\n").length, 4);
    // Sequential would be 4 × 0.5 s plus start-up; concurrent is 0.5 s plus
    // start-up (Deno itself takes a few hundred milliseconds to start).
    assert.ok(elapsed < 2000, `took ${elapsed} ms`);
  } finally {
    await silent.close();
  }
});

Deno.test("CLI: usage errors exit 2 with one line and a hint", async () => {
  for (
    const args of [
      [],
      ["localhost"],
      ["127.0.0.1:99999"],
      ["--timeout", "0", "127.0.0.1:1"],
      ["--timeout", "soon", "127.0.0.1:1"],
      ["--read-timeout=-1", "127.0.0.1:1"],
      ["--bogus", "127.0.0.1:1"],
    ]
  ) {
    const output = await runScript("multi_connect.ts", args);
    assert.equal(output.code, 2, `${args.join(" ")}: ${output.stderr}`);
    assert.equal(output.stdout, "");
    const lines = output.stderr.trimEnd().split("\n");
    assert.equal(lines.length, 2, output.stderr);
    assert.match(lines[0], /^multi_connect\.ts: /);
    assert.match(lines[1], /--help/);
  }
  const help = await runScript("multi_connect.ts", ["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: multi_connect\.ts/);
});

Deno.test("CLI: without --allow-net, one line on stderr and exit 1, not a result per target", async () => {
  const port = closedPort();
  const result = await runScript(
    "multi_connect.ts",
    [`127.0.0.1:${port}`, `127.0.0.1:${port}`],
    { allow: ["--no-prompt"] },
  );
  assert.equal(result.code, 1);
  assert.equal(result.stdout, "");
  assert.equal(
    result.stderr,
    `multi_connect.ts: missing permission: Requires net access to "127.0.0.1:${port}", run again with the --allow-net flag\n`,
  );
});

// --- TLS: --tls, --cacert, --client-cert/--client-key (lib/tls.ts). ---

const openssl = await hasCommand("openssl");
if (!openssl) {
  skipBecause("openssl not installed: multi_connect TLS tests ignored");
}

/** A TLS listener that greets each client with `banner` after the handshake. */
function startTlsBannerServer(
  certs: { cert: string; key: string },
  banner: string,
  hostname = "127.0.0.1",
) {
  const listener = Deno.listenTls({ hostname, port: 0, ...certs });
  const connections: Promise<void>[] = [];
  const serving = (async () => {
    for await (const conn of listener) {
      connections.push((async () => {
        try {
          await conn.handshake();
          await conn.write(encoder.encode(banner));
        } catch {
          // The client refused our certificate: its business.
        } finally {
          conn.close();
        }
      })());
    }
  })();
  return {
    port: listener.addr.port,
    async close() {
      listener.close();
      await serving;
      await Promise.all(connections);
    },
  };
}

Deno.test({
  name:
    "TLS in-process: right CA connected with the banner; wrong CA, wrong name, no TLS, no handshake → TLS failed and why",
  ignore: !openssl,
  async fn() {
    await using certs = await makeTestCerts();
    const tlsServer = startTlsBannerServer(certs, "hello over tls\n");
    const plain = startBannerServer(encoder.encode("SSH-2.0-Test\r\n"));
    const silent = startSilentServer();
    try {
      const check = (port: number, tls: ClientTls, timeoutMs = 2000) =>
        checkTarget(target(port), { tls, timeoutMs });
      const ok = await check(tlsServer.port, { caCerts: [certs.ca] });
      assert.equal(ok.result, "connected");
      assert.equal(
        new TextDecoder().decode(ok.firstBytes!),
        "hello over tls\n",
      );
      const cases: [TargetResult, string][] = [
        [
          await check(tlsServer.port, { caCerts: [certs.otherCa] }),
          "certificate not trusted (unknown issuer)",
        ],
        [
          await check(tlsServer.port, {
            caCerts: [certs.ca],
            serverName: "example.com",
          }),
          "certificate is not valid for example.com",
        ],
        [
          await check(plain.port, { caCerts: [certs.ca] }),
          "the peer does not speak TLS",
        ],
        [
          await check(silent.port, { caCerts: [certs.ca] }, 300),
          "TLS handshake timed out after 0.3 s",
        ],
      ];
      for (const [result, detail] of cases) {
        assert.equal(result.result, "TLS failed", JSON.stringify(result));
        assert.equal(result.detail?.replace(/0\.\d+ s$/, "0.3 s"), detail);
        assert.equal(result.firstBytes, null);
      }
      // Refused is still refused: TLS never started.
      const refused = await check(closedPort(), { caCerts: [certs.ca] });
      assert.equal(refused.result, "refused");
    } finally {
      await tlsServer.close();
      await plain.close();
      await silent.close();
    }
  },
});

Deno.test({
  name: "TLS in-process: 50 concurrent checks of one server, and ::1",
  ignore: !openssl,
  async fn() {
    await using certs = await makeTestCerts();
    const server = startTlsBannerServer(certs, "hi\n");
    try {
      const results = await checkTargets(
        Array.from({ length: 50 }, () => target(server.port)),
        { tls: { caCerts: [certs.ca] }, timeoutMs: 10_000 },
      );
      assert.deepEqual(
        results.map((result) => [result.result, result.detail]),
        Array.from({ length: 50 }, () => ["connected", null]),
      );
    } finally {
      await server.close();
    }
    let v6;
    try {
      v6 = startTlsBannerServer(certs, "hi over v6\n", "::1");
    } catch {
      skipBecause("no IPv6 loopback on this machine");
      return;
    }
    try {
      const result = await checkTarget(parseTarget(`[::1]:${v6.port}`), {
        tls: { caCerts: [certs.ca] },
      });
      assert.equal(result.result, "connected", JSON.stringify(result));
      assert.deepEqual(result.firstBytes, encoder.encode("hi over v6\n"));
    } finally {
      await v6.close();
    }
  },
});

// A Python TLS server that demands a client certificate signed by argv[3]
// and greets each client with the name in it.
const PYTHON_TLS_SERVER = `
import socket, ssl, sys
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[1], sys.argv[2])
context.verify_mode = ssl.CERT_REQUIRED
context.load_verify_locations(sys.argv[3])
listener = socket.create_server(("127.0.0.1", 0))
print("READY", listener.getsockname()[1], flush=True)
while True:
    raw, _ = listener.accept()
    raw.settimeout(5)
    try:
        with context.wrap_socket(raw, server_side=True) as conn:
            name = dict(p[0] for p in conn.getpeercert()["subject"])["commonName"]
            conn.sendall(("python tls, you are %s\\n" % name).encode())
            conn.recv(1024)
    except (ssl.SSLError, OSError) as error:
        print("failed:", error, file=sys.stderr, flush=True)
`;

const python = await hasCommand("python3");
Deno.test({
  name:
    "TLS: a Python ssl server demanding a client certificate; --client-cert's path reports TLS failures as such too",
  ignore: !openssl || !python,
  async fn() {
    await using certs = await makeTestCerts();
    const cert = `${certs.dir}/client.pem`, key = `${certs.dir}/client.key`;
    const made = await runTool("openssl", [
      ...[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
      ],
      ...["-nodes", "-keyout", key, "-out", cert, "-subj", "/CN=test-client"],
      ...["-days", "1"],
    ]);
    assert.equal(made.code, 0, made.stderr);
    await using server = await startPeer("python3", [
      ...["-c", PYTHON_TLS_SERVER, certs.certFile, certs.keyFile, cert],
    ], /READY (\d+)\n/);
    const port = Number(server.match[1]);
    const client = {
      cert: await Deno.readTextFile(cert),
      key: await Deno.readTextFile(key),
    };
    const ok = await checkTarget(target(port), {
      tls: { caCerts: [certs.ca], ...client },
      timeoutMs: 5000,
    });
    assert.equal(ok.result, "connected", JSON.stringify(ok));
    assert.deepEqual(
      ok.firstBytes,
      encoder.encode("python tls, you are test-client\n"),
    );
    // With a client certificate dial() takes another road (Deno.connectTls);
    // a certificate problem there is "TLS failed" as well.
    const wrongCa = await checkTarget(target(port), {
      tls: { caCerts: [certs.otherCa], ...client },
    });
    assert.equal(wrongCa.result, "TLS failed");
    assert.equal(wrongCa.detail, "certificate not trusted (unknown issuer)");
    // Without one: TLS 1.3 ends our side of the handshake first; the
    // server's verdict arrives where the first bytes were awaited.
    const without = await checkTarget(target(port), {
      tls: { caCerts: [certs.ca] },
      timeoutMs: 5000,
    });
    assert.equal(without.result, "connected");
    assert.equal(
      without.detail,
      "read failed: the server requires a client certificate",
    );
  },
});
if (!python) skipBecause("python3 not installed: Python TLS peer test ignored");

Deno.test({
  name:
    "TLS CLI: --cacert against echo_server.ts --cert/--key with --send; TLS failed in its column and in --json",
  ignore: !openssl,
  async fn() {
    await using certs = await makeTestCerts();
    const allow = ["--allow-net", `--allow-read=${certs.dir}`];
    await using tlsEcho = await startScript("echo_server.ts", [
      ...["--port", "0", "--cert", certs.certFile, "--key", certs.keyFile],
    ], { allow });
    await using plainEcho = startEchoServer({ port: 0 });
    const good = `127.0.0.1:${tlsEcho.port}`;
    const plain = `127.0.0.1:${plainEcho.addr.port}`;
    const refused = `127.0.0.1:${closedPort()}`;
    const args = [
      "--cacert",
      certs.caFile,
      "--send",
      "hi",
      good,
      plain,
      refused,
    ];
    const output = await runScript("multi_connect.ts", args, { allow });
    assert.equal(output.code, 1, output.stderr);
    assert.equal(output.stderr, "");
    const lines = output.stdout.trimEnd().split("\n");
    const width = Math.max(good.length, plain.length, refused.length);
    assert.match(
      lines[0],
      new RegExp(
        `^${good.padEnd(width)}  connected  +\\d+\\.\\d ms  "hi\\\\n"$`,
      ),
    );
    // The plain echo server sends our ClientHello back: rustls says so.
    assert.match(
      lines[1],
      new RegExp(
        `^${
          plain.padEnd(width)
        }  TLS failed   +\\d+\\.\\d ms  TLS failed: received unexpected handshake message: got ClientHello `,
      ),
    );
    assert.match(lines[2], new RegExp(`^${refused.padEnd(width)}  refused  `));
    assert.equal(new Set(lines.map((line) => line.indexOf(" ms"))).size, 1);

    const json = await runScript("multi_connect.ts", ["--json", ...args], {
      allow,
    });
    const results = JSON.parse(json.stdout);
    assert.deepEqual(Object.keys(results[1]), [
      "target",
      "hostname",
      "port",
      "result",
      "ms",
      "firstBytes",
      "firstBytesBase64",
      "detail",
    ]);
    assert.deepEqual(
      results.map((result: { result: string }) => result.result),
      ["connected", "TLS failed", "refused"],
    );
    assert.equal(results[0].firstBytes, "hi\n");
    assert.match(
      results[1].detail,
      /got ClientHello when expecting ServerHello/,
    );
  },
});
