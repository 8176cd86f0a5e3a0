import assert from "node:assert/strict";
import {
  ALPN,
  skipWebTransportHeader,
  startQuicServer,
} from "../scripts/quic_server.ts";
import { connect, echoOnce, ping } from "../scripts/quic_client.ts";
import { DialError } from "../lib/dial.ts";
import {
  CHROMIUM,
  hasCommand,
  launchChromium,
  makeTestCerts,
  randomBytes,
  runScript,
  runTool,
  scriptPath,
  skipBecause,
  startScript,
  type TestCerts,
  within,
} from "./helpers.ts";

const encoder = new TextEncoder();
const HAVE_OPENSSL = await hasCommand("openssl");

/** A test that needs a CA and a leaf (and so openssl). */
function certTest(
  name: string,
  fn: (certs: TestCerts) => Promise<void>,
  options: { sanitizeResources?: boolean } = {},
) {
  Deno.test({
    name,
    ...options,
    async fn() {
      if (!HAVE_OPENSSL) return skipBecause("openssl is not installed");
      await using certs = await makeTestCerts();
      await fn(certs);
    },
  });
}

/** Subprocess permissions, as narrow as the scripts' headers say. */
function allow(certs: TestCerts) {
  return ["--unstable-net", "--allow-net", `--allow-read=${certs.dir}`];
}

/** Our client's connect, disposable: closes the connection and endpoint. */
async function dial(
  port: number,
  caCert: string,
  hostname = "127.0.0.1",
) {
  const conn = await connect({
    hostname,
    port,
    caCerts: [caCert],
    timeoutSeconds: 10,
  });
  return Object.assign(conn, {
    [Symbol.dispose]() {
      conn.close();
      conn.endpoint.close();
    },
  });
}

function serve(certs: TestCerts, options = {}) {
  return startQuicServer({
    cert: certs.cert,
    key: certs.key,
    port: 0,
    ...options,
  });
}

async function readToEnd(readable: ReadableStream<Uint8Array>) {
  return new Uint8Array(await new Response(readable).arrayBuffer());
}

/** Reads exactly `length` bytes without waiting for the end of the stream. */
async function readBytes(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  length: number,
) {
  const chunks: number[] = [];
  while (chunks.length < length) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`stream ended after ${chunks.length} bytes`);
    chunks.push(...value);
  }
  return new Uint8Array(chunks);
}

certTest(
  "echoes exact bytes and finishes the stream after the client's FIN",
  async (certs) => {
    await using server = serve(certs);
    using conn = await dial(server.addr.port, certs.ca);
    const message = encoder.encode("hello\r\nworld\x00\xff\n");
    assert.deepEqual(await echoOnce(conn, message), message);
    // The same by hand: write, finish our side, read until the server's FIN.
    const stream = await conn.createBidirectionalStream();
    const writer = stream.writable.getWriter();
    await writer.write(message);
    await writer.close();
    assert.deepEqual(await readToEnd(stream.readable), message);
  },
);

certTest(
  "a 1 MiB binary message and a 16 MiB stream come back byte for byte",
  async (certs) => {
    await using server = serve(certs);
    using conn = await dial(server.addr.port, certs.ca);
    const mebibyte = randomBytes(1024 * 1024);
    assert.deepEqual(await echoOnce(conn, mebibyte), mebibyte);
    const big = randomBytes(16 * 1024 * 1024);
    assert.deepEqual(await echoOnce(conn, big), big);
  },
);

certTest(
  "64 streams at once on one connection each get their own bytes",
  async (certs) => {
    await using server = serve(certs);
    using conn = await dial(server.addr.port, certs.ca);
    const payloads = Array.from(
      { length: 64 },
      (_, i) => randomBytes(1000 * i + 1),
    );
    const replies = await Promise.all(payloads.map((p) => echoOnce(conn, p)));
    replies.forEach((reply, i) => assert.deepEqual(reply, payloads[i]));
  },
);

