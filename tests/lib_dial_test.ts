// lib/dial.ts over loopback: every way a connect fails, worded as
// "cannot connect to HOST:PORT: reason" with the right kind; TLS with the
// right CA, the wrong one, the wrong name, an expired certificate, a
// plain-text or silent server, on both code paths (with and without a
// client certificate); ::1; NotCapable untouched; and a name that does not
// resolve, tried only where no DNS query can leave the machine.
import assert from "node:assert/strict";
import { dial, DialError, startTlsWithin } from "../lib/dial.ts";
import { Failure, UsageError } from "../lib/errors.ts";
import {
  closedPort,
  hasCommand,
  makeTestCerts,
  runTool,
  skipBecause,
  startUnansweredPort,
  type TestCerts,
  within,
} from "./helpers.ts";

// Deno 2.8+ runs tests without the op and resource sanitizers unless asked:
// a leaked socket, timer or pending read must fail these tests.
Deno.test.sanitizer({ ops: true, resources: true });

const hasOpenssl = await hasCommand("openssl");
if (!hasOpenssl) skipBecause("openssl not installed: dial's TLS tests ignored");

const DIAL = new URL("../lib/dial.ts", import.meta.url).href;

/** The DialError `promise` rejects with (fails on success or another error). */
async function dialError(promise: Promise<Deno.Conn>): Promise<DialError> {
  try {
    (await promise).close();
  } catch (error) {
    assert.ok(error instanceof DialError, `not a DialError: ${error}`);
    assert.ok(error instanceof Failure);
    return error;
  }
  assert.fail("connected");
}

function expectDialError(
  error: DialError,
  target: string,
  kind: string,
  reason: string | RegExp,
) {
  assert.equal(error.target, target);
  assert.equal(error.kind, kind, error.message);
  if (typeof reason === "string") assert.equal(error.reason, reason);
  else assert.match(error.reason, reason);
  assert.equal(error.message, `cannot connect to ${target}: ${error.reason}`);
}

/**
 * A TLS server on loopback (Deno.listenTls) that sends `greeting` to each
 * client after the handshake; failed handshakes are counted, not thrown.
 */
function tlsServer(
  certs: { cert: string; key: string },
  hostname = "127.0.0.1",
) {
  const listener = Deno.listenTls({ hostname, port: 0, ...certs });
  let failures = 0;
  const tasks: Promise<void>[] = [];
  const accepting = (async () => {
    for await (const conn of listener) {
      tasks.push((async () => {
        try {
          await conn.handshake();
          await conn.write(new TextEncoder().encode("hello over TLS\n"));
          await conn.read(new Uint8Array(16)).catch(() => null);
        } catch {
          failures++;
        } finally {
          conn.close();
        }
      })());
    }
  })();
  return {
    port: listener.addr.port,
    get failures() {
      return failures;
    },
    async [Symbol.asyncDispose]() {
      listener.close();
      await accepting.catch(() => {});
      await Promise.all(tasks);
    },
  };
}

/** Reads one greeting line from a dialled connection and closes it. */
async function greeting(conn: Deno.Conn): Promise<string> {
  const buffer = new Uint8Array(64);
  let text = "";
  while (!text.includes("\n")) {
    const count = await conn.read(buffer);
    if (count === null) break;
    text += new TextDecoder().decode(buffer.subarray(0, count));
  }
  conn.close();
  return text;
}

/** Makes the certificates a test needs and removes them afterwards. */
async function withCerts<T>(
  options: Parameters<typeof makeTestCerts>[0],
  body: (certs: TestCerts) => Promise<T>,
): Promise<T> {
  await using certs = await makeTestCerts(options);
  return await body(certs);
}

// --- Plain TCP. ---

Deno.test("dial: a plain connection works and carries bytes both ways", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [conn, accepted] = await Promise.all([
    dial({
      hostname: "127.0.0.1",
      port: listener.addr.port,
      timeoutMs: 10_000,
    }),
    listener.accept(),
  ]);
  await conn.write(new TextEncoder().encode("ping"));
  const buffer = new Uint8Array(8);
  assert.equal(await accepted.read(buffer), 4);
  await accepted.write(buffer.subarray(0, 4));
  assert.equal(await conn.read(buffer), 4);
  assert.equal(new TextDecoder().decode(buffer.subarray(0, 4)), "ping");
  conn.close();
  accepted.close();
});

Deno.test("dial: refused, worded with the target and kind 'refused'", async () => {
  const port = closedPort();
  const error = await dialError(
    dial({ hostname: "127.0.0.1", port, timeoutMs: 10_000 }),
  );
  expectDialError(error, `127.0.0.1:${port}`, "refused", "connection refused");
});

