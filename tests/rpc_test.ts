// Tests for scripts/rpc_server.ts, scripts/rpc_client.ts and scripts/rpc/jsonrpc.ts
// over real loopback sockets: exact bytes of answers and of every error
// code, ids of every kind, batches and notifications, concurrency inside
// one connection and across 200, the limits (line, nesting, calls in
// flight, unsent answers, idle, connections), hostile input, a Python
// client like the tutorials', nc, ::1, the client's exit codes, SIGTERM.
import assert from "node:assert/strict";
import {
  MAX_SLEEP_MS,
  type RpcServerOptions,
  startRpcServer,
} from "../scripts/rpc_server.ts";
import { parseParams, RpcClient } from "../scripts/rpc_client.ts";
import * as rpc from "../scripts/rpc/jsonrpc.ts";
import { Failure } from "../lib/cli.ts";
import { writeAll } from "../lib/io.ts";
import { printableJson } from "../lib/terminal.ts";
import {
  closedPort,
  hasCommand,
  LinePeer,
  runScript,
  runTool,
  skipBecause,
  startScript,
  startUnansweredPort,
  within,
} from "./helpers.ts";

const encoder = new TextEncoder();

/** A raw connection to the RPC server (lines as in LinePeer). */
class Peer extends LinePeer {
  static async connect(port: number, hostname = "127.0.0.1") {
    return new Peer(await Deno.connect({ hostname, port }));
  }
}

/** A request line: `{"jsonrpc":"2.0","method":…,"params":…,"id":…}\n`. */
function call(method: string, params?: unknown, id?: unknown): string {
  const request: Record<string, unknown> = { jsonrpc: "2.0", method };
  if (params !== undefined) request.params = params;
  if (id !== undefined) request.id = id;
  return JSON.stringify(request) + "\n";
}

const result = (value: string, id: string) =>
  `{"jsonrpc":"2.0","result":${value},"id":${id}}\n`;
const error = (code: number, message: string, id = "null") =>
  `{"jsonrpc":"2.0","error":{"code":${code},"message":${
    JSON.stringify(message)
  }},"id":${id}}\n`;

/** An in-process server on a free port, logging into an array. */
function startServer(options: RpcServerOptions = {}) {
  const log: string[] = [];
  const server = startRpcServer({
    port: 0,
    log: (line) => log.push(line),
    ...options,
  });
  return { server, port: server.addr.port, log };
}

