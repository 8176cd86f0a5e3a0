// Tests for upload_server.ts, upload_client.ts and lib/file_store.ts: every
// SPEC "Upload" case over real loopback sockets, in-process and as
// subprocesses started exactly as the headers' Run lines say.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  createUpload,
  FileExistsError,
  fileNameProblem,
} from "../lib/file_store.ts";
import { startUploadServer } from "../scripts/upload_server.ts";
import { uploadFile } from "../scripts/upload_client.ts";
import {
  closedPort,
  concat,
  hasCommand,
  makeTestCerts,
  randomBytes,
  readAll,
  readUntil,
  runScript,
  runTool,
  scriptPath,
  skipBecause,
  startPeer,
  startScript,
  startUnansweredPort,
} from "./helpers.ts";
import { writeAll } from "../lib/io.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const HELLO_SHA256 =
  "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Names in a directory, sorted. */
async function listDir(dir: string): Promise<string[]> {
  const names = [];
  for await (const entry of Deno.readDir(dir)) names.push(entry.name);
  return names.sort();
}

/** Waits (bounded) until `condition` holds, checking every 10 ms. */
async function waitUntil(
  condition: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 5000,
) {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** An in-process server on port 0 in a fresh temporary directory. */
async function withServer(
  options: {
    maxSize?: number;
    overwrite?: boolean;
    idleTimeout?: number;
    minRate?: number;
    maxUploads?: number;
  },
  test: (context: {
    port: number;
    dir: string;
    logs: string[];
    waitForLog: (pattern: RegExp) => Promise<string>;
  }) => Promise<void>,
) {
  const dir = await Deno.makeTempDir({ prefix: "upload_test_" });
  const logs: string[] = [];
  const server = await startUploadServer({
    dir,
    port: 0,
    maxSize: options.maxSize,
    overwrite: options.overwrite,
    idleTimeoutSeconds: options.idleTimeout,
    minRate: options.minRate,
    maxUploads: options.maxUploads,
    log: (line) => logs.push(line),
  });
  const waitForLog = async (pattern: RegExp) => {
    await waitUntil(() => logs.some((l) => pattern.test(l)), `log ${pattern}`);
    return logs.find((l) => pattern.test(l))!;
  };
  try {
    await test({ port: server.addr.port, dir, logs, waitForLog });
  } finally {
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * Sends `bytes`, half-closes (unless told not to) and returns everything the
 * server sent until it closed.
 */
async function exchange(
  port: number,
  bytes: string | Uint8Array,
  { halfClose = true } = {},
): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await writeAll(
      conn,
      typeof bytes === "string" ? encoder.encode(bytes) : bytes,
    );
    if (halfClose) await conn.closeWrite();
    return decoder.decode(await readAll(conn));
  } finally {
    try {
      conn.close();
    } catch {
      // readAll's stream already closed it.
    }
  }
}

// ---------------------------------------------------------------- names

Deno.test("fileNameProblem accepts plain names and refuses every unsafe one", () => {
  for (
    const ok of [
      "hi.txt",
      "with spaces.txt",
      "日本語 ファイル.txt",
      ".hidden",
      "a".repeat(255),
    ]
  ) {
    assert.equal(fileNameProblem(ok), null, ok);
  }
  const refused: [string, string][] = [
    ["", "empty file name"],
    [".", "file name '.' not allowed"],
    ["..", "file name '..' not allowed"],
    ["a/b", "file name must not contain '/' or '\\'"],
    ["/etc/passwd", "file name must not contain '/' or '\\'"],
    ["a\\b", "file name must not contain '/' or '\\'"],
    ["a\nb", "file name must not contain control characters"],
    ["a\x00b", "file name must not contain control characters"],
    ["a\x7fb", "file name must not contain control characters"],
    ["a\u0085b", "file name must not contain control characters"],
    [" ", "file name must not be only whitespace"],
    ["\t \u3000", "file name must not be only whitespace"],
    [
      "invoice\u202etxt.exe",
      "file name must not contain invisible formatting characters (bidi, zero-width)",
    ],
    [
      "pay\u200bpal.txt",
      "file name must not contain invisible formatting characters (bidi, zero-width)",
    ],
    [
      "..\u2215x",
      "file name must not contain characters that look like '/' or '\\'",
    ],
    ["a".repeat(256), "file name longer than 255 bytes"],
    ["日".repeat(86), "file name longer than 255 bytes"], // 258 bytes
    [
      ".upload-0123456789abcdef0123456789abcdef.tmp",
      "file name reserved for temporary files",
    ],
  ];
  for (const [name, reason] of refused) {
    assert.equal(fileNameProblem(name), reason, JSON.stringify(name));
  }
});

// ---------------------------------------------------------------- server

Deno.test({
  name: "nc: printf 'UPLOAD 5 hi.txt\\nhello' | nc -N is a complete upload",
  ignore: !(await hasCommand("nc")),
  fn: async () => {
    await withServer({}, async ({ port, dir, waitForLog }) => {
      const result = await runTool(
        "nc",
        ["-N", "127.0.0.1", String(port)],
        "UPLOAD 5 hi.txt\nhello",
      );
      assert.equal(decoder.decode(result.stdout), `200 OK 5 ${HELLO_SHA256}\n`);
      assert.equal(await Deno.readTextFile(`${dir}/hi.txt`), "hello");
      assert.deepEqual(await listDir(dir), ["hi.txt"]);
      const line = await waitForLog(/"hi\.txt"/);
      assert.match(
        line,
        /^127\.0\.0\.1:\d+ "hi\.txt" 5 bytes \d+\.\d{3} s \d+\.\d MB\/s: 200 OK 5 /,
      );
    });
  },
});
if (!(await hasCommand("nc"))) skipBecause("nc not installed");

Deno.test("names with spaces and CJK, \\r\\n header, empty file", async () => {
  await withServer({}, async ({ port, dir }) => {
    const cases: [string, Uint8Array][] = [
      ["my holiday photo.jpg", randomBytes(1000)],
      ["  leading and trailing  ", encoder.encode("spaces")],
      ["日本語のファイル名.txt", encoder.encode("こんにちは")],
      ["a".repeat(255), encoder.encode("longest name")],
      ["empty", new Uint8Array()],
    ];
    for (const [name, body] of cases) {
      const reply = await exchange(
        port,
        concat(`UPLOAD ${body.length} ${name}\r\n`, body),
      );
      assert.equal(reply, `200 OK ${body.length} ${sha256(body)}\n`, name);
      assert.deepEqual(await Deno.readFile(`${dir}/${name}`), body);
    }
    assert.equal((await listDir(dir)).length, cases.length);
  });
});

Deno.test("each unsafe name gets 400 and nothing is written", async () => {
  await withServer({}, async ({ port, dir }) => {
    const unsafe: [string, string][] = [
      ["", "400 empty file name"],
      [".", "400 file name '.' not allowed"],
      ["..", "400 file name '..' not allowed"],
      ["../escape.txt", "400 file name must not contain '/' or '\\'"],
      ["/tmp/abs.txt", "400 file name must not contain '/' or '\\'"],
      ["..\\win.txt", "400 file name must not contain '/' or '\\'"],
      ["tab\there", "400 file name must not contain control characters"],
      ["bell\x07", "400 file name must not contain control characters"],
      ["cr\rin middle", "400 file name must not contain control characters"],
      ["x".repeat(256), "400 file name longer than 255 bytes"],
      ["名".repeat(86), "400 file name longer than 255 bytes"],
    ];
    for (const [name, expected] of unsafe) {
      const reply = await exchange(port, `UPLOAD 5 ${name}\nhello`);
      assert.equal(reply, expected + "\n", JSON.stringify(name));
    }
    assert.deepEqual(await listDir(dir), []);
    // The server is still fine.
    assert.equal(
      await exchange(port, "UPLOAD 5 ok\nhello"),
      `200 OK 5 ${HELLO_SHA256}\n`,
    );
  });
});

Deno.test("malformed headers and invalid UTF-8 get 400", async () => {
  await withServer({}, async ({ port, dir }) => {
    const malformed = "400 malformed header, expected 'UPLOAD <size> <name>'\n";
    for (
      const header of [
        "PUT 5 x",
        "upload 5 x",
        "UPLOAD",
        "UPLOAD 5",
        "UPLOAD x name",
        "UPLOAD -1 name",
        "UPLOAD 5x name",
        "UPLOAD  5 name",
        "",
      ]
    ) {
      assert.equal(
        await exchange(port, header + "\nhello"),
        malformed,
        JSON.stringify(header),
      );
    }
    const invalid = concat(
      "UPLOAD 5 bad",
      new Uint8Array([0xff, 0xfe]),
      "\nhello",
    );
    assert.equal(
      await exchange(port, invalid),
      "400 header is not valid UTF-8\n",
    );
    assert.deepEqual(await listDir(dir), []);
  });
});

Deno.test("an endless header line gets 400 without waiting for its end", async () => {
  await withServer({}, async ({ port, dir }) => {
    // 64 KiB without a newline, and the connection stays open: the server
    // must answer at the limit, not wait for more.
    const reply = await exchange(port, "UPLOAD 5 " + "n".repeat(65536), {
      halfClose: false,
    });
    assert.equal(reply, "400 header line longer than 4096 bytes\n");
    assert.deepEqual(await listDir(dir), []);
  });
});

Deno.test("413 is answered before the body is sent", async () => {
  await withServer({ maxSize: 10 }, async ({ port, dir }) => {
    // Only the header, connection left open: the answer must come anyway.
    assert.equal(
      await exchange(port, "UPLOAD 11 big.bin\n", { halfClose: false }),
      "413 file too large: 11 bytes, limit 10\n",
    );
    assert.equal(
      await exchange(port, "UPLOAD 99999999999999999999 huge.bin\n", {
        halfClose: false,
      }),
      "413 file too large: 99999999999999999999 bytes, limit 10\n",
    );
    // Exactly the limit is fine.
    assert.equal(
      await exchange(port, "UPLOAD 10 ten\n0123456789"),
      `200 OK 10 ${sha256(encoder.encode("0123456789"))}\n`,
    );
    assert.deepEqual(await listDir(dir), ["ten"]);
  });
});

Deno.test("a client sending a large refused body still reads the 413 (no reset)", async () => {
  await withServer({ maxSize: 1000 }, async ({ port }) => {
    // 4 MiB body after a refused header: the server lingers, discarding,
    // so its answer is not destroyed by a reset.
    const body = new Uint8Array(4 * 1024 * 1024);
    const reply = await exchange(
      port,
      concat(`UPLOAD ${body.length} big\n`, body),
    );
    assert.equal(
      reply,
      `413 file too large: ${body.length} bytes, limit 1000\n`,
    );
  });
});

Deno.test("409 when the name exists (before the body), --overwrite replaces", async () => {
  await withServer({}, async ({ port, dir }) => {
    await Deno.writeTextFile(`${dir}/taken.txt`, "original");
    assert.equal(
      await exchange(port, "UPLOAD 5 taken.txt\n", { halfClose: false }),
      "409 'taken.txt' already exists\n",
    );
    assert.equal(await Deno.readTextFile(`${dir}/taken.txt`), "original");
    assert.deepEqual(await listDir(dir), ["taken.txt"]);
  });
  await withServer({ overwrite: true }, async ({ port, dir }) => {
    await Deno.writeTextFile(`${dir}/taken.txt`, "original");
    assert.equal(
      await exchange(port, "UPLOAD 5 taken.txt\nhello"),
      `200 OK 5 ${HELLO_SHA256}\n`,
    );
    assert.equal(await Deno.readTextFile(`${dir}/taken.txt`), "hello");
    assert.deepEqual(await listDir(dir), ["taken.txt"]);
  });
});

Deno.test("nothing is written outside --dir, even through a planted symbolic link", async () => {
  const outside = await Deno.makeTempDir({ prefix: "upload_outside_" });
  try {
    await Deno.writeTextFile(`${outside}/secret`, "keep me");
    await withServer({ overwrite: true }, async ({ port, dir }) => {
      await Deno.symlink(`${outside}/secret`, `${dir}/link`);
      assert.equal(
        await exchange(port, "UPLOAD 5 link\nhello"),
        `200 OK 5 ${HELLO_SHA256}\n`,
      );
      // The link itself was replaced by the new file; its target is intact.
      assert.equal((await Deno.lstat(`${dir}/link`)).isFile, true);
      assert.equal(await Deno.readTextFile(`${outside}/secret`), "keep me");
    });
  } finally {
    await Deno.remove(outside, { recursive: true });
  }
});

Deno.test("extra bytes after <size> are not part of the file", async () => {
  await withServer({}, async ({ port, dir }) => {
    // In the same packet as the header…
    assert.equal(
      await exchange(port, "UPLOAD 5 x.txt\nhelloEXTRA BYTES"),
      `200 OK 5 ${HELLO_SHA256}\n`,
    );
    assert.equal(await Deno.readTextFile(`${dir}/x.txt`), "hello");
    // …and in a later read, once the server is reading the body.
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      await writeAll(conn, encoder.encode("UPLOAD 5 y.txt\n"));
      await waitUntil(
        async () => (await listDir(dir)).length === 2,
        "temp file",
      );
      await writeAll(conn, encoder.encode("helloEXTRA BYTES"));
      const reply = await readUntil(conn, "\n");
      assert.equal(reply, `200 OK 5 ${HELLO_SHA256}\n`);
    } finally {
      conn.close();
    }
    assert.equal(await Deno.readTextFile(`${dir}/y.txt`), "hello");
  });
});