Deno.test("dial: a connect that never completes times out within timeoutMs", async () => {
  const unanswered = await startUnansweredPort();
  try {
    const started = performance.now();
    const error = await within(
      10_000,
      dialError(
        dial({
          hostname: "127.0.0.1",
          port: unanswered.addr.port,
          timeoutMs: 300,
        }),
      ),
      "dial",
    );
    const took = performance.now() - started;
    expectDialError(
      error,
      `127.0.0.1:${unanswered.addr.port}`,
      "timeout",
      "timed out after 0.3 s",
    );
    assert.ok(took >= 280 && took < 5000, `took ${took} ms`);
  } finally {
    unanswered.close();
  }
});

Deno.test("dial: an abort signal ends a pending connect early", async () => {
  const unanswered = await startUnansweredPort();
  try {
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    const started = performance.now();
    const error = await within(
      10_000,
      dial({
        hostname: "127.0.0.1",
        port: unanswered.addr.port,
        timeoutMs: 30_000,
        signal: controller.signal,
      }).then((conn) => (conn.close(), undefined), (error) => error),
      "aborted dial",
    );
    assert.ok(performance.now() - started < 5000);
    assert.ok(error instanceof DialError, String(error));
    assert.notEqual(error.kind, "timeout");
  } finally {
    unanswered.close();
  }
});

Deno.test("dial over ::1: connects, and a refusal names [::1]:port", async () => {
  let listener: Deno.TcpListener;
  try {
    listener = Deno.listen({ hostname: "::1", port: 0 });
  } catch {
    skipBecause("no IPv6 loopback: dial ::1 test skipped");
    return;
  }
  const port = listener.addr.port;
  const [conn, accepted] = await Promise.all([
    dial({ hostname: "::1", port, timeoutMs: 10_000 }),
    listener.accept(),
  ]);
  assert.equal((conn.remoteAddr as Deno.NetAddr).hostname, "::1");
  conn.close();
  accepted.close();
  listener.close();
  const error = await dialError(
    dial({ hostname: "::1", port, timeoutMs: 10_000 }),
  );
  expectDialError(error, `[::1]:${port}`, "refused", "connection refused");
});

Deno.test("dial: NotCapable passes through untouched (a usage problem, not a failed connect)", async () => {
  const code = `
    import { dial } from "${DIAL}";
    try {
      await dial({ hostname: "127.0.0.1", port: 2, timeoutMs: 5000 });
    } catch (error) {
      console.log(error.constructor.name, error instanceof Deno.errors.NotCapable);
    }
  `;
  const result = await runTool(
    Deno.execPath(),
    ["run", "--allow-net=127.0.0.1:1", "-"],
    code,
  );
  assert.equal(result.code, 0, result.stderr);
  assert.equal(new TextDecoder().decode(result.stdout), "NotCapable true\n");
});

// --- Names that do not resolve. ---

// This machine's resolver may be off-box, and glibc sends a query for any
// well-formed name (".invalid" included). So these run only inside a new
// network namespace (unshare -n, needs root), where nothing can leave: the
// resolver is unreachable there, and a name with a 64-byte label (longer
// than DNS allows) is refused by getaddrinfo before any query.
const canIsolate = (await hasCommand("unshare")) &&
  (await runTool("unshare", ["-n", "true"]).then(
    (r) => r.code === 0,
    () => false,
  ));

Deno.test({
  name:
    "dial: a name that does not resolve is kind 'dns' (in a network namespace: no DNS leaves)",
  ignore: !canIsolate,
  async fn() {
    const code = `
      import { dial } from "${DIAL}";
      for (const hostname of ["nothing-here.invalid", "${
      "a".repeat(64)
    }.invalid"]) {
        try {
          (await dial({ hostname, port: 80, timeoutMs: 5000 })).close();
          console.log("connected");
        } catch (error) {
          console.log(JSON.stringify({ kind: error.kind, message: error.message }));
        }
      }
    `;
    const result = await runTool(
      "unshare",
      ["-n", Deno.execPath(), "run", "--allow-net", "-"],
      code,
    );
    assert.equal(result.code, 0, result.stderr);
    const lines = new TextDecoder().decode(result.stdout).trim().split("\n");
    assert.equal(lines.length, 2, lines.join("\n"));
    const [unreachable, tooLong] = lines.map((line) => JSON.parse(line));
    assert.equal(unreachable.kind, "dns");
    assert.match(
      unreachable.message,
      /^cannot connect to nothing-here\.invalid:80: name not resolved: \S/,
    );
    assert.equal(tooLong.kind, "dns");
    assert.match(
      tooLong.message,
      /^cannot connect to a{64}\.invalid:80: name not resolved: \S/,
    );
  },
});
if (!canIsolate) {
  skipBecause(
    "unshare -n not available: dial's DNS failure test ignored (it must not query an off-box resolver)",
  );
}