certTest(
  "half-close is per stream: one finished, the other still open",
  async (certs) => {
    await using server = serve(certs);
    using conn = await dial(server.addr.port, certs.ca);
    const open = await conn.createBidirectionalStream();
    const openWriter = open.writable.getWriter();
    const openReader = open.readable.getReader();
    await openWriter.write(encoder.encode("first "));
    assert.deepEqual(await readBytes(openReader, 6), encoder.encode("first "));
    // Another stream starts, finishes its side and gets its whole echo while
    // the first one is still open in both directions.
    assert.deepEqual(
      await echoOnce(conn, encoder.encode("other")),
      encoder.encode("other"),
    );
    await openWriter.write(encoder.encode("second"));
    assert.deepEqual(await readBytes(openReader, 6), encoder.encode("second"));
    await openWriter.close();
    assert.deepEqual(await openReader.read(), { value: undefined, done: true });
  },
);

certTest(
  "a stream the client never reads holds up no other stream",
  async (certs) => {
    await using server = serve(certs);
    using conn = await dial(server.addr.port, certs.ca);
    const stuck = await conn.createBidirectionalStream();
    const writer = stuck.writable.getWriter();
    // 8 MiB unread: flow control stops the server echoing, then us sending.
    const writing = writer.write(randomBytes(8 * 1024 * 1024)).catch(() => {});
    await new Promise((resolve) => setTimeout(resolve, 200));
    const message = randomBytes(100_000);
    assert.deepEqual(await echoOnce(conn, message), message);
    using other = await dial(server.addr.port, certs.ca);
    assert.deepEqual(await echoOnce(other, message), message);
    conn.close();
    await writing;
  },
);

certTest(
  "a client that stops reading a stream is told so at once, not at the idle timeout",
  async (certs) => {
    await using server = serve(certs, { idleTimeoutSeconds: 30 });
    using conn = await dial(server.addr.port, certs.ca);
    const stream = await conn.createBidirectionalStream();
    await stream.readable.cancel(); // STOP_SENDING: "do not send me more"
    const writer = stream.writable.getWriter();
    const failed = (async () => {
      for (let i = 0; i < 1000; i++) await writer.write(new Uint8Array(65536));
    })();
    await within(10_000, assert.rejects(failed), "the failed write");
    const message = encoder.encode("still serving\n");
    assert.deepEqual(await echoOnce(conn, message), message);
  },
);

certTest("50 clients at once, each pinging 3 times", async (certs) => {
  await using server = serve(certs);
  await Promise.all(Array.from({ length: 50 }, async (_, i) => {
    using conn = await dial(server.addr.port, certs.ca);
    const message = encoder.encode(`client ${i}\n`);
    const result = await ping(conn, message, 3);
    assert.equal(result.times.length, 3);
    assert.ok(result.min <= result.avg && result.avg <= result.max);
  }));
});

certTest(
  "maxConnections refuses the one too many at once, maxStreams bounds streams",
  async (certs) => {
    await using server = serve(certs, { maxConnections: 1, maxStreams: 2 });
    {
      using conn = await dial(server.addr.port, certs.ca);
      await assert.rejects(
        dial(server.addr.port, certs.ca),
        /: connection refused by the server$/,
      );
      for (let i = 0; i < 2; i++) {
        const stream = await conn.createBidirectionalStream();
        await stream.writable.getWriter().write(new Uint8Array([i]));
      }
      await assert.rejects(conn.createBidirectionalStream(), /maximum number/);
    }
    // The slot is free again once the client has left.
    await within(
      10_000,
      (async () => {
        while (true) {
          try {
            using again = await dial(server.addr.port, certs.ca);
            return await echoOnce(again, encoder.encode("x"));
          } catch {
            await new Promise((resolve) => setTimeout(resolve, 100));
          }
        }
      })(),
      "a connection after the first left",
    );
  },
);