Deno.test("a short body (client half-closes early) gets 400 and leaves nothing", async () => {
  await withServer({}, async ({ port, dir }) => {
    assert.equal(
      await exchange(port, "UPLOAD 10 short\nhello"),
      "400 body ended after 5 of 10 bytes\n",
    );
    assert.deepEqual(await listDir(dir), []);
  });
});

Deno.test("a client that closes mid-body leaves no file and no temporary file", async () => {
  await withServer({}, async ({ port, dir, waitForLog }) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(concat("UPLOAD 1000000 gone.bin\n", randomBytes(300_000)));
    // The temporary file exists while the upload runs…
    await waitUntil(async () => (await listDir(dir)).length === 1, "temp file");
    assert.match((await listDir(dir))[0], /^\.upload-[0-9a-f]{32}\.tmp$/);
    conn.close();
    const line = await waitForLog(/"gone\.bin"/);
    assert.match(
      line,
      /: client vanished|: 400 body ended after \d+ of 1000000 bytes/,
    );
    // …and is gone once the server has given up on the client.
    assert.deepEqual(await listDir(dir), []);
  });
});

Deno.test("a silent client gets 408 after --idle-timeout and is closed, leaving nothing", async () => {
  await withServer({ idleTimeout: 0.3 }, async ({ port, dir, waitForLog }) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      await conn.write(encoder.encode("UPLOAD 100 slow.bin\nonly a part"));
      const started = Date.now();
      // The server answers 408 and closes: our reads end after the line.
      const reply = await readAll(conn).catch(() => new Uint8Array());
      assert.equal(decoder.decode(reply), "408 idle for 0.3 s\n");
      const elapsed = Date.now() - started;
      assert.ok(
        elapsed >= 250 && elapsed < 3000,
        `dropped after ${elapsed} ms`,
      );
      assert.match(await waitForLog(/"slow\.bin"/), /: 408 idle for 0\.3 s$/);
      assert.deepEqual(await listDir(dir), []);
    } finally {
      conn.close();
    }
    // A silent client that never sends a header is dropped too.
    const quiet = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      assert.equal(
        decoder.decode(await readAll(quiet)),
        "408 no complete header within 0.3 s\n",
      );
    } finally {
      quiet.close();
    }
  });
});