// --- TLS without a client certificate (Deno.connect + startTls). ---

Deno.test({
  name: "dial TLS: the right CA works; by IP, by name, or with serverName",
  ignore: !hasOpenssl,
  fn: () =>
    withCerts({}, async (certs) => {
      await using server = tlsServer(certs);
      const tls = { caCerts: [certs.ca] };
      for (const hostname of ["127.0.0.1", "localhost"]) {
        const conn = await dial({
          hostname,
          port: server.port,
          timeoutMs: 10_000,
          tls,
        });
        assert.equal(await greeting(conn), "hello over TLS\n");
      }
      const named = await dial({
        hostname: "127.0.0.1",
        port: server.port,
        timeoutMs: 10_000,
        tls: { ...tls, serverName: "localhost" },
      });
      assert.equal(await greeting(named), "hello over TLS\n");
    }),
});

Deno.test({
  name:
    "dial TLS: wrong CA, no CA, wrong name, expired: kind 'tls' with the reason",
  ignore: !hasOpenssl,
  async fn() {
    await withCerts({}, async (certs) => {
      await using server = tlsServer(certs);
      const target = `127.0.0.1:${server.port}`;
      for (const tls of [{ caCerts: [certs.otherCa] }, {}]) {
        const error = await dialError(
          dial({
            hostname: "127.0.0.1",
            port: server.port,
            timeoutMs: 10_000,
            tls,
          }),
        );
        expectDialError(
          error,
          target,
          "tls",
          "certificate not trusted (unknown issuer)",
        );
      }
    });
    await withCerts({ names: ["DNS:localhost"] }, async (certs) => {
      await using server = tlsServer(certs);
      const error = await dialError(
        dial({
          hostname: "127.0.0.1",
          port: server.port,
          timeoutMs: 10_000,
          tls: { caCerts: [certs.ca] },
        }),
      );
      expectDialError(
        error,
        `127.0.0.1:${server.port}`,
        "tls",
        "certificate is not valid for 127.0.0.1",
      );
      // The same certificate is fine when the name it carries is asked for.
      const conn = await dial({
        hostname: "127.0.0.1",
        port: server.port,
        timeoutMs: 10_000,
        tls: { caCerts: [certs.ca], serverName: "localhost" },
      });
      assert.equal(await greeting(conn), "hello over TLS\n");
    });
    await withCerts({ days: -1 }, async (certs) => {
      await using server = tlsServer(certs);
      const error = await dialError(
        dial({
          hostname: "127.0.0.1",
          port: server.port,
          timeoutMs: 10_000,
          tls: { caCerts: [certs.ca] },
        }),
      );
      expectDialError(
        error,
        `127.0.0.1:${server.port}`,
        "tls",
        "certificate expired",
      );
    });
  },
});

/** A plain TCP server that greets every client in plain text, or stays silent. */
function plainServer(greetingText: string | null) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of listener) {
      conns.push(conn);
      if (greetingText !== null) {
        await conn.write(new TextEncoder().encode(greetingText)).catch(
          () => {},
        );
      }
    }
  })();
  return {
    port: listener.addr.port,
    async [Symbol.asyncDispose]() {
      listener.close();
      await accepting.catch(() => {});
      for (const conn of conns) conn.close();
    },
  };
}

Deno.test({
  name: "dial TLS to a plain-text server: 'the peer does not speak TLS'",
  ignore: !hasOpenssl,
  async fn() {
    await using server = plainServer("220 smtp.example ESMTP ready\r\n");
    const error = await dialError(
      dial({
        hostname: "127.0.0.1",
        port: server.port,
        timeoutMs: 10_000,
        tls: {},
      }),
    );
    expectDialError(
      error,
      `127.0.0.1:${server.port}`,
      "tls",
      "the peer does not speak TLS",
    );
  },
});