certTest(
  "wrong CA, name mismatch, expired certificate and wrong ALPN: one clear error each",
  async (certs) => {
    await using server = serve(certs);
    const port = server.addr.port;
    await assert.rejects(
      dial(port, certs.otherCa),
      /: certificate not trusted \(unknown issuer\)$/,
    );
    await using ipless = await makeTestCerts({ names: ["DNS:localhost"] });
    await using expired = await makeTestCerts({ days: -1 });
    for (
      const [leaf, expected] of [
        [ipless, /certificate is not valid for 127\.0\.0\.1$/],
        [expired, /certificate expired/],
      ] as const
    ) {
      await using bad = serve(leaf);
      await assert.rejects(dial(bad.addr.port, leaf.ca), expected);
    }
    await assert.rejects(
      Deno.connectQuic<false>({
        hostname: "127.0.0.1",
        port,
        alpnProtocols: ["not-echo"],
        caCerts: [certs.ca],
      }),
      /known protocol/,
    );
    // None of that hurt the server.
    using conn = await dial(port, certs.ca);
    assert.deepEqual(
      await echoOnce(conn, encoder.encode("ok")),
      encoder.encode("ok"),
    );
    assert.equal(ALPN, "echo");
  },
);

certTest(
  "nothing listening: the connect gives up after --timeout",
  async (certs) => {
    const socket = Deno.listenDatagram({
      transport: "udp",
      hostname: "127.0.0.1",
      port: 0,
    });
    try {
      const started = performance.now();
      await assert.rejects(
        connect({
          hostname: "127.0.0.1",
          port: (socket.addr as Deno.NetAddr).port,
          caCerts: [certs.ca],
          timeoutSeconds: 0.5,
        }),
        (error: Error) =>
          error instanceof DialError && error.kind === "timeout" &&
          /^cannot connect to 127\.0\.0\.1:\d+: timed out after 0\.5 s \(nothing listening\?\)$/
            .test(error.message),
      );
      assert.ok(performance.now() - started < 5000);
    } finally {
      socket.close();
    }
  },
);

certTest(
  "over IPv6: the server on ::1, the client dialling ::1",
  async (certs) => {
    await using server = serve(certs, { hostname: "::1" });
    using conn = await dial(server.addr.port, certs.ca, "::1");
    assert.deepEqual(
      await echoOnce(conn, encoder.encode("v6\n")),
      encoder.encode("v6\n"),
    );
  },
);

certTest(
  "quic_server.ts and quic_client.ts as subprocesses: WORDs, stdin, ping, ::1",
  async (certs) => {
    const args = [
      "--cert",
      certs.certFile,
      "--key",
      certs.keyFile,
      "--port",
      "0",
    ];
    await using server = await startScript("quic_server.ts", args, {
      allow: allow(certs),
    });
    assert.match(
      server.listeningLine,
      /^Listening on quic:\/\/127\.0\.0\.1:\d+$/,
    );
    const client = [
      "--port",
      String(server.port),
      "--cacert",
      certs.caFile,
    ];
    const words = await runScript("quic_client.ts", [
      ...client,
      "hello",
      "world",
    ], { allow: allow(certs) });
    assert.deepEqual([words.code, words.stdout, words.stderr], [
      0,
      "hello world\n",
      "",
    ]);

    // Binary through stdin and stdout: runTool keeps stdout as bytes.
    const input = randomBytes(1024 * 1024);
    const piped = await runTool(
      Deno.execPath(),
      ["run", ...allow(certs), scriptPath("quic_client.ts"), ...client],
      input,
    );
    assert.equal(piped.code, 0, piped.stderr);
    assert.deepEqual(piped.stdout, input);

    const pinged = await runScript("quic_client.ts", [
      ...client,
      "--count",
      "3",
    ], { allow: allow(certs) });
    assert.equal(pinged.code, 0, pinged.stderr);
    const lines = pinged.stdout.trimEnd().split("\n");
    assert.equal(lines.length, 4);
    lines.slice(0, 3).forEach((line, i) =>
      assert.match(
        line,
        new RegExp(
          `^5 bytes from 127\\.0\\.0\\.1:${server.port}: seq=${
            i + 1
          } time=\\d+\\.\\d{3} ms$`,
        ),
      )
    );
    assert.match(
      lines[3],
      /^3 round trips, min\/avg\/max = [\d.]+\/[\d.]+\/[\d.]+ ms$/,
    );

    // On ::1, and with --webtransport: echo clients are served the same.
    await using v6 = await startScript("quic_server.ts", [
      ...args,
      "--hostname",
      "::1",
      "--webtransport",
    ], { allow: allow(certs) });
    assert.match(v6.listeningLine, /^Listening on quic:\/\/\[::1\]:\d+$/);
    const overV6 = await runScript("quic_client.ts", [
      "--hostname",
      "::1",
      "--port",
      String(v6.port),
      "--cacert",
      certs.caFile,
      "six",
    ], { allow: allow(certs) });
    assert.deepEqual([overV6.code, overV6.stdout], [0, "six\n"]);
  },
);

