// lib/errors.ts, the one error table: every Deno.errors class, timeouts,
// the DNS failure wordings, rustls's certificate complaints (made for real
// with makeTestCerts over loopback), and which errors are "expected" (one
// line, no stack trace) or a mere disconnect.
import assert from "node:assert/strict";
import {
  classifyError,
  describeError,
  type ErrorKind,
  Failure,
  isDisconnect,
  isExpectedError,
  UsageError,
} from "../lib/errors.ts";
import {
  closedPort,
  hasCommand,
  makeTestCerts,
  skipBecause,
  type TestCerts,
} from "./helpers.ts";

// Deno 2.8+ runs tests without the op and resource sanitizers unless asked:
// a leaked socket, timer or pending read must fail these tests.
Deno.test.sanitizer({ ops: true, resources: true });

const e = Deno.errors;

// Each class of Deno.errors, built with a two-line message (the table keeps
// only the first line), and the row it must land in.
const TABLE: [new (message: string) => Error, ErrorKind, string][] = [
  [e.TimedOut, "timeout", "timed out"],
  [e.ConnectionRefused, "refused", "connection refused"],
  [e.ConnectionReset, "disconnect", "connection reset"],
  [e.BrokenPipe, "disconnect", "connection closed by peer"],
  [e.ConnectionAborted, "disconnect", "connection closed by peer"],
  [e.UnexpectedEof, "disconnect", "connection closed unexpectedly"],
  [e.NotConnected, "disconnect", "connection closed"],
  [e.BadResource, "disconnect", "connection closed"],
  [e.Interrupted, "disconnect", "connection closed"],
  [e.AddrInUse, "address", "address already in use"],
  [e.AddrNotAvailable, "address", "address not available on this machine"],
  [e.NetworkUnreachable, "unreachable", "network unreachable"],
  [e.NotCapable, "permission", "missing permission: first line"],
  [e.PermissionDenied, "permission", "permission denied: first line"],
  [e.NotFound, "not found", "first line"],
  [e.InvalidData, "tls", "TLS failed: first line"],
  [e.AlreadyExists, "other", "first line"],
  [e.WriteZero, "other", "first line"],
  [e.WouldBlock, "other", "first line"],
  [e.Http, "other", "first line"],
  [e.Busy, "other", "first line"],
  [e.NotSupported, "other", "first line"],
  [e.FilesystemLoop, "other", "first line"],
  [e.IsADirectory, "other", "first line"],
  [e.NotADirectory, "other", "first line"],
];

Deno.test("classifyError: every Deno.errors class has its row", () => {
  const covered = new Set(TABLE.map(([type]) => type.name));
  // A new class in a later Deno must be placed in the table on purpose.
  assert.deepEqual(
    Object.keys(Deno.errors).filter((name) => !covered.has(name)),
    [],
  );
  for (const [type, kind, text] of TABLE) {
    const error = new type("first line\nsecond line");
    assert.deepEqual(classifyError(error), { kind, text }, type.name);
    assert.equal(describeError(error), text, type.name);
  }
});

Deno.test("classifyError: TimeoutError (AbortSignal.timeout), Failure, strings, plain errors", async () => {
  const signal = AbortSignal.timeout(1);
  await new Promise((resolve) => signal.addEventListener("abort", resolve));
  assert.deepEqual(classifyError(signal.reason), {
    kind: "timeout",
    text: "timed out",
  });
  // Another DOMException is no timeout.
  assert.equal(
    classifyError(new DOMException("stop", "AbortError")).kind,
    "other",
  );
  assert.deepEqual(classifyError(new Failure("it broke", "refused")), {
    kind: "refused",
    text: "it broke",
  });
  assert.deepEqual(classifyError(new Failure("no kind")), {
    kind: "other",
    text: "no kind",
  });
  assert.deepEqual(classifyError("a string"), {
    kind: "other",
    text: "a string",
  });
  assert.deepEqual(classifyError(undefined), {
    kind: "other",
    text: "undefined",
  });
  assert.deepEqual(classifyError(new TypeError("bad\nstack")), {
    kind: "other",
    text: "bad",
  });
});

Deno.test("classifyError: getaddrinfo wordings of Linux, macOS and Windows are DNS failures", () => {
  const wordings = [
    "failed to lookup address information: Name or service not known",
    "failed to lookup address information: Temporary failure in name resolution",
    "failed to lookup address information: nodename nor servname provided, or not known",
    "No such host is known. (os error 11001)",
    "failed to lookup address information: No address associated with hostname",
  ];
  for (const message of wordings) {
    const { kind, text } = classifyError(new Error(message));
    assert.equal(kind, "dns", message);
    // One line that says what failed and keeps the resolver's own words.
    assert.ok(text.startsWith("name not resolved: "), text);
    const said = message.replace("failed to lookup address information: ", "");
    assert.ok(text.endsWith(said), text);
  }
  // The wording decides, not the class: a NotFound stays "not found".
  assert.equal(
    classifyError(new Deno.errors.NotFound("No such file or directory")).kind,
    "not found",
  );
});