Deno.test({
  name:
    "dial TLS to a server that never answers the handshake: timeout within timeoutMs",
  ignore: !hasOpenssl,
  async fn() {
    await using server = plainServer(null);
    const started = performance.now();
    const error = await within(
      10_000,
      dialError(
        dial({
          hostname: "127.0.0.1",
          port: server.port,
          timeoutMs: 500,
          tls: {},
        }),
      ),
      "dial",
    );
    const took = performance.now() - started;
    expectDialError(
      error,
      `127.0.0.1:${server.port}`,
      "timeout",
      /^TLS handshake timed out after 0\.\d+ s$/,
    );
    assert.ok(took >= 450 && took < 5000, `took ${took} ms`);
  },
});

// --- TLS with a client certificate (Deno.connectTls). ---

Deno.test({
  name:
    "dial TLS presenting a client certificate: works; wrong CA, refused and a stall fail in kind",
  ignore: !hasOpenssl,
  fn: () =>
    withCerts({}, async (certs) => {
      const withClientCert = { cert: certs.cert, key: certs.key };
      {
        await using server = tlsServer(certs);
        const conn = await dial({
          hostname: "127.0.0.1",
          port: server.port,
          timeoutMs: 10_000,
          tls: { caCerts: [certs.ca], ...withClientCert },
        });
        assert.equal(await greeting(conn), "hello over TLS\n");
        const error = await dialError(
          dial({
            hostname: "127.0.0.1",
            port: server.port,
            timeoutMs: 10_000,
            tls: { caCerts: [certs.otherCa], ...withClientCert },
          }),
        );
        expectDialError(
          error,
          `127.0.0.1:${server.port}`,
          "tls",
          "certificate not trusted (unknown issuer)",
        );
      }
      const port = closedPort();
      const refused = await dialError(
        dial({
          hostname: "127.0.0.1",
          port,
          timeoutMs: 10_000,
          tls: withClientCert,
        }),
      );
      expectDialError(
        refused,
        `127.0.0.1:${port}`,
        "refused",
        "connection refused",
      );
      {
        await using silent = plainServer(null);
        const started = performance.now();
        const stalled = await within(
          10_000,
          dialError(
            dial({
              hostname: "127.0.0.1",
              port: silent.port,
              timeoutMs: 500,
              tls: { caCerts: [certs.ca], ...withClientCert },
            }),
          ),
          "dial",
        );
        const took = performance.now() - started;
        expectDialError(
          stalled,
          `127.0.0.1:${silent.port}`,
          "timeout",
          "timed out after 0.5 s",
        );
        assert.ok(took >= 450 && took < 5000, `took ${took} ms`);
      }
    }),
});

Deno.test({
  name:
    "dial TLS presenting a client certificate: a serverName other than the host is refused before any connect",
  ignore: !hasOpenssl,
  fn: () =>
    withCerts({}, async (certs) => {
      const client = { caCerts: [certs.ca], cert: certs.cert, key: certs.key };
      // What dial() resolves to or rejects with; a connection is closed.
      const outcome = (hostname: string, port: number, serverName: string) =>
        dial({
          hostname,
          port,
          timeoutMs: 10_000,
          tls: { ...client, serverName },
        }).then((conn) => (conn.close(), "connected"), (error) => error);
      await using server = tlsServer(certs);
      // Deno.connectTls checks the certificate against the host it dials:
      // with serverName it would dial that name (here localhost, another
      // machine elsewhere, or a name that does not resolve).
      for (const port of [server.port, closedPort()]) {
        const error = await outcome("127.0.0.1", port, "localhost");
        assert.ok(error instanceof UsageError, String(error));
        assert.equal(
          error.message,
          "a client certificate cannot be presented with a serverName ('localhost') " +
            "other than the host ('127.0.0.1'): Deno.connectTls has no separate server name",
        );
      }
      // The host itself as serverName, in any case, is no conflict.
      for (const serverName of ["localhost", "LocalHost"]) {
        const conn = await dial({
          hostname: "localhost",
          port: server.port,
          timeoutMs: 10_000,
          tls: { ...client, serverName },
        });
        assert.equal(await greeting(conn), "hello over TLS\n");
      }
      assert.equal(server.failures, 0);
    }),
});