certTest(
  "SIGTERM with a client mid-stream: exit 0 within 2 s, and the client is told why",
  async (certs) => {
    const args = [
      "--cert",
      certs.certFile,
      "--key",
      certs.keyFile,
      "--port",
      "0",
    ];
    const server = await startScript("quic_server.ts", args, {
      allow: allow(certs),
    });
    using conn = await dial(server.port, certs.ca);
    // One full exchange first: the server has then accepted the connection
    // (a close before that is a handshake failure, with no reason).
    await echoOnce(conn, encoder.encode("first\n"));
    const stream = await conn.createBidirectionalStream();
    const reader = stream.readable.getReader();
    await stream.writable.getWriter().write(encoder.encode("unfinished"));
    assert.deepEqual(await readBytes(reader, 10), encoder.encode("unfinished"));
    const started = performance.now();
    const output = await server.stop("SIGTERM");
    assert.equal(output.code, 0, output.stderr);
    assert.ok(performance.now() - started < 2500, "exited within 2 s");
    const info = await within(5000, conn.closed, "the client's close");
    assert.equal(info.reason, "server shutting down");
  },
);

certTest(
  "quic_server.ts: --max-connections, --max-per-address, --max-streams, --idle-timeout from the command line",
  async (certs) => {
    const base = ["--cert", certs.certFile, "--key", certs.keyFile];
    const start = (...extra: string[]) =>
      startScript("quic_server.ts", [...base, "--port", "0", ...extra], {
        allow: allow(certs),
      });
    const message = encoder.encode("x\n");
    {
      await using server = await start("--max-connections", "1");
      using first = await dial(server.port, certs.ca);
      await echoOnce(first, message);
      await assert.rejects(
        dial(server.port, certs.ca),
        /: connection refused by the server$/,
      );
    }
    const server = await start("--max-per-address", "1", "--max-streams", "2");
    try {
      using first = await dial(server.port, certs.ca);
      await echoOnce(first, message);
      using second = await dial(server.port, certs.ca); // accepted, then closed
      await assert.rejects(ping(second, message, 1), {
        message: "the server closed the connection: too many from your address",
      });
      for (let i = 0; i < 2; i++) {
        const stream = await first.createBidirectionalStream();
        await stream.writable.getWriter().write(new Uint8Array([i]));
      }
      await assert.rejects(first.createBidirectionalStream(), /maximum number/);
    } finally {
      const output = await server.stop();
      assert.equal(output.code, 0);
      assert.match(
        output.stderr,
        /refused 127\.0\.0\.1: 1 connections from it \(--max-per-address\)\n/,
      );
    }
    // A client that sends nothing, not even keep-alives, is closed after
    // --idle-timeout.
    await using idle = await start("--idle-timeout", "1");
    const conn = await Deno.connectQuic<false>({
      hostname: "127.0.0.1",
      port: idle.port,
      alpnProtocols: [ALPN],
      caCerts: [certs.ca],
    });
    try {
      const started = performance.now();
      await within(8000, conn.closed.catch(() => {}), "the idle close");
      const elapsed = performance.now() - started;
      assert.ok(elapsed > 800 && elapsed < 8000, `closed after ${elapsed} ms`);
    } finally {
      conn.close();
      conn.endpoint.close();
    }
    // Bad values exit 2; without Deno's --unstable-net, one line and exit 1.
    for (
      const [option, value] of [
        ["--max-connections", "0"],
        ["--max-per-address", "x"],
        ["--max-streams", "0"],
        ["--idle-timeout", "0"],
      ]
    ) {
      const output = await runScript("quic_server.ts", [
        ...base,
        option,
        value,
      ], { allow: allow(certs) });
      assert.equal(output.code, 2, `${option} ${value}`);
      assert.match(
        output.stderr,
        new RegExp(`^quic_server\\.ts: ${option} must`),
      );
    }
    const flagless = await runScript(
      "quic_server.ts",
      [...base, "--port", "0"],
      {
        allow: ["--no-config", "--allow-net", `--allow-read=${certs.dir}`],
      },
    );
    assert.deepEqual([flagless.code, flagless.stderr], [
      1,
      "quic_server.ts: this needs Deno's --unstable-net flag: deno run --unstable-net --allow-net …\n",
    ]);
  },
);