Deno.test("classifyError: rustls's words, as they come, and the InvalidData fallback", () => {
  const cases: [string, string][] = [
    [
      "invalid peer certificate: UnknownIssuer",
      "certificate not trusted (unknown issuer)",
    ],
    [
      'invalid peer certificate: certificate not valid for name "127.0.0.1"; certificate is only valid for DnsName("localhost")',
      "certificate is not valid for 127.0.0.1",
    ],
    [
      "invalid peer certificate: NotValidForName",
      "certificate is for another name",
    ],
    ["invalid peer certificate: Expired", "certificate expired"],
    ["invalid peer certificate: NotValidYet", "certificate not valid yet"],
    [
      "invalid peer certificate: CaUsedAsEndEntity",
      "certificate is a CA, not a server certificate",
    ],
    [
      "invalid peer certificate: BadSignature",
      "certificate is malformed or badly signed",
    ],
    [
      "received corrupt message of type InvalidContentType",
      "the peer does not speak TLS",
    ],
    [
      "something else entirely\nsecond line",
      "TLS failed: something else entirely",
    ],
  ];
  for (const [message, text] of cases) {
    assert.deepEqual(
      classifyError(new Deno.errors.InvalidData(message)),
      { kind: "tls", text },
      message,
    );
  }
  // An alert is the peer's verdict on us: kind "tls", one line that keeps
  // its meaning (the exact wording is the table's to choose).
  const alerts: [string, RegExp][] = [
    ["received fatal alert: UnknownCA", /UnknownCA|unknown issuer/],
    ["received fatal alert: CertificateExpired", /expired/i],
    ["received fatal alert: HandshakeFailure", /HandshakeFailure/],
  ];
  for (const [message, meaning] of alerts) {
    const { kind, text } = classifyError(new Deno.errors.InvalidData(message));
    assert.equal(kind, "tls", message);
    assert.match(text, meaning);
    assert.ok(!text.includes("\n"));
  }
});

/** Connects with TLS to a loopback TLS (or plain) server; returns the error. */
async function handshakeError(
  server: { cert: string; key: string } | "plain",
  client: Omit<Deno.ConnectTlsOptions, "port">,
): Promise<unknown> {
  using listener = server === "plain"
    ? Deno.listen({ hostname: "127.0.0.1", port: 0 })
    : Deno.listenTls({ hostname: "127.0.0.1", port: 0, ...server });
  const serving = (async () => {
    const conn = await listener.accept();
    try {
      if (server === "plain") {
        await conn.write(new TextEncoder().encode("220 plain text here\r\n"));
      } else {
        await (conn as Deno.TlsConn).handshake();
      }
      // Wait for the client to leave.
      await conn.read(new Uint8Array(1024)).catch(() => null);
    } catch {
      // The handshake failed on our side too.
    } finally {
      conn.close();
    }
  })();
  try {
    const conn = await Deno.connectTls({
      ...client,
      port: (listener.addr as Deno.NetAddr).port,
    });
    try {
      await conn.handshake();
      return undefined;
    } finally {
      conn.close();
    }
  } catch (error) {
    return error;
  } finally {
    await serving;
  }
}

const hasOpenssl = await hasCommand("openssl");

Deno.test({
  name:
    "classifyError: real rustls failures over loopback: unknown issuer, name, expired, plain text",
  ignore: !hasOpenssl,
  async fn() {
    const certs: TestCerts[] = [];
    try {
      const good = await makeTestCerts();
      certs.push(good);
      const expired = await makeTestCerts({ days: -1 });
      certs.push(expired);
      const named = await makeTestCerts({ names: ["DNS:localhost"] });
      certs.push(named);
      const host = "127.0.0.1";

      // The control: the right CA, the right name, in date.
      assert.equal(
        await handshakeError(good, { hostname: host, caCerts: [good.ca] }),
        undefined,
      );
      const cases: [unknown, string][] = [
        [
          await handshakeError(good, { hostname: host }),
          "certificate not trusted (unknown issuer)",
        ],
        [
          await handshakeError(good, {
            hostname: host,
            caCerts: [good.otherCa],
          }),
          "certificate not trusted (unknown issuer)",
        ],
        [
          await handshakeError(expired, {
            hostname: host,
            caCerts: [expired.ca],
          }),
          "certificate expired",
        ],
        [
          await handshakeError(named, { hostname: host, caCerts: [named.ca] }),
          "certificate is not valid for 127.0.0.1",
        ],
        [
          await handshakeError("plain", { hostname: host, caCerts: [good.ca] }),
          "the peer does not speak TLS",
        ],
      ];
      for (const [error, text] of cases) {
        assert.deepEqual(classifyError(error), { kind: "tls", text });
        assert.equal(isExpectedError(error), true);
        assert.equal(isDisconnect(error), false);
      }
    } finally {
      for (const made of certs) await made[Symbol.asyncDispose]();
    }
  },
});
if (!hasOpenssl) {
  skipBecause("openssl not installed: real TLS errors test ignored");
}