Deno.test("a header trickled one byte at a time gets 408 after --idle-timeout", async () => {
  await withServer({ idleTimeout: 0.5 }, async ({ port, dir, waitForLog }) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const started = Date.now();
    // One byte every 100 ms never leaves the connection idle for 0.5 s; the
    // trickle stops by itself after 4 s so the test cannot hang.
    let sent = 0;
    const trickle = setInterval(() => {
      if (++sent > 40) return clearInterval(trickle);
      conn.write(encoder.encode("U")).catch(() => clearInterval(trickle));
    }, 100);
    try {
      const reply = await readUntil(conn, "\n");
      assert.equal(reply, "408 no complete header within 0.5 s\n");
      const elapsed = Date.now() - started;
      assert.ok(elapsed < 2000, `dropped after ${elapsed} ms`);
      assert.match(
        await waitForLog(/: 408 /),
        /: 408 no complete header within 0\.5 s$/,
      );
      assert.deepEqual(await listDir(dir), []);
    } finally {
      clearInterval(trickle);
      conn.close();
    }
  });
});

Deno.test("a body trickled below --min-rate gets 408, though it is never idle", async () => {
  // The attack: a valid header, then a byte just often enough never to be
  // idle, holding a connection, a temporary file and a slot for ever. With
  // --min-rate 100 and 0.5 s of grace, 10 bytes/s is dropped within about
  // a second; the trickle stops by itself after 6 s so the test cannot hang.
  await withServer(
    { idleTimeout: 0.5, minRate: 100 },
    async ({ port, dir, waitForLog }) => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      const started = Date.now();
      await writeAll(conn, encoder.encode("UPLOAD 1000 trickle.bin\n"));
      let sent = 0;
      const trickle = setInterval(() => {
        if (++sent > 60) return clearInterval(trickle);
        conn.write(encoder.encode("x")).catch(() => clearInterval(trickle));
      }, 100);
      try {
        const reply = await readUntil(conn, "\n");
        assert.equal(reply, "408 slower than 100 bytes/s\n");
        const elapsed = Date.now() - started;
        assert.ok(elapsed < 3000, `dropped after ${elapsed} ms`);
        assert.match(
          await waitForLog(/"trickle\.bin"/),
          /"trickle\.bin" \d+ bytes .*: 408 slower than 100 bytes\/s$/,
        );
        assert.deepEqual(await listDir(dir), []);
      } finally {
        clearInterval(trickle);
        conn.close();
      }
      // A client at full speed is not troubled by the rate.
      assert.equal(
        await exchange(port, concat("UPLOAD 5 fast.txt\nhello")),
        `200 OK 5 ${HELLO_SHA256}\n`,
      );
    },
  );
});

Deno.test("--max-uploads: one upload too many gets 503 at once; a freed slot serves again", async () => {
  await withServer({ maxUploads: 2 }, async ({ port, dir, waitForLog }) => {
    const stalled = await Promise.all([0, 1].map(async (i) => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      await writeAll(conn, encoder.encode(`UPLOAD 100 stalled ${i}\npart`));
      return conn;
    }));
    try {
      await waitUntil(async () => (await listDir(dir)).length === 2, "temps");
      // The third is refused before its header is even read…
      assert.equal(
        await exchange(port, "UPLOAD 5 third.txt\nhello"),
        "503 too many uploads at once (2)\n",
      );
      assert.match(
        await waitForLog(/: 503 /),
        /^127\.0\.0\.1:\d+ "" 0 bytes .*: 503 too many uploads at once \(2\)$/,
      );
      // …and once one of the two leaves, uploads are served again.
      stalled.pop()!.close();
      await waitUntil(async () => (await listDir(dir)).length === 1, "slot");
      assert.equal(
        await exchange(port, "UPLOAD 5 fourth.txt\nhello"),
        `200 OK 5 ${HELLO_SHA256}\n`,
      );
    } finally {
      for (const conn of stalled) conn.close();
    }
  });
});

Deno.test("the log shows names escaped: no escape sequence or bidi override reaches the terminal", async () => {
  await withServer({}, async ({ port, logs, waitForLog }) => {
    const names = [
      "invoice\u202etxt.exe", // shows as "invoiceexe.txt"
      "pay\u200bpal.txt",
      "\x1b]0;owned\x07\x1b[2Jclear",
    ];
    for (const name of names) {
      const reply = await exchange(port, `UPLOAD 5 ${name}\nhello`);
      assert.match(reply, /^400 file name must not contain /);
    }
    await waitUntil(() => logs.length === names.length, "three log lines");
    assert.match(await waitForLog(/invoice/), /"invoice\\u\{202e\}txt\.exe"/);
    assert.match(await waitForLog(/pay/), /"pay\\u\{200b\}pal\.txt"/);
    assert.match(
      await waitForLog(/owned/),
      /"\\x1b\]0;owned\\x07\\x1b\[2Jclear"/,
    );
    for (const line of logs) {
      // deno-lint-ignore no-control-regex
      assert.doesNotMatch(line, /[\x00-\x1f\x7f\u200b\u202e]/, line);
    }
  });
});

Deno.test("close() mid-upload: logged as shutdown, no temporary file left", async () => {
  const dir = await Deno.makeTempDir({ prefix: "upload_test_" });
  const logs: string[] = [];
  const server = await startUploadServer({
    dir,
    port: 0,
    log: (line) => logs.push(line),
  });
  const conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: server.addr.port,
  });
  try {
    await writeAll(conn, concat("UPLOAD 1000000 cut.bin\n", randomBytes(1000)));
    await waitUntil(
      async () => (await listDir(dir)).some((n) => n.startsWith(".upload-")),
      "temporary file",
    );
    await server.close();
    assert.equal(logs.length, 1);
    assert.match(logs[0], /"cut\.bin" 1000 bytes .*: server shutting down$/);
    assert.deepEqual(await listDir(dir), []);
  } finally {
    conn.close();
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("storage failure gives 500 and the server keeps serving", async () => {
  // Tests run as root, and chmod does not stop root. Removing the directory
  // under the running server is a storage failure that does: the temporary
  // file cannot be created. Then the directory comes back, and so does
  // service.
  await withServer({}, async ({ port, dir }) => {
    await Deno.remove(dir);
    const reply = await exchange(port, "UPLOAD 5 lost.txt\nhello");
    assert.match(
      reply,
      /^500 storage failure: .*No such file or directory.*\n$/,
    );
    await Deno.mkdir(dir);
    assert.equal(
      await exchange(port, "UPLOAD 5 back.txt\nhello"),
      `200 OK 5 ${HELLO_SHA256}\n`,
    );
  });
});

Deno.test("storage failing mid-body: the temporary file is removed before the 500 is sent", async () => {
  // Storage fails on demand (file writes reject, as on a full disk), and
  // removing a file takes 300 ms: a reply sent before the removal would
  // reach the client while the temporary file is still there.
  const write = Deno.FsFile.prototype.write;
  const remove = Deno.remove;
  let failing = false;
  Deno.FsFile.prototype.write = function (this: Deno.FsFile, bytes) {
    if (!failing) return write.call(this, bytes);
    return Promise.reject(new Error("No space left on device (os error 28)"));
  };
  Deno.remove = async (...args) => {
    await new Promise((resolve) => setTimeout(resolve, 300));
    return await remove(...args);
  };
  try {
    await withServer({}, async ({ port, dir }) => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      try {
        await writeAll(
          conn,
          concat("UPLOAD 100000 full.bin\n", "x".repeat(10)),
        );
        await waitUntil(async () => (await listDir(dir)).length === 1, "temp");
        failing = true;
        const rest = writeAll(conn, randomBytes(100_000 - 10)).catch(() => {});
        const reply = await readUntil(conn, "\n");
        const left = await listDir(dir); // as the client reads the reply
        assert.equal(
          reply,
          "500 storage failure: No space left on device (os error 28)\n",
        );
        assert.deepEqual(left, []);
        await rest;
      } finally {
        conn.close();
      }
    });
  } finally {
    Deno.FsFile.prototype.write = write;
    Deno.remove = remove;
  }
});