Deno.test("quic_server.ts: no --cert/--key exits 2 naming 'deno task cert'; bad options exit 2; --help 0", async () => {
  const allowNet = ["--unstable-net", "--allow-net", "--allow-read"];
  for (const args of [[], ["--cert", "a.pem"], ["--key", "a.key"]]) {
    const output = await runScript("quic_server.ts", ["--port", "0", ...args], {
      allow: allowNet,
    });
    assert.equal(output.code, 2, output.stderr);
    assert.match(
      output.stderr,
      /--cert and --key are required.*deno task cert/,
    );
    assert.equal(output.stdout, "");
  }
  for (
    const args of [["--port", "70000"], ["--port", "-1"], ["--bogus"]]
  ) {
    const output = await runScript("quic_server.ts", args, { allow: allowNet });
    assert.equal(output.code, 2, output.stderr);
    assert.equal(output.stderr.trimEnd().split("\n").length, 2, output.stderr);
  }
  const help = await runScript("quic_server.ts", ["--help"], {
    allow: allowNet,
  });
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: quic_server\.ts --cert FILE --key FILE/);
  assert.match(help.stdout, /deno#26825/); // no client certificates, and why
  assert.match(
    help.stdout,
    /WebTransport\s+session: it is held until the idle/,
  );
});

certTest(
  "quic_server.ts: a missing, non-PEM or mismatched --cert/--key is one line, exit 1",
  async (certs) => {
    await using other = await makeTestCerts();
    const cases = [
      [`${certs.dir}/missing.pem`, certs.keyFile],
      [certs.keyFile, certs.keyFile],
      [certs.certFile, other.keyFile],
    ];
    for (const [cert, key] of cases) {
      const output = await runScript(
        "quic_server.ts",
        ["--cert", cert, "--key", key, "--port", "0"],
        { allow: ["--unstable-net", "--allow-net", "--allow-read"] },
      );
      assert.equal(output.code, 1, output.stderr);
      assert.match(output.stderr, /^quic_server\.ts: [^\n]+\n$/);
    }
  },
);

/**
 * A QUIC server that accepts streams and never answers; with `goodbye` it
 * closes the connection with that reason as soon as a stream arrives.
 */
function startSilentServer(certs: TestCerts, goodbye?: string) {
  const endpoint = new Deno.QuicEndpoint({ hostname: "127.0.0.1", port: 0 });
  const listener = endpoint.listen({
    cert: certs.cert,
    key: certs.key,
    alpnProtocols: [ALPN],
  });
  const serving = (async () => {
    for await (const incoming of listener) {
      const conn = await incoming.accept<false>().catch(() => undefined);
      if (!conn) continue;
      const streams = conn.incomingBidirectionalStreams.getReader();
      streams.read().then(() => {
        if (goodbye) conn.close({ closeCode: 1, reason: goodbye });
      }, () => {});
    }
  })();
  return {
    port: endpoint.addr.port,
    async [Symbol.asyncDispose]() {
      endpoint.close();
      await serving;
    },
  };
}

