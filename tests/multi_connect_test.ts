import assert from "node:assert/strict";
import {
  checkTarget,
  checkTargets,
  escapeBytes as scriptEscapeBytes,
  parseTarget,
  type TargetResult,
} from "../scripts/multi_connect.ts";
import { escapeBytes } from "../lib/terminal.ts";
import { startEchoServer } from "../scripts/echo_server.ts";
import { closedPort, runScript, startUnansweredPort } from "./helpers.ts";

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

Deno.test("a closed port is refused", async () => {
  const result = await checkTarget(target(closedPort()));
  assert.equal(result.result, "refused");
  assert.equal(result.firstBytes, null);
});

Deno.test("a .invalid name is a DNS failure, within the timeout", async () => {
  // RFC 6761: .invalid never resolves. The lookup fails locally or with an
  // immediate NXDOMAIN; the timeout bounds it if a resolver is slow.
  const started = performance.now();
  const result = await checkTarget(parseTarget("no-such-host.invalid:80"), {
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
  // The script's export is lib/terminal.ts's function (it moved there).
  assert.equal(scriptEscapeBytes, escapeBytes);
  assert.equal(
    escapeBytes(encoder.encode('ok "x"\\\r\n\t\x1b[2J\x00')),
    '"ok \\"x\\"\\\\\\r\\n\\t\\x1b[2J\\x00"',
  );
  assert.equal(
    escapeBytes(new Uint8Array([0x7f, 0x80, 0xff])),
    '"\\x7f\\x80\\xff"',
  );
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
      "no-such-host.invalid:80",
      good,
    ]);
    assert.equal(output.code, 1);
    const lines = output.stdout.trimEnd().split("\n");
    assert.equal(lines.length, 3);
    const width = "no-such-host.invalid:80".length;
    assert.match(lines[0], new RegExp(`^${refused.padEnd(width)}  refused  `));
    assert.ok(lines[1].startsWith("no-such-host.invalid:80  DNS failure  "));
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