Deno.test({
  name:
    "a real write failure mid-body (file too large) gives 500 and leaves nothing; the server keeps serving",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "upload_test_" });
    // A file-size limit (ulimit -f: 100 KiB) makes the server's writes fail
    // mid-body with EFBIG; SIGXFSZ is ignored, so that is an error, not a
    // kill. Everything else about the server is as in its Run line.
    const script = `trap '' XFSZ; ulimit -f 100; exec "$0" run --allow-net ` +
      `--allow-read="$1" --allow-write="$1" "$2" --dir "$1" --port 0`;
    const server = await startPeer(
      "sh",
      ["-c", script, Deno.execPath(), dir, scriptPath("upload_server.ts")],
      /^Listening on tcp:\/\/127\.0\.0\.1:(\d+)\n/,
    );
    const port = Number(server.match[1]);
    try {
      for (let i = 0; i < 5; i++) {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port });
        try {
          const sending = writeAll(
            conn,
            concat(`UPLOAD 300000 big ${i}.bin\n`, randomBytes(300_000)),
          ).catch(() => {});
          const reply = await readUntil(conn, "\n");
          // Looked at the moment the reply is in: nothing may be left.
          const left = await listDir(dir);
          assert.match(reply, /^500 storage failure: File too large/);
          assert.deepEqual(left, [], `after reply ${i}`);
          await sending;
        } finally {
          conn.close();
        }
      }
      assert.equal(
        await exchange(port, "UPLOAD 5 small.txt\nhello"),
        `200 OK 5 ${HELLO_SHA256}\n`,
      );
    } finally {
      await server.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "read-only (immutable) --dir gives 500, even for root; then serves again",
  ignore: !(await hasCommand("chattr")),
  fn: async () => {
    await withServer({}, async ({ port, dir }) => {
      // chattr +i makes the directory immutable: not even root can create
      // files in it. Some file systems and containers do not allow it.
      const immutable = await runTool("chattr", ["+i", dir]);
      if (immutable.code !== 0) {
        skipBecause(`chattr +i not permitted here: ${immutable.stderr.trim()}`);
        return;
      }
      try {
        const reply = await exchange(port, "UPLOAD 5 ro.txt\nhello");
        assert.match(
          reply,
          /^500 storage failure: .*(not permitted|permission denied).*\n$/i,
        );
      } finally {
        await runTool("chattr", ["-i", dir]);
      }
      assert.deepEqual(await listDir(dir), []);
      assert.equal(
        await exchange(port, "UPLOAD 5 rw.txt\nhello"),
        `200 OK 5 ${HELLO_SHA256}\n`,
      );
    });
  },
});
if (!(await hasCommand("chattr"))) skipBecause("chattr not installed");

Deno.test("50 concurrent uploads all arrive intact", async () => {
  await withServer({}, async ({ port, dir }) => {
    const bodies = Array.from(
      { length: 50 },
      (_, i) => randomBytes(50_000 + i * 1000),
    );
    const replies = await Promise.all(
      bodies.map((body, i) =>
        exchange(port, concat(`UPLOAD ${body.length} file ${i}.bin\n`, body))
      ),
    );
    for (const [i, body] of bodies.entries()) {
      assert.equal(replies[i], `200 OK ${body.length} ${sha256(body)}\n`);
      assert.deepEqual(await Deno.readFile(`${dir}/file ${i}.bin`), body);
    }
    assert.equal((await listDir(dir)).length, 50);
  });
});

Deno.test("the same name raced by 20 uploads: exactly one 200, the rest 409", async () => {
  await withServer({}, async ({ port, dir }) => {
    const count = 20;
    const conns = await Promise.all(
      Array.from(
        { length: count },
        () => Deno.connect({ hostname: "127.0.0.1", port }),
      ),
    );
    try {
      const bodies = conns.map(() => randomBytes(100_000));
      // All headers first; once every upload has its temporary file, all
      // have passed the early existence check, and the race is at commit.
      await Promise.all(
        conns.map((conn) =>
          conn.write(encoder.encode("UPLOAD 100000 same.bin\n"))
        ),
      );
      await waitUntil(
        async () => (await listDir(dir)).length === count,
        "all temp files",
      );
      const replies = await Promise.all(conns.map(async (conn, i) => {
        await conn.write(bodies[i]);
        return decoder.decode(await readAll(conn));
      }));
      const winners = replies.filter((reply) => reply.startsWith("200 "));
      assert.equal(winners.length, 1, replies.join(""));
      assert.equal(
        replies.filter((reply) => reply === "409 'same.bin' already exists\n")
          .length,
        count - 1,
      );
      const winner = replies.indexOf(winners[0]);
      assert.deepEqual(await Deno.readFile(`${dir}/same.bin`), bodies[winner]);
      assert.deepEqual(await listDir(dir), ["same.bin"]);
    } finally {
      for (const conn of conns) {
        try {
          conn.close();
        } catch {
          // readAll already closed it.
        }
      }
    }
  });
});