Deno.test("each method: exact answer bytes, positional and named", async () => {
  const { server, port } = startServer();
  await using _ = server;
  using peer = await Peer.connect(port);
  await peer.send(call("add", [2, 3], 1));
  await peer.expect(result("5", "1"));
  await peer.send(call("add", { a: 0.5, b: -2 }, "two"));
  await peer.expect(result("-1.5", '"two"'));
  await peer.send(call("echo", ["hi", { a: [null, true] }], 3));
  await peer.expect(result('["hi",{"a":[null,true]}]', "3"));
  await peer.send(call("echo", undefined, 4)); // no params: null
  await peer.expect(result("null", "4"));
  await peer.send(call("sleep", { ms: 1 }, 5) + call("sleep", [0], 6));
  await peer.expect(result("1", "5"), result("0", "6"));
  await peer.send(call("time", undefined, 7));
  const { result: time } = JSON.parse(await peer.line());
  assert.match(time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.ok(Math.abs(Date.parse(time) - Date.now()) < 5000);
});

Deno.test("ids: string, number, null, fractional and huge numbers come back as sent", async () => {
  const { server, port } = startServer();
  await using _ = server;
  using peer = await Peer.connect(port);
  for (
    const id of [
      '"x\\u0000y"',
      "0",
      "-7",
      "null",
      "1.5",
      "1e400",
      "12345678901234567890",
      "-0.000001",
    ]
  ) {
    await peer.send(
      `{"jsonrpc":"2.0","method":"add","params":[1,1],"id":${id}}\n`,
    );
    const answer = await peer.line();
    // 1.5 and 1e-6 come back in the client's own spelling too.
    assert.equal(answer, result("2", id), `id ${id}`);
  }
});

Deno.test("ids in a batch keep their own spelling, even when two read as one double", async () => {
  const { server, port } = startServer();
  await using _ = server;
  using peer = await Peer.connect(port);
  const ids = ["12345678901234567890", "12345678901234567891", "1.50", "1.5"];
  const items = ids.map((id) =>
    `{"jsonrpc":"2.0","method":"add","params":[1,1],"id":${id}}`
  );
  await peer.send(`[${items.join(",")}]\n`);
  await peer.expect(`[${ids.map((id) => result("2", id).trim()).join(",")}]\n`);
});

Deno.test("notifications get no answer; blank lines and \\r\\n are fine", async () => {
  const { server, port } = startServer();
  await using _ = server;
  using peer = await Peer.connect(port);
  await peer.send(
    call("add", [1, 2]) + "\n \r\n" + call("nope") + call("add", ["x"]),
  );
  await peer.send(call("add", [1, 2], 9).replace("\n", "\r\n"));
  await peer.expect(result("3", "9")); // nothing came before it
});

Deno.test("every error code of the specification, exact bytes", async () => {
  const { server, port } = startServer();
  await using _ = server;
  using peer = await Peer.connect(port);
  const cases: [string, string][] = [
    [
      "nope\n",
      error(
        -32700,
        `Parse error: Unexpected token 'o', "nope" is not valid JSON`,
      ),
    ],
    [
      '{"jsonrpc":"2.0","method":"add"\n',
      error(
        -32700,
        "Parse error: Expected ',' or '}' after property value in JSON at position 31 (line 1 column 32)",
      ),
    ],
    ["1\n", error(-32600, "Invalid Request: not a JSON object")],
    ['"add"\n', error(-32600, "Invalid Request: not a JSON object")],
    ["null\n", error(-32600, "Invalid Request: not a JSON object")],
    [
      '{"method":"add","id":1}\n',
      error(-32600, 'Invalid Request: "jsonrpc" must be "2.0"', "1"),
    ],
    [
      '{"jsonrpc":"1.0","method":"add","id":1}\n',
      error(-32600, 'Invalid Request: "jsonrpc" must be "2.0"', "1"),
    ],
    [
      '{"jsonrpc":"2.0","method":1,"id":2}\n',
      error(-32600, 'Invalid Request: "method" must be a string', "2"),
    ],
    [
      '{"jsonrpc":"2.0","method":"add","params":"1,2","id":3}\n',
      error(
        -32600,
        'Invalid Request: "params" must be an array or an object',
        "3",
      ),
    ],
    [
      '{"jsonrpc":"2.0","method":"add","params":null,"id":4}\n',
      error(
        -32600,
        'Invalid Request: "params" must be an array or an object',
        "4",
      ),
    ],
    [
      '{"jsonrpc":"2.0","method":"add","id":{"a":1}}\n',
      error(-32600, "Invalid Request: id must be a string, a number or null"),
    ],
    [
      '{"jsonrpc":"2.0","method":"add","id":[1]}\n',
      error(-32600, "Invalid Request: id must be a string, a number or null"),
    ],
    [
      '{"jsonrpc":"2.0","method":"add","id":true}\n',
      error(-32600, "Invalid Request: id must be a string, a number or null"),
    ],
    // Invalid requests without an id are answered too: they are not
    // notifications, and the client deserves to know.
    [
      '{"jsonrpc":"2.0","method":1}\n',
      error(-32600, 'Invalid Request: "method" must be a string'),
    ],
    ["[]\n", error(-32600, "Invalid Request: empty batch")],
    [
      call("subtract", [1], 5),
      error(-32601, "Method not found: subtract", "5"),
    ],
    [
      call("constructor", [], 6),
      error(-32601, "Method not found: constructor", "6"),
    ],
    [
      call("__proto__", [], 7),
      error(-32601, "Method not found: __proto__", "7"),
    ],
    [
      call("rpc.discover", undefined, 8),
      error(-32601, "Method not found: rpc.discover", "8"),
    ],
  ];
  const addUsage =
    'Invalid params: add takes two numbers, [a, b] or {"a": a, "b": b}';
  const sleepUsage =
    `Invalid params: sleep takes 0 to ${MAX_SLEEP_MS} ms: [ms] or {"ms": ms}`;
  for (
    const params of [[1], [1, 2, 3], ["1", 2], [1, null], { a: 1 }, {
      a: 1,
      c: 2,
    }, undefined]
  ) {
    cases.push([call("add", params, 10), error(-32602, addUsage, "10")]);
  }
  cases.push([
    call("add", [1e308, 1e308], 11),
    error(-32602, "Invalid params: the sum is too large", "11"),
  ]);
  for (
    const params of [
      [-1],
      [10_001],
      ["5"],
      [],
      [1, 2],
      { ms: "1" },
      {},
      undefined,
    ]
  ) {
    cases.push([call("sleep", params, 12), error(-32602, sleepUsage, "12")]);
  }
  for (const [sent, expected] of cases) {
    await peer.send(sent);
    assert.equal(await peer.line(), expected, `for ${sent}`);
  }
  // Invalid UTF-8 is not JSON.
  await peer.send(new Uint8Array([0x7b, 0xff, 0x7d, 0x0a]));
  await peer.expect(error(-32700, "Parse error: not UTF-8"));
  // And the connection still works.
  await peer.send(call("add", [1, 1], 13));
  await peer.expect(result("2", "13"));
});

Deno.test("-32603: an answer that cannot be encoded is still an answer", () => {
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  assert.equal(
    rpc.encodeResult(1, cyclic) + "\n",
    error(-32603, "Internal error: result cannot be encoded (TypeError)", "1"),
  );
  assert.equal(
    rpc.encodeResult(2, 10n) + "\n",
    error(-32603, "Internal error: result cannot be encoded (TypeError)", "2"),
  );
});

Deno.test("batches: an array of answers in order, notifications left out", async () => {
  const { server, port } = startServer();
  await using _ = server;
  using peer = await Peer.connect(port);
  const items = [
    call("sleep", [50], "slow"),
    call("add", [1, 2], 1),
    call("echo", ["n"]),
    call("nope", [], 2),
    "1",
    '{"jsonrpc":"2.0"}',
    "[]",
  ];
  await peer.send(`[${items.map((item) => item.trim()).join(",")}]\n`);
  await peer.expect(
    "[" + [
      result("50", '"slow"'),
      result("3", "1"),
      error(-32601, "Method not found: nope", "2"),
      error(-32600, "Invalid Request: not a JSON object"),
      error(-32600, 'Invalid Request: "method" must be a string'),
      error(-32600, "Invalid Request: not a JSON object"),
    ].map((line) => line.trimEnd()).join(",") + "]\n",
  );
  // A batch of notifications only: no answer at all.
  await peer.send(
    `[${call("add", [1, 2]).trim()},${call("echo", []).trim()}]\n`,
  );
  await peer.send(call("add", [2, 2], 3));
  await peer.expect(result("4", "3"));
  // More calls than --max-in-flight in one batch: refused as a whole.
  const many = Array.from(
    { length: 101 },
    (_, i) => call("add", [i, 0], i).trim(),
  );
  await peer.send(`[${many.join(",")}]\n`);
  await peer.expect(error(-32600, "Invalid Request: batch too long"));
});

Deno.test("a slow sleep never holds back a later add on the same connection", async () => {
  const { server, port } = startServer();
  await using _ = server;
  using peer = await Peer.connect(port);
  const started = performance.now();
  await peer.send(call("sleep", [500], "sleep") + call("add", [2, 2], "add"));
  await peer.expect(result("4", '"add"'));
  const addMs = performance.now() - started;
  await peer.expect(result("500", '"sleep"'));
  const sleepMs = performance.now() - started;
  assert.ok(
    addMs < sleepMs,
    `add after ${addMs} ms, sleep after ${sleepMs} ms`,
  );
  assert.ok(sleepMs >= 490, `sleep answered after ${sleepMs} ms`);
});

Deno.test("--max-in-flight: a connection is not read while its calls fill it", async () => {
  const { server, port } = startServer({ maxInFlight: 4 });
  await using _ = server;
  using peer = await Peer.connect(port);
  const started = performance.now();
  // Twelve 200 ms sleeps, at most four at a time: three rounds, so at least
  // 600 ms (a lower bound, safe on a slow machine).
  let lines = "";
  for (let i = 0; i < 12; i++) lines += call("sleep", [200], i);
  await peer.send(lines);
  const ids = new Set<number>();
  for (let i = 0; i < 12; i++) ids.add(JSON.parse(await peer.line()).id);
  const elapsed = performance.now() - started;
  assert.equal(ids.size, 12);
  assert.ok(
    elapsed >= 590,
    `12 sleeps of 200 ms, 4 at a time, took ${elapsed} ms`,
  );
  // Batch elements wait for their turn the same way: 4 + 4 in a batch of 8.
  const batchStarted = performance.now();
  const batch = Array.from(
    { length: 4 },
    (_, i) => call("sleep", [200], i).trim(),
  );
  await peer.send(`[${batch.join(",")}]\n` + call("sleep", [200], "x"));
  const first = JSON.parse(await peer.line(5000));
  const second = JSON.parse(await peer.line(5000));
  assert.equal(Array.isArray(first) ? first.length : second.length, 4);
  assert.ok(
    performance.now() - batchStarted >= 390,
    "the lone sleep waited for a turn",
  );
});

Deno.test("answers ready together leave in one write, in the order the calls were done", async () => {
  const { server, port } = startServer();
  await using _ = server;
  using peer = await Peer.connect(port);
  // Every write the server makes to this client (its local port is ours).
  let owner = Object.getPrototypeOf(peer.conn);
  while (!Object.hasOwn(owner, "write")) owner = Object.getPrototypeOf(owner);
  const write = owner.write;
  const written: string[] = [];
  owner.write = function (this: Deno.Conn, bytes: Uint8Array) {
    if ((this.localAddr as Deno.NetAddr).port === port) {
      written.push(new TextDecoder().decode(bytes));
    }
    return write.call(this, bytes);
  };
  try {
    // One write of ours, one read of the server's (under its 1 KiB buffer):
    // two sleeps, then calls done at once, a notification among them.
    let calls = call("sleep", [300], "s300") + call("sleep", [100], "s100");
    for (let i = 0; i < 8; i++) calls += call("add", [i, 1], i);
    calls += call("echo", ["n"]) + call("echo", ["x"], "x");
    assert.ok(calls.length < 1024);
    await peer.send(calls);
    let done = "";
    for (let i = 0; i < 8; i++) done += result(String(i + 1), String(i));
    done += result('["x"]', '"x"');
    await peer.expect(...done.split(/(?<=\n)/));
    await peer.expect(result("100", '"s100"'), result("300", '"s300"'));
    // The nine answers done at once went out in one write, not nine.
    assert.deepEqual(written, [
      done,
      result("100", '"s100"'),
      result("300", '"s300"'),
    ]);
  } finally {
    owner.write = write;
  }
});

Deno.test("the lines of one read: one not UTF-8 gets -32700, the others (one with a U+FFFD sent as such) their answers; a last line without \\n at half-close too", async () => {
  const { server, port } = startServer();
  await using _ = server;
  using peer = await Peer.connect(port);
  await peer.send(
    new Uint8Array([
      ...encoder.encode(call("add", [1, 1], 1)),
      ...encoder.encode('{"id":"'),
      0xff, // never in UTF-8
      0x0a,
      ...encoder.encode(call("echo", ["\ufffd is UTF-8"], 2)),
      ...encoder.encode(call("add", [3, 3], 3).trim()),
    ]),
  );
  await peer.conn.closeWrite();
  await peer.expect(
    result("2", "1"),
    error(-32700, "Parse error: not UTF-8"),
    result('["\ufffd is UTF-8"]', "2"),
    result("6", "3"),
  );
  await peer.ended();
});

Deno.test("--max-line counts UTF-8 bytes: a line of exactly the limit is answered; one byte more, after the lines before it, closes", async () => {
  const { server, port } = startServer({ maxLine: 100 });
  await using _ = server;
  using peer = await Peer.connect(port);
  // "é" is 2 bytes in UTF-8, 1 in JavaScript's string length.
  const echo = (bytes: number) => {
    const empty = call("echo", [""], 1).trimEnd();
    const text = "é".repeat((bytes - empty.length) >> 1) +
      "e".repeat((bytes - empty.length) & 1);
    const line = call("echo", [text], 1);
    assert.equal(encoder.encode(line).length, bytes + 1);
    return { line, answer: result(JSON.stringify([text]), "1") };
  };
  const fits = echo(100);
  await peer.send(fits.line.replace("\n", "\r\n"));
  await peer.expect(fits.answer);
  // One write: a call, then a line one byte too long, then another call.
  await peer.send(
    call("add", [1, 1], 2) + echo(101).line + call("add", [2, 2], 3),
  );
  await peer.expect(
    result("2", "2"),
    error(-32700, "Parse error: line longer than 100 bytes"),
  );
  await peer.ended();
});

Deno.test("half-close: calls still running are answered, then the server closes", async () => {
  const { server, port } = startServer();
  await using _ = server;
  using peer = await Peer.connect(port);
  await peer.send(call("sleep", [200], 1) + call("add", [1, 2], 2));
  await peer.conn.closeWrite();
  await peer.expect(result("3", "2"), result("200", "1"));
  await peer.ended();
});

Deno.test("a line over --max-line: -32700, then the connection closes; others go on", async () => {
  const { server, port } = startServer({ maxLine: 64 * 1024 });
  await using _ = server;
  using other = await Peer.connect(port);
  using peer = await Peer.connect(port);
  await peer.send(call("sleep", [100], "before"));
  // 4 MB in one line, written while we read: the server must not wait for
  // the whole of it, nor reset the connection before we read its answer.
  const huge = `{"jsonrpc":"2.0","method":"echo","params":["${
    "x".repeat(4_000_000)
  }"],"id":1}\n`;
  const writing = peer.send(huge).catch((error) => error);
  await peer.expect(error(-32700, "Parse error: line longer than 65536 bytes"));
  await peer.expect(result("100", '"before"')); // running calls still finish
  await peer.ended();
  const written = await writing;
  assert.ok(
    written === undefined || written instanceof Deno.errors.ConnectionReset ||
      written instanceof Deno.errors.BrokenPipe,
  );
  await other.send(call("add", [1, 2], 1));
  await other.expect(result("3", "1"));
});

Deno.test("deeply nested params (100,000 levels) are refused with -32600; no RangeError", async () => {
  const { server, port } = startServer({ maxLine: 4 * 1024 * 1024 });
  await using _ = server;
  using peer = await Peer.connect(port);
  const deep = "[".repeat(100_000) + "]".repeat(100_000);
  for (const method of ["echo", "add"]) {
    await peer.send(
      `{"jsonrpc":"2.0","method":"${method}","params":${deep},"id":1}\n`,
    );
    await peer.expect(
      error(-32600, "Invalid Request: nested deeper than 64 levels"),
    );
  }
  const objects = '{"a":'.repeat(100_000) + "1" + "}".repeat(100_000);
  await peer.send(
    `[{"jsonrpc":"2.0","method":"echo","params":${objects},"id":2}]\n`,
  );
  await peer.expect(
    error(-32600, "Invalid Request: nested deeper than 64 levels"),
  );
  // 64 levels are fine, and brackets inside strings do not count.
  const ok = "[".repeat(63) + '"[[[[{{{{\\"]]"' + "]".repeat(63);
  await peer.send(`{"jsonrpc":"2.0","method":"echo","params":${ok},"id":3}\n`);
  await peer.expect(result(ok, "3"));
});

Deno.test("hostile bytes: garbage, NULs, a lone surrogate escape, a huge number; the server goes on", async () => {
  const { server, port } = startServer();
  await using _ = server;
  using peer = await Peer.connect(port);
  const garbage = crypto.getRandomValues(new Uint8Array(1000)).map((byte) =>
    byte === 0x0a ? 0x20 : byte
  );
  await peer.send(garbage);
  await peer.send("\n");
  assert.match(
    await peer.line(),
    /^\{"jsonrpc":"2\.0","error":\{"code":-32700,"message":"Parse error: [^\n]*"\},"id":null\}\n$/,
  );
  await peer.send("\0\0\0\n");
  assert.match(await peer.line(), /"code":-32700/);
  await peer.send(call("echo", ["\ud800"], 1)); // JSON.stringify writes "\ud800"
  await peer.expect(result('["\\ud800"]', "1"));
  await peer.send(
    `{"jsonrpc":"2.0","method":"add","params":[1e999,1],"id":2}\n`,
  );
  await peer.expect(error(-32602, "Invalid params: the sum is too large", "2"));
});

Deno.test("200 concurrent connections, each with 20 pipelined calls, all matched by id", async () => {
  const { server, port } = startServer();
  await using _ = server;
  const clients = await Promise.all(
    Array.from(
      { length: 200 },
      () => RpcClient.connect({ port, maxReply: 64 * 1024 }),
    ),
  );
  try {
    await within(
      30_000,
      Promise.all(clients.map(async (client, c) => {
        const calls = Array.from(
          { length: 20 },
          (_, i) =>
            i % 4 === 3
              ? client.call("sleep", [i])
              : i % 2
              ? client.call("echo", { c, i })
              : client.call("add", [c, i]),
        );
        const answers = await Promise.all(calls);
        answers.forEach((answer, i) => {
          const expected = i % 4 === 3 ? i : i % 2 ? { c, i } : c + i;
          assert.deepEqual(answer, expected);
        });
      })),
      "4000 calls on 200 connections",
    );
  } finally {
    for (const client of clients) client.close();
  }
});

Deno.test("--max-connections: one more gets -32000 and is closed; a freed slot is reused", async () => {
  const { server, port, log } = startServer({ maxConnections: 2 });
  await using _ = server;
  using first = await Peer.connect(port);
  using second = await Peer.connect(port);
  await first.send(call("add", [1, 1], 1));
  await second.send(call("add", [1, 1], 1));
  await first.expect(result("2", "1"));
  await second.expect(result("2", "1"));
  using third = await Peer.connect(port);
  await third.expect(error(-32000, "Server busy"));
  await third.ended();
  assert.match(
    log.join("\n"),
    /refused 127\.0\.0\.1: 2 connections open \(--max-connections\)/,
  );
  const client = await runScript("rpc_client.ts", [
    "--port",
    String(port),
    "time",
  ]);
  assert.equal(client.code, 1);
  assert.equal(client.stderr, "rpc_client.ts: error -32000: Server busy\n");
  first[Symbol.dispose]();
  // The slot comes free once the server has seen the close.
  await within(
    5000,
    (async () => {
      while (true) {
        using fourth = await Peer.connect(port);
        await fourth.send(call("add", [2, 2], 4));
        if ((await fourth.line()) === result("4", "4")) return;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })(),
  );
});

Deno.test("--idle-timeout closes a silent connection, not one with a call running", async () => {
  const { server, port, log } = startServer({ idleTimeout: 0.3 });
  await using _ = server;
  using silent = await Peer.connect(port);
  using busy = await Peer.connect(port);
  await busy.send(call("sleep", [1000], 1));
  await silent.ended(3000);
  await busy.expect(result("1000", "1")); // ran past the idle timeout
  await busy.ended(3000);
  assert.ok(log.some((line) => line.endsWith("closed, idle for 0.3 s")));
});

Deno.test("unsent answers past max-queue + max-line: the client is dropped at once", async () => {
  const { server, port, log } = startServer({
    maxLine: 64 * 1024,
    maxQueue: 1024,
    maxInFlight: 400,
  });
  await using _ = server;
  using other = await Peer.connect(port);
  using greedy = await Peer.connect(port);
  // 300 sleeps, each with a 60 KB id to echo back: 18 MB of answers due in
  // 300 ms, more than the kernel buffers hold, and never read.
  const id = JSON.stringify("i".repeat(60_000));
  let lines = "";
  for (let i = 0; i < 300; i++) {
    lines += call("sleep", [300], "X").replace(
      '"X"',
      id.slice(0, -1) + i + '"',
    );
  }
  await greedy.send(lines).catch(() => {});
  await within(
    10_000,
    (async () => {
      while (!log.some((line) => line.includes("not reading its answers"))) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })(),
    "the drop",
  );
  await other.send(call("add", [1, 2], 1));
  await other.expect(result("3", "1"));
});

Deno.test("a client that never reads: reading stops, memory stays bounded, others are served, idle drops it", async () => {
  const server = await startScript("rpc_server.ts", [
    "--port",
    "0",
    "--idle-timeout",
    "1",
  ]);
  try {
    const rss = async () => {
      const ps = await runTool("ps", [
        "-o",
        "rss=",
        "-p",
        String(server.child.pid),
      ]);
      return Number(new TextDecoder().decode(ps.stdout).trim()) * 1024;
    };
    using helper = await Peer.connect(server.port);
    await helper.send(call("add", [0, 0], 0));
    await helper.expect(result("0", "0"));
    const before = await rss();
    using stalled = await Peer.connect(server.port);
    const line = call("echo", ["e".repeat(64 * 1024)], 1);
    let sent = 0;
    let failed: unknown;
    const flooding = (async () => {
      try {
        while (sent < 5000) { // 330 MB if nothing stopped us
          await stalled.send(line);
          sent++;
        }
      } catch (error) {
        failed = error;
      }
    })();
    // Wait until our writes stop completing: the server has stopped reading.
    let last = -1;
    await within(
      20_000,
      (async () => {
        while (sent !== last) {
          last = sent;
          await new Promise((resolve) => setTimeout(resolve, 300));
        }
      })(),
      "the server to stop reading",
    );
    const stalledAt = sent;
    const grown = (await rss()) - before;
    // Meanwhile another client is served at once.
    const pingStarted = performance.now();
    await helper.send(call("add", [1, 2], 2));
    await helper.expect(result("3", "2"));
    const pingMs = performance.now() - pingStarted;
    // After 1 s with nothing moving, the server drops the reader.
    await within(10_000, flooding, "the drop");
    assert.ok(
      failed instanceof Deno.errors.ConnectionReset ||
        failed instanceof Deno.errors.BrokenPipe,
      String(failed),
    );
    const mb = (bytes: number) => (bytes / 1e6).toFixed(1);
    console.log(
      `  stopped reading after ${stalledAt} calls (${
        mb(stalledAt * line.length)
      } MB); RSS grew ${mb(grown)} MB; another call took ${
        pingMs.toFixed(1)
      } ms`,
    );
    assert.ok(stalledAt < 1000, `${stalledAt} calls accepted`);
    assert.ok(grown < 96e6, `server RSS grew by ${grown} bytes`);
    assert.ok(pingMs < 1000);
    await helper.send(call("add", [2, 2], 3));
    await helper.expect(result("4", "3"));
    const output = await server.stop();
    assert.match(output.stderr, /closed, idle for 1 s/);
  } finally {
    await server.stop("SIGKILL");
  }
});

// The tutorials' way: a plain socket, sendall, readline. Ten lines.
const PYTHON_CLIENT = `
import json, socket, sys
f = socket.create_connection(("127.0.0.1", int(sys.argv[1]))).makefile("rwb")
def send(message): f.write(json.dumps(message).encode() + b"\\n"); f.flush()
send({"jsonrpc": "2.0", "method": "add", "params": [2, 3], "id": 1})
print(json.loads(f.readline()))
send([{"jsonrpc": "2.0", "method": "echo", "params": ["hi"], "id": "b"}, {"jsonrpc": "2.0", "method": "time"}])
print(json.loads(f.readline()))
send({"jsonrpc": "2.0", "method": "sleep", "params": [1]})  # a notification: no answer
send({"jsonrpc": "2.0", "method": "add", "params": {"a": 1, "b": 2}, "id": 12345678901234567890})
print(json.loads(f.readline()))
`;
const havePython = await hasCommand("python3");

Deno.test({
  name: "a ten-line Python socket client: a call, a batch, a notification",
  ignore: !havePython,
  async fn() {
    const { server, port } = startServer();
    await using _ = server;
    const run = await runTool("python3", ["-c", PYTHON_CLIENT, String(port)]);
    assert.equal(run.stderr, "");
    assert.equal(
      new TextDecoder().decode(run.stdout),
      "{'jsonrpc': '2.0', 'result': 5, 'id': 1}\n" +
        "[{'jsonrpc': '2.0', 'result': ['hi'], 'id': 'b'}]\n" +
        "{'jsonrpc': '2.0', 'result': 3, 'id': 12345678901234567890}\n",
    );
  },
});
if (!havePython) skipBecause("python3 not installed");

const haveNc = await hasCommand("nc");
Deno.test({
  name: "nc is a client too",
  ignore: !haveNc,
  async fn() {
    const { server, port } = startServer();
    await using _ = server;
    const run = await runTool(
      "nc",
      ["-N", "127.0.0.1", String(port)],
      call("sleep", [100], 1) + call("add", [2, 3], 2),
    );
    assert.equal(
      new TextDecoder().decode(run.stdout),
      result("5", "2") + result("100", "1"),
    );
  },
});
if (!haveNc) skipBecause("nc not installed");

Deno.test("RpcClient: concurrent calls resolve by id; error answers reject with the code", async () => {
  const { server, port } = startServer();
  await using _ = server;
  using client = await RpcClient.connect({ port });
  const order: string[] = [];
  const slow = client.call("sleep", [300]).then((
    value,
  ) => (order.push("sleep"), value));
  const fast = client.call("add", { a: 1, b: 2 }).then((
    value,
  ) => (order.push("add"), value));
  assert.deepEqual(await Promise.all([slow, fast]), [300, 3]);
  assert.deepEqual(order, ["add", "sleep"]);
  await assert.rejects(
    client.call("nope"),
    (thrown: rpc.RpcError) =>
      thrown instanceof rpc.RpcError && thrown.code === -32601,
  );
  await client.notify("sleep", [1]);
  assert.equal(
    await client.call("echo", ["still fine"]).then((value) =>
      JSON.stringify(value)
    ),
    '["still fine"]',
  );
  client.close();
  await assert.rejects(client.call("add", [1, 2]), Failure);
});

Deno.test("parseParams: JSON when it parses, else a string; --named", () => {
  assert.equal(parseParams([]), undefined);
  assert.deepEqual(
    parseParams(["2", "x", '"3"', "[1]", '{"a":1}', "null", "-1", "1e3"]),
    [2, "x", "3", [1], { a: 1 }, null, -1, 1000],
  );
  assert.deepEqual(parseParams(["a=1", "b=two", "c=", "d=x=y"], true), {
    a: 1,
    b: "two",
    c: "",
    d: "x=y",
  });
  assert.throws(
    () => parseParams(["a"], true),
    /--named wants NAME=VALUE, got 'a'/,
  );
});

Deno.test("printableJson (rpc_client's output): control, bidi and format characters escaped; still the same JSON", () => {
  const value = [
    "\x1b[2J\x9b31m\u202eevil\u200b\u{e0041}",
    "ok é 中",
  ];
  const text = JSON.stringify(value);
  const safe = printableJson(value, 0);
  assert.equal(
    safe,
    '["\\u001b[2J\\u009b31m\\u202eevil\\u200b\\udb40\\udc41","ok é 中"]',
  );
  assert.deepEqual(JSON.parse(safe), JSON.parse(text));
});

Deno.test("rpc_client.ts: results on stdout, exit 0; error answer, refused, timeout: one line, exit 1", async () => {
  const { server, port } = startServer();
  await using _ = server;
  const client = (...args: string[]) =>
    runScript("rpc_client.ts", ["--port", String(port), ...args]);
  const cases: [string[], number, string, string][] = [
    [["add", "2", "3"], 0, "5\n", ""],
    [["add", "--", "-1", "0.5"], 0, "-0.5\n", ""],
    [["--named", "add", "a=2", "b=3"], 0, "5\n", ""],
    [
      ["echo", "hello", '{"a":[1]}', "\u202e"],
      0,
      '["hello",{"a":[1]},"\\u202e"]\n',
      "",
    ],
    [["time"], 0, "", ""],
    [["--notify", "sleep", "10"], 0, "", ""],
    [["nope"], 1, "", "rpc_client.ts: error -32601: Method not found: nope\n"],
    [
      ["add", "1"],
      1,
      "",
      'rpc_client.ts: error -32602: Invalid params: add takes two numbers, [a, b] or {"a": a, "b": b}\n',
    ],
    [
      ["--timeout", "0.3", "sleep", "3000"],
      1,
      "",
      "rpc_client.ts: no reply: timed out after 0.3 s\n",
    ],
    [
      [],
      2,
      "",
      "rpc_client.ts: missing METHOD\nTry 'rpc_client.ts --help' for more information.\n",
    ],
    [
      ["--named", "add", "x"],
      2,
      "",
      "rpc_client.ts: --named wants NAME=VALUE, got 'x'\nTry 'rpc_client.ts --help' for more information.\n",
    ],
  ];
  await Promise.all(cases.map(async ([args, code, stdout, stderr]) => {
    const run = await client(...args);
    assert.equal(run.code, code, args.join(" "));
    if (args[0] === "time") assert.match(run.stdout, /^"\d{4}-.*Z"\n$/);
    else assert.equal(run.stdout, stdout, args.join(" "));
    assert.equal(run.stderr, stderr, args.join(" "));
  }));
  const refused = closedPort();
  const run = await runScript("rpc_client.ts", [
    "--port",
    String(refused),
    "add",
    "1",
    "2",
  ]);
  assert.equal(run.code, 1);
  assert.equal(
    run.stderr,
    `rpc_client.ts: cannot connect to 127.0.0.1:${refused}: connection refused\n`,
  );
});

Deno.test("rpc_client.ts: a connect that times out says so, and IPv6 targets are in brackets", async () => {
  const unanswered = await startUnansweredPort();
  try {
    const started = performance.now();
    const run = await runScript("rpc_client.ts", [
      "--port",
      String(unanswered.addr.port),
      "--timeout",
      "0.5",
      "time",
    ]);
    assert.equal(run.code, 1);
    assert.equal(
      run.stderr,
      `rpc_client.ts: cannot connect to 127.0.0.1:${unanswered.addr.port}: timed out after 0.5 s\n`,
    );
    assert.ok(performance.now() - started < 10_000);
  } finally {
    unanswered.close();
  }
  const listener = Deno.listen({ hostname: "::1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  const run = await runScript("rpc_client.ts", [
    "--hostname",
    "::1",
    "--port",
    String(port),
    "time",
  ]);
  assert.equal(
    run.stderr,
    `rpc_client.ts: cannot connect to [::1]:${port}: connection refused\n`,
  );
});

Deno.test("rpc_server.ts --max-per-address: one host's extra connection gets -32000", async () => {
  const server = await startScript("rpc_server.ts", [
    "--port",
    "0",
    "--max-per-address",
    "1",
  ]);
  try {
    using first = await Peer.connect(server.port);
    await first.send(call("add", [1, 1], 1));
    await first.expect(result("2", "1"));
    using second = await Peer.connect(server.port);
    await second.expect(error(-32000, "Server busy"));
    await second.ended();
    await first.send(call("add", [2, 2], 2)); // the first is still served
    await first.expect(result("4", "2"));
  } finally {
    const output = await server.stop();
    assert.equal(output.code, 0);
    assert.match(
      output.stderr,
      /^refused 127\.0\.0\.1: 1 connections from it \(--max-per-address\)\n/,
    );
  }
});

Deno.test("rpc_client.ts against a server that answers rubbish or hangs up: one line, exit 1", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const serving = (async () => {
    for (
      const reply of [
        "not json\n",
        '{"jsonrpc":"2.0","result":1,"id":99}\n',
        "",
      ]
    ) {
      const conn = await listener.accept();
      await conn.read(new Uint8Array(4096)); // the call
      await writeAll(conn, encoder.encode(reply));
      conn.close();
    }
  })();
  try {
    const expected = [
      /^rpc_client\.ts: bad reply: Parse error: .*\n$/,
      /^rpc_client\.ts: answer to a call never made \(id 99\)\n$/,
      /^rpc_client\.ts: no reply: the server closed the connection\n$/,
    ];
    for (const pattern of expected) {
      const run = await runScript("rpc_client.ts", [
        "--port",
        String(listener.addr.port),
        "add",
        "1",
        "2",
      ]);
      assert.equal(run.code, 1);
      assert.match(run.stderr, pattern);
    }
    await serving;
  } finally {
    listener.close();
  }
});

Deno.test("::1: the server listens and answers over IPv6, client and server as subprocesses", async () => {
  const server = await startScript("rpc_server.ts", [
    "--hostname",
    "::1",
    "--port",
    "0",
  ]);
  try {
    assert.equal(
      server.listeningLine,
      `Listening on tcp://[::1]:${server.port}`,
    );
    const run = await runScript("rpc_client.ts", [
      "--hostname",
      "::1",
      "--port",
      String(server.port),
      "echo",
      "six",
    ]);
    assert.equal(run.stdout, '["six"]\n');
    assert.equal(run.code, 0);
    using peer = await Peer.connect(server.port, "::1");
    await peer.send(call("add", [3, 3], 6));
    await peer.expect(result("6", "6"));
  } finally {
    await server.stop("SIGKILL");
  }
});

Deno.test("rpc_server.ts: SIGTERM with sleeps in flight exits 0 within 2 s", async () => {
  const server = await startScript("rpc_server.ts", ["--port", "0"]);
  try {
    assert.equal(
      server.listeningLine,
      `Listening on tcp://127.0.0.1:${server.port}`,
    );
    using peer = await Peer.connect(server.port);
    let lines = "";
    for (let i = 0; i < 50; i++) lines += call("sleep", [MAX_SLEEP_MS], i);
    await peer.send(lines + call("add", [1, 1], "ready"));
    await peer.expect(result("2", '"ready"'));
    const started = performance.now();
    const output = await server.stop("SIGTERM");
    const elapsed = performance.now() - started;
    assert.equal(output.code, 0);
    assert.ok(elapsed < 2000, `exit took ${elapsed} ms`);
    assert.equal(output.stdout, `${server.listeningLine}\n`);
    assert.equal(output.stderr, ""); // cancelled sleeps are not errors
    await peer.ended();
  } finally {
    await server.stop("SIGKILL");
  }
});

Deno.test("close() cancels every sleep in flight: nothing keeps the process alive", async () => {
  // In a process of its own that ends when nothing is pending: a sleep
  // left running would keep it alive for 10 s.
  const program = `
    import { startRpcServer } from ${
    JSON.stringify(new URL("../scripts/rpc_server.ts", import.meta.url).href)
  };
    const server = startRpcServer({ port: 0, maxInFlight: 10 });
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
    const call = (id) => JSON.stringify({ jsonrpc: "2.0", method: "sleep", params: [10000], id });
    const batch = [10, 11, 12, 13, 14].map(call).join(","); // waiting for a turn
    const lines = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9].map(call).join("\\n");
    await conn.write(new TextEncoder().encode(lines + "\\n[" + batch + "]\\n"));
    await new Promise((resolve) => setTimeout(resolve, 200));
    await server.close();
    console.log(await conn.read(new Uint8Array(100))); // null: closed, unanswered
    conn.close();
  `;
  const started = performance.now();
  const run = await runTool(
    Deno.execPath(),
    ["eval", program],
    undefined,
    20_000,
  );
  const elapsed = performance.now() - started;
  assert.equal(run.stderr, "");
  assert.equal(new TextDecoder().decode(run.stdout), "null\n");
  assert.ok(elapsed < 5000, `the process took ${elapsed} ms to end`);
});

Deno.test("CLI: bad options exit 2 with one line and a hint", async () => {
  const cases: [string, string[], string][] = [
    [
      "rpc_server.ts",
      ["--port", "70000"],
      "--port must be a whole number from 0 to 65535, got '70000'",
    ],
    [
      "rpc_server.ts",
      ["--max-line", "10"],
      "--max-line must be a whole number from 64 to 67108864, got '10'",
    ],
    [
      "rpc_server.ts",
      ["--max-in-flight", "0"],
      "--max-in-flight must be a whole number from 1 to 9007199254740991, got '0'",
    ],
    [
      "rpc_server.ts",
      ["--idle-timeout", "0"],
      "--idle-timeout must be a number of seconds above 0 (up to 86400), got '0'",
    ],
    ["rpc_server.ts", ["extra"], "unexpected argument 'extra'"],
    [
      "rpc_server.ts",
      ["--max-connections", "0"],
      "--max-connections must be a whole number from 1 to 9007199254740991, got '0'",
    ],
    [
      "rpc_client.ts",
      ["--timeout", "x", "add"],
      "--timeout must be a number of seconds above 0 (up to 86400), got 'x'",
    ],
    ["rpc_client.ts", ["add", "-1"], "Unknown option '-1'"],
  ];
  await Promise.all(cases.map(async ([script, args, message]) => {
    const run = await runScript(script, args);
    assert.equal(run.code, 2, `${script} ${args.join(" ")}`);
    assert.equal(run.stdout, "");
    assert.equal(
      run.stderr,
      `${script}: ${message}\nTry '${script} --help' for more information.\n`,
    );
  }));
  for (const script of ["rpc_server.ts", "rpc_client.ts"]) {
    const help = await runScript(script, ["--help"]);
    assert.equal(help.code, 0);
    if (script === "rpc_server.ts") { // a connection may hold MiBs: fewer
      assert.match(help.stdout, /--max-connections N .*\n.*\(default 1000\)/);
      assert.match(help.stdout, /--max-per-address N .*\n.*\(default 200\)/);
    }
    assert.match(
      help.stdout,
      new RegExp(`^Usage: ${script.replace(".", "\\.")} `),
    );
  }
});