Deno.test("classifyError on real errors: refused, address in use, closed twice, no such file", async () => {
  const refused = await Deno.connect({
    hostname: "127.0.0.1",
    port: closedPort(),
  })
    .then((conn) => (conn.close(), undefined), (error) => error);
  assert.deepEqual(classifyError(refused), {
    kind: "refused",
    text: "connection refused",
  });

  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let inUse: unknown;
  try {
    Deno.listen({ hostname: "127.0.0.1", port: listener.addr.port }).close();
  } catch (error) {
    inUse = error;
  }
  assert.equal(classifyError(inUse).kind, "address");

  const conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: listener.addr.port,
  });
  using accepted = await listener.accept();
  conn.close();
  let closedTwice: unknown;
  try {
    conn.close();
  } catch (error) {
    closedTwice = error;
  }
  assert.equal(classifyError(closedTwice).kind, "disconnect");
  assert.equal(isDisconnect(closedTwice), true);
  assert.ok(accepted);

  const missing = await Deno.readFile("/nonexistent/dir/file").catch((error) =>
    error
  );
  assert.equal(classifyError(missing).kind, "not found");
  assert.match(describeError(missing), /No such file or directory/);
});

Deno.test("a read pending when we close our own connection is a disconnect, and expected", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: listener.addr.port,
  });
  using accepted = await listener.accept();
  const pending = conn.read(new Uint8Array(16)).catch((error) => error);
  conn.close();
  const error = await pending;
  assert.ok(error instanceof Error, `read ended with ${error}`);
  assert.equal(isDisconnect(error), true);
  assert.equal(classifyError(error).kind, "disconnect");
  assert.equal(isExpectedError(error), true);
  assert.ok(accepted);
});

Deno.test("isDisconnect: only 'the peer went away' or 'we closed it'", () => {
  const yes = [
    e.ConnectionReset,
    e.BrokenPipe,
    e.ConnectionAborted,
    e.NotConnected,
    e.UnexpectedEof,
    e.BadResource,
    e.Interrupted,
    e.TimedOut,
  ];
  for (const type of yes) {
    assert.equal(isDisconnect(new type("x")), true, type.name);
  }
  const no = [
    new e.ConnectionRefused("x"),
    new e.InvalidData("x"),
    new e.NotFound("x"),
    new e.PermissionDenied("x"),
    new Failure("x", "disconnect"),
    new Error("connection reset"),
    "connection reset",
    null,
  ];
  for (const value of no) {
    assert.equal(isDisconnect(value), false, String(value));
  }
});

Deno.test("isExpectedError: the outside world yes, bugs no", () => {
  const expected = [
    new Failure("x"),
    new Failure("x", "other"),
    new e.NotCapable("x"),
    new e.InvalidData("x"),
    new Error(
      "failed to lookup address information: Name or service not known",
    ),
  ];
  for (const error of expected) {
    assert.equal(isExpectedError(error), true, String(error));
  }
  // Every row that is not "other" is expected.
  for (const [type, kind] of TABLE) {
    if (kind !== "other") {
      assert.equal(isExpectedError(new type("x")), true, type.name);
    }
  }
  // Every disconnect is expected: a script never prints a stack for one.
  for (const [type] of TABLE) {
    const error = new type("x");
    if (isDisconnect(error)) {
      assert.equal(isExpectedError(error), true, type.name);
    }
  }
  const bugs = [
    new TypeError("undefined is not a function"),
    new RangeError("x"),
    new Error("something else"),
    new e.AlreadyExists("x"),
    new UsageError("x"), // handled before, by runCommand, as exit 2
    "a string",
    undefined,
  ];
  for (const error of bugs) {
    assert.equal(isExpectedError(error), false, String(error));
  }
});