certTest(
  "echoOnce and ping fail with the server's reason when it leaves mid-message",
  async (certs) => {
    await using leaving = startSilentServer(certs, "bye now");
    using conn = await dial(leaving.port, certs.ca);
    // 16 MiB: the close arrives while we are still writing, and the pending
    // read must not become an unhandled rejection.
    await assert.rejects(echoOnce(conn, randomBytes(16 * 1024 * 1024)));
    await assert.rejects(
      ping(conn, encoder.encode("x"), 3),
      { message: "the server closed the connection: bye now" },
    );
  },
);

certTest(
  "quic_client.ts: every failure is one line and exit 1, every wait bounded",
  async (certs) => {
    await using server = serve(certs);
    await using ipless = await makeTestCerts({ names: ["DNS:localhost"] });
    await using wrongName = serve(ipless);
    await using silent = startSilentServer(certs);
    await using leaving = startSilentServer(certs, "bye now");
    const nobody = Deno.listenDatagram({
      transport: "udp",
      hostname: "127.0.0.1",
      port: 0,
    });
    const nobodyPort = (nobody.addr as Deno.NetAddr).port;
    const read = ["--unstable-net", "--allow-net", "--allow-read"];
    const cases: [string[], RegExp][] = [
      [
        ["--port", `${server.addr.port}`, "--cacert", certs.otherCaFile, "hi"],
        /: certificate not trusted \(unknown issuer\)$/,
      ],
      [["--port", `${server.addr.port}`, "hi"], /: certificate not trusted/],
      [[
        "--port",
        `${wrongName.addr.port}`,
        "--cacert",
        ipless.caFile,
        "hi",
      ], /: certificate is not valid for 127\.0\.0\.1$/],
      [
        ["--port", `${nobodyPort}`, "--timeout", "1", "hi"],
        /^quic_client\.ts: cannot connect to 127\.0\.0\.1:\d+: timed out after 1 s \(nothing listening\?\)$/,
      ],
      [[
        "--port",
        `${silent.port}`,
        "--cacert",
        certs.caFile,
        "--timeout",
        "1",
        "hi",
      ], /^quic_client\.ts: no reply: timed out after 1 s$/],
      [[
        "--port",
        `${silent.port}`,
        "--cacert",
        certs.caFile,
        "--timeout",
        "1",
        "--count",
        "2",
      ], /^quic_client\.ts: no reply: timed out after 1 s$/],
      [
        ["--port", `${leaving.port}`, "--cacert", certs.caFile, "hi"],
        /^quic_client\.ts: the server closed the connection: bye now$/,
      ],
      [[
        "--port",
        `${server.addr.port}`,
        "--cacert",
        `${certs.dir}/missing.pem`,
        "hi",
      ], /^quic_client\.ts: .*missing\.pem/],
    ];
    try {
      for (const [args, expected] of cases) {
        const started = performance.now();
        const output = await runScript("quic_client.ts", args, { allow: read });
        assert.equal(output.code, 1, `${args.join(" ")}: ${output.stderr}`);
        assert.equal(output.stdout, "");
        assert.match(output.stderr.trimEnd(), expected);
        assert.equal(
          output.stderr.trimEnd().split("\n").length,
          1,
          output.stderr,
        );
        assert.ok(performance.now() - started < 10_000, args.join(" "));
      }
    } finally {
      nobody.close();
    }
  },
);

/** The SHA-256 of a PEM certificate's DER bytes, as WebTransport wants it. */
async function certificateHash(pem: string): Promise<Uint8Array<ArrayBuffer>> {
  const base64 = pem.replace(/-----[^-]+-----|\s/g, "");
  return new Uint8Array(
    await crypto.subtle.digest("SHA-256", fromBase64(base64)),
  );
}