Deno.test("file_store: commit after the name appeared gives FileExistsError; abort cleans", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const upload = await createUpload(dir, "n.txt");
    await upload.write(encoder.encode("mine"));
    await Deno.writeTextFile(`${dir}/n.txt`, "theirs");
    await assert.rejects(upload.commit(), FileExistsError);
    assert.deepEqual(await listDir(dir), ["n.txt"]);
    assert.equal(await Deno.readTextFile(`${dir}/n.txt`), "theirs");
    {
      await using unfinished = await createUpload(dir, "never.txt");
      await unfinished.write(encoder.encode("half"));
    }
    assert.deepEqual(await listDir(dir), ["n.txt"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// ------------------------------------------------- subprocess and clients

/** Resident memory of a process in KiB, as `ps` reports it. */
async function rssKiB(pid: number): Promise<number> {
  const { stdout } = await runTool("ps", ["-o", "rss=", "-p", String(pid)]);
  return Number(decoder.decode(stdout).trim());
}

function serverArgs(dir: string) {
  return {
    allow: ["--allow-net", `--allow-read=${dir}`, `--allow-write=${dir}`],
  };
}

Deno.test("subprocess server: start-up cleans leftovers, Python client uploads, killed client leaves nothing, SIGTERM exits 0", async () => {
  const dir = await Deno.makeTempDir({ prefix: "upload_test_" });
  try {
    const leftover = ".upload-00112233445566778899aabbccddeeff.tmp";
    await Deno.writeTextFile(`${dir}/${leftover}`, "from a crash");
    await Deno.writeTextFile(`${dir}/keep.txt`, "not ours to remove");
    const server = await startScript("upload_server.ts", [
      "--dir",
      dir,
      "--port",
      "0",
    ], serverArgs(dir));
    let stopped = false;
    try {
      assert.match(
        server.listeningLine,
        /^Listening on tcp:\/\/127\.0\.0\.1:\d+$/,
      );
      assert.deepEqual(await listDir(dir), ["keep.txt"]);

      if (await hasCommand("python3")) {
        const python = `
import socket, sys
s = socket.create_connection(("127.0.0.1", ${server.port}))
s.sendall("UPLOAD 5 py thon.txt\\n".encode() + b"hello")
reply = b""
while not reply.endswith(b"\\n"):
    chunk = s.recv(100)
    if not chunk: break
    reply += chunk
sys.stdout.write(reply.decode())
s.close()
`;
        const result = await runTool("python3", ["-c", python]);
        assert.equal(
          decoder.decode(result.stdout),
          `200 OK 5 ${HELLO_SHA256}\n`,
          result.stderr,
        );
        assert.equal(await Deno.readTextFile(`${dir}/py thon.txt`), "hello");

        // A client killed mid-body (it had sent part of it).
        const killed = new Deno.Command("python3", {
          args: [
            "-c",
            `
import socket, time
s = socket.create_connection(("127.0.0.1", ${server.port}))
s.sendall(b"UPLOAD 1000000 killed.bin\\n" + b"x" * 100000)
time.sleep(30)
`,
          ],
          stdout: "null",
          stderr: "null",
        }).spawn();
        try {
          await waitUntil(
            async () =>
              (await listDir(dir)).some((n) => n.startsWith(".upload-")),
            "temp file",
          );
        } finally {
          killed.kill("SIGKILL");
          await killed.status;
        }
        await waitUntil(
          async () =>
            !(await listDir(dir)).some((n) => n.startsWith(".upload-")),
          "temp file removed",
        );
        assert.deepEqual(await listDir(dir), ["keep.txt", "py thon.txt"]);
      } else {
        skipBecause("python3 not installed");
      }

      const started = Date.now();
      const output = await server.stop("SIGTERM");
      stopped = true;
      assert.equal(output.code, 0);
      assert.ok(Date.now() - started < 2500);
      assert.match(
        output.stderr,
        /removed leftover temporary file \.upload-0011/,
      );
      assert.match(
        output.stderr,
        /"killed\.bin" \d+ bytes .*: (client vanished|400 body ended)/,
      );
    } finally {
      if (!stopped) await server.stop("SIGKILL");
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name:
    "subprocess server: 50 stalled uploads hold little memory; SIGTERM mid-upload exits 0 and leaves nothing",
  ignore: Deno.build.os !== "linux", // the server's RSS from /proc
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "upload_test_" });
    const server = await startScript("upload_server.ts", [
      "--dir",
      dir,
      "--port",
      "0",
    ], serverArgs(dir));
    const conns: Deno.TcpConn[] = [];
    let stopped = false;
    try {
      // Deno wants --allow-all to read /proc/<pid> itself; cat does not.
      const rss = async () => {
        const { stdout } = await new Deno.Command("cat", {
          args: [`/proc/${server.child.pid}/status`],
        }).output();
        const status = decoder.decode(stdout);
        return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
      };
      const before = await rss();
      // Each client sends more than the server's buffers hold, then stalls.
      const uploads = 50;
      const sent = 2.5 * 1024 * 1024;
      const bytes = concat("UPLOAD 100000000 stalled.bin\n", randomBytes(sent));
      for (let i = 0; i < uploads; i++) {
        conns.push(
          await Deno.connect({ hostname: "127.0.0.1", port: server.port }),
        );
      }
      await Promise.all(conns.map((conn) => writeAll(conn, bytes)));
      // Everything sent has been through the server's buffers once it is in
      // the temporary files.
      await waitUntil(async () => {
        let total = 0;
        for (const name of await listDir(dir)) {
          total += (await Deno.stat(`${dir}/${name}`)).size;
        }
        return total === uploads * sent;
      }, "all bytes in temporary files");
      const grown = await rss() - before;
      assert.ok(
        grown < uploads * 1024 * 1024,
        `RSS grew ${(grown / 1048576).toFixed(1)} MiB for ${uploads} uploads`,
      );

      const started = Date.now();
      const output = await server.stop("SIGTERM");
      stopped = true;
      assert.equal(output.code, 0, output.stderr);
      assert.ok(Date.now() - started < 2000);
      assert.deepEqual(await listDir(dir), []);
      assert.equal(
        output.stderr.match(
          /"stalled\.bin" \d+ bytes .*: server shutting down\n/g,
        )
          ?.length,
        uploads,
        output.stderr,
      );
    } finally {
      if (!stopped) await server.stop("SIGKILL");
      for (const conn of conns) conn.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("subprocess server: 1,000 uploads stalled after one byte cost at most 60 KB each", async () => {
  // The attack measured on the old server: a valid header, then a byte now
  // and then, held about 300 KB per upload (two 256 KiB buffers from the
  // first byte on). Now a waiting upload holds small buffers only; the cap
  // is raised so that all 1,000 are really held.
  const dir = await Deno.makeTempDir({ prefix: "upload_test_" });
  const server = await startScript("upload_server.ts", [
    "--dir",
    dir,
    "--port",
    "0",
    "--max-uploads",
    "2000",
  ], serverArgs(dir));
  const conns: Deno.TcpConn[] = [];
  try {
    // A first upload, so the baseline includes the loaded code.
    assert.equal(
      await exchange(server.port, "UPLOAD 5 warm.txt\nhello"),
      `200 OK 5 ${HELLO_SHA256}\n`,
    );
    const before = await rssKiB(server.child.pid);
    const count = 1000;
    while (conns.length < count) {
      conns.push(
        ...await Promise.all(Array.from({ length: 100 }, async (_, i) => {
          const conn = await Deno.connect({
            hostname: "127.0.0.1",
            port: server.port,
          });
          const header = `UPLOAD 1000000 stalled ${conns.length + i}\nx`;
          await writeAll(conn, encoder.encode(header));
          return conn;
        })),
      );
    }
    // Every upload has its temporary file and its first byte in it.
    await waitUntil(
      async () => {
        let written = 0;
        for await (const entry of Deno.readDir(dir)) {
          if (entry.name.startsWith(".upload-")) {
            written += (await Deno.stat(`${dir}/${entry.name}`)).size;
          }
        }
        return written === count;
      },
      "1,000 temporary files with a byte each",
      20_000,
    );
    const perUpload = (await rssKiB(server.child.pid) - before) * 1024 / count;
    console.log(`stalled upload: ${Math.round(perUpload)} bytes of RSS`);
    assert.ok(perUpload <= 60_000, `${perUpload} bytes per stalled upload`);
  } finally {
    for (const conn of conns) conn.close();
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("subprocess server: --max-per-address 1 closes a second client from the same address at once", async () => {
  const dir = await Deno.makeTempDir({ prefix: "upload_test_" });
  const server = await startScript("upload_server.ts", [
    "--dir",
    dir,
    "--port",
    "0",
    "--max-per-address",
    "1",
  ], serverArgs(dir));
  const first = await Deno.connect({
    hostname: "127.0.0.1",
    port: server.port,
  });
  try {
    await writeAll(first, encoder.encode("UPLOAD 5 first.txt\nhel"));
    await waitUntil(async () => (await listDir(dir)).length === 1, "temp");
    // The second is closed without a word: no reply, no file.
    const second = await Deno.connect({
      hostname: "127.0.0.1",
      port: server.port,
    });
    try {
      await second.write(encoder.encode("UPLOAD 5 second.txt\nhello"))
        .catch(() => {});
      const ended = await second.read(new Uint8Array(64)).catch(() => null);
      assert.equal(ended, null);
    } finally {
      second.close();
    }
    assert.deepEqual((await listDir(dir)).length, 1);
    await writeAll(first, encoder.encode("lo"));
    assert.equal(await readUntil(first, "\n"), `200 OK 5 ${HELLO_SHA256}\n`);
  } finally {
    first.close();
    const { code, stderr } = await server.stop();
    assert.equal(code, 0);
    assert.match(
      stderr,
      /refused 127\.0\.0\.1: 1 connections from it \(--max-per-address\)/,
    );
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("server CLI: missing --dir and bad values exit 2; --dir that is a file exits 1", async () => {
  const noDir = await runScript("upload_server.ts", [], {
    allow: ["--allow-net"],
  });
  assert.equal(noDir.code, 2);
  assert.equal(
    noDir.stderr,
    "upload_server.ts: --dir DIR is required\nTry 'upload_server.ts --help' for more information.\n",
  );
  const badSize = await runScript("upload_server.ts", [
    "--dir",
    "x",
    "--max-size",
    "-5",
  ], { allow: ["--allow-net"] });
  assert.equal(badSize.code, 2);
  assert.match(badSize.stderr, /^upload_server.ts: /);
  for (
    const [option, value] of [
      ["--max-uploads", "0"],
      ["--min-rate", "fast"],
      ["--max-connections", "0"],
      ["--max-per-address", "x"],
      ["--cert", "only-the-cert.pem"],
    ]
  ) {
    const bad = await runScript("upload_server.ts", [
      "--dir",
      "x",
      option,
      value,
    ], { allow: ["--allow-net"] });
    assert.equal(bad.code, 2, `${option} ${value}`);
    assert.match(bad.stderr, new RegExp(`^upload_server.ts: ${option} `));
  }
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/file`, "");
    const notDir = await runScript("upload_server.ts", [
      "--dir",
      `${dir}/file`,
      "--port",
      "0",
    ], serverArgs(dir));
    assert.equal(notDir.code, 1);
    assert.equal(notDir.stderr.trim().split("\n").length, 1, notDir.stderr);
    // A missing --dir is created.
    const server = await startScript("upload_server.ts", [
      "--dir",
      `${dir}/new`,
      "--port",
      "0",
    ], serverArgs(dir));
    assert.equal((await Deno.stat(`${dir}/new`)).isDirectory, true);
    // An upload first also gives the server time to install its signal
    // handlers (see the note on runUntilSignal in the report).
    assert.equal(
      await exchange(server.port, "UPLOAD 5 new.txt\nhello"),
      `200 OK 5 ${HELLO_SHA256}\n`,
    );
    assert.equal((await server.stop()).code, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  const help = await runScript("upload_server.ts", ["--help"], { allow: [] });
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: upload_server.ts --dir DIR/);
  for (
    const option of [
      "--idle-timeout",
      "--min-rate",
      "--max-uploads",
      "--max-connections",
      "--max-per-address",
    ]
  ) {
    assert.match(help.stdout, new RegExp(`\\n  ${option} `), option);
  }
});

Deno.test("upload_client.ts: exit 0 on a verified 200, 1 on 409, refused and missing file", async () => {
  await withServer({}, async ({ port, dir }) => {
    const work = await Deno.makeTempDir();
    try {
      const body = randomBytes(3 * 1024 * 1024 + 17);
      await Deno.writeFile(`${work}/data.bin`, body);
      const allow = ["--allow-net", `--allow-read=${work}`];
      const ok = await runScript("upload_client.ts", [
        "--port",
        String(port),
        `${work}/data.bin`,
      ], { allow });
      assert.equal(ok.code, 0, ok.stderr);
      assert.equal(ok.stdout, `200 OK ${body.length} ${sha256(body)}\n`);
      assert.equal(ok.stderr, ""); // not a terminal: no progress bar
      assert.deepEqual(await Deno.readFile(`${dir}/data.bin`), body);

      const again = await runScript("upload_client.ts", [
        "--port",
        String(port),
        `${work}/data.bin`,
      ], { allow });
      assert.equal(again.code, 1);
      assert.equal(again.stdout, "");
      assert.equal(
        again.stderr,
        "upload_client.ts: server refused: 409 'data.bin' already exists\n",
      );

      const renamed = await runScript("upload_client.ts", [
        "--port",
        String(port),
        "--name",
        "其他 名字.bin",
        `${work}/data.bin`,
      ], { allow });
      assert.equal(renamed.code, 0, renamed.stderr);
      assert.deepEqual(await Deno.readFile(`${dir}/其他 名字.bin`), body);

      const missing = await runScript("upload_client.ts", [
        "--port",
        String(port),
        `${work}/nope.bin`,
      ], { allow });
      assert.equal(missing.code, 1);
      assert.equal(
        missing.stderr,
        `upload_client.ts: cannot read ${work}/nope.bin: no such file\n`,
      );

      const unsafe = await runScript("upload_client.ts", [
        "--port",
        String(port),
        "--name",
        "../x",
        `${work}/data.bin`,
      ], { allow });
      assert.equal(unsafe.code, 1);
      assert.equal(
        unsafe.stderr,
        "upload_client.ts: cannot upload as '../x': file name must not contain '/' or '\\'\n",
      );

      const freePort = closedPort(); // nobody listens there
      const refused = await runScript("upload_client.ts", [
        "--port",
        String(freePort),
        `${work}/data.bin`,
      ], { allow });
      assert.equal(refused.code, 1);
      assert.equal(
        refused.stderr,
        `upload_client.ts: cannot connect to 127.0.0.1:${freePort}: connection refused\n`,
      );

      const usage = await runScript("upload_client.ts", [], { allow });
      assert.equal(usage.code, 2);
    } finally {
      await Deno.remove(work, { recursive: true });
    }
  });
});

Deno.test("upload_client.ts: a failed connect names the target as lib/dial.ts does (IPv6 in brackets; a timeout says so)", async () => {
  const work = await Deno.makeTempDir();
  const unanswered = await startUnansweredPort();
  try {
    await Deno.writeTextFile(`${work}/hi.txt`, "hello");
    const allow = ["--allow-net", `--allow-read=${work}`];
    const v6 = Deno.listen({ hostname: "::1", port: 0 });
    const v6Port = v6.addr.port;
    v6.close(); // nobody listens there now
    const refused = await runScript("upload_client.ts", [
      "--hostname",
      "::1",
      "--port",
      String(v6Port),
      `${work}/hi.txt`,
    ], { allow });
    assert.equal(refused.code, 1);
    assert.equal(
      refused.stderr,
      `upload_client.ts: cannot connect to [::1]:${v6Port}: connection refused\n`,
    );
    const started = performance.now();
    const slow = await runScript("upload_client.ts", [
      "--port",
      String(unanswered.addr.port),
      "--timeout",
      "0.3",
      `${work}/hi.txt`,
    ], { allow, timeoutMs: 10_000 });
    assert.equal(slow.code, 1);
    assert.equal(
      slow.stderr,
      `upload_client.ts: cannot connect to 127.0.0.1:${unanswered.addr.port}: timed out after 0.3 s\n`,
    );
    assert.ok(performance.now() - started < 5000);
  } finally {
    unanswered.close();
    await Deno.remove(work, { recursive: true });
  }
});

Deno.test("upload_client.ts: a server that accepts and never reads: every write is bounded by --timeout, one line, exit 1", async () => {
  // It accepts and then does nothing: the client's writes fill the socket
  // buffers (loopback ones can hold several MB), then one stalls.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of listener) accepted.push(conn);
  })();
  const work = await Deno.makeTempDir();
  try {
    await Deno.writeFile(`${work}/big.bin`, new Uint8Array(64 * 1024 * 1024));
    const started = performance.now();
    const result = await runScript("upload_client.ts", [
      "--port",
      String(listener.addr.port),
      "--timeout",
      "1",
      `${work}/big.bin`,
    ], { allow: ["--allow-net", `--allow-read=${work}`], timeoutMs: 15_000 });
    const elapsed = performance.now() - started;
    assert.equal(result.code, 1, result.stderr);
    assert.equal(
      result.stderr,
      `upload_client.ts: 127.0.0.1:${listener.addr.port}: timed out after 1 s sending\n`,
    );
    assert.ok(elapsed < 10_000, `gave up after ${elapsed} ms`);
  } finally {
    listener.close();
    await accepting.catch(() => {});
    for (const conn of accepted) conn.close();
    await Deno.remove(work, { recursive: true });
  }
});

Deno.test("upload_client.ts: a server that reads everything and never answers: no reply within --timeout, exit 1", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  // Reads the upload to its end, then says nothing and keeps the line open.
  const serving = listener.accept().then(async (conn) => {
    await readAll(conn).catch(() => {});
    return conn;
  });
  const work = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${work}/hi.txt`, "hello");
    const result = await runScript("upload_client.ts", [
      "--port",
      String(listener.addr.port),
      "--timeout",
      "0.5",
      `${work}/hi.txt`,
    ], { allow: ["--allow-net", `--allow-read=${work}`], timeoutMs: 10_000 });
    assert.equal(result.code, 1);
    assert.equal(
      result.stderr,
      "upload_client.ts: no reply from the server within 0.5 s\n",
    );
  } finally {
    (await serving).close();
    listener.close();
    await Deno.remove(work, { recursive: true });
  }
});

Deno.test("upload_client.ts: a hostile reply reaches the terminal escaped", async () => {
  const hostile = "400 \x1b]0;owned\x07\x1b[2J\u202egnp.exe nope\n";
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const serving = (async () => {
    const conn = await listener.accept();
    await readUntil(conn, "hello");
    await writeAll(conn, encoder.encode(hostile));
    conn.close();
  })();
  const work = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${work}/hi.txt`, "hello");
    const result = await runScript("upload_client.ts", [
      "--port",
      String(listener.addr.port),
      `${work}/hi.txt`,
    ], { allow: ["--allow-net", `--allow-read=${work}`] });
    assert.equal(result.code, 1);
    assert.equal(
      result.stderr,
      "upload_client.ts: server refused: 400 \\x1b]0;owned\\x07\\x1b[2J\\u{202e}gnp.exe nope\n",
    );
  } finally {
    await serving;
    listener.close();
    await Deno.remove(work, { recursive: true });
  }
});

Deno.test("upload_client.ts reports the server's 503 (too many uploads) as a refusal, exit 1", async () => {
  await withServer({ maxUploads: 1 }, async ({ port, dir }) => {
    const stalled = await Deno.connect({ hostname: "127.0.0.1", port });
    const work = await Deno.makeTempDir();
    try {
      await writeAll(stalled, encoder.encode("UPLOAD 10 stalled.bin\nhalf"));
      await waitUntil(async () => (await listDir(dir)).length === 1, "temp");
      await Deno.writeTextFile(`${work}/hi.txt`, "hello");
      const result = await runScript("upload_client.ts", [
        "--port",
        String(port),
        `${work}/hi.txt`,
      ], { allow: ["--allow-net", `--allow-read=${work}`] });
      assert.equal(result.code, 1);
      assert.equal(
        result.stderr,
        "upload_client.ts: server refused: 503 too many uploads at once (1)\n",
      );
    } finally {
      stalled.close();
      await Deno.remove(work, { recursive: true });
    }
  });
});

Deno.test("uploadFile: a 200 whose sha256 does not match is not verified", async () => {
  // A lying server: reads the upload and answers 200 with a wrong hash.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const serving = (async () => {
    const conn = await listener.accept();
    const scrap = new Uint8Array(1024);
    while (await conn.read(scrap) !== null) {
      // Read the upload until the client half-closes.
    }
    await conn.write(encoder.encode(`200 OK 5 ${"0".repeat(64)}\n`)).catch(
      () => {},
    );
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  })();
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/hi.txt`, "hello");
    const outcome = await uploadFile({
      path: `${dir}/hi.txt`,
      port: listener.addr.port,
    });
    assert.equal(outcome.status, 200);
    assert.equal(outcome.verified, false);
    assert.equal(outcome.sha256, HELLO_SHA256);
  } finally {
    await serving;
    listener.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("uploadFile stops sending when the server refuses early (413)", async () => {
  await withServer({ maxSize: 1000 }, async ({ port }) => {
    const work = await Deno.makeTempDir();
    try {
      await Deno.writeFile(`${work}/big.bin`, new Uint8Array(32 * 1024 * 1024));
      const outcome = await uploadFile({ path: `${work}/big.bin`, port });
      assert.equal(
        outcome.reply,
        `413 file too large: ${32 * 1024 * 1024} bytes, limit 1000`,
      );
      assert.equal(outcome.verified, false);
    } finally {
      await Deno.remove(work, { recursive: true });
    }
  });
});

// ---------------------------------------------------------------- TLS

const haveOpenssl = await hasCommand("openssl");
if (!haveOpenssl) {
  skipBecause("openssl not installed: upload TLS tests ignored");
}

/** Uploads `body` as `name` over TLS with Python's ssl module; the reply. */
async function pythonTlsUpload(
  caFile: string,
  host: string,
  port: number,
  name: string,
  body: string,
) {
  const result = await runTool("python3", [
    "-c",
    `
import socket, ssl, sys
context = ssl.create_default_context(cafile=sys.argv[1])
with socket.create_connection((sys.argv[2], int(sys.argv[3]))) as raw:
    with context.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(("UPLOAD %d %s\\n%s" % (len(sys.argv[5]), sys.argv[4], sys.argv[5])).encode())
        sys.stdout.write(s.makefile("rb").readline().decode())
`,
    caFile,
    host,
    String(port),
    name,
    body,
  ]);
  assert.equal(result.code, 0, result.stderr);
  return decoder.decode(result.stdout);
}

Deno.test({
  name:
    "TLS: upload_server --cert/--key takes uploads from upload_client --cacert, Python ssl and openssl s_client; plain text costs only its connection",
  ignore: !haveOpenssl,
  async fn() {
    await using certs = await makeTestCerts();
    const dir = await Deno.makeTempDir({ prefix: "upload_test_" });
    const work = await Deno.makeTempDir();
    const allow = [
      "--allow-net",
      `--allow-read=${dir},${certs.dir}`,
      `--allow-write=${dir}`,
    ];
    const server = await startScript("upload_server.ts", [
      "--dir",
      dir,
      "--port",
      "0",
      "--cert",
      certs.certFile,
      "--key",
      certs.keyFile,
    ], { allow });
    try {
      assert.match(
        server.listeningLine,
        /^Listening on tls:\/\/127\.0\.0\.1:\d+$/,
      );
      const body = randomBytes(1024 * 1024 + 3);
      await Deno.writeFile(`${work}/data.bin`, body);
      const ours = await runScript("upload_client.ts", [
        "--port",
        String(server.port),
        "--cacert",
        certs.caFile,
        `${work}/data.bin`,
      ], { allow: ["--allow-net", `--allow-read=${work},${certs.dir}`] });
      assert.equal(ours.code, 0, ours.stderr);
      assert.equal(ours.stdout, `200 OK ${body.length} ${sha256(body)}\n`);
      assert.deepEqual(await Deno.readFile(`${dir}/data.bin`), body);
      if (await hasCommand("python3")) {
        assert.equal(
          await pythonTlsUpload(
            certs.caFile,
            "127.0.0.1",
            server.port,
            "py.txt",
            "hello",
          ),
          `200 OK 5 ${HELLO_SHA256}\n`,
        );
      }
      // s_client hangs up when its input ends: the input lingers a moment.
      const openssl = await runTool("sh", [
        "-c",
        `(printf 'UPLOAD 5 ossl.txt\\nhello'; sleep 1) | openssl s_client -quiet -no_ign_eof -verify_return_error -CAfile "$1" -servername localhost -connect "127.0.0.1:$2"`,
        "sh",
        certs.caFile,
        String(server.port),
      ]);
      assert.equal(
        decoder.decode(openssl.stdout),
        `200 OK 5 ${HELLO_SHA256}\n`,
      );
      // Plain text on the TLS port: closed, nothing stored, service goes on.
      const plain = await Deno.connect({
        hostname: "127.0.0.1",
        port: server.port,
      });
      await plain.write(encoder.encode("UPLOAD 5 plain.txt\nhello"))
        .catch(() => {});
      const answer = await readAll(plain).catch(() => new Uint8Array());
      assert.doesNotMatch(decoder.decode(answer), /^200/);
      plain.close();
      const again = await runScript("upload_client.ts", [
        "--port",
        String(server.port),
        "--cacert",
        certs.caFile,
        "--name",
        "again.bin",
        `${work}/data.bin`,
      ], { allow: ["--allow-net", `--allow-read=${work},${certs.dir}`] });
      assert.equal(again.code, 0, again.stderr);
      const names = await listDir(dir);
      assert.ok(!names.includes("plain.txt"), names.join());
      const { code, stderr } = await server.stop();
      assert.equal(code, 0);
      assert.match(stderr, /TLS handshake with 127\.0\.0\.1:\d+ failed: /);
    } finally {
      await server.stop();
      await Deno.remove(dir, { recursive: true });
      await Deno.remove(work, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "TLS: upload_client names the certificate problem in one line, exit 1 (wrong CA, wrong name, no CA)",
  ignore: !haveOpenssl,
  async fn() {
    // A leaf for "localhost" only: at 127.0.0.1 its name does not match.
    await using certs = await makeTestCerts({ names: ["DNS:localhost"] });
    const dir = await Deno.makeTempDir({ prefix: "upload_test_" });
    const work = await Deno.makeTempDir();
    await using server = await startUploadServer({
      dir,
      port: 0,
      tls: { cert: certs.cert, key: certs.key },
      log: () => {},
    });
    try {
      await Deno.writeTextFile(`${work}/hi.txt`, "hello");
      const port = server.addr.port;
      const cases: [string[], string][] = [
        [
          ["--hostname", "localhost", "--cacert", certs.otherCaFile],
          `cannot connect to localhost:${port}: certificate not trusted (unknown issuer)`,
        ],
        [
          ["--hostname", "127.0.0.1", "--cacert", certs.caFile],
          `cannot connect to 127.0.0.1:${port}: certificate is not valid for 127.0.0.1`,
        ],
        [
          ["--hostname", "localhost", "--tls"],
          `cannot connect to localhost:${port}: certificate not trusted (unknown issuer)`,
        ],
      ];
      for (const [args, message] of cases) {
        const result = await runScript("upload_client.ts", [
          "--port",
          String(port),
          ...args,
          `${work}/hi.txt`,
        ], { allow: ["--allow-net", `--allow-read=${work},${certs.dir}`] });
        assert.equal(result.code, 1, result.stderr);
        assert.equal(result.stderr, `upload_client.ts: ${message}\n`);
      }
      // And with the right CA and name, it goes through.
      const ok = await runScript("upload_client.ts", [
        "--hostname",
        "localhost",
        "--port",
        String(port),
        "--cacert",
        certs.caFile,
        `${work}/hi.txt`,
      ], { allow: ["--allow-net", `--allow-read=${work},${certs.dir}`] });
      assert.equal(ok.code, 0, ok.stderr);
      assert.deepEqual(await listDir(dir), ["hi.txt"]);
      // A client certificate is presented (the server cannot ask for one,
      // deno#26825, so it is not checked): the upload goes through.
      const withCert = await runScript("upload_client.ts", [
        "--hostname",
        "localhost",
        "--port",
        String(port),
        "--cacert",
        certs.caFile,
        "--client-cert",
        certs.certFile,
        "--client-key",
        certs.keyFile,
        "--name",
        "with cert.txt",
        `${work}/hi.txt`,
      ], { allow: ["--allow-net", `--allow-read=${work},${certs.dir}`] });
      assert.equal(withCert.code, 0, withCert.stderr);
      assert.equal(withCert.stdout, `200 OK 5 ${HELLO_SHA256}\n`);
      assert.deepEqual(await listDir(dir), ["hi.txt", "with cert.txt"]);
    } finally {
      await Deno.remove(dir, { recursive: true });
      await Deno.remove(work, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "TLS: a stalled handshake costs only itself; 30 concurrent TLS uploads meanwhile; ::1",
  ignore: !haveOpenssl,
  async fn() {
    await using certs = await makeTestCerts();
    const dir = await Deno.makeTempDir({ prefix: "upload_test_" });
    const work = await Deno.makeTempDir();
    const logs: string[] = [];
    const server = await startUploadServer({
      dir,
      port: 0,
      tls: { cert: certs.cert, key: certs.key },
      handshakeTimeoutMs: 300,
      log: (line) => logs.push(line),
    });
    // Connects and says nothing: the server stops waiting after the bound.
    // (Deno 2.9 keeps such a socket until the client leaves: see lib/server.)
    const stalled = await Deno.connect({
      hostname: "127.0.0.1",
      port: server.addr.port,
    });
    try {
      const bodies = Array.from(
        { length: 30 },
        (_, i) => randomBytes(20_000 + i),
      );
      await Promise.all(
        bodies.map((body, i) => Deno.writeFile(`${work}/f${i}.bin`, body)),
      );
      const outcomes = await Promise.all(bodies.map((_, i) =>
        uploadFile({
          path: `${work}/f${i}.bin`,
          port: server.addr.port,
          hostname: "localhost",
          tls: { caCerts: [certs.ca] },
        })
      ));
      assert.ok(outcomes.every((outcome) => outcome.verified));
      assert.equal((await listDir(dir)).length, 30);
      await waitUntil(
        () => logs.some((line) => line.includes("handshake timed out")),
        "the stalled handshake given up",
      );
    } finally {
      stalled.close();
      await server.close();
    }
    // The same over IPv6, as a subprocess: the leaf names ::1 too.
    const v6 = await startScript("upload_server.ts", [
      "--dir",
      dir,
      "--hostname",
      "::1",
      "--port",
      "0",
      "--cert",
      certs.certFile,
      "--key",
      certs.keyFile,
    ], {
      allow: [
        "--allow-net",
        `--allow-read=${dir},${certs.dir}`,
        `--allow-write=${dir}`,
      ],
    });
    try {
      assert.match(v6.listeningLine, /^Listening on tls:\/\/\[::1\]:\d+$/);
      const result = await runScript("upload_client.ts", [
        "--hostname",
        "::1",
        "--port",
        String(v6.port),
        "--cacert",
        certs.caFile,
        "--name",
        "v6.bin",
        `${work}/f0.bin`,
      ], { allow: ["--allow-net", `--allow-read=${work},${certs.dir}`] });
      assert.equal(result.code, 0, result.stderr);
      assert.deepEqual(
        await Deno.readFile(`${dir}/v6.bin`),
        await Deno.readFile(`${work}/f0.bin`),
      );
    } finally {
      await v6.stop();
      await Deno.remove(dir, { recursive: true });
      await Deno.remove(work, { recursive: true });
    }
  },
});