Deno.test({
  name:
    "dial TLS presenting a client certificate: the caller's signal ends a stalled handshake; one aborted before connects nothing",
  ignore: !hasOpenssl,
  fn: () =>
    withCerts({}, async (certs) => {
      const client = { caCerts: [certs.ca], cert: certs.cert, key: certs.key };
      using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const target = `127.0.0.1:${listener.addr.port}`;
      // Abort with no reason (a shutdown), then with a TimeoutError (the
      // caller's own deadline, still a timeout).
      const reasons = [undefined, new DOMException("late", "TimeoutError")];
      for (const reason of reasons) {
        const controller = new AbortController();
        const started = performance.now();
        const dialling = dial({
          hostname: "127.0.0.1",
          port: listener.addr.port,
          timeoutMs: 30_000,
          tls: client,
          signal: controller.signal,
        }).then((conn) => (conn.close(), "connected"), (error) => error);
        using accepted = await within(10_000, listener.accept(), "accept");
        // The ClientHello arrives and is never answered; then the abort.
        assert.ok(await accepted.read(new Uint8Array(4096)));
        controller.abort(reason);
        const error = await within(10_000, dialling, "aborted dial");
        assert.ok(performance.now() - started < 5000);
        assert.ok(error instanceof DialError, String(error));
        if (reason === undefined) {
          expectDialError(error, target, "other", "cancelled");
        } else {
          expectDialError(error, target, "timeout", "timed out after 30 s");
        }
        assert.equal(error.stage, "tls");
        // dial() closes its TlsConn, but Deno 2.9.6 keeps the socket of a
        // TlsConn closed mid-handshake until the handshake ends (the peer
        // answers or closes), so no test can see that close; `using` ends it.
      }
      // Aborted before it began: no connect at all (not even "refused").
      const port = closedPort();
      const error = await dialError(
        dial({
          hostname: "127.0.0.1",
          port,
          timeoutMs: 10_000,
          tls: client,
          signal: AbortSignal.abort(),
        }),
      );
      expectDialError(error, `127.0.0.1:${port}`, "other", "cancelled");
    }),
});

Deno.test({
  name:
    "dial TLS presenting a client certificate: the caller's signal ends a TCP connect that never completes",
  ignore: !hasOpenssl,
  fn: () =>
    withCerts({}, async (certs) => {
      // Deno.connectTls takes no signal, so its pending connect outlives the
      // dial (until the kernel gives up): a child process, which exits at
      // once, keeps that op out of this test's sanitizers.
      const unanswered = await startUnansweredPort();
      try {
        const code = `
          import { dial } from "${DIAL}";
          const controller = new AbortController();
          setTimeout(() => controller.abort(), 100);
          const started = performance.now();
          try {
            (await dial({
              hostname: "127.0.0.1",
              port: ${unanswered.addr.port},
              timeoutMs: 30_000,
              tls: ${
          JSON.stringify({
            caCerts: [certs.ca],
            cert: certs.cert,
            key: certs.key,
          })
        },
              signal: controller.signal,
            })).close();
            console.log("connected");
          } catch (error) {
            const ms = Math.round(performance.now() - started);
            console.log(JSON.stringify({ message: error.message, stage: error.stage, ms }));
          }
          Deno.exit(0);
        `;
        const result = await runTool(
          Deno.execPath(),
          ["run", "--allow-net=127.0.0.1", "-"],
          code,
        );
        assert.equal(result.code, 0, result.stderr);
        const { message, stage, ms } = JSON.parse(
          new TextDecoder().decode(result.stdout),
        );
        assert.equal(
          message,
          `cannot connect to 127.0.0.1:${unanswered.addr.port}: cancelled`,
        );
        assert.equal(stage, "connect");
        assert.ok(ms >= 90 && ms < 5000, `took ${ms} ms`);
      } finally {
        unanswered.close();
      }
    }),
});

// --- startTlsWithin, over a connection opened by someone else. ---

Deno.test({
  name:
    "startTlsWithin: TLS over an open TCP connection, and its failure named after the target",
  ignore: !hasOpenssl,
  fn: () =>
    withCerts({}, async (certs) => {
      await using server = tlsServer(certs);
      const tcp = await Deno.connect({
        hostname: "127.0.0.1",
        port: server.port,
      });
      const conn = await startTlsWithin(
        tcp,
        { caCerts: [certs.ca], serverName: "localhost" },
        10_000,
        "proxy.example:443",
      );
      assert.equal(await greeting(conn), "hello over TLS\n");
      const other = await Deno.connect({
        hostname: "127.0.0.1",
        port: server.port,
      });
      await assert.rejects(
        () =>
          startTlsWithin(
            other,
            { serverName: "localhost" },
            10_000,
            "proxy.example:443",
          ),
        (error: unknown) =>
          error instanceof DialError && error.kind === "tls" &&
          error.message ===
            "cannot connect to proxy.example:443: certificate not trusted (unknown issuer)",
      );
      // The connection was closed by startTlsWithin.
      assert.throws(() => other.close(), Deno.errors.BadResource);
    }),
});