function fromBase64(text: string): Uint8Array<ArrayBuffer> {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

function toBase64(bytes: Uint8Array): string {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}

certTest(
  "--webtransport: Deno's WebTransport client and a plain QUIC client share the port",
  async (certs) => {
    await using server = serve(certs, { webtransport: true });
    const port = server.addr.port;
    const transport = new WebTransport(`https://127.0.0.1:${port}/any/path`, {
      serverCertificateHashes: [{
        algorithm: "sha-256",
        value: await certificateHash(certs.cert),
      }],
    });
    try {
      await within(10_000, transport.ready, "the WebTransport session");
      const stream = await transport.createBidirectionalStream();
      const writer = stream.writable.getWriter();
      const reader = stream.readable.getReader();
      // Deno's client sends no FIN when its writer closes, so read by length.
      const bytes = randomBytes(100_000);
      await writer.write(bytes);
      assert.deepEqual(await readBytes(reader, bytes.length), bytes);
      reader.releaseLock();
      writer.releaseLock();
    } finally {
      transport.close();
    }
    using conn = await dial(port, certs.ca);
    assert.deepEqual(
      await echoOnce(conn, encoder.encode("echo\n")),
      encoder.encode("echo\n"),
    );
  },
);

certTest(
  "--webtransport: an HTTP/3 client that never opens its session is closed at the deadline",
  async (certs) => {
    await using server = serve(certs, {
      webtransport: true,
      idleTimeoutSeconds: 1,
    });
    const conn = await Deno.connectQuic<false>({
      hostname: "127.0.0.1",
      port: server.addr.port,
      alpnProtocols: ["h3"],
      caCerts: [certs.ca],
      keepAliveInterval: 200, // never idle: only the server's deadline ends it
    });
    try {
      await within(8000, conn.closed.catch(() => {}), "the server closing it");
    } finally {
      conn.close();
      conn.endpoint.close();
    }
  },
  // Deno 2.9's WebTransport upgrade opens an HTTP/3 control stream of its
  // own that nothing can close once the session never comes: the
  // connection is gone, the "quicSendStream" entry stays behind.
  { sanitizeResources: false },
);

/**
 * Runs `args` (a Deno client that prints a line once connected), kills it
 * with SIGKILL, then waits for the server's idle timeout to end that
 * connection: it logs "<peer>: timed out" and must go on serving.
 */
async function killClientMidSession(args: string[], stdin?: string) {
  const logged: string[] = [];
  const log = console.error;
  console.error = (...parts) => logged.push(parts.join(" "));
  try {
    const child = new Deno.Command(Deno.execPath(), {
      args,
      stdin: stdin === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const writer = stdin === undefined ? undefined : child.stdin.getWriter();
    await writer?.write(encoder.encode(stdin)); // and kept open
    const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const first = await within(20_000, lines.read(), "the client's first line");
    assert.ok(first.value, "the client printed nothing");
    child.kill("SIGKILL");
    await child.status;
    await lines.cancel();
    await writer?.close().catch(() => {});
    await within(
      10_000,
      (async () => {
        while (!logged.some((line) => line.endsWith(": timed out"))) {
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      })(),
      "the server's idle timeout",
    );
  } finally {
    console.error = log;
  }
}

certTest(
  "a client killed mid-session costs its connection only (echo and WebTransport)",
  async (certs) => {
    await using server = serve(certs, {
      webtransport: true,
      idleTimeoutSeconds: 1,
    });
    const port = server.addr.port;
    // Our client streaming stdin, which stays open.
    await killClientMidSession([
      "run",
      "--unstable-net",
      "--allow-net",
      `--allow-read=${certs.dir}`,
      scriptPath("quic_client.ts"),
      "--port",
      `${port}`,
      "--cacert",
      certs.caFile,
    ], "connected\n");
    // A WebTransport session in Deno (a vanished one rejects its `closed`).
    const hash = toBase64(await certificateHash(certs.cert));
    await killClientMidSession([
      "eval",
      "--unstable-net",
      `
    const hash = Uint8Array.from(atob("${hash}"), (c) => c.charCodeAt(0));
    const transport = new WebTransport("https://127.0.0.1:${port}/", {
      serverCertificateHashes: [{ algorithm: "sha-256", value: hash }],
    });
    await transport.ready;
    const stream = await transport.createBidirectionalStream();
    await stream.writable.getWriter().write(new Uint8Array([1, 2, 3]));
    await stream.readable.getReader().read();
    console.log("connected");
    setInterval(() => {}, 1000);`,
    ]);
    using conn = await dial(port, certs.ca);
    assert.deepEqual(
      await echoOnce(conn, encoder.encode("alive\n")),
      encoder.encode("alive\n"),
    );
  },
);

/** The page's side: open a session, echo each payload on its own stream. */
async function echoInPage(url: string, hash: string, payloads: string[]) {
  const decode = (text: string) =>
    Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  const transport = new WebTransport(url, {
    serverCertificateHashes: [{ algorithm: "sha-256", value: decode(hash) }],
  });
  await transport.ready;
  const echoed = await Promise.all(payloads.map(async (payload) => {
    const stream = await transport.createBidirectionalStream();
    const writer = stream.writable.getWriter();
    const reading = new Response(stream.readable).arrayBuffer(); // to FIN
    await writer.write(decode(payload));
    await writer.close();
    const bytes = new Uint8Array(await reading);
    let text = "";
    for (let i = 0; i < bytes.length; i += 0x8000) {
      text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    }
    return btoa(text);
  }));
  transport.close();
  return echoed;
}

certTest(
  "--webtransport: headless Chromium echoes exact bytes on concurrent streams",
  async (certs) => {
    const installed = await Deno.stat(CHROMIUM).then(() => true, () => false);
    if (!installed) return skipBecause(`${CHROMIUM} is not installed`);
    await using server = serve(certs, { webtransport: true });
    // WebTransport needs a secure context; http://127.0.0.1 is one.
    await using page = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      () =>
        new Response("<!doctype html><title>quic</title>", {
          headers: { "content-type": "text/html" },
        }),
    );
    await using chromium = await launchChromium(); // loopback only
    const tab = await chromium.browser.newPage();
    await tab.goto(`http://127.0.0.1:${page.addr.port}/`);
    const all = Uint8Array.from({ length: 256 }, (_, i) => i);
    const payloads = [
      encoder.encode("hello from chromium\n"),
      all,
      randomBytes(300_000),
    ];
    const echoed = await within(
      30_000,
      tab.evaluate(
        echoInPage,
        `https://127.0.0.1:${server.addr.port}/echo`,
        toBase64(await certificateHash(certs.cert)),
        payloads.map(toBase64),
      ),
      "the page's echo",
    );
    assert.equal(echoed.length, payloads.length);
    echoed.forEach((text, i) =>
      assert.deepEqual(fromBase64(text), payloads[i])
    );
  },
);

Deno.test("skipWebTransportHeader: session IDs of 1, 2, 4 and 8 bytes, the payload after them intact", async () => {
  const ids: number[][] = [
    [0x05],
    [0x40, 0x05],
    [0x80, 0, 0, 0x05],
    [0xc0, 0, 0, 0, 0, 0, 0, 0x05], // 8 bytes: an ID of 2^30 or more
  ];
  for (const id of ids) {
    // Each byte in its own chunk: `min` must gather them, however they come.
    const bytes = [0x40, 0x41, ...id, 0x68, 0x69];
    const stream = new ReadableStream({
      type: "bytes",
      pull(controller) {
        const next = bytes.shift();
        if (next === undefined) controller.close();
        else controller.enqueue(new Uint8Array([next]));
      },
    });
    const reader = stream.getReader({ mode: "byob" });
    const buffer = await skipWebTransportHeader(reader, new ArrayBuffer(64));
    const rest = await reader.read(new Uint8Array(buffer, 0, 2), { min: 2 });
    assert.deepEqual([...rest.value!], [0x68, 0x69], `ID ${id}`);
    reader.releaseLock();
  }
  const wrong = new ReadableStream({
    type: "bytes",
    start(controller) {
      controller.enqueue(new Uint8Array([0x40, 0x42, 0x00]));
      controller.close();
    },
  });
  await assert.rejects(
    skipWebTransportHeader(
      wrong.getReader({ mode: "byob" }),
      new ArrayBuffer(64),
    ),
    /not a WebTransport stream/,
  );
});
